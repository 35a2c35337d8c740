"""``gpsfleet demo``: the whole product on one machine, no services needed, in one process.

The store on SQLite (or ``--db``), a seeded registry, the gateway on every transport it can
use here (TCP, UDP, a serial pseudo-terminal, MQTT when a broker answers), the alert engine,
the API, and a simulated mixed fleet of about 50 terminals whose scheduled faults raise
alerts and open repair tickets within a minute.  It prints where to look and an admin
token, reports tickets as they open, and stops cleanly on Ctrl-C or after ``--duration``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib.util
import logging
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from app.context import add_db_argument, database_or_exit, positive_seconds, settings_from
from core.settings import Settings, load_settings, mask_dsn
from simulators.registry import seed_registry
from simulators.runner import Endpoints, FleetRunner, RunResult, SerialPort, format_summary, run_blocking
from simulators.scenario import Scenario, ScenarioError, load_scenario

log = logging.getLogger(__name__)

DEFAULT_DB = "sqlite:///var/demo.db"
DEMO_SCENARIO = "mixed-fleet"

# Alert rules that act within seconds, so the demo's faults (20-30 s in) become alerts and
# tickets within a minute.  Production keeps the defaults of alerts.rules (minutes).
FAST_ALERT_RULES: dict[str, dict[str, float]] = {
    "offline": {"threshold": 0.25},  # 15 s without a report
    "no_fix": {"sustain_s": 10.0},
    "frozen_fix": {"sustain_s": 10.0},
    "main_voltage_low": {"sustain_s": 5.0},
    "backup_battery_low": {"sustain_s": 5.0},
    "weak_gsm": {"sustain_s": 10.0},
    "clock_drift": {"sustain_s": 5.0},
    "data_errors": {"threshold": 3.0},
}
FAST_EVALUATE_EVERY_S = 1.0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run everything on this machine: SQLite store, gateway, API and a simulated fleet with faults",
        description=__doc__,
    )
    add_db_argument(parser)
    parser.add_argument("--api-port", type=int, metavar="N", help="API port (default 8080, or a free one)")
    parser.add_argument(
        "--duration", type=positive_seconds, metavar="S", help="stop after S seconds (default: Ctrl-C)"
    )
    parser.add_argument(
        "--scenario", default=DEMO_SCENARIO, metavar="FILE", help="the fleet (default mixed-fleet)"
    )
    parser.set_defaults(handler=run)


def port_free(host: str, port: int, kind: int = socket.SOCK_STREAM) -> bool:
    with socket.socket(socket.AF_INET, kind) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def broker_answers(url: str, timeout_s: float = 1.0) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 1883), timeout=timeout_s):
            return True
    except OSError:
        return False


def gateway_available(transport: str) -> bool:
    """Whether this gateway build has the transport's adapter (serial, mqtt)."""
    return importlib.util.find_spec(f"gateway.transports.{transport}") is not None


def demo_protocol_ports(settings: Settings, host: str) -> dict[str, dict[str, Any]]:
    """The configured (Traccar) ports where free, a free port instead of a taken one, and UDP
    for every protocol that has it (on its TCP port number unless one is configured)."""
    from gateway.protocols import PROTOCOLS

    out: dict[str, dict[str, Any]] = {}
    for name, protocol in settings.gateway.protocols.items():
        values = protocol.model_dump()
        if not port_free(host, protocol.port):
            values["port"] = free_port()
        spec = PROTOCOLS.get(name)
        udp_port = protocol.udp_port
        if udp_port is None and spec is not None and "udp" in spec.transports:
            udp_port = values["port"]
        if udp_port is not None and not port_free(host, udp_port, socket.SOCK_DGRAM):
            udp_port = free_port(socket.SOCK_DGRAM)
        values["udp_port"] = udp_port
        out[name] = values
    return out


def fit_scenario(scenario: Scenario, *, mqtt: bool, serial: bool, say: Any) -> Scenario:
    """Moves groups whose transport is not usable here onto TCP, saying so."""
    fleet = []
    for group in scenario.fleet:
        usable = (group.transport != "mqtt" or mqtt) and (group.transport != "serial" or serial)
        if not usable:
            say(f"  {group.name}: {group.count} terminals over TCP instead of {group.transport}")
            group = dataclasses.replace(group, transport="tcp")
        fleet.append(group)
    return dataclasses.replace(scenario, fleet=fleet)


def mqtt_usable(base: Settings, say: Any) -> bool:
    if not gateway_available("mqtt"):
        say("MQTT: this gateway build has no MQTT transport; MQTT terminals use TCP")
        return False
    if not broker_answers(base.gateway.mqtt.url):
        say(f"MQTT: no broker answers on {base.gateway.mqtt.url}; MQTT terminals use TCP instead")
        return False
    say(f"MQTT: broker {base.gateway.mqtt.url} answers; the gateway subscribes to gpsfleet/+/+/up")
    return True


def build_settings(
    args: argparse.Namespace, base: Settings, *, mqtt_on: bool, serial_ports: list[SerialPort]
) -> Settings:
    """The demo's settings over the user's: local gateway ports, fast alert rules, MQTT when a
    broker answers, the serial pseudo-terminals of the simulated receivers."""
    host = "127.0.0.1"
    api_port = args.api_port or (base.api_port if port_free(base.api_host, base.api_port) else free_port())
    rules = {name: {**values} for name, values in FAST_ALERT_RULES.items()}
    for name, rule in base.alerts.rules.items():  # the user's own settings win
        rules[name] = {**rules.get(name, {}), **rule.model_dump(exclude_unset=True)}
    data_dir = Path(base.data_dir) / "demo"
    gateway = base.gateway.model_dump()
    gateway.update(
        host=host,
        protocols=demo_protocol_ports(base, host),
        mqtt={**gateway["mqtt"], "enabled": mqtt_on},
        serial_ports=[
            *gateway["serial_ports"],
            *(
                {"device": p.slave_path, "protocol": p.protocol, "terminal_id": p.terminal_id}
                for p in serial_ports
            ),
        ],
    )
    settings = load_settings(
        None,
        db=args.db or (base.db if base.db != Settings.model_fields["db"].default else DEFAULT_DB),
        data_dir=data_dir,
        api_port=api_port,
        gateway=gateway,
        alerts={**base.alerts.model_dump(), "evaluate_every_s": FAST_EVALUATE_EVERY_S, "rules": rules},
    )
    return settings


def endpoints_of(settings: Settings, gateway: Any) -> Endpoints:
    ports: dict[str, dict[str, int]] = getattr(gateway, "ports", {})
    return Endpoints(
        host="127.0.0.1",
        tcp_ports={name: p["tcp"] for name, p in ports.items() if "tcp" in p},
        udp_ports={name: p["udp"] for name, p in ports.items() if "udp" in p},
        mqtt_url=settings.gateway.mqtt.url if settings.gateway.mqtt.enabled else None,
        mqtt_prefix=settings.gateway.mqtt.topic_prefix,
    )


class TicketWatcher:
    """Prints alerts and tickets as they appear (reads the store; the API shows the same)."""

    def __init__(self, database: Any, say: Any) -> None:
        self.database, self.say = database, say
        self.alerts_seen: set[int] = set()
        self.tickets_seen: set[int] = set()

    def poll(self) -> None:
        from sqlalchemy import select

        from store.tables.alerts import alerts, tickets

        with self.database.engine.connect() as conn:
            new_alerts = conn.execute(
                select(alerts.c.id, alerts.c.terminal_id, alerts.c.fault, alerts.c.severity).order_by(
                    alerts.c.id
                )
            ).all()
            new_tickets = conn.execute(
                select(
                    tickets.c.id,
                    tickets.c.terminal_id,
                    tickets.c.fault,
                    tickets.c.priority,
                    tickets.c.in_warranty,
                    tickets.c.customer_name,
                ).order_by(tickets.c.id)
            ).all()
        for row in new_alerts:
            if row.id not in self.alerts_seen:
                self.alerts_seen.add(row.id)
                self.say(f"alert #{row.id}: {row.fault} ({row.severity}) on terminal {row.terminal_id}")
        for row in new_tickets:
            if row.id not in self.tickets_seen:
                self.tickets_seen.add(row.id)
                coverage = "in warranty" if row.in_warranty else "out of warranty: parts charged"
                self.say(
                    f"repair ticket #{row.id}: {row.fault} on terminal {row.terminal_id} "
                    f"({row.customer_name or 'no customer'}), priority {row.priority}, {coverage}"
                )


async def run_demo(
    settings: Settings,
    database: Any,
    runner: FleetRunner,
    *,
    duration_s: float | None,
    say: Any,
    token: str,
) -> RunResult:
    """API, gateway and alert engine (``app.runtime``) and the simulated fleet in one loop."""
    from app.runtime import Runtime

    serial_ports = runner.prepare()
    runtime = Runtime(settings, database, "all")
    await runtime.start()
    gateway = runtime.app.state.services.get("gateway")
    runner.endpoints = endpoints_of(settings, gateway)
    dashboard = await serves(f"http://{settings.api_host}:{runtime.api_port}/dashboard/")
    announce(settings, runtime.api_port, runtime.app, serial_ports, token, say, dashboard=dashboard)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, runner.stop)
    watcher = TicketWatcher(database, say)

    async def watch() -> None:
        while True:
            await asyncio.sleep(2)
            try:
                await asyncio.to_thread(watcher.poll)
            except Exception as exc:  # the demo goes on; the API shows the same data
                log.warning("could not read alerts: %s", exc)

    watching = asyncio.create_task(watch())
    try:
        result = await runner.run(duration_s=duration_s, progress=sys.stderr, progress_every_s=5.0)
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)
        say("stopping: the gateway drains, then the alert engine and the API")
        await runtime.stop()
    with contextlib.suppress(Exception):
        watcher.poll()
    say(f"{len(watcher.alerts_seen)} alerts and {len(watcher.tickets_seen)} repair tickets")
    return result


async def serves(url: str) -> bool:
    """Whether the running API answers ``url`` (the dashboard is there once it exists)."""
    import httpx

    try:
        async with httpx.AsyncClient(timeout=5) as client:
            return (await client.get(url)).status_code == 200
    except httpx.HTTPError:
        return False


def announce(
    settings: Settings,
    api_port: int | None,
    app: Any,
    serial_ports: list[Any],
    token: str,
    say: Any,
    *,
    dashboard: bool,
) -> None:
    base = f"http://{settings.api_host}:{api_port}"
    gateway = app.state.services.get("gateway")
    lines = ["", "gpsfleet demo is running", f"  database      {mask_dsn(settings.db)}"]
    if dashboard:
        lines.append(f"  dashboard     {base}/dashboard/#token={token}")
    lines += [
        f"  API docs      {base}/docs",
        f"  tickets       {base}/api/v1/tickets",
        f"  alerts        {base}/api/v1/alerts",
        f"  fleet health  {base}/api/v1/health",
        f"  gateway       {base}/api/v1/gateway/status   metrics {base}/metrics",
        f"  admin token   {token}",
        f'  try           curl -H "Authorization: Bearer {token}" {base}/api/v1/tickets',
    ]
    ports: dict[str, dict[str, int]] = getattr(gateway, "ports", {})
    for name in sorted(ports):
        listeners = ", ".join(f"{kind} {port}" for kind, port in sorted(ports[name].items()))
        lines.append(f"  {name:<13} {listeners}")
    for port in serial_ports:
        lines.append(f"  serial        {port.slave_path} ({port.protocol} receiver {port.terminal_id})")
    if settings.gateway.mqtt.enabled:
        lines.append(f"  mqtt          {settings.gateway.mqtt.url} topics gpsfleet/<protocol>/<id>/up|down")
    lines.append("  Ctrl-C stops.  Faults start 15-30 s in; alerts and tickets follow within a minute.")
    lines.append("")
    say("\n".join(lines))


def run(args: argparse.Namespace) -> int:
    from api.auth import create_token

    def say(text: str) -> None:
        print(text, flush=True)

    base = settings_from(args)
    if not args.verbose:
        logging.getLogger().setLevel(logging.WARNING)
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"gpsfleet demo: {exc}", file=sys.stderr)
        return 2
    serial_on = gateway_available("serial")
    if not serial_on:
        say("serial: this gateway build has no serial transport; serial terminals use TCP")
    scenario = fit_scenario(scenario, mqtt=mqtt_usable(base, say), serial=serial_on, say=say)
    runner = FleetRunner(scenario, Endpoints("127.0.0.1", {}, {}))
    try:
        settings = build_settings(
            args,
            base,
            mqtt_on=any(g.transport == "mqtt" for g in scenario.fleet),
            serial_ports=runner.prepare(),
        )
        say(f"store: {mask_dsn(settings.db)}")
        database = database_or_exit(settings)
        try:
            started = time.monotonic()
            say(str(seed_registry(database, runner.plans)))
            say(f"registry seeded in {time.monotonic() - started:.1f} s")
            token = create_token(database.engine, role="admin", name="gpsfleet demo").token
            result = run_blocking(
                run_demo(settings, database, runner, duration_s=args.duration, say=say, token=token)
            )
            print(format_summary(result), file=sys.stderr)
        finally:
            database.dispose()
    finally:
        runner.close()
    return 0
