"""The fault rules and their sustain/clear timing as plain functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alerts.health import new_health, observe_position
from alerts.rules import Action, Condition, Fault, RuleBook, default_rule, offline, step
from core.settings import AlertSettings
from tests.alerts.support import position

T0 = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)


def test_sustain_raises_only_after_the_condition_held_and_clear_waits_too() -> None:
    rule = default_rule(Fault.WEAK_GSM)  # sustain 900 s, clear 300 s
    state, action = step(None, Condition(True), T0, rule)
    assert action == Action.NONE and state is not None and state.pending
    state, action = step(state, None, T0 + timedelta(seconds=899), rule)
    assert action == Action.NONE
    state, action = step(state, None, T0 + timedelta(seconds=900), rule)
    assert action == Action.RAISE and state is not None and state.raised
    state, action = step(state, Condition(False), T0 + timedelta(seconds=1000), rule)
    assert action == Action.NONE  # gone, but not for the clear time yet
    state, action = step(state, Condition(True), T0 + timedelta(seconds=1100), rule)
    assert action == Action.RECUR  # flapped back before clearing: same alert, one more occurrence
    state, action = step(state, Condition(False), T0 + timedelta(seconds=1200), rule)
    state, action = step(state, None, T0 + timedelta(seconds=1500), rule)
    assert action == Action.CLEAR and state is None


def test_a_flapping_signal_shorter_than_the_sustain_time_never_raises() -> None:
    rule = default_rule(Fault.WEAK_GSM)
    state = None
    for minute in range(0, 60, 5):
        active = minute % 10 == 0
        state, action = step(state, Condition(active), T0 + timedelta(minutes=minute), rule)
        assert action == Action.NONE


def test_per_model_settings_override_only_what_they_set() -> None:
    book = RuleBook(
        AlertSettings(
            rules={"offline": {"threshold": 20}},
            per_model={"JT701": {"offline": {"sustain_s": 30}, "weak_gsm": {"enabled": False}}},
        )
    )
    assert book.rule(Fault.OFFLINE).threshold == 20
    jt701 = book.rule(Fault.OFFLINE, "JT701")
    assert (jt701.threshold, jt701.sustain_s, jt701.severity) == (20, 30, "critical")
    assert not book.rule(Fault.WEAK_GSM, "JT701").enabled and book.rule(Fault.WEAK_GSM, "other").enabled


def test_unknown_rule_names_are_refused() -> None:
    with pytest.raises(ValueError, match="offlne"):
        RuleBook(AlertSettings(rules={"offlne": {"threshold": 1}}))


def test_offline_is_judged_by_reports_for_terminals_that_hang_up_between_reports() -> None:
    rule = default_rule(Fault.OFFLINE)  # 10 minutes
    h = new_health("1", T0)
    h.last_seen = T0
    h.connected, h.connected_since = False, T0 - timedelta(minutes=30)
    h.last_seen = T0 - timedelta(minutes=1)
    h.disconnects_between_reports = True
    assert offline(h, T0, rule) == Condition(False)
    h.disconnects_between_reports = False  # a terminal that should hold its connection
    assert offline(h, T0, rule) is not None and offline(h, T0, rule).active  # type: ignore[union-attr]
    h.disconnects_between_reports = True
    assert offline(h, T0 + timedelta(minutes=10), rule).active  # type: ignore[union-attr]


def test_frozen_fix_needs_motion_or_ignition_and_a_newer_fix() -> None:
    book = RuleBook(AlertSettings())
    rules = book.rules(None)
    h = new_health("1", T0)
    observe_position(h, position("1", T0, speed=50), rules)
    assert h.gnss == "fix"
    observe_position(h, position("1", T0 + timedelta(seconds=10), speed=50), rules)
    assert h.gnss == "frozen" and h.gnss_since == T0 + timedelta(seconds=10)
    observe_position(h, position("1", T0 + timedelta(seconds=20), speed=0), rules)
    assert h.gnss == "fix"  # parked, engine off: the same place is expected
    observe_position(h, position("1", T0 + timedelta(seconds=30), speed=0, ignition=True), rules)
    assert h.gnss == "frozen"


def test_health_dimensions_follow_reports() -> None:
    rules = RuleBook(AlertSettings()).rules(None)
    h = new_health("1", T0)
    observe_position(h, position("1", T0, power_v=12.4, battery_level=80, gsm_signal=70), rules)
    assert (h.power, h.battery, h.gsm, h.clock) == ("on", "ok", "ok", "ok")
    later = T0 + timedelta(minutes=1)
    observe_position(
        h,
        position(
            "1",
            later,
            alarms=["power_cut"],
            battery_level=5,
            gsm_signal=3,
            fix_time=later - timedelta(hours=2),
        ),
        rules,
    )
    assert (h.power, h.battery, h.gsm, h.clock) == ("cut", "low", "weak", "drift")
    assert h.power_since == later and h.clock_drift_s == -7200
    observe_position(h, position("1", later + timedelta(minutes=1), power_v=9.0), rules)
    assert h.power == "low"
