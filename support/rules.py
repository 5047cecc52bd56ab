"""Bot rules in the database, seeded from `bot_rules.json`; synonyms come from that file."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from support import bot
from support.extensions import db
from support.models import BotRule

SEED_FILE = Path(__file__).resolve().parent / "bot_rules.json"


@cache
def seed_document() -> dict:
    """Return the parsed seed file (synonyms and rules)."""
    return json.loads(SEED_FILE.read_text(encoding="utf-8"))


@cache
def vocabulary() -> bot.Vocabulary:
    """Return the synonyms of the seed file as a matching vocabulary."""
    return bot.Vocabulary.from_mapping(seed_document()["synonyms"])


def seed_rules() -> int:
    """Insert the seed file's rules when the table is empty; return how many were added."""
    if db.session.scalar(sa.select(sa.func.count()).select_from(BotRule)):
        return 0
    rules = seed_document()["rules"]
    try:
        for rule in rules:
            record = BotRule(name=rule["name"], priority=rule["priority"], answer=rule["answer"],
                             action=rule.get("action", "reply"), enabled=True)
            record.patterns = rule["patterns"]
            db.session.add(record)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()  # another process seeded at the same moment
        return 0
    return len(rules)


def as_rule(record: BotRule) -> bot.Rule:
    """Return the matcher's view of a stored rule."""
    return bot.Rule(id=record.id, name=record.name, patterns=tuple(record.patterns), answer=record.answer,
                    action=record.action, priority=record.priority, enabled=record.enabled)


def all_rules() -> list[BotRule]:
    """Return every stored rule, in the order the bot tries them (disabled ones last)."""
    return list(db.session.scalars(sa.select(BotRule).order_by(
        BotRule.enabled.desc(), BotRule.priority.desc(), BotRule.id)))


def enabled_rules() -> list[bot.Rule]:
    """Return the enabled rules for matching."""
    return [as_rule(r) for r in db.session.scalars(sa.select(BotRule).where(BotRule.enabled.is_(True)))]


def parse_patterns(text: str) -> list[str]:
    """Return the patterns of a form field: one per line, blank lines ignored."""
    return [line.strip() for line in text.splitlines() if line.strip()][:50]


def move(record: BotRule, direction: str) -> None:
    """Move a rule one place up or down in the bot's order by swapping priorities."""
    ordered_records = [r for r in all_rules() if r.enabled == record.enabled]
    index = ordered_records.index(record)
    neighbour_index = index - 1 if direction == "up" else index + 1
    if not 0 <= neighbour_index < len(ordered_records):
        return
    neighbour = ordered_records[neighbour_index]
    if neighbour.priority == record.priority:
        # Equal priorities are ordered by id; make the order explicit first.
        if direction == "up":
            record.priority += 1
        else:
            record.priority -= 1
        return
    record.priority, neighbour.priority = neighbour.priority, record.priority
