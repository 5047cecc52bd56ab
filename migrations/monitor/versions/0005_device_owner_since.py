"""Remember since when a device's owner has it, so a new owner sees nothing of the previous one's.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL: the device never had another owner, so all of its history is its owner's.
    op.execute("ALTER TABLE devices ADD COLUMN owner_since DATETIME NULL AFTER owner_id")


def downgrade() -> None:
    op.execute("ALTER TABLE devices DROP COLUMN owner_since")
