"""Two gateways in one shared subscription ($share/<group>/...) split one MQTT stream:
every frame is stored once, each gateway takes a share, each terminal gets its replies."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from core.settings import Settings
from gateway.protocols.jt808.device import Jt808Device
from store.db import Database
from tests.gateway.support import (
    eventually,
    fix,
    phone,
    register,
    run,
    running_gateway,
    settings_for,
    stored_fixes,
)


@pytest.mark.mqtt
def test_two_gateways_in_a_shared_subscription_split_one_stream(
    sqlite_url: str, sqlite_database: Database, tmp_path: Path, mqtt_url: str
) -> None:
    database = sqlite_database
    devices = [phone(500 + n) for n in range(8)]
    register(database, "jt808", devices)
    group = f"split-{os.getpid()}"

    def settings(name: str) -> Settings:
        mqtt_settings = {
            "enabled": True,
            "url": mqtt_url,
            "client_id": f"{group}-{name}",
            "shared_group": group,
        }
        return settings_for(sqlite_url, tmp_path / name, mqtt=mqtt_settings)

    codecs = {device: Jt808Device(device, transport="mqtt") for device in devices}
    frames = [(device, codecs[device].position(fix(i)).data) for i in range(10) for device in devices]
    replies: dict[str, list[bytes]] = {device: [] for device in devices}
    host, port = mqtt_url.rsplit("/", 1)[-1].split(":")

    async def scenario() -> list[int]:
        async with (
            running_gateway(settings("a"), database) as first,
            running_gateway(settings("b"), database) as second,
        ):
            gateways = (first, second)
            await eventually(lambda: all(g.status()["mqtt"][0]["connected"] for g in gateways))
            edge = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{group}-edge")
            edge.on_message = lambda c, u, m: replies[m.topic.split("/")[2]].append(m.payload)
            edge.connect(host, int(port))
            edge.subscribe("gpsfleet/jt808/+/down", qos=1)
            edge.loop_start()
            try:
                await asyncio.sleep(0.3)
                for device, frame in frames:
                    edge.publish(f"gpsfleet/jt808/{device}/up", frame, qos=1)
                await eventually(lambda: sum(len(stored_fixes(database, d)) for d in devices) == len(frames))
                await eventually(lambda: sum(map(len, replies.values())) == len(frames))
            finally:
                edge.loop_stop()
                edge.disconnect()
            return [g.status()["mqtt"][0]["messages"] for g in gateways]

    shares = run(scenario())
    assert sum(shares) == len(frames) and min(shares) > 0, shares
    for device in devices:
        assert len({row.fix_time for row in stored_fixes(database, device)}) == 10
        acked = [seq for reply in replies[device] for seq in codecs[device].on_reply(reply).acked]
        assert sorted(acked) == sorted(set(acked)) and len(acked) == 10
