"""TCP adapter: asyncio ``Protocol`` callbacks (cheaper per frame than streams) with a global
and a per-address connection cap."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from gateway import metrics
from gateway.transports import Receiver

log = logging.getLogger(__name__)


class ConnectionLimits:
    """Counts open connections, in all and per remote address, against their caps."""

    def __init__(self, max_total: int, max_per_address: int) -> None:
        self.max_total = max_total
        self.max_per_address = max_per_address
        self.total = 0
        self.per_address: dict[str, int] = {}

    def admit(self, address: str) -> str | None:
        """Take a slot, or say why not ("max_connections", "max_per_address")."""
        if self.total >= self.max_total:
            return "max_connections"
        if self.per_address.get(address, 0) >= self.max_per_address:
            return "max_per_address"
        self.total += 1
        self.per_address[address] = self.per_address.get(address, 0) + 1
        return None

    def release(self, address: str) -> None:
        self.total -= 1
        left = self.per_address.get(address, 1) - 1
        if left:
            self.per_address[address] = left
        else:
            self.per_address.pop(address, None)


ReceiverFactory = Callable[["TcpLink", str], Receiver]


class TcpLink(asyncio.Protocol):
    """One accepted connection; the session talks to it as its ``Link``."""

    __slots__ = ("_factory", "_limits", "transport", "receiver", "address", "remote", "_pauses", "_admitted")

    def __init__(self, factory: ReceiverFactory, limits: ConnectionLimits) -> None:
        self._factory = factory
        self._limits = limits
        self.transport: asyncio.Transport | None = None
        self.receiver: Receiver | None = None
        self.address = ""
        self.remote = ""
        self._pauses = 0
        self._admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.address = str(peer[0])
        self.remote = f"{peer[0]}:{peer[1]}"
        refused = self._limits.admit(self.address)
        if refused is not None:
            metrics.CONNECTIONS_REFUSED.labels(refused).inc()
            log.warning("connection from %s refused: %s reached", self.remote, refused)
            transport.abort()  # type: ignore[attr-defined]
            return
        self._admitted = True
        self.receiver = self._factory(self, self.remote)

    def data_received(self, data: bytes) -> None:
        if self.receiver is not None:
            self.receiver.feed(data)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self._admitted:
            self._admitted = False
            self._limits.release(self.address)
        if self.receiver is not None:
            receiver, self.receiver = self.receiver, None
            receiver.close()

    # Link
    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def acknowledge(self, token: Any) -> None:
        return None

    def close(self) -> None:
        self.receiver = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def pause(self) -> None:
        self._pauses += 1
        if self._pauses == 1 and self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._pauses == 0:
            return
        self._pauses -= 1
        if self._pauses == 0 and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()


async def listen_tcp(
    host: str, port: int, factory: ReceiverFactory, limits: ConnectionLimits, *, backlog: int = 4096
) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: TcpLink(factory, limits), host, port, backlog=backlog, reuse_address=True
    )
