"""Command-line help as Click writes it, for both programs: metavars such as `TEXT`,
`PATH` and `FILES...` where Typer's help would show Python type names (`<str>`,
`<list[Path]>`, `{files}...`)."""

from __future__ import annotations

import enum
from types import ModuleType
from typing import Any, get_args, get_origin

__all__ = ["click_style_help", "metavar_of"]

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
