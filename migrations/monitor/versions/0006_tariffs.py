"""Tariffs: a price per kWh (flat, or time-of-use bands) in force from a start date on.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Prices are DECIMAL(12,6) like kWh: an hour's cost (kWh × price) is exact.
    # valid_from is a date in the tariff's own zone; starts_at is that date's local
    # midnight in UTC, the instant from which hours are priced by this tariff.
    op.execute("""
        CREATE TABLE tariffs (
            id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
            name VARCHAR(80) NOT NULL,
            currency CHAR(3) NOT NULL,
            time_zone VARCHAR(64) NOT NULL,
            valid_from DATE NOT NULL,
            starts_at DATETIME NOT NULL,
            base_price DECIMAL(12,6) NOT NULL,
            created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
            UNIQUE KEY uq_tariffs_starts_at (starts_at)
        ) ENGINE=InnoDB
    """)
    # A band prices the whole local hours [start_hour, end_hour) of its weekdays
    # (bit n of `weekdays` is weekday n, Monday = 0); other hours cost base_price.
    op.execute("""
        CREATE TABLE tariff_bands (
            id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
            tariff_id INT NOT NULL,
            name VARCHAR(40) NOT NULL,
            weekdays TINYINT UNSIGNED NOT NULL,
            start_hour TINYINT UNSIGNED NOT NULL,
            end_hour TINYINT UNSIGNED NOT NULL,
            price DECIMAL(12,6) NOT NULL,
            CONSTRAINT fk_tariff_bands_tariff FOREIGN KEY (tariff_id)
                REFERENCES tariffs (id) ON DELETE CASCADE
        ) ENGINE=InnoDB
    """)


def downgrade() -> None:
    op.execute("DROP TABLE tariff_bands")
    op.execute("DROP TABLE tariffs")
