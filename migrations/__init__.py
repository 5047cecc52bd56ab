"""Alembic migrations: one history per service database (`web`, `support`, `monitor`)."""
