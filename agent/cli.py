"""`tillbridge-agent`: the store daemon and the field-support commands around it.

Exit codes: 0 success, 1 failure at run time, 2 refused input or invalid config.
"""

from __future__ import annotations

import hashlib
import json
import sys
import zoneinfo
from pathlib import Path
from typing import Annotated

import typer

from agent._version import __version__
from agent.config import AgentConfig, load_agent_config
from agent.contract.settings import ConfigError

app = typer.Typer(
    name="tillbridge-agent",
    help="Tillbridge store agent: watches POS exports and forwards them to central.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Configuration commands.", no_args_is_help=True)
app.add_typer(config_app, name="config")

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="Path to the TOML config file.", show_default=False)
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tillbridge-agent {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Tillbridge store agent."""


def load_or_exit(config: Path) -> AgentConfig:
    """The config, or exit 2 with one line per problem on stderr."""
    try:
        return load_agent_config(config)
    except ConfigError as exc:
        for line in exc.problems:
            typer.echo(line, err=True)
        raise typer.Exit(2) from None


@config_app.command("check")
def config_check(config: ConfigOption) -> None:
    """Validate a config file: exit 0 when valid, 2 naming each wrong key."""
    cfg = load_or_exit(config)
    typer.echo(f"{config}: valid (store {cfg.store}, {len(cfg.sources)} source(s))")


@app.command()
def schema() -> None:
    """Print the record contract (canonical record and batch envelope) as JSON Schema."""
    from agent.contract import Batch, record_adapter

    doc = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Tillbridge record contract",
        "record": record_adapter.json_schema(),
        "batch": Batch.model_json_schema(by_alias=True),
    }
    typer.echo(json.dumps(doc, indent=2))


@app.command()
def parse(
    files: Annotated[list[Path], typer.Argument(help="POS export files.", show_default=False)],
    fmt: Annotated[
        str,
        typer.Option("--format", help="auto | poslog | micros | magestore | inventory | oms"),
    ] = "auto",
    store: Annotated[str | None, typer.Option(help="Store id when the file has none.")] = None,
    timezone: Annotated[
        str, typer.Option(help="Store time zone for timestamps without offset.")
    ] = "UTC",
    currency: Annotated[str, typer.Option(help="Currency when the file names none.")] = "EUR",
) -> None:
    """Print canonical records as JSON lines; refused input exits 2 naming file, place, reason."""
    from agent.parsers import ParseContext, ParseError, Skipped, parse_bytes

    try:
        zone = zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        typer.echo(f"--timezone: unknown time zone {timezone!r}", err=True)
        raise typer.Exit(2) from None
    failed = False
    for file in files:
        try:
            data = file.read_bytes()
        except OSError as exc:
            typer.echo(f"{file}: cannot read: {exc.strerror}", err=True)
            failed = True
            continue
        context = ParseContext(
            file_name=file.name,
            sha256=hashlib.sha256(data).hexdigest(),
            store=store,
            timezone=zone,
            currency=currency,
        )
        try:
            items = parse_bytes(data, fmt, context=context)
        except ParseError as exc:
            place = exc.place or "file"
            typer.echo(f"{file}: {place}: {exc.reason}", err=True)
            failed = True
            continue
        out = sys.stdout
        for item in items:
            if not isinstance(item, Skipped):
                out.write(item.model_dump_json() + "\n")
        out.flush()
    if failed:
        raise typer.Exit(2)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
