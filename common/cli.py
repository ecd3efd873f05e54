"""The command-line base both programs build on: the program with its `--version`, its
command groups, the `--config` option with its default (`$TILLBRIDGE_CONFIG`, then the
platform's place), loading a config or exiting 2 with one line per problem, and help as
Click writes it: metavars such as `TEXT`, `PATH` and `FILES...` where Typer's help would
show Python type names (`<str>`, `<list[Path]>`, `{files}...`)."""

from __future__ import annotations

import enum
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar, get_args, get_origin

import typer
import typer.core

from .settings import ConfigError, default_config_path

__all__ = [
    "click_style_help",
    "config_option",
    "group",
    "load_or_exit",
    "metavar_of",
    "program",
]

T = TypeVar("T")

_NAMES = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "bool": "BOOLEAN"}


def metavar_of(param: Any) -> str:
    """The metavar Click would show for a parameter: its own, else by its type."""
    if param.metavar is not None:
        return str(param.metavar)
    desc = param.type_descriptor
    if desc.is_choice and desc.choices:
        values = (c.value if isinstance(c, enum.Enum) else c for c in desc.choices)
        return "[" + "|".join(str(v) for v in values) + "]"
    if desc.is_path:
        return "PATH"
    annotation = desc.annotation
    while get_origin(annotation) in (list, tuple):
        annotation = get_args(annotation)[0]
    name = getattr(annotation, "__name__", str(annotation))
    if name == "Path":
        return "PATH"
    return _NAMES.get(name, name.upper())


def click_style_help(core: ModuleType) -> None:
    """Make Typer's plain (non-rich) help name values as Click does. Idempotent."""
    parameter, argument, option = core._TyperParameter, core.TyperArgument, core.TyperOption
    if getattr(parameter, "_click_style", False):
        return

    def option_type(self: Any, ctx: Any) -> str | None:
        if getattr(self, "is_flag", False) or getattr(self, "count", False):
            return None  # a flag takes no value: Click shows none
        shown = metavar_of(self)
        return shown + "..." if self.nargs != 1 else shown

    def argument_name(self: Any) -> str:
        shown = (self.metavar or self.name or "").upper()
        if not self.required:
            shown = f"[{shown}]"
        return shown + "..." if self.nargs != 1 else shown

    option.display_type_rich = option_type
    argument.display_type_rich = lambda self, ctx: None
    argument._rich_display_name = argument_name
    argument._usage_display_name = argument_name
    parameter._click_style = True


def program(name: str, summary: str, version: str) -> typer.Typer:
    """A program's command line (`tillbridge-agent`, `tillbridge-central`): no arguments
    prints help, `--version` prints `name version`, help reads like Click's own."""
    click_style_help(typer.core)
    app = typer.Typer(
        name=name,
        help=summary,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,  # Click's own help: word-wrapped, metavars not type names
    )

    def show_version(value: bool) -> None:
        if value:
            typer.echo(f"{name} {version}")
            raise typer.Exit()

    # The option is the parameter's default, not its annotation: annotations here are
    # strings that Typer resolves in the module, where `show_version` is not a name.
    version_option = typer.Option(
        False, "--version", callback=show_version, is_eager=True, help="Print the version."
    )

    @app.callback()
    def _main(version: bool = version_option) -> None:
        del version

    _main.__doc__ = summary
    return app


def group(summary: str) -> typer.Typer:
    """A group of commands under a program (`config`, `quarantine`, `exceptions`)."""
    return typer.Typer(help=summary, no_args_is_help=True, rich_markup_mode=None)


def config_option(program_name: str, *, optional: bool = False) -> Any:
    """`--config`/`-c`. Required-with-default: the file `$TILLBRIDGE_CONFIG` names, else
    `/etc/tillbridge/<program>.toml` (`%ProgramData%\\Tillbridge\\<program>.toml` on
    Windows). `optional` is for a group that takes it before its subcommand, whose own
    `--config` then wins."""
    where = (
        f"$TILLBRIDGE_CONFIG, else /etc/tillbridge/{program_name}.toml; "
        f"%ProgramData%\\Tillbridge\\{program_name}.toml on Windows"
    )
    if optional:
        return typer.Option(
            "--config",
            "-c",
            help=f"The TOML config file, before or after the subcommand (default: {where}).",
            show_default=False,
        )
    return typer.Option(
        "--config",
        "-c",
        help=f"The TOML config file (default: {where}).",
        show_default=False,
        default_factory=lambda: default_config_path(program_name),
    )


def load_or_exit(load: Callable[[Path], T], config: Path) -> T:
    """The config `load` reads, or exit 2 with one line per problem on stderr."""
    try:
        return load(config)
    except ConfigError as exc:
        for line in exc.problems:
            typer.echo(line, err=True)
        raise typer.Exit(2) from None
