"""Helpers for the gateway tests: registry seeding, settings, a running gateway and terminals
that speak through the protocols' own ``DeviceCodec`` classes over real sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from core.messages import Message, MessageType
from core.settings import ProtocolSettings, Settings
from gateway.protocols import PROTOCOLS
from gateway.protocols.base import DeviceCodec, Outgoing
from gateway.server import Gateway
from store.db import Database
from store.tables.positions import positions


def imei(number: int) -> str:
    """A 15-digit IMEI with a valid Luhn check digit."""
    body = f"35630704{number:06d}"
    total = 0
    for index, char in enumerate(reversed(body)):
        digit = int(char) * (2 if index % 2 == 0 else 1)
        total += digit - 9 if digit > 9 else digit
    return body + str((10 - total % 10) % 10)


def phone(number: int) -> str:
    """A JT/T 808 terminal phone number (12 digits)."""
    return f"0139{number:08d}"


def register(database: Database, protocol: str, device_ids: list[str], *, enabled: bool = True) -> None:
    """Put terminals of one protocol in the registry through fleet.service."""
    from fleet import service
    from fleet.errors import NotFound

    model = f"test-{protocol}"
    with database.engine.begin() as conn:
        try:
            service.terminal_model_by_name(conn, model)
        except NotFound:
            service.create_terminal_model(conn, name=model, protocol=protocol)
        for device_id in device_ids:
            service.create_terminal(conn, device_id=device_id, model=model, enabled=enabled)


def settings_for(db_url: str, data_dir: Path, **gateway: Any) -> Settings:
    """Every protocol on a free port (TCP and, where it has one, UDP)."""
    protocols = {
        name: ProtocolSettings(port=0, udp_port=0 if "udp" in spec.transports else None, tz=spec.default_tz)
        for name, spec in PROTOCOLS.items()
    }
    return Settings(
        db=db_url, data_dir=data_dir, gateway={"host": "127.0.0.1", "protocols": protocols, **gateway}
    )


class DirectoryResolver:
    """The registry, as the runtime wires it."""

    def __init__(self, database: Database) -> None:
        from fleet.directory import TerminalDirectory

        self.directory = TerminalDirectory(database)

    def resolve(self, device_id: str) -> Any:
        return self.directory.resolve(device_id)


@asynccontextmanager
async def running_gateway(
    settings: Settings, database: Database, hooks: Any = None
) -> AsyncIterator[Gateway]:
    gateway = Gateway(settings, database, DirectoryResolver(database), hooks)
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()


def fix(
    index: int, *, start: datetime | None = None, lat: float = 31.2, lon: float = 121.4, **kw: Any
) -> Message:
    """The ``index``-th fix of a slow drive, one second apart (whole seconds: every codec keeps them)."""
    start = start or datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    return Message(
        MessageType.POSITION,
        time=start + timedelta(seconds=index),
        valid=True,
        lat=round(lat + index * 0.0001, 6),
        lon=round(lon + index * 0.0001, 6),
        speed_kmh=40.0,
        course=90.0,
        satellites=9,
        **kw,
    )


class Terminal:
    """A terminal on a real TCP connection, driven by its protocol's DeviceCodec."""

    def __init__(self, protocol: str, device_id: str, host: str, port: int) -> None:
        device = PROTOCOLS[protocol].device
        assert device is not None, f"{protocol} has no DeviceCodec"
        self.codec: DeviceCodec = device(device_id)
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.acked: set[int] = set()
        self.rejected = False
        self.handshake_done = False
        self.received = b""

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def handshake(self, timeout: float = 10.0) -> None:
        first = self.codec.handshake()
        if first is None:
            self.handshake_done = True
            return
        self._write(first)
        await self._read_until(lambda: self.handshake_done or self.rejected, timeout)

    async def send(self, out: Outgoing, timeout: float = 10.0) -> bool:
        """Send a frame; True once the server acknowledged it (or at once when it needs none)."""
        self._write(out)
        if not out.needs_ack or out.seq is None:
            return True
        seq = out.seq
        try:
            await self._read_until(lambda: seq in self.acked, timeout)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            return False
        return True

    def _write(self, out: Outgoing) -> None:
        assert self.writer is not None
        self.writer.write(out.data)

    async def _read_until(self, done: Any, timeout: float) -> None:
        assert self.reader is not None
        async with asyncio.timeout(timeout):
            while not done():
                data = await self.reader.read(4096)
                if not data:
                    raise ConnectionError("server closed the connection")
                self.received += data
                event = self.codec.on_reply(data)
                self.acked.update(event.acked)
                self.rejected = self.rejected or event.rejected
                self.handshake_done = self.handshake_done or event.handshake_done
                for follow in event.send:
                    self._write(follow)

    async def closed_by_server(self, timeout: float = 10.0) -> bool:
        assert self.reader is not None
        try:
            async with asyncio.timeout(timeout):
                while await self.reader.read(4096):
                    pass
        except TimeoutError:
            return False
        except ConnectionError:
            return True
        return True

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except ConnectionError:
                pass


def stored_fixes(database: Database, device_id: str | None = None) -> list[Any]:
    with database.engine.connect() as conn:
        query = select(positions).order_by(positions.c.terminal_id, positions.c.fix_time)
        if device_id is not None:
            query = query.where(positions.c.terminal_id == device_id)
        return list(conn.execute(query).all())


def count_fixes(database: Database) -> int:
    with database.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(positions)).scalar_one())


async def eventually(check: Any, timeout: float = 10.0, every: float = 0.05) -> Any:
    """Poll ``check()`` until it returns something true (waiting on the system, not timing it)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {check} (last value {value!r})")
        await asyncio.sleep(every)


def run(coro: Any) -> Any:
    """Run a test coroutine on uvloop, as the service does."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


async def stop_and_wait(
    protocol: str,
    device_id: str,
    host: str,
    port: int,
    stop: asyncio.Event,
    acked: list[datetime],
    *,
    start: datetime,
    retransmit_after: float = 2.0,
    pace: float = 0.01,
) -> int:
    """A terminal that sends one fix, waits for its acknowledgement (retransmitting the same
    frame, reconnecting when the connection breaks) and goes on until ``stop`` is set.
    Appends the fix time of every acknowledged fix to ``acked``; returns fixes sent."""
    sent = 0
    terminal: Terminal | None = None
    index = 0
    pending: tuple[Outgoing, datetime] | None = None
    while not stop.is_set() or pending is not None:
        if terminal is None:
            try:
                terminal = Terminal(protocol, device_id, host, port)
                await terminal.connect()
                await terminal.handshake()
            except (OSError, TimeoutError, ConnectionError):
                terminal = None
                await asyncio.sleep(0.2)
                if stop.is_set() and pending is not None and index > 10_000:
                    break
                continue
        if pending is None:
            message = fix(index, start=start)
            assert message.time is not None
            pending = (terminal.codec.position(message), message.time)
            index += 1
            sent += 1
        out, fix_time = pending
        try:
            ok = await terminal.send(out, timeout=retransmit_after)
        except (OSError, ConnectionError):
            ok = False
        if ok:
            acked.append(fix_time)
            pending = None
            if pace:
                await asyncio.sleep(pace)
        elif (
            terminal.writer is None
            or terminal.writer.is_closing()
            or terminal.reader is None
            or terminal.reader.at_eof()
        ):
            await terminal.close()
            terminal = None
    if terminal is not None:
        await terminal.close()
    return sent
