"""``gpsfleet simulate``: a simulated fleet against a gateway, from a scenario or quick flags.

    gpsfleet simulate --scenario mixed-fleet                 # a shipped scenario, or a FILE
    gpsfleet simulate --protocol jt808 --terminals 500 --interval 5 \\
        --target tcp://127.0.0.1:5015 --duration 300
    gpsfleet simulate --scenario fault-drill --registry --db sqlite:///var/gpsfleet.db

``--registry`` writes the fleet into the registry first (customers, vehicles, terminals,
SIMs, installations, warranties), so the gateway recognises it.  A drill scenario ends
with the table of injected faults against the alerts and tickets found in the database.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from app.context import add_db_argument, database_or_exit, positive_seconds, settings_from
from core.settings import Settings, mask_dsn
from fleet.errors import FleetError
from simulators.drill import DrillReport, evaluate, expectations, format_table
from simulators.registry import seed_registry
from simulators.runner import Endpoints, FleetRunner, RunnerError, RunResult, format_summary, run_blocking
from simulators.scenario import PROTOCOLS, Scenario, ScenarioError, load_scenario, quick_scenario
from simulators.transports import Target

DRILL_HINT = (
    "a drill needs a gateway whose alert rules act within seconds, not the production minutes: "
    "serve with gpsfleet --config deploy/fault-drill.toml serve"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="run simulated GPS terminals (a scenario or quick flags) against a gateway",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--scenario",
        metavar="FILE",
        help="scenario TOML file, or a shipped one: mixed-fleet, load-test, fault-drill",
    )
    parser.add_argument("--protocol", choices=PROTOCOLS, help="quick mode: one protocol for every terminal")
    parser.add_argument("--terminals", type=int, metavar="N", help="quick mode: how many (default 10)")
    parser.add_argument(
        "--interval",
        type=float,
        metavar="S",
        help="seconds between fixes (default 10, or the scenario's; given, it applies to every group)",
    )
    parser.add_argument(
        "--heartbeat",
        type=float,
        metavar="S",
        help="seconds between heartbeats (default: the scenario's, or twice the interval, at least 60)",
    )
    parser.add_argument(
        "--target",
        metavar="URL",
        help="quick mode: tcp://HOST:PORT, udp://HOST:PORT, mqtt://HOST:PORT, serial:///dev/pts/N or serial://pty "
        "(default: TCP to the protocol's configured port on 127.0.0.1)",
    )
    parser.add_argument("--host", help="send to this host instead of the scenario's")
    parser.add_argument(
        "--duration",
        type=positive_seconds,
        metavar="S",
        help="stop after S seconds (default: the scenario's, or Ctrl-C)",
    )
    parser.add_argument("--seed", type=int, help="quick mode: seed of identities and routes (default 1)")
    parser.add_argument(
        "--local-hosts",
        metavar="A,B,...",
        help="spread TCP connections over these source addresses (127.0.0.2,...)",
    )
    parser.add_argument(
        "--registry", action="store_true", help="write the simulated fleet into the registry first"
    )
    parser.add_argument(
        "--drill-wait", type=float, default=20.0, metavar="S", help="drill: wait up to S s for alerts"
    )
    parser.add_argument("--json", action="store_true", help="print the final figures as JSON on stdout")
    add_db_argument(parser)
    parser.set_defaults(handler=run)


def scenario_from_args(args: argparse.Namespace) -> tuple[Scenario, str | None]:
    """The scenario and the quick-mode target URL (None: the configured ports)."""
    if args.interval is not None and args.interval < 1.0:
        raise ScenarioError("--interval must be at least 1 s: trackers report fix times in whole seconds")
    if args.heartbeat is not None and args.heartbeat <= 0:
        raise ScenarioError("--heartbeat must be > 0")
    if args.scenario:
        if args.protocol:
            raise ScenarioError("give --scenario or --protocol, not both")
        for flag, value in (
            ("--terminals", args.terminals),
            ("--seed", args.seed),
            ("--target", args.target),
        ):
            if value is not None:
                raise ScenarioError(
                    f"{flag} is for quick mode (--protocol P); a scenario sets it in its file"
                    + (" (--host changes where it sends)" if flag == "--target" else "")
                )
        return with_timing(load_scenario(args.scenario), args.interval, args.heartbeat), None
    if not args.protocol:
        raise ScenarioError("give --scenario FILE or --protocol P (with --terminals, --interval, --target)")
    terminals = 10 if args.terminals is None else args.terminals
    if terminals < 1:
        raise ScenarioError("--terminals must be at least 1")
    transport = Target.parse(args.target).transport if args.target else "tcp"
    scenario = quick_scenario(
        protocol=args.protocol,
        terminals=terminals,
        interval_s=10.0 if args.interval is None else args.interval,
        transport=transport,
        duration_s=args.duration,
        seed=1 if args.seed is None else args.seed,
        heartbeat_s=args.heartbeat,
    )
    return scenario, args.target


def with_timing(scenario: Scenario, interval_s: float | None, heartbeat_s: float | None) -> Scenario:
    """The scenario with ``--interval`` and ``--heartbeat`` over every group's own timing."""
    if interval_s is None and heartbeat_s is None:
        return scenario
    fleet = [
        replace(
            group,
            timing=replace(
                group.timing,
                interval_s=group.timing.interval_s if interval_s is None else interval_s,
                heartbeat_s=group.timing.heartbeat_s if heartbeat_s is None else heartbeat_s,
            ),
        )
        for group in scenario.fleet
    ]
    return replace(scenario, fleet=fleet)


def endpoints_for(
    scenario: Scenario,
    settings: Settings,
    *,
    target_url: str | None = None,
    host: str | None = None,
    local_hosts: tuple[str, ...] | None = None,
) -> Endpoints:
    """Where to send: the scenario's [target], then the gateway settings' ports; a quick
    ``--target`` URL overrides the one protocol's address."""
    spec = scenario.target
    protocols = settings.gateway.protocols
    tcp_ports = {name: spec.ports.get(name) or p.port for name, p in protocols.items()}
    udp_ports = {name: spec.udp_ports.get(name) or p.udp_port or p.port for name, p in protocols.items()}
    mqtt_url = spec.mqtt or settings.gateway.mqtt.url
    serial = spec.serial
    chosen_host = host or spec.host
    if target_url:
        target = Target.parse(target_url)
        protocol = scenario.fleet[0].protocol
        if target.transport == "tcp":
            chosen_host, tcp_ports[protocol] = target.host, target.port
        elif target.transport == "udp":
            chosen_host, udp_ports[protocol] = target.host, target.port
        elif target.transport == "mqtt":
            mqtt_url = target.url
        else:
            serial = target.path
    return Endpoints(
        host=chosen_host,
        tcp_ports=tcp_ports,
        udp_ports=udp_ports,
        mqtt_url=mqtt_url,
        mqtt_prefix=settings.gateway.mqtt.topic_prefix,
        serial=serial,
        local_hosts=local_hosts if local_hosts is not None else spec.local_hosts,
    )


def fetch_observed(
    database: Any, terminal_ids: list[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The alerts and repair tickets of these terminals, as plain dicts."""
    from sqlalchemy import select

    from store.tables.alerts import alerts, tickets

    with database.engine.connect() as conn:
        found_alerts = [
            dict(row._mapping)
            for row in conn.execute(
                select(alerts.c.terminal_id, alerts.c.fault, alerts.c.state).where(
                    alerts.c.terminal_id.in_(terminal_ids)
                )
            )
        ]
        found_tickets = [
            dict(row._mapping)
            for row in conn.execute(
                select(tickets.c.terminal_id, tickets.c.fault, tickets.c.in_warranty, tickets.c.state).where(
                    tickets.c.terminal_id.in_(terminal_ids)
                )
            )
        ]
    return found_alerts, found_tickets


def drill_report(settings: Settings, database: Any, runner: FleetRunner) -> DrillReport:
    from alerts.rules import RuleBook

    book = RuleBook(settings.alerts)
    expected = expectations(runner.plans, lambda fault: book.rule(fault).ticket)
    found_alerts, found_tickets = fetch_observed(database, [plan.terminal_id for plan in runner.plans])
    return evaluate(expected, found_alerts, found_tickets)


async def run_drill(
    runner: FleetRunner, duration_s: float, check: Callable[[], DrillReport], wait_s: float
) -> tuple[RunResult, DrillReport]:
    """Run a drill for ``duration_s``, then keep the fleet running (so healthy terminals stay
    online) while polling ``check`` for up to ``wait_s`` until every expectation is met."""
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(runner.run(duration_s=None, progress=sys.stderr))
    try:
        await asyncio.wait({task}, timeout=duration_s)
        deadline = loop.time() + wait_s
        report = await asyncio.to_thread(check)
        while not report.ok and loop.time() < deadline and not task.done():
            await asyncio.wait({task}, timeout=2.0)
            report = await asyncio.to_thread(check)
    finally:
        runner.stop()
        result = await task
    return result, report


async def run_until_signalled(runner: FleetRunner, duration_s: float | None) -> RunResult:
    """Run the fleet; SIGINT/SIGTERM stop it cleanly (terminals drop their links, totals print)."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, runner.stop)
    try:
        return await runner.run(duration_s=duration_s, progress=sys.stderr)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)


def _database_exists(url: str) -> bool:
    """False for an SQLite file that is not there (opening it would create an empty one)."""
    if url.startswith("sqlite:///"):
        path = url.split("sqlite:///", 1)[1]
        return path == ":memory:" or Path(path).exists()
    return True


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    try:
        scenario, target_url = scenario_from_args(args)
        local_hosts = (
            tuple(h.strip() for h in args.local_hosts.split(",") if h.strip()) if args.local_hosts else None
        )
        endpoints = endpoints_for(
            scenario, settings, target_url=target_url, host=args.host, local_hosts=local_hosts
        )
        runner = FleetRunner(scenario, endpoints)
        runner.check()
    except (ScenarioError, RunnerError, ValueError) as exc:
        print(f"gpsfleet simulate: {exc}", file=sys.stderr)
        return 2
    database = None
    if args.registry or args.db:
        database = database_or_exit(settings)
    elif scenario.drill:
        if _database_exists(settings.db):
            with contextlib.suppress(SystemExit):
                database = database_or_exit(settings)
        if database is None:
            print(
                f"gpsfleet simulate: database {mask_dsn(settings.db)} not reachable: no drill table",
                file=sys.stderr,
            )
    if args.registry and database is not None:
        try:
            print(seed_registry(database, runner.plans), file=sys.stderr)
        except FleetError as exc:  # a plate, VIN or SIM of the simulated fleet is someone else's
            print(f"gpsfleet simulate: cannot register the fleet: {exc}", file=sys.stderr)
            runner.close()
            return 2
    for port in runner.prepare():
        print(
            f"serial terminal {port.terminal_id} ({port.protocol}): the gateway reads {port.slave_path}",
            file=sys.stderr,
        )
    print(
        f"simulating {scenario.terminal_count} terminals ({scenario.name}) from {scenario.source}; Ctrl-C stops",
        file=sys.stderr,
    )
    status = 0
    try:
        if scenario.drill and database is not None:
            drill_db = database
            result, report = run_blocking(
                run_drill(
                    runner,
                    args.duration or scenario.duration_s or 60.0,
                    lambda: drill_report(settings, drill_db, runner),
                    args.drill_wait,
                )
            )
            print(format_table(report))
            status = 0 if report.ok else 1
            if not report.ok:
                print(DRILL_HINT, file=sys.stderr)
        else:
            result = run_blocking(run_until_signalled(runner, args.duration))
    finally:
        runner.close()
    print(format_summary(result), file=sys.stderr)
    if args.json:
        print(
            json.dumps(
                {
                    "scenario": result.scenario,
                    "seconds": round(result.seconds, 2),
                    "frames_per_s": round(result.frames_per_s, 1),
                    "peak_connected": result.peak_connected,
                    **result.stats,
                }
            )
        )
    return status
