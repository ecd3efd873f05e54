"""What never reaches a log line, a support bundle or a dashboard: card numbers,
secrets and tokens, customer contact details. Shared by agent and relay.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from contract._pan import mask_pans
from contract._screen import mask_json as mask_pans_json

__all__ = [
    "REDACTED",
    "is_sensitive_key",
    "mask_pans_json",
    "redact_json_text",
    "redact_text",
    "redact_value",
]

REDACTED = "[redacted]"

_SENSITIVE_KEYS = re.compile(
    r"(pass(word|wd)?|secret|token|authori[sz]ation|api[_-]?key|private[_-]?key|credential|"
    r"cookie|session|email|e[_-]?mail|phone|mobile|first[_-]?name|last[_-]?name|"
    r"address|street|postcode|zip)",
    re.IGNORECASE,
)
# Every pattern below runs on whatever text a file or message holds, so none may
# backtrack: a match may start only where a run of its first characters starts (the
# look-behinds), and every part that could meet a long run of its own characters is
# bounded. The work is linear in the text (tests/hostile/test_redaction.py).
_NAME = r"[A-Za-z_-]"
# key=value or "key": "value" where the key names a secret or contact field.
_KV = re.compile(
    rf"""(?P<k>(?<!{_NAME})["']?{_NAME}{{0,40}}?"""
    r"""(?:password|passwd|secret|token|api[_-]?key|email|phone)"""
    rf"""{_NAME}{{0,40}}["']?\s{{0,16}}[:=]\s{{0,16}})"""
    r"""(?P<v>"[^"]{0,4096}"|'[^']{0,4096}'|[^\s,;&}]+)""",
    re.IGNORECASE,
)
_BEARER = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@"
    r"[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}(?![A-Za-z])"
)
# International or clearly formatted phone numbers: +49 30 1234567, (030) 123-4567.
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[\s.-]?(?:\(\d{1,5}\)[\s.-]?)?\d[\d\s.-]{5,}\d"
    r"|\(\d{2,5}\)\s?\d[\d\s.-]{4,}\d)"
)
_URL_CREDS = re.compile(
    r"(?<![a-z0-9+.-])(?P<scheme>[a-z][a-z0-9+.-]{0,31}://)[^/\s:@]{1,256}:[^/\s@]{1,256}@",
    re.IGNORECASE,
)


# "key": "value" inside JSON text that does not parse (an excerpt cut short, perhaps
# inside the value).
_JSON_PAIR = re.compile(
    r'"(?P<k>[^"\\\n]{1,64})"\s{0,16}:\s{0,16}"(?P<v>(?:[^"\\]|\\.){0,4096})(?:"|\Z)'
)


def is_sensitive_key(key: str) -> bool:
    """True when a field or config key names a secret or a customer contact detail."""
    return bool(_SENSITIVE_KEYS.search(key))


def redact_text(text: str) -> str:
    """Mask card numbers, bearer tokens, key=secret pairs, URL credentials, emails, phones."""
    text = mask_pans(text)
    text = _URL_CREDS.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _KV.sub(lambda m: f"{m.group('k')}{REDACTED}", text)
    text = _EMAIL.sub(REDACTED, text)
    return _PHONE.sub(REDACTED, text)


def redact_value(value: Any, key: str = "") -> Any:
    """Redact a structured value: sensitive keys lose their value, strings are scrubbed."""
    if key and is_sensitive_key(key) and value not in (None, "", [], {}):
        return REDACTED
    if isinstance(value, str):
        if value.lstrip()[:1] in ("{", "["):
            return redact_json_text(value)
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value


def redact_json_text(text: str) -> str:
    """JSON held as text (a request or response body in the audit trail) redacted like a
    body: sensitive keys lose their values, strings are scrubbed. Text that does not parse
    (an excerpt cut short) has the values of its sensitive "key": "value" pairs removed."""
    try:
        decoded = json.loads(text)
    except (ValueError, RecursionError):
        pass
    else:
        return json.dumps(redact_value(decoded), ensure_ascii=False)

    def pair(match: re.Match[str]) -> str:
        if is_sensitive_key(match.group("k")):
            return f'"{match.group("k")}": "{REDACTED}"'
        return match.group()

    return _JSON_PAIR.sub(pair, redact_text(text))
