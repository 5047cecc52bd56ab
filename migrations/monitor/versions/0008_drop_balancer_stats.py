"""The balancer no longer writes into the monitor's database: drop balancer_stats.

Its routing counters travel in its view on `pipeline.status` (balancer/stats.py),
which the Pipeline page reads (monitor/pipeline_status.py).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP TABLE IF EXISTS balancer_stats")


def downgrade() -> None:
    op.execute("""
        CREATE TABLE balancer_stats (
            instance VARCHAR(64) NOT NULL,
            replica SMALLINT NOT NULL,
            strategy VARCHAR(32) NOT NULL,
            routed BIGINT NOT NULL,
            dead_lettered BIGINT NOT NULL,
            updated_at DATETIME(3) NOT NULL,
            PRIMARY KEY (instance, replica)
        ) ENGINE=InnoDB
    """)
