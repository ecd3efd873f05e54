"""How both programs read their config: one loader (`load_table`) for a program's table
of a TOML file with environment overrides, how problems are reported, and how secrets
are read. The settings classes themselves live in `agent.config` and `central.config`.

A problem is one line naming the file, the key and what is wrong:
`/etc/tillbridge/agent.toml: agent.broker.pasword_file: unknown key`.
"""

from __future__ import annotations

import contextvars
import os
import ssl
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

__all__ = [
    "CONFIG_ENV",
    "ENV_PREFIX",
    "BrokerSettings",
    "ConfigError",
    "FileSettings",
    "LoggingSettings",
    "Section",
    "check_broker_files",
    "default_config_path",
    "describe_errors",
    "env_name",
    "load_table",
    "read_secret",
    "read_toml",
    "settle_broker",
]

ENV_PREFIX = "TILLBRIDGE_"


class ConfigError(Exception):
    """An invalid config; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class Section(BaseModel):
    """Base of every config table: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


CONFIG_ENV = "TILLBRIDGE_CONFIG"


def default_config_path(program: str, *, windows: bool | None = None) -> Path:
    """Where a command looks for its config when `--config` is not given: the file that
    `TILLBRIDGE_CONFIG` names, else the platform's place (`/etc/tillbridge/<program>.toml`,
    `%ProgramData%\\Tillbridge\\<program>.toml` on Windows, or wherever `windows` says).
    Always absolute: a service starts in a folder of the system's choosing."""
    named = os.environ.get(CONFIG_ENV)
    if named:
        return Path(named).resolve()
    if sys.platform == "win32" if windows is None else windows:
        base = Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData"))
        return (base / "Tillbridge" / f"{program}.toml").resolve()
    return Path("/etc/tillbridge") / f"{program}.toml"


def env_name(path: tuple[str | int, ...]) -> str:
    """The environment variable that overrides a config key."""
    return ENV_PREFIX + "__".join(str(p).upper() for p in path)


def _dotted(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-", "tagged-union", "literal[")):
            continue
        else:
            out += f".{part}" if out else part
    return out


def describe_errors(exc: ValidationError, file: Path) -> list[str]:
    """One `file: key: problem` line per validation error."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        key = _dotted(loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            what = "unknown key"
        elif err["type"] == "missing":
            what = "required key is missing"
        else:
            what = str(err["msg"]).removeprefix("Value error, ")
            if "input" in err and not isinstance(err["input"], dict | list):
                shown = "[hidden]" if _secretish(key) else repr(err["input"])
                what = f"{what} (got {shown})"
        origin = f" (from {env_name(loc)})" if env_name(loc) in os.environ else ""
        lines.append(f"{file}: {key}: {what}{origin}")
    return lines


def _secretish(key: str) -> bool:
    return any(word in key.lower() for word in ("password", "secret", "token", "key"))


def read_toml(file: Path) -> dict[str, Any]:
    """Read a TOML file, turning every failure into a ConfigError naming the file."""
    try:
        with file.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError([f"{file}: file not found"]) from None
    except OSError as exc:
        raise ConfigError([f"{file}: cannot read: {exc.strerror}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{file}: not valid TOML: {exc}"]) from None


def read_secret(
    value: SecretStr | None, file: Path | None, *, key: str, config_file: Path
) -> SecretStr | None:
    """The secret given inline (or by environment), else the first line of its file."""
    if value is not None and value.get_secret_value():
        return value
    if file is None:
        return None
    try:
        text = file.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigError([f"{config_file}: {key}: file not found: {file}"]) from None
    except OSError as exc:
        raise ConfigError([f"{config_file}: {key}: cannot read {file}: {exc.strerror}"]) from None
    if not text:
        raise ConfigError([f"{config_file}: {key}: file is empty: {file}"])
    return SecretStr(text.splitlines()[0])


class BrokerSettings(Section):
    """How to reach the MQTT broker; the same shape on both sides."""

    url: str = Field(
        default="mqtt://127.0.0.1:1883",
        description="mqtt://host:port, or mqtts://host:port for TLS.",
        pattern=r"^mqtts?://[^/\s:]+(:\d{1,5})?/?$",
    )
    username: str | None = Field(default=None, description="MQTT user name.")
    password: SecretStr | None = Field(
        default=None, description="MQTT password; prefer password_file or the environment."
    )
    password_file: Path | None = Field(
        default=None, description="File whose first line is the password."
    )
    ca_file: Path | None = Field(
        default=None, description="CA bundle that signed the broker's certificate."
    )
    cert_file: Path | None = Field(default=None, description="Client certificate for mutual TLS.")
    key_file: Path | None = Field(
        default=None, description="Private key of the client certificate."
    )
    protocol: Literal["5", "3.1.1"] = Field(default="5", description="MQTT protocol version.")
    keepalive: int = Field(default=60, ge=5, le=3600, description="Keep-alive in seconds.")
    topic_prefix: str = Field(
        default="tillbridge/v1",
        pattern=r"^[^#+\s]+[^/#+\s]$",
        description="Prefix of every topic: {prefix}/{store}/records and so on.",
    )
    client_id: str | None = Field(default=None, description="MQTT client id; derived when unset.")
    allow_plaintext: bool = Field(
        default=False,
        description="Allow a password or TLS files with a plain mqtt:// URL to another host "
        "(the password then travels unencrypted, the TLS files are unused).",
    )

    @property
    def tls(self) -> bool:
        return self.url.startswith("mqtts://")

    def ssl_context(self) -> ssl.SSLContext | None:
        """TLS for mqtts:// URLs: the broker is verified against `ca_file` (or the system's
        CAs); a client certificate is presented when one is configured."""
        if not self.tls:
            return None
        context = ssl.create_default_context(
            cafile=str(self.ca_file) if self.ca_file is not None else None
        )
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert_file is not None and self.key_file is not None:
            context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1].rstrip("/").rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        rest = self.url.split("://", 1)[1].rstrip("/")
        return int(rest.rsplit(":", 1)[1]) if ":" in rest else (8883 if self.tls else 1883)


class LoggingSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Least severe level written."
    )
    file: Path | None = Field(
        default=None, description="JSON log file; default logs/<program>.log under data_dir."
    )
    max_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1024, description="Size at which the log file rolls over."
    )
    backups: int = Field(default=10, ge=1, le=100, description="Rolled-over files kept.")


def _loopback(host: str) -> bool:
    """A broker on this machine: nothing said to it crosses a network."""
    return host in ("localhost", "::1", "[::1]") or host.startswith("127.")


def check_broker_files(broker: BrokerSettings, file: Path, prefix: str) -> None:
    """TLS files that the config names must exist; a certificate needs its key; TLS files
    never go with a plain mqtt:// URL, nor a password to another host, unless allowed."""
    problems = []
    for name in ("ca_file", "cert_file", "key_file"):
        path = getattr(broker, name)
        if path is not None and not Path(path).is_file():
            problems.append(f"{file}: {prefix}.{name}: file not found: {path}")
    if (broker.cert_file is None) != (broker.key_file is None):
        problems.append(f"{file}: {prefix}.cert_file: cert_file and key_file go together")
    if not broker.tls and not broker.allow_plaintext:
        scheme = f"{prefix}.url is plain mqtt://"
        fix = f"use mqtts:// or set {prefix}.allow_plaintext = true"
        # A password to a broker on this machine crosses no network; TLS files are
        # ignored over plain MQTT wherever the broker is.
        if not _loopback(broker.host) and (
            broker.password is not None or broker.password_file is not None
        ):
            key = "password_file" if broker.password_file is not None else "password"
            problems.append(
                f"{file}: {prefix}.{key}: {scheme}, so the password would travel unencrypted; {fix}"
            )
        for name in ("ca_file", "cert_file", "key_file"):
            if getattr(broker, name) is not None:
                problems.append(
                    f"{file}: {prefix}.{name}: {scheme}, so this TLS file would be ignored; {fix}"
                )
    if problems:
        raise ConfigError(problems)


_toml_file: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "tillbridge_toml_file", default=None
)


class FileSettings(BaseSettings):
    """The whole config file as one program reads it. A subclass declares its program's
    table (`agent: AgentConfig`) and leaves the other program's table as a plain dict, so
    one file can serve both. Precedence: explicit arguments, then the environment
    (`TILLBRIDGE_AGENT__BROKER__URL`), then the TOML file."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = _toml_file.get()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)


def load_table(
    file: Path,
    table: str,
    settings: type[FileSettings],
    *,
    problem: Callable[[str], str] = lambda line: line,
) -> Any:
    """`[table]` of `file` validated by `settings` (environment overrides included);
    ConfigError lists every problem, each naming the file and the key. `problem` may
    reword a problem line (the relay drops the connector type pydantic puts in a path)."""
    file = Path(file)
    data = read_toml(file)  # clear errors for a missing or malformed file
    overridden = any(k.upper().startswith(f"{ENV_PREFIX}{table.upper()}") for k in os.environ)
    if table not in data and not overridden:
        raise ConfigError([f"{file}: {table}: the [{table}] table is missing"])
    token = _toml_file.set(file)
    try:
        loaded = settings()
    except ValidationError as exc:
        raise ConfigError([problem(line) for line in describe_errors(exc, file)]) from None
    finally:
        _toml_file.reset(token)
    return getattr(loaded, table)


def settle_broker(broker: BrokerSettings, file: Path, prefix: str) -> None:
    """Read the broker password from its file now, so a missing secret is named at load,
    and check the TLS files the config names."""
    password = read_secret(
        broker.password, broker.password_file, key=f"{prefix}.password_file", config_file=file
    )
    if password is not None:
        broker.password = SecretStr(password.get_secret_value())
    check_broker_files(broker, file, prefix)
