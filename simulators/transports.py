"""How a virtual terminal's bytes reach the gateway: TCP, UDP, a serial line, MQTT.

A ``Link`` moves bytes and knows no protocol: ``open()``, ``write()``, ``close()``, and two
callbacks, ``on_data`` for what the server sends back and ``on_lost`` when the link drops.
Targets are URLs: ``tcp://host:port``, ``udp://host:port``, ``mqtt://host:port``,
``serial:///dev/pts/N`` (an existing device) or ``serial://pty`` (a fresh pseudo-terminal
pair: the simulator writes to the master, the gateway opens the slave path).  One paho
client (``MqttHub``) carries all MQTT terminals of a run, as an edge bridge would.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import termios
import threading
import tty
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

TRANSPORTS = ("tcp", "udp", "serial", "mqtt")
WRITE_BUFFER_MAX = 256 * 1024  # bytes a link may hold unsent before it refuses more


class LinkError(OSError):
    """The link could not be opened or has failed."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where a terminal sends: a transport and its address."""

    transport: str
    host: str = "127.0.0.1"
    port: int = 0
    path: str = ""  # serial device path, or "pty"

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in TRANSPORTS:
            raise ValueError(f"target {url!r}: transport must be one of {', '.join(TRANSPORTS)}")
        if scheme == "serial":
            path = parts.netloc + parts.path if parts.netloc == "pty" else parts.path
            if not path:
                raise ValueError(f"target {url!r}: give serial:///dev/pts/N or serial://pty")
            return cls("serial", path=path)
        if not parts.hostname:
            raise ValueError(f"target {url!r} has no host")
        try:
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"target {url!r}: {exc}") from None
        if port is None:
            if scheme != "mqtt":
                raise ValueError(f"target {url!r} has no port")
            port = 1883
        return cls(scheme, parts.hostname, port)

    @property
    def url(self) -> str:
        if self.transport == "serial":
            return "serial://pty" if self.path == "pty" else f"serial://{self.path}"
        return f"{self.transport}://{self.host}:{self.port}"


class Link(ABC):
    """One terminal's connection.  Callbacks run on the event loop."""

    kind = ""

    def __init__(self) -> None:
        self.on_data: Callable[[bytes], None] = lambda data: None
        self.on_lost: Callable[[BaseException | None], None] = lambda exc: None
        self.is_open = False

    @abstractmethod
    async def open(self) -> None:
        """Connect; raises ``OSError`` (or ``TimeoutError``) when the target does not answer."""

    @abstractmethod
    def write(self, data: bytes) -> None:
        """Queue bytes (one datagram / one MQTT message per call on message transports)."""

    @abstractmethod
    def close(self) -> None:
        """Drop the link at once (no goodbye); ``on_lost`` is not called."""

    def _lost(self, exc: BaseException | None) -> None:
        if self.is_open:
            self.is_open = False
            self.on_lost(exc)


# --------------------------------------------------------------------------- TCP


class _TcpProtocol(asyncio.Protocol):
    def __init__(self, link: TcpLink) -> None:
        self.link = link

    def data_received(self, data: bytes) -> None:
        self.link.on_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.link._lost(exc or ConnectionResetError("closed by the server"))


class TcpLink(Link):
    kind = "tcp"

    def __init__(self, host: str, port: int, *, local_host: str | None = None, timeout_s: float = 10.0):
        super().__init__()
        self.host, self.port, self.local_host, self.timeout_s = host, port, local_host, timeout_s
        self._transport: asyncio.Transport | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        local = (self.local_host, 0) if self.local_host else None
        transport, _ = await asyncio.wait_for(
            loop.create_connection(lambda: _TcpProtocol(self), self.host, self.port, local_addr=local),
            self.timeout_s,
        )
        self._transport = transport  # type: ignore[assignment]
        self.is_open = True

    def write(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            raise LinkError(errno.ENOTCONN, "not connected")
        if transport.get_write_buffer_size() > WRITE_BUFFER_MAX:
            raise LinkError(errno.ENOBUFS, "send buffer full: the server does not read")
        transport.write(data)

    def close(self) -> None:
        self.is_open = False
        if self._transport is not None:
            self._transport.abort()
            self._transport = None


# --------------------------------------------------------------------------- UDP


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, link: UdpLink) -> None:
        self.link = link

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.link.on_data(data)

    def error_received(self, exc: Exception) -> None:
        log.debug("udp %s:%s: %s", self.link.host, self.link.port, exc)  # ICMP unreachable: no reply comes


class UdpLink(Link):
    """A connected UDP socket: each write is one datagram, replies come from the server."""

    kind = "udp"

    def __init__(self, host: str, port: int, *, local_host: str | None = None) -> None:
        super().__init__()
        self.host, self.port, self.local_host = host, port, local_host
        self._transport: asyncio.DatagramTransport | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        local = (self.local_host, 0) if self.local_host else None
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), remote_addr=(self.host, self.port), local_addr=local
        )
        self._transport = transport
        self.is_open = True

    def write(self, data: bytes) -> None:
        if self._transport is None:
            raise LinkError(errno.ENOTCONN, "not open")
        self._transport.sendto(data)

    def close(self) -> None:
        self.is_open = False
        if self._transport is not None:
            self._transport.close()
            self._transport = None


# --------------------------------------------------------------------------- serial


class PtyPair:
    """A pseudo-terminal pair in raw mode.  The simulator keeps the master; the gateway
    opens ``slave_path``.  The simulator also holds the slave open, so bytes written before
    the gateway opens it wait in the pty instead of failing."""

    def __init__(self) -> None:
        self.master_fd, self._slave_fd = os.openpty()
        tty.setraw(self._slave_fd, termios.TCSANOW)
        tty.setraw(self.master_fd, termios.TCSANOW)
        os.set_blocking(self.master_fd, False)
        self.slave_path = os.ttyname(self._slave_fd)

    def close(self) -> None:
        for fd in (self.master_fd, self._slave_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.master_fd = self._slave_fd = -1


class SerialLink(Link):
    """Bytes over a serial line: the master side of a ``PtyPair``, or a device path."""

    kind = "serial"

    def __init__(self, *, pty: PtyPair | None = None, path: str | None = None) -> None:
        super().__init__()
        if (pty is None) == (path is None):
            raise ValueError("SerialLink needs a pty pair or a device path")
        self.pty, self.path = pty, path
        self._fd = -1
        self._pending = bytearray()

    async def open(self) -> None:
        if self.pty is not None:
            self._fd = self.pty.master_fd
        else:
            assert self.path is not None
            self._fd = os.open(self.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            if os.isatty(self._fd):
                tty.setraw(self._fd, termios.TCSANOW)
        loop = asyncio.get_running_loop()
        loop.add_reader(self._fd, self._readable)
        self.is_open = True

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        except OSError as exc:
            self._detach()
            self._lost(exc)
            return
        if data:
            self.on_data(data)

    def _writable(self) -> None:
        try:
            sent = os.write(self._fd, self._pending)
        except BlockingIOError:
            return
        except OSError as exc:
            self._detach()
            self._lost(exc)
            return
        del self._pending[:sent]
        if not self._pending:
            asyncio.get_running_loop().remove_writer(self._fd)

    def write(self, data: bytes) -> None:
        if self._fd < 0:
            raise LinkError(errno.ENOTCONN, "serial line not open")
        if len(self._pending) + len(data) > WRITE_BUFFER_MAX:
            raise LinkError(errno.ENOBUFS, "serial line full: nobody reads the other end")
        if not self._pending:
            try:
                sent = os.write(self._fd, data)
            except BlockingIOError:
                sent = 0
            data = data[sent:]
        if data:
            first = not self._pending
            self._pending += data
            if first:
                asyncio.get_running_loop().add_writer(self._fd, self._writable)

    def _detach(self) -> None:
        if self._fd >= 0:
            loop = asyncio.get_running_loop()
            loop.remove_reader(self._fd)
            loop.remove_writer(self._fd)
            if self.pty is None:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
            self._fd = -1
        self._pending.clear()

    def close(self) -> None:
        self.is_open = False
        self._detach()


# --------------------------------------------------------------------------- MQTT


class MqttHub:
    """One paho-mqtt client shared by every MQTT terminal of a run (an edge bridge).

    Frames are published QoS 1 to ``<prefix>/<protocol>/<terminal_id>/up``; replies are
    read from ``.../down`` (one wildcard subscription per protocol) and handed to the
    terminal's link on the event loop.  paho runs its network loop in its own thread.
    """

    def __init__(self, url: str, *, topic_prefix: str = "gpsfleet", client_id: str | None = None) -> None:
        target = Target.parse(url)
        if target.transport != "mqtt":
            raise ValueError(f"{url!r} is not an mqtt:// URL")
        self.host, self.port, self.prefix = target.host, target.port, topic_prefix
        self.client_id = client_id or f"gpsfleet-sim-{os.getpid()}"
        self._links: dict[tuple[str, str], MqttLink] = {}
        self._protocols: set[str] = set()
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._start_lock: asyncio.Lock | None = None
        self.published = 0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self, timeout_s: float = 10.0) -> None:
        """Connect once (later callers wait for the same connection); raises ``LinkError``."""
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._client is None:
                await self._connect()
        if not self._connected.is_set():
            deadline = asyncio.get_running_loop().time() + timeout_s
            while not self._connected.is_set() and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
        if not self._connected.is_set():
            raise LinkError(errno.ETIMEDOUT, f"MQTT broker {self.host}:{self.port} does not answer")

    async def _connect(self) -> None:
        import paho.mqtt.client as mqtt

        self._loop = asyncio.get_running_loop()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=True)
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(100_000)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.reconnect_delay_set(1, 30)
        try:
            await self._loop.run_in_executor(None, client.connect, self.host, self.port, 30)
        except OSError as exc:
            raise LinkError(errno.ECONNREFUSED, f"MQTT broker {self.host}:{self.port}: {exc}") from exc
        self._client = client
        client.loop_start()

    def stop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
        self._connected.clear()

    def topic(self, protocol: str, terminal_id: str, direction: str) -> str:
        return f"{self.prefix}/{protocol}/{terminal_id}/{direction}"

    def attach(self, link: MqttLink) -> None:
        with self._lock:
            self._links[(link.protocol, link.terminal_id)] = link
            new = link.protocol not in self._protocols
            self._protocols.add(link.protocol)
        if new and self._client is not None:
            self._client.subscribe(f"{self.prefix}/{link.protocol}/+/down", qos=1)

    def detach(self, link: MqttLink) -> None:
        with self._lock:
            if self._links.get((link.protocol, link.terminal_id)) is link:
                del self._links[(link.protocol, link.terminal_id)]

    def publish(self, link: MqttLink, data: bytes) -> None:
        if self._client is None or not self._connected.is_set():
            raise LinkError(errno.ENOTCONN, "MQTT broker not connected")
        info = self._client.publish(self.topic(link.protocol, link.terminal_id, "up"), data, qos=1)
        if info.rc != 0:
            raise LinkError(errno.EIO, f"MQTT publish refused (rc={info.rc})")
        self.published += 1

    # paho callbacks, on paho's thread
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("MQTT broker %s:%s refused the connection: %s", self.host, self.port, reason)
            return
        with self._lock:
            protocols = sorted(self._protocols)
        for protocol in protocols:
            client.subscribe(f"{self.prefix}/{protocol}/+/down", qos=1)
        self._connected.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if was and self._loop is not None:
            with self._lock:
                links = list(self._links.values())
            for link in links:
                self._loop.call_soon_threadsafe(link._lost, ConnectionResetError("MQTT broker lost"))

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        parts = message.topic.split("/")
        if len(parts) < 4 or self._loop is None:
            return
        with self._lock:
            link = self._links.get((parts[-3], parts[-2]))
        if link is not None:
            self._loop.call_soon_threadsafe(link.on_data, bytes(message.payload))


class MqttLink(Link):
    kind = "mqtt"

    def __init__(self, hub: MqttHub, protocol: str, terminal_id: str) -> None:
        super().__init__()
        self.hub, self.protocol, self.terminal_id = hub, protocol, terminal_id

    async def open(self) -> None:
        self.hub.attach(self)
        await self.hub.start()
        self.is_open = True

    def write(self, data: bytes) -> None:
        self.hub.publish(self, data)

    def close(self) -> None:
        self.is_open = False
        self.hub.detach(self)
