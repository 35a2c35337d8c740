"""End to end through real TCP sockets: JT/T 808 terminals (built with the protocol's own
DeviceCodec) talk to the gateway, whose after-commit hooks feed the alert engine."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from alerts.engine import AlertEngine
from core.messages import Message, MessageType
from core.settings import Settings
from fleet import service
from fleet.directory import TerminalDirectory
from fleet.validation import iccid_for
from gateway.protocols.base import Outgoing, parse_tz
from gateway.protocols.jt808 import SPEC as JT808
from gateway.protocols.jt808 import Jt808Device
from gateway.server import Gateway
from store.db import Database
from store.tables.alerts import alerts, tickets
from tests.alerts.support import open_db

pytestmark = pytest.mark.slow

PHONES = {"in": "013800000001", "out": "013800000002", "healthy": "013800000003"}


def _registry(database: Database) -> None:
    now = datetime.now(UTC)
    with database.engine.begin() as conn:
        service.create_terminal_model(conn, name="JT701", protocol="jt808", warranty_months=12)
        customer = service.create_customer(
            conn, name="Harbour Freight", contact_name="Chen Jie", phone="+86 21 5555 0199"
        )
        for number, (key, days) in enumerate((("in", 30), ("out", 800), ("healthy", 5)), start=1):
            plate = f"HF{number:04d}"
            service.create_vehicle(conn, plate=plate, customer_id=customer["id"])
            service.create_terminal(conn, device_id=PHONES[key], model="JT701")
            service.create_sim(conn, iccid=iccid_for(100 + number))
            service.install(
                conn,
                device_id=PHONES[key],
                plate=plate,
                iccid=iccid_for(100 + number),
                at=now - timedelta(days=days),
            )


class Terminal:
    """One simulated JT/T 808 terminal on a real TCP connection."""

    def __init__(self, phone: str, port: int) -> None:
        self.codec = Jt808Device(phone, tz=parse_tz(JT808.default_tz))  # the zone the gateway expects
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        await self.send(self.codec.handshake(), until=lambda event: event.handshake_done)

    async def send(self, out: Outgoing, until: Callable[[Any], bool] | None = None) -> None:
        assert self.reader is not None and self.writer is not None
        self.writer.write(out.data)
        await self.writer.drain()
        done = until or (lambda event: out.seq in event.acked)
        while True:
            event = self.codec.on_reply(await asyncio.wait_for(self.reader.read(4096), 10))
            for follow_up in event.send:
                self.writer.write(follow_up.data)
            if done(event):
                return

    async def report(
        self, alarms: list[str] | None = None, at: datetime | None = None, **attributes: Any
    ) -> Outgoing:
        message = Message(
            MessageType.POSITION,
            self.codec.terminal_id,
            (at or datetime.now(UTC)).replace(microsecond=0),
            valid=True,
            lat=31.2304,
            lon=121.4737 + time.monotonic() % 1 / 1000,
            speed_kmh=42.0,
            course=90.0,
            satellites=9,
            alarms=alarms or [],
            attributes=attributes,
        )
        out = self.codec.position(message)
        await self.send(out)
        return out

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


@dataclass
class Stack:
    database: Database
    engine: AlertEngine
    gateway: Gateway

    @property
    def port(self) -> int:
        return self.gateway.ports["jt808"]["tcp"]

    def tickets(self) -> list[dict[str, Any]]:
        with self.database.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(tickets).order_by(tickets.c.id)).mappings()]

    def alerts(self) -> list[dict[str, Any]]:
        with self.database.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(alerts).order_by(alerts.c.id)).mappings()]

    async def until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            await asyncio.sleep(0.1)
        return predicate()


def _others_off() -> dict[str, dict[str, Any]]:
    return {name: {"enabled": False} for name in Settings().gateway.protocols if name != "jt808"}


@asynccontextmanager
async def stack(db_url: str, tmp_path: Path, offline_minutes: float) -> AsyncIterator[Stack]:
    database = open_db(db_url)
    _registry(database)
    settings = Settings(
        db=db_url,
        data_dir=tmp_path,
        gateway={"host": "127.0.0.1", "protocols": {**_others_off(), "jt808": {"port": 0}}},
        alerts={
            "evaluate_every_s": 0.2,
            "rules": {"offline": {"threshold": offline_minutes}, "gnss_antenna_cut": {"clear_s": 0}},
        },
    )
    engine = AlertEngine(settings, database)
    gateway = Gateway(settings, database, TerminalDirectory(database), engine)
    await engine.start()
    await gateway.start()
    try:
        yield Stack(database, engine, gateway)
    finally:
        await gateway.stop()
        await engine.stop()
        database.dispose()


def test_antenna_cut_in_and_out_of_warranty_retransmission_clear_and_healthy(
    db_url: str, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with stack(db_url, tmp_path, offline_minutes=10) as s:
            inside, outside, healthy = (Terminal(PHONES[k], s.port) for k in ("in", "out", "healthy"))
            for terminal in (inside, outside, healthy):
                await terminal.connect()
            await healthy.report(power_v=12.7, gsm_signal=80)
            await healthy.report(["overspeed"], power_v=12.7, gsm_signal=80)
            cut = await inside.report(["gnss_antenna_cut"])
            await outside.report(["gnss_antenna_cut"])
            assert await s.until(lambda: len(s.tickets()) == 2, 10)
            inside.writer.write(cut.data)  # the same frame again: the terminal missed our ack
            await inside.send(cut)
            await inside.report(["gnss_antenna_cut"])  # still cut, a new report
            await healthy.report(power_v=12.7, gsm_signal=80)
            await asyncio.sleep(1.0)  # let the engine see all of it
            rows = {t["terminal_id"]: t for t in s.tickets()}
            assert set(rows) == {PHONES["in"], PHONES["out"]}
            assert rows[PHONES["in"]]["in_warranty"] is True and rows[PHONES["out"]]["in_warranty"] is False
            assert (
                rows[PHONES["in"]]["customer_name"] == "Harbour Freight"
                and rows[PHONES["in"]]["vehicle_plate"] == "HF0001"
            )
            assert rows[PHONES["in"]]["sim_iccid"] == iccid_for(101)
            frames = rows[PHONES["in"]]["evidence"]["last_frames"]
            assert frames and frames[0]["raw_hex"] and "gnss_antenna_cut" in frames[0]["alarms"]
            assert [a["fault"] for a in s.alerts()] == ["gnss_antenna_cut", "gnss_antenna_cut"]

            await inside.report()  # the antenna is back
            assert await s.until(
                lambda: any(t["verification"] == "cleared_to_verify" for t in s.tickets()), 10
            )
            cleared = next(t for t in s.tickets() if t["terminal_id"] == PHONES["in"])
            assert cleared["state"] == "open" and cleared["fault_cleared_at"] is not None
            for terminal in (inside, outside, healthy):
                await terminal.close()

    asyncio.run(scenario())


def test_a_silent_terminal_is_offline_with_a_ticket_within_the_timeout_plus_5s(
    db_url: str, tmp_path: Path
) -> None:
    timeout_s = 3.0

    async def scenario() -> None:
        async with stack(db_url, tmp_path, offline_minutes=timeout_s / 60) as s:
            terminal = Terminal(PHONES["in"], s.port)
            await terminal.connect()
            await terminal.report()
            last_report = time.monotonic()
            await terminal.close()  # and says nothing more
            found = await s.until(lambda: any(t["fault"] == "offline" for t in s.tickets()), timeout_s + 5)
            waited = time.monotonic() - last_report
            assert found, f"no offline ticket {waited:.1f}s after the last report"
            [ticket] = s.tickets()
            assert ticket["terminal_id"] == PHONES["in"] and ticket["priority"] == "high"
            assert ticket["in_warranty"] is True

    asyncio.run(scenario())
