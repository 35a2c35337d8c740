"""The one typed settings object, loaded once at start and passed down.

Sources, later ones winning: defaults, an optional TOML file (``--config FILE`` or
``GPSFLEET_CONFIG``), environment variables ``GPSFLEET_*`` (nested sections with ``__``:
``GPSFLEET_GATEWAY__PROTOCOLS__JT808__PORT=6808``), then explicit overrides from the
command line.  Modules never read the environment themselves.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

DEFAULT_SECRET = "gpsfleet-development-secret"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


class ProtocolSettings(BaseModel):
    model_config = {"extra": "forbid"}

    enabled: bool = True
    port: int = Field(ge=0, le=65535)  # TCP listener; 0 picks a free port (tests)
    udp_port: int | None = Field(default=None, ge=0, le=65535)
    idle_timeout_s: float = Field(default=600.0, gt=0)
    tz: str = "UTC"  # zone the terminals report local time in
    lenient: bool = False  # accept frames with a wrong checksum, flagged
    max_frame: int = Field(default=4096, ge=64)


def _default_protocols() -> dict[str, ProtocolSettings]:
    # Ports follow Traccar's so that trackers configured for it need no change.
    return {
        "gps103": ProtocolSettings(port=5001),
        "h02": ProtocolSettings(port=5013, udp_port=5013),
        "jt808": ProtocolSettings(port=5015, tz="+08:00"),
        "gt06": ProtocolSettings(port=5023),
        "teltonika": ProtocolSettings(port=5027, udp_port=5027),
        "nmea": ProtocolSettings(port=5005),
    }


class SerialPortSettings(BaseModel):
    model_config = {"extra": "forbid"}

    device: str  # /dev/ttyUSB0 or a pyserial URL
    baudrate: int = 9600
    protocol: str = "nmea"
    terminal_id: str | None = None  # the id this port stands for when frames carry none
    reopen_max_backoff_s: float = 30.0


class MqttSettings(BaseModel):
    model_config = {"extra": "forbid"}

    enabled: bool = False
    url: str = "mqtt://127.0.0.1:1883"
    client_id: str = "gpsfleet-gateway"
    username: str | None = None
    password: SecretStr | None = None
    topic_prefix: str = "gpsfleet"
    shared_group: str | None = "gpsfleet"  # $share/<group>/... so gateways split one stream
    qos: int = Field(default=1, ge=0, le=2)
    keepalive_s: int = 30


class GatewaySettings(BaseModel):
    model_config = {"extra": "forbid"}

    host: str = "0.0.0.0"
    protocols: dict[str, ProtocolSettings] = Field(default_factory=_default_protocols)
    max_connections: int = Field(default=20000, ge=1)
    max_connections_per_address: int = Field(default=2000, ge=1)
    unknown_terminal: Literal["refuse", "quarantine"] = "quarantine"
    unknown_terminal_tries: int = Field(default=3, ge=1)
    batch_max_rows: int = Field(default=2000, ge=1)
    batch_max_delay_ms: float = Field(default=0.0, ge=0)  # 0: group commit, flush when the writer is free
    queue_max_frames: int = Field(default=100_000, ge=100)
    spool_max_bytes: int = Field(default=512 * 1024 * 1024, ge=1024)
    store_raw_frames: bool = True
    max_future_s: float = 300.0  # a fix further ahead than this is implausible
    max_speed_kmh: float = 1000.0  # an implied jump faster than this is implausible
    serial_ports: list[SerialPortSettings] = Field(default_factory=list)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)

    @field_validator("protocols", mode="before")
    @classmethod
    def _protocol_sections_over_defaults(cls, value: Any) -> Any:
        """Raw config (TOML, ``GPSFLEET_GATEWAY__PROTOCOLS__JT808__PORT``) names only what
        differs: the other protocols and the other keys keep their defaults.  A dict of
        ``ProtocolSettings`` objects (code, tests) is taken exactly as given."""
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            return value
        merged: dict[str, Any] = {name: spec.model_dump() for name, spec in _default_protocols().items()}
        for name, section in value.items():
            merged[name] = {**merged.get(name, {}), **section}
        return merged


class TimescaleSettings(BaseModel):
    model_config = {"extra": "forbid"}

    chunk_interval: str = "1 day"
    compress_after: str = "7 days"
    retention: str | None = "365 days"  # None keeps positions for ever


class StoreSettings(BaseModel):
    model_config = {"extra": "forbid"}

    track_max_days: float = Field(default=31.0, gt=0)
    track_page_size: int = Field(default=1000, ge=1, le=100_000)
    pool_size: int = Field(default=8, ge=1)
    timescale: TimescaleSettings = Field(default_factory=TimescaleSettings)


class RuleSettings(BaseModel):
    """One fault rule: enabled, threshold and how long it must hold before raising."""

    model_config = {"extra": "forbid"}

    enabled: bool = True
    threshold: float | None = None
    sustain_s: float = 0.0
    clear_s: float = 0.0  # how long the condition must be gone before the alert clears
    severity: str | None = None  # critical, major, minor; None keeps the rule's default
    ticket: bool | None = None  # open a repair ticket; None keeps the rule's default


class AlertSettings(BaseModel):
    model_config = {"extra": "forbid"}

    evaluate_every_s: float = Field(default=5.0, gt=0)
    queue_max: int = Field(default=10_000, ge=1)  # batches waiting for the alert engine
    rules: dict[str, RuleSettings] = Field(default_factory=dict)  # defaults live in alerts.rules
    per_model: dict[str, dict[str, RuleSettings]] = Field(default_factory=dict)


class TicketSettings(BaseModel):
    model_config = {"extra": "forbid"}

    # SLA targets per priority, hours: response (approved/dispatched) and repair (resolved).
    response_hours: dict[str, float] = Field(
        default_factory=lambda: {"urgent": 2.0, "high": 4.0, "normal": 24.0, "low": 72.0}
    )
    repair_hours: dict[str, float] = Field(
        default_factory=lambda: {"urgent": 24.0, "high": 48.0, "normal": 120.0, "low": 240.0}
    )
    reopen_window_h: float = 72.0


class WebhookSettings(BaseModel):
    model_config = {"extra": "forbid"}

    url: str
    secret: SecretStr | None = None
    roles: list[str] = Field(default_factory=list)
    customer_id: int | None = None
    events: list[str] = Field(default_factory=lambda: ["alert.raised", "ticket.opened"])


class SmtpSettings(BaseModel):
    model_config = {"extra": "forbid"}

    host: str | None = None
    port: int = 25
    username: str | None = None
    password: SecretStr | None = None
    sender: str = "gpsfleet@localhost"
    starttls: bool = False


class NotificationSettings(BaseModel):
    model_config = {"extra": "forbid"}

    webhooks: list[WebhookSettings] = Field(default_factory=list)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    email_recipients: dict[str, list[str]] = Field(
        default_factory=dict
    )  # role or "customer:<id>" -> addresses
    max_attempts: int = 6
    queue_max: int = 10_000


class WarrantySettings(BaseModel):
    model_config = {"extra": "forbid"}

    count_from: Literal["installation", "purchase"] = "installation"
    replacement_rule: Literal["remainder", "fresh"] = "remainder"
    default_months: int = 12


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GPSFLEET_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    db: str = "sqlite:///var/gpsfleet.db"
    data_dir: Path = Path("var")  # spool and other local files
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=0, le=65535)
    secret_key: SecretStr = SecretStr(DEFAULT_SECRET)
    log_level: str = "INFO"
    role: Literal["all", "gateway", "api"] = "all"

    store: StoreSettings = Field(default_factory=StoreSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    tickets: TicketSettings = Field(default_factory=TicketSettings)
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)
    warranty: WarrantySettings = Field(default_factory=WarrantySettings)

    @field_validator("db")
    @classmethod
    def _check_db(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "postgresql://", "postgres://", "postgresql+psycopg://")):
            raise ValueError("db must be sqlite:///PATH or postgresql://…")
        return value

    @model_validator(mode="after")
    def _refuse_default_secret_off_localhost(self) -> Settings:
        if self.secret_key.get_secret_value() == DEFAULT_SECRET and self.api_host not in LOCAL_HOSTS:
            raise ValueError(
                "secret_key is the built-in development secret; set GPSFLEET_SECRET_KEY "
                f"before binding the API to {self.api_host}"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the TOML file named by GPSFLEET_CONFIG (set by ``--config``), if any."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("GPSFLEET_CONFIG")
        if not path:
            return {}
        with open(path, "rb") as handle:
            return tomllib.load(handle)


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the settings once; ``overrides`` are command-line values (None is ignored)."""
    if config_file is not None:
        os.environ["GPSFLEET_CONFIG"] = str(config_file)
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def mask_dsn(url: str) -> str:
    """The DSN with its password replaced by ***, for messages and logs."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if not parts.password:
        return url  # unchanged: urlunsplit would turn sqlite:///path into sqlite://path
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def masked_dump(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain data, secrets and DSN passwords masked."""
    data = settings.model_dump(mode="json")
    data["db"] = mask_dsn(settings.db)

    def mask(node: Any, model: Any) -> Any:
        if isinstance(model, SecretStr):
            return "***"
        if isinstance(model, BaseModel):
            return {k: mask(node[k], getattr(model, k)) for k in node}
        if isinstance(model, dict):
            return {k: mask(node[k], model[k]) for k in node}
        if isinstance(model, list):
            return [mask(n, m) for n, m in zip(node, model, strict=True)]
        if isinstance(node, str) and "://" in node:
            return mask_dsn(node)  # any URL may carry a password: MQTT broker, webhooks
        return node

    masked = mask(data, settings)
    masked["db"] = mask_dsn(settings.db)
    return masked
