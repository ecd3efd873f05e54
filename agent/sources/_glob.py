"""Full-path globs for the `include` and `exclude` keys of a source, the same on Windows
and POSIX: `**/` is any number of folders (none too), `*` and `?` stay inside one path
segment, `[abc]` and `[!abc]` are character classes. Case-insensitive on Windows."""

from __future__ import annotations

import re
import sys
from functools import lru_cache
from pathlib import PurePath

__all__ = ["matches", "relative_parts"]

_CASELESS = sys.platform == "win32"


def _char_class(body: str) -> str:
    negate = body.startswith("!")
    if negate:
        body = body[1:]
    chars = "".join(c if c == "-" else re.escape(c) for c in body)
    # A class never matches the separator: `[!a]` must not reach into another folder.
    return f"(?!/)[^{chars}]" if negate else f"(?!/)[{chars}]"


@lru_cache(maxsize=256)
def _pattern(glob: str) -> re.Pattern[str]:
    out: list[str] = []
    text = glob.replace("\\", "/")
    i = 0
    while i < len(text):
        if text.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif text.startswith("**", i):
            out.append(".*")
            i += 2
        elif text[i] == "*":
            out.append("[^/]*")
            i += 1
        elif text[i] == "?":
            out.append("[^/]")
            i += 1
        elif text[i] == "[":
            # `]` right after `[` or `[!` belongs to the class, as in fnmatch.
            start = i + 2 if text.startswith("[!", i) else i + 1
            end = text.find("]", start + 1)
            if end < 0:
                out.append(re.escape("["))
                i += 1
                continue
            out.append(_char_class(text[i + 1 : end]))
            i = end + 1
        else:
            out.append(re.escape(text[i]))
            i += 1
    return re.compile("".join(out) + r"\Z", re.IGNORECASE if _CASELESS else 0)


def relative_parts(path: PurePath, root: PurePath) -> tuple[str, ...] | None:
    """The folders and name of `path` below `root`, or None when it is not below it."""
    try:
        return path.relative_to(root).parts
    except ValueError:
        return None


def matches(path: PurePath, root: PurePath, include: list[str], exclude: list[str]) -> bool:
    """True when `path` matches an include glob and no exclude glob.

    A glob is tried against the path below `root` and against the full path, so both
    `**/*.xml` (top level included) and `C:/pos/out/*.xml` work.
    """
    full = path.as_posix()
    parts = relative_parts(path, root)
    relative = "/".join(parts) if parts is not None else full

    def hit(globs: list[str]) -> bool:
        for glob in globs:
            pattern = _pattern(glob)
            if pattern.match(relative) is not None or pattern.match(full) is not None:
                return True
        return False

    return hit(include) and not hit(exclude)
