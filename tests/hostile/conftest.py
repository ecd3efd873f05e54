"""Hostile-input tests reuse the relay's inbox fixtures (SQLite file, throwaway PostgreSQL)."""

from tests.central.conftest import inbox, inbox_url, pg_database, pg_url

__all__ = ["inbox", "inbox_url", "pg_database", "pg_url"]
