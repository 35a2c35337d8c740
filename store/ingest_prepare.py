"""Turning a batch into what both ingest backends write: JSON text and per-terminal states.

The rules for ``terminal_state`` live here once, as one upsert both backends run:

* ``last_seen`` is the latest ``received_at`` of any message;
* the fix (lat, lon, speed, ...) is the newest *unflagged* position, replaced only by a
  newer one;
* attributes (and the typed health columns drawn from them) merge in message order, each
  key keeping its latest value; a message counts at ``min(time, received_at)`` so that a
  clock running ahead cannot pin the state in the future;
* the alarms are those of the newest message that carried any.

Every comparison keeps the newer of the stored and the incoming value, so applying the
same batch twice (a retry after a lost connection) leaves the state as it was.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from math import isfinite
from operator import itemgetter
from typing import Any

import orjson

from core.vocabulary import Attr
from store.records import EventRow, IngestBatch, PositionRow

_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS


def _json_fallback(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def dump_json(value: Any) -> str | None:
    """Compact JSON text for a JSON column; None for an empty list or dict (stored as NULL).

    PostgreSQL refuses the NUL character in text and JSON, so it is removed: one bad
    attribute must not make a whole batch fail.  Text, not orjson's bytes: keeping
    thousands of those alive costs several times more than serialising them.
    """
    if not value:
        return None
    try:
        text = orjson.dumps(value, default=_json_fallback, option=_JSON_OPTIONS).decode()
    except orjson.JSONEncodeError:  # an integer beyond 64 bits, a circular structure, ...
        return json.dumps(_plain(value), default=_json_fallback, separators=(",", ":"))
    if "\\u0000" in text:
        text = orjson.dumps(_plain(value), default=_json_fallback, option=_JSON_OPTIONS).decode()
    return text


def _plain(value: Any, depth: int = 0) -> Any:
    """A copy with what JSON columns refuse taken out: NUL characters, NaN and infinities,
    nesting deeper than 32."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, float):
        return value if isfinite(value) else None
    if depth > 32:
        return None
    if isinstance(value, dict):
        return {str(_plain(k)): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, depth + 1) for v in value]
    return value


def _as_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if isfinite(number) else None


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    return None


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    return str(value).replace("\x00", "")


# terminal_state health column -> how the attribute value is coerced to the column type.
HEALTH_COLUMNS: dict[str, Callable[[Any], Any]] = {
    Attr.POWER_V: _as_float,
    Attr.POWER_CUT: _as_bool,
    Attr.BATTERY_V: _as_float,
    Attr.BATTERY_LEVEL: _as_float,
    Attr.GSM_SIGNAL: _as_float,
    Attr.ICCID: _as_text,
    Attr.IGNITION: _as_bool,
    Attr.CHARGING: _as_bool,
    Attr.GNSS_STATUS: _as_text,
    Attr.ODOMETER_M: _as_float,
    Attr.FIRMWARE: _as_text,
}

# Column order of the rows both backends build (their tuple builders follow it).
POSITION_COLUMNS = (
    "terminal_id",
    "fix_time",
    "received_at",
    "lat",
    "lon",
    "altitude_m",
    "speed_kmh",
    "course",
    "satellites",
    "hdop",
    "valid",
    "protocol",
    "alarms",
    "attributes",
    "raw",
    "flags",
)
EVENT_COLUMNS = ("terminal_id", "time", "type", "received_at", "protocol", "alarms", "attributes", "raw")
FIX_COLUMNS = (
    "fix_time",
    "fix_received_at",
    "lat",
    "lon",
    "altitude_m",
    "speed_kmh",
    "course",
    "satellites",
    "hdop",
    "valid",
)
STATE_COLUMNS: tuple[str, ...] = (
    "terminal_id",
    "protocol",
    "last_seen",
    *FIX_COLUMNS,
    *HEALTH_COLUMNS,
    "attributes",
    "attributes_time",
    "alarms",
    "alarms_time",
)


@dataclass(slots=True)
class _Accumulator:
    protocol: str
    last_seen: datetime
    fix: PositionRow | None = None
    attributes: list[tuple[datetime, dict[str, Any]]] | None = None
    alarms: list[str] | None = None
    alarms_time: datetime | None = None


def state_rows(batch: IngestBatch) -> list[tuple[Any, ...]]:
    """One row per terminal in the batch, in ``STATE_COLUMNS`` order, sorted by terminal
    (a fixed lock order, so concurrent writers cannot deadlock).  JSON values are text."""
    states = StateBuilder()
    states.add_positions(batch.positions)
    states.add_events(batch.events)
    return states.rows()


class StateBuilder:
    """``state_rows`` a part at a time: the parts of a batch are added in message order."""

    def __init__(self) -> None:
        self._states: dict[str, _Accumulator] = {}

    def add_positions(self, positions: list[PositionRow]) -> None:
        states = self._states
        # the loop is inlined (it does what add_events does, and the fix): this runs for
        # every row of every batch
        for position in positions:
            acc = states.get(position.terminal_id)
            received = position.received_at
            if acc is None:
                acc = states[position.terminal_id] = _Accumulator(position.protocol, received)
            elif received > acc.last_seen:
                acc.last_seen = received
                acc.protocol = position.protocol
            if not position.flags and (acc.fix is None or position.fix_time > acc.fix.fix_time):
                acc.fix = position
            if position.attributes or position.alarms:
                time = position.fix_time
                _merge_later(acc, position, time if time < received else received)

    def add_events(self, events: list[EventRow]) -> None:
        for event in events:
            acc = self._heard_from(event.terminal_id, event.protocol, event.received_at)
            if event.attributes or event.alarms:
                _merge_later(acc, event, min(event.time, event.received_at))

    def _heard_from(self, terminal_id: str, protocol: str, received: datetime) -> _Accumulator:
        acc = self._states.get(terminal_id)
        if acc is None:
            acc = self._states[terminal_id] = _Accumulator(protocol, received)
        elif received > acc.last_seen:
            acc.last_seen = received
            acc.protocol = protocol
        return acc

    def rows(self) -> list[tuple[Any, ...]]:
        states = self._states
        return [_state_row(terminal_id, states[terminal_id]) for terminal_id in sorted(states)]


def _merge_later(acc: _Accumulator, row: PositionRow | EventRow, state_time: datetime) -> None:
    if row.attributes:
        if acc.attributes is None:
            acc.attributes = [(state_time, row.attributes)]
        else:
            acc.attributes.append((state_time, row.attributes))
    if row.alarms and (acc.alarms_time is None or state_time >= acc.alarms_time):
        acc.alarms = list(row.alarms)
        acc.alarms_time = state_time


_BY_TIME = itemgetter(0)


def _state_row(terminal_id: str, acc: _Accumulator) -> tuple[Any, ...]:
    fix = acc.fix
    fix_values: tuple[Any, ...] = (
        (
            fix.fix_time,
            fix.received_at,
            fix.lat,
            fix.lon,
            fix.altitude_m,
            fix.speed_kmh,
            fix.course,
            fix.satellites,
            fix.hdop,
            fix.valid,
        )
        if fix is not None
        else _NO_FIX
    )
    merged: dict[str, Any] = {}
    attributes_time = None
    health: tuple[Any, ...] = _NO_HEALTH
    if acc.attributes:
        acc.attributes.sort(key=_BY_TIME)  # stable: the same time keeps arrival order
        for _, attributes in acc.attributes:
            merged.update(attributes)
        attributes_time = acc.attributes[-1][0]
        # None means "not known"; dropping it keeps the last known value (and makes the
        # merge the same on both backends: SQLite's json_patch deletes keys set to null).
        if None in merged.values():
            merged = {k: v for k, v in merged.items() if v is not None}
        present = merged.keys() & _HEALTH_POSITION.keys()
        if present:
            values = [None] * len(HEALTH_COLUMNS)
            for key in present:
                position, coerce = _HEALTH_POSITION[key]
                values[position] = coerce(merged[key])
            health = tuple(values)
    return (
        terminal_id,
        acc.protocol,
        acc.last_seen,
        *fix_values,
        *health,
        (dump_json(merged) or "{}") if attributes_time is not None else None,
        attributes_time,
        dump_json(acc.alarms),
        acc.alarms_time,
    )


_NO_FIX = (None,) * len(FIX_COLUMNS)
_NO_HEALTH = (None,) * len(HEALTH_COLUMNS)
_HEALTH_POSITION = {key: (i, coerce) for i, (key, coerce) in enumerate(HEALTH_COLUMNS.items())}


def state_upsert_sql(source: str, *, min_time: str, merge_json: str) -> str:
    """The terminal_state upsert for one backend.

    ``source`` is ``VALUES (...)`` or a ``SELECT``; ``min_time`` a literal earlier than any
    time; ``merge_json`` a format string merging ``{old}`` with ``{new}`` (a JSON object).
    """
    old, new = "terminal_state", "excluded"
    newer_fix = f"{new}.fix_time > COALESCE({old}.fix_time, {min_time})"
    newer_attributes = f"{new}.attributes_time >= COALESCE({old}.attributes_time, {min_time})"
    newer_alarms = f"{new}.alarms_time >= COALESCE({old}.alarms_time, {min_time})"

    def pick(condition: str, column: str, value: str | None = None) -> str:
        chosen = value if value is not None else f"{new}.{column}"
        return f"{column} = CASE WHEN {condition} THEN {chosen} ELSE {old}.{column} END"

    assignments = [
        pick(f"{new}.last_seen >= {old}.last_seen", "protocol"),
        pick(f"{new}.last_seen > {old}.last_seen", "last_seen"),
        *(pick(newer_fix, column) for column in FIX_COLUMNS),
        *(
            pick(newer_attributes, column, f"COALESCE({new}.{column}, {old}.{column})")
            for column in HEALTH_COLUMNS
        ),
        pick(
            newer_attributes,
            "attributes",
            merge_json.format(old=f"COALESCE({old}.attributes, '{{}}')", new=f"{new}.attributes"),
        ),
        pick(newer_attributes, "attributes_time"),
        pick(newer_alarms, "alarms"),
        pick(newer_alarms, "alarms_time"),
    ]
    return (
        f"INSERT INTO terminal_state ({', '.join(STATE_COLUMNS)}) {source} "
        f"ON CONFLICT (terminal_id) DO UPDATE SET {', '.join(assignments)}"
    )
