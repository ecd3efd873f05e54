"""The relay's configuration: the `[central]` table of a TOML file, overridable from the
environment (`TILLBRIDGE_CENTRAL__INBOX__URL`). Unknown keys are errors that name
the key and the file; secrets are `SecretStr`, read from files, never logged.
"""

from __future__ import annotations

import os
import re
import sys
import zoneinfo
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator

from common.settings import (
    BrokerSettings,
    ConfigError,
    FileSettings,
    LoggingSettings,
    Section,
    load_table,
    read_secret,
    settle_broker,
)
from contract import Limits

from .connectors import CONNECTORS, TargetConfig
from .feeds._settings import FeedSettings
from .routing import RoutingSettings, StoreRoute
from .sources._settings import OrderSourceSettings

__all__ = [
    "AuditSettings",
    "CentralBrokerSettings",
    "CentralConfig",
    "CentralSettings",
    "DeliverySettings",
    "DownlinkSettings",
    "InboxSettings",
    "IntakeSettings",
    "ReconSettings",
    "WebSettings",
    "load_central_config",
]


def _default_data_dir() -> Path:
    if sys.platform == "win32":
        return Path(os.environ.get("PROGRAMDATA", "C:/ProgramData")) / "Tillbridge Central"
    return Path("/var/lib/tillbridge-central")


class CentralBrokerSettings(BrokerSettings):
    shared_group: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Shared-subscription group when several relays split the stores' streams.",
    )


class InboxSettings(Section):
    url: str = Field(
        default="",
        description="sqlite:///path/inbox.db or postgresql://user@host/db; "
        "default: inbox.db under data_dir.",
    )
    pool_size: int = Field(default=5, ge=1, le=100, description="PostgreSQL connections.")

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if value and not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("use sqlite:///path or postgresql://user@host/db")
        return value


class IntakeSettings(Section):
    gap_grace_seconds: float = Field(
        default=300, gt=0, description="How long a missing seq range waits before a resend."
    )
    gap_max_requests: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="Requests for a missing seq range (each after twice the wait of the one "
        "before) before it goes to the exception queue for a person; only requests made "
        "while the store is online with nothing left to send count.",
    )
    park_max_hours: float = Field(
        default=72, gt=0, description="How long a return waits for its original sale."
    )
    workers: int = Field(
        default=8,
        ge=1,
        le=256,
        description="Batches handled at once; batches of one store are always handled in order.",
    )
    reconnect_min_seconds: float = Field(
        default=1, gt=0, description="First delay before reconnecting to the broker."
    )
    reconnect_max_seconds: float = Field(
        default=60, gt=0, description="Longest delay between reconnection attempts."
    )
    ack_delay_seconds: float = Field(
        default=0,
        ge=0,
        description="Testing aid: wait this long between commit and ack, to rehearse a crash "
        "in that window. Keep 0 in production.",
    )
    exceptions_per_batch: int = Field(
        default=100,
        ge=1,
        le=10_000,
        description="Refused records of one batch kept as exceptions one by one; the rest of "
        "that batch's refusals become one exception that lists their seqs.",
    )
    limits: Limits = Field(
        default_factory=Limits,
        description="Sizes a message and its records may not pass (the agent applies the same).",
    )


class WebSettings(Section):
    enabled: bool = Field(default=True, description="Serve the dashboard and the API.")
    listen: str = Field(default="127.0.0.1:8470", description="Dashboard and API address.")
    users_file: Path | None = Field(
        default=None,
        description="Dashboard users with hashed passwords (tillbridge-central user add); "
        "default web-users.json under data_dir.",
    )
    session_secret_file: Path | None = Field(
        default=None,
        description="Key that signs session cookies; created on first start; "
        "default web-session.key under data_dir.",
    )
    session_hours: float = Field(default=12, gt=0, description="How long a login lasts.")
    secure_cookies: bool = Field(
        default=False, description="Mark the session cookie Secure (behind an HTTPS proxy)."
    )
    login_failures_per_user: int = Field(
        default=5,
        ge=1,
        description="Failed sign-ins of one user name within login_window_seconds before "
        "sign-in for that name is refused (429) until the window moves on.",
    )
    login_failures_per_address: int = Field(
        default=20,
        ge=1,
        description="Failed sign-ins from one client address within the window before that "
        "address is refused.",
    )
    login_window_seconds: float = Field(
        default=900, gt=0, description="The window the failed sign-ins are counted in."
    )

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("use host:port, e.g. 127.0.0.1:8470")
        return value


class DeliverySettings(Section):
    """`[central.delivery]`: how the relay works through its inbox."""

    enabled: bool = Field(default=True, description="Route and deliver records to the targets.")
    poll_seconds: float = Field(
        default=0.5, gt=0, description="How often idle workers look for due work."
    )
    lease_seconds: float = Field(
        default=120, gt=0, description="How long a claim holds before another relay may take it."
    )
    route_batch: int = Field(default=200, ge=1, le=5000, description="Records routed at once.")


class DownlinkSettings(Section):
    """`[central.downlink]`: how the relay sends each store its queued messages."""

    enabled: bool = Field(default=True, description="Send queued online orders down to the stores.")
    resend_seconds: float = Field(
        default=30,
        gt=0,
        description="A message the store has not answered is sent again after this long.",
    )
    poll_seconds: float = Field(
        default=2, gt=0, description="How often the relay looks for messages due to be sent."
    )
    batch_messages: int = Field(
        default=50, ge=1, le=1000, description="Most messages in one batch to a store."
    )


class ReconSettings(Section):
    tolerance: Decimal = Field(
        default=Decimal("0.01"),
        ge=0,
        description="Amounts closer than this count as equal in reconciliation.",
    )


class AuditSettings(Section):
    retention_days: float = Field(
        default=90, gt=0, description="Audit entries of finished records are kept this long."
    )


class CentralConfig(Section):
    """The `[central]` table."""

    relay_id: str = Field(
        default_factory=lambda: f"relay-{os.getpid()}",
        description="This relay's name in logs and claims.",
    )
    data_dir: Path = Field(default_factory=_default_data_dir, description="Inbox, logs/.")
    timezone: str = Field(default="UTC", description="Time zone of reports and schedules.")
    broker: CentralBrokerSettings = Field(default_factory=CentralBrokerSettings)
    inbox: InboxSettings = Field(default_factory=InboxSettings)
    intake: IntakeSettings = Field(default_factory=IntakeSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    downlink: DownlinkSettings = Field(default_factory=DownlinkSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    recon: ReconSettings = Field(default_factory=ReconSettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    targets: list[TargetConfig] = Field(
        default_factory=list, description="The commerce and CRM systems records go to."
    )
    stores: dict[str, StoreRoute] = Field(
        default_factory=dict,
        description='Routing per store id ("default" for stores without their own table).',
    )
    order_sources: dict[str, OrderSourceSettings] = Field(
        default_factory=dict,
        description="Platforms whose online orders go down to the stores, by name.",
    )
    feeds: dict[str, FeedSettings] = Field(
        default_factory=dict,
        description="Platforms whose customers, items and prices go down to the stores, by "
        "name (the name is the messages' source).",
    )

    @model_validator(mode="after")
    def _known_targets(self) -> CentralConfig:
        names = [t.name for t in self.targets]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"targets: the name {twice[0]!r} is used twice")
        known = set(names) | set(CONNECTORS)
        for store, route in self.stores.items():
            for key in route.model_extra or {}:
                if key not in known:
                    raise ValueError(
                        f"stores.{store}.{key}: not a target name or type "
                        f"(known: {', '.join(sorted(known))})"
                    )
        by_name = {t.name: t for t in self.targets}
        for name, source in self.order_sources.items():
            target = by_name.get(source.target)
            if target is None:
                raise ValueError(
                    f"order_sources.{name}.target: no [[central.targets]] entry is named "
                    f"{source.target!r}"
                )
            if target.type != source.type:
                raise ValueError(
                    f"order_sources.{name}.target: {source.target} is a {target.type} target, "
                    f"not {source.type}"
                )
            if "fulfillment" not in target.kinds:
                raise ValueError(
                    f"order_sources.{name}.target: target {source.target} must take the "
                    '"fulfillment" kind (add it to its kinds), so what the store does with '
                    "an order reaches the platform"
                )
        for name, feed in self.feeds.items():
            target = by_name.get(feed.target)
            if target is None or target.type != feed.type:
                raise ValueError(
                    f"feeds.{name}.target: no {feed.type} target is named {feed.target!r} in "
                    "[[central.targets]]"
                )
        for table_name in ("payments", "tax_codes"):
            for key in getattr(self.routing, table_name):
                if key not in known:
                    raise ValueError(f"routing.{table_name}.{key}: not a target name or type")
        return self

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from None
        return value

    @property
    def inbox_url(self) -> str:
        return self.inbox.url or f"sqlite:///{self.data_dir / 'inbox.db'}"

    @property
    def users_file(self) -> Path:
        return self.web.users_file or self.data_dir / "web-users.json"

    @property
    def session_secret_file(self) -> Path:
        return self.web.session_secret_file or self.data_dir / "web-session.key"

    @property
    def log_file(self) -> Path:
        return self.logging.file or self.data_dir / "logs" / "central.log"


class CentralSettings(FileSettings):
    """The whole file as the relay reads it: `[central]`, and `[agent]` left to the agent."""

    central: CentralConfig
    agent: dict[str, Any] | None = Field(default=None, description="The agent's table.")


def load_central_config(file: Path) -> CentralConfig:
    """Load and validate the relay's config; ConfigError lists every problem."""
    file = Path(file)
    config: CentralConfig = load_table(file, "central", CentralSettings, problem=_untagged)
    settle_broker(config.broker, file, "central.broker")
    problems = []
    for index, target in enumerate(config.targets):
        _read_target_secrets(target, index, file)
        problems += [
            f"{file}: central.targets[{index}].{key}: required for a {target.type} target "
            f"({target.name})"
            for key in target.missing()
        ]
    if problems:
        raise ConfigError(problems)
    if config.routing.sku_table is not None:
        from .routing import load_sku_table

        load_sku_table(config.routing.sku_table, file)  # a bad table fails here, by name
    return config


def _untagged(problem: str) -> str:
    """`central.targets[0].http.url` → `central.targets[0].url`: the connector type that
    pydantic puts in the path of a tagged union is not a key of the file."""
    types = "|".join(re.escape(t) for t in CONNECTORS)
    return re.sub(rf"(central\.targets\[\d+\])\.(?:{types})\b", r"\1", problem)


def _read_target_secrets(target: Any, index: int, file: Path) -> None:
    """Each `X_file` of a target fills its secret `X` (`client_secret_file` → `client_secret`)."""
    fields = type(target).model_fields
    for name in fields:
        base = name.removesuffix("_file")
        if base == name or base not in fields or getattr(target, name) in (None, ""):
            continue
        current = getattr(target, base)
        if not isinstance(current, SecretStr | None):
            continue
        secret = read_secret(
            current,
            Path(getattr(target, name)),
            key=f"central.targets[{index}].{name}",
            config_file=file,
        )
        setattr(target, base, secret)
