"""A virtual terminal that behaves like a device on the wire.

It connects, logs in (login / registration / authentication through the protocol's
``DeviceCodec`` and its ``on_reply``), reports a fix every interval, sends heartbeats when
it has nothing else to say, waits for each acknowledgement and retransmits when none
comes, reconnects with backoff when the link drops, keeps its fixes while offline and
uploads them afterwards (in batches where the protocol has them).  Every frame comes from
the codec: the terminal only decides what to send and when.

One coroutine per terminal, stop-and-wait like most trackers: one frame awaiting its
acknowledgement at a time.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.messages import Message
from core.vocabulary import Attr
from gateway.protocols.base import DeviceCodec, Outgoing, ReplyEvent
from simulators.device import ReportComposer
from simulators.faults import FaultKind, FaultState, garbage, truncate
from simulators.motion import Driver
from simulators.transports import Link

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Timing:
    interval_s: float = 10.0  # one fix per interval
    heartbeat_s: float = 60.0  # a heartbeat (with the health readings) this often
    ack_timeout_s: float = 10.0  # retransmit when no acknowledgement within this
    max_retries: int = 3  # then the link is deemed dead: reconnect
    backoff_min_s: float = 1.0
    backoff_max_s: float = 60.0
    batch_max: int = 16  # fixes in one batch upload
    buffer_max: int = 5000  # fixes kept while offline; the oldest go first when full
    handshake_timeout_s: float = 10.0


@dataclass(slots=True)
class Stats:
    """Counters shared by every terminal of a run (one event loop: no locks needed)."""

    terminals: int = 0
    connected: int = 0
    connects: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    handshakes: int = 0
    rejected: int = 0
    frames_sent: int = 0
    bytes_sent: int = 0
    acked: int = 0
    retransmitted: int = 0
    fixes: int = 0
    fixes_acked: int = 0
    fixes_unacked_sent: int = 0  # sent by protocols that acknowledge nothing
    batches: int = 0
    buffered: int = 0  # fixes waiting now (offline or behind)
    buffer_dropped: int = 0
    faults_injected: int = 0
    replies: int = 0
    send_errors: int = 0

    def snapshot(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]


@dataclass(slots=True)
class _InFlight:
    outgoing: Outgoing
    kind: str  # "handshake", "position", "batch", "status", "heartbeat"
    messages: list[Message] = field(default_factory=list)
    attempts: int = 1
    deadline: float = 0.0


class VirtualTerminal:
    """One simulated device.  ``run(stop)`` until ``stop`` is set."""

    def __init__(
        self,
        terminal_id: str,
        codec: DeviceCodec,
        make_link: Callable[[], Link],
        driver: Driver,
        composer: ReportComposer,
        *,
        timing: Timing,
        stats: Stats,
        rng: random.Random,
    ) -> None:
        self.terminal_id = terminal_id
        self.codec = codec
        self.make_link = make_link
        self.driver = driver
        self.composer = composer
        self.faults: FaultState = composer.faults
        self.timing = timing
        self.stats = stats
        self.rng = rng
        self.link: Link | None = None
        self.ready = False  # connected and the handshake accepted
        self.outbox: deque[Message] = deque()
        self.control: deque[tuple[str, Outgoing]] = deque()
        self.inflight: _InFlight | None = None
        self.fixes = 0
        self.fixes_acked = 0
        self.dropped = 0  # fixes lost to a full offline buffer
        self.frames_sent = 0
        self.last_reported_iccid: str | None = composer.health.iccid
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._started = 0.0
        self._last_fix_at = 0.0
        self._next_report = 0.0
        self._next_connect = 0.0
        self._backoff = timing.backoff_min_s
        self._last_sent = 0.0
        self._last_heartbeat = 0.0
        self._faults_counted = 0
        self._stopping = False
        self._connected_at = 0.0
        self.wakeups = 0  # turns of the loop: a few per report, never a busy spin

    # ------------------------------------------------------------------ main loop

    def request_stop(self) -> None:
        """Ask ``run`` to return (at once, dropping the link like a power-off)."""
        self._stopping = True
        self._wake()

    async def run(self, start_delay_s: float = 0.0) -> None:
        self._loop = loop = asyncio.get_running_loop()
        self.stats.terminals += 1
        try:
            if start_delay_s > 0:
                await self._sleep_until(loop.time() + start_delay_s)
            self._started = self._last_fix_at = self._next_report = self._next_connect = loop.time()
            while not self._stopping:
                now = loop.time()
                self._update_faults(now)
                while now >= self._next_report:
                    self._report(now)
                    self._next_report += self.timing.interval_s
                if self.faults.active(FaultKind.SILENT):
                    if self.link is not None:
                        self._drop_link(None, counted=True)
                elif self.link is None and now >= self._next_connect:
                    await self._connect()
                    continue
                elif self.link is not None:
                    self._pump(now)
                await self._sleep_until(self._next_wakeup())
                self.wakeups += 1
        finally:
            if self.link is not None:
                self._drop_link(None, counted=True)
            self.stats.terminals -= 1

    def _next_wakeup(self) -> float:
        times = [self._next_report]
        if self.link is None and not self.faults.active(FaultKind.SILENT):
            times.append(self._next_connect)
        if self.inflight is not None:
            times.append(self.inflight.deadline)
        elif self.ready:
            times.append(self._last_heartbeat + self.timing.heartbeat_s)
        return min(times)

    async def _sleep_until(self, when: float) -> None:
        loop = self._loop
        assert loop is not None
        if self._stopping:
            return
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter
        handle = loop.call_at(when, self._wake)
        try:
            await waiter
        finally:
            handle.cancel()
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------------ what happens each report

    def _update_faults(self, now: float) -> None:
        self.faults.update(now - self._started)
        self._count_faults()

    def _count_faults(self) -> None:
        new = self.faults.injected - self._faults_counted
        if new:
            self.stats.faults_injected += new
            self._faults_counted = self.faults.injected

    def _report(self, now: float) -> None:
        self.driver.advance(max(0.0, now - self._last_fix_at))
        self._last_fix_at = now
        self.composer.health.step()
        message = self.composer.compose(datetime.now(UTC), now - self._started, self.driver.state)
        message.terminal_id = self.terminal_id
        if not self.ready:
            message.attributes[Attr.ARCHIVED] = True  # a blind-area fix, uploaded later
        self.stats.fixes += 1
        self.fixes += 1
        if len(self.outbox) >= self.timing.buffer_max:
            if not self.dropped:
                log.warning(
                    "%s: %d fixes kept while offline, the most it holds: dropping the oldest from now on",
                    self.terminal_id,
                    self.timing.buffer_max,
                )
            self.outbox.popleft()
            self.dropped += 1
            self.stats.buffer_dropped += 1
            self.stats.buffered -= 1
        self.outbox.append(message)
        self.stats.buffered += 1
        iccid = message.attributes.get(Attr.ICCID)
        if self.ready and iccid != self.last_reported_iccid:  # a new SIM: say so at once
            self._queue_status(message.attributes)

    def _queue_status(self, attributes: dict[str, Any]) -> None:
        outgoing = self.codec.status(attributes, [])
        self.last_reported_iccid = attributes.get(Attr.ICCID)
        if outgoing is not None:
            self.control.append(("status", outgoing))

    # ------------------------------------------------------------------ the link

    async def _connect(self) -> None:
        assert self._loop is not None
        link = self.make_link()
        link.on_data = self._on_data
        link.on_lost = self._on_lost
        try:
            await link.open()
        except (OSError, TimeoutError) as exc:
            self.stats.connect_failures += 1
            # Once a run: a wrong target otherwise shows only as a count in the summary.
            level = logging.WARNING if self.stats.connect_failures == 1 else logging.DEBUG
            log.log(
                level,
                "%s: cannot connect over %s: %s",
                self.terminal_id,
                link.kind,
                exc or type(exc).__name__,
            )
            link.close()
            self._schedule_reconnect()
            return
        self.link = link
        self.stats.connects += 1
        self.stats.connected += 1
        self._last_sent = self._connected_at = self._last_heartbeat = self._loop.time()
        handshake = self.codec.handshake()
        if handshake is None or not handshake.needs_ack:
            if handshake is not None:
                self._send(handshake, "handshake")
            self._handshake_accepted()
        else:
            self._send(handshake, "handshake", track=True)

    def _schedule_reconnect(self) -> None:
        assert self._loop is not None
        delay = self._backoff * self.rng.uniform(0.5, 1.0)
        self._backoff = min(self.timing.backoff_max_s, self._backoff * 2)
        self._next_connect = self._loop.time() + delay

    def _handshake_accepted(self) -> None:
        self.ready = True
        self._backoff = self.timing.backoff_min_s
        self.stats.handshakes += 1

    def _on_lost(self, exc: BaseException | None) -> None:
        log.debug("%s: link lost: %s", self.terminal_id, exc)
        if self.link is not None and not self.ready and self.codec.transport == "tcp":
            # Closing the link is how a gateway says no where the protocol has no refusal
            # (GT06, H02, Teltonika, an unknown terminal in "refuse" mode).
            log.info("%s: the server closed the link before accepting the login", self.terminal_id)
            self.stats.rejected += 1
        self._drop_link(exc, counted=False)
        self._wake()

    def _drop_link(self, exc: BaseException | None, *, counted: bool) -> None:
        link, self.link = self.link, None
        if link is not None:
            link.on_lost = lambda _exc: None
            link.on_data = lambda _data: None
            link.close()
            self.stats.connected -= 1
            self.stats.disconnects += 1
        self.ready = False
        inflight, self.inflight = self.inflight, None
        if inflight is not None and inflight.messages:
            for message in reversed(inflight.messages):  # not acknowledged: keep for later
                message.attributes[Attr.ARCHIVED] = True
                self.outbox.appendleft(message)
                self.stats.buffered += 1
        self.control.clear()
        # A new session: the device starts its handshake again (its serial counter runs on).
        old = self.codec
        self.codec = type(old)(old.terminal_id, tz=old.tz, transport=old.transport)
        self.codec.seq = old.seq
        self._schedule_reconnect()

    # ------------------------------------------------------------------ sending

    def _pump(self, now: float) -> None:
        inflight = self.inflight
        if inflight is not None:
            if now < inflight.deadline:
                return
            if inflight.attempts > self.timing.max_retries:
                log.debug("%s: no acknowledgement after %d tries", self.terminal_id, inflight.attempts)
                self._drop_link(None, counted=True)
                return
            inflight.attempts += 1
            self.stats.retransmitted += 1
            self._write(inflight.outgoing.data, faults=inflight.kind != "handshake")
            inflight.deadline = now + self._ack_timeout(inflight)
            return
        if not self.ready:
            if now - self._connected_at > self.timing.handshake_timeout_s * (self.timing.max_retries + 1):
                log.debug("%s: handshake never completed", self.terminal_id)
                self._drop_link(None, counted=True)
            return
        while self.inflight is None and self.link is not None and (self.control or self.outbox):
            if self.control:
                kind, outgoing = self.control.popleft()
                self._send(outgoing, kind, track=outgoing.needs_ack)
            else:
                self._send_fixes()
        if (
            self.inflight is None
            and self.link is not None
            and now - self._last_heartbeat >= self.timing.heartbeat_s
        ):
            # Trackers send their heartbeat on its own timer, positions or not: it carries
            # the health readings (battery, signal) some protocols put nowhere else.
            self._last_heartbeat = now
            attributes, _ = self.composer.health.attributes(self.faults, self.driver.state.ignition)
            heartbeat = self.codec.heartbeat(attributes)
            if heartbeat is not None:
                self._send(heartbeat, "heartbeat", track=heartbeat.needs_ack)

    def _send_fixes(self) -> None:
        batch: list[Message] = []
        outgoing: Outgoing | None = None
        if len(self.outbox) > 1:
            count = min(len(self.outbox), self.timing.batch_max)
            batch = [self.outbox[i] for i in range(count)]
            outgoing = self.codec.positions(batch)
        if outgoing is None:
            batch = [self.outbox[0]]
            outgoing = self.codec.position(batch[0])
        for _ in batch:
            self.outbox.popleft()
        self.stats.buffered -= len(batch)
        if len(batch) > 1:
            self.stats.batches += 1
        self._send(
            outgoing, "batch" if len(batch) > 1 else "position", track=outgoing.needs_ack, messages=batch
        )
        if not outgoing.needs_ack:
            self.stats.fixes_unacked_sent += len(batch)

    def _ack_timeout(self, inflight: _InFlight) -> float:
        base = self.timing.handshake_timeout_s if inflight.kind == "handshake" else self.timing.ack_timeout_s
        return base * (1 + 0.5 * (inflight.attempts - 1))  # waits a little longer each time

    def _send(
        self, outgoing: Outgoing, kind: str, *, track: bool = False, messages: list[Message] | None = None
    ) -> None:
        assert self._loop is not None
        if track:
            self.inflight = _InFlight(outgoing, kind, messages or [])
            self.inflight.deadline = self._loop.time() + self._ack_timeout(self.inflight)
        self._write(outgoing.data, faults=kind not in ("handshake",))

    def _write(self, data: bytes, *, faults: bool) -> None:
        link = self.link
        if link is None:
            return
        assert self._loop is not None
        chunks = [data]
        if faults:
            hits = self.faults.frame_hits()
            if hits:
                self._count_faults()
                if FaultKind.BAD_CHECKSUM in hits:
                    chunks = [self.codec.corrupt_checksum(data)]
                if FaultKind.TRUNCATED in hits:
                    chunks = [truncate(chunks[0], self.rng)]
                if FaultKind.GARBAGE in hits:
                    noise = garbage(self.rng)
                    chunks = [noise + chunks[0]] if link.kind in ("tcp", "serial") else [noise, chunks[0]]
                if FaultKind.DUPLICATE in hits:
                    chunks = chunks + [data]
        try:
            for chunk in chunks:
                link.write(chunk)
                self.stats.frames_sent += 1
                self.stats.bytes_sent += len(chunk)
                self.frames_sent += 1
        except OSError as exc:
            self.stats.send_errors += 1
            log.debug("%s: write failed: %s", self.terminal_id, exc)
            self._drop_link(exc, counted=True)
            return
        self._last_sent = self._loop.time()

    # ------------------------------------------------------------------ replies

    def _on_data(self, data: bytes) -> None:
        self.stats.replies += 1
        try:
            event = self.codec.on_reply(data)
        except Exception as exc:  # a reply the codec cannot read: a real device ignores it
            log.debug("%s: unreadable reply %s: %s", self.terminal_id, data.hex(), exc)
            return
        self._on_event(event)

    def _on_event(self, event: ReplyEvent) -> None:
        if event.rejected:
            log.info("%s: the server refused the login", self.terminal_id)
            self.stats.rejected += 1
            self._drop_link(None, counted=True)
            self._wake()
            return
        inflight = self.inflight
        if inflight is not None and self._acknowledges(inflight, event):
            self.inflight = None
            self.stats.acked += 1
            if inflight.messages:
                self.fixes_acked += len(inflight.messages)
                self.stats.fixes_acked += len(inflight.messages)
        if event.send and not self.ready and not event.handshake_done:
            # The next handshake step (authentication after registration): send it now.
            first, *rest = event.send
            self._send(first, "handshake", track=first.needs_ack)
            self.control.extendleft(("handshake", outgoing) for outgoing in reversed(rest))
        elif event.send:  # frames the server asked for (a time request answer, ...)
            self.control.extend(("status", outgoing) for outgoing in event.send)
        if event.handshake_done and not self.ready:
            if self.inflight is not None and self.inflight.kind == "handshake":
                self.inflight = None
            self._handshake_accepted()
        self._wake()

    @staticmethod
    def _acknowledges(inflight: _InFlight, event: ReplyEvent) -> bool:
        seq = inflight.outgoing.seq
        if seq is None:  # the protocol's acknowledgement names no frame: any one will do
            return bool(event.acked) or (inflight.kind == "handshake" and event.handshake_done)
        if seq in event.acked:
            return True
        return inflight.kind == "handshake" and (event.handshake_done or bool(event.send))
