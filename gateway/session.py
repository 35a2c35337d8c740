"""One session per connection, datagram peer, serial port or MQTT topic: a framer, a decoder
context, and the per-frame pipeline with replies sent in order once their data is durable.

The session catches every ``ProtocolError``: the frame is logged as hex, counted by kind,
and the session goes on with the next frame.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from core.settings import GatewaySettings, ProtocolSettings
from gateway import metrics
from gateway.hexlog import HexLog
from gateway.hooks import GatewayHooks, call_hook
from gateway.pipeline import Plausibility, Resolution, TerminalCache, needs_durable_ack, to_rows
from gateway.protocols.base import DecodeContext, Decoded, ProtocolError, ProtocolSpec, StreamFramer, parse_tz
from gateway.writer import BatchWriter, WorkItem

log = logging.getLogger(__name__)

MAX_LOGGED_ERRORS = 20  # per session; later decode errors are only counted


class Link(Protocol):
    """What a transport adapter offers a session."""

    def send(self, data: bytes) -> None: ...

    def acknowledge(self, token: Any) -> None:
        """The input that came with ``token`` is handled (MQTT: PUBACK its message)."""

    def close(self) -> None: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...


@dataclass(slots=True)
class Services:
    """What every session shares; built once by the gateway."""

    settings: GatewaySettings
    writer: BatchWriter
    cache: TerminalCache
    plausibility: Plausibility
    hooks: GatewayHooks
    hexlog: HexLog
    quarantine: Callable[[str, str, str, str, bytes], None]  # device, protocol, transport, address, frame
    claim: Callable[[Session], None]  # newest connection of a terminal wins
    release: Callable[[Session], None]
    pressure: Callable[[], None]  # the writer is overloaded: pause reading everywhere
    sessions: set[Session] = field(default_factory=set)


class _Pending:
    """A frame's place in the reply order."""

    __slots__ = ("session", "reply", "token", "durable", "device_id")

    def __init__(
        self, session: Session, reply: bytes | None, token: Any, durable: bool, device_id: str | None
    ) -> None:
        self.session = session
        self.reply = reply
        self.token = token
        self.durable = durable
        self.device_id = device_id

    def mark_durable(self) -> None:
        self.durable = True
        self.session.flush_replies()


class Session:
    """Bytes in, frames decoded, rows to the writer, replies out in order."""

    def __init__(
        self,
        services: Services,
        spec: ProtocolSpec,
        protocol_settings: ProtocolSettings,
        transport: str,
        link: Link,
        remote: str,
        *,
        terminal_id: str | None = None,
        datagram: bool = False,
    ) -> None:
        self.services = services
        self.spec = spec
        self.protocol = spec.name
        self.transport = transport
        self.link = link
        self.remote = remote
        self.datagram = datagram
        split = spec.split_datagram if datagram and spec.split_datagram else spec.split
        whole_frame = spec.whole_frame if split is spec.split else None
        self.framer = StreamFramer(split, protocol_settings.max_frame, whole_frame)
        self.default_tz = parse_tz(protocol_settings.tz)
        self.default_lenient = protocol_settings.lenient
        self.idle_timeout_s = protocol_settings.idle_timeout_s
        self.context = DecodeContext(
            terminal_id=terminal_id, tz=self.default_tz, lenient=self.default_lenient, transport=transport
        )
        self.fixed_terminal_id = terminal_id
        self.device_id: str | None = None  # identity the registry accepted (or quarantined)
        self.resolution: Resolution | None = None
        self.refused_frames = 0
        self.closed = False
        self.replaced = False
        self.last_activity = time.monotonic()
        self._inbox: deque[tuple[bytes, Any, datetime]] = deque()
        self._waiting: tuple[bytes, Any, datetime, Decoded] | None = None
        self._resolving = False
        self._replies: deque[_Pending] = deque()
        self._errors_logged = 0
        self._frames_in = metrics.tally(metrics.FRAMES_IN, self.protocol, transport)
        self._replies_out = metrics.tally(metrics.REPLIES_OUT, self.protocol, transport)
        services.sessions.add(self)
        metrics.CONNECTIONS.labels(self.protocol, transport).inc()

    # ------------------------------------------------------------------ input

    def feed(self, data: bytes, token: Any = None) -> None:
        """Bytes from the transport; ``token`` comes back through ``Link.acknowledge`` once
        every frame in them is handled (one MQTT message is one frame)."""
        if self.closed:
            return
        self.last_activity = time.monotonic()
        received_at = datetime.now(UTC)
        frames = self.framer.feed(data)
        if self.datagram:
            rest = self.framer.clear()
            if rest:
                self.framer.garbage_bytes += len(rest)
        if self.framer.garbage_bytes:
            metrics.GARBAGE_BYTES.labels(self.protocol).inc(self.framer.garbage_bytes)
            self.framer.garbage_bytes = 0
        if not frames:
            if token is not None:
                self._undecodable(data, "framing", "no whole frame in the message", token)
                self._replies.append(_Pending(self, None, token, True, self.device_id))
                self.flush_replies()
            return
        self._frames_in.count += len(frames)
        if len(frames) == 1 and not self._resolving and not self._inbox:
            self._frame(frames[0], token, received_at)  # the usual case: nothing queued ahead
            return
        last = len(frames) - 1
        for index, frame in enumerate(frames):
            self._inbox.append((frame, token if index == last else None, received_at))
        if not self._resolving:
            self._process()

    def _process(self) -> None:
        while self._inbox and not self.closed:
            frame, token, received_at = self._inbox.popleft()
            if not self._frame(frame, token, received_at):
                return

    def _frame(self, frame: bytes, token: Any, received_at: datetime) -> bool:
        """Decode and handle one frame; False when it waits for the registry (the frames
        after it wait in the inbox)."""
        decoded = self._decode(frame, received_at, token)
        if decoded is None:
            self._done_without_reply(token)
            return True
        device_id = self._identity(decoded)
        if device_id is not None and not self._resolved_for(device_id):
            cached = self.services.cache.cached(device_id)
            if cached is None:
                self._await_resolution(device_id, frame, token, received_at, decoded)
                return False
            decoded = self._apply(cached, frame, received_at, decoded)
        self._handle(frame, token, received_at, decoded, device_id)
        return True

    def _decode(self, frame: bytes, received_at: datetime, token: Any = None) -> Decoded | None:
        self.context.received_at = received_at
        try:
            return self.spec.decode(frame, self.context)
        except ProtocolError as exc:
            self._decode_failed(frame, exc.kind, str(exc), received_at)
            self._undecodable(frame, exc.kind, str(exc), token)
        except Exception as exc:  # a decoder bug must not end the session
            self._decode_failed(frame, "internal", f"{type(exc).__name__}: {exc}", received_at)
            self._undecodable(frame, "internal", f"{type(exc).__name__}: {exc}", token)
        return None

    def _undecodable(self, frame: bytes, kind: str, reason: str, token: Any) -> None:
        """Links that keep what they cannot deliver (MQTT dead letters) get the frame."""
        keep = getattr(self.link, "undecodable", None)
        if keep is not None:
            keep(frame, kind, reason, token)

    def _decode_failed(self, frame: bytes, kind: str, reason: str, at: datetime) -> None:
        metrics.tally(metrics.DECODE_ERRORS, self.protocol, kind).count += 1
        device_id = self.device_id or self.context.terminal_id
        if self._errors_logged < MAX_LOGGED_ERRORS:
            self._errors_logged += 1
            log.warning(
                "%s/%s %s (%s): %s; frame %s",
                self.protocol,
                self.transport,
                device_id or "?",
                self.remote,
                reason,
                frame.hex(),
            )
        if self.services.hexlog.enabled(device_id):
            self.services.hexlog.record(device_id or "?", self.protocol, self.transport, "in!", frame)
        call_hook("decode_error", self.services.hooks, device_id, self.protocol, kind, at)

    def _identity(self, decoded: Decoded) -> str | None:
        if decoded.terminal_id:
            return decoded.terminal_id
        for message in decoded.messages:
            if message.terminal_id:
                return message.terminal_id
        if self.fixed_terminal_id or self.context.terminal_id:
            return self.fixed_terminal_id or self.context.terminal_id
        return self.resolution.device_id if self.resolution is not None else None

    def _resolved_for(self, device_id: str) -> bool:
        resolution = self.resolution
        if resolution is None or resolution.device_id != device_id:
            return False
        return resolution.expires >= time.monotonic() or self.services.cache.cached(device_id) is not None

    # ------------------------------------------------------------------ resolution

    def _await_resolution(
        self, device_id: str, frame: bytes, token: Any, received_at: datetime, decoded: Decoded
    ) -> None:
        self._resolving = True
        self._waiting = (frame, token, received_at, decoded)
        self.link.pause()
        asyncio.get_running_loop().create_task(self._resolve(device_id))

    async def _resolve(self, device_id: str) -> None:
        try:
            resolution = await self.services.cache.lookup(device_id)
        except Exception:
            log.exception("terminal look-up for %s failed", device_id)
            self.close()
            return
        finally:
            self._resolving = False
        if self.closed or self._waiting is None:
            return
        frame, token, received_at, decoded = self._waiting
        self._waiting = None
        decoded = self._apply(resolution, frame, received_at, decoded)
        self._handle(frame, token, received_at, decoded, device_id)
        if not self.closed:
            self.link.resume()
            self._process()

    def _apply(
        self, resolution: Resolution, frame: bytes, received_at: datetime, decoded: Decoded
    ) -> Decoded:
        """Take the registry's answer into the session; re-decode the frame when the
        registry sets another time zone or leniency than the one it was decoded with."""
        self.resolution = resolution
        terminal = resolution.terminal
        tz = parse_tz(terminal.tz) if terminal is not None and terminal.tz else self.default_tz
        lenient = bool(terminal.lenient) if terminal is not None else self.default_lenient
        if tz != self.context.tz or lenient != self.context.lenient:
            self.context.tz, self.context.lenient = tz, lenient
            again = self._decode(frame, received_at)
            if again is not None:
                decoded = again
        if resolution.outcome != "accepted" and resolution.outcome != "unknown":
            return decoded
        if resolution.outcome == "unknown" and self.services.settings.unknown_terminal == "refuse":
            return decoded
        if self.device_id != resolution.stored_id:
            first = self.device_id is None
            self.device_id = resolution.stored_id
            self.context.terminal_id = resolution.device_id
            self.services.claim(self)
            if first:
                call_hook("connection", self.services.hooks, self.device_id, self.protocol, True, received_at)
        return decoded

    # ------------------------------------------------------------------ pipeline

    def _handle(
        self, frame: bytes, token: Any, received_at: datetime, decoded: Decoded, device_id: str | None
    ) -> None:
        services = self.services
        if services.hexlog.enabled(device_id):
            services.hexlog.record(device_id or "?", self.protocol, self.transport, "in", frame)
        if device_id is None:
            if decoded.messages:
                metrics.tally(metrics.UNKNOWN_TERMINALS, self.protocol, "anonymous").count += 1
                self._done_without_reply(token)
                return
            self._queue_reply(decoded.reply, token, durable=True, device_id=None)
            return
        resolution = self.resolution
        assert resolution is not None
        if resolution.outcome != "accepted":
            if resolution.outcome == "disabled" or services.settings.unknown_terminal == "refuse":
                self._refuse(resolution, token)
                return
            metrics.tally(metrics.UNKNOWN_TERMINALS, self.protocol, "quarantined").count += 1
            services.quarantine(device_id, self.protocol, self.transport, self.remote, frame)
        device_id = resolution.stored_id
        messages = decoded.messages
        if not messages:
            self._queue_reply(decoded.reply, token, durable=True, device_id=device_id)
            return
        raw = frame if services.settings.store_raw_frames else None
        positions, events = to_rows(
            messages, device_id, self.protocol, received_at, raw, services.plausibility
        )
        if needs_durable_ack(messages):
            # Replies ahead of this one that were durable are sent already, so there is
            # nothing to flush until the writer calls back.
            pending = _Pending(self, decoded.reply, token, False, device_id)
            self._replies.append(pending)
            if services.writer.submit(WorkItem(positions, events, pending.mark_durable)):
                services.pressure()
            return
        self._queue_reply(decoded.reply, token, durable=True, device_id=device_id, flush=False)
        if (positions or events) and services.writer.submit(WorkItem(positions, events)):
            services.pressure()
        self.flush_replies()

    def _refuse(self, resolution: Resolution, token: Any) -> None:
        outcome = "disabled" if resolution.outcome == "disabled" else "refused"
        metrics.tally(metrics.UNKNOWN_TERMINALS, self.protocol, outcome).count += 1
        self.refused_frames += 1
        self._done_without_reply(token)
        if self.refused_frames == 1 or self.refused_frames >= self.services.settings.unknown_terminal_tries:
            log.info(
                "%s/%s %s from %s refused (%s, %d frames)",
                self.protocol,
                self.transport,
                resolution.device_id,
                self.remote,
                outcome,
                self.refused_frames,
            )
        if self.refused_frames >= self.services.settings.unknown_terminal_tries and not self.datagram:
            metrics.CONNECTIONS_REFUSED.labels(outcome).inc()
            self.close()

    # ------------------------------------------------------------------ replies in order

    def _done_without_reply(self, token: Any) -> None:
        if token is not None or self._replies:
            self._queue_reply(None, token, durable=True, device_id=self.device_id)

    def _queue_reply(
        self, reply: bytes | None, token: Any, *, durable: bool, device_id: str | None, flush: bool = True
    ) -> _Pending:
        pending = _Pending(self, reply, token, durable, device_id)
        if reply is None and token is None and durable and not self._replies:
            return pending  # nothing to send and nothing ahead of it
        self._replies.append(pending)
        if flush:
            self.flush_replies()
        return pending

    def flush_replies(self) -> None:
        replies = self._replies
        while replies and replies[0].durable:
            pending = replies.popleft()
            if self.closed and not self.datagram and self.transport != "mqtt":
                continue
            if pending.reply:
                self.link.send(pending.reply)
                self._replies_out.count += 1
                if self.services.hexlog.enabled(pending.device_id):
                    self.services.hexlog.record(
                        pending.device_id or "?", self.protocol, self.transport, "out", pending.reply
                    )
            if pending.token is not None:
                self.link.acknowledge(pending.token)

    @property
    def unacknowledged(self) -> int:
        return len(self._replies) + len(self._inbox) + (1 if self._waiting else 0)

    # ------------------------------------------------------------------ end

    def close(self) -> None:
        """Close the link; rows already submitted are still written."""
        if self.closed:
            return
        self.closed = True
        self.services.sessions.discard(self)
        metrics.CONNECTIONS.labels(self.protocol, self.transport).dec()
        self.services.release(self)
        if self.device_id is not None and not self.replaced:
            call_hook(
                "connection", self.services.hooks, self.device_id, self.protocol, False, datetime.now(UTC)
            )
        self.link.close()
