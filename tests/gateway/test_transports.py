"""UDP, serial (real pty pairs) and MQTT (the throwaway Mosquitto) end to end."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select

from gateway.protocols import PROTOCOLS
from gateway.protocols.base import DeviceCodec
from store.db import Database
from store.tables.gateway import mqtt_dead_letters
from tests.gateway.support import (
    eventually,
    fix,
    imei,
    phone,
    register,
    run,
    running_gateway,
    settings_for,
    stored_fixes,
)


def test_udp_teltonika_replies_to_the_sender(
    sqlite_url: str, sqlite_database: Database, tmp_path: Path
) -> None:
    database = sqlite_database
    device_id = imei(20)
    register(database, "teltonika", [device_id])
    settings = settings_for(sqlite_url, tmp_path)
    device = PROTOCOLS["teltonika"].device
    assert device is not None
    codec: DeviceCodec = device(device_id, transport="udp")

    async def scenario() -> list[int]:
        async with running_gateway(settings, database) as gateway:
            port = gateway.ports["teltonika"]["udp"]
            loop = asyncio.get_running_loop()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                sock.connect(("127.0.0.1", port))
                acked: list[int] = []
                for index in range(4):
                    out = codec.position(fix(index))
                    await loop.sock_sendall(sock, out.data)
                    reply = await asyncio.wait_for(loop.sock_recv(sock, 1024), 10)
                    acked += codec.on_reply(reply).acked
                return acked

    assert run(scenario()) == [1, 2, 3, 4]
    assert len(stored_fixes(database, device_id)) == 4


def test_serial_pty_nmea_receiver_and_reopen(
    sqlite_url: str, sqlite_database: Database, tmp_path: Path
) -> None:
    """A plain NMEA receiver on a serial port: the port stands for a configured terminal.
    The port disappears and comes back on another pty; the gateway reopens it."""
    database = sqlite_database
    device_id = imei(30)
    register(database, "nmea", [device_id])
    link = tmp_path / "gps0"
    master, slave = os.openpty()
    link.symlink_to(os.ttyname(slave))
    settings = settings_for(
        sqlite_url,
        tmp_path,
        serial_ports=[
            {"device": str(link), "protocol": "nmea", "terminal_id": device_id, "reopen_max_backoff_s": 0.5}
        ],
    )
    device = PROTOCOLS["nmea"].device
    assert device is not None
    codec: DeviceCodec = device(device_id, transport="serial")

    async def scenario() -> dict[str, object]:
        nonlocal master, slave
        async with running_gateway(settings, database) as gateway:
            await eventually(lambda: gateway.status()["serial_ports"][0]["state"] == "open")
            for index in range(4):
                os.write(master, codec.position(fix(index)).data)
            await eventually(lambda: len(stored_fixes(database, device_id)) >= 3)
            os.close(master)
            os.close(slave)
            await eventually(lambda: gateway.status()["serial_ports"][0]["state"] == "down")
            master, slave = os.openpty()
            link.unlink()
            link.symlink_to(os.ttyname(slave))
            await eventually(lambda: gateway.status()["serial_ports"][0]["opens"] == 2)
            for index in range(10, 14):
                os.write(master, codec.position(fix(index)).data)
            await eventually(lambda: len(stored_fixes(database, device_id)) >= 6)
            status = gateway.status()["serial_ports"][0]
        os.close(master)
        os.close(slave)
        return status

    status = run(scenario())
    assert status["state"] == "open" and status["opens"] == 2
    rows = stored_fixes(database, device_id)
    assert all(r.protocol == "nmea" and r.flags == 0 for r in rows)


@pytest.mark.mqtt
def test_mqtt_frames_stored_acknowledged_replied_and_dead_lettered(
    sqlite_url: str, sqlite_database: Database, tmp_path: Path, mqtt_url: str
) -> None:
    database = sqlite_database
    device_id = phone(40)
    register(database, "jt808", [device_id])
    group = f"frames-{os.getpid()}"  # its own: a persistent session in a shared group takes a share
    settings = settings_for(
        sqlite_url,
        tmp_path,
        mqtt={"enabled": True, "url": mqtt_url, "client_id": f"{group}-gw", "shared_group": group},
    )
    device = PROTOCOLS["jt808"].device
    assert device is not None
    codec: DeviceCodec = device(device_id, transport="mqtt")
    replies: list[bytes] = []
    host, port = mqtt_url.rsplit("/", 1)[-1].split(":")

    async def scenario() -> None:
        async with running_gateway(settings, database) as gateway:
            await eventually(lambda: gateway.status()["mqtt"][0]["connected"])
            terminal = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"terminal-{device_id}")
            terminal.on_message = lambda c, u, m: replies.append(m.payload)
            terminal.connect(host, int(port))
            terminal.subscribe(f"gpsfleet/jt808/{device_id}/down", qos=1)
            terminal.loop_start()
            try:
                await asyncio.sleep(0.2)
                for index in range(3):
                    terminal.publish(f"gpsfleet/jt808/{device_id}/up", codec.position(fix(index)).data, qos=1)
                terminal.publish(f"gpsfleet/jt808/{device_id}/up", b"~\x02\x00broken~", qos=1)
                terminal.publish("gpsfleet/unknownproto/x/up", b"hello", qos=1)
                await eventually(lambda: len(stored_fixes(database, device_id)) == 3)
                await eventually(lambda: len(replies) == 3)
                await eventually(lambda: _dead_letters(database) == 2)
            finally:
                terminal.loop_stop()
                terminal.disconnect()

    run(scenario())
    acked = [seq for reply in replies for seq in codec.on_reply(reply).acked]
    assert sorted(acked) == [1, 2, 3]
    with database.engine.connect() as conn:
        kinds = sorted(row.kind for row in conn.execute(select(mqtt_dead_letters)).all())
    assert kinds[1] == "protocol" and kinds[0] != "protocol"


def _dead_letters(database: Database) -> int:
    with database.engine.connect() as conn:
        return len(conn.execute(select(mqtt_dead_letters.c.id)).all())


@pytest.mark.mqtt
def test_stopping_the_gateway_does_not_warn_that_mqtt_is_reconnecting(
    sqlite_url: str,
    sqlite_database: Database,
    tmp_path: Path,
    mqtt_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A clean stop logged "MQTT disconnected ...: Normal disconnection; reconnecting"."""
    # A group of its own: its persistent session must not take a share of other tests' frames.
    group = f"stop-{os.getpid()}"
    settings = settings_for(
        sqlite_url,
        tmp_path,
        mqtt={"enabled": True, "url": mqtt_url, "client_id": f"{group}-gw", "shared_group": group},
    )

    async def scenario() -> None:
        async with running_gateway(settings, sqlite_database) as gateway:
            await eventually(lambda: gateway.status()["mqtt"][0]["connected"])

    with caplog.at_level("INFO", logger="gateway.transports.mqtt"):
        run(scenario())
    messages = [record.getMessage() for record in caplog.records]
    assert not [m for m in messages if "reconnecting" in m]
    assert any("MQTT disconnected from" in m and "gateway stopping" in m for m in messages)
