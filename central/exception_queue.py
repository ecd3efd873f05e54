"""The exception queue as people work it: `tillbridge-central exceptions
list|groups|show|retry|resolve`.

An exception is a record that needs a person — unroutable, refused by a target, or past
its retry cap — with the reason, the target's response, attempts and age. Retry sends
it through again (after a mapping is fixed); resolve closes it with a note. On a bad
morning the same cause fails hundreds of records: `groups` counts them by reason
("32 records: line #: quantity # is not whole") and `retry --reason TEXT` sends a
whole group again once the cause is fixed.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from common.cli import config_option, group, load_or_exit

from .config import CentralConfig, load_central_config
from .inbox import ExceptionItem, Inbox, open_inbox, utcnow

__all__ = ["app", "describe", "group_of", "groups", "matches", "retry_matching", "with_inbox"]

T = TypeVar("T")

app = group("The exception queue: records that need a person.")


def describe(item: ExceptionItem, *, now: datetime | None = None) -> dict[str, Any]:
    """One exception as the CLI, the API and the dashboard show it."""
    age = ((now or utcnow()) - item.created_at).total_seconds()
    return {
        "id": item.id,
        "store": item.store,
        "seq": item.seq,
        "key": item.key,
        "kind": item.kind,
        "record_id": item.record_id,
        "target": item.target,
        "reason": item.reason,
        "status": item.status,
        "attempts": item.attempts,
        "created_at": item.created_at.isoformat(),
        "age_seconds": round(age, 1),
        "resolved_at": item.resolved_at.isoformat() if item.resolved_at else None,
        "resolution": item.resolution,
        "resolved_by": item.resolved_by,
    }


_QUOTED = re.compile(r"'[^'\s]*'|\"[^\"\s]*\"")
"""A quoted value (no spaces): a key, a SKU, a field's content. Quoted text with spaces is
the target's own words and stays."""
_NUMBER = re.compile(r"(?<![A-Za-z_])-?\d+(?:[.,:/-]\d+)*(?![A-Za-z_])")
_ID = re.compile(r"\b(?=[A-Za-z_-]*\d)[A-Za-z0-9_-]{12,}\b")
GROUP_SCAN = 100_000
"""Open exceptions read to group them: a bad morning, not a bad year."""


def group_of(reason: str) -> str:
    """The reason with what differs from record to record (numbers, quoted values, ids
    and keys) replaced by `#`, so the same cause reads the same for every record; the
    target's own words stay."""
    text = _QUOTED.sub("#", reason)
    text = _ID.sub("#", text)
    return _NUMBER.sub("#", text).strip()


def groups(items: list[ExceptionItem]) -> list[dict[str, Any]]:
    """Exceptions counted by target and reason group, largest first."""
    counted = Counter((i.target or "", group_of(i.reason)) for i in items)
    example = {(i.target or "", group_of(i.reason)): i for i in reversed(items)}
    return [
        {
            "count": count,
            "target": target or None,
            "reason": reason,
            "example": describe(example[(target, reason)])["reason"],
            "stores": sorted(
                {i.store for i in items if (i.target or "", group_of(i.reason)) == (target, reason)}
            ),
        }
        for (target, reason), count in counted.most_common()
    ]


def matches(item: ExceptionItem, text: str) -> bool:
    """An exception belongs to `--reason TEXT` when its reason or its group holds TEXT."""
    wanted = text.casefold()
    return wanted in item.reason.casefold() or wanted in group_of(item.reason).casefold()


async def retry_matching(
    inbox: Inbox,
    text: str,
    *,
    by: str,
    store: str | None = None,
    target: str | None = None,
) -> list[tuple[int, str]]:
    """Send every open exception whose reason holds `text` through again; what each
    retry said, by exception id."""
    done = []
    for item in await inbox.exceptions(GROUP_SCAN, store=store, target=target):
        if matches(item, text):
            try:
                done.append((item.id, await inbox.retry_exception(item.id, by=by)))
            except ValueError as exc:  # closed meanwhile by someone else
                done.append((item.id, str(exc)))
    return done


def with_inbox(cfg: CentralConfig, work: Callable[[Inbox], Awaitable[T]]) -> T:
    async def go() -> T:
        inbox = await open_inbox(cfg.inbox_url, relay_id=cfg.relay_id, pool_size=1)
        try:
            return await work(inbox)
        finally:
            await inbox.close()

    return asyncio.run(go())


def _config(ctx: typer.Context, config: Path | None) -> CentralConfig:
    """The config named after the subcommand, else before it, else the default."""
    from common.settings import default_config_path

    return load_or_exit(load_central_config, config or ctx.obj or default_config_path("central"))


ConfigAfter = Annotated[Path | None, config_option("central", optional=True)]


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
ByOption = Annotated[
    str | None, typer.Option("--by", help="Who acts (default: the login name).", show_default=False)
]


@app.command("list")
def list_exceptions(
    ctx: typer.Context,
    store: Annotated[str | None, typer.Option(help="Only this store.")] = None,
    target: Annotated[str | None, typer.Option(help="Only this target.")] = None,
    closed: Annotated[bool, typer.Option("--all", help="Include closed ones.")] = False,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 100,
    as_json: JsonOption = False,
    config: ConfigAfter = None,
) -> None:
    """Open exceptions, oldest first."""
    items = with_inbox(
        _config(ctx, config),
        lambda inbox: inbox.exceptions(limit, include_closed=closed, store=store, target=target),
    )
    rows = [describe(i) for i in items]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    if not rows:
        typer.echo("No open exceptions.")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Exceptions")
    for column in ("id", "store", "kind", "target", "attempts", "age", "reason"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["store"],
            r["kind"] or "",
            r["target"] or "(routing)",
            str(r["attempts"]),
            _age(r["age_seconds"]),
            r["reason"],
        )
    Console(width=160).print(table)


@app.command("groups")
def list_groups(
    ctx: typer.Context,
    store: Annotated[str | None, typer.Option(help="Only this store.")] = None,
    target: Annotated[str | None, typer.Option(help="Only this target.")] = None,
    as_json: JsonOption = False,
    config: ConfigAfter = None,
) -> None:
    """Open exceptions counted by reason: one line per cause, largest first."""
    items = with_inbox(
        _config(ctx, config), lambda inbox: inbox.exceptions(GROUP_SCAN, store=store, target=target)
    )
    rows = groups(items)
    if as_json:
        typer.echo(json.dumps(rows))
        return
    if not rows:
        typer.echo("No open exceptions.")
        return
    for row in rows:
        noun = "record" if row["count"] == 1 else "records"
        where = row["target"] or "routing"
        typer.echo(f"{row['count']} {noun}: {row['reason']} ({where})")


@app.command("show")
def show(
    ctx: typer.Context,
    exception_id: Annotated[int, typer.Argument(help="The exception's id.")],
    as_json: JsonOption = False,
    config: ConfigAfter = None,
) -> None:
    """One exception with its record's deliveries and audit trail."""

    async def work(inbox: Inbox) -> dict[str, Any] | None:
        item = await inbox.exception(exception_id)
        if item is None:
            return None
        out = describe(item) | {"response": item.response, "payload": item.payload}
        if item.record_id is not None:
            out["deliveries"] = await inbox.deliveries_of(item.record_id)
            out["audit"] = [
                {
                    "at": e.at.isoformat(),
                    "step": e.step,
                    "target": e.target,
                    "status": e.status,
                    "detail": e.detail,
                }
                for e in await inbox.audit_trail(item.record_id)
            ]
        return out

    found = with_inbox(_config(ctx, config), work)
    if found is None:
        typer.echo(f"No exception {exception_id}.", err=True)
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps(found, default=str))
        return
    for name in ("id", "store", "kind", "key", "target", "status", "attempts", "reason"):
        typer.echo(f"{name:>9}: {found[name]}")
    typer.echo(f"{'age':>9}: {_age(found['age_seconds'])}")
    for step in found.get("audit", []):
        where = f" {step['target']}" if step["target"] else ""
        status = f" {step['status']}" if step["status"] else ""
        typer.echo(f"  {step['at']} {step['step']}{where}{status}")


def _act(
    ctx: typer.Context,
    config: Path | None,
    ids: list[int],
    act: Callable[[Inbox, int], Awaitable[str]],
) -> None:
    async def work(inbox: Inbox) -> list[tuple[int, str, bool]]:
        done = []
        for exception_id in ids:
            try:
                done.append((exception_id, await act(inbox, exception_id), True))
            except ValueError as exc:
                done.append((exception_id, str(exc), False))
        return done

    failed = False
    for exception_id, said, ok in with_inbox(_config(ctx, config), work):
        typer.echo(f"{exception_id}: {said}", err=not ok)
        failed |= not ok
    if failed:
        raise typer.Exit(1)


@app.command("retry")
def retry(
    ctx: typer.Context,
    ids: Annotated[list[int] | None, typer.Argument(help="Exception ids.")] = None,
    reason: Annotated[
        str | None,
        typer.Option(
            "--reason",
            help="Every open exception whose reason (or reason group) holds this text.",
            show_default=False,
        ),
    ] = None,
    store: Annotated[str | None, typer.Option(help="With --reason: only this store.")] = None,
    target: Annotated[str | None, typer.Option(help="With --reason: only this target.")] = None,
    by: ByOption = None,
    config: ConfigAfter = None,
) -> None:
    """Send the records through again (after the mapping or the target is fixed): the
    ids given, or a whole group with --reason."""
    who = by or getpass.getuser()
    chosen = list(ids or [])
    if reason is not None:
        if not reason.strip():
            typer.echo("--reason needs some text.", err=True)
            raise typer.Exit(2)
        items = with_inbox(
            _config(ctx, config),
            lambda inbox: inbox.exceptions(GROUP_SCAN, store=store, target=target),
        )
        chosen += [i.id for i in items if matches(i, reason) and i.id not in chosen]
        if not chosen:
            typer.echo(f"No open exception's reason holds {reason!r}.", err=True)
            raise typer.Exit(1)
    if not chosen:
        typer.echo("Name exception ids or a --reason.", err=True)
        raise typer.Exit(2)
    _act(ctx, config, chosen, lambda inbox, i: inbox.retry_exception(i, by=who))


@app.command("resolve")
def resolve(
    ctx: typer.Context,
    ids: Annotated[list[int], typer.Argument(help="Exception ids.")],
    note: Annotated[str, typer.Option("--note", help="What was done about it.")],
    by: ByOption = None,
    config: ConfigAfter = None,
) -> None:
    """Close exceptions without sending again, with a note saying what was done."""
    who = by or getpass.getuser()

    async def act(inbox: Inbox, exception_id: int) -> str:
        await inbox.resolve_exception(exception_id, note, by=who)
        return "resolved"

    _act(ctx, config, ids, act)
