"""Throwaway PostgreSQL databases for tests: one per test session, dropped at the end.

The server defaults to 127.0.0.1:5432 with trust auth (user postgres); set
TILLBRIDGE_TEST_PG to another admin URL to use a different one. With CI=true an
unreachable server fails the tests instead of skipping them.
"""

from __future__ import annotations

import os
import secrets

import psycopg
from psycopg import sql

__all__ = ["ADMIN_URL", "create_database", "drop_database", "reset_database", "server_available"]

ADMIN_URL = os.environ.get("TILLBRIDGE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def server_available() -> str | None:
    """None when the server answers, else why not."""
    try:
        with psycopg.connect(ADMIN_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip() or type(exc).__name__
    return None


def _url_for(name: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


def create_database(prefix: str = "tb_test") -> tuple[str, str]:
    """(name, url) of a new empty database."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name, _url_for(name)


def drop_database(name: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def reset_database(url: str) -> None:
    """Empty a test database: drop and recreate its public schema."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
