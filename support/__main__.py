"""`python -m support consumer` consumes inbound chat; `seed-rules` seeds the bot's rules;
`seed-demo` adds the demo clients' past conversations (people as JSON lines on stdin)."""

from __future__ import annotations

import argparse
import gc
import logging

from common.logs import configure_logging, log_event
from common.metrics import serve_metrics
from common.settings import load_settings

logger = logging.getLogger("support")


def run_consumer() -> None:
    """Wire the consumer's parts together and consume until stopped."""
    from support import create_app, rules
    from support.consumer import SupportConsumer
    from support.extensions import db
    from support.notify import Broadcaster
    from support.responder import Responder
    from support.service import ChatService
    from support.users import UserEventsConsumer

    settings = load_settings(service="support")
    serve_metrics(settings, "support-consumer")
    app = create_app(settings)
    broadcaster = Broadcaster.from_settings(settings, app)
    responder = Responder(app, broadcaster)
    with app.app_context():
        seeded = rules.seed_rules()
        pending = responder.answer_pending()
        db.session.remove()
    # Keep the start-up objects (modules, the openai package, the app) out of every
    # later full collection: those collections paused the consumer for 70-120 ms.
    gc.collect()
    gc.freeze()
    log_event(logger, "support.started", seeded_rules=seeded, pending_answers=pending,
              llm=responder.llm is not None)
    # Names, deletions and ended sessions of users, on a connection and thread of their own.
    user_events = UserEventsConsumer(settings, app, broadcaster)
    user_events.start()
    try:
        SupportConsumer(settings, ChatService(app, broadcaster, responder)).run()
    finally:
        user_events.stop()
        responder.shutdown()


def seed_rules() -> None:
    """Insert the bot's rules from bot_rules.json when there are none yet."""
    from support import create_app, rules

    app = create_app(load_settings(service="support"))
    with app.app_context():
        log_event(logger, "support.rules_seeded", count=rules.seed_rules())


def seed_demo() -> None:
    """Add two weeks of resolved, rated conversations for the demo clients read on stdin."""
    import sys

    from support import create_app
    from support.demo import parse_people, seed_demo_history

    app = create_app(load_settings(service="support"))
    with app.app_context():
        seeded = seed_demo_history(parse_people(sys.stdin))
    print(f"Demo support history ready ({seeded} clients' conversations created).")


def main() -> None:
    """Parse the command line and run it."""
    parser = argparse.ArgumentParser(prog="python -m support")
    parser.add_argument("command", choices=["consumer", "seed-rules", "seed-demo"])
    arguments = parser.parse_args()
    configure_logging("support", load_settings(service="support").log_level)
    {"consumer": run_consumer, "seed-rules": seed_rules, "seed-demo": seed_demo}[arguments.command]()


if __name__ == "__main__":
    main()
