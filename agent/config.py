"""The agent's configuration: the `[agent]` table of a TOML file, overridable from the
environment (`TILLBRIDGE_AGENT__BROKER__URL`). Unknown keys are errors that name
the key and the file; secrets are `SecretStr`, read from files, never logged.
Relative paths resolve against the config file's folder, never the working directory
(a Windows service starts in System32).
"""

from __future__ import annotations

import os
import socket
import sys
import zoneinfo
from pathlib import Path, PureWindowsPath
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from common.settings import (
    BrokerSettings,
    FileSettings,
    LoggingSettings,
    Section,
    load_table,
    settle_broker,
)
from contract import Limits

__all__ = [
    "AgentConfig",
    "AgentLimits",
    "AgentSettings",
    "DownlinkSettings",
    "MicrosStsSettings",
    "OutboxSettings",
    "ReferenceSettings",
    "SourceSettings",
    "UplinkSettings",
    "load_agent_config",
]

FORMATS = ("auto", "poslog", "micros", "magestore", "inventory", "oms")


def _default_data_dir() -> Path:
    if sys.platform == "win32":
        return Path(os.environ.get("PROGRAMDATA", "C:/ProgramData")) / "Tillbridge"
    return Path("/var/lib/tillbridge")


class SourceSettings(Section):
    """One folder the POS exports into."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Name used in logs and status."
    )
    path: Path = Field(description="Folder to watch (local path or UNC share).")
    format: Literal["auto", "poslog", "micros", "magestore", "inventory", "oms"] = Field(
        default="auto", description="Parser for the files; auto detects by content."
    )
    include: list[str] = Field(default=["**/*"], description="Full-path globs of files to take.")
    exclude: list[str] = Field(
        default=["**/*.tmp", "**/*.part", "**/*.partial", "**/~*", "**/*.ready"],
        description="Full-path globs of files to leave alone.",
    )
    poll: bool | None = Field(
        default=None, description="Poll instead of native events; unset: poll on UNC paths."
    )
    poll_interval: float = Field(default=5.0, gt=0, description="Seconds between polls.")
    settle_seconds: float = Field(
        default=2.0, ge=0, description="A file is taken once its size and mtime hold this long."
    )
    require_ready_marker: bool = Field(
        default=False, description="Take a file only once `<name>.ready` exists beside it."
    )
    complete_when: Literal["closed", "ready", "renamed"] = Field(
        default="closed",
        description="When a file is complete: `closed` once its size and mtime held for "
        "settle_seconds and (on Windows) no other process holds it open; `ready` once its "
        "`.ready` marker exists; `renamed` as soon as it is seen, for a POS that writes "
        "under an excluded name (`.tmp`) and renames into place.",
    )
    rescan_seconds: float = Field(default=60.0, gt=0, description="Full rescan interval.")
    encoding: str | None = Field(default=None, description="Text encoding; unset: detect.")
    delimiter: str | None = Field(default=None, description="CSV delimiter; unset: detect.")
    thousands: Literal["", ",", "'", " "] = Field(
        default="",
        description='Thousands separator the exports write in amounts ("1,234.50"); unset: '
        "an amount with one is refused, as is any other separator.",
    )
    columns: dict[str, str] = Field(
        default_factory=dict, description="CSV column map: canonical name → header in the file."
    )

    @property
    def polled(self) -> bool:
        if self.poll is not None:
            return self.poll
        text = str(self.path)
        return text.startswith(("\\\\", "//"))


class OutboxSettings(Section):
    """Local buffer limits. At a limit the agent stops taking files; nothing is evicted."""

    max_bytes: int = Field(
        default=2 * 1024**3, ge=1024, description="Most bytes of unacknowledged records."
    )
    max_rows: int = Field(default=5_000_000, ge=1, description="Most unacknowledged records.")
    max_age_days: float = Field(
        default=30, gt=0, description="Oldest unacknowledged record before intake pauses."
    )
    min_free_disk_mb: int = Field(
        default=500, ge=0, description="Intake pauses when free disk falls below this."
    )
    keep_acked_days: float = Field(
        default=7, ge=0, description="How long acknowledged records stay for audit."
    )
    commit_interval_ms: int = Field(
        default=50, ge=0, le=1000, description="Longest wait to group records into one commit."
    )
    key_file: Path | None = Field(
        default=None, description="AES key for customer contact at rest; default under data_dir."
    )


class UplinkSettings(Section):
    """How records travel to central."""

    batch_max_records: int = Field(
        default=5000,
        ge=1,
        le=10_000,
        description="Most records per batch; the byte limit usually decides first (about "
        "2,000 sales fit 128 KB compressed), and fuller batches drain a backlog faster.",
    )
    batch_max_bytes: int = Field(
        default=128 * 1024, ge=4096, description="Compressed batch size limit (AWS IoT: 128 KB)."
    )
    compression_level: int = Field(
        default=1, ge=1, le=9, description="gzip level of batches: 1 fastest, 9 smallest."
    )
    window: int = Field(default=16, ge=1, le=1000, description="Batches in flight at once.")
    ack_timeout_seconds: float = Field(
        default=60, gt=0, description="Re-send a batch central has not acknowledged by then."
    )
    reconnect_min_seconds: float = Field(default=1, gt=0, description="First reconnect delay.")
    reconnect_max_seconds: float = Field(default=120, gt=0, description="Longest reconnect delay.")
    heartbeat_seconds: float = Field(default=30, gt=0, description="Status heartbeat interval.")


class MicrosStsSettings(Section):
    """Where the `micros_sts` writer posts checks: Simphony Transaction Services Gen2 on
    the store's network, in one revenue center."""

    url: str = Field(
        default="",
        pattern=r"^(https?://\S+)?$",
        description="The Checks API base path, `https://host/api/v1` (EMC: Enterprise "
        "Parameters, Applications, Transaction Services Generation 2 Services).",
    )
    org_short_name: str = Field(default="", max_length=64, description="Organization.")
    loc_ref: str = Field(default="", max_length=64, description="Location (property).")
    rvc_ref: int = Field(default=0, ge=0, description="Revenue center number.")
    employee_ref: int = Field(
        default=0, ge=0, description="Employee object number the checks are opened under."
    )
    order_type_ref: int | None = Field(
        default=None, ge=0, description="Order type of the checks; unset: the RVC's default."
    )
    token_file: Path | None = Field(
        default=None,
        description="File holding the OpenID Connect ID token sent as the bearer; read at "
        "every request, so whatever renews it takes effect at once.",
    )
    timeout_seconds: float = Field(default=30, gt=0, description="Per request.")


class DownlinkSettings(Section):
    """Orders central sends this store, and how they reach the POS."""

    enabled: bool = Field(
        default=False, description="Take orders on `{prefix}/{store}/down` and write them."
    )
    writer: Literal["file", "micros_sts"] = Field(
        default="file", description="How an order reaches the POS (a writer by name)."
    )
    folder: Path | None = Field(
        default=None, description="The POS's order import folder (writer `file`)."
    )
    format: Literal["json", "csv", "poslog"] = Field(
        default="json", description="File format of the `file` writer."
    )
    alert_after_seconds: float = Field(
        default=900,
        gt=0,
        description="An order not yet written this long after it arrived raises an alert "
        "in status and the heartbeat (it keeps being retried: nothing is dropped).",
    )
    retry_min_seconds: float = Field(default=2, gt=0, description="First retry delay.")
    retry_max_seconds: float = Field(default=300, gt=0, description="Longest retry delay.")
    keep_written_days: float = Field(
        default=30,
        ge=1,
        description="A written order's content is kept this long; its seq, key and where "
        "it went are kept for good (a resend never makes a second file or check).",
    )
    micros_sts: MicrosStsSettings = Field(default_factory=MicrosStsSettings)

    @model_validator(mode="after")
    def _writer_settings(self) -> DownlinkSettings:
        if not self.enabled:
            return self
        if self.writer == "file" and self.folder is None:
            raise ValueError("writer `file` needs `folder`, the POS's order import folder")
        if self.writer == "micros_sts":
            sts = self.micros_sts
            missing = [
                name
                for name, value in (
                    ("url", sts.url),
                    ("org_short_name", sts.org_short_name),
                    ("loc_ref", sts.loc_ref),
                    ("rvc_ref", sts.rvc_ref),
                    ("token_file", sts.token_file),
                )
                if not value
            ]
            if missing:
                raise ValueError(
                    "writer `micros_sts` needs [agent.downlink.micros_sts] " + ", ".join(missing)
                )
        if self.retry_max_seconds < self.retry_min_seconds:
            raise ValueError("retry_max_seconds is below retry_min_seconds")
        return self


class ReferenceSettings(Section):
    """Reference data central sends on the downlink (customers, items and prices): kept in
    `reference.db`, written to the POS as import files, served to the till on loopback."""

    enabled: bool = Field(
        default=False,
        description="Take customer and item messages (needs [agent.downlink] enabled): keep "
        "the newest state of each in reference.db and write it to the POS.",
    )
    folder: Path | None = Field(
        default=None,
        description="The POS's import folder for reference files (needed when a writer is set).",
    )
    customers: Literal["none", "customer_csv"] = Field(
        default="none", description="How customers reach the POS (a writer by name)."
    )
    items: Literal["none", "micros_csv", "poslog"] = Field(
        default="none", description="How items and prices reach the POS (a writer by name)."
    )
    revenue_center: int = Field(
        default=1, ge=0, description="`micros_csv`: the revenue center number of the prices."
    )
    price_level: int = Field(
        default=1, ge=1, description="`micros_csv`: the price level the store's price goes to."
    )
    resync_when_lost: bool = Field(
        default=True,
        description="Ask central for all customers and items when reference.db is new or was "
        "lost (first start, a damaged file moved aside).",
    )

    @model_validator(mode="after")
    def _folder_for_writers(self) -> ReferenceSettings:
        if (
            self.enabled
            and self.folder is None
            and (self.customers, self.items)
            != (
                "none",
                "none",
            )
        ):
            raise ValueError("a reference writer needs `folder`, the POS's import folder")
        return self


class AgentLimits(Limits):
    """The relay's limits (keep both alike: a record over the relay's is refused there),
    applied while files are read, and how many transactions one file may hold."""

    transactions_per_file: int = Field(
        default=1_000_000,
        ge=1,
        description="Most transactions in one file; a file with more is refused whole.",
    )


class AgentConfig(Section):
    """The `[agent]` table."""

    store: str = Field(
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Store id: MQTT identity and topic segment.",
    )
    agent_id: str = Field(
        default_factory=socket.gethostname, description="This agent's id; default host name."
    )
    data_dir: Path = Field(
        default_factory=_default_data_dir, description="Outbox, archive/, quarantine/, logs/."
    )
    timezone: str = Field(
        default="UTC", description="Store time zone for timestamps without offset and schedules."
    )
    currency: str = Field(
        default="EUR", pattern=r"^[A-Z]{3}$", description="Currency when an export names none."
    )
    end_of_day_close: str = Field(
        default="04:00",
        pattern=r"^([01]\d|2[0-3]):[0-5]\d$",
        description="Local time after which a business day is closed and summarised.",
    )
    status_listen: str = Field(
        default="127.0.0.1:8471",
        description="Local status endpoint (loopback only; port 0 takes any free port). "
        "The daemon writes the address it listens on to status.address in its data folder, "
        "where the status command reads it.",
    )
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    sources: list[SourceSettings] = Field(default_factory=list)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    uplink: UplinkSettings = Field(default_factory=UplinkSettings)
    downlink: DownlinkSettings = Field(default_factory=DownlinkSettings)
    reference: ReferenceSettings = Field(default_factory=ReferenceSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    limits: AgentLimits = Field(default_factory=AgentLimits)
    archive_days: int = Field(
        default=30,
        ge=0,
        description="Days an archived POS file is kept before it is purged; 0 keeps them all.",
    )
    archive_encrypt: bool = Field(
        default=True,
        description="Store archived POS files (full card numbers and names as the POS wrote "
        "them) encrypted with the outbox key; every reader opens them transparently.",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from None
        return value

    @field_validator("status_listen")
    @classmethod
    def _loopback(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if host not in ("127.0.0.1", "localhost", "[::1]") or not port.isdigit():
            raise ValueError("the status endpoint binds to 127.0.0.1:<port> only")
        return value

    @model_validator(mode="after")
    def _unique_sources(self) -> AgentConfig:
        names = [s.name for s in self.sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique; repeated: {', '.join(dupes)}")
        return self

    @model_validator(mode="after")
    def _orders_not_read_back(self) -> AgentConfig:
        """An order written into a folder the agent watches would be read back as a sale."""
        folder = self.downlink.folder
        if self.downlink.enabled and folder is not None:
            for source in self.sources:
                if folder == source.path or folder.is_relative_to(source.path):
                    raise ValueError(
                        f"downlink.folder {folder} lies in source {source.name!r}'s folder: "
                        "the agent would read its own orders back"
                    )
        return self

    @model_validator(mode="after")
    def _reference_rides_the_downlink(self) -> AgentConfig:
        reference = self.reference
        if reference.enabled and not self.downlink.enabled:
            raise ValueError("reference data travels on the downlink: enable [agent.downlink]")
        folder = reference.folder
        if reference.enabled and folder is not None:
            for source in self.sources:
                if folder == source.path or folder.is_relative_to(source.path):
                    raise ValueError(
                        f"reference.folder {folder} lies in source {source.name!r}'s folder: "
                        "the agent would read its own files back"
                    )
        return self

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    @property
    def log_file(self) -> Path:
        return self.logging.file or self.data_dir / "logs" / "agent.log"

    @property
    def outbox_path(self) -> Path:
        return self.data_dir / "outbox.db"

    @property
    def downlink_path(self) -> Path:
        return self.data_dir / "downlink.db"

    @property
    def reference_path(self) -> Path:
        return self.data_dir / "reference.db"

    @property
    def outbox_key_file(self) -> Path:
        """The outbox key: `outbox.key_file`, by default `outbox.key` in the data folder."""
        return self.outbox.key_file or self.data_dir / "outbox.key"

    @property
    def archive_dir(self) -> Path:
        return self.data_dir / "archive"

    @property
    def quarantine_dir(self) -> Path:
        return self.data_dir / "quarantine"


class AgentSettings(FileSettings):
    """The whole file as the agent reads it: `[agent]`, and `[central]` left to the relay."""

    agent: AgentConfig
    central: dict[str, Any] | None = Field(default=None, description="The relay's table.")


def load_agent_config(file: Path) -> AgentConfig:
    """Load and validate the agent's config; ConfigError lists every problem."""
    file = Path(file)
    config: AgentConfig = load_table(file, "agent", AgentSettings)
    _anchor(config, file.absolute().parent)
    settle_broker(config.broker, file, "agent.broker")
    return config


def _anchored(path: Path, base: Path) -> Path:
    """`path` against `base` when relative. A Windows path read on another system (a
    drive letter or a share) counts as absolute: it is left as written."""
    if path.is_absolute() or PureWindowsPath(path).anchor:
        return path
    return base / path


def _anchor(config: AgentConfig, base: Path) -> None:
    """Every path in the config made absolute against the config file's folder."""
    config.data_dir = _anchored(config.data_dir, base)
    for source in config.sources:
        source.path = _anchored(source.path, base)
    if config.outbox.key_file is not None:
        config.outbox.key_file = _anchored(config.outbox.key_file, base)
    if config.logging.file is not None:
        config.logging.file = _anchored(config.logging.file, base)
    downlink = config.downlink
    if downlink.folder is not None:
        downlink.folder = _anchored(downlink.folder, base)
    if downlink.micros_sts.token_file is not None:
        downlink.micros_sts.token_file = _anchored(downlink.micros_sts.token_file, base)
    if config.reference.folder is not None:
        config.reference.folder = _anchored(config.reference.folder, base)
    broker = config.broker
    for name in ("password_file", "ca_file", "cert_file", "key_file"):
        value = getattr(broker, name)
        if value is not None:
            setattr(broker, name, _anchored(value, base))
