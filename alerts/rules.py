"""The fault rules: what counts as a fault, thresholds with their defaults, and sustain/clear timing.

Each rule is a small function from a terminal's health (``alerts.health.TerminalHealth``) to a
``Condition`` (the fault is present or not, with its evidence), or ``None`` when the health
says nothing either way.  ``step`` then applies the rule's sustain and clear times, so a
flapping signal neither raises nor clears an alert every minute.  Thresholds, sustain and
clear times come from ``settings.alerts.rules`` over the defaults here, and from
``settings.alerts.per_model[<terminal model>]`` over those.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from core.settings import AlertSettings, RuleSettings

if TYPE_CHECKING:
    from alerts.health import TerminalHealth


class Fault:
    """Fault names: the ``fault`` of alerts and tickets."""

    OFFLINE = "offline"
    NO_FIX = "no_fix"
    FROZEN_FIX = "frozen_fix"
    GNSS_ANTENNA_CUT = "gnss_antenna_cut"
    GNSS_ANTENNA_SHORT = "gnss_antenna_short"
    GNSS_FAULT = "gnss_fault"
    DEVICE_FAULT = "device_fault"
    POWER_CUT = "power_cut"
    MAIN_VOLTAGE_LOW = "main_voltage_low"
    BACKUP_BATTERY_LOW = "backup_battery_low"
    WEAK_GSM = "weak_gsm"
    SIM_MISMATCH = "sim_mismatch"
    CLOCK_DRIFT = "clock_drift"
    DATA_ERRORS = "data_errors"


@dataclass(frozen=True, slots=True)
class Rule:
    """A rule's effective settings (defaults, then settings, then the terminal model's)."""

    fault: str
    enabled: bool
    threshold: float | None
    sustain_s: float
    clear_s: float
    severity: str  # critical, major, minor
    ticket: bool  # a raised alert opens a repair ticket
    unit: str  # what the threshold is measured in, for messages and docs


# threshold, sustain_s, clear_s, severity, ticket, unit
_DEFAULTS: dict[str, tuple[float | None, float, float, str, bool, str]] = {
    Fault.OFFLINE: (10.0, 0.0, 0.0, "critical", True, "minutes without a report"),
    Fault.NO_FIX: (None, 900.0, 120.0, "major", True, "-"),
    Fault.FROZEN_FIX: (5.0, 600.0, 60.0, "major", True, "km/h counted as moving"),
    Fault.GNSS_ANTENNA_CUT: (None, 0.0, 300.0, "major", True, "-"),
    Fault.GNSS_ANTENNA_SHORT: (None, 0.0, 300.0, "major", True, "-"),
    Fault.GNSS_FAULT: (None, 0.0, 300.0, "major", True, "-"),
    Fault.DEVICE_FAULT: (None, 0.0, 300.0, "major", True, "-"),
    Fault.POWER_CUT: (None, 0.0, 60.0, "critical", True, "-"),
    Fault.MAIN_VOLTAGE_LOW: (10.5, 300.0, 120.0, "minor", True, "volts"),
    Fault.BACKUP_BATTERY_LOW: (15.0, 300.0, 120.0, "minor", True, "percent"),
    Fault.WEAK_GSM: (15.0, 900.0, 300.0, "minor", False, "percent"),
    Fault.SIM_MISMATCH: (None, 0.0, 0.0, "major", True, "-"),
    Fault.CLOCK_DRIFT: (5.0, 60.0, 60.0, "minor", False, "minutes"),
    Fault.DATA_ERRORS: (60.0, 0.0, 600.0, "minor", False, "errors per hour"),
}

FAULTS: tuple[str, ...] = tuple(_DEFAULTS)
SEVERITY_PRIORITY = {"critical": "high", "major": "normal", "minor": "low"}


def default_rule(fault: str) -> Rule:
    threshold, sustain_s, clear_s, severity, ticket, unit = _DEFAULTS[fault]
    return Rule(fault, True, threshold, sustain_s, clear_s, severity, ticket, unit)


def _overlay(rule: Rule, override: RuleSettings | None) -> Rule:
    if override is None:
        return rule
    values: dict[str, Any] = {}
    for name in override.model_fields_set:
        value = getattr(override, name)
        if value is not None or name == "threshold":
            values[name] = value
    return Rule(**{**_rule_dict(rule), **values})


def _rule_dict(rule: Rule) -> dict[str, Any]:
    return {name: getattr(rule, name) for name in Rule.__dataclass_fields__}


class RuleBook:
    """Every rule's effective settings, per terminal model, computed once and cached."""

    def __init__(self, settings: AlertSettings) -> None:
        unknown = (set(settings.rules) | {r for m in settings.per_model.values() for r in m}) - set(FAULTS)
        if unknown:
            raise ValueError(
                f"unknown alert rule(s) in settings: {', '.join(sorted(unknown))}; known: {', '.join(FAULTS)}"
            )
        self._settings = settings
        self._base = {f: _overlay(default_rule(f), settings.rules.get(f)) for f in FAULTS}
        self._per_model: dict[str | None, dict[str, Rule]] = {None: self._base}

    def rules(self, model_name: str | None) -> dict[str, Rule]:
        cached = self._per_model.get(model_name)
        if cached is None:
            overrides = self._settings.per_model.get(model_name or "", {})
            cached = {f: _overlay(rule, overrides.get(f)) for f, rule in self._base.items()}
            self._per_model[model_name] = cached
        return cached

    def rule(self, fault: str, model_name: str | None = None) -> Rule:
        return self.rules(model_name)[fault]

    def min_offline_s(self) -> float | None:
        """The shortest offline threshold of any model, for the timer's query; None when no
        model judges silence (then a silent terminal is no reason to look at it)."""
        values = [
            (r.threshold or 0.0) * 60.0
            for m in [None, *self._settings.per_model]
            for r in [self.rule(Fault.OFFLINE, m)]
            if r.enabled and r.threshold is not None
        ]
        return min(values, default=None)


# --------------------------------------------------------------------------- conditions


@dataclass(slots=True)
class Condition:
    active: bool
    evidence: dict[str, Any] = field(default_factory=dict)


ConditionFn = Callable[["TerminalHealth", datetime, Rule], Condition | None]


def offline(h: TerminalHealth, now: datetime, rule: Rule) -> Condition | None:
    """Silent for longer than the threshold; for terminals that keep a connection open, also a
    connection gone for that long.  Terminals whose protocol hangs up between reports (H02 or
    GPS103 over UDP, ...) are judged by their reports only."""
    if h.last_seen is None or rule.threshold is None:
        return None
    limit = timedelta(minutes=rule.threshold)
    silent = now - h.last_seen
    if silent >= limit:
        return Condition(
            True, {"last_seen": h.last_seen.isoformat(), "silent_s": round(silent.total_seconds())}
        )
    if not h.disconnects_between_reports and h.connected is False and h.connected_since is not None:
        gone = now - h.connected_since
        if gone >= limit:
            return Condition(
                True, {"disconnected_at": h.connected_since.isoformat(), "last_seen": h.last_seen.isoformat()}
            )
    return Condition(False)


def no_fix(h: TerminalHealth, now: datetime, rule: Rule) -> Condition | None:
    """Reporting, but without a valid fix (sustain time = how long)."""
    if h.gnss == "unknown":
        return None
    return Condition(
        h.gnss == "no_fix", {"last_fix_time": _iso(h.last_fix_time)} if h.gnss == "no_fix" else {}
    )


def frozen_fix(h: TerminalHealth, now: datetime, rule: Rule) -> Condition | None:
    """The same coordinates report after report while the vehicle moves or its ignition is on."""
    if h.gnss == "unknown":
        return None
    if h.gnss == "frozen":
        return Condition(True, {"lat": h.last_lat, "lon": h.last_lon})
    return Condition(False) if h.gnss == "fix" else None


def _alarm_rule(alarm: str) -> ConditionFn:
    def reported(h: TerminalHealth, now: datetime, rule: Rule) -> Condition | None:
        if h.reported_alarms is None:
            return None  # this batch's message carried no alarm information
        active = alarm in h.reported_alarms
        return Condition(active, {"alarm": alarm} if active else {})

    reported.__name__ = alarm
    reported.__doc__ = f"The terminal reports the {alarm} alarm."
    return reported


def power_cut(h: TerminalHealth, now: datetime, rule: Rule) -> Condition | None:
    """Main power disconnected, as an alarm or as the power_cut attribute."""
    if h.power == "unknown":
        return None
    return Condition(h.power == "cut", {"power_v": h.power_v} if h.power == "cut" else {})


def main_voltage_low(h: TerminalHealth, now: datetime, rule: Rule) -> Condition | None:
    """Main voltage under the threshold (volts), or the terminal's own low-power alarm."""
    if h.power == "unknown":
        return None
    low = h.power == "low" or (
        h.power == "on"
        and h.power_v is not None
        and rule.threshold is not None
        and h.power_v < rule.threshold
    )
    return Condition(low, {"power_v": h.power_v, "threshold_v": rule.threshold} if low else {})


def backup_battery_low(h: TerminalHealth, now: datetime, rule: Rule) -> Condition | None:
    """Backup battery level under the threshold (percent), or the terminal's low-battery alarm."""
    if h.battery == "unknown":
        return None
    low = h.battery == "low" or (
        h.battery_level is not None and rule.threshold is not None and h.battery_level < rule.threshold
    )
    return Condition(low, {"battery_level": h.battery_level, "battery_v": h.battery_v} if low else {})


def weak_gsm(h: TerminalHealth, now: datetime, rule: Rule) -> Condition | None:
    """GSM signal under the threshold (percent) for the sustain time."""
    if h.gsm_signal is None or rule.threshold is None:
        return None
    weak = h.gsm_signal < rule.threshold
    return Condition(weak, {"gsm_signal": h.gsm_signal, "threshold": rule.threshold} if weak else {})


def sim_mismatch(h: TerminalHealth, now: datetime, rule: Rule) -> Condition | None:
    """The ICCID the terminal reports is not the SIM the registry has in it."""
    if not h.iccid_reported or not h.iccid_registered:
        return None
    differs = h.iccid_reported != h.iccid_registered
    return Condition(
        differs, {"reported": h.iccid_reported, "registered": h.iccid_registered} if differs else {}
    )


def clock_drift(h: TerminalHealth, now: datetime, rule: Rule) -> Condition | None:
    """Device time off the receive time by more than the threshold (minutes)."""
    if h.clock_drift_s is None or rule.threshold is None:
        return None
    drifts = abs(h.clock_drift_s) > rule.threshold * 60.0
    return Condition(drifts, {"drift_s": round(h.clock_drift_s)} if drifts else {})


def data_errors(h: TerminalHealth, now: datetime, rule: Rule) -> Condition | None:
    """Decode and checksum errors in the last hour over the threshold."""
    if rule.threshold is None:
        return None
    total = h.decode_errors_1h + h.checksum_errors_1h
    bad = total > rule.threshold
    return Condition(
        bad,
        {"decode_errors_1h": h.decode_errors_1h, "checksum_errors_1h": h.checksum_errors_1h} if bad else {},
    )


CONDITIONS: dict[str, ConditionFn] = {
    Fault.OFFLINE: offline,
    Fault.NO_FIX: no_fix,
    Fault.FROZEN_FIX: frozen_fix,
    Fault.GNSS_ANTENNA_CUT: _alarm_rule(Fault.GNSS_ANTENNA_CUT),
    Fault.GNSS_ANTENNA_SHORT: _alarm_rule(Fault.GNSS_ANTENNA_SHORT),
    Fault.GNSS_FAULT: _alarm_rule(Fault.GNSS_FAULT),
    Fault.DEVICE_FAULT: _alarm_rule(Fault.DEVICE_FAULT),
    Fault.POWER_CUT: power_cut,
    Fault.MAIN_VOLTAGE_LOW: main_voltage_low,
    Fault.BACKUP_BATTERY_LOW: backup_battery_low,
    Fault.WEAK_GSM: weak_gsm,
    Fault.SIM_MISMATCH: sim_mismatch,
    Fault.CLOCK_DRIFT: clock_drift,
    Fault.DATA_ERRORS: data_errors,
}

# Rules that only a report can change; the timer does not touch them while a terminal is silent.
REPORT_DRIVEN = frozenset(CONDITIONS) - {Fault.OFFLINE, Fault.DATA_ERRORS}


# --------------------------------------------------------------------------- sustain and clear


class Action:
    NONE = "none"
    RAISE = "raise"
    RECUR = "recur"  # came back while still raised (within the clear time): one more occurrence
    TOUCH = "touch"  # still present while raised: the alert's last seen moves on
    CLEAR = "clear"


# A raised alert's last seen is written at most this often while the fault persists.
TOUCH_EVERY_S = 30.0


@dataclass(slots=True)
class ConditionState:
    """Where one fault stands on one terminal: persisted with the health row."""

    active: bool
    since: datetime  # when ``active`` last changed
    raised: bool = False
    last_seen: datetime | None = None  # last time the fault was observed present
    touched: datetime | None = None  # last time the alert's last seen was written
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def timing(self) -> tuple[Any, ...]:
        """What must be persisted when it changes (last seen and evidence ride along later)."""
        return (self.active, self.since, self.raised, self.touched)

    @property
    def pending(self) -> bool:
        """A timer must look again: present but not raised yet, or gone but not cleared yet."""
        return self.active != self.raised

    def to_json(self) -> dict[str, Any]:
        return {
            "active": self.active,
            "since": self.since.isoformat(),
            "raised": self.raised,
            "last_seen": _iso(self.last_seen),
            "touched": _iso(self.touched),
            "evidence": self.evidence,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ConditionState:
        return cls(
            active=bool(data["active"]),
            since=datetime.fromisoformat(data["since"]),
            raised=bool(data.get("raised")),
            last_seen=_from_iso(data.get("last_seen")),
            touched=_from_iso(data.get("touched")),
            evidence=dict(data.get("evidence") or {}),
        )


def step(
    state: ConditionState | None, condition: Condition | None, at: datetime, rule: Rule
) -> tuple[ConditionState | None, str]:
    """Advance one fault's state to ``at`` given what is observed now (None: nothing new);
    the state returned is None once the fault is neither present nor raised.

    Raises once the condition has held for ``sustain_s``; clears once it has been gone for
    ``clear_s``.  A condition that comes back before the clear time keeps the alert raised
    (one more occurrence).  A retransmitted observation changes nothing.
    """
    if not rule.enabled:
        if state is not None and state.raised:
            return None, Action.CLEAR
        return None, Action.NONE
    recurred = False
    if state is None:
        if condition is None:
            return None, Action.NONE
        state = ConditionState(condition.active, at, evidence=condition.evidence)
    elif condition is not None and condition.active != state.active:
        recurred = condition.active and state.raised
        state.active = condition.active
        state.since = at
    if condition is not None and condition.active:
        state.evidence = condition.evidence
        state.last_seen = at if state.last_seen is None else max(state.last_seen, at)
    held = (at - state.since).total_seconds()
    if state.active and not state.raised:
        if held >= rule.sustain_s:
            state.raised = True
            state.touched = at
            return state, Action.RAISE
        return state, Action.NONE
    if recurred:
        state.touched = at
        return state, Action.RECUR
    if state.active and state.raised and condition is not None:
        if state.touched is None or (at - state.touched).total_seconds() >= TOUCH_EVERY_S:
            state.touched = at
            return state, Action.TOUCH
        return state, Action.NONE
    if not state.active and state.raised and held >= rule.clear_s:
        return None, Action.CLEAR
    # nothing to remember about a fault that is neither present nor raised
    return (state if state.active or state.raised else None), Action.NONE


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _from_iso(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
