"""`tillbridge-agent`: the store daemon and the field-support commands around it.

Exit codes: 0 success, 1 failure at run time, 2 refused input or invalid config.
"""

from __future__ import annotations

import hashlib
import json
import sys
import zoneinfo
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import typer.core

from agent._version import __version__
from agent.config import AgentConfig, load_agent_config
from common.cli import config_option, group, program
from common.cli import load_or_exit as _load_or_exit

if TYPE_CHECKING:
    from agent.parsers import ParseContext

app = program(
    "tillbridge-agent",
    "Tillbridge store agent: watches POS exports and forwards them to central.",
    __version__,
)
config_app = group("Configuration commands.")
app.add_typer(config_app, name="config")
quarantine_app = group("Files the agent refused.")
app.add_typer(quarantine_app, name="quarantine")

ConfigOption = Annotated[Path, config_option("agent")]


def load_or_exit(config: Path) -> AgentConfig:
    """The config, or exit 2 with one line per problem on stderr."""
    return _load_or_exit(load_agent_config, config)


@config_app.command("check")
def config_check(config: ConfigOption) -> None:
    """Validate a config file: exit 0 when valid, 2 naming each wrong key."""
    cfg = load_or_exit(config)
    typer.echo(f"{config}: valid (store {cfg.store}, {len(cfg.sources)} source(s))")


@app.command()
def schema() -> None:
    """Print the contract as JSON Schema: the canonical record and batch envelope going
    up, the downlink's messages, batch and answer going down."""
    from contract import Batch, DownAck, DownBatch, down_body_adapter, record_adapter

    doc = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Tillbridge record contract",
        "record": record_adapter.json_schema(),
        "batch": Batch.model_json_schema(by_alias=True),
        "down_message": down_body_adapter.json_schema(),
        "down_batch": DownBatch.model_json_schema(by_alias=True),
        "down_ack": DownAck.model_json_schema(by_alias=True),
    }
    typer.echo(json.dumps(doc, indent=2))


# What `parse` and `verify` read, and how.
FilesArg = Annotated[list[Path], typer.Argument(help="POS export files.", show_default=False)]
FormatOption = Annotated[
    str, typer.Option("--format", help="auto | poslog | micros | magestore | inventory | oms")
]
StoreOption = Annotated[str | None, typer.Option(help="Store id when the file has none.")]
TimezoneOption = Annotated[str, typer.Option(help="Store time zone for timestamps without offset.")]
CurrencyOption = Annotated[str, typer.Option(help="Currency when the file names none.")]


def _zone_or_exit(timezone: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        typer.echo(f"--timezone: unknown time zone {timezone!r}", err=True)
        raise typer.Exit(2) from None


def _file_context(
    file: Path, data: bytes, store: str | None, zone: zoneinfo.ZoneInfo, currency: str
) -> ParseContext:
    """What `parse` and `verify` tell a parser about a file given on the command line."""
    from agent import parsers

    return parsers.ParseContext(
        file_name=file.name,
        sha256=hashlib.sha256(data).hexdigest(),
        store=store,
        timezone=zone,
        currency=currency,
    )


@app.command()
def parse(
    files: FilesArg,
    fmt: FormatOption = "auto",
    store: StoreOption = None,
    timezone: TimezoneOption = "UTC",
    currency: CurrencyOption = "EUR",
) -> None:
    """Print canonical records as JSON lines; refused input exits 2 naming file, place, reason
    (a refused transaction is printed as its `refused` record too)."""
    from agent.parsers import ParseError, Skipped, bounded, parse_bytes
    from contract import Limits, Refused

    zone = _zone_or_exit(timezone)
    failed = False
    for file in files:
        try:
            data = file.read_bytes()
        except OSError as exc:
            typer.echo(f"{file}: cannot read: {exc.strerror}", err=True)
            failed = True
            continue
        context = _file_context(file, data, store, zone, currency)
        try:
            items = parse_bytes(data, fmt, context=context)
        except ParseError as exc:
            place = exc.place or "file"
            typer.echo(f"{file}: {place}: {exc.reason}", err=True)
            failed = True
            continue
        out = sys.stdout
        limits = Limits()  # the relay's defaults: what the agent would send
        for item in items:
            text = ""
            if not isinstance(item, Skipped):
                item, text = bounded(item, item.model_dump_json(), limits)
            if isinstance(item, Refused):
                # One unreadable transaction: its record is printed like the others, and
                # named on stderr so a script sees it.
                typer.echo(f"{file}: {item.place}: {item.reason}", err=True)
                failed = True
            if text:
                out.write(text + "\n")
        out.flush()
    if failed:
        raise typer.Exit(2)


@app.command()
def verify(
    files: FilesArg,
    fmt: FormatOption = "auto",
    store: StoreOption = None,
    timezone: TimezoneOption = "UTC",
    currency: CurrencyOption = "EUR",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Check a store's exports before go-live: per file, transactions by kind, refused
    transactions (place, reason) and imbalances. Exit 0 only when every transaction reads
    and reconciles; 1 when some do not; 2 when a file is refused whole."""
    from agent.parsers import REGISTRY, ParseError, detect, parse_bytes
    from agent.verify import FileReport, render, report

    zone = _zone_or_exit(timezone)
    reports: list[FileReport] = []
    for file in files:
        try:
            data = file.read_bytes()
        except OSError as exc:
            reports.append(FileReport(file=str(file), error=f"cannot read: {exc.strerror}"))
            continue
        context = _file_context(file, data, store, zone, currency)
        try:
            name = detect(data[:65536]).name if fmt == "auto" else REGISTRY[fmt].name
            items = parse_bytes(data, fmt, context=context)
        except KeyError:
            typer.echo(f"--format: unknown format {fmt!r}", err=True)
            raise typer.Exit(2) from None
        except ParseError as exc:
            place = exc.place or "file"
            reports.append(FileReport(file=str(file), error=f"{place}: {exc.reason}"))
            continue
        reports.append(report(str(file), name, items))
    if as_json:
        typer.echo(json.dumps({"files": [r.as_json() for r in reports]}, indent=2))
    else:
        for found in reports:
            for line in render(found):
                typer.echo(line)
    if any(r.error for r in reports):
        raise typer.Exit(2)
    if not all(r.ok for r in reports):
        raise typer.Exit(1)


@app.command("run")
def run(config: ConfigOption) -> None:
    """Run the store daemon until SIGTERM or SIGINT."""
    from agent._loop import loop_factory
    from agent.daemon import Agent
    from common.runtime import run_daemon

    cfg = load_or_exit(config)
    code = run_daemon(
        Agent(cfg, config_file=config.resolve()).run,
        settings=cfg.logging,
        log_file=cfg.log_file,
        logger="tillbridge.agent",
        failure="Agent stopped by an error.",
        loop_factory=loop_factory(),
    )
    if code:
        raise typer.Exit(code)


@app.command()
def status(
    config: ConfigOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw status.")] = False,
) -> None:
    """Connection, backlog, budget, files, recovery: from the running daemon (at the
    address it wrote to its data folder), else from what it last wrote and the outbox
    database.

    Exit codes as systemd's: 0 running and healthy, 1 running with a problem (named on
    stderr), 3 not running."""
    from agent.daemon import read_status
    from agent.support import downlink_stats, outbox_stats, reference_stats

    cfg = load_or_exit(config)
    data = _ask_running_agent(cfg.data_dir)
    running = data is not None
    if data is None:
        data = read_status(cfg.data_dir)
        if data is None:
            typer.echo(f"no status in {cfg.data_dir}: the agent has not run here yet", err=True)
            raise typer.Exit(3) from None
        data["answered_by"] = "status file and database (the agent is not answering)"
        data["connected"] = False
        data["database"] = outbox_stats(cfg)
        data["downlink"] = downlink_stats(cfg)
        data["reference"] = reference_stats(cfg)
    problems = _status_problems(data) if running else ["the agent is not running"]
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        _print_status(data)
    for problem in problems:
        typer.echo(f"problem: {problem}", err=True)
    if not running:
        raise typer.Exit(3)
    if problems:
        raise typer.Exit(1)


def _ask_running_agent(data_dir: Path) -> dict[str, Any] | None:
    """The running daemon's own status, from the address it wrote to its data folder at
    start; None when no daemon answers there (or another process holds that port now)."""
    import httpx

    from agent.daemon import read_status_address

    address = read_status_address(data_dir)
    if address is None:
        return None
    try:
        # Loopback: never through a proxy from the environment or the system settings.
        reply = httpx.get(f"http://{address['listen']}/status", timeout=2, trust_env=False)
        reply.raise_for_status()
        data: dict[str, Any] = reply.json()
    except (httpx.HTTPError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("pid") != address.get("pid"):
        return None  # a crashed daemon's address, now someone else's port
    data["answered_by"] = "running agent"
    return data


def _status_problems(data: dict[str, Any]) -> list[str]:
    """What keeps a running agent from being healthy, in words."""
    outbox = data.get("outbox") or {}
    problems = []
    if not data.get("connected"):
        problems.append(f"not connected to the broker ({data.get('last_error') or 'connecting'})")
    if outbox.get("budget", "ok") != "ok":
        problems.append(f"intake paused: {outbox['budget']}")
    if data.get("recovery") and "waiting" in data["recovery"]:
        problems.append(data["recovery"])
    for name, source in (data.get("sources") or {}).items():
        unreadable = source.get("unreadable_now") or {}
        for path, reason in unreadable.items():
            problems.append(f"source {name}: cannot read {path}: {reason}")
        said = source.get("last_error")
        if said and not any(said == f"cannot read {p}: {r}" for p, r in unreadable.items()):
            problems.append(f"source {name}: {said}")
    clashes = (data.get("downlink") or {}).get("seq_clashes")
    if clashes:
        problems.append(
            f"central sent {clashes} order message(s) under seqs this store holds for others; "
            "not acknowledged (see the log)"
        )
    for kind, asked in sorted(((data.get("reference") or {}).get("resync") or {}).items()):
        problems.append(f"resync of {kind} asked of central at {asked}, not answered yet")
    for alert in (data.get("downlink") or {}).get("alerts") or []:
        problems.append(
            f"order {alert['order_number']} (downlink seq {alert['seq']}) not written to the "
            f"POS for {alert['waiting_seconds'] // 60} min: {alert.get('last_error') or 'waiting'}"
        )
    return problems


def _print_status(data: dict[str, Any]) -> None:
    outbox = data.get("outbox") or {}
    lines = [
        f"store        {data['store']} (agent {data['agent_id']}, version {data['version']})",
        f"source       {data['answered_by']}, written at {data['written_at']}",
        f"broker       {data['broker']}: {'connected' if data['connected'] else 'NOT connected'}"
        + (
            f" (last error at {data.get('last_error_at') or 'an unknown time'}: "
            f"{data['last_error']})"
            if data.get("last_error") and not data["connected"]
            else ""
        ),
        f"backlog      {outbox.get('pending', 0)} pending, {outbox.get('sent', 0)} awaiting ack,"
        f" oldest {outbox.get('oldest_unacked_seconds') or 0:.0f} s",
        f"intake       {outbox.get('budget', 'unknown')}",
    ]
    if outbox.get("rejected"):
        lines.append(
            f"rejected     {outbox['rejected']} record(s) central refused for good: kept, "
            "never sent again (quarantine list)"
        )
    if outbox.get("recovered"):
        lines.append(f"RECOVERED    {outbox['recovered']}")
    if data.get("recovery"):
        lines.append(f"             {data['recovery']}")
    for name, source in (data.get("sources") or {}).items():
        lines.append(
            f"source {name:<6} {source.get('pending', 0)} waiting, "
            f"{source.get('ingested', 0)} ingested, {source.get('quarantined', 0)} refused "
            "since start"
        )
        if source.get("unfit"):
            lines.append(
                f"             {source['unfit']} path(s) skipped unopened: not regular files "
                "(FIFO, device, socket, a link that loops or leads outside; the log names each)"
            )
        for path, reason in (source.get("unreadable_now") or {}).items():
            lines.append(f"             CANNOT READ {path}: {reason}")
        if source.get("unreadable"):
            lines.append(
                f"             {source['unreadable']} time(s) a folder could not be read "
                "since start"
            )
    if "quarantined_files" in data:
        lines.append(f"quarantine   {data['quarantined_files']} file(s) (quarantine list)")
    lines.extend(_downlink_lines(data.get("downlink")))
    lines.extend(_reference_lines(data.get("reference")))
    typer.echo("\n".join(lines))


def _reference_lines(ref: dict[str, Any] | None) -> list[str]:
    """Reference data: how many customers and items the store holds, its last change,
    and any resync still waiting for central."""
    if not ref:
        return []
    if ref.get("error"):
        return [f"reference    reference.db unreadable: {ref['error']}"]
    writers = ", ".join(ref.get("writers") or []) or "lookup only"
    lines = [
        f"reference    {ref.get('customers', 0)} customer(s), {ref.get('items', 0)} item(s), "
        f"last change {ref.get('last_change_at') or 'never'} ({writers})"
    ]
    for kind, asked in sorted((ref.get("resync") or {}).items()):
        lines.append(f"RESYNC       {kind} asked of central at {asked}; waiting for its answer")
    return lines


@app.command()
def resync(
    config: ConfigOption,
    kinds: Annotated[
        list[str],
        typer.Argument(help="customers, items, or both", metavar="customers|items"),
    ],
) -> None:
    """Ask central for customers or items whole again: the next heartbeat carries the
    request until central's answer has arrived (status shows it meanwhile). Works whether
    the daemon runs or not."""
    import contextlib
    import sqlite3

    from agent.reference import RESYNC_KINDS, request_resync

    cfg = load_or_exit(config)
    if not cfg.reference.enabled:
        typer.echo("reference data is off here: enable [agent.reference] first", err=True)
        raise typer.Exit(2)
    unknown = [k for k in kinds if k not in RESYNC_KINDS]
    if unknown:
        typer.echo(f"unknown kind {', '.join(unknown)}: say customers or items", err=True)
        raise typer.Exit(2)
    wanted = [k for k in RESYNC_KINDS if k in kinds]
    path = cfg.reference_path
    if not path.exists():
        typer.echo(f"{path} does not exist yet: the agent asks for everything when it starts")
        return
    try:
        with contextlib.closing(sqlite3.connect(path, isolation_level=None, timeout=10)) as conn:
            at = request_resync(conn, wanted, "tillbridge-agent resync")
    except sqlite3.Error as exc:
        typer.echo(f"could not record the request in {path}: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"resync of {' and '.join(wanted)} requested at {at.isoformat()}; central is asked "
        "with the next heartbeat"
    )


def _downlink_lines(down: dict[str, Any] | None) -> list[str]:
    """Orders from central: waiting to be written to the POS, and each one past its alert."""
    if not down:
        return []
    if down.get("error"):
        return [f"orders       downlink.db unreadable: {down['error']}"]
    oldest = down.get("oldest_waiting_seconds")
    lines = [
        f"orders       {down.get('waiting', 0)} received and not yet written to the POS"
        + (f" (oldest {oldest:.0f} s)" if oldest is not None else "")
        + f", {down.get('written', 0)} written ({down.get('writer', '?')})"
    ]
    for alert in down.get("alerts") or []:
        # Reference data has no order number: it is named by its kind and seq.
        what = "ORDER ALERT" if alert["kind"].startswith("order") else "DATA ALERT "
        lines.append(
            f"{what}  {alert['kind']} {alert['order_number']} (seq {alert['seq']}) "
            f"waiting {alert['waiting_seconds']} s, {alert['attempts']} attempt(s): "
            f"{alert.get('last_error') or 'not tried yet'}"
        )
    return lines


@quarantine_app.command("list")
def quarantine_list(config: ConfigOption) -> None:
    """Quarantined files, oldest first, with the reason and place of each refusal; then the
    transactions refused one by one (their files went on), as the outbox holds them."""
    from agent.outbox import list_refused, list_rejected
    from agent.sources import list_quarantined, safe_name

    cfg = load_or_exit(config)
    items = list_quarantined(cfg.quarantine_dir)
    if not items:
        typer.echo(f"no quarantined files in {cfg.quarantine_dir}")
    for item in items:
        typer.echo(f"{item.name}  [{item.source}]  {item.at}")
        typer.echo(f"    {item.place}: {item.reason}")
    refused = list_refused(cfg.outbox_path)
    if refused:
        typer.echo(f"refused transactions ({len(refused)}), sent to central as kind refused:")
    for row in refused:
        typer.echo(f"{row.file}  {row.business_date}  {row.key}  [{row.state}]")
        typer.echo(f"    {row.place}: {row.reason}")
    rejected = list_rejected(cfg.outbox_path)
    if rejected:
        typer.echo(f"rejected by central ({len(rejected)}), kept and never sent again:")
    for held in rejected:
        typer.echo(f"{held.kind}  {held.business_date}  {held.key}")
        typer.echo(f"    {safe_name(held.reason)}")


@quarantine_app.command("retry")
def quarantine_retry(
    names: Annotated[
        list[str],
        typer.Argument(
            help="Quarantined file names, or keys of refused transactions (refused:…).",
            show_default=False,
        ),
    ],
    config: ConfigOption,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only say whether a refused transaction reads now.")
    ] = False,
) -> None:
    """Move quarantined files back into their source folder; the agent takes them again.
    A refused transaction (its key, as `quarantine list` shows it) is read again alone from
    its archived file with the current settings; when it reads now it goes into its source
    folder as a file of its own, and central closes its exception once the record arrives."""
    from agent.sources import retry_quarantined

    cfg = load_or_exit(config)
    failed = False
    for name in names:
        if name.startswith("refused:"):
            failed = not _retry_refused(cfg, name, dry_run=dry_run) or failed
            continue
        try:
            target = retry_quarantined(cfg.quarantine_dir, name)
        except (KeyError, FileNotFoundError) as exc:
            typer.echo(f"{name}: {exc.args[0]}", err=True)
            failed = True
            continue
        typer.echo(f"{name}: moved back to {target}")
    if failed:
        raise typer.Exit(1)


def _retry_refused(cfg: AgentConfig, key: str, *, dry_run: bool) -> bool:
    from agent.outbox import SealError
    from agent.retry import reread_refused

    try:
        outcome = reread_refused(cfg, key, write=not dry_run)
    except (KeyError, LookupError, SealError) as exc:
        typer.echo(f"{key}: {exc.args[0]}", err=True)
        return False
    origin = "" if outcome.origin == "archive" else " (from its kept fragment: not archived)"
    if not outcome.readable:
        typer.echo(f"{key}: {outcome.said}{origin}", err=True)
        return False
    where = f"; put in {outcome.written.parent} for the agent" if outcome.written else ""
    typer.echo(f"{key}: reads now as {outcome.said}{origin}{where}")
    return True


@app.command()
def doctor(
    config: ConfigOption,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the broker.")] = 5.0,
) -> None:
    """Self-check: config, folders, database, disk, clock, broker; the fix for each failure."""
    from agent.support import doctor as run_checks

    cfg = load_or_exit(config)
    failed = False
    for check in run_checks(cfg, broker_timeout=timeout, config_file=config):
        typer.echo(f"{_mark(check.ok)} {check.name}: {check.detail}")
        if not check.ok:
            failed = True
            typer.echo(f"    fix: {check.fix}")
    if failed:
        raise typer.Exit(1)


@app.command()
def logs(
    config: ConfigOption,
    since: Annotated[str | None, typer.Option(help="Only the last 30m, 2h, 1d, …")] = None,
    correlation: Annotated[
        str | None, typer.Option("--correlation", help="One correlation id.")
    ] = None,
    level: Annotated[
        str | None, typer.Option(help="Least level: debug, info, warning (warn), error.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON lines.")] = False,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", "-f", help="Go on printing entries as they are written (Ctrl-C ends)."
        ),
    ] = False,
) -> None:
    """Filter the agent's JSON log files (the rolled-over ones too); with -f, follow the
    log as it grows, across a rollover."""
    from agent.support import format_entry, log_level, parse_since, read_logs

    cfg = load_or_exit(config)
    try:
        window = parse_since(since) if since else None
    except ValueError as exc:
        typer.echo(f"--since: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        level = log_level(level) if level else None
    except ValueError as exc:
        typer.echo(f"--level: {exc}", err=True)
        raise typer.Exit(2) from None
    entries = read_logs(
        cfg.log_file, since=window, correlation=correlation, level=level, follow=follow
    )
    try:
        for entry in entries:
            typer.echo(json.dumps(entry, ensure_ascii=False) if as_json else format_entry(entry))
    except KeyboardInterrupt:
        pass  # how a follow ends


@app.command()
def bundle(
    config: ConfigOption,
    output: Annotated[Path, typer.Option("-o", "--output", help="The zip file to write.")],
) -> None:
    """A redacted support bundle: effective config, recent logs, status, database, versions."""
    from agent.support import bundle as make_bundle

    cfg = load_or_exit(config)
    path = make_bundle(cfg, output)
    typer.echo(f"wrote {path} (secrets, card numbers and customer contact removed)")


@app.command()
def replay(
    config: ConfigOption,
    since: Annotated[
        str, typer.Option(help="First business day of the archive to send again (YYYY-MM-DD).")
    ],
) -> None:
    """Send archived files again (central drops what it has). The agent must be stopped."""
    from agent import _loop
    from agent.lock import AlreadyRunning, data_dir_lock

    cfg = load_or_exit(config)
    try:
        first = date.fromisoformat(since)
    except ValueError:
        typer.echo(f"--since: not a date: {since!r} (YYYY-MM-DD)", err=True)
        raise typer.Exit(2) from None
    try:
        with data_dir_lock(cfg.data_dir):
            again, inserted, failed = _loop.run(_replay(cfg, first))
    except AlreadyRunning as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"queued {again + inserted} records ({again} sent again, {inserted} re-read); "
        f"{failed} file(s) could not be read"
    )
    if failed:
        raise typer.Exit(1)


async def _replay(cfg: AgentConfig, first: date) -> tuple[int, int, int]:
    from rich.progress import Progress

    from agent.daemon import archived_files, read_archived
    from agent.outbox import Outbox, SealError
    from agent.parsers import ParseError

    key_file = cfg.outbox_key_file
    outbox = await Outbox.open(cfg.outbox_path, cfg.outbox, key_file=key_file, limits=cfg.limits)
    again = inserted = failed = 0
    files = archived_files(cfg.archive_dir, first)
    try:
        with Progress(transient=True) as progress:
            task = progress.add_task("Re-queuing archived files", total=len(files))
            for path in files:
                try:
                    _, items = await read_archived(cfg, path)
                    sent, fresh = await outbox.replay(items)
                except (ParseError, SealError) as exc:
                    failed += 1
                    typer.echo(f"{path}: {exc}", err=True)
                else:
                    again, inserted = again + sent, inserted + fresh
                progress.advance(task)
    finally:
        await outbox.close()
    return again, inserted, failed


@app.command("self-test")
def self_test(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Also load this config.", show_default=False),
    ] = None,
) -> None:
    """Check this installation: dependencies, time zones, parsers, scheduler, outbox and
    both folder watchers, in a temporary folder. Exit 0 when every check passes."""
    from agent import _loop
    from agent.selftest import run_self_test

    checks = _loop.run(run_self_test(config))
    for check in checks:
        typer.echo(f"{_mark(check.ok)} {check.name}: {check.detail}")
    if not all(check.ok for check in checks):
        raise typer.Exit(1)


def _mark(ok: bool) -> str:
    """✓ or ✗ where the output can show them; OK or FAIL where it cannot (a cp1252 pipe)."""
    mark = "✓" if ok else "✗"
    try:
        mark.encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return "OK" if ok else "FAIL"
    return mark


def _never_fail_to_print() -> None:
    """Output a stream cannot encode (a file name, a log line) is replaced, not fatal:
    redirected or run by a remote-management tool on Windows, stdout is cp1252."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="replace")


def main() -> None:
    """Console-script entry point."""
    _never_fail_to_print()
    app()


if __name__ == "__main__":
    main()
