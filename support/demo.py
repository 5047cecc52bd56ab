"""Demo history for `make seed`: two weeks of resolved conversations with ratings, so that the
Support stats page and the inbox's Resolved view show real numbers from the start.

The portal owns the users: `python -m web demo-users` prints the demo people as JSON
lines, and `python -m support seed-demo` reads them on its standard input.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from support.chat import BOT_NAME, BOT_SENDER_ID
from support.extensions import db
from support.models import Conversation, Message, Resolution, utcnow
from support.users import KnownUser

HISTORY_DAYS, EPISODES_PER_CLIENT = 13, 7


@dataclass(frozen=True)
class Person:
    """A demo user as the portal prints it."""

    id: int
    name: str
    role: str


# (the client's question, the bot's answer, whether the client then asks for a person)
QUESTIONS = (
    ("How much did I use yesterday?", "Yesterday your devices used 18.4 kWh in total.", False),
    ("What is the limit of my heat pump?", "Heat pump: 3.50 kWh per hour.", False),
    ("Why did I get an alert last night?", "I am not sure I understood. Type \"talk to a human\" "
     "and an administrator will answer here.", True),
    ("Can I change the limit of a device?", "Only an administrator can change a limit.", True),
    ("My meter shows nothing since Monday", "I am not sure I understood. Type \"talk to a human\" "
     "and an administrator will answer here.", True),
)
ADMIN_ANSWERS = ("Hello {first}, I had a look: the readings arrive again, nothing was lost.",
                 "Hi {first}, done: the new limit applies from the next hour.",
                 "Hello {first}, the alert came from the kitchen circuit at 21:00; it was over its limit.")


def parse_people(lines: Iterable[str]) -> list[Person]:
    """Return the people of `python -m web demo-users`' JSON lines (blank lines skipped)."""
    people = []
    for line in lines:
        if line.strip():
            value = json.loads(line)
            people.append(Person(int(value["id"]), str(value["name"])[:120], str(value["role"])))
    return people


def seed_demo_history(people: list[Person], now: datetime | None = None) -> int:
    """Give each demo client without a conversation two weeks of resolved episodes; return how many."""
    now = now or utcnow()
    admins = [person for person in people if person.role == "admin"]
    if not admins:
        return 0
    # Support learns roles from user events; demo administrators known before that get theirs now.
    db.session.execute(sa.update(KnownUser).where(KnownUser.user_id.in_([a.id for a in admins]),
                                                  KnownUser.role.is_(None)).values(role="admin"))
    seeded = 0
    for client in (person for person in people if person.role == "client"):
        if db.session.scalar(sa.select(Conversation.id).where(Conversation.client_id == client.id)):
            continue
        _seed_client(client, admins[0], now, random.Random(client.id))  # noqa: S311 - demo data
        seeded += 1
    db.session.commit()
    return seeded


def _seed_client(client: Person, admin: Person, now: datetime, chance: random.Random) -> None:
    conversation = Conversation(client_id=client.id, client_name=client.name, state="resolved",
                                created_at=now - timedelta(days=HISTORY_DAYS + 1), updated_at=now)
    db.session.add(conversation)
    db.session.flush()
    # One episode a day on some of the last days, oldest first.
    episode_days = sorted(chance.sample(range(1, HISTORY_DAYS + 1), EPISODES_PER_CLIENT), reverse=True)
    for number, days_ago in enumerate(episode_days):
        opened = (now - timedelta(days=days_ago)).replace(hour=chance.randint(8, 17),
                                                          minute=chance.randint(0, 59))
        last = _seed_episode(conversation, client, admin, opened, number, chance)
        conversation.last_message_at = last


def _seed_episode(conversation: Conversation, client: Person, admin: Person, opened: datetime,
                  number: int, chance: random.Random) -> datetime:
    """Store one episode's messages and resolution; return when its last message was written."""
    question, answer, asks_for_person = QUESTIONS[chance.randrange(len(QUESTIONS))]
    moment, said = opened, 0

    def say(role: str, body: str, after_minutes: float) -> None:
        nonlocal moment, said
        moment, said = moment + timedelta(minutes=after_minutes), said + 1
        sender_id, name = {"client": (client.id, client.name), "admin": (admin.id, admin.name),
                           "bot": (BOT_SENDER_ID, BOT_NAME)}[role]
        db.session.add(Message(conversation_id=conversation.id, sender_id=sender_id, sender_role=role,
                               sender_name=name, body=body, created_at=moment,
                               client_message_id=f"demo-{conversation.id}-{number}-{said}"
                               if role != "bot" else None))

    say("client", question, 0)
    say("bot", answer, 0.05)
    first_response = None
    if asks_for_person:
        say("client", "talk to a human", 1)
        say("bot", "I am handing you over to an administrator, who will answer here.", 0.05)
        say("admin", ADMIN_ANSWERS[chance.randrange(len(ADMIN_ANSWERS))].format(
            first=client.name.split()[0]), chance.uniform(3, 45))
        first_response = moment
        say("client", "Thank you!", chance.uniform(1, 10))
    resolved_at = moment + timedelta(minutes=chance.uniform(2, 30))
    rating = chance.choice((3, 4, 5, 5, 5, None)) if asks_for_person else chance.choice((4, 5, None))
    db.session.add(Resolution(
        conversation_id=conversation.id, resolved_by_id=admin.id, resolved_by_name=admin.name,
        opened_at=opened, first_response_at=first_response, resolved_at=resolved_at,
        bot_only=not asks_for_person, rating=rating,
        rating_comment="Quick and clear." if rating == 5 and chance.random() < 0.5 else None,
        rated_at=resolved_at + timedelta(minutes=2) if rating else None))
    return moment
