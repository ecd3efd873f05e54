"""Relay fixtures: an inbox URL for each backend (SQLite file, throwaway PostgreSQL)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from central.inbox import Inbox, open_inbox
from tests.support import postgres


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """URL of a database of this test session's own, dropped at the end."""
    problem = postgres.server_available()
    if problem is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL is unreachable at {postgres.ADMIN_URL}: {problem}")
        pytest.skip(f"PostgreSQL is unreachable: {problem}")
    name, url = postgres.create_database()
    try:
        yield url
    finally:
        postgres.drop_database(name)


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """The session's database, emptied for this test."""
    postgres.reset_database(pg_database)
    return pg_database


@pytest.fixture(params=["sqlite", "postgres"])
def inbox_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'inbox.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
async def inbox(inbox_url: str) -> AsyncIterator[Inbox]:
    opened = await open_inbox(inbox_url, relay_id="relay-test")
    try:
        yield opened
    finally:
        await opened.close()
