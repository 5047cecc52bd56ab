"""Create the monitor's tables: readings, hourly consumption, devices, alerts, pipeline stats.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # kWh are DECIMAL(14,6): sums of readings stay exact, never float-rounded.
    op.execute("""
        CREATE TABLE readings (
            device_id CHAR(36) NOT NULL,
            timestamp_ms BIGINT NOT NULL,
            hour_start DATETIME NOT NULL,
            kwh DECIMAL(14,6) NOT NULL,
            -- The batch (transaction) that stored the row: lets the same transaction
            -- add exactly the rows it inserted to hourly_consumption.
            batch_id BINARY(16) NOT NULL,
            replica SMALLINT NOT NULL,
            stored_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
            PRIMARY KEY (device_id, timestamp_ms),
            KEY ix_readings_batch (batch_id)
        ) ENGINE=InnoDB
    """)
    op.execute("""
        CREATE TABLE hourly_consumption (
            device_id CHAR(36) NOT NULL,
            hour_start DATETIME NOT NULL,
            kwh DECIMAL(14,6) NOT NULL,
            PRIMARY KEY (device_id, hour_start)
        ) ENGINE=InnoDB
    """)
    op.execute("""
        CREATE TABLE devices (
            id CHAR(36) NOT NULL PRIMARY KEY,
            name VARCHAR(200) NOT NULL,
            owner_id INT NULL,
            max_hourly_kwh DECIMAL(14,6) NOT NULL,
            deleted BOOLEAN NOT NULL DEFAULT FALSE,
            last_sequence BIGINT NOT NULL,
            updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
                ON UPDATE CURRENT_TIMESTAMP(3),
            KEY ix_devices_owner (owner_id)
        ) ENGINE=InnoDB
    """)
    op.execute("""
        CREATE TABLE alerts (
            id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
            device_id CHAR(36) NOT NULL,
            hour_start DATETIME NOT NULL,
            owner_id INT NOT NULL,
            device_name VARCHAR(200) NOT NULL,
            kwh DECIMAL(14,6) NOT NULL,
            limit_kwh DECIMAL(14,6) NOT NULL,
            created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
            published_at DATETIME(3) NULL,
            read_at DATETIME(3) NULL,
            UNIQUE KEY uq_alerts_device_hour (device_id, hour_start),
            KEY ix_alerts_owner (owner_id, id),
            KEY ix_alerts_unpublished (published_at)
        ) ENGINE=InnoDB
    """)
    # Counters for the admin pipeline page: one row per replica (written by that
    # replica only) and one per balancer instance and replica.
    op.execute("""
        CREATE TABLE replica_stats (
            replica SMALLINT NOT NULL PRIMARY KEY,
            readings_stored BIGINT NOT NULL DEFAULT 0,
            duplicates BIGINT NOT NULL DEFAULT 0,
            unknown_device_readings BIGINT NOT NULL DEFAULT 0,
            alerts_raised BIGINT NOT NULL DEFAULT 0,
            updated_at DATETIME(3) NOT NULL
        ) ENGINE=InnoDB
    """)
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


def downgrade() -> None:
    for table in ("balancer_stats", "replica_stats", "alerts", "devices",
                  "hourly_consumption", "readings"):
        op.execute(f"DROP TABLE {table}")

