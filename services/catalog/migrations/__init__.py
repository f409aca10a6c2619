"""Alembic migrations of the catalog schema (see `migrate.py` in services/catalog/db)."""
