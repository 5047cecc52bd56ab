"""Each user's time zone and notification preference (the Profile page).

`timezone` is an IANA name (at most 64 characters, validated with zoneinfo by the
portal); NULL until the browser reports it at the first sign-in. `notify_browser`
is the user's opt-in to browser notifications for alerts and warnings.

Revision ID: 0003_user_preferences
Revises: 0002_sessions
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_user_preferences"
down_revision = "0002_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("timezone", sa.String(64), nullable=True))
    op.add_column("users", sa.Column("notify_browser", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    op.drop_column("users", "notify_browser")
    op.drop_column("users", "timezone")
