"""Road-like motion for virtual terminals: routes, a driver with realistic speeds, and GNSS.

A ``Route`` is a polyline (a walk through a city grid, or a generated winding road); a
``Driver`` moves along it second by second with bounded acceleration and braking, slows
for turns, stops at some intersections, and parks with the ignition off between trips; a
``GnssReceiver`` turns the true position into what a receiver reports: noise scaled by
HDOP, a satellite count that wanders, and no fix when too few satellites are in view.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import datetime

EARTH_RADIUS_M = 6_371_000.0
KMH = 1 / 3.6  # km/h to m/s

# Driving limits: a loaded van in town, a car on an arterial road.
MAX_ACCEL_MS2 = 2.0
MAX_BRAKE_MS2 = 3.5
MAX_LATERAL_MS2 = 2.5  # sets the speed at which a turn can be taken
BLIP_CHANCE = 0.003  # a report without a fix under a bridge: brief, so no "no fix" fault


@dataclass(frozen=True, slots=True)
class LatLon:
    lat: float
    lon: float


def distance_m(a: LatLon, b: LatLon) -> float:
    """Great-circle distance (haversine), metres."""
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dp, dl = p2 - p1, math.radians(b.lon - a.lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def bearing_deg(a: LatLon, b: LatLon) -> float:
    """Initial course from a to b, degrees clockwise from north in [0, 360)."""
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dl = math.radians(b.lon - a.lon)
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(y, x)) % 360.0


def offset(point: LatLon, north_m: float, east_m: float) -> LatLon:
    """The point moved by small distances north and east (flat-earth, fine under ~50 km)."""
    lat = point.lat + math.degrees(north_m / EARTH_RADIUS_M)
    lon = point.lon + math.degrees(east_m / (EARTH_RADIUS_M * math.cos(math.radians(point.lat))))
    return LatLon(lat, lon)


def turn_angle(course_in: float, course_out: float) -> float:
    """How sharply the road turns, degrees in [0, 180]."""
    diff = abs(course_out - course_in) % 360.0
    return 360.0 - diff if diff > 180.0 else diff


@dataclass(slots=True)
class Route:
    """A closed polyline the vehicle drives round and round, with a speed limit per leg."""

    name: str
    points: list[LatLon]
    limits_kmh: list[float]  # one per leg (points[i] -> points[i+1])
    _cumulative: list[float] = field(default_factory=list, repr=False)
    _courses: list[float] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if len(self.points) < 2:
            raise ValueError(f"route {self.name!r} needs at least two points")
        if self.points[0] != self.points[-1]:
            self.points = [*self.points, self.points[0]]
        legs = len(self.points) - 1
        if len(self.limits_kmh) < legs:
            fill = self.limits_kmh[-1] if self.limits_kmh else 50.0
            self.limits_kmh = [*self.limits_kmh, *([fill] * (legs - len(self.limits_kmh)))]
        total = 0.0
        self._cumulative = [0.0]
        self._courses = []
        for a, b in zip(self.points, self.points[1:], strict=False):
            total += distance_m(a, b)
            self._cumulative.append(total)
            self._courses.append(bearing_deg(a, b))
        if total <= 0:
            raise ValueError(f"route {self.name!r} has zero length")

    @property
    def length_m(self) -> float:
        return self._cumulative[-1]

    def leg_at(self, distance: float) -> int:
        distance %= self.length_m
        low, high = 0, len(self._cumulative) - 2
        while low < high:  # the last leg whose start is <= distance
            middle = (low + high + 1) // 2
            if self._cumulative[middle] <= distance:
                low = middle
            else:
                high = middle - 1
        return low

    def locate(self, distance: float) -> tuple[LatLon, float, int]:
        """The point, course and leg at a distance along the route (wrapping round)."""
        distance %= self.length_m
        leg = self.leg_at(distance)
        start, end = self.points[leg], self.points[leg + 1]
        leg_length = self._cumulative[leg + 1] - self._cumulative[leg]
        share = (distance - self._cumulative[leg]) / leg_length if leg_length else 0.0
        point = LatLon(start.lat + (end.lat - start.lat) * share, start.lon + (end.lon - start.lon) * share)
        return point, self._courses[leg], leg

    def to_next_vertex(self, distance: float) -> tuple[float, float]:
        """Metres to the end of the current leg, and how sharply the road turns there."""
        distance %= self.length_m
        leg = self.leg_at(distance)
        remaining = self._cumulative[leg + 1] - distance
        next_leg = (leg + 1) % len(self._courses)
        return remaining, turn_angle(self._courses[leg], self._courses[next_leg])

    def limit_at(self, distance: float) -> float:
        return self.limits_kmh[self.leg_at(distance)]


def grid_route(
    name: str,
    center: LatLon,
    rng: random.Random,
    *,
    blocks: int = 8,
    block_m: float = 250.0,
    legs: int = 24,
    street_kmh: float = 50.0,
    avenue_kmh: float = 70.0,
) -> Route:
    """A drive through a Manhattan-style grid: a random walk of whole blocks that never
    doubles back, closed by going home along the grid.  Every fourth street is an avenue
    with a higher limit."""
    half = blocks // 2
    x, y = rng.randint(-half, half), rng.randint(-half, half)
    nodes = [(x, y)]
    direction = rng.choice([(1, 0), (-1, 0), (0, 1), (0, -1)])
    for _ in range(legs):
        options = [direction] * 3 + [(direction[1], direction[0]), (-direction[1], -direction[0])]
        rng.shuffle(options)
        for dx, dy in options:
            if -half <= x + dx <= half and -half <= y + dy <= half:
                direction = (dx, dy)
                break
        else:
            direction = (-direction[0], -direction[1])
        run = rng.randint(1, 3)
        for _ in range(run):
            if not (-half <= x + direction[0] <= half and -half <= y + direction[1] <= half):
                break
            x, y = x + direction[0], y + direction[1]
        if (x, y) != nodes[-1]:
            nodes.append((x, y))
    home = nodes[0]
    if (x, y) != home:  # back along the grid: first east-west, then north-south
        nodes.append((home[0], y))
        nodes.append(home)
    corners = _corners_only(nodes)
    points = [offset(center, cy * block_m, cx * block_m) for cx, cy in corners]
    limits = []
    for (ax, ay), (bx, by) in zip(corners, corners[1:], strict=False):
        on_avenue = (ax == bx and ax % 4 == 0) or (ay == by and ay % 4 == 0)
        limits.append(avenue_kmh if on_avenue else street_kmh)
    return Route(name, points, limits)


def _corners_only(nodes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Drops repeated and collinear middle nodes, so each leg is one straight street."""
    out: list[tuple[int, int]] = []
    for node in nodes:
        if out and node == out[-1]:
            continue
        if len(out) >= 2:
            (ax, ay), (bx, by) = out[-2], out[-1]
            if (bx - ax) * (node[1] - by) == (by - ay) * (node[0] - bx):
                out[-1] = node
                continue
        out.append(node)
    return out


def road_route(
    name: str,
    start: LatLon,
    rng: random.Random,
    *,
    length_km: float = 20.0,
    segment_m: float = 120.0,
    limit_kmh: float = 90.0,
) -> Route:
    """A generated winding road out of town and back: gentle bends, now and then a sharp
    one (a junction), a town stretch at a lower limit."""
    points = [start]
    course = rng.uniform(0, 360)
    out_legs = max(2, int(length_km * 1000 / segment_m / 2))
    limits: list[float] = []
    for index in range(out_legs):
        bend = rng.gauss(0, 6) if rng.random() > 0.05 else rng.choice([-90, 90])
        course = (course + bend) % 360
        north = segment_m * math.cos(math.radians(course))
        east = segment_m * math.sin(math.radians(course))
        points.append(offset(points[-1], north, east))
        in_town = index < out_legs // 8
        limits.append(50.0 if in_town else limit_kmh)
    back = list(reversed(points[:-1]))
    return Route(name, points + back, limits + list(reversed(limits)))


@dataclass(slots=True)
class Kinematics:
    """The true state of the vehicle at one instant."""

    position: LatLon
    speed_kmh: float
    course: float
    ignition: bool
    odometer_m: float


class Driver:
    """Drives a route second by second.

    Speeds follow the leg's limit (the driver keeps a personal margin), with acceleration
    and braking bounded, slowing before turns to what the lateral acceleration allows.  At
    some corners the vehicle stops (a light, a give-way); after each trip it parks with the
    ignition off.  ``advance(seconds)`` moves time on; ``state`` is where it is now.
    """

    def __init__(
        self,
        route: Route,
        rng: random.Random,
        *,
        trip_km: tuple[float, float] = (3.0, 15.0),
        park_s: tuple[float, float] = (60.0, 600.0),
        stop_chance: float = 0.35,
        parked: bool = False,
    ) -> None:
        self.route = route
        self.rng = rng
        self.trip_km = trip_km
        self.park_s = park_s
        self.stop_chance = stop_chance
        self.distance = rng.uniform(0, route.length_m)
        self.speed = 0.0  # m/s
        self.odometer_m = rng.uniform(5_000_000, 150_000_000)  # vehicles are not new
        self.margin = rng.uniform(0.85, 1.08)
        self.ignition = not parked
        self.wait_s = rng.uniform(*park_s) if parked else 0.0
        self.trip_left_m = rng.uniform(*trip_km) * 1000
        self._stop_vertex: int | None = None
        self._decided_vertex: int | None = None

    @property
    def state(self) -> Kinematics:
        point, course, _ = self.route.locate(self.distance)
        return Kinematics(point, self.speed / KMH, course, self.ignition, self.odometer_m)

    def advance(self, seconds: float) -> None:
        whole = int(seconds)
        for _ in range(whole):
            self._step(1.0)
        if seconds - whole > 1e-6:
            self._step(seconds - whole)

    def _step(self, dt: float) -> None:
        if self.wait_s > 0:
            self.wait_s -= dt
            if self.wait_s <= 0 and not self.ignition:
                self.ignition = True
                self.trip_left_m = self.rng.uniform(*self.trip_km) * 1000
            return
        if not self.ignition:
            return
        target = self._target_speed()
        if self.speed < target:
            self.speed = min(target, self.speed + MAX_ACCEL_MS2 * self.rng.uniform(0.5, 1.0) * dt)
        else:
            self.speed = max(target, self.speed - MAX_BRAKE_MS2 * dt)
        moved = self.speed * dt
        self.distance = (self.distance + moved) % self.route.length_m
        self.odometer_m += moved
        self.trip_left_m -= moved
        if self.speed < 0.3 and target == 0.0:
            self.speed = 0.0
            if self.trip_left_m <= 0:  # trip over: park, ignition off
                self.ignition = False
                self.wait_s = self.rng.uniform(*self.park_s)
            elif self._stop_vertex is not None:  # a light or a give-way
                self.wait_s = self.rng.uniform(5.0, 45.0)
                self._stop_vertex = None
                self.distance = (self.distance + 1.0) % self.route.length_m  # past the stop line

    def _target_speed(self) -> float:
        limit = self.route.limit_at(self.distance) * KMH * self.margin
        remaining, angle = self.route.to_next_vertex(self.distance)
        leg = self.route.leg_at(self.distance)
        if self._decided_vertex != leg:  # decide once per corner whether to stop there
            self._decided_vertex = leg
            at_junction = angle >= 30
            self._stop_vertex = leg if at_junction and self.rng.random() < self.stop_chance else None
        if self.trip_left_m <= 0:
            corner = 0.0  # pull over at the next corner
        elif self._stop_vertex == leg:
            corner = 0.0
        elif angle < 10:
            corner = limit
        else:
            radius = 12.0 + 60.0 * max(0.0, (90.0 - min(angle, 90.0)) / 90.0)
            corner = min(limit, math.sqrt(MAX_LATERAL_MS2 * radius))
        # Fastest speed from which the corner speed is reachable with comfortable braking.
        reachable = math.sqrt(corner**2 + 2 * MAX_BRAKE_MS2 * 0.7 * max(0.0, remaining - 2.0))
        if corner == 0.0 and remaining < 2.0:
            return 0.0
        return min(limit, reachable)


@dataclass(slots=True)
class GnssFix:
    """What the receiver reports."""

    time: datetime
    valid: bool
    position: LatLon
    speed_kmh: float
    course: float
    altitude_m: float
    satellites: int
    hdop: float


class GnssReceiver:
    """Satellites in view wander between urban-canyon and open-sky counts; HDOP follows
    them; the reported position is the true one plus noise that grows with HDOP.  Now and
    then one report has no fix (a bridge overhead): the last fix repeated, flagged invalid."""

    def __init__(self, rng: random.Random, *, altitude_m: float = 40.0, open_sky: bool = True) -> None:
        self.rng = rng
        self.satellites = rng.randint(8, 14) if open_sky else rng.randint(5, 9)
        self.altitude_m = altitude_m + rng.uniform(-10, 10)
        self.last_valid: GnssFix | None = None

    def read(self, truth: Kinematics, time: datetime) -> GnssFix:
        self.satellites = max(5, min(16, self.satellites + self.rng.choice((-1, 0, 0, 0, 1))))
        if self.rng.random() < BLIP_CHANCE:  # an overpass or a short tunnel: one report without a fix
            return self.no_fix(time, truth, satellites=self.rng.randint(0, 3))
        hdop = round(max(0.6, 0.5 + 6.0 / self.satellites + self.rng.uniform(-0.2, 0.4)), 1)
        sigma = 1.5 * hdop
        position = offset(truth.position, self.rng.gauss(0, sigma), self.rng.gauss(0, sigma))
        speed = max(0.0, truth.speed_kmh + self.rng.gauss(0, 0.6)) if truth.speed_kmh > 1 else 0.0
        course = (truth.course + self.rng.gauss(0, 2.0)) % 360 if speed > 0 else truth.course
        self.altitude_m += self.rng.gauss(0, 0.5)
        fix = GnssFix(
            time=time,
            valid=True,
            position=position,
            speed_kmh=round(speed, 1),
            course=round(course, 1),
            altitude_m=round(self.altitude_m, 1),
            satellites=self.satellites,
            hdop=hdop,
        )
        self.last_valid = fix
        return fix

    def no_fix(self, time: datetime, truth: Kinematics, satellites: int | None = None) -> GnssFix:
        """An invalid fix: the last valid position (or the truth, before the first fix)."""
        last = self.last_valid
        return GnssFix(
            time=time,
            valid=False,
            position=last.position if last else truth.position,
            speed_kmh=0.0,
            course=last.course if last else 0.0,
            altitude_m=last.altitude_m if last else round(self.altitude_m, 1),
            satellites=self.satellites if satellites is None else satellites,
            hdop=99.9,
        )
