"""Alembic migrations of the Claire schema (run them with ``claire db upgrade``)."""
