"""Scenario files: a simulated fleet declared in TOML, validated strictly, line by line.

A scenario names its terminals in groups (``[[fleet]]``: protocol, transport, count,
route, report timing, registry details), the routes they drive (``[[routes]]``), where
they send (``[target]``), shared timing (``[timing]``) and the faults to inject
(``[[faults]]``).  Unknown keys and bad values are refused with the line they are on:
tomllib keeps no positions, so ``_Lines`` finds each key's line in the text itself.
``expand`` turns a scenario into one ``TerminalPlan`` per terminal, deterministic for a
seed, which both the runner and ``--registry`` use.

    [scenario]
    name = "small mixed fleet"
    seed = 7
    duration_s = 300

    [[routes]]
    name = "downtown"
    kind = "grid"               # or "road"
    center = [31.2304, 121.4737]

    [[fleet]]
    name = "vans"
    protocol = "jt808"
    transport = "tcp"
    count = 10
    route = "downtown"
    interval_s = 5

    [[faults]]
    fleet = "vans"
    terminals = [0]             # indexes in the group; default: every terminal
    kind = "gnss_antenna_cut"
    at_s = 30
    duration_s = 120
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from simulators import identities
from simulators.faults import FaultKind, FaultSpec
from simulators.terminal import Timing
from simulators.transports import TRANSPORTS

PROTOCOLS = ("nmea", "jt808", "gt06", "teltonika", "h02", "gps103")
# The transports a protocol is carried over by real terminals.
PROTOCOL_TRANSPORTS: dict[str, tuple[str, ...]] = {
    "nmea": ("tcp", "serial", "mqtt"),
    "jt808": ("tcp", "udp", "mqtt"),
    "gt06": ("tcp", "mqtt"),
    "teltonika": ("tcp", "udp", "mqtt"),
    "h02": ("tcp", "udp", "mqtt"),
    "gps103": ("tcp", "udp", "mqtt"),
}
WARRANTY = ("active", "expired")
SHIPPED = ("mixed-fleet", "load-test", "fault-drill")


class ScenarioError(ValueError):
    """A scenario that cannot be run; the message names the file, the line and the key."""


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True, slots=True)
class RouteSpec:
    name: str
    kind: str = "grid"
    center: tuple[float, float] = (31.2304, 121.4737)
    blocks: int = 8
    block_m: float = 250.0
    street_kmh: float = 50.0
    avenue_kmh: float = 70.0
    length_km: float = 20.0
    limit_kmh: float = 90.0
    parking: bool = True  # park with the ignition off between trips


@dataclass(frozen=True, slots=True)
class FleetGroup:
    name: str
    protocol: str
    count: int
    transport: str = "tcp"
    route: str | None = None
    timing: Timing = field(default_factory=Timing)
    model: str | None = None  # terminal model name in the registry
    warranty: str = "active"  # "expired": installed long ago, out of warranty
    customer: str | None = None
    tz: str | None = None  # the zone the device reports local time in (default: the protocol's)


@dataclass(frozen=True, slots=True)
class FaultEntry:
    fleet: str
    terminals: tuple[int, ...] | None  # None: every terminal of the group
    spec: FaultSpec
    expect: bool = True  # a drill expects this fault to be detected


@dataclass(frozen=True, slots=True)
class TargetSpec:
    host: str = "127.0.0.1"
    ports: dict[str, int] = field(default_factory=dict)
    udp_ports: dict[str, int] = field(default_factory=dict)
    mqtt: str | None = None
    serial: str = "pty"
    local_hosts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    seed: int
    duration_s: float | None
    ramp_s: float
    drill: bool
    target: TargetSpec
    routes: dict[str, RouteSpec]
    fleet: list[FleetGroup]
    faults: list[FaultEntry]
    description: str = ""
    source: str = "<flags>"
    # Quick fleets of different protocols share a seed: this keeps their terminals,
    # plates, VINs and SIMs apart (shipped scenarios keep the identities they always had).
    identity_salt: str = ""

    @property
    def terminal_count(self) -> int:
        return sum(group.count for group in self.fleet)


@dataclass(frozen=True, slots=True)
class TerminalPlan:
    """One terminal to simulate, fully decided: identity, group, route, faults."""

    index: int  # in the whole scenario
    group: FleetGroup
    group_index: int
    terminal_id: str
    iccid: str
    spare_iccid: str
    msisdn: str
    plate: str
    vin: str
    route: RouteSpec
    faults: tuple[FaultEntry, ...]

    @property
    def fault_specs(self) -> list[FaultSpec]:
        return [entry.spec for entry in self.faults]


# --------------------------------------------------------------------------- lines


_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+|\"[^\"]*\"|'[^']*')\s*(?:\.|=)")


class _Lines:
    """Finds the line of a table or key in the TOML text (1-based)."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.headers: list[tuple[int, str]] = []  # (line, "fleet" / "[fleet]" for arrays)
        for number, line in enumerate(self.lines, 1):
            match = _HEADER.match(line)
            if match and not line.lstrip().startswith("#"):
                name = match.group(2).strip().strip("\"'")
                self.headers.append((number, f"[{name}]" if match.group(1) == "[[" else name))

    def table(self, name: str, index: int | None = None) -> tuple[int, int]:
        """(first line, last line) of ``[name]`` or of the index-th ``[[name]]``; (0, 0) if absent."""
        wanted = f"[{name}]" if index is not None else name
        seen = -1
        for position, (number, header) in enumerate(self.headers):
            if header != wanted:
                continue
            seen += 1
            if index is None or seen == index:
                end = (
                    self.headers[position + 1][0] - 1 if position + 1 < len(self.headers) else len(self.lines)
                )
                return number, end
        return 0, 0

    def key(self, table: str | None, index: int | None, key: str) -> int:
        if table is None:
            start, end = 1, (self.headers[0][0] - 1 if self.headers else len(self.lines))
        else:
            start, end = self.table(table, index)
            if not start:
                return 0
        for number in range(start, end + 1):
            match = _KEY.match(self.lines[number - 1])
            if match and match.group(1).strip("\"'") == key:
                return number
        prefix = f"{table}." if table else ""
        for number, header in self.headers:  # a sub-table: [name] or [table.name]
            if header.strip("[]") == prefix + key and (table is None or start <= number):
                return number
        return start


class _Checker:
    """Reads one table's values, refusing unknown keys and bad values with their line."""

    def __init__(self, source: str, lines: _Lines, table: str | None, index: int | None, data: Any):
        self.source, self.lines, self.table, self.index = source, lines, table, index
        self.where = table if index is None else f"{table}[{index}]"
        if not isinstance(data, dict):
            self.fail(None, f"[{table}] must be a table")
        self.data: dict[str, Any] = data
        self.used: set[str] = set()

    def fail(self, key: str | None, message: str) -> None:
        line = (
            self.lines.key(self.table, self.index, key)
            if key
            else self.lines.table(self.table or "", self.index)[0]
        )
        place = f"{self.source}:{line}" if line else self.source
        name = f"{self.where}.{key}" if key and self.where else (key or self.where or "")
        raise ScenarioError(f"{place}: {name}: {message}")

    def get(
        self, key: str, kind: type | tuple[type, ...], default: Any = None, *, required: bool = False
    ) -> Any:
        self.used.add(key)
        if key not in self.data:
            if required:
                self.fail(None, f"missing required key {key!r}")
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            names = " or ".join(k.__name__ for k in kinds)
            self.fail(key, f"must be {names}, not {type(value).__name__} {value!r}")
        return value

    def number(
        self,
        key: str,
        default: float | None,
        *,
        low: float = 0.0,
        high: float | None = None,
        strict: bool = False,
    ) -> Any:
        value = self.get(key, float, default)
        if value is None:
            return None
        if value < low or (strict and value == low) or (high is not None and value > high):
            bounds = f"{'>' if strict else '>='} {low:g}" + (f" and <= {high:g}" if high is not None else "")
            self.fail(key, f"must be {bounds}, got {value:g}")
        return value

    def integer(self, key: str, default: int | None, *, low: int = 0, high: int | None = None) -> Any:
        value = self.get(key, int, default)
        if value is not None and (value < low or (high is not None and value > high)):
            bounds = f">= {low}" + (f" and <= {high}" if high is not None else "")
            self.fail(key, f"must be {bounds}, got {value}")
        return value

    def choice(
        self, key: str, options: tuple[str, ...], default: str | None, *, required: bool = False
    ) -> Any:
        value = self.get(key, str, default, required=required)
        if value is not None and value not in options:
            self.fail(key, f"must be one of {', '.join(options)}; got {value!r}")
        return value

    def finish(self) -> None:
        for key in self.data:
            if key not in self.used:
                known = ", ".join(sorted(self.used))
                self.fail(key, f"unknown key {key!r} (known here: {known})")


# --------------------------------------------------------------------------- loading


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; a shipped one by name (``fault-drill``) too."""
    path_text = str(path)
    if path_text in SHIPPED:
        text = resources.files("simulators.scenarios").joinpath(f"{path_text}.toml").read_text("utf-8")
        return parse_scenario(text, source=f"{path_text}.toml")
    try:
        text = Path(path).read_text("utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return parse_scenario(text, source=str(path))


def shipped_scenario_path(name: str) -> Path:
    return Path(str(resources.files("simulators.scenarios").joinpath(f"{name}.toml")))


def parse_scenario(text: str, *, source: str = "<scenario>") -> Scenario:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: not valid TOML: {exc}") from exc
    lines = _Lines(text)
    top = _Checker(source, lines, None, None, data)
    head = _Checker(source, lines, "scenario", None, top.get("scenario", dict, required=True))
    name = head.get("name", str, required=True)
    description = head.get("description", str, "")
    seed = head.integer("seed", 1)
    duration = head.number("duration_s", None, strict=True)
    ramp = head.number("ramp_s", 5.0)
    drill = head.get("drill", bool, False)
    head.finish()

    timing = _timing(_Checker(source, lines, "timing", None, top.get("timing", dict, {})), Timing())
    target = _target(_Checker(source, lines, "target", None, top.get("target", dict, {})))

    routes: dict[str, RouteSpec] = {}
    for index, raw in enumerate(top.get("routes", list, [])):
        route = _route(_Checker(source, lines, "routes", index, raw))
        if route.name in routes:
            _Checker(source, lines, "routes", index, raw).fail(
                "name", f"route {route.name!r} is declared twice"
            )
        routes[route.name] = route

    fleet: list[FleetGroup] = []
    raw_fleet = top.get("fleet", list, [])
    if not raw_fleet:
        top.fail(None, "a scenario needs at least one [[fleet]] group")
    for index, raw in enumerate(raw_fleet):
        checker = _Checker(source, lines, "fleet", index, raw)
        group = _group(checker, timing, routes)
        if any(other.name == group.name for other in fleet):
            checker.fail("name", f"fleet group {group.name!r} is declared twice")
        fleet.append(group)

    faults = [
        _fault(_Checker(source, lines, "faults", index, raw), fleet)
        for index, raw in enumerate(top.get("faults", list, []))
    ]
    top.finish()
    return Scenario(
        name=name,
        seed=seed,
        duration_s=duration,
        ramp_s=ramp,
        drill=drill,
        target=target,
        routes=routes,
        fleet=fleet,
        faults=faults,
        description=description,
        source=source,
    )


_TIMING_KEYS = {f.name: f.type for f in fields(Timing)}


def _timing(checker: _Checker, base: Timing, *, finish: bool = True) -> Timing:
    values: dict[str, Any] = {}
    for key in _TIMING_KEYS:
        if key in ("max_retries", "batch_max", "buffer_max"):
            value = checker.integer(key, None, low=0 if key == "max_retries" else 1)
        elif key == "interval_s":  # a tracker reports at most once a second (fix times are whole seconds)
            value = checker.number(key, None, low=1.0)
        else:
            value = checker.number(key, None, strict=True)
        if value is not None:
            values[key] = value
    if finish:
        checker.finish()
    timing = Timing(**{**{k: getattr(base, k) for k in _TIMING_KEYS}, **values})
    if timing.backoff_min_s > timing.backoff_max_s:
        checker.fail("backoff_min_s", "must not exceed backoff_max_s")
    return timing


def _target(checker: _Checker) -> TargetSpec:
    host = checker.get("host", str, "127.0.0.1")
    ports = _port_table(checker, "ports")
    udp_ports = _port_table(checker, "udp_ports")
    mqtt = checker.get("mqtt", str, None)
    if mqtt is not None and not mqtt.startswith("mqtt://"):
        checker.fail("mqtt", f"must be an mqtt://host:port URL, got {mqtt!r}")
    serial = checker.get("serial", str, "pty")
    local_hosts = checker.get("local_hosts", list, [])
    if not all(isinstance(item, str) for item in local_hosts):
        checker.fail("local_hosts", "must be a list of addresses")
    checker.finish()
    return TargetSpec(host, ports, udp_ports, mqtt, serial, tuple(local_hosts))


def _port_table(checker: _Checker, key: str) -> dict[str, int]:
    table = checker.get(key, dict, {})
    for protocol, port in table.items():
        if protocol not in PROTOCOLS:
            checker.fail(key, f"unknown protocol {protocol!r} (known: {', '.join(PROTOCOLS)})")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            checker.fail(key, f"port of {protocol} must be 1-65535, got {port!r}")
    return dict(table)


def _route(checker: _Checker) -> RouteSpec:
    name = checker.get("name", str, required=True)
    kind = checker.choice("kind", ("grid", "road"), "grid")
    center = checker.get("center", list, [31.2304, 121.4737])
    if (
        len(center) != 2
        or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in center)
        or not -85 <= center[0] <= 85
        or not -180 <= center[1] <= 180
    ):
        checker.fail("center", f"must be [lat, lon] in degrees, got {center!r}")
    route = RouteSpec(
        name=name,
        kind=kind,
        center=(float(center[0]), float(center[1])),
        blocks=checker.integer("blocks", 8, low=2, high=200),
        block_m=checker.number("block_m", 250.0, low=20.0, high=5000.0),
        street_kmh=checker.number("street_kmh", 50.0, low=5.0, high=130.0),
        avenue_kmh=checker.number("avenue_kmh", 70.0, low=5.0, high=130.0),
        length_km=checker.number("length_km", 20.0, low=0.5, high=1000.0),
        limit_kmh=checker.number("limit_kmh", 90.0, low=5.0, high=160.0),
        parking=checker.get("parking", bool, True),
    )
    checker.finish()
    return route


def _group(checker: _Checker, timing: Timing, routes: dict[str, RouteSpec]) -> FleetGroup:
    name = checker.get("name", str, required=True)
    protocol = checker.choice("protocol", PROTOCOLS, None, required=True)
    transport = checker.choice("transport", TRANSPORTS, "tcp")
    if transport not in PROTOCOL_TRANSPORTS[protocol]:
        checker.fail(
            "transport",
            f"{protocol} terminals do not use {transport}; use one of {', '.join(PROTOCOL_TRANSPORTS[protocol])}",
        )
    count = checker.integer("count", 1, low=1, high=1_000_000)
    route = checker.get("route", str, None)
    if route is not None and route not in routes:
        known = ", ".join(routes) or "none declared"
        checker.fail("route", f"no route named {route!r} (routes: {known})")
    group = FleetGroup(
        name=name,
        protocol=protocol,
        count=count,
        transport=transport,
        route=route,
        timing=_timing(checker, timing, finish=False),
        model=checker.get("model", str, None),
        warranty=checker.choice("warranty", WARRANTY, "active"),
        customer=checker.get("customer", str, None),
        tz=checker.get("tz", str, None),
    )
    checker.finish()
    return group


def _fault(checker: _Checker, fleet: list[FleetGroup]) -> FaultEntry:
    group_name = checker.get("fleet", str, required=True)
    group = next((g for g in fleet if g.name == group_name), None)
    if group is None:
        checker.fail(
            "fleet", f"no fleet group named {group_name!r} (groups: {', '.join(g.name for g in fleet)})"
        )
        raise AssertionError  # unreachable: fail raises
    kind_text = checker.choice("kind", tuple(kind.value for kind in FaultKind), None, required=True)
    terminals = checker.get("terminals", list, None)
    if terminals is not None:
        if not terminals or not all(isinstance(i, int) and not isinstance(i, bool) for i in terminals):
            checker.fail("terminals", "must be a non-empty list of terminal indexes in the group")
        bad = [i for i in terminals if not 0 <= i < group.count]
        if bad:
            checker.fail("terminals", f"index {bad[0]} is outside group {group.name!r} (0-{group.count - 1})")
    at_s = checker.number("at_s", None)
    probability = checker.number("probability", 0.0, high=1.0)
    if at_s is None and not probability:
        checker.fail(None, "a fault needs at_s (a time) or probability (a chance per report)")
    spec = FaultSpec(
        kind=FaultKind(kind_text),
        at_s=at_s,
        duration_s=checker.number("duration_s", None, strict=True),
        probability=probability,
        drift_s_per_h=checker.number("drift_s_per_h", 600.0, low=-86400.0, high=86400.0),
    )
    expect = checker.get("expect", bool, True)
    checker.finish()
    return FaultEntry(group.name, tuple(terminals) if terminals is not None else None, spec, expect)


# --------------------------------------------------------------------------- expansion


DEFAULT_ROUTE = RouteSpec(name="default")


def expand(scenario: Scenario) -> list[TerminalPlan]:
    """One plan per terminal, the same for the same scenario and seed."""
    plans: list[TerminalPlan] = []
    seed: object = f"{scenario.seed}:{scenario.identity_salt}" if scenario.identity_salt else scenario.seed
    for group in scenario.fleet:
        route = scenario.routes[group.route] if group.route else DEFAULT_ROUTE
        for group_index in range(group.count):
            index = len(plans)
            terminal_id = (
                identities.jt808_phone(seed, index)
                if group.protocol == "jt808"
                else identities.imei(seed, index)
            )
            own = tuple(
                entry
                for entry in scenario.faults
                if entry.fleet == group.name and (entry.terminals is None or group_index in entry.terminals)
            )
            plans.append(
                TerminalPlan(
                    index=index,
                    group=group,
                    group_index=group_index,
                    terminal_id=terminal_id,
                    iccid=identities.iccid(seed, index),
                    spare_iccid=identities.iccid(seed, index, generation=1),
                    msisdn=identities.msisdn(seed, index),
                    plate=identities.plate(seed, index),
                    vin=identities.vin(seed, index),
                    route=route,
                    faults=own,
                )
            )
    return plans


def quick_scenario(
    *,
    protocol: str,
    terminals: int,
    interval_s: float,
    transport: str,
    duration_s: float | None,
    seed: int = 1,
    heartbeat_s: float | None = None,
    ramp_s: float | None = None,
) -> Scenario:
    """The scenario ``gpsfleet simulate --protocol P --terminals N ...`` stands for."""
    if protocol not in PROTOCOLS:
        raise ScenarioError(f"--protocol must be one of {', '.join(PROTOCOLS)}; got {protocol!r}")
    if interval_s < 1.0:
        raise ScenarioError("--interval must be at least 1 s: trackers report fix times in whole seconds")
    if transport not in PROTOCOL_TRANSPORTS[protocol]:
        raise ScenarioError(f"{protocol} terminals do not use {transport}")
    timing = Timing(interval_s=interval_s, heartbeat_s=heartbeat_s or max(60.0, interval_s * 2))
    group = FleetGroup(name=protocol, protocol=protocol, count=terminals, transport=transport, timing=timing)
    return Scenario(
        name=f"{terminals} {protocol} terminals over {transport}",
        seed=seed,
        duration_s=duration_s,
        ramp_s=ramp_s if ramp_s is not None else min(60.0, max(1.0, terminals / 500)),
        drill=False,
        target=TargetSpec(),
        routes={},
        fleet=[group],
        faults=[],
        identity_salt=protocol,
    )
