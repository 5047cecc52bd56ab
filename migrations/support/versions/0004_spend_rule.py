"""The bot's rule for spending questions ("how much did I spend this month?") on installations
whose rules were seeded before it existed.

An empty rules table is left alone: the seed file, which has the rule, fills it at start-up.
The rule is written out here rather than read from the seed file, so that this migration
does the same thing whatever the file says later.

Revision ID: 0004_spend_rule
Revises: 0003_support_tools
Create Date: 2026-12-02
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0004_spend_rule"
down_revision = "0003_support_tools"
branch_labels = None
depends_on = None

RULE_NAME = "what it costs"
PATTERNS = ["spend", "how much + euro", "how much + lei", "how much + ron", "price"]
ANSWER = "What your consumption cost, with the tariff in force at each hour:"


def upgrade() -> None:
    connection = op.get_bind()
    rules = connection.execute(sa.text("SELECT COUNT(*) FROM bot_rules")).scalar()
    same = sa.text("SELECT COUNT(*) FROM bot_rules WHERE name = :name OR action = 'spend'")
    exists = connection.execute(same, {"name": RULE_NAME}).scalar()
    if rules and not exists:
        connection.execute(sa.text(
            "INSERT INTO bot_rules (name, priority, patterns, answer, action, enabled, updated_at) "
            "VALUES (:name, 76, :patterns, :answer, 'spend', TRUE, UTC_TIMESTAMP(6))"),
            {"name": RULE_NAME, "patterns": json.dumps(PATTERNS), "answer": ANSWER})


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM bot_rules WHERE action = 'spend'"))
