"""Per-terminal health: each dimension with the time it last changed, updated from what the
terminal reports and persisted in ``terminal_health`` so a restart keeps it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import String, any_, bindparam, literal, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from alerts.rules import ConditionState, Fault, Rule
from alerts.sql import upsert
from core.vocabulary import DEVICE_FAULT_ALARMS, Alarm, Attr
from store.records import EventRow, Flag, PositionRow
from store.tables.alerts import terminal_health

# Protocols whose terminals hang up between reports even over TCP (cheap H02/TK103 trackers);
# the runtime adds every protocol whose ProtocolSpec.disconnects_between_reports is set.
DISCONNECTING_PROTOCOLS = frozenset({"h02", "gps103"})
FROZEN_EPSILON_DEG = 1e-6
ERROR_WINDOW = timedelta(hours=1)
# Messages that say something about alarms: their alarm list being empty means "none now".
ALARM_BEARING_TYPES = frozenset({"position", "status", "alarm"})

DIMENSIONS = ("connectivity", "gnss", "power", "battery", "gsm", "sim", "clock", "data_quality")


@dataclass(slots=True)
class TerminalHealth:
    terminal_id: str
    updated_at: datetime
    protocol: str | None = None
    model_name: str | None = None
    connectivity: str = "never_seen"
    connectivity_since: datetime | None = None
    last_seen: datetime | None = None
    connected: bool | None = None
    connected_since: datetime | None = None
    gnss: str = "unknown"
    gnss_since: datetime | None = None
    last_fix_time: datetime | None = None
    last_lat: float | None = None
    last_lon: float | None = None
    power: str = "unknown"
    power_since: datetime | None = None
    power_v: float | None = None
    battery: str = "unknown"
    battery_since: datetime | None = None
    battery_v: float | None = None
    battery_level: float | None = None
    gsm: str = "unknown"
    gsm_since: datetime | None = None
    gsm_signal: float | None = None
    sim: str = "unknown"
    sim_since: datetime | None = None
    iccid_reported: str | None = None
    iccid_registered: str | None = None
    clock: str = "unknown"
    clock_since: datetime | None = None
    clock_drift_s: float | None = None
    data_quality: str = "unknown"
    data_quality_since: datetime | None = None
    decode_errors_1h: int = 0
    checksum_errors_1h: int = 0
    error_buckets: dict[str, list[int]] = field(default_factory=dict)
    conditions: dict[str, ConditionState] = field(default_factory=dict)
    pending: bool = False
    # Not persisted: what the message being looked at says, for the rules, and write tracking.
    reported_alarms: frozenset[str] | None = None
    disconnects_between_reports: bool = False
    conditions_changed: bool = False
    saved_last_seen: datetime | None = None

    def set(self, dimension: str, value: str, at: datetime) -> None:
        """Change a dimension, stamping when it changed (an unchanged value keeps its time)."""
        if getattr(self, dimension) != value:
            setattr(self, dimension, value)
            setattr(self, f"{dimension}_since", at)

    def to_row(self) -> dict[str, Any]:
        row = {name: getattr(self, name) for name in _COLUMNS}
        row["conditions"] = {fault: state.to_json() for fault, state in self.conditions.items()}
        # errors age out of their hour only as time passes: the timer must look at them too
        row["pending"] = self.needs_timer()
        return row

    def needs_timer(self) -> bool:
        """Only time can change something here: a sustain or clear clock runs, or errors age
        out of their hour (the timer looks at these terminals)."""
        return bool(self.error_buckets) or any(state.pending for state in self.conditions.values())

    @classmethod
    def from_row(cls, row: Any) -> TerminalHealth:
        data = {name: row[name] for name in _COLUMNS}
        data["conditions"] = {f: ConditionState.from_json(s) for f, s in (row["conditions"] or {}).items()}
        data["error_buckets"] = dict(row["error_buckets"] or {})
        return cls(**data, saved_last_seen=row["last_seen"])

    def public(self) -> dict[str, Any]:
        """The JSON the API shows for one terminal."""
        out: dict[str, Any] = {}
        for name in _COLUMNS:
            if name in ("conditions", "error_buckets", "pending"):
                continue
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, datetime) else value
        out["faults"] = sorted(f for f, s in self.conditions.items() if s.raised)
        return out


# What, when it changes, must be written at once (values like voltages ride along later).
_MATERIAL = (
    "protocol",
    "model_name",
    "connectivity",
    "connected",
    "gnss",
    "power",
    "battery",
    "gsm",
    "sim",
    "iccid_reported",
    "iccid_registered",
    "clock",
    "data_quality",
    "decode_errors_1h",
    "checksum_errors_1h",
)


def fingerprint(h: TerminalHealth) -> tuple[Any, ...]:
    return tuple(getattr(h, name) for name in _MATERIAL)


def saving(h: TerminalHealth, before: tuple[Any, ...] | None, last_seen_resolution_s: float) -> str | None:
    """What to write: "row" (new, or a dimension or fault state changed), "values" (only last
    seen and the measured values moved on; see ``save_values``), or None."""
    if before is None or h.conditions_changed or fingerprint(h) != before:
        return "row"
    if h.last_seen is None or h.saved_last_seen is None:
        return "row" if h.last_seen is not None else None
    if (h.last_seen - h.saved_last_seen).total_seconds() >= last_seen_resolution_s:
        return "values"
    return None


def looks_healthy(h: TerminalHealth) -> bool:
    """No rule could find a fault in this health (a fast path for the common case): no fault
    state is open and every dimension a report can move is fine or unknown."""
    return (
        not h.conditions
        and not h.reported_alarms
        and h.gnss in ("fix", "unknown")
        and h.power in ("on", "unknown")
        and h.battery in ("ok", "unknown")
        and h.gsm in ("ok", "unknown")
        and h.sim != "mismatch"
        and h.clock != "drift"
        and h.data_quality != "poor"
    )


_TRANSIENT = {"reported_alarms", "disconnects_between_reports", "conditions_changed", "saved_last_seen"}
_COLUMNS = tuple(f.name for f in fields(TerminalHealth) if f.name not in _TRANSIENT)
# What moves without a material change: last seen and the measured values (not the stamps of
# dimension changes, not the JSON of fault states and error counts, which move with the material).
_VALUES = tuple(
    name
    for name in _COLUMNS
    if name not in _MATERIAL
    and not name.endswith("_since")
    and name not in ("terminal_id", "updated_at", "conditions", "error_buckets", "pending")
)
_UPDATE_VALUES = (
    update(terminal_health)
    .where(terminal_health.c.terminal_id == bindparam("v_terminal_id"))
    .values({name: bindparam(f"v_{name}") for name in (*_VALUES, "updated_at")})
)


# --------------------------------------------------------------------------- observations


def observe_report(h: TerminalHealth, protocol: str, received_at: datetime) -> None:
    """Any message at all: the terminal is alive."""
    h.protocol = protocol
    if h.last_seen is None or received_at > h.last_seen:
        h.last_seen = received_at
    h.set("connectivity", "online", received_at)


def observe_position(h: TerminalHealth, row: PositionRow, rules: dict[str, Rule]) -> None:
    observe_report(h, row.protocol, row.received_at)
    at = row.received_at
    h.reported_alarms = frozenset(a for a in row.alarms if a in DEVICE_FAULT_ALARMS)
    archived = bool(row.attributes.get(Attr.ARCHIVED)) or bool(row.flags & Flag.STALE)
    if not archived:
        _observe_fix(h, row, rules, at)
        drift = (row.fix_time - row.received_at).total_seconds()
        h.clock_drift_s = drift
        limit = rules[Fault.CLOCK_DRIFT].threshold
        h.set("clock", "drift" if limit is not None and abs(drift) > limit * 60 else "ok", at)
    _observe_attributes(h, row.alarms, row.attributes, rules, at)
    if row.attributes.get(Attr.CHECKSUM_OK) is False:
        count_error(h, "checksum", at, rules)


def observe_event(h: TerminalHealth, row: EventRow, rules: dict[str, Rule]) -> None:
    observe_report(h, row.protocol, row.received_at)
    bearing = row.type in ALARM_BEARING_TYPES
    h.reported_alarms = frozenset(a for a in row.alarms if a in DEVICE_FAULT_ALARMS) if bearing else None
    status = row.attributes.get(Attr.GNSS_STATUS)
    if status in ("no_fix", "off"):
        h.set("gnss", "no_fix", row.received_at)
    _observe_attributes(h, row.alarms, row.attributes, rules, row.received_at)
    if row.attributes.get(Attr.CHECKSUM_OK) is False:
        count_error(h, "checksum", row.received_at, rules)


def observe_connection(h: TerminalHealth, protocol: str, connected: bool, at: datetime) -> None:
    h.protocol = protocol
    if h.connected != connected:
        h.connected = connected
        h.connected_since = at
    h.reported_alarms = None


def count_error(h: TerminalHealth, kind: str, at: datetime, rules: dict[str, Rule]) -> None:
    """One decode error (``kind`` checksum, or any other) in this minute's bucket."""
    minute = str(int(at.timestamp()) // 60)
    bucket = h.error_buckets.setdefault(minute, [0, 0])
    bucket[1 if kind == "checksum" else 0] += 1
    refresh_error_rate(h, at, rules)


def refresh_error_rate(h: TerminalHealth, now: datetime, rules: dict[str, Rule]) -> None:
    oldest = int((now - ERROR_WINDOW).timestamp()) // 60
    h.error_buckets = {m: c for m, c in h.error_buckets.items() if int(m) > oldest}
    h.decode_errors_1h = sum(c[0] for c in h.error_buckets.values())
    h.checksum_errors_1h = sum(c[1] for c in h.error_buckets.values())
    limit = rules[Fault.DATA_ERRORS].threshold
    total = h.decode_errors_1h + h.checksum_errors_1h
    h.set("data_quality", "poor" if limit is not None and total > limit else "ok", now)


def _observe_fix(h: TerminalHealth, row: PositionRow, rules: dict[str, Rule], at: datetime) -> None:
    if not row.valid or row.flags & (Flag.NO_FIX | Flag.ZERO):
        h.set("gnss", "no_fix", at)
        return
    if row.flags & (Flag.FUTURE | Flag.JUMP):
        return  # implausible: neither proves nor disproves a working receiver
    moving_kmh = rules[Fault.FROZEN_FIX].threshold or 0.0
    moving = (row.speed_kmh or 0.0) >= moving_kmh or row.attributes.get(Attr.IGNITION) is True
    same_place = (
        h.last_lat is not None
        and h.last_lon is not None
        and abs(row.lat - h.last_lat) < FROZEN_EPSILON_DEG
        and abs(row.lon - h.last_lon) < FROZEN_EPSILON_DEG
    )
    newer = h.last_fix_time is None or row.fix_time > h.last_fix_time
    if not newer:
        return  # a retransmission or an older fix says nothing new about the receiver
    h.set("gnss", "frozen" if same_place and moving else "fix", at)
    h.last_fix_time, h.last_lat, h.last_lon = row.fix_time, row.lat, row.lon


def _observe_attributes(
    h: TerminalHealth, alarms: Iterable[str], attributes: dict[str, Any], rules: dict[str, Rule], at: datetime
) -> None:
    alarm_set = set(alarms)
    power_v = _number(attributes.get(Attr.POWER_V))
    if power_v is not None:
        h.power_v = power_v
    low_v = rules[Fault.MAIN_VOLTAGE_LOW].threshold
    voltage_state = "low" if h.power_v is not None and low_v is not None and h.power_v < low_v else "on"
    if Alarm.POWER_CUT in alarm_set or attributes.get(Attr.POWER_CUT) is True:
        h.set("power", "cut", at)
    elif Alarm.LOW_POWER in alarm_set:
        h.set("power", "low", at)
    elif power_v is not None or attributes.get(Attr.POWER_CUT) is False:
        h.set("power", voltage_state, at)
    elif h.reported_alarms is not None and h.power in ("cut", "low"):
        h.set("power", voltage_state, at)  # the alarm is no longer reported and nothing says otherwise

    level = _number(attributes.get(Attr.BATTERY_LEVEL))
    volts = _number(attributes.get(Attr.BATTERY_V))
    if level is not None:
        h.battery_level = level
    if volts is not None:
        h.battery_v = volts
    low_level = rules[Fault.BACKUP_BATTERY_LOW].threshold
    if Alarm.LOW_BATTERY in alarm_set or (level is not None and low_level is not None and level < low_level):
        h.set("battery", "low", at)
    elif level is not None or volts is not None or (h.reported_alarms is not None and h.battery == "low"):
        h.set("battery", "ok", at)

    signal = _number(attributes.get(Attr.GSM_SIGNAL))
    if signal is not None:
        h.gsm_signal = signal
        weak = rules[Fault.WEAK_GSM].threshold
        h.set("gsm", "weak" if weak is not None and signal < weak else "ok", at)

    iccid = attributes.get(Attr.ICCID)
    if isinstance(iccid, str) and iccid.strip():
        h.iccid_reported = iccid.strip().upper().rstrip("F")
        refresh_sim(h, at)


def refresh_sim(h: TerminalHealth, at: datetime) -> None:
    if h.iccid_reported and h.iccid_registered:
        h.set("sim", "match" if h.iccid_reported == h.iccid_registered else "mismatch", at)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------- storage


def new_health(terminal_id: str, at: datetime) -> TerminalHealth:
    return TerminalHealth(terminal_id=terminal_id, updated_at=at)


def load_health(
    conn: Connection, terminal_ids: Iterable[str], *, lock: bool = False
) -> dict[str, TerminalHealth]:
    """The stored health of these terminals; ``lock`` holds their rows until commit (PostgreSQL),
    in terminal order so that two processes never deadlock."""
    ids = sorted(set(terminal_ids))
    out: dict[str, TerminalHealth] = {}
    for start in range(0, len(ids), 1000):
        query = select(terminal_health).where(_among(conn, ids[start : start + 1000]))
        if lock and conn.dialect.name == "postgresql":
            query = query.order_by(terminal_health.c.terminal_id).with_for_update()
        for row in conn.execute(query).mappings():
            out[row["terminal_id"]] = TerminalHealth.from_row(row)
    return out


def load_versions(
    conn: Connection, terminal_ids: Iterable[str], *, lock: bool = False
) -> dict[str, datetime]:
    """Each stored row's version (``updated_at``, moved on by every write of any process);
    ``lock`` holds the rows until commit (PostgreSQL), in terminal order."""
    ids = sorted(set(terminal_ids))
    out: dict[str, datetime] = {}
    for start in range(0, len(ids), 1000):
        query = select(terminal_health.c.terminal_id, terminal_health.c.updated_at).where(
            _among(conn, ids[start : start + 1000])
        )
        if lock and conn.dialect.name == "postgresql":
            query = query.order_by(terminal_health.c.terminal_id).with_for_update()
        out.update((row[0], row[1]) for row in conn.execute(query))
    return out


def _among(conn: Connection, terminal_ids: list[str]) -> ColumnElement[bool]:
    """``terminal_id IN (...)``; on PostgreSQL one array parameter instead of one per id."""
    if conn.dialect.name == "postgresql":
        return terminal_health.c.terminal_id == any_(literal(terminal_ids, ARRAY(String)))
    return terminal_health.c.terminal_id.in_(terminal_ids)


def save_health(conn: Connection, rows: Iterable[TerminalHealth]) -> None:
    """Write these rows, each with a new version (``updated_at``)."""
    now = datetime.now(UTC)
    out = []
    for h in rows:
        h.updated_at = max(now, h.updated_at + timedelta(microseconds=1))
        h.saved_last_seen = h.last_seen
        h.conditions_changed = False
        out.append(h.to_row())
    upsert(conn, terminal_health, out, ["terminal_id"])


def save_values(conn: Connection, rows: Iterable[TerminalHealth]) -> None:
    """Write last seen and the measured values (voltages, signal, last fix) of rows whose
    dimensions and fault states are as stored: a narrow UPDATE, no JSON, each with a new version."""
    now = datetime.now(UTC)
    out = []
    for h in rows:
        h.updated_at = max(now, h.updated_at + timedelta(microseconds=1))
        h.saved_last_seen = h.last_seen
        values = {f"v_{name}": getattr(h, name) for name in _VALUES}
        values["v_terminal_id"] = h.terminal_id
        values["v_updated_at"] = h.updated_at
        out.append(values)
    if out:
        conn.execute(_UPDATE_VALUES, out)


def get_health(conn: Connection, terminal_id: str) -> TerminalHealth | None:
    return load_health(conn, [terminal_id]).get(terminal_id)
