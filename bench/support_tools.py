"""Benchmark the administrators' support tools on a large support database: the inbox's
search and views, and the stats page's figures.

    .venv/bin/python bench/support_tools.py [--conversations 5000] [--messages 20] [--repeat 5]

Bulk-loads `--conversations` conversations of `--messages` messages each, a resolution
per conversation, into a support database of its own, then times (server side, the
median of `--repeat` calls) one inbox page of each view, a search matching one client
by name, a search matching message text and one matching nothing, and the stats of
the last 14 days. Prints the figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from common.auth import Identity  # noqa: E402
from common.settings import load_settings  # noqa: E402
from migrations.runner import upgrade  # noqa: E402
from tests.isolation import isolated  # noqa: E402

WORDS = ("meter", "boiler", "heat", "pump", "limit", "alert", "yesterday", "today", "reading", "kitchen",
         "invoice", "tariff", "night", "peak", "device", "thanks", "hello", "human", "please", "check")


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=5000)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    return parser.parse_args()


def load(conversations: int, messages: int) -> None:
    """Insert the conversations, their messages and a resolution each, in multi-row inserts."""
    from support.extensions import db
    from support.models import Conversation, Message, Resolution, utcnow

    chance = random.Random(7)  # noqa: S311 - benchmark data
    now = utcnow()
    states = ("bot", "waiting", "assigned", "resolved")
    rows = []
    for number in range(conversations):
        state = states[number % 4]
        rows.append({"client_id": number + 1, "client_name": f"Client {number:05} {chance.choice(WORDS)}",
                     "state": state, "assigned_admin_id": 1 if state == "assigned" else None,
                     "waiting_since": now if state == "waiting" else None,
                     "last_message_at": now - timedelta(minutes=number),
                     "created_at": now, "updated_at": now})
    db.session.execute(sa.insert(Conversation), rows)
    ids = list(db.session.scalars(sa.select(Conversation.id).order_by(Conversation.id)))
    batch = []
    for conversation_id in ids:
        for number in range(messages):
            role = ("client", "bot", "admin")[number % 3]
            batch.append({"conversation_id": conversation_id, "sender_id": conversation_id if role == "client"
                          else 0, "sender_role": role, "sender_name": role,
                          "body": " ".join(chance.choice(WORDS) for _ in range(12)),
                          "created_at": now - timedelta(days=chance.random() * 14,
                                                        minutes=messages - number)})
        if len(batch) >= 20_000:
            db.session.execute(sa.insert(Message), batch)
            batch = []
    if batch:
        db.session.execute(sa.insert(Message), batch)
    db.session.execute(sa.insert(Resolution), [
        {"conversation_id": conversation_id, "opened_at": now - timedelta(days=chance.random() * 13, hours=1),
         "first_response_at": None, "resolved_at": now - timedelta(days=chance.random() * 13),
         "bot_only": chance.random() < 0.3, "rating": chance.choice((None, 3, 4, 5))}
        for conversation_id in ids])
    db.session.commit()


def timed(call, repeat: int) -> float:
    """Return the median milliseconds of `repeat` calls."""
    durations = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        durations.append((time.perf_counter() - start) * 1000)
    return statistics.median(durations)


def main() -> None:
    arguments = parse_arguments()
    variables = {"EMS_ENV": "test", "EMS_JWT_SECRET": secrets.token_hex(32), "EMS_LOG_LEVEL": "WARNING"}
    with isolated(f"bench-support-tools-{secrets.token_hex(3)}", variables) as variables:
        os.environ.update(variables)
        settings = load_settings()
        upgrade(settings, ("support",))
        from support import create_app, stats
        from support.assignment import inbox_page
        from support.models import utcnow

        app = create_app(settings)
        with app.app_context():
            started = time.perf_counter()
            load(arguments.conversations, arguments.messages)
            print(f"loaded {arguments.conversations} conversations, "
                  f"{arguments.conversations * arguments.messages} messages "
                  f"in {time.perf_counter() - started:.1f} s")
            admin = Identity(1, "admin", "Ada")
            zone = ZoneInfo("Europe/Bucharest")
            cases = {
                "inbox, all open, page 1": lambda: inbox_page(admin, "all"),
                "inbox, mine": lambda: inbox_page(admin, "mine"),
                "inbox, resolved, page 3": lambda: inbox_page(admin, "resolved", page=3),
                "search, one client's name": lambda: inbox_page(admin, "all", "Client 01234"),
                "search, a word in messages": lambda: inbox_page(admin, "all", "kitchen"),
                "search, nothing matches": lambda: inbox_page(admin, "all", "zzz-nothing"),
                "stats, last 14 days": lambda: stats.summarize(
                    stats.load_episodes(utcnow() - timedelta(days=14)), stats.window(utcnow().date()), zone),
            }
            print(f"\n{'what':<30}{'median ms':>10}")
            for name, call in cases.items():
                print(f"{name:<30}{timed(call, arguments.repeat):>10.1f}")


if __name__ == "__main__":
    main()
