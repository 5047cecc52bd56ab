"""Known users: support's copy of each user's name, token version and deletion, from user events.

Revision ID: 0002_known_users
Revises: 0001_support_schema
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002_known_users"
down_revision = "0001_support_schema"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "known_users",
        sa.Column("user_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(120), nullable=False, server_default=""),
        sa.Column("token_version", sa.Integer, nullable=False, server_default="0"),
        sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("last_sequence", sa.BigInteger, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        mysql_engine="InnoDB",
    )


def downgrade() -> None:
    op.drop_table("known_users")
