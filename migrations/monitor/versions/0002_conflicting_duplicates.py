"""Count conflicting duplicates per replica: the same reading key sent again with another value.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE replica_stats ADD COLUMN conflicting_duplicates BIGINT NOT NULL DEFAULT 0 "
               "AFTER duplicates")


def downgrade() -> None:
    op.execute("ALTER TABLE replica_stats DROP COLUMN conflicting_duplicates")
