"""Logs: JSON lines, correlation ids, redaction of cards, secrets and contacts, rotation."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from common.logs import (
    SafeRotatingFileHandler,
    bind,
    configure_logging,
    new_correlation_id,
)
from common.redact import redact_text, redact_value

SECRETS = {
    "card": "4111 1111 1111 1111",
    "password": "hunter2-very-secret",
    "token": "eyJhbGciOiJIUzI1NiJ9.payload.signature",
    "email": "jane.doe@example.com",
    "phone": "+49 30 1234567",
    "url_password": "s3cr3tpw",
}


@pytest.fixture
def logged(tmp_path: Path):  # type: ignore[no-untyped-def]
    console = io.StringIO()
    log_file = tmp_path / "logs" / "agent.log"
    configure_logging(level="debug", file=log_file, console_stream=console)
    yield log_file, console
    configure_logging(console=False)


def test_each_kind_of_secret_is_redacted_in_file_and_console(logged) -> None:  # type: ignore[no-untyped-def]
    log_file, console = logged
    log = logging.getLogger("tillbridge.test")
    log.info("Tender read. card=%s", SECRETS["card"])
    log.info("Broker login. password=%s", SECRETS["password"])
    log.info("Calling API. Authorization: Bearer %s", SECRETS["token"])
    log.info("Customer %s called from %s.", SECRETS["email"], SECRETS["phone"])
    log.info("Connecting to mqtts://store:%s@broker:8883", SECRETS["url_password"])
    log.info(
        "Structured.",
        extra={"client_secret": SECRETS["password"], "email": SECRETS["email"], "seq": 17},
    )
    try:
        raise ValueError(f"bad card {SECRETS['card']}")
    except ValueError:
        log.exception("Failed.")
    for handler in logging.getLogger().handlers:
        handler.flush()
    text = log_file.read_text() + console.getvalue()
    for name, secret in SECRETS.items():
        assert secret not in text, name
    assert "1111" in text  # last four survive
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    structured = next(line for line in lines if line["msg"] == "Structured.")
    assert structured["seq"] == 17
    assert structured["client_secret"] == "[redacted]"
    assert "error_trace" in lines[-1]


def test_correlation_id_is_bound_through_contextvars(logged) -> None:  # type: ignore[no-untyped-def]
    log_file, _ = logged
    cid = new_correlation_id()
    with bind(correlation_id=cid, file="sales.xml"):
        logging.getLogger("t").info("File taken.")
    logging.getLogger("t").info("Outside.")
    for handler in logging.getLogger().handlers:
        handler.flush()
    first, second = (json.loads(x) for x in log_file.read_text().splitlines())
    assert first["correlation_id"] == cid
    assert first["file"] == "sales.xml"
    assert "correlation_id" not in second


def test_redact_value_by_key() -> None:
    doc = {"broker": {"password": "x", "url": "mqtt://h"}, "customer": {"phone": "123"}}
    assert redact_value(doc) == {
        "broker": {"password": "[redacted]", "url": "mqtt://h"},
        "customer": {"phone": "[redacted]"},
    }
    assert redact_text("seq=2026-11-24 batch 123456") == "seq=2026-11-24 batch 123456"


def test_rollover_survives_a_locked_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On Windows a file open elsewhere cannot be renamed; rollover copies and truncates."""
    target = tmp_path / "agent.log"
    handler = SafeRotatingFileHandler(target, maxBytes=200, backupCount=3, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("rotation")
    log.propagate = False
    log.addHandler(handler)

    def locked(src: str, dst: str) -> None:
        raise PermissionError(32, "The process cannot access the file")

    monkeypatch.setattr("common.logs.os.replace", locked)
    try:
        for i in range(40):
            log.warning("line %03d %s", i, "x" * 20)
    finally:
        log.removeHandler(handler)
        handler.close()
    lines = []
    for path in sorted(tmp_path.glob("agent.log*")):
        lines += path.read_text().splitlines()
    # Backups beyond the count are gone by design; what remains has no gaps or doubles.
    numbers = sorted(int(line.split()[1]) for line in lines)
    assert numbers == list(range(numbers[0], 40))
    assert (tmp_path / "agent.log.1").exists()
