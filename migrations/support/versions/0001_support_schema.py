"""Support schema: conversations, messages, read state, bot rules, presence.

Revision ID: 0001_support_schema
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001_support_schema"
down_revision = None
branch_labels = None
depends_on = None

Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("client_id", sa.Integer, nullable=False),
        sa.Column("client_name", sa.String(120), nullable=False, server_default=""),
        sa.Column("client_timezone", sa.String(64), nullable=True),
        sa.Column("state", sa.String(16), nullable=False, server_default="bot"),
        sa.Column("assigned_admin_id", sa.Integer, nullable=True),
        sa.Column("assigned_admin_name", sa.String(120), nullable=True),
        sa.Column("waiting_since", Timestamp, nullable=True),
        sa.Column("last_message_at", Timestamp, nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.UniqueConstraint("client_id", name="uq_conversations_client_id"),
        sa.CheckConstraint("state IN ('bot', 'waiting', 'assigned', 'resolved')",
                           name="ck_conversations_state"),
        mysql_charset="utf8mb4",
    )
    op.create_index("ix_conversations_state_last_message_at", "conversations",
                    ["state", "last_message_at"])
    op.create_table(
        "messages",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("conversation_id", sa.BigInteger,
                  sa.ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False),
        sa.Column("sender_id", sa.Integer, nullable=True),
        sa.Column("sender_role", sa.String(8), nullable=False),
        sa.Column("sender_name", sa.String(120), nullable=False, server_default=""),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("client_message_id", sa.String(64), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.UniqueConstraint("sender_id", "client_message_id", name="uq_messages_sender_client_id"),
        sa.CheckConstraint("sender_role IN ('client', 'admin', 'bot')", name="ck_messages_sender_role"),
        sa.CheckConstraint("CHAR_LENGTH(body) BETWEEN 1 AND 2000", name="ck_messages_body_length"),
        mysql_charset="utf8mb4",
    )
    op.create_index("ix_messages_conversation_id_id", "messages", ["conversation_id", "id"])
    op.create_table(
        "read_state",
        sa.Column("conversation_id", sa.BigInteger,
                  sa.ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("participant_id", sa.Integer, primary_key=True),
        sa.Column("participant_role", sa.String(8), nullable=False),
        sa.Column("last_read_message_id", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("updated_at", Timestamp, nullable=False),
        mysql_charset="utf8mb4",
    )
    op.create_table(
        "bot_rules",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
        sa.Column("patterns", sa.Text, nullable=False),
        sa.Column("answer", sa.Text, nullable=False),
        sa.Column("action", sa.String(32), nullable=False, server_default="reply"),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.UniqueConstraint("name", name="uq_bot_rules_name"),
        mysql_charset="utf8mb4",
    )
    op.create_table(
        "presence",
        sa.Column("instance", sa.String(120), primary_key=True),
        sa.Column("admin_ids", sa.Text, nullable=False),
        sa.Column("seen_at", Timestamp, nullable=False),
        mysql_charset="utf8mb4",
    )


def downgrade() -> None:
    op.drop_table("presence")
    op.drop_table("bot_rules")
    op.drop_table("read_state")
    op.drop_table("messages")
    op.drop_index("ix_conversations_state_last_message_at", table_name="conversations")
    op.drop_table("conversations")
