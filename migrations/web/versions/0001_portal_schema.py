"""Portal schema: users, devices, event outbox, login attempts, portal settings.

Revision ID: 0001_portal_schema
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_portal_schema"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("email", name="uq_users_email"),
        sa.CheckConstraint("role IN ('admin', 'client')", name="ck_users_role"),
        mysql_engine="InnoDB",
    )
    op.create_index("ix_users_name", "users", ["name"])
    op.create_table(
        "devices",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("address", sa.String(255), nullable=False),
        sa.Column("max_hourly_kwh", sa.Numeric(10, 3), nullable=False),
        sa.Column("owner_id", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL",
                                                          name="fk_devices_owner"), nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.CheckConstraint("max_hourly_kwh > 0", name="ck_devices_limit_positive"),
        mysql_engine="InnoDB",
    )
    op.create_index("ix_devices_owner_id", "devices", ["owner_id"])
    op.create_index("ix_devices_name", "devices", ["name"])
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("routing_key", sa.String(64), nullable=False),
        sa.Column("body", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("published_at", sa.DateTime, nullable=True),
        mysql_engine="InnoDB",
    )
    # The relay asks for "unpublished rows in id order" all the time.
    op.create_index("ix_outbox_unpublished", "outbox", ["published_at", "id"])
    op.create_table(
        "login_attempts",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("attempted_at", sa.DateTime, nullable=False),
        mysql_engine="InnoDB",
    )
    op.create_index("ix_login_attempts_key_time", "login_attempts", ["key", "attempted_at"])
    op.create_table(
        "portal_settings",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(255), nullable=False),
        mysql_engine="InnoDB",
    )


def downgrade() -> None:
    for table in ("portal_settings", "login_attempts", "outbox", "devices", "users"):
        op.drop_table(table)
