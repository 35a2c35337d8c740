"""The gateway: listeners for every enabled protocol (TCP, UDP, serial ports, MQTT), the shared
pipeline services, the batch writer and spool, backpressure, idle sweeping and the drain."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text

from core.settings import ProtocolSettings, Settings
from gateway import metrics
from gateway.deadletter import dead_letter_row, insert_dead_letter
from gateway.hexlog import HexLog, load_switches
from gateway.hooks import GatewayHooks, NullHooks, TerminalResolver, call_hook
from gateway.pipeline import Plausibility, TerminalCache
from gateway.protocols import PROTOCOLS
from gateway.protocols.base import ProtocolSpec
from gateway.quarantine import QuarantineRecorder
from gateway.session import Link, Services, Session
from gateway.spool import Spool
from gateway.transports.tcp import ConnectionLimits, listen_tcp
from gateway.transports.udp import UdpEndpoint, listen_udp
from gateway.writer import BatchWriter, WorkItem, WriteFn, describe
from store.db import Database
from store.records import IngestBatch

log = logging.getLogger(__name__)

SWEEP_EVERY_S = 5.0
HEXLOG_POLL_S = 5.0
DRAIN_TIMEOUT_S = 30.0
SWITCH_INTERVAL_S = 0.0005
GC_YOUNG_THRESHOLD = 50_000


class Gateway:
    """``Gateway(settings, database, resolver, hooks)``; ``await start()``, ``await stop()``."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        resolver: TerminalResolver,
        hooks: GatewayHooks | None = None,
    ) -> None:
        self.settings = settings
        self.database = database
        self.resolver = resolver
        self.hooks: GatewayHooks = hooks or NullHooks()
        self.hexlog = HexLog()
        self.ports: dict[str, dict[str, int]] = {}
        self.cache = TerminalCache(resolver)
        self.quarantine = QuarantineRecorder(database)
        self.writer: BatchWriter | None = None
        self.services: Services | None = None
        self.paused = False
        self.started_at: datetime | None = None
        self._servers: list[asyncio.Server] = []
        self._udp: list[UdpEndpoint] = []
        self._extra: list[Any] = []  # serial ports and the MQTT client: start()/stop()
        self._tasks: list[asyncio.Task[None]] = []
        self._by_terminal: dict[str, Session] = {}
        self._limits = ConnectionLimits(
            settings.gateway.max_connections, settings.gateway.max_connections_per_address
        )

    # ------------------------------------------------------------------ start

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # The writer thread takes the GIL back after each database round trip; with the
        # default 5 ms switch interval a busy event loop makes it wait that long each time
        # (a batch has several round trips), which doubled the commit time under load.
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
        # Every frame makes a few short-lived objects; collecting the young generation
        # every 700 allocations cost more than decoding the frame.
        gc.freeze()
        gc.set_threshold(max(gc.get_threshold()[0], GC_YOUNG_THRESHOLD), *gc.get_threshold()[1:])
        gw = self.settings.gateway
        spool = Spool(Path(self.settings.data_dir) / "spool", gw.spool_max_bytes)
        self.writer = BatchWriter(
            self._make_writer,
            spool,
            loop,
            self._on_durable,
            batch_max_rows=gw.batch_max_rows,
            queue_max_frames=gw.queue_max_frames,
            batch_max_delay_ms=gw.batch_max_delay_ms,
            probe=self._probe_database,
        )
        self.writer.start()
        self.services = Services(
            settings=gw,
            writer=self.writer,
            cache=self.cache,
            plausibility=Plausibility(gw.max_future_s, gw.max_speed_kmh),
            hooks=self.hooks,
            hexlog=self.hexlog,
            quarantine=self._quarantine,
            claim=self._claim,
            release=self._release,
            pressure=self._pressure,
        )
        try:
            await self._open_listeners()
        except Exception:
            await self.stop()
            raise
        self._tasks.append(loop.create_task(self._sweep(), name="gateway-sweep"))
        self._tasks.append(loop.create_task(self._poll_hexlog(), name="gateway-hexlog"))
        self.started_at = datetime.now(UTC)
        log.info("gateway listening: %s", self.ports)

    def _make_writer(self) -> WriteFn:
        from store.ingest import PositionWriter

        return PositionWriter(self.database).write

    def _probe_database(self) -> None:
        with self.database.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    async def _open_listeners(self) -> None:
        gw = self.settings.gateway
        for name, protocol_settings in gw.protocols.items():
            if not protocol_settings.enabled:
                continue
            spec = PROTOCOLS.get(name)
            if spec is None:
                log.warning("protocol %s is configured but has no decoder; not listening", name)
                continue
            ports = self.ports.setdefault(name, {})
            if "tcp" in spec.transports:
                try:
                    server = await listen_tcp(
                        gw.host,
                        protocol_settings.port,
                        self._tcp_receiver(spec, protocol_settings),
                        self._limits,
                    )
                except OSError as exc:
                    raise OSError(
                        f"{name}: cannot listen on TCP {gw.host}:{protocol_settings.port}: {exc.strerror or exc}"
                    ) from exc
                self._servers.append(server)
                ports["tcp"] = int(server.sockets[0].getsockname()[1])
            if protocol_settings.udp_port is not None and "udp" in spec.transports:
                try:
                    endpoint = await listen_udp(
                        gw.host,
                        protocol_settings.udp_port,
                        self._udp_receiver(spec, protocol_settings),
                        name,
                        gw.max_connections,
                    )
                except OSError as exc:
                    raise OSError(
                        f"{name}: cannot listen on UDP {gw.host}:{protocol_settings.udp_port}: {exc.strerror or exc}"
                    ) from exc
                self._udp.append(endpoint)
                assert endpoint.transport is not None
                ports["udp"] = int(endpoint.transport.get_extra_info("sockname")[1])
        for port_settings in gw.serial_ports:
            from gateway.transports.serial import SerialPort

            spec = PROTOCOLS.get(port_settings.protocol)
            if spec is None:
                raise ValueError(
                    f"serial port {port_settings.device}: unknown protocol {port_settings.protocol!r}"
                )
            serial_port = SerialPort(
                port_settings,
                self._serial_receiver(spec, self._protocol_settings(spec.name), port_settings.terminal_id),
            )
            self._extra.append(serial_port)
        if gw.mqtt.enabled:
            from gateway.transports.mqtt import MqttBridge

            self._extra.append(MqttBridge(gw.mqtt, self._mqtt_receiver, self._dead_letter))
        for extra in self._extra:
            await extra.start()

    def _protocol_settings(self, name: str) -> ProtocolSettings:
        configured = self.settings.gateway.protocols.get(name)
        if configured is not None:
            return configured
        return ProtocolSettings(port=0, tz=PROTOCOLS[name].default_tz, max_frame=PROTOCOLS[name].max_frame)

    # ------------------------------------------------------------------ sessions

    def _new_session(
        self,
        spec: ProtocolSpec,
        settings: ProtocolSettings,
        transport: str,
        link: Link,
        remote: str,
        **kwargs: Any,
    ) -> Session:
        assert self.services is not None
        session = Session(self.services, spec, settings, transport, link, remote, **kwargs)
        if self.paused:
            link.pause()
        return session

    def _tcp_receiver(self, spec: ProtocolSpec, settings: ProtocolSettings) -> Any:
        def factory(link: Any, remote: str) -> Session:
            return self._new_session(spec, settings, "tcp", link, remote)

        return factory

    def _udp_receiver(self, spec: ProtocolSpec, settings: ProtocolSettings) -> Any:
        def factory(link: Any, remote: str) -> Session:
            return self._new_session(spec, settings, "udp", link, remote, datagram=True)

        return factory

    def _serial_receiver(
        self, spec: ProtocolSpec, settings: ProtocolSettings, terminal_id: str | None
    ) -> Any:
        def factory(link: Any, remote: str) -> Session:
            return self._new_session(spec, settings, "serial", link, remote, terminal_id=terminal_id)

        return factory

    def _mqtt_receiver(self, protocol: str, terminal_id: str, link: Any) -> Session | None:
        spec = PROTOCOLS.get(protocol)
        if spec is None:
            return None
        return self._new_session(
            spec,
            self._protocol_settings(protocol),
            "mqtt",
            link,
            f"mqtt:{terminal_id}",
            terminal_id=terminal_id,
            datagram=True,
        )

    def _dead_letter(
        self,
        topic: str,
        payload: bytes,
        kind: str,
        reason: str,
        protocol: str | None,
        terminal_id: str | None,
    ) -> asyncio.Future[object]:
        row = dead_letter_row(topic, payload, kind, reason, protocol, terminal_id)
        log.warning("MQTT dead letter on %s (%s): %s; payload %s", topic, kind, reason, payload[:256].hex())
        return self.cache.run_blocking(lambda: insert_dead_letter(self.database, row))

    def _claim(self, session: Session) -> None:
        """The newest connection of a terminal wins: an older one is closed."""
        if session.device_id is None or session.transport != "tcp":
            return
        previous = self._by_terminal.get(session.device_id)
        self._by_terminal[session.device_id] = session
        if previous is not None and previous is not session and not previous.closed:
            log.info(
                "%s connected again from %s; closing its older connection from %s",
                session.device_id,
                session.remote,
                previous.remote,
            )
            metrics.CONNECTIONS_REFUSED.labels("replaced").inc()
            previous.replaced = True
            previous.close()

    def _release(self, session: Session) -> None:
        if session.device_id is not None and self._by_terminal.get(session.device_id) is session:
            del self._by_terminal[session.device_id]

    def _quarantine(self, device_id: str, protocol: str, transport: str, remote: str, frame: bytes) -> None:
        if not self.quarantine.due(device_id):
            return
        future = self.cache.run_blocking(
            lambda: self.quarantine.write(device_id, protocol, transport, remote, frame)
        )
        future.add_done_callback(_log_failure("quarantine upsert"))

    # ------------------------------------------------------------------ durability and pressure

    def _on_durable(self, items: list[WorkItem], committed: IngestBatch | None) -> None:
        for item in items:
            if item.on_durable is not None:
                item.on_durable()
        if committed is not None and len(committed):
            call_hook("after_commit", self.hooks, committed)
        writer = self.writer
        if writer is None:
            return
        if self.paused and writer.relieved:
            self._set_paused(False)
        elif not self.paused and writer.overloaded:
            self._set_paused(True)

    def _pressure(self) -> None:
        if not self.paused:
            self._set_paused(True)

    def _set_paused(self, paused: bool) -> None:
        self.paused = paused
        metrics.BACKPRESSURE.set(1 if paused else 0)
        assert self.services is not None
        log.warning(
            "reading %s (%d frames queued, spool full: %s)",
            "paused" if paused else "resumed",
            self.writer.queued if self.writer else 0,
            self.writer.spool_full if self.writer else False,
        )
        for session in list(self.services.sessions):
            if paused:
                session.link.pause()
            else:
                session.link.resume()
        for endpoint in self._udp:
            endpoint.paused = paused
        for extra in self._extra:
            extra.set_paused(paused)

    # ------------------------------------------------------------------ housekeeping

    async def _sweep(self) -> None:
        timeouts = [p.idle_timeout_s for p in self.settings.gateway.protocols.values() if p.enabled]
        every = max(0.1, min([SWEEP_EVERY_S, *(t / 2 for t in timeouts)]))
        while True:
            await asyncio.sleep(every)
            if self.services is None:
                continue
            now = time.monotonic()
            for session in list(self.services.sessions):
                if (
                    session.transport in ("tcp", "udp")
                    and now - session.last_activity > session.idle_timeout_s
                ):
                    if session.unacknowledged:
                        continue  # waiting for the writer is not idleness
                    metrics.CONNECTIONS_REFUSED.labels("idle").inc()
                    session.close()

    async def _poll_hexlog(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                switches = await loop.run_in_executor(None, self._read_hexlog_switches)
                self.hexlog.replace(switches)
            except Exception as exc:
                log.debug("hex-log switches not read: %s", exc)
            await asyncio.sleep(HEXLOG_POLL_S)

    def _read_hexlog_switches(self) -> dict[str, datetime | None]:
        with self.database.engine.connect() as conn:
            return load_switches(conn)

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        sessions = list(self.services.sessions) if self.services else []
        by_protocol: dict[str, int] = {}
        for session in sessions:
            key = f"{session.protocol}/{session.transport}"
            by_protocol[key] = by_protocol.get(key, 0) + 1
        return {
            "started_at": self.started_at,
            "ports": self.ports,
            "connections": len(sessions),
            "connections_by_protocol": by_protocol,
            "paused": self.paused,
            "writer": describe(self.writer) if self.writer else None,
            "serial_ports": [extra.status() for extra in self._extra if hasattr(extra, "device")],
            "mqtt": [extra.status() for extra in self._extra if hasattr(extra, "broker")],
            "hexlog": sorted(self.hexlog.switches()),
            "unknown_terminal": self.settings.gateway.unknown_terminal,
        }

    def health(self) -> list[tuple[str, bool, str]]:
        """(name, ok, detail) for /health: the spool must have room, reading must flow."""
        writer = self.writer
        if writer is None:
            return [("gateway", False, "not started")]
        spool = writer.spool
        spool_ok = not writer.spool_full
        detail = f"{spool.records} batches, {spool.size_bytes} of {spool.max_bytes} bytes"
        if not writer.database_ok:
            detail += f"; database failing ({writer.last_error}), spooling"
        checks = [("gateway.spool", spool_ok, detail)]
        checks.append(
            ("gateway.reading", not self.paused, "paused: backpressure" if self.paused else "reading")
        )
        return checks

    # ------------------------------------------------------------------ stop

    async def stop(self) -> None:
        """Stop accepting, let every frame read so far become durable and be answered,
        close the connections, end the writer."""
        for server in self._servers:
            server.close()
        for endpoint in self._udp:
            endpoint.paused = True
        for extra in self._extra:
            extra.set_paused(True)
        for task in self._tasks:
            task.cancel()
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        sessions = list(self.services.sessions) if self.services else []
        while time.monotonic() < deadline:
            busy = (self.writer is not None and not self.writer.idle()) or any(
                s.unacknowledged for s in sessions if not s.closed
            )
            if not busy:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0)  # let the last acknowledgements reach the sockets
        for extra in reversed(self._extra):
            await extra.stop()
        for session in sessions:
            session.replaced = False
            session.close()
        for endpoint in self._udp:
            endpoint.close()
        for server in self._servers:
            await server.wait_closed()
        if self.writer is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.writer.stop)
        self.cache.close()
        self._servers.clear()
        self._udp.clear()
        self._extra.clear()
        log.info("gateway stopped")


def _log_failure(what: str) -> Any:
    def done(future: asyncio.Future[object]) -> None:
        if not future.cancelled() and future.exception() is not None:
            log.warning("%s failed: %s", what, future.exception())

    return done
