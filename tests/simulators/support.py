"""A minimal acknowledging server for simulator tests: the protocol's own framer and decoder,
answering each frame with the decoder's reply (optionally dropping the first few), and
recording what it decoded."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime

from core.messages import Message
from gateway.protocols.base import DecodeContext, ProtocolError, ProtocolSpec, parse_tz


@dataclass
class Received:
    frames: int = 0
    errors: list[str] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    replies_dropped: int = 0
    connections: int = 0
    garbage_bytes: int = 0
    terminal_ids: set[str] = field(default_factory=set)


class AckingServer:
    """TCP (and UDP) server for one protocol; ``drop_replies`` first replies are not sent."""

    def __init__(self, spec: ProtocolSpec, *, drop_replies: int = 0) -> None:
        self.spec = spec
        self.drop_replies = drop_replies
        self.received = Received()
        self.port = 0
        self.udp_port = 0
        self._server: asyncio.AbstractServer | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self, *, udp: bool = False) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        if udp:
            loop = asyncio.get_running_loop()
            server = self

            class _Udp(asyncio.DatagramProtocol):
                def connection_made(self, transport: asyncio.BaseTransport) -> None:
                    self.transport = transport

                def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                    context = server._context("udp")
                    splitter = server.spec.split_datagram or server.spec.split
                    for frame in splitter(data).frames:
                        reply = server._decode(frame, context)
                        if reply:
                            self.transport.sendto(reply, addr)  # type: ignore[attr-defined]

            transport, _ = await loop.create_datagram_endpoint(_Udp, local_addr=("127.0.0.1", 0))
            self._udp = transport
            self.udp_port = transport.get_extra_info("sockname")[1]

    def _context(self, transport: str) -> DecodeContext:
        return DecodeContext(
            tz=parse_tz(self.spec.default_tz), transport=transport, received_at=datetime.now(UTC)
        )

    def _decode(self, frame: bytes, context: DecodeContext) -> bytes | None:
        self.received.frames += 1
        context.received_at = datetime.now(UTC)
        try:
            decoded = self.spec.decode(frame, context)
        except ProtocolError as exc:
            self.received.errors.append(exc.kind)
            return None
        if decoded.terminal_id:
            context.terminal_id = decoded.terminal_id
            self.received.terminal_ids.add(decoded.terminal_id)
        self.received.messages.extend(decoded.messages)
        if decoded.reply and self.drop_replies > 0:
            self.drop_replies -= 1
            self.received.replies_dropped += 1
            return None
        return decoded.reply

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.received.connections += 1
        self._writers.append(writer)
        framer = self.spec.framer()
        context = self._context("tcp")
        try:
            while data := await reader.read(65536):
                for frame in framer.feed(data):
                    reply = self._decode(frame, context)
                    if reply:
                        writer.write(reply)
        except ConnectionError:
            pass
        finally:
            self.received.garbage_bytes += framer.garbage_bytes
            writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in self._writers:
                writer.close()
            await self._server.wait_closed()
        if self._udp is not None:
            self._udp.close()


PROTOCOL_NAMES = ("nmea", "jt808", "gt06", "teltonika", "h02", "gps103")


def scenario_text(
    protocol: str,
    *,
    transport: str = "tcp",
    count: int = 2,
    interval_s: float = 1.0,
    ack_timeout_s: float = 0.6,
    heartbeat_s: float = 30.0,
    extra: str = "",
) -> str:
    """A small scenario for one protocol with test-fast timing."""
    return f"""
[scenario]
name = "test {protocol} over {transport}"
seed = 99
ramp_s = 0.2

[timing]
interval_s = {interval_s}
heartbeat_s = {heartbeat_s}
ack_timeout_s = {ack_timeout_s}
handshake_timeout_s = {ack_timeout_s}
max_retries = 4
backoff_min_s = 0.2
backoff_max_s = 0.5

[[routes]]
name = "town"
center = [31.2304, 121.4737]

[[fleet]]
name = "{protocol}"
protocol = "{protocol}"
transport = "{transport}"
count = {count}
route = "town"
{extra}
"""
