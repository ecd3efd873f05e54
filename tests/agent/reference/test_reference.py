"""Reference data at the store without a broker: the writer loop stores the newest state
of each entity in reference.db (contact sealed) and writes it to the POS once, however
many versions came while it was away; a resend makes nothing new; a POS folder that is
away keeps it pending; a purge leaves no trace; a resync request closes when central's
answer arrives; a damaged reference.db is moved aside and asks for everything."""

from __future__ import annotations

import csv
import io
import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from agent._seal import Sealer
from agent.config import AgentConfig, DownlinkSettings, ReferenceSettings
from agent.downlink import Downlink, DownlinkStore
from agent.reference import Reference, ReferenceStore, answer_lookup, open_reference
from agent.writers import make_reference_writers, make_writer
from contract import DownMessage, ResyncDone
from tests.agent.downlink.orders import STORE, payload
from tests.agent.reference.refdata import ISSUED, customer, item, purge, ref

KEY = bytes(range(32))


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _config(tmp_path: Path, **reference: object) -> AgentConfig:
    settings = {
        "enabled": True,
        "folder": tmp_path / "ref-in",
        "customers": "customer_csv",
        "items": "micros_csv",
        **reference,
    }
    return AgentConfig(
        store=STORE,
        data_dir=tmp_path / "data",
        downlink=DownlinkSettings(enabled=True, folder=tmp_path / "in", retry_min_seconds=2),
        reference=ReferenceSettings.model_validate(settings),
    )


@pytest.fixture
async def downlink(tmp_path: Path) -> AsyncIterator[Downlink]:
    config = _config(tmp_path)
    (tmp_path / "ref-in").mkdir()
    reference = await open_reference(config, KEY)
    store = await DownlinkStore.open(config.downlink_path)
    yield Downlink(config, store, make_writer(config.downlink), clock=Clock(), reference=reference)
    await store.close()
    await reference.store.close()


def _ref(downlink: Downlink) -> Reference:
    assert downlink.reference is not None
    return downlink.reference


def _clock(downlink: Downlink) -> Clock:
    assert isinstance(downlink.clock, Clock)
    return downlink.clock


def _files(folder: Path, prefix: str) -> list[Path]:
    return sorted(folder.glob(f"{prefix}_*"))


def _rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))


async def test_back_from_an_absence_each_entity_is_written_once_as_it_is_now(
    tmp_path: Path, downlink: Downlink
) -> None:
    folder = tmp_path / "ref-in"
    messages = [
        ref(1, customer("003A1", "1", tier="silver")),
        ref(2, item("4711", "1", amount="18.90")),
        ref(3, customer("003B2", "1")),
        ref(4, customer("003A1", "2", tier="gold")),
        ref(5, item("4711", "2", amount="19.90")),
        ref(6, customer("003A1", "3", tier="platinum")),
    ]
    ack = await downlink.handle(payload(*messages))
    assert ack is not None
    assert ack.through == 6
    await downlink.write_due()

    (customers,) = _files(folder, "customers")
    rows = _rows(customers)
    assert [(r["customer_id"], r["tier"], r["action"]) for r in rows] == [
        ("003B2", "gold", "U"),
        ("003A1", "platinum", "U"),
    ]
    assert rows[1]["email"] == "erika.003a1@example.org"
    assert rows[1]["preferences"] == "newsletter=no;receipt=email"
    (prices,) = _files(folder, "menuitemprices")
    assert prices.read_text().splitlines() == [
        "Record Type,Revenue Center Number,Menu Item Number,Price Level,Level Name,Price,"
        "Cost,Effective From",
        # 08:00 UTC in the store's zone (UTC here); the staff group's price is left out.
        "MNPR,1,4711,1,,19.90,,20261205080000",
    ]
    summary = await downlink.summary()
    assert (summary.received, summary.written, summary.waiting) == (6, 6, 0)

    # Every row is settled: the newest where it went, the older ones as superseded, and
    # no body is kept in downlink.db (the state lives on in reference.db, sealed).
    with sqlite3.connect(downlink.store.path) as conn:
        settled = dict(conn.execute("SELECT seq, written_as FROM downlink").fetchall())
        bodies = conn.execute("SELECT count(*) FROM downlink WHERE body != ''").fetchone()[0]
    assert settled[1] == "superseded by seq 4"
    assert settled[4] == "superseded by seq 6"
    assert settled[2] == "superseded by seq 5"
    assert settled[6] == customers.name
    assert settled[5] == prices.name
    assert bodies == 0

    found = await _ref(downlink).store.customers_by_loyalty("L-003A1")
    assert [(c["tier"], c["email"], c["version"]) for c in found] == [
        ("platinum", "erika.003a1@example.org", "3")
    ]
    assert (await _ref(downlink).store.item("4711") or {})["prices"][0]["amount"] == "19.90"

    # Contact fields are sealed at rest: not in the database file in the clear.
    raw = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("reference.db*") if p.is_file())
    assert b"erika.003a1@example.org" not in raw
    assert b"Mustermann" not in raw
    assert b"L-003A1" in raw  # the loyalty id stays readable: it is what the till looks up

    # Central did not hear the answer and sends everything again: nothing new is written.
    before = sorted(p.name for p in folder.iterdir())
    await downlink.handle(payload(*messages))
    await downlink.write_due()
    assert sorted(p.name for p in folder.iterdir()) == before


async def test_a_newer_state_is_never_turned_back(downlink: Downlink) -> None:
    await downlink.handle(payload(ref(7, customer("003A1", "7", tier="gold"))))
    await downlink.write_due()
    # An older state applied again (a pass repeated after a crash) keeps the newer one.
    from agent.reference import RefState

    await _ref(downlink).store.apply([RefState(3, customer("003A1", "3", tier="bronze"), ISSUED)])
    (found,) = await _ref(downlink).store.customers_by_loyalty("L-003A1")
    assert found["tier"] == "gold"


async def test_a_pos_folder_that_is_away_keeps_reference_data_pending(
    tmp_path: Path, downlink: Downlink
) -> None:
    folder = tmp_path / "ref-in"
    folder.rmdir()
    await downlink.handle(payload(ref(1, customer("003A1", "1")), ref(2, item("4711"))))
    await downlink.write_due()
    summary = await downlink.summary()
    assert summary.waiting == 2
    assert "does not exist" in (await downlink.store.unwritten())[0].last_error  # type: ignore[operator]

    # A newer state arrives while the folder is away; when it is back, only it is written.
    await downlink.handle(payload(ref(3, customer("003A1", "2", tier="platinum"))))
    folder.mkdir()
    await downlink.write_due()
    assert (await downlink.summary()).waiting == 3  # not due yet: backoff
    _clock(downlink).now += 10
    await downlink.write_due()
    assert (await downlink.summary()).waiting == 0
    (customers,) = _files(folder, "customers")
    assert [r["tier"] for r in _rows(customers)] == ["platinum"]
    assert len(_files(folder, "menuitemprices")) == 1


async def test_a_purge_leaves_no_trace_at_the_store(tmp_path: Path, downlink: Downlink) -> None:
    folder = tmp_path / "ref-in"
    await downlink.handle(payload(ref(1, customer("003A1")), ref(2, customer("003B2"))))
    await downlink.write_due()
    (pending,) = _files(folder, "customers")
    assert {r["customer_id"] for r in _rows(pending)} == {"003A1", "003B2"}

    await downlink.handle(payload(ref(3, purge("003A1"))))
    await downlink.write_due()

    # The file the POS has not taken yet no longer holds the customer...
    assert [r["customer_id"] for r in _rows(pending)] == ["003B2"]
    # ...the POS is told to delete it, by id only...
    (deleted,) = [p for p in _files(folder, "customers") if p != pending]
    assert _rows(deleted) == [
        {
            **dict.fromkeys(_rows(deleted)[0], ""),
            "action": "D",
            "source": "salesforce",
            "customer_id": "003A1",
        }
    ]
    # ...and neither reference.db nor downlink.db holds anything of it.
    assert await _ref(downlink).store.customers_by_loyalty("L-003A1") == []
    with sqlite3.connect(downlink.store.path) as conn:
        assert conn.execute("SELECT count(*) FROM downlink WHERE body != ''").fetchone()[0] == 0
    raw = b"".join(p.read_bytes() for p in (tmp_path / "data").iterdir() if p.is_file())
    assert b"erika.003a1@example.org" not in raw
    assert b"003A1" not in raw  # not even the CRM's id: message keys are hashed
    # A resend of a purged customer's messages is still known: held, not a clash.
    ack = await downlink.handle(payload(ref(1, customer("003A1")), ref(3, purge("003A1"))))
    assert ack is not None
    assert ack.committed == [1, 3]
    assert downlink.clashes == 0

    # A file holding only the purged customer is removed, not left empty.
    await downlink.handle(payload(ref(4, customer("003C3"))))
    await downlink.write_due()
    only = _files(folder, "customers")[-1]
    assert [r["customer_id"] for r in _rows(only)] == ["003C3"]
    await downlink.handle(payload(ref(5, purge("003C3"))))
    await downlink.write_due()
    assert not only.exists()


async def test_lookup_answers_the_till(downlink: Downlink) -> None:
    await downlink.handle(payload(ref(1, customer("003A1")), ref(2, item("4711"))))
    await downlink.write_due()
    store = _ref(downlink).store
    code, body = await answer_lookup(store, "/customers?loyalty_id=L-003A1")
    assert code == 200
    assert body["customers"][0]["phone"] == "+49 30 1234567"
    assert (await answer_lookup(store, "/customers?loyalty_id=nobody")) == (200, {"customers": []})
    assert (await answer_lookup(store, "/customers"))[0] == 400
    code, body = await answer_lookup(store, "/items/4711")
    assert code == 200
    assert body["commerce_sku"] == "ESP-4711"
    assert (await answer_lookup(store, "/items/999"))[0] == 404
    assert (await answer_lookup(None, "/items/4711"))[0] == 404


async def test_a_resync_request_closes_when_central_answers(downlink: Downlink) -> None:
    store = _ref(downlink).store
    asked = await store.pending_resync()
    assert sorted(asked) == ["customers", "items"]  # a new reference.db asks at start
    since = max(asked.values())

    # Messages queued before the request do not answer it...
    await downlink.handle(payload(ref(1, customer("003A1"), issued_at=ISSUED)))
    await downlink.write_due()
    assert sorted(await store.pending_resync()) == ["customers", "items"]
    # ...one queued after it does, for its kind only.
    await downlink.handle(payload(ref(2, item("4711"), issued_at=since + timedelta(seconds=1))))
    await downlink.write_due()
    assert sorted(await store.pending_resync()) == ["customers"]


async def test_central_saying_all_is_sent_closes_a_request_it_had_nothing_for(
    downlink: Downlink,
) -> None:
    store = _ref(downlink).store
    asked = await store.pending_resync()
    done = ResyncDone(scope="customers", requested_at=asked["customers"])
    message = DownMessage(
        seq=1,
        kind="resync_done",
        key="resync_done:customers",
        issued_at=ISSUED,
        body=done.model_dump(mode="json"),
    )
    await downlink.handle(payload(message))
    await downlink.write_due()
    assert sorted(await store.pending_resync()) == ["items"]
    assert (await downlink.summary()).waiting == 0
    # An answer to an earlier request does not close one made since.
    later = await store.request_resync(["customers"], "asked again")
    old = done.model_copy(update={"requested_at": later - timedelta(hours=1)})
    again = message.model_copy(
        update={"seq": 2, "key": "resync_done:old", "body": old.model_dump(mode="json")}
    )
    await downlink.handle(payload(again))
    await downlink.write_due()
    assert sorted(await store.pending_resync()) == ["customers", "items"]


async def test_a_damaged_reference_store_is_moved_aside_and_asks_for_everything(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path, customers="none", items="none", folder=None)
    first = await ReferenceStore.open(config.reference_path, Sealer(KEY))
    assert first.fresh
    await first.close()
    again = await ReferenceStore.open(config.reference_path, Sealer(KEY))
    assert not again.fresh
    await again.close()

    config.reference_path.write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        config.reference_path.with_name(config.reference_path.name + suffix).unlink(missing_ok=True)
    reference = await open_reference(config, KEY)
    try:
        assert reference.store.fresh
        assert sorted(await reference.store.pending_resync()) == ["customers", "items"]
        assert list((tmp_path / "data").glob("reference.db.damaged-*"))
        assert make_reference_writers(config) == []
    finally:
        await reference.store.close()


class _Peer:
    def __init__(self, peer: object) -> None:
        self.peer = peer

    def get_extra_info(self, name: str) -> object:
        return self.peer if name == "peername" else None


@pytest.mark.parametrize(
    ("peer", "allowed"),
    [
        (("127.0.0.1", 50000), True),
        (("127.8.9.10", 50000), True),
        (("::1", 50000, 0, 0), True),
        (("::ffff:127.0.0.1", 50000, 0, 0), True),
        (("192.168.1.20", 50000), False),
        (("::ffff:10.0.0.5", 50000, 0, 0), False),
        (("fe80::1%eth0", 50000, 0, 2), False),
        (None, False),
    ],
)
def test_only_the_loopback_address_is_answered(peer: object, allowed: bool) -> None:
    from agent.daemon import _from_loopback

    assert _from_loopback(_Peer(peer)) is allowed  # type: ignore[arg-type]


def test_the_poslog_item_maintenance_document() -> None:
    from xml.etree import ElementTree as ET

    from agent.writers.poslog import NAMESPACE, PoslogItemWriter

    data = PoslogItemWriter(Path("."), STORE).render(
        [(5, item("4711", "2", amount="19.90", active=False))]
    )
    ns = {"a": NAMESPACE}
    root = ET.fromstring(data)  # noqa: S314 - our own output
    entry = root.find("a:Transaction/a:ItemMaintenance/a:Item", ns)
    assert entry is not None
    assert entry.get("Action") == "AddUpdate"
    assert entry.findtext("a:ItemID", namespaces=ns) == "4711"
    assert entry.findtext("a:POSIdentity/a:POSItemID", namespaces=ns) == "ESP-4711"
    assert entry.findtext("a:Status", namespaces=ns) == "Inactive"
    prices = entry.findall("a:RegularSalesUnitPrice", ns)
    assert [(p.text, p.get("Channel"), p.get("CustomerGroup")) for p in prices] == [
        ("19.90", "store-0042", None),
        ("16.90", None, "staff"),
    ]
    assert root.findtext("a:Transaction/a:RetailStoreID", namespaces=ns) == STORE


def test_reference_data_needs_the_downlink_and_a_folder_for_its_writers(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="travels on the downlink"):
        AgentConfig(store=STORE, reference=ReferenceSettings(enabled=True))
    with pytest.raises(ValidationError, match="needs `folder`"):
        ReferenceSettings(enabled=True, customers="customer_csv")


async def test_a_non_numeric_pos_item_id_is_left_out_of_the_micros_file(
    tmp_path: Path, downlink: Downlink
) -> None:
    await downlink.handle(payload(ref(1, item("ABC-1")), ref(2, item("815"))))
    await downlink.write_due()
    (prices,) = _files(tmp_path / "ref-in", "menuitemprices")
    assert [line.split(",")[2] for line in prices.read_text().splitlines()[1:]] == ["815"]
    assert await _ref(downlink).store.item("ABC-1") is not None  # still there for lookup


async def test_a_pass_repeated_after_a_crash_writes_no_second_file(
    tmp_path: Path, downlink: Downlink, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "ref-in"
    await downlink.handle(payload(ref(1, customer("003A1")), ref(2, item("4711"))))

    async def crash(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")  # the files are out, the marks not

    settle = downlink.store.settle_reference
    monkeypatch.setattr(downlink.store, "settle_reference", crash)
    with pytest.raises(sqlite3.OperationalError):
        await downlink.write_due()
    written = sorted(p.name for p in folder.iterdir())
    assert len(written) == 2
    assert (await downlink.summary()).waiting == 2

    monkeypatch.setattr(downlink.store, "settle_reference", settle)
    await downlink.write_due()
    assert sorted(p.name for p in folder.iterdir()) == written
    assert (await downlink.summary()).waiting == 0


async def test_status_of_a_stopped_agent_reads_reference_db(
    tmp_path: Path, downlink: Downlink
) -> None:
    from agent.support import reference_stats

    await downlink.handle(payload(ref(1, customer("003A1")), ref(2, item("4711"))))
    await downlink.write_due()
    stats = reference_stats(downlink.config)
    assert stats is not None
    assert (stats["customers"], stats["items"]) == (1, 1)
    assert stats["last_change_at"] is not None
    assert sorted(stats["resync"]) == ["customers", "items"]  # asked at the first start
    assert reference_stats(_config(tmp_path, enabled=False, customers="none", items="none")) is None


async def test_a_version_the_pos_was_given_is_not_written_again(
    tmp_path: Path, downlink: Downlink
) -> None:
    folder = tmp_path / "ref-in"
    await downlink.handle(payload(ref(1, customer("003A1", "1")), ref(2, item("4711"))))
    await downlink.write_due()
    assert len(_files(folder, "customers")) == len(_files(folder, "menuitemprices")) == 1
    # A resync answer (or a resend under a new seq) of the same versions: nothing new.
    await downlink.handle(payload(ref(3, customer("003A1", "1")), ref(4, item("4711"))))
    await downlink.write_due()
    assert (await downlink.summary()).waiting == 0
    assert len(_files(folder, "customers")) == len(_files(folder, "menuitemprices")) == 1
    # A new version is written.
    await downlink.handle(payload(ref(5, customer("003A1", "2", tier="platinum"))))
    await downlink.write_due()
    newest = sorted(_files(folder, "customers"))[-1]
    assert [r["tier"] for r in _rows(newest)] == ["platinum"]
