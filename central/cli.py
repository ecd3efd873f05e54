"""`tillbridge-central`: the relay and its operations commands.

Exit codes: 0 success, 1 failure at run time, 2 invalid config or arguments.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import typer.core

from central._version import __version__
from central.config import CentralConfig, load_central_config
from central.exception_queue import app as exceptions_app
from central.reference_cli import customers_app, stores_app
from common.cli import config_option, group, program
from common.cli import load_or_exit as _load_or_exit
from common.modes import modes_checked, private_dir, too_open
from common.notify import Notifier
from common.redact import redact_text
from common.runtime import run_daemon

if TYPE_CHECKING:
    from central.feeds import Feeds
    from central.inbox import Inbox
    from central.sources import OrderSources

app = program(
    "tillbridge-central",
    "Tillbridge central relay: stores every record once and delivers it.",
    __version__,
)
config_app = group("Configuration commands.")
app.add_typer(config_app, name="config")


ConfigOption = Annotated[Path, config_option("central")]

OptionalConfig = Annotated[Path | None, config_option("central", optional=True)]


def load_or_exit(config: Path) -> CentralConfig:
    """The config, or exit 2 with one line per problem on stderr."""
    return _load_or_exit(load_central_config, config)


@config_app.command("check")
def config_check(config: ConfigOption) -> None:
    """Validate a config file: exit 0 when valid, 2 naming each wrong key."""
    cfg = load_or_exit(config)
    typer.echo(f"{config}: valid (inbox {cfg.inbox_url.split('://', 1)[0]})")


@app.command("run")
def run(config: ConfigOption) -> None:
    """Run the relay until SIGTERM or SIGINT, then stop after the work in hand."""
    cfg = load_or_exit(config)
    if os.name == "posix":
        # Everything the relay writes (inbox, logs, keys, store files) is the owner's only.
        os.umask(0o077)
    private_dir(cfg.data_dir)
    code = run_daemon(
        lambda stop: _serve(cfg, stop),
        settings=cfg.logging,
        log_file=cfg.log_file,
        logger="tillbridge.central",
        failure="Relay stopped by an error.",
    )
    if code:
        raise typer.Exit(code)


async def _serve(cfg: CentralConfig, stop: asyncio.Event) -> None:
    from central.inbox import open_inbox
    from central.intake import Intake

    log = logging.getLogger("tillbridge.central")
    inbox = await open_inbox(cfg.inbox_url, relay_id=cfg.relay_id, pool_size=cfg.inbox.pool_size)
    log.info(
        "Relay started.",
        extra={"relay_id": cfg.relay_id, "inbox": cfg.inbox_url.split("://", 1)[0]},
    )
    from central.validated import Validated

    # Intake validates each record once; routing and delivery reuse that validation.
    validated = Validated()
    from central.feeds import fanout_for

    # A store's heartbeat asking for its reference data whole is answered by the fan-out.
    intake = Intake(cfg, inbox, validated=validated, resync=fanout_for(cfg, inbox).resync)
    notifier = Notifier()
    if cfg.delivery.enabled:
        from central.delivery import Delivery

        delivery = Delivery(cfg, inbox, validated=validated)
        log.info(
            "Delivery started.",
            extra={
                "targets": [t.name for t in cfg.targets],
                "dry_run": [t.name for t in cfg.targets if t.dry_run],
            },
        )

    async def announce() -> None:
        await intake.connected.wait()
        notifier.ready(f"relay {cfg.relay_id}: taking batches")

    helpers = [asyncio.create_task(announce()), asyncio.create_task(notifier.keep_alive(stop))]
    sending: asyncio.Task[None] | None = None
    if cfg.downlink.enabled:
        from central.downlink import DownlinkSender

        # The way down runs beside the intake on its own connection; messages it has not
        # sent or that were not answered stay queued in the inbox for the next start.
        downlink = DownlinkSender(cfg, inbox)
        sending = asyncio.create_task(downlink.run(stop), name="downlink")
        helpers.append(sending)
        log.info(
            "Downlink started.",
            extra={"resend_seconds": cfg.downlink.resend_seconds},
        )
    delivering = (
        asyncio.create_task(delivery.run(stop), name="delivery") if cfg.delivery.enabled else None
    )
    sources = _order_sources(cfg, inbox)
    if sources is not None:
        helpers.append(asyncio.create_task(sources.run(stop), name="order-sources"))
        log.info("Order sources polling.", extra={"sources": [r.name for r in sources.runners]})
    feeds = _feeds(cfg, inbox)
    if feeds is not None:
        helpers.append(asyncio.create_task(feeds.run(stop), name="feeds"))
        log.info("Reference feeds polling.", extra={"feeds": [r.name for r in feeds.runners]})
    if cfg.web.enabled:
        from central.web import create_app, serve

        helpers.append(asyncio.create_task(serve(create_app(cfg, inbox), cfg.web.listen, stop)))
        log.info("Dashboard and API listening.", extra={"listen": cfg.web.listen})
    try:
        await intake.run(stop)
        if delivering is not None:
            # A delivery in flight finishes and is recorded before the relay exits.
            stop.set()
            await delivering
    finally:
        if delivering is not None and not delivering.done():
            delivering.cancel()
            await asyncio.gather(delivering, return_exceptions=True)
        notifier.stopping()
        if sending is not None:
            # An answer being settled is committed before the inbox closes.
            stop.set()
            await asyncio.wait({sending}, timeout=5)
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        if sources is not None:
            await sources.aclose()
        if feeds is not None:
            await feeds.aclose()
        await inbox.close()
    log.info("Relay stopped.", extra={"relay_id": cfg.relay_id})


def _order_sources(cfg: CentralConfig, inbox: Inbox) -> OrderSources | None:
    """The relay's order sources over its inbox's downlink, None when none is enabled."""
    if not any(s.enabled for s in cfg.order_sources.values()):
        return None
    from central.sources import OrderSources

    return OrderSources(cfg, inbox)


def _feeds(cfg: CentralConfig, inbox: Inbox) -> Feeds | None:
    """The relay's reference feeds, None when none is enabled."""
    if not any(f.enabled for f in cfg.feeds.values()):
        return None
    from central.feeds import Feeds

    return Feeds(cfg, inbox)


@app.command("doctor")
def doctor(config: ConfigOption) -> None:
    """Self-check: the config, the inbox, and files and folders others could read."""
    cfg = load_or_exit(config)
    problems = []
    paths = [cfg.data_dir, cfg.users_file, cfg.session_secret_file, cfg.log_file.parent]
    if cfg.log_file.parent.is_dir():
        paths += sorted(cfg.log_file.parent.glob(cfg.log_file.name + "*"))
    if cfg.inbox_url.startswith("sqlite:///"):
        db = Path(cfg.inbox_url.removeprefix("sqlite:///"))
        paths += [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
    if cfg.broker.key_file is not None:
        paths.append(Path(cfg.broker.key_file))
    problems += [f"too open: {line}" for line in too_open(paths)]
    modes = "modes private"
    if not modes_checked():  # said, never passed in silence
        modes = "modes not checked on Windows"
        typer.echo(
            f"NOTE modes not checked on Windows: check with icacls that only SYSTEM, "
            f"Administrators and the relay's account may read {cfg.data_dir} and the files "
            "in it (the inbox, keys, users file and logs)"
        )
    try:
        asyncio.run(_stats(cfg))
    except Exception as exc:  # noqa: BLE001 - a self-check reports, it does not raise
        said = redact_text(str(exc))[:300]
        problems.append(f"inbox: {cfg.inbox_url.split('://', 1)[0]} does not open ({said})")
    for line in problems:
        typer.echo(f"FAIL {line}")
    if problems:
        raise typer.Exit(1)
    typer.echo(f"OK {config}: config valid, inbox opens, {modes}")


@app.command("stats")
def stats(
    config: ConfigOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Records by state, stores, exceptions, duplicates, refused batches and gaps; each
    store's downlink: messages pending and delivered, the oldest waiting, orders past
    their promised time, and, as the store's heartbeat said, orders not yet written to
    the POS and those past the agent's alert time."""
    cfg = load_or_exit(config)
    data = asyncio.run(_stats(cfg))
    if as_json:
        typer.echo(json.dumps(data))
        return
    typer.echo(render_stats(data, cfg.inbox_url.split("://", 1)[0]), nl=False)


def render_stats(data: dict[str, Any], backend: str, *, width: int | None = None) -> str:
    """The inbox's counts as aligned tables: the figures, deliveries per target with one
    column per state, and the downlink per store (`--json` gives the same data to
    scripts)."""
    import io

    from rich.console import Console
    from rich.table import Table

    figures = Table(title=f"Tillbridge relay inbox ({backend})", min_width=40)
    figures.add_column("figure")
    figures.add_column("value", justify="right")
    figures.add_row("records", str(data["records"]))
    for state, count in data["by_state"].items():
        figures.add_row(f"  {state}", str(count))
    for name, value in data.items():
        if name not in ("records", "by_state", "deliveries", "downlink", "reference"):
            figures.add_row(name, str(value))
    # Reference data held to fan out: customers and items, one figure each.
    for kind, count in sorted((data.get("reference") or {}).items()):
        figures.add_row(f"reference {kind}s", str(count))
    out = io.StringIO()
    console = Console(file=out, width=width or 100, color_system=None, highlight=False)
    console.print(figures)
    deliveries: dict[str, dict[str, int]] = data.get("deliveries") or {}
    if deliveries:
        states = sorted({state for counts in deliveries.values() for state in counts})
        table = Table(title="Deliveries by target")
        table.add_column("target")
        for state in states:
            table.add_column(state, justify="right")
        for target, counts in sorted(deliveries.items()):
            table.add_row(target, *(str(counts.get(state, 0)) for state in states))
        console.print(table)
    downlink: dict[str, dict[str, Any]] = data.get("downlink") or {}
    if downlink:
        down = Table(title="Downlink by store")
        # The last two are the store's own word, from its heartbeat.
        for heading in (
            "store",
            "pending",
            "delivered",
            "oldest waiting",
            "past promise",
            "not in POS",
            "POS alert",
        ):
            down.add_column(heading, justify="left" if heading == "store" else "right")
        for store, figures_of in sorted(downlink.items()):
            oldest = figures_of.get("oldest_waiting")
            down.add_row(
                store,
                str(figures_of["pending"]),
                str(figures_of["delivered"]),
                oldest.replace("T", " ")[:19] + " UTC" if oldest else "-",
                str(figures_of["past_promise"]),
                _count(figures_of.get("orders_waiting")),
                _count(figures_of.get("orders_alert")),
            )
        console.print(down)
    return out.getvalue()


def _count(value: object) -> str:
    """A count the store may not have reported yet (an agent before the downlink)."""
    return "-" if value is None else str(value)


async def _stats(cfg: CentralConfig) -> dict[str, Any]:
    from central.inbox import open_inbox

    inbox = await open_inbox(cfg.inbox_url, relay_id=cfg.relay_id, pool_size=1)
    try:
        return await inbox.stats()
    finally:
        await inbox.close()


@app.command("provision-store")
def provision_store(
    store: Annotated[str, typer.Argument(help="Store id: its broker user name and topic segment.")],
    config: ConfigOption,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Folder for <STORE>/agent.toml and <STORE>/mqtt_password; "
            "default stores/ under data_dir.",
            show_default=False,
        ),
    ] = None,
    broker_url: Annotated[
        str | None,
        typer.Option(
            help="The broker as the store reaches it, mqtts://host:8883; "
            "default the relay's broker host on port 8883.",
            show_default=False,
        ),
    ] = None,
    prefix: Annotated[
        str | None,
        typer.Option(help="Topic prefix; default central.broker.topic_prefix.", show_default=False),
    ] = None,
    password_file: Annotated[
        Path | None,
        typer.Option(
            help="Mosquitto password_file; default mosquitto/passwd under data_dir.",
            show_default=False,
        ),
    ] = None,
    acl_file: Annotated[
        Path | None,
        typer.Option(
            help="Mosquitto acl_file; default mosquitto/acl under data_dir.", show_default=False
        ),
    ] = None,
    agent_dir: Annotated[
        str,
        typer.Option(
            help="Folder of mqtt_password and ca.pem on the store PC, as agent.toml names them."
        ),
    ] = "/etc/tillbridge",
) -> None:
    """Give a store its own broker user and password (a new one each time: re-running
    rotates it), make sure the ACL confines it to its own topics, and write its agent
    config. The password goes only into <STORE>/mqtt_password, mode 0600."""
    from central.provision import ProvisionError
    from central.provision import provision_store as provision

    cfg = load_or_exit(config)
    relay_user = cfg.broker.username or "relay"
    if broker_url is None:
        if cfg.broker.host in ("127.0.0.1", "localhost", "::1", "[::1]"):
            typer.echo(
                f"--broker-url is needed: the relay reaches its broker at {cfg.broker.host}, "
                "which a store cannot; give mqtts://HOST:8883 as the stores reach it.",
                err=True,
            )
            raise typer.Exit(2)
        broker_url = cfg.broker.url if cfg.broker.tls else f"mqtts://{cfg.broker.host}:8883"
    broker_dir = cfg.data_dir / "mosquitto"
    try:
        done = provision(
            store,
            broker_url=broker_url,
            prefix=prefix or cfg.broker.topic_prefix,
            relay_user=relay_user,
            password_file=password_file or broker_dir / "passwd",
            acl_file=acl_file or broker_dir / "acl",
            out=out or cfg.data_dir / "stores",
            agent_dir=agent_dir,
        )
    except ProvisionError as exc:
        typer.echo(f"{store}: {exc}", err=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        typer.echo(f"{store}: cannot write {exc.filename}: {exc.strerror}", err=True)
        raise typer.Exit(1) from None
    if done.rotated:
        typer.echo(
            f"Store {store}: password rotated in {done.password_file}; "
            "the old password stops working when the broker reloads."
        )
    else:
        typer.echo(f"Store {store}: broker user added to {done.password_file}.")
    state = "updated" if done.acl_changed else "already in place"
    typer.echo(f"ACL {done.acl_file}: the stores' topic patterns are {state}.")
    typer.echo(f"Password written to {done.agent_password} (mode 0600, shown nowhere else).")
    typer.echo(f"Agent config written to {done.agent_config}; copy both to the store PC.")
    typer.echo("Reload the broker to apply: systemctl reload mosquitto (or send it SIGHUP).")


user_app = group("Dashboard users (viewer, operator).")


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="Sign-in name.")],
    config: ConfigOption,
    role: Annotated[str, typer.Option(help="viewer or operator (may retry and resolve).")] = (
        "viewer"
    ),
    password_file: Annotated[
        Path | None,
        typer.Option(
            help="Read the password from this file instead of asking.", show_default=False
        ),
    ] = None,
) -> None:
    """Add a dashboard user, or set a new password and role for one (which ends their open
    sessions); only a hash is kept."""
    from central.web import add_user

    cfg = load_or_exit(config)
    if role not in ("viewer", "operator"):
        typer.echo(f"--role: use viewer or operator, not {role!r}", err=True)
        raise typer.Exit(2)
    if password_file is not None:
        password = password_file.read_text(encoding="utf-8").splitlines()[0]
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        typer.echo("The password needs at least 8 characters.", err=True)
        raise typer.Exit(2)
    fresh = add_user(cfg.users_file, name, role, password)  # type: ignore[arg-type]
    typer.echo(f"User {name} ({role}) {'added to' if fresh else 'updated in'} {cfg.users_file}.")


@user_app.command("remove")
def user_remove(
    name: Annotated[str, typer.Argument(help="Sign-in name.")], config: ConfigOption
) -> None:
    """Remove a dashboard user; their open sessions end at once."""
    from central.web import remove_user

    cfg = load_or_exit(config)
    if not remove_user(cfg.users_file, name):
        typer.echo(f"No user {name} in {cfg.users_file}.", err=True)
        raise typer.Exit(1)
    typer.echo(f"User {name} removed from {cfg.users_file}; their sessions have ended.")


@user_app.command("list")
def user_list(config: ConfigOption) -> None:
    """Dashboard users and their roles."""
    from central.web import load_users

    cfg = load_or_exit(config)
    for user in load_users(cfg.users_file).values():
        typer.echo(f"{user.name}\t{user.role}")


app.add_typer(user_app, name="user")


def _exceptions_config(ctx: typer.Context, config: OptionalConfig = None) -> None:
    """The exception queue: records that need a person."""
    ctx.obj = config  # the subcommand's own --config wins; loaded when it runs


exceptions_app.callback()(_exceptions_config)
app.add_typer(exceptions_app, name="exceptions")
app.add_typer(customers_app, name="customers")
app.add_typer(stores_app, name="stores")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
