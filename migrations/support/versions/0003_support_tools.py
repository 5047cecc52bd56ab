"""Administrators' tools: canned replies, private notes, resolutions with ratings, known users' roles.

Also the indexes of the inbox's filters and search: conversations by assignee and by
client name.

Revision ID: 0003_support_tools
Revises: 0002_known_users
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0003_support_tools"
down_revision = "0002_known_users"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "canned_replies",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("title", sa.String(80), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.UniqueConstraint("title", name="uq_canned_replies_title"),
        mysql_charset="utf8mb4",
    )
    op.create_table(
        "conversation_notes",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("conversation_id", sa.BigInteger,
                  sa.ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False),
        sa.Column("author_id", sa.Integer, nullable=False),
        sa.Column("author_name", sa.String(120), nullable=False, server_default=""),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.CheckConstraint("CHAR_LENGTH(body) BETWEEN 1 AND 2000", name="ck_conversation_notes_body_length"),
        mysql_charset="utf8mb4",
    )
    op.create_index("ix_conversation_notes_conversation_id_id", "conversation_notes",
                    ["conversation_id", "id"])
    op.create_table(
        "resolutions",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("conversation_id", sa.BigInteger,
                  sa.ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False),
        sa.Column("resolved_by_id", sa.Integer, nullable=True),
        sa.Column("resolved_by_name", sa.String(120), nullable=True),
        sa.Column("opened_at", Timestamp, nullable=False),
        sa.Column("first_response_at", Timestamp, nullable=True),
        sa.Column("resolved_at", Timestamp, nullable=False),
        sa.Column("bot_only", sa.Boolean, nullable=False),
        sa.Column("rating", sa.SmallInteger, nullable=True),
        sa.Column("rating_comment", sa.Text, nullable=True),
        sa.Column("rated_at", Timestamp, nullable=True),
        sa.CheckConstraint("rating IS NULL OR rating BETWEEN 1 AND 5", name="ck_resolutions_rating"),
        mysql_charset="utf8mb4",
    )
    op.create_index("ix_resolutions_conversation_id_resolved_at", "resolutions",
                    ["conversation_id", "resolved_at"])
    op.create_index("ix_resolutions_resolved_at", "resolutions", ["resolved_at"])
    op.create_index("ix_resolutions_opened_at", "resolutions", ["opened_at"])
    op.add_column("known_users", sa.Column("role", sa.String(8), nullable=True))
    # The inbox's "mine" filter and its search by client name.
    op.create_index("ix_conversations_assigned_admin_id", "conversations", ["assigned_admin_id"])
    op.create_index("ix_conversations_client_name", "conversations", ["client_name"])


def downgrade() -> None:
    op.drop_index("ix_conversations_client_name", "conversations")
    op.drop_index("ix_conversations_assigned_admin_id", "conversations")
    op.drop_column("known_users", "role")
    op.drop_table("resolutions")
    op.drop_table("conversation_notes")
    op.drop_table("canned_replies")
