"""Route motion sanity: realistic speeds and accelerations, no teleports, stops, turns, parking."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from simulators.motion import (
    MAX_ACCEL_MS2,
    MAX_BRAKE_MS2,
    Driver,
    GnssReceiver,
    LatLon,
    distance_m,
    grid_route,
    road_route,
    turn_angle,
)

CENTER = LatLon(31.2304, 121.4737)


def routes(seed: int):
    rng = random.Random(seed)
    return [
        grid_route("grid", CENTER, rng, blocks=8, block_m=250),
        road_route("road", CENTER, rng, length_km=15),
    ]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_an_hour_of_driving_is_physically_plausible(seed: int) -> None:
    for route in routes(seed):
        driver = Driver(route, random.Random(seed))
        previous = driver.state
        top_speed = stopped_after_moving = ignition_off = 0.0
        courses = set()
        for _second in range(3600):
            driver.advance(1.0)
            state = driver.state
            moved = distance_m(previous.position, state.position)
            # no teleport: never further than the speed allows (plus a vertex shortcut margin)
            assert moved <= max(previous.speed_kmh, state.speed_kmh) / 3.6 + 1.5
            change = (state.speed_kmh - previous.speed_kmh) / 3.6
            assert change <= MAX_ACCEL_MS2 + 1e-9
            assert -change <= MAX_BRAKE_MS2 + 0.31  # the last crawl to a halt rounds to zero
            assert state.odometer_m >= previous.odometer_m
            top_speed = max(top_speed, state.speed_kmh)
            if previous.speed_kmh > 0 and state.speed_kmh == 0:
                stopped_after_moving += 1
            ignition_off += not state.ignition
            if state.speed_kmh > 5:
                courses.add(round(state.course / 45) % 8)
            previous = state
        assert 30 < top_speed <= max(route.limits_kmh) * 1.1, route.name
        assert stopped_after_moving >= 3, f"{route.name}: a vehicle stops at lights and junctions"
        assert ignition_off > 0, f"{route.name}: it parks with the ignition off between trips"
        assert len(courses) >= 3, f"{route.name}: the route turns"


def test_grid_routes_are_closed_and_turn_at_right_angles() -> None:
    route = grid_route("grid", CENTER, random.Random(7))
    assert route.points[0] == route.points[-1]
    legs = list(zip(route.points, route.points[1:], strict=False))
    for (a, b), (_, c) in zip(legs, legs[1:], strict=False):
        from simulators.motion import bearing_deg

        angle = turn_angle(bearing_deg(a, b), bearing_deg(b, c))
        assert angle == pytest.approx(90, abs=1) or angle == pytest.approx(180, abs=1) or angle < 1


def test_gnss_noise_satellites_and_hdop_vary_and_no_fix_repeats_the_last_position() -> None:
    rng = random.Random(3)
    route = grid_route("grid", CENTER, rng)
    driver, receiver = Driver(route, rng, parked=False), GnssReceiver(rng)
    time = datetime(2026, 1, 1, tzinfo=UTC)
    fixes = []
    for _ in range(600):
        driver.advance(1)
        time += timedelta(seconds=1)
        truth = driver.state
        fix = receiver.read(truth, time)
        fixes.append(fix)
        if fix.valid:
            assert distance_m(fix.position, truth.position) < 10 * fix.hdop + 5  # noise scales with HDOP
            assert fix.satellites >= 4
    assert len({fix.satellites for fix in fixes}) >= 3
    assert len({fix.hdop for fix in fixes}) >= 3
    last_valid = receiver.last_valid
    assert last_valid is not None
    lost = receiver.no_fix(time, driver.state, satellites=0)
    assert not lost.valid and lost.position == last_valid.position and lost.satellites == 0
