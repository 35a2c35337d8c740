"""The simulated fleet against the real gateway: every protocol over every transport it uses
(TCP, UDP, a serial pseudo-terminal, MQTT through the broker), registered through
``--registry``'s seeding, and every terminal's fixes stored."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.settings import Settings
from fleet.directory import TerminalDirectory
from gateway.protocols import PROTOCOLS
from gateway.server import Gateway
from simulators.registry import seed_registry
from simulators.runner import Endpoints, FleetRunner
from simulators.scenario import parse_scenario
from store.db import open_database
from store.tables.positions import positions

pytestmark = [pytest.mark.slow, pytest.mark.mqtt]

GROUPS = [
    ("nmea", "tcp"),
    ("nmea", "serial"),
    ("jt808", "tcp"),
    ("jt808", "udp"),
    ("jt808", "mqtt"),
    ("gt06", "tcp"),
    ("teltonika", "tcp"),
    ("teltonika", "udp"),
    ("h02", "tcp"),
    ("h02", "udp"),
    ("gps103", "tcp"),
    ("gps103", "udp"),
]


def fleet_text() -> str:
    text = """
[scenario]
name = "every protocol, every transport"
seed = 31
ramp_s = 0.5

[timing]
interval_s = 1
heartbeat_s = 2
ack_timeout_s = 2
handshake_timeout_s = 2
"""
    for protocol, transport in GROUPS:
        text += f"""
[[fleet]]
name = "{protocol} over {transport}"
protocol = "{protocol}"
transport = "{transport}"
count = {1 if transport in ("serial", "mqtt") else 2}
"""
    return text


def test_every_protocol_and_transport_is_stored_by_the_gateway(
    sqlite_url: str, tmp_path: Path, mqtt_url: str
) -> None:
    database = open_database(sqlite_url)
    runner = FleetRunner(parse_scenario(fleet_text()), Endpoints("127.0.0.1", {}, {}))
    seed_registry(database, runner.plans)
    serial = [
        {"device": port.slave_path, "protocol": port.protocol, "terminal_id": port.terminal_id}
        for port in runner.prepare()
    ]
    protocols = {
        name: {"port": 0, "udp_port": 0 if "udp" in spec.transports else None, "tz": spec.default_tz}
        for name, spec in PROTOCOLS.items()
    }
    settings = Settings(
        db=sqlite_url,
        data_dir=tmp_path,
        gateway={
            "host": "127.0.0.1",
            "protocols": protocols,
            "serial_ports": serial,
            "mqtt": {"enabled": True, "url": mqtt_url, "client_id": "gateway-under-test"},
        },
    )

    async def scenario():  # type: ignore[no-untyped-def]
        gateway = Gateway(settings, database, TerminalDirectory(database))
        await gateway.start()
        try:
            runner.endpoints = Endpoints(
                "127.0.0.1",
                {name: ports["tcp"] for name, ports in gateway.ports.items() if "tcp" in ports},
                {name: ports["udp"] for name, ports in gateway.ports.items() if "udp" in ports},
                mqtt_url=mqtt_url,
            )
            return await runner.run(duration_s=10)
        finally:
            await gateway.stop()

    try:
        result = asyncio.run(scenario())
    finally:
        runner.close()
    with database.engine.connect() as conn:
        stored = dict(
            conn.execute(
                select(positions.c.terminal_id, func.count()).group_by(positions.c.terminal_id)
            ).all()
        )
    database.dispose()
    missing = [
        f"{plan.group.protocol}/{plan.group.transport} {plan.terminal_id}"
        for plan in runner.plans
        if stored.get(plan.terminal_id, 0) < 2
    ]
    assert not missing, f"terminals with fewer than 2 stored fixes: {missing}"
    assert result.stats["rejected"] == 0
    assert result.stats["fixes_acked"] > 0
