"""What NOC staff and terminals see: unknown terminals quarantined or refused, disabled
ones refused, the newest connection winning, decode errors counted, implausible fixes
flagged, hex logging switched through the API."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import select

from api.app import create_app
from core.messages import Message, MessageType
from gateway.server import Gateway
from store.db import Database
from store.records import Flag
from store.tables.gateway import gateway_quarantine
from tests.api.support import bearer
from tests.gateway.support import (
    DirectoryResolver,
    Terminal,
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


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_unknown_terminal_is_quarantined_then_claimed_and_assigned(
    sqlite_database: Database, sqlite_url: str, tmp_path: Path
) -> None:
    database = sqlite_database
    device_id = phone(500)
    register(database, "jt808", [phone(501)])  # creates the model; device_id itself is unknown
    settings = settings_for(sqlite_url, tmp_path, unknown_terminal="quarantine")

    async def scenario() -> bool:
        async with running_gateway(settings, database) as gateway:
            terminal = Terminal("jt808", device_id, "127.0.0.1", gateway.ports["jt808"]["tcp"])
            await terminal.connect()
            await terminal.handshake()
            acked = await terminal.send(terminal.codec.position(fix(1)))
            await eventually(lambda: _quarantine(database))
            await terminal.close()
            return acked

    assert run(scenario()) is True
    assert len(stored_fixes(database, device_id)) == 1  # kept, but in no customer's scope
    row = _quarantine(database)[0]
    assert row.device_id == device_id and row.protocol == "jt808" and row.status == "new"

    with TestClient(create_app(settings, database), raise_server_exceptions=False) as client:
        noc = bearer(database, "noc")
        listed = client.get("/api/v1/gateway/quarantine", headers=noc).json()
        assert [r["device_id"] for r in listed] == [device_id]
        assert (
            client.get(
                "/api/v1/gateway/quarantine", headers=bearer(database, "customer", _customer(database))
            ).status_code
            == 403
        )
        claimed = client.post(f"/api/v1/gateway/quarantine/{device_id}/claim", headers=noc)
        assert claimed.status_code == 200 and claimed.json()["status"] == "claimed"
        early = client.post(f"/api/v1/gateway/quarantine/{device_id}/assign", headers=noc)
        assert early.status_code == 409 and "registry" in early.json()["detail"]
        register(database, "jt808", [device_id])
        assigned = client.post(f"/api/v1/gateway/quarantine/{device_id}/assign", headers=noc)
        assert assigned.status_code == 200 and assigned.json()["status"] == "assigned"
        assert assigned.json()["assigned_by"] == "test noc"


def test_unknown_terminal_refused_and_closed_after_the_tries(
    sqlite_database: Database, sqlite_url: str, tmp_path: Path
) -> None:
    database = sqlite_database
    device_id = imei(510)
    settings = settings_for(sqlite_url, tmp_path, unknown_terminal="refuse", unknown_terminal_tries=3)
    refused_before = _metric(
        "gpsfleet_gateway_unknown_terminal_frames_total", protocol="teltonika", outcome="refused"
    )

    async def scenario() -> tuple[bool, bytes]:
        async with running_gateway(settings, database) as gateway:
            terminal = Terminal("teltonika", device_id, "127.0.0.1", gateway.ports["teltonika"]["tcp"])
            await terminal.connect()
            assert terminal.writer is not None
            terminal.writer.write(terminal.codec.handshake().data)  # type: ignore[union-attr]
            for index in range(2):
                terminal.writer.write(terminal.codec.position(fix(index)).data)
            closed = await terminal.closed_by_server()
            return closed, terminal.received

    closed, received = run(scenario())
    assert closed and received == b""  # no login accepted, nothing acknowledged
    assert stored_fixes(database, device_id) == []
    refused = _metric(
        "gpsfleet_gateway_unknown_terminal_frames_total", protocol="teltonika", outcome="refused"
    )
    assert refused - refused_before == 3
    assert _quarantine(database) == []


def test_disabled_terminal_is_refused(sqlite_database: Database, sqlite_url: str, tmp_path: Path) -> None:
    database = sqlite_database
    device_id = imei(520)
    register(database, "teltonika", [device_id], enabled=False)
    settings = settings_for(sqlite_url, tmp_path, unknown_terminal_tries=2)

    async def scenario() -> bool:
        async with running_gateway(settings, database) as gateway:
            terminal = Terminal("teltonika", device_id, "127.0.0.1", gateway.ports["teltonika"]["tcp"])
            await terminal.connect()
            assert terminal.writer is not None
            terminal.writer.write(terminal.codec.handshake().data)  # type: ignore[union-attr]
            terminal.writer.write(terminal.codec.position(fix(0)).data)
            return await terminal.closed_by_server()

    assert run(scenario())
    assert stored_fixes(database, device_id) == []


def test_the_newest_connection_of_a_terminal_wins(
    sqlite_database: Database, sqlite_url: str, tmp_path: Path
) -> None:
    database = sqlite_database
    device_id = phone(530)
    register(database, "jt808", [device_id])
    settings = settings_for(sqlite_url, tmp_path)

    async def scenario() -> tuple[bool, bool]:
        async with running_gateway(settings, database) as gateway:
            port = gateway.ports["jt808"]["tcp"]
            old = Terminal("jt808", device_id, "127.0.0.1", port)
            await old.connect()
            await old.handshake()
            new = Terminal("jt808", device_id, "127.0.0.1", port)
            await new.connect()
            await new.handshake()
            old_closed = await old.closed_by_server()
            still_served = await new.send(new.codec.position(fix(3)))
            await new.close()
            return old_closed, still_served

    assert run(scenario()) == (True, True)


def test_bad_frames_are_counted_and_the_session_goes_on(
    sqlite_database: Database, sqlite_url: str, tmp_path: Path
) -> None:
    database = sqlite_database
    device_id = phone(540)
    register(database, "jt808", [device_id])
    settings = settings_for(sqlite_url, tmp_path)
    before = _metric("gpsfleet_gateway_decode_errors_total", protocol="jt808", kind="checksum")

    async def scenario() -> bool:
        async with running_gateway(settings, database) as gateway:
            terminal = Terminal("jt808", device_id, "127.0.0.1", gateway.ports["jt808"]["tcp"])
            await terminal.connect()
            await terminal.handshake()
            bad = terminal.codec.position(fix(0))
            assert terminal.writer is not None
            terminal.writer.write(terminal.codec.corrupt_checksum(bad.data))
            ok = await terminal.send(terminal.codec.position(fix(1)))
            await terminal.close()
            return ok

    assert run(scenario())
    assert _metric("gpsfleet_gateway_decode_errors_total", protocol="jt808", kind="checksum") - before == 1
    assert len(stored_fixes(database, device_id)) == 1


def test_implausible_fixes_are_stored_flagged(
    sqlite_database: Database, sqlite_url: str, tmp_path: Path
) -> None:
    database = sqlite_database
    device_id = phone(550)
    register(database, "jt808", [device_id])
    settings = settings_for(sqlite_url, tmp_path)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    messages = [
        fix(0, start=start),
        fix(10, start=start, lat=48.0, lon=2.0),  # Shanghai to Paris in ten seconds
        Message(
            MessageType.POSITION,
            time=datetime.now(UTC).replace(microsecond=0) + timedelta(days=1),
            valid=True,
            lat=31.2,
            lon=121.4,
        ),
        fix(20, start=start),
    ]

    async def scenario() -> list[bool]:
        async with running_gateway(settings, database) as gateway:
            terminal = Terminal("jt808", device_id, "127.0.0.1", gateway.ports["jt808"]["tcp"])
            await terminal.connect()
            await terminal.handshake()
            acks = [await terminal.send(terminal.codec.position(m)) for m in messages]
            await terminal.close()
            return acks

    assert run(scenario()) == [True] * 4
    flags = [row.flags for row in stored_fixes(database, device_id)]
    assert flags == [0, Flag.JUMP, 0, Flag.FUTURE]  # ordered by fix time


def test_hex_logging_switched_on_and_off_through_the_api(
    sqlite_database: Database, sqlite_url: str, tmp_path: Path
) -> None:
    database = sqlite_database
    device_id = phone(560)
    register(database, "jt808", [device_id])
    settings = settings_for(sqlite_url, tmp_path)

    async def scenario() -> tuple[list[dict[str, str]], int]:
        async with running_gateway(settings, database) as gateway:
            app = create_app(settings, database)
            app.state.services["gateway"] = gateway
            with TestClient(app, raise_server_exceptions=False) as client:
                support = bearer(database, "technician")
                assert (
                    client.put(
                        f"/api/v1/gateway/hexlog/{device_id}",
                        json={"on": True, "minutes": 5},
                        headers=support,
                    ).status_code
                    == 200
                )
                terminal = Terminal("jt808", device_id, "127.0.0.1", gateway.ports["jt808"]["tcp"])
                await terminal.connect()
                await terminal.handshake()
                await terminal.send(terminal.codec.position(fix(0)))
                frames = client.get(f"/api/v1/gateway/hexlog/{device_id}/frames", headers=support).json()[
                    "frames"
                ]
                assert (
                    client.put(
                        f"/api/v1/gateway/hexlog/{device_id}", json={"on": False}, headers=support
                    ).status_code
                    == 200
                )
                await terminal.send(terminal.codec.position(fix(1)))
                after = client.get(f"/api/v1/gateway/hexlog/{device_id}/frames", headers=support).json()[
                    "frames"
                ]
                assert (
                    client.get("/api/v1/gateway/hexlog", headers=bearer(database, "finance")).status_code
                    == 403
                )
                status = client.get("/api/v1/gateway/status", headers=support).json()
                assert status["running_here"] and status["ports"]["jt808"]["tcp"] == terminal.port
                assert status["connections_by_protocol"] == {"jt808/tcp": 1}
                assert status["writer"]["database_ok"] and status["unknown_terminal"] == "quarantine"
                metrics = client.get("/metrics", headers=support).text
                assert 'gpsfleet_gateway_frames_in_total{protocol="jt808",transport="tcp"}' in metrics
                await terminal.close()
                return frames, len(after)

    frames, after = run(scenario())
    assert [f["direction"] for f in frames] == ["in", "out", "in", "out", "in", "out"]  # register, auth, fix
    assert all(bytes.fromhex(f["hex"])[:1] == b"\x7e" for f in frames)
    assert after == len(frames)  # off: nothing more recorded


def _quarantine(database: Database) -> list:  # type: ignore[type-arg]
    with database.engine.connect() as conn:
        return list(conn.execute(select(gateway_quarantine)).all())


def _customer(database: Database) -> int:
    from tests.api.support import add_customer

    return add_customer(database, "Fleet customer")


def test_idle_connections_are_closed_and_connection_caps_hold(
    sqlite_database: Database, sqlite_url: str, tmp_path: Path
) -> None:
    database = sqlite_database
    settings = settings_for(sqlite_url, tmp_path, max_connections_per_address=2)
    settings.gateway.protocols["jt808"].idle_timeout_s = 0.5
    before = _metric("gpsfleet_gateway_connections_refused_total", reason="max_per_address")

    async def scenario() -> tuple[bool, bool, bool]:
        async with running_gateway(settings, database) as gateway:
            port = gateway.ports["jt808"]["tcp"]
            first, second, third = (Terminal("jt808", phone(570 + i), "127.0.0.1", port) for i in range(3))
            for terminal in (first, second, third):
                await terminal.connect()
            third_refused = await third.closed_by_server(timeout=5)
            idle_closed = await first.closed_by_server(timeout=10)  # silent for longer than 0.5 s
            await second.close()
            gt06 = Terminal("gt06", imei(570), "127.0.0.1", gateway.ports["gt06"]["tcp"])
            await gt06.connect()
            other_protocol_open = not await gt06.closed_by_server(timeout=1.5)  # its timeout is 600 s
            await gt06.close()
            return third_refused, idle_closed, other_protocol_open

    assert run(scenario()) == (True, True, True)
    assert _metric("gpsfleet_gateway_connections_refused_total", reason="max_per_address") - before == 1


def test_a_taken_port_is_a_clear_error(sqlite_database: Database, sqlite_url: str, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings = settings_for(sqlite_url, tmp_path)
        settings.gateway.protocols["jt808"].port = taken.getsockname()[1]

        async def scenario() -> None:
            gateway = Gateway(settings, sqlite_database, DirectoryResolver(sqlite_database))
            await gateway.start()

        with pytest.raises(OSError, match=r"jt808: cannot listen on TCP 127\.0\.0\.1:\d+"):
            run(scenario())
