"""The symptoms line of an automatic repair ticket: the fault and its evidence in words the
clerk and the technician read (the dashboard shows it under the fault), not a dict dump.

``no fix: last fix 2026-11-27 09:23:29 UTC; first seen 2026-11-27 09:23:34 UTC, last seen …``
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

# Keys of the ticket's own bookkeeping, not symptoms.
_NOT_SYMPTOMS = ("last_frames", "alert_id")


def utc_text(value: Any) -> str:
    """A time as people read it in a message: ``2026-11-27 09:23:29 UTC``."""
    if not isinstance(value, str | datetime):
        return "never" if value is None else str(value)
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) and value.is_integer() else str(value)


def _duration(value: Any) -> str:
    if not isinstance(value, int | float):
        return str(value)
    minutes, seconds = divmod(int(value), 60)
    hours, minutes = divmod(minutes, 60)
    return (
        f"{hours} h {minutes} min" if hours else f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
    )


# How each evidence key the fault rules (alerts.rules) write reads.
_WORDS: dict[str, Callable[[Any], str]] = {
    "last_seen": lambda v: f"last heard from {utc_text(v)}",
    "silent_s": lambda v: f"silent for {_duration(v)}",
    "disconnected_at": lambda v: f"disconnected since {utc_text(v)}",
    "last_fix_time": lambda v: "no fix ever" if v is None else f"last fix {utc_text(v)}",
    "lat": lambda v: f"latitude {_number(v)}",
    "lon": lambda v: f"longitude {_number(v)}",
    "alarm": lambda v: "raised by the terminal's own alarm",
    "power_v": lambda v: f"main power {_number(v)} V",
    "threshold_v": lambda v: f"threshold {_number(v)} V",
    "battery_level": lambda v: f"backup battery {_number(v)} %",
    "battery_v": lambda v: f"backup battery {_number(v)} V",
    "gsm_signal": lambda v: f"GSM signal {_number(v)} %",
    "threshold": lambda v: f"threshold {_number(v)}",
    "reported": lambda v: f"the terminal reports SIM {v}",
    "registered": lambda v: f"the registry has SIM {v}",
    "drift_s": lambda v: f"clock off by {_duration(abs(v)) if isinstance(v, int | float) else v}",
    "decode_errors_1h": lambda v: f"{v} decode errors in the last hour",
    "checksum_errors_1h": lambda v: f"{v} checksum errors in the last hour",
}


def _phrases(evidence: dict[str, Any]) -> list[str]:
    return [
        _WORDS[key](value) if key in _WORDS else f"{key.replace('_', ' ')} {value}"
        for key, value in evidence.items()
        if value is not None or key == "last_fix_time"
    ]


def describe_fault(fault: str, evidence: dict[str, Any]) -> str:
    """One line: the fault, what the rule saw, and when the fault was first and last seen.

    ``evidence`` is what the alert engine hands a new ticket: ``{"fault": {...the rule's
    evidence...}, "first_seen": ..., "last_seen": ...}`` (a flat dict reads the same way)."""
    rest = {k: v for k, v in evidence.items() if k not in _NOT_SYMPTOMS}
    seen = [
        f"{label} {utc_text(rest.pop(key))}"
        for key, label in (("first_seen", "first seen"), ("last_seen", "last seen"))
        if isinstance(rest.get("fault"), dict) and key in rest
    ]
    found = rest.pop("fault", None)
    details = _phrases(found if isinstance(found, dict) else {}) + _phrases(rest)
    parts = "; ".join(p for p in (", ".join(details), ", ".join(seen)) if p)
    return fault.replace("_", " ") + (f": {parts}" if parts else "")
