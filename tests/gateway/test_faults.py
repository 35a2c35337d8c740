"""Fault tests: the database stopped mid-stream, the gateway killed, the broker restarted.
Every acknowledged fix must be stored, and stored once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import REGISTRY

from gateway.protocols.jt808 import Jt808Device
from store.db import open_database
from tests.gateway.support import (
    eventually,
    fix,
    phone,
    register,
    run,
    running_gateway,
    settings_for,
    stop_and_wait,
    stored_fixes,
)
from tests.services import MosquittoServer, PostgresServer, free_port, wait_port


def _spooled_rows() -> float:
    return REGISTRY.get_sample_value("gpsfleet_gateway_rows_total", {"target": "spool"}) or 0.0


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_stopped_mid_stream_then_back(
    pg_server: PostgresServer | None, pg_url: str, tmp_path: Path
) -> None:
    assert pg_server is not None, (
        "this test stops the server: it needs the throwaway one, not GPSFLEET_TEST_PG_URL"
    )
    database = open_database(pg_url)
    devices = [phone(100 + i) for i in range(4)]
    register(database, "jt808", devices)
    settings = settings_for(pg_url, tmp_path)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    acked: dict[str, list[datetime]] = {device: [] for device in devices}
    spooled_before = _spooled_rows()

    async def scenario() -> None:
        async with running_gateway(settings, database) as gateway:
            port = gateway.ports["jt808"]["tcp"]
            stop = asyncio.Event()
            terminals = [
                asyncio.create_task(stop_and_wait("jt808", d, "127.0.0.1", port, stop, acked[d], start=start))
                for d in devices
            ]
            await eventually(lambda: sum(map(len, acked.values())) >= 40)
            await asyncio.get_running_loop().run_in_executor(None, pg_server.stop)
            during = sum(map(len, acked.values()))
            await eventually(
                lambda: sum(map(len, acked.values())) >= during + 40
            )  # acknowledged from the spool
            assert gateway.writer is not None and not gateway.writer.database_ok
            await asyncio.get_running_loop().run_in_executor(None, pg_server.start)
            await eventually(lambda: gateway.writer is not None and gateway.writer.spool.empty, timeout=20)
            after = sum(map(len, acked.values()))
            await eventually(lambda: sum(map(len, acked.values())) >= after + 40)
            stop.set()
            await asyncio.gather(*terminals)

    try:
        run(scenario())
        assert _spooled_rows() > spooled_before
        for device in devices:
            rows = stored_fixes(database, device)
            stored = [row.fix_time for row in rows]
            assert len(stored) == len(set(stored))
            assert set(acked[device]) <= set(stored), f"{device}: acknowledged fixes missing"
            assert len(acked[device]) == len(set(acked[device]))
    finally:
        if pg_server.process is None:
            pg_server.start()
        database.dispose()


def _gateway_process(db_url: str, data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    from gateway.protocols import PROTOCOLS

    env = {k: v for k, v in os.environ.items() if not k.startswith("GPSFLEET_")}
    env.update(
        GPSFLEET_DB=db_url,
        GPSFLEET_DATA_DIR=str(data_dir),
        GPSFLEET_API_PORT="0",
        GPSFLEET_GATEWAY__HOST="127.0.0.1",
        GPSFLEET_GATEWAY__PROTOCOLS__JT808__PORT=str(port),
    )
    for name in PROTOCOLS:
        if name != "jt808":
            env[f"GPSFLEET_GATEWAY__PROTOCOLS__{name.upper()}__ENABLED"] = "false"
    gpsfleet = Path(sys.executable).with_name("gpsfleet")
    return subprocess.Popen(
        [str(gpsfleet), "serve", "--role", "gateway"],
        env=env,
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@pytest.mark.slow
@pytest.mark.postgres
def test_gateway_killed_mid_stream_and_restarted(pg_url: str, tmp_path: Path) -> None:
    database = open_database(pg_url)
    devices = [phone(200 + i) for i in range(4)]
    register(database, "jt808", devices)
    port = free_port()
    log = tmp_path / "gateway.log"
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    acked: dict[str, list[datetime]] = {device: [] for device in devices}
    process = _gateway_process(pg_url, tmp_path / "data", port, log)

    async def scenario() -> int:
        nonlocal process
        await asyncio.get_running_loop().run_in_executor(None, wait_port, port, 60)
        stop = asyncio.Event()
        terminals = [
            asyncio.create_task(
                stop_and_wait(
                    "jt808", d, "127.0.0.1", port, stop, acked[d], start=start, retransmit_after=1.0
                )
            )
            for d in devices
        ]
        await eventually(lambda: sum(map(len, acked.values())) >= 100, timeout=30)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        before_restart = sum(map(len, acked.values()))
        process = _gateway_process(pg_url, tmp_path / "data", port, log)
        await eventually(lambda: sum(map(len, acked.values())) >= before_restart + 100, timeout=60)
        stop.set()
        sent = sum(await asyncio.gather(*terminals))
        process.send_signal(signal.SIGTERM)
        return sent

    try:
        sent = run(scenario())
        assert process.wait(30) == 0, log.read_text()[-3000:]
        assert sent >= sum(map(len, acked.values()))
        for device in devices:
            stored = [row.fix_time for row in stored_fixes(database, device)]
            assert len(stored) == len(set(stored))
            assert set(acked[device]) <= set(stored), f"{device}: acknowledged fixes lost"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        database.dispose()


@pytest.mark.slow
@pytest.mark.mqtt
def test_broker_restarted_frames_published_meanwhile_stored_once(
    mqtt_server: MosquittoServer | None, mqtt_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    assert mqtt_server is not None, "this test restarts the broker: it needs the throwaway one"
    database = open_database(sqlite_url)
    device_id = phone(300)
    register(database, "jt808", [device_id])
    settings = settings_for(
        sqlite_url,
        tmp_path,
        # A plain subscription: Mosquitto 2.0 does not queue messages of a shared
        # subscription for a member that is offline, so frames published while the gateway
        # reconnects would be the broker's loss, not the gateway's (see the report).
        mqtt={
            "enabled": True,
            "url": mqtt_url,
            "client_id": f"gw-restart-{os.getpid()}",
            "shared_group": None,
        },
    )
    codec = Jt808Device(device_id, transport="mqtt")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    frames = [codec.position(fix(i, start=start)).data for i in range(90)]
    host, port = mqtt_url.rsplit("/", 1)[-1].split(":")
    topic = f"gpsfleet/jt808/{device_id}/up"

    async def scenario() -> None:
        async with running_gateway(settings, database) as gateway:
            await eventually(lambda: gateway.status()["mqtt"][0]["connected"])
            publisher = mqtt.Client(
                CallbackAPIVersion.VERSION2, client_id=f"edge-{os.getpid()}", clean_session=False
            )
            publisher.reconnect_delay_set(min_delay=1, max_delay=2)
            publisher.connect(host, int(port))
            publisher.loop_start()
            try:
                for frame in frames[:30]:
                    publisher.publish(topic, frame, qos=1)
                await eventually(lambda: len(stored_fixes(database, device_id)) >= 10)
                await asyncio.get_running_loop().run_in_executor(None, mqtt_server.stop)
                for frame in frames[30:60]:  # queued by the publisher while the broker is down
                    publisher.publish(topic, frame, qos=1)
                await asyncio.get_running_loop().run_in_executor(None, mqtt_server.start)
                for frame in frames[60:]:
                    publisher.publish(topic, frame, qos=1)
                await eventually(lambda: len(stored_fixes(database, device_id)) == len(frames), timeout=20)
                await asyncio.sleep(1.0)  # a redelivered duplicate would land now
            finally:
                publisher.loop_stop()
                publisher.disconnect()

    try:
        run(scenario())
        stored = [row.fix_time for row in stored_fixes(database, device_id)]
        assert len(stored) == len(frames) == len(set(stored))
    finally:
        if mqtt_server.process is None:
            mqtt_server.start()
        database.dispose()


@pytest.mark.slow
@pytest.mark.postgres
def test_full_spool_pauses_reading_and_turns_health_red(
    pg_server: PostgresServer | None, pg_url: str, tmp_path: Path
) -> None:
    assert pg_server is not None, "this test stops the server: it needs the throwaway one"
    from gateway.router import health_check

    database = open_database(pg_url)
    devices = [phone(400 + i) for i in range(2)]
    register(database, "jt808", devices)
    settings = settings_for(pg_url, tmp_path, spool_max_bytes=1024)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    acked: dict[str, list[datetime]] = {device: [] for device in devices}
    seen: dict[str, object] = {}

    async def scenario() -> None:
        async with running_gateway(settings, database) as gateway:
            port = gateway.ports["jt808"]["tcp"]
            stop = asyncio.Event()
            terminals = [
                asyncio.create_task(stop_and_wait("jt808", d, "127.0.0.1", port, stop, acked[d], start=start))
                for d in devices
            ]
            await eventually(lambda: sum(map(len, acked.values())) >= 10)
            await asyncio.get_running_loop().run_in_executor(None, pg_server.stop)
            await eventually(lambda: gateway.paused, timeout=20)
            assert gateway.writer is not None and gateway.writer.spool_full
            check = health_check(gateway)()  # what /health runs
            seen["health"] = (check.ok, "spool" in check.detail and "database failing" in check.detail)
            seen["backpressure"] = REGISTRY.get_sample_value("gpsfleet_gateway_backpressure")
            frozen = sum(map(len, acked.values()))
            await asyncio.sleep(1.0)
            seen["acked_while_full"] = sum(map(len, acked.values())) - frozen
            await asyncio.get_running_loop().run_in_executor(None, pg_server.start)
            await eventually(lambda: not gateway.paused, timeout=20)
            after = sum(map(len, acked.values()))
            await eventually(lambda: sum(map(len, acked.values())) >= after + 10)
            seen["health_after"] = health_check(gateway)().ok
            stop.set()
            await asyncio.gather(*terminals)

    try:
        run(scenario())
        assert seen == {
            "health": (False, True),
            "backpressure": 1.0,
            "acked_while_full": 0,
            "health_after": True,
        }
        for device in devices:
            stored = {row.fix_time for row in stored_fixes(database, device)}
            assert set(acked[device]) <= stored
    finally:
        if pg_server.process is None:
            pg_server.start()
        database.dispose()
