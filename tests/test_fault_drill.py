"""The fault drill, end to end: the shipped fault-drill scenario's terminals talk to the real
gateway (app.runtime: gateway + alert engine) over TCP; every injected device fault must
yield its alert and, where the rule opens one, a repair ticket with the right warranty
coverage; healthy terminals must yield nothing.  The verdict is printed as a table."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from app.commands.demo import FAST_ALERT_RULES, FAST_EVALUATE_EVERY_S, endpoints_of
from app.commands.simulate import drill_report, run_drill
from app.runtime import Runtime
from core.settings import Settings
from gateway.protocols import PROTOCOLS
from simulators.drill import format_table
from simulators.registry import seed_registry
from simulators.runner import Endpoints, FleetRunner
from simulators.scenario import load_scenario
from store.db import open_database

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def drill_settings(db_url: str, data_dir: Path) -> Settings:
    protocols = {
        name: {"port": 0, "udp_port": 0 if "udp" in spec.transports else None, "tz": spec.default_tz}
        for name, spec in PROTOCOLS.items()
    }
    return Settings(
        db=db_url,
        data_dir=data_dir,
        api_port=0,
        gateway={"host": "127.0.0.1", "protocols": protocols},
        alerts={"evaluate_every_s": FAST_EVALUATE_EVERY_S, "rules": FAST_ALERT_RULES},
    )


def test_every_injected_fault_yields_its_alert_and_ticket_and_healthy_terminals_none(
    pg_url: str, tmp_path: Path
) -> None:
    settings = drill_settings(pg_url, tmp_path)
    database = open_database(pg_url, pool_size=4)
    scenario = load_scenario("fault-drill")
    runner = FleetRunner(scenario, Endpoints("127.0.0.1", {}, {}))
    seed_registry(database, runner.plans)

    async def drill():  # type: ignore[no-untyped-def]
        runtime = Runtime(settings, database, "gateway")  # the gateway and the alert engine
        await runtime.start()
        try:
            runner.endpoints = endpoints_of(settings, runtime.app.state.services["gateway"])
            return await run_drill(runner, 35.0, lambda: drill_report(settings, database, runner), 40.0)
        finally:
            await runtime.stop()

    try:
        result, report = asyncio.run(drill())
    finally:
        runner.close()
        database.dispose()
    table = format_table(report)
    print("\n" + table)
    assert result.stats["handshakes"] >= scenario.terminal_count
    assert report.ok, "\n" + table
    injected = [o for o in report.outcomes if o.expectation.injected]
    assert len(injected) == len(scenario.faults)
    assert any(o.expectation.ticket and not o.expectation.in_warranty for o in injected)
    assert any(o.expectation.ticket and o.expectation.in_warranty for o in injected)
