"""UDP adapter: one endpoint per protocol, one receiver per sender address, replies to the sender."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from gateway import metrics
from gateway.transports import Receiver

log = logging.getLogger(__name__)


class UdpPeer:
    """The ``Link`` for one sender address."""

    __slots__ = ("endpoint", "addr", "remote", "receiver")

    def __init__(self, endpoint: UdpEndpoint, addr: tuple[Any, ...]) -> None:
        self.endpoint = endpoint
        self.addr = addr
        self.remote = f"{addr[0]}:{addr[1]}"
        self.receiver: Receiver | None = None

    def send(self, data: bytes) -> None:
        if self.endpoint.transport is not None:
            self.endpoint.transport.sendto(data, self.addr)

    def acknowledge(self, token: Any) -> None:
        return None

    def close(self) -> None:
        self.endpoint.peers.pop(self.addr, None)
        receiver, self.receiver = self.receiver, None
        if receiver is not None:
            receiver.close()

    def pause(self) -> None:
        return None  # datagrams cannot wait; a paused endpoint drops them (counted)

    def resume(self) -> None:
        return None


ReceiverFactory = Callable[[UdpPeer, str], Receiver]


class UdpEndpoint(asyncio.DatagramProtocol):
    def __init__(self, factory: ReceiverFactory, protocol: str, max_peers: int) -> None:
        self.factory = factory
        self.protocol = protocol
        self.max_peers = max_peers
        self.peers: dict[tuple[Any, ...], UdpPeer] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if self.paused:
            # Not acknowledged, so the terminal sends it again; counted, never silent.
            metrics.CONNECTIONS_REFUSED.labels("udp_backpressure").inc()
            return
        peer = self.peers.get(addr)
        if peer is None:
            if len(self.peers) >= self.max_peers:
                metrics.CONNECTIONS_REFUSED.labels("max_connections").inc()
                return
            peer = UdpPeer(self, addr)
            self.peers[addr] = peer
            peer.receiver = self.factory(peer, peer.remote)
        if peer.receiver is not None:
            peer.receiver.feed(data)

    def error_received(self, exc: Exception) -> None:
        log.debug("udp %s: %s", self.protocol, exc)

    def close(self) -> None:
        for peer in list(self.peers.values()):
            peer.close()
        if self.transport is not None:
            self.transport.close()


async def listen_udp(
    host: str, port: int, factory: ReceiverFactory, protocol: str, max_peers: int
) -> UdpEndpoint:
    loop = asyncio.get_running_loop()
    _, endpoint = await loop.create_datagram_endpoint(
        lambda: UdpEndpoint(factory, protocol, max_peers), local_addr=(host, port)
    )
    return endpoint
