"""The body of every history's env.py: run migrations online against its URL."""

from alembic import context
from sqlalchemy import engine_from_config, pool


def run_migrations() -> None:
    """Run the current history's migrations in one connection."""
    config = context.config
    connectable = engine_from_config(config.get_section(config.config_ini_section, {}),
                                     prefix="sqlalchemy.", poolclass=pool.NullPool)
    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=None)
        with context.begin_transaction():
            context.run_migrations()
