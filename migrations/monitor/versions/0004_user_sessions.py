"""User sessions: the newest token version of each user, from the portal's user events.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE TABLE user_sessions ("
               "user_id INT NOT NULL PRIMARY KEY, "
               "token_version INT NOT NULL DEFAULT 0, "
               "deleted BOOLEAN NOT NULL DEFAULT FALSE, "
               "last_sequence BIGINT NOT NULL"
               ") ENGINE=InnoDB")


def downgrade() -> None:
    op.execute("DROP TABLE user_sessions")
