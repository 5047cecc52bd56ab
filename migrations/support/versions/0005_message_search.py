"""The inbox's search over message text: a FULLTEXT index on messages.body.

A LIKE '%word%' over every message took a second on 100,000 messages
(bench/support_tools.py); the index answers by the words' prefixes instead.

Revision ID: 0005_message_search
Revises: 0004_spend_rule
Create Date: 2026-12-02
"""

from alembic import op

revision = "0005_message_search"
down_revision = "0004_spend_rule"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ft_messages_body", "messages", ["body"], mysql_prefix="FULLTEXT")


def downgrade() -> None:
    op.drop_index("ft_messages_body", "messages")
