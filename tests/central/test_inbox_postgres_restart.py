"""The PostgreSQL inbox outlives its server: on a server of the test's own, crashed
(`pg_ctl stop -m immediate`, connections cut) and started again, calls fail while it is
away and work again once it is back; committed records survive the crash."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from central.inbox import open_inbox
from lab.postgres import PostgresCluster
from tests.central.test_inbox_contract import sales


@pytest.fixture
def cluster() -> Iterator[PostgresCluster]:
    server = PostgresCluster()
    server.start()
    try:
        yield server
    finally:
        server.remove()


async def test_the_inbox_heals_after_its_server_crashed(cluster: PostgresCluster) -> None:
    inbox = await open_inbox(cluster.url, relay_id="r1")
    try:
        await inbox.insert_batch("0042", sales("0042", range(1, 6)))
        cluster.crash()
        for _ in range(3):  # every pooled connection is dead, and so is the server
            with pytest.raises(psycopg.OperationalError):
                await inbox.insert_batch("0042", sales("0042", range(6, 8)))
        cluster.start()
        await inbox.insert_batch("0042", sales("0042", range(6, 11)))
        stats = await inbox.stats()
        assert stats["records"] == 10
        (store,) = await inbox.stores()
        assert store.contiguous_seq == 10
    finally:
        await inbox.close()
