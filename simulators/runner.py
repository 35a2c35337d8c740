"""Runs a scenario: thousands of virtual terminals in one asyncio process, with live progress.

``FleetRunner`` builds one ``VirtualTerminal`` per ``TerminalPlan`` (codec from the
protocol's ``SPEC.device``, link from the target), staggers their starts over the ramp,
prints a progress line (frames sent, acknowledged, retransmitted, faults injected) and,
at the end, the totals.  ``prepare()`` creates the serial pseudo-terminals first, so a
gateway in the same process (the demo) can be configured with their slave paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from gateway.protocols import PROTOCOLS
from gateway.protocols.base import DeviceCodec, parse_tz
from simulators.device import DeviceHealth, ReportComposer
from simulators.faults import FaultKind, FaultState
from simulators.motion import Driver, GnssReceiver, LatLon, Route, grid_route, road_route
from simulators.scenario import RouteSpec, Scenario, TerminalPlan, expand
from simulators.terminal import Stats, VirtualTerminal
from simulators.transports import Link, MqttHub, MqttLink, PtyPair, SerialLink, TcpLink, UdpLink

log = logging.getLogger(__name__)


class RunnerError(RuntimeError):
    """The scenario cannot run here (a protocol without a device codec, no port, ...)."""


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where each protocol listens, resolved from the scenario and the gateway settings."""

    host: str
    tcp_ports: dict[str, int]
    udp_ports: dict[str, int]
    mqtt_url: str | None = None
    mqtt_prefix: str = "gpsfleet"
    serial: str = "pty"  # "pty" or a device path
    local_hosts: tuple[str, ...] = ()


@dataclass(slots=True)
class SerialPort:
    """A pty the runner made for one terminal: the gateway reads ``slave_path``."""

    slave_path: str
    protocol: str
    terminal_id: str


@dataclass(slots=True)
class TerminalResult:
    terminal_id: str
    group: str
    protocol: str
    transport: str
    faults: list[str]
    fixes: int
    fixes_acked: int
    frames_sent: int


@dataclass(slots=True)
class RunResult:
    scenario: str
    seconds: float
    stats: dict[str, int]
    terminals: list[TerminalResult] = field(default_factory=list)
    peak_connected: int = 0

    @property
    def frames_per_s(self) -> float:
        return self.stats["frames_sent"] / self.seconds if self.seconds else 0.0


def raise_open_files_limit() -> int:
    """Lift the soft limit on open files to the hard one (each TCP terminal holds one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


def build_route(spec: RouteSpec, rng: random.Random) -> Route:
    center = LatLon(*spec.center)
    if spec.kind == "road":
        return road_route(spec.name, center, rng, length_km=spec.length_km, limit_kmh=spec.limit_kmh)
    return grid_route(
        spec.name,
        center,
        rng,
        blocks=spec.blocks,
        block_m=spec.block_m,
        street_kmh=spec.street_kmh,
        avenue_kmh=spec.avenue_kmh,
    )


class FleetRunner:
    def __init__(self, scenario: Scenario, endpoints: Endpoints, *, plans: list[TerminalPlan] | None = None):
        self.scenario = scenario
        self.endpoints = endpoints
        self.plans = plans if plans is not None else expand(scenario)
        self.stats = Stats()
        self.terminals: list[VirtualTerminal] = []
        self.serial_ports: list[SerialPort] = []
        self._ptys: dict[str, PtyPair] = {}
        self._routes: dict[str, Route] = {}
        self._hub: MqttHub | None = None
        self._stop = asyncio.Event()
        self._local_hosts = itertools.cycle(endpoints.local_hosts) if endpoints.local_hosts else None
        self.peak_connected = 0

    def check(self) -> None:
        """Raise ``RunnerError`` when a group cannot run against the endpoints (run() checks too)."""
        for group in self.scenario.fleet:
            spec = PROTOCOLS.get(group.protocol)
            if spec is None:
                raise RunnerError(f"protocol {group.protocol!r} is not available in this gateway build")
            if spec.device is None:
                raise RunnerError(
                    f"protocol {group.protocol} has no device codec (SPEC.device) to simulate with"
                )
            if group.transport == "tcp" and group.protocol not in self.endpoints.tcp_ports:
                raise RunnerError(f"no TCP port known for {group.protocol}")
            if group.transport == "udp" and group.protocol not in self.endpoints.udp_ports:
                raise RunnerError(f"no UDP port known for {group.protocol}")
            if group.transport == "mqtt" and not self.endpoints.mqtt_url:
                raise RunnerError(f"fleet group {group.name!r} uses MQTT but no broker URL is given")

    def prepare(self) -> list[SerialPort]:
        """Create the pseudo-terminals of serial terminals (idempotent); returns them."""
        if self.endpoints.serial != "pty":
            return self.serial_ports
        for plan in self.plans:
            if plan.group.transport == "serial" and plan.terminal_id not in self._ptys:
                pair = PtyPair()
                self._ptys[plan.terminal_id] = pair
                self.serial_ports.append(SerialPort(pair.slave_path, plan.group.protocol, plan.terminal_id))
        return self.serial_ports

    def _make_link_factory(self, plan: TerminalPlan) -> Callable[[], Link]:
        group, endpoints = plan.group, self.endpoints
        if group.transport == "tcp":
            port = endpoints.tcp_ports[group.protocol]
            local = next(self._local_hosts) if self._local_hosts else None
            return lambda: TcpLink(endpoints.host, port, local_host=local)
        if group.transport == "udp":
            port = endpoints.udp_ports[group.protocol]
            return lambda: UdpLink(endpoints.host, port)
        if group.transport == "serial":
            if endpoints.serial == "pty":
                pair = self._ptys[plan.terminal_id]
                return lambda: SerialLink(pty=pair)
            return lambda: SerialLink(path=endpoints.serial)
        if self._hub is None:
            assert endpoints.mqtt_url is not None
            self._hub = MqttHub(endpoints.mqtt_url, topic_prefix=endpoints.mqtt_prefix)
        hub = self._hub
        return lambda: MqttLink(hub, group.protocol, plan.terminal_id)

    def _build(self, plan: TerminalPlan) -> VirtualTerminal:
        rng = random.Random(f"{self.scenario.seed}:{plan.index}")
        spec = PROTOCOLS[plan.group.protocol]
        assert spec.device is not None
        device_cls: type[DeviceCodec] = spec.device
        codec = device_cls(
            plan.terminal_id, tz=parse_tz(plan.group.tz or spec.default_tz), transport=plan.group.transport
        )
        route = self._routes.get(plan.route.name)
        if route is None:  # one road network per route name, shared by its terminals
            route = build_route(plan.route, random.Random(f"{self.scenario.seed}:route:{plan.route.name}"))
            self._routes[plan.route.name] = route
        parking = plan.route.parking and not any(
            entry.spec.kind == FaultKind.FROZEN_FIX for entry in plan.faults
        )  # a frozen fix shows only while the vehicle moves
        driver = Driver(
            route,
            rng,
            park_s=(60.0, 600.0) if parking else (0.0, 0.0),
            trip_km=(3.0, 15.0) if parking else (1e6, 1e6),
        )
        health = DeviceHealth(plan.iccid, rng, spare_iccid=plan.spare_iccid)
        composer = ReportComposer(GnssReceiver(rng), health, FaultState(plan.fault_specs, rng))
        return VirtualTerminal(
            plan.terminal_id,
            codec,
            self._make_link_factory(plan),
            driver,
            composer,
            timing=plan.group.timing,
            stats=self.stats,
            rng=rng,
        )

    def stop(self) -> None:
        self._stop.set()

    async def run(
        self,
        *,
        duration_s: float | None = None,
        progress: IO[str] | None = None,
        progress_every_s: float = 1.0,
    ) -> RunResult:
        """Run until ``duration_s`` (default: the scenario's) passes or ``stop()`` is called."""
        self.check()
        raise_open_files_limit()
        self.prepare()
        self.terminals = [self._build(plan) for plan in self.plans]
        duration = duration_s if duration_s is not None else self.scenario.duration_s
        started = time.monotonic()
        count = max(1, len(self.terminals))
        ramp = self.scenario.ramp_s
        tasks = [
            asyncio.create_task(terminal.run(start_delay_s=ramp * index / count), name=terminal.terminal_id)
            for index, terminal in enumerate(self.terminals)
        ]
        reporter = asyncio.create_task(self._progress(progress, progress_every_s, started))
        try:
            if duration is None:
                await self._stop.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), duration)
        finally:
            for terminal in self.terminals:
                terminal.request_stop()
            await asyncio.gather(*tasks, return_exceptions=True)
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
            if progress is not None:
                progress.write("\r" + self.progress_line(time.monotonic() - started) + "\n")
                progress.flush()
            if self._hub is not None:
                self._hub.stop()
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                log.error("terminal %s failed: %r", task.get_name(), task.exception())
        return self._result(time.monotonic() - started)

    def close(self) -> None:
        """Close the pseudo-terminals (after the gateway that reads them has stopped)."""
        for pair in self._ptys.values():
            pair.close()
        self._ptys.clear()

    def _result(self, seconds: float) -> RunResult:
        results = [
            TerminalResult(
                terminal_id=plan.terminal_id,
                group=plan.group.name,
                protocol=plan.group.protocol,
                transport=plan.group.transport,
                faults=[entry.spec.kind.value for entry in plan.faults],
                fixes=terminal.fixes,
                fixes_acked=terminal.fixes_acked,
                frames_sent=terminal.frames_sent,
            )
            for plan, terminal in zip(self.plans, self.terminals, strict=True)
        ]
        return RunResult(self.scenario.name, seconds, self.stats.snapshot(), results, self.peak_connected)

    async def _progress(self, out: IO[str] | None, every_s: float, started: float) -> None:
        interactive = out is not None and getattr(out, "isatty", lambda: False)()
        last_line = 0.0
        while True:
            await asyncio.sleep(every_s)
            self.peak_connected = max(self.peak_connected, self.stats.connected)
            if out is None:
                continue
            elapsed = time.monotonic() - started
            if interactive:
                out.write("\r" + self.progress_line(elapsed) + "\x1b[K")
                out.flush()
            elif elapsed - last_line >= 10 * every_s:  # a log file: a line every 10 ticks
                last_line = elapsed
                out.write(self.progress_line(elapsed) + "\n")
                out.flush()

    def progress_line(self, elapsed: float) -> str:
        s = self.stats
        rate = s.frames_sent / elapsed if elapsed > 0 else 0.0
        return (
            f"[{elapsed:7.1f}s] terminals {s.connected}/{len(self.plans)} connected · "
            f"sent {s.frames_sent} ({rate:,.0f}/s) · acked {s.acked} · retransmitted {s.retransmitted} · "
            f"faults {s.faults_injected} · buffered {s.buffered} · disconnects {s.disconnects}"
        )


def format_summary(result: RunResult) -> str:
    s = result.stats
    lines = [
        f"scenario: {result.scenario}",
        f"ran {result.seconds:.1f} s; terminals peak connected {result.peak_connected}",
        f"frames sent {s['frames_sent']} ({result.frames_per_s:,.1f}/s), bytes {s['bytes_sent']}",
        f"acknowledged {s['acked']}, retransmitted {s['retransmitted']}, replies {s['replies']}",
        f"fixes {s['fixes']}: acknowledged {s['fixes_acked']}, sent without ack {s['fixes_unacked_sent']}, "
        f"in {s['batches']} batch uploads; still buffered {s['buffered']}, dropped {s['buffer_dropped']}",
        f"connects {s['connects']}, failures {s['connect_failures']}, disconnects {s['disconnects']}, "
        f"handshakes {s['handshakes']}, rejected {s['rejected']}",
        f"faults injected {s['faults_injected']}",
    ]
    if s["rejected"] and not s["handshakes"]:
        lines.append(
            "the gateway refused every login: are these terminals in its registry? "
            "(gpsfleet simulate --registry --db URL writes them there)"
        )
    return "\n".join(lines)


def run_blocking(coro: Any) -> Any:
    """Run a coroutine on uvloop when it is installed (it halves the CPU per frame)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)
