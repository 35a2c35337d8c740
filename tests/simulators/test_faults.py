"""Fault injection: windows and probabilities, what each fault does to a report, and that
each device fault survives the protocol's own encoder and decoder (what the gateway sees)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from core.vocabulary import Alarm, Attr
from gateway.protocols import PROTOCOLS
from gateway.protocols.base import DecodeContext, parse_tz
from simulators.device import DeviceHealth, ReportComposer
from simulators.drill import EXPECTED_ALERT, Expectation, evaluate, format_table
from simulators.faults import FaultKind, FaultSpec, FaultState
from simulators.motion import Driver, GnssReceiver, LatLon, grid_route

ICCID, SPARE = "89860100000000000001", "89860100000000000019"


def composer_with(*specs: FaultSpec, seed: int = 1) -> tuple[ReportComposer, Driver]:
    rng = random.Random(seed)
    driver = Driver(grid_route("g", LatLon(31.23, 121.47), rng), rng, park_s=(0, 0), trip_km=(1e6, 1e6))
    driver.advance(60)
    health = DeviceHealth(ICCID, rng, spare_iccid=SPARE)
    return ReportComposer(GnssReceiver(rng), health, FaultState(list(specs), rng)), driver


def test_a_scheduled_fault_starts_at_its_time_and_ends_after_its_duration() -> None:
    state = FaultState([FaultSpec(FaultKind.POWER_CUT, at_s=10, duration_s=5)], random.Random(1))
    assert state.update(9.9) == [] and not state.active(FaultKind.POWER_CUT)
    assert state.update(10.0) == [FaultKind.POWER_CUT]
    assert state.update(12.0) == [] and state.active(FaultKind.POWER_CUT)
    state.update(15.0)
    assert not state.active(FaultKind.POWER_CUT)
    assert state.injected == 1


def test_a_random_fault_starts_about_as_often_as_its_probability_says() -> None:
    state = FaultState([FaultSpec(FaultKind.NO_FIX, probability=0.1, duration_s=1)], random.Random(5))
    starts = sum(len(state.update(float(second))) for second in range(2000))
    assert 120 < starts < 280  # ~0.1 per report while not already active


def test_frame_faults_hit_frames_inside_their_window_with_their_probability() -> None:
    state = FaultState([FaultSpec(FaultKind.BAD_CHECKSUM, at_s=5, probability=0.5)], random.Random(2))
    state.update(1)
    assert all(not state.frame_hits() for _ in range(50)), "before the window: no hit"
    state.update(6)
    hits = sum(FaultKind.BAD_CHECKSUM in state.frame_hits() for _ in range(400))
    assert 150 < hits < 250


@pytest.mark.parametrize(
    ("kind", "check"),
    [
        (
            FaultKind.GNSS_ANTENNA_CUT,
            lambda m: Alarm.GNSS_ANTENNA_CUT in m.alarms and not m.valid and m.satellites == 0,
        ),
        (FaultKind.NO_FIX, lambda m: not m.valid and m.attributes[Attr.GNSS_STATUS] == "no_fix"),
        (FaultKind.POWER_CUT, lambda m: Alarm.POWER_CUT in m.alarms and m.attributes[Attr.POWER_V] == 0.0),
        (
            FaultKind.LOW_BATTERY,
            lambda m: Alarm.LOW_BATTERY in m.alarms and m.attributes[Attr.BATTERY_LEVEL] < 10,
        ),
        (FaultKind.WEAK_SIGNAL, lambda m: m.attributes[Attr.GSM_SIGNAL] < 15),
        (FaultKind.SIM_SWAP, lambda m: m.attributes[Attr.ICCID] == SPARE),
    ],
)
def test_each_device_fault_shows_in_the_report(kind: FaultKind, check) -> None:  # type: ignore[no-untyped-def]
    composer, driver = composer_with(FaultSpec(kind, at_s=0))
    healthy, _ = composer_with()
    now = datetime.now(UTC)
    composer.faults.update(1)
    assert check(composer.compose(now, 1, driver.state))
    assert not check(healthy.compose(now, 1, driver.state))


def test_a_frozen_fix_repeats_one_position_while_the_vehicle_moves_and_a_drifting_clock_runs_off() -> None:
    composer, driver = composer_with(
        FaultSpec(FaultKind.FROZEN_FIX, at_s=0), FaultSpec(FaultKind.CLOCK_DRIFT, at_s=0)
    )
    composer.faults.update(0)
    now = datetime.now(UTC)
    reports = []
    for second in range(0, 50, 5):
        driver.advance(5)
        reports.append(composer.compose(now + timedelta(seconds=second), second, driver.state))
    assert len({(m.lat, m.lon) for m in reports}) == 1
    assert all(m.valid and m.attributes[Attr.IGNITION] for m in reports)
    assert (reports[0].time - now).total_seconds() >= 600 - 1  # the device clock is 10 minutes off


DECODERS = ("jt808", "gt06", "teltonika", "h02")
# The faults each protocol can tell the gateway (its frames carry the alarm or the reading).
CAN_CARRY = {
    "jt808": {
        FaultKind.GNSS_ANTENNA_CUT,
        FaultKind.POWER_CUT,
        FaultKind.LOW_BATTERY,
        FaultKind.WEAK_SIGNAL,
        FaultKind.NO_FIX,
        FaultKind.SIM_SWAP,
    },
    "gt06": {FaultKind.POWER_CUT, FaultKind.LOW_BATTERY, FaultKind.NO_FIX, FaultKind.SIM_SWAP},
    "teltonika": {
        FaultKind.POWER_CUT,
        FaultKind.LOW_BATTERY,
        FaultKind.WEAK_SIGNAL,
        FaultKind.NO_FIX,
        FaultKind.SIM_SWAP,
    },
    "h02": {FaultKind.POWER_CUT, FaultKind.NO_FIX},
}


def evidence(kind: FaultKind, messages: list) -> bool:  # type: ignore[type-arg]
    for m in messages:
        a = m.attributes
        if kind == FaultKind.GNSS_ANTENNA_CUT and Alarm.GNSS_ANTENNA_CUT in m.alarms:
            return True
        if kind == FaultKind.POWER_CUT and (Alarm.POWER_CUT in m.alarms or a.get(Attr.POWER_CUT) is True):
            return True
        if kind == FaultKind.LOW_BATTERY and (
            Alarm.LOW_BATTERY in m.alarms
            or (a.get(Attr.BATTERY_LEVEL) is not None and a[Attr.BATTERY_LEVEL] < 15)
        ):
            return True
        if kind == FaultKind.WEAK_SIGNAL and a.get(Attr.GSM_SIGNAL) is not None and a[Attr.GSM_SIGNAL] < 15:
            return True
        if kind == FaultKind.NO_FIX and m.valid is False:
            return True
        if kind == FaultKind.SIM_SWAP and str(a.get(Attr.ICCID, "")).upper().rstrip("F") == SPARE:
            return True
    return False


@pytest.mark.parametrize("protocol", DECODERS)
def test_device_faults_survive_the_protocols_own_encoder_and_decoder(protocol: str) -> None:
    spec = PROTOCOLS[protocol]
    assert spec.device is not None
    for kind in sorted(CAN_CARRY[protocol]):
        composer, driver = composer_with(FaultSpec(kind, at_s=0))
        composer.faults.update(1)
        message = composer.compose(datetime.now(UTC).replace(microsecond=0), 1, driver.state)
        message.terminal_id = "013800000001" if protocol == "jt808" else "356307040000019"
        codec = spec.device(message.terminal_id, tz=parse_tz(spec.default_tz))
        context = DecodeContext(tz=parse_tz(spec.default_tz))
        frames = [codec.position(message).data]
        status = codec.status(message.attributes, message.alarms)  # health not in positions
        heartbeat = codec.heartbeat(message.attributes)
        frames += [out.data for out in (status, heartbeat) if out is not None]
        handshake = codec.handshake()
        decoded = []
        framer = spec.framer()
        for data in ([handshake.data] if handshake else []) + frames:
            for frame in framer.feed(data):
                result = spec.decode(frame, context)
                context.terminal_id = result.terminal_id or context.terminal_id
                decoded += result.messages
        assert evidence(kind, decoded), f"{protocol} lost {kind.value}: {[m.to_json_dict() for m in decoded]}"


def test_the_drill_verdict_flags_missing_alerts_wrong_coverage_and_noisy_healthy_terminals() -> None:
    expected = [
        Expectation("A", "jt808", "g", "power_cut", "power_cut", True, True),
        Expectation("B", "jt808", "g", "gnss_antenna_cut", "gnss_antenna_cut", True, False),
        Expectation("C", "jt808", "g", "", None, False, True),
        Expectation("D", "jt808", "g", "weak_signal", EXPECTED_ALERT[FaultKind.WEAK_SIGNAL], False, True),
    ]
    alerts = [
        {"terminal_id": "A", "fault": "power_cut"},
        {"terminal_id": "B", "fault": "gnss_antenna_cut"},
        {"terminal_id": "C", "fault": "offline"},
        {"terminal_id": "D", "fault": "weak_gsm"},
    ]
    tickets = [
        {"terminal_id": "A", "fault": "power_cut", "in_warranty": True},
        {"terminal_id": "B", "fault": "gnss_antenna_cut", "in_warranty": True},
    ]
    report = evaluate(expected, alerts, tickets)
    assert [o.ok for o in report.outcomes] == [True, False, False, True]
    assert "in_warranty=True, expected False" in report.outcomes[1].problems[0]
    table = format_table(report)
    assert "2/4 as expected" in table and "FAIL" in table
