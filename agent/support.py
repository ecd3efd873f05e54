"""Field support on a store PC: `doctor` (self-check with the fix for each failure),
`logs` (filter the JSON log files) and `bundle` (a redacted zip to send to support).

Nothing here needs the daemon to be running, and nothing here writes to the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import os
import platform
import re
import shutil
import sqlite3
import ssl
import stat
import sys
import time
import tomllib
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

from agent import _acl, _loop
from agent._probe import scheme_mismatch
from agent._seal import SealError, key_id, load_key
from agent._version import __version__
from agent.config import AgentConfig
from agent.sources import (
    ERROR_SUFFIX,
    archive_days,
    folder_problem,
    missing_drive_hint,
    sealed_key_ids,
)
from common.redact import redact_text, redact_value

__all__ = ["Check", "bundle", "doctor", "outbox_stats", "parse_since", "read_logs"]

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
# The names people type for them (syslog's and Python's own).
_LEVEL_ALIASES = {"warn": "warning", "err": "error", "crit": "critical", "fatal": "critical"}


def log_level(name: str) -> str:
    """A level name as the logs write it, from any usual spelling; ValueError otherwise."""
    wanted = name.strip().lower()
    wanted = _LEVEL_ALIASES.get(wanted, wanted)
    if wanted not in _LEVELS:
        raise ValueError(f"unknown level {name!r}: use one of {', '.join(_LEVELS)} (or warn, err)")
    return wanted


_DURATION = re.compile(r"^(\d+)\s*([smhd])$")


@dataclasses.dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


# -- doctor ----------------------------------------------------------------------------------


def _writable(folder: Path, *, protect: bool = False) -> str | None:
    """None when a file can be written in `folder`, made (readable by the agent alone
    when `protect`) if it is not there yet; else why not."""
    try:
        if protect and not folder.exists():
            folder.mkdir(parents=True)
            _acl.protect_folder(folder)
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".tillbridge-doctor"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _folder_checks(config: AgentConfig) -> Iterator[Check]:
    problem = _writable(config.data_dir, protect=True)
    yield Check(
        "data folder",
        problem is None,
        f"{config.data_dir}" + (f": {problem}" if problem else " is writable"),
        "Give the service user write access to data_dir, or point data_dir elsewhere.",
    )
    for source in config.sources:
        folder = Path(source.path)
        problem = folder_problem(folder)
        if problem is not None:
            if missing_drive_hint(folder):
                fix = (
                    "Set the source's path to the share's UNC path (\\\\server\\share\\folder) "
                    "and give the service's account access to the share."
                )
            elif problem == "permission denied":
                fix = "Give the service user read and write access to the folder."
            else:
                fix = (
                    "Create the export folder or correct the source's path (a link that loops "
                    "or leads nowhere: point it at the real folder; UNC shares: check the "
                    "service user can reach the share)."
                )
            yield Check(f"source {source.name}", False, f"{folder}: {problem}", fix)
            continue
        problem = _writable(folder)
        yield Check(
            f"source {source.name}",
            problem is None,
            f"{folder}" + (f": {problem}" if problem else " is readable and writable"),
            "Give the service user read and write access (files are moved to the archive).",
        )
    down = config.downlink
    if down.enabled and down.writer == "file" and down.folder is not None:
        if not down.folder.is_dir():
            yield Check(
                "order import folder",
                False,
                f"{down.folder} does not exist or is not reachable; orders wait in downlink.db",
                "Create the POS's order import folder or correct [agent.downlink] folder.",
            )
        else:
            problem = _writable(down.folder)
            yield Check(
                "order import folder",
                problem is None,
                f"{down.folder}" + (f": {problem}" if problem else " is writable"),
                "Give the service user write access to the POS's order import folder.",
            )
    ref = config.reference
    if ref.enabled and ref.folder is not None:
        problem = (
            _writable(ref.folder)
            if ref.folder.is_dir()
            else "does not exist or is not reachable; reference data waits in downlink.db"
        )
        yield Check(
            "reference import folder",
            problem is None,
            f"{ref.folder}" + (f": {problem}" if problem else " is writable"),
            "Create the POS's reference import folder, give the service user write access, "
            "or correct [agent.reference] folder.",
        )


def _protected(config: AgentConfig) -> list[tuple[str, Path]]:
    """What only the agent may read: its secrets, its data folder and what is in it that a
    POS file or a record passed through (the outbox and its journal, the quarantine, the
    archive with every day folder and file, and the quarantined files: a moved file keeps
    the mode, or on Windows the ACL, it had in the POS folder unless the agent set it)."""
    data = config.data_dir
    outbox = config.outbox_path
    items = [
        ("data folder", data),
        ("outbox key", config.outbox_key_file),
        ("password file", config.broker.password_file),
        ("TLS key", config.broker.key_file),
        ("outbox", outbox),
        ("outbox journal", outbox.with_name(outbox.name + "-wal")),
        ("outbox journal", outbox.with_name(outbox.name + "-shm")),
        ("quarantine", config.quarantine_dir),
        ("archive", config.archive_dir),
    ]
    for _day, folder in archive_days(config.archive_dir):
        items.append(("archive day", folder))
        items += [("archived file", path) for path in sorted(folder.rglob("*")) if path.is_file()]
    if config.quarantine_dir.is_dir():  # refused POS files: card numbers as the POS wrote them
        items += [
            ("quarantined file", path)
            for path in sorted(config.quarantine_dir.iterdir())
            if path.is_file() and not path.name.endswith(ERROR_SUFFIX)
        ]
    if not config.log_file.is_relative_to(data):
        items.append(("log file", config.log_file))
    return [(label, path) for label, path in items if path is not None and path.exists()]


_SHOWN = 5  # exposed paths named one by one; the rest are counted


def _config_problem(config_file: Path | None, config: AgentConfig) -> str | None:
    """The config file may be read by others (it names folders and the broker), but never
    written by them (they could send the store's sales elsewhere), nor read when it holds
    the MQTT password itself. POSIX modes; on Windows the installer sets its ACL."""
    if config_file is None or sys.platform == "win32":
        return None
    try:
        mode = stat.S_IMODE(config_file.stat().st_mode)
    except OSError:
        return None
    if mode & 0o022:
        return f"config file {config_file}: writable by other users (mode {mode:04o})"
    if mode & 0o077 and _holds_password(config_file):
        return (
            f"config file {config_file}: holds the MQTT password, open to others (mode {mode:04o})"
        )
    return None


def _holds_password(config_file: Path) -> bool:
    """Whether the file itself sets the MQTT password (not a password file, nor the
    environment)."""
    try:
        with config_file.open("rb") as handle:
            doc = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError):
        return False
    broker = doc.get("agent", {}).get("broker", {})
    return isinstance(broker, dict) and "password" in broker


def _owner_problems(items: list[tuple[str, Path]], data: Path) -> list[str]:
    """Paths not owned by the data folder's owner (the agent's account): the agent may
    not be able to read them, or their owner can change who may (POSIX)."""
    if sys.platform == "win32" or not data.exists():
        return []
    owner = data.stat().st_uid
    found = []
    for label, path in items:
        try:
            uid = path.stat().st_uid
        except OSError:
            continue
        if uid != owner:
            found.append(f"{label} {path}: owned by uid {uid}, not the data folder's owner {owner}")
    return found


def _permissions_check(config: AgentConfig, config_file: Path | None = None) -> Check:
    """The key, the data (the archive of raw POS files among it), the logs, the password
    files and the config: readable by the agent alone, owned by its account."""
    exposed: list[str] = []
    fixes: list[str] = []
    items = _protected(config)
    for label, path in items:
        try:
            problem = _acl.exposure(path)
        except OSError as exc:
            problem = f"cannot read its permissions: {exc.strerror or exc}"
        if problem is not None:
            exposed.append(f"{label} {path}: {problem}")
            fixes.append(_acl.fix(path))
    owners = _owner_problems(items, config.data_dir)
    exposed += owners
    if owners:
        fixes.append(f"chown -R <agent account> {config.data_dir}")
    config_problem = _config_problem(config_file, config)
    if config_problem is not None:
        exposed.append(config_problem)
        fixes.append(f"chmod 600 {config_file}")
    # What is not looked at must be said, never passed over in silence.
    unchecked = _WINDOWS_UNCHECKED if sys.platform == "win32" else ""
    if exposed:
        more = len(exposed) - _SHOWN
        said = "; ".join(exposed[:_SHOWN]) + (f"; and {more} more" if more > 0 else "")
        fix_more = len(fixes) - _SHOWN
        fixed = "; ".join(fixes[:_SHOWN]) + (
            f"; and {fix_more} more like these" if fix_more > 0 else ""
        )
        return Check(
            "permissions", False, said + unchecked, "Allow only the agent's account: " + fixed
        )
    return Check(
        "permissions", True, f"{len(items)} path(s) readable by the agent alone{unchecked}"
    )


_WINDOWS_UNCHECKED = (
    " (their ACLs checked; not checked on Windows: who owns each path, and who may change "
    "the config file: see icacls on it)"
)


def _archive_check(config: AgentConfig) -> Check:
    """Whether every sealed archived file opens with the outbox key there is now (by the
    key id each names), and what is still plain."""
    ids = sealed_key_ids(config.archive_dir)
    plain = ids.pop(None, 0)
    sealed = sum(ids.values())
    key_file = config.outbox_key_file
    try:
        current: str | None = key_id(load_key(key_file)) if key_file.exists() else None
    except SealError:
        current = None
    other = {said: n for said, n in ids.items() if said != current}
    fix = (
        f"Restore the outbox key file {key_file} those files were sealed with (a backup of "
        "the data folder); until then `replay`, `quarantine retry refused:…` and a rebuild "
        "of the outbox cannot read them."
    )
    if other:
        names = ", ".join(f"{n} with key id {said}" for said, n in sorted(other.items()))
        now = f"the key in {key_file} has id {current}" if current else f"{key_file} is missing"
        return Check("archive", False, f"sealed files that do not open: {names}; {now}", fix)
    if not sealed and not plain:
        return Check("archive", True, "no archived files")
    said = f"{sealed} file(s) sealed with the outbox key (id {current})" if sealed else ""
    if plain:
        later = " (the agent seals them at its next start)" if config.archive_encrypt else ""
        kept = "" if config.archive_encrypt else " (archive_encrypt = false)"
        said += ("; " if said else "") + f"{plain} plain file(s){kept}{later}"
    return Check("archive", True, said)


def _database_check(config: AgentConfig) -> Check:
    stats = outbox_stats(config)
    path = config.outbox_path
    if not stats["exists"]:
        return Check("outbox database", True, f"{path} not created yet (the daemon makes it)")
    verdict = str(stats.get("quick_check", stats.get("error")))
    detail = f"{path}: {verdict}"
    if "records_by_state" in stats:
        waiting = sum(n for state, n in stats["records_by_state"].items() if state != "acked")
        detail += f", {waiting} records not yet acknowledged"
    return Check(
        "outbox database",
        verdict == "ok",
        detail,
        "Stop the agent and start it again: a damaged outbox is moved aside and rebuilt from "
        "the archive.",
    )


def _disk_check(config: AgentConfig) -> Check:
    try:
        free = shutil.disk_usage(config.data_dir).free
    except OSError as exc:
        return Check("free disk", False, str(exc), "Check that data_dir exists.")
    floor = config.outbox.min_free_disk_mb * 1024 * 1024
    return Check(
        "free disk",
        free >= floor,
        f"{free // (1024 * 1024)} MB free "
        f"(intake pauses below {config.outbox.min_free_disk_mb} MB)",
        "Free disk space on the data_dir drive; nothing is lost meanwhile, files wait.",
    )


async def _broker_check(config: AgentConfig, wait: float) -> Check:
    from common.messaging import MessagingError, MqttTransport, options_for

    broker = config.broker
    try:
        broker.ssl_context()
    except (OSError, ssl.SSLError) as exc:
        return Check(
            "broker", False, f"TLS files unusable: {exc}", "Check ca_file, cert_file and key_file."
        )
    # A clean session: the check leaves nothing behind at the broker.
    transport = MqttTransport(
        options_for(
            broker,
            f"{broker.client_id or 'tillbridge-agent-' + config.store}-doctor",
            clean_session=True,
            timeout=wait,
        )
    )
    try:
        async with asyncio.timeout(wait), transport.connect():
            pass
    except (TimeoutError, MessagingError) as exc:
        hint = await scheme_mismatch(broker.host, broker.port, tls=broker.tls)
        if hint is not None:
            return Check(
                "broker",
                False,
                f"{broker.url}: {hint}",
                f"Set agent.broker.url to the scheme the broker listens with on port "
                f"{broker.port}.",
            )
        if isinstance(exc, MessagingError):
            return _broker_error(broker.url, str(exc))
        return Check(
            "broker",
            False,
            f"{broker.url}: no answer within {wait:.0f} s",
            "Check the network path and firewall to the broker (port "
            f"{broker.port}); the agent keeps buffering meanwhile.",
        )
    detail = f"{broker.url}: connected" + (" over TLS" if broker.tls else "")
    return Check("broker", True, detail + (" with credentials" if broker.username else ""))


def _broker_error(url: str, text: str) -> Check:
    if "authori" in text.lower() or "password" in text.lower() or "code:5" in text:
        fix = "Check agent.broker.username and the password file (provision-store rotates it)."
    elif "certificate" in text.lower() or "ssl" in text.lower():
        fix = "Check agent.broker.ca_file names the CA that signed the broker's certificate."
    else:
        fix = "Check agent.broker.url and that the broker is running."
    return Check("broker", False, f"{url}: {redact_text(text)}", fix)


def _clock_check(config: AgentConfig) -> Check:
    now = datetime.now(config.zone)
    offset = now.utcoffset() or timedelta(0)
    return Check(
        "clock",
        now.year >= 2024,
        f"{now.isoformat(timespec='seconds')} "
        f"({config.timezone}, UTC{offset.total_seconds() / 3600:+.1f})",
        "Set the PC's clock (and keep Windows Time or NTP running): business days depend on it.",
    )


def doctor(
    config: AgentConfig, *, broker_timeout: float = 5.0, config_file: Path | None = None
) -> list[Check]:
    """Every check, in the order a technician would look."""
    checks = [Check("config", True, "valid"), *_folder_checks(config), _database_check(config)]
    checks.append(_permissions_check(config, config_file))
    checks.append(_archive_check(config))
    checks.append(_disk_check(config))
    checks.append(_clock_check(config))
    checks.append(_loop.run(_broker_check(config, broker_timeout)))
    return checks


# -- logs ------------------------------------------------------------------------------------


def parse_since(text: str) -> timedelta:
    """`30m`, `2h`, `1d` (s, m, h, d)."""
    match = _DURATION.match(text.strip().lower())
    if match is None:
        raise ValueError(f"not a duration: {text!r} (use 30m, 2h or 1d)")
    amount, unit = int(match.group(1)), match.group(2)
    names = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    return timedelta(**{names[unit]: amount})


def _log_files(log_file: Path) -> list[Path]:
    """The rolled-over files oldest first, then the current one."""
    rolled = sorted(
        log_file.parent.glob(log_file.name + ".*"),
        key=lambda p: int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0,
        reverse=True,
    )
    return [*rolled, log_file] if log_file.exists() else rolled


def read_logs(
    log_file: Path,
    *,
    since: timedelta | None = None,
    correlation: str | None = None,
    level: str | None = None,
    now: datetime | None = None,
    follow: bool = False,
    poll_seconds: float = 0.5,
    until: Callable[[], bool] | None = None,
) -> Iterator[dict[str, Any]]:
    """Log entries matching every filter given, oldest first. With `follow`, then the
    entries written from then on, as `tail -F` would (across a rollover), until `until()`
    says to stop (or for ever)."""
    cutoff = (now or datetime.now(UTC)) - since if since else None
    least = _LEVELS[log_level(level or "debug")]

    def keep(entry: dict[str, Any]) -> bool:
        if _LEVELS.get(str(entry.get("level", "info")), 20) < least:
            return False
        if correlation and entry.get("correlation_id") != correlation:
            return False
        if cutoff is not None:
            try:
                when = datetime.fromisoformat(str(entry.get("ts")))
            except ValueError:
                return False
            if when < cutoff:
                return False
        return True

    for path in _log_files(log_file):
        if follow and path == log_file:
            break  # the current file is read, then followed, below
        with path.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                entry = _entry(line)
                if entry is not None and keep(entry):
                    yield entry
    if follow:
        for entry in _follow(log_file, poll_seconds, until or (lambda: False)):
            if keep(entry):
                yield entry


def _entry(line: str) -> dict[str, Any] | None:
    try:
        entry = json.loads(line)
    except json.JSONDecodeError:
        return None
    return entry if isinstance(entry, dict) else None


def _follow(
    log_file: Path, poll_seconds: float, until: Callable[[], bool]
) -> Iterator[dict[str, Any]]:
    """Every entry of the current log file, then each one as it is written. A rollover
    (renamed, or copied and truncated on Windows) is followed into the new file."""
    handle: TextIO | None = None
    identity: tuple[int, int] | None = None
    partial = ""
    try:
        while not until():
            if handle is None:
                try:
                    handle = log_file.open(encoding="utf-8", errors="replace")
                except FileNotFoundError:
                    time.sleep(poll_seconds)
                    continue
                opened = os.fstat(handle.fileno())
                identity = (opened.st_dev, opened.st_ino)
            line = handle.readline()
            if line:
                partial += line
                if partial.endswith("\n"):  # a line still being written waits for its end
                    entry = _entry(partial)
                    partial = ""
                    if entry is not None:
                        yield entry
                continue
            try:
                now = os.stat(log_file)
            except FileNotFoundError:
                now = None
            moved = now is None or (now.st_dev, now.st_ino) != identity
            if moved:  # renamed away: what was written to it before, then the new file
                for rest in (partial + handle.read()).splitlines(keepends=True):
                    entry = _entry(rest) if rest.endswith("\n") else None
                    if entry is not None:
                        yield entry
            if moved or (now is not None and now.st_size < handle.tell()):
                handle.close()  # rolled over: the new file from its start
                handle, partial = None, ""
                continue
            time.sleep(poll_seconds)
    finally:
        if handle is not None:
            handle.close()


def format_entry(entry: dict[str, Any]) -> str:
    fields = {k: v for k, v in entry.items() if k not in ("ts", "level", "logger", "msg")}
    tail = " ".join(f"{k}={v}" for k, v in fields.items())
    level = str(entry.get("level", "")).upper()
    return f"{entry.get('ts', '')} {level:<7} {entry.get('msg', '')} {tail}".rstrip()


# -- bundle ----------------------------------------------------------------------------------


def _effective_config(config: AgentConfig) -> dict[str, Any]:
    data = config.model_dump(mode="json")
    redacted = redact_value(data)
    return redacted if isinstance(redacted, dict) else {}


def outbox_stats(config: AgentConfig) -> dict[str, Any]:
    """Counts and integrity of the outbox, read-only (the daemon may be running)."""
    path = config.outbox_path
    if not path.exists():
        return {"exists": False}
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            states = dict(
                conn.execute("SELECT state, count(*) FROM records GROUP BY state").fetchall()
            )
            files = conn.execute("SELECT count(*) FROM files").fetchone()[0]
            last = conn.execute("SELECT max(seq) FROM records").fetchone()[0]
            verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        return {"exists": True, "error": str(exc)}
    return {
        "exists": True,
        "bytes": path.stat().st_size,
        "records_by_state": states,
        "files_ingested": files,
        "last_seq": last,
        "quick_check": verdict,
    }


def downlink_stats(config: AgentConfig) -> dict[str, Any] | None:
    """Orders from central as `downlink.db` holds them, read-only (the agent is not
    answering); None when the downlink is off."""
    from agent.downlink import summarise

    settings = config.downlink
    if not settings.enabled:
        return None
    path = config.downlink_path
    if not path.exists():
        return {"received": 0, "written": 0, "waiting": 0, "alerts": []}
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            summary = summarise(conn, settings.alert_after_seconds, time.time())
    except sqlite3.DatabaseError as exc:
        return {"error": str(exc), "alerts": []}
    return {**dataclasses.asdict(summary), "writer": settings.writer}


def reference_stats(config: AgentConfig) -> dict[str, Any] | None:
    """Reference data as `reference.db` holds it, read-only (the agent is not answering);
    None when reference data is off."""
    from agent.reference import summarise_reference

    if not config.reference.enabled:
        return None
    path = config.reference_path
    if not path.exists():
        return {"customers": 0, "items": 0, "last_change_at": None, "resync": {}}
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            summary = summarise_reference(conn)
    except sqlite3.DatabaseError as exc:
        return {"error": str(exc)}
    return dataclasses.asdict(summary)


def _versions() -> dict[str, str]:
    out = {
        "tillbridge": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    for name in ("aiomqtt", "paho-mqtt", "pydantic", "watchdog", "apscheduler", "aiosqlite"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def bundle(config: AgentConfig, target: Path, *, log_bytes: int = 5 * 1024 * 1024) -> Path:
    """A zip with the redacted effective config, recent logs, status, database statistics and
    versions. Every text in it passes through the redaction that guards the logs."""
    from agent.daemon import read_status

    status = read_status(config.data_dir)
    logs = io.StringIO()
    for path in _log_files(config.log_file):
        logs.write(path.read_text(encoding="utf-8", errors="replace"))
    recent = logs.getvalue()[-log_bytes:]
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", json.dumps(_effective_config(config), indent=2))
        archive.writestr("status.json", json.dumps(redact_value(status or {}), indent=2))
        archive.writestr("outbox.json", json.dumps(outbox_stats(config), indent=2))
        archive.writestr("versions.json", json.dumps(_versions(), indent=2))
        archive.writestr("agent.log", redact_text(recent))
        quarantine = sorted(p.name for p in config.quarantine_dir.glob("*.error.txt"))
        for name in quarantine[-50:]:
            note = (config.quarantine_dir / name).read_text(encoding="utf-8", errors="replace")
            archive.writestr(f"quarantine/{name}", redact_text(note))
    return target
