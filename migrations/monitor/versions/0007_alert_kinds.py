"""Early warnings live beside alerts: a kind per row and the projected crossing time.

A warning ("at this rate, the device passes its limit at about 14:47") is stored,
published and read like an alert, so it shares the alerts table, its exactly-once
publishing and its inbox. The unique key becomes (device, hour, kind): one alert
and at most one warning per device-hour. Rows from before are alerts.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        ALTER TABLE alerts
            ADD COLUMN kind ENUM('alert', 'warning') NOT NULL DEFAULT 'alert' AFTER hour_start,
            ADD COLUMN due_at DATETIME NULL AFTER limit_kwh,
            DROP INDEX uq_alerts_device_hour,
            ADD UNIQUE KEY uq_alerts_device_hour_kind (device_id, hour_start, kind)
    """)


def downgrade() -> None:
    op.execute("DELETE FROM alerts WHERE kind = 'warning'")
    op.execute("""
        ALTER TABLE alerts
            DROP INDEX uq_alerts_device_hour_kind,
            ADD UNIQUE KEY uq_alerts_device_hour (device_id, hour_start),
            DROP COLUMN due_at,
            DROP COLUMN kind
    """)
