"""The stages a decoded frame goes through: resolve the terminal, check plausibility, make
rows.  Each stage is a small object or function that can be read and tested alone; the
session runs them in order for each frame, so per-terminal order is kept."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Literal

from core.messages import Message, MessageType
from gateway import metrics
from gateway.hooks import ResolvedTerminal, TerminalResolver
from store.records import EventRow, Flag, PositionRow

log = logging.getLogger(__name__)

Outcome = Literal["accepted", "unknown", "disabled"]

# Frames whose messages are only these may be answered before they are durable: losing
# one costs nothing (the terminal logs in or beats again), and the terminal waits for it.
NOTHING_TO_KEEP = frozenset({MessageType.LOGIN, MessageType.HEARTBEAT, MessageType.TIME_REQUEST})

# ---------------------------------------------------------------------- stage 1: resolve


@dataclass(frozen=True, slots=True)
class Resolution:
    device_id: str
    outcome: Outcome
    terminal: ResolvedTerminal | None
    expires: float  # monotonic

    @property
    def accepted(self) -> bool:
        return self.outcome == "accepted"

    @property
    def stored_id(self) -> str:
        """The id rows are stored under: the registry's spelling of the device id."""
        return self.terminal.device_id if self.terminal is not None else self.device_id


class TerminalCache:
    """Registry look-ups in a small thread pool, cached: known terminals for ``ttl_s``,
    unknown ones for ``negative_ttl_s`` (throttles a device that keeps reconnecting)."""

    def __init__(
        self,
        resolver: TerminalResolver,
        *,
        ttl_s: float = 300.0,
        negative_ttl_s: float = 30.0,
        max_entries: int = 200_000,
        workers: int = 4,
    ) -> None:
        self._resolver = resolver
        self.ttl_s = ttl_s
        self.negative_ttl_s = negative_ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[str, Resolution] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[Resolution]] = {}
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gateway-resolve")
        self.lookups = 0
        self.failures = 0

    def cached(self, device_id: str) -> Resolution | None:
        entry = self._entries.get(device_id)
        if entry is None or entry.expires < time.monotonic():
            return None
        return entry

    def forget(self, device_id: str | None = None) -> None:
        """Drop a cached answer (all of them with None): the registry changed."""
        if device_id is None:
            self._entries.clear()
        else:
            self._entries.pop(device_id, None)

    async def lookup(self, device_id: str) -> Resolution:
        cached = self.cached(device_id)
        if cached is not None:
            return cached
        pending = self._inflight.get(device_id)
        if pending is not None:
            return await asyncio.shield(pending)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Resolution] = loop.create_future()
        self._inflight[device_id] = future
        try:
            resolution = await loop.run_in_executor(self._pool, self._resolve, device_id)
            future.set_result(resolution)
            return resolution
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it
            raise
        finally:
            del self._inflight[device_id]

    def _resolve(self, device_id: str) -> Resolution:
        self.lookups += 1
        try:
            terminal = self._resolver.resolve(device_id)
        except Exception:
            # The registry is unreachable: do not refuse a known terminal because of that.
            # Accept for a short while without registry data; it is re-checked soon.
            self.failures += 1
            log.exception("terminal look-up failed for %s; accepting it provisionally", device_id)
            return Resolution(device_id, "accepted", None, time.monotonic() + 5.0)
        now = time.monotonic()
        if terminal is None:
            resolution = Resolution(device_id, "unknown", None, now + self.negative_ttl_s)
        elif not terminal.enabled:
            resolution = Resolution(device_id, "disabled", terminal, now + self.ttl_s)
        else:
            resolution = Resolution(device_id, "accepted", terminal, now + self.ttl_s)
        self._remember(resolution)
        return resolution

    def _remember(self, resolution: Resolution) -> None:
        # Called from pool threads; OrderedDict operations are atomic enough under the GIL
        # for a cache (a lost entry is only a repeated look-up).
        self._entries[resolution.device_id] = resolution
        if len(self._entries) > self.max_entries:
            try:
                self._entries.popitem(last=False)
            except KeyError:
                pass

    def run_blocking(self, fn: Callable[[], object]) -> asyncio.Future[object]:
        """Run other blocking registry work (quarantine upserts) on the same pool."""
        return asyncio.get_running_loop().run_in_executor(self._pool, fn)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


# ---------------------------------------------------------------------- stage 2: plausibility

EARTH_RADIUS_KM = 6371.0088
JUMP_MIN_KM = 0.5  # GPS noise never trips the jump check
# Fixes closer than this in both latitude and longitude are under JUMP_MIN_KM apart
# (0.003 degrees is at most 0.334 km; the diagonal at most 0.472 km), so the usual small
# step of a moving vehicle needs no haversine.
NEAR_DEGREES = 0.003


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


@dataclass(slots=True)
class _LastFix:
    time: datetime
    lat: float
    lon: float
    suspect: tuple[datetime, float, float] | None = None  # a jumped fix that may be the truth


class Plausibility:
    """Flags fixes that must not become a terminal's latest position: in the future,
    invalid or zero, an impossible jump from the last good fix, older than it (archived).

    After a jump, a following fix consistent with the jumped one (and not with the old
    anchor) shows the old anchor was wrong: it becomes the new anchor, unflagged."""

    def __init__(self, max_future_s: float, max_speed_kmh: float, max_terminals: int = 200_000) -> None:
        self.max_future_s = max_future_s
        self._max_future = timedelta(seconds=max_future_s)
        self.max_speed_kmh = max_speed_kmh
        self.max_terminals = max_terminals
        self._last: OrderedDict[str, _LastFix] = OrderedDict()

    def check(
        self, terminal_id: str, fix_time: datetime, received_at: datetime, valid: bool, lat: float, lon: float
    ) -> int:
        flags = 0
        if fix_time - received_at > self._max_future:
            flags |= Flag.FUTURE
        if not valid:
            flags |= Flag.NO_FIX
        if (lat == 0.0 and lon == 0.0) or not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            flags |= Flag.ZERO
        if flags:
            return flags
        last = self._last.get(terminal_id)
        if last is None:
            self._anchor(terminal_id, fix_time, lat, lon)
            return 0
        if fix_time < last.time:
            return Flag.STALE
        near = -NEAR_DEGREES < lat - last.lat < NEAR_DEGREES and -NEAR_DEGREES < lon - last.lon < NEAR_DEGREES
        if not near and self._implausible(last.time, last.lat, last.lon, fix_time, lat, lon):
            suspect = last.suspect
            if suspect is not None and not self._implausible(*suspect, fix_time, lat, lon):
                self._anchor(terminal_id, fix_time, lat, lon)
                return 0
            last.suspect = (fix_time, lat, lon)
            return Flag.JUMP
        last.time, last.lat, last.lon, last.suspect = fix_time, lat, lon, None
        return 0

    def _implausible(
        self, t1: datetime, lat1: float, lon1: float, t2: datetime, lat2: float, lon2: float
    ) -> bool:
        if -NEAR_DEGREES < lat2 - lat1 < NEAR_DEGREES and -NEAR_DEGREES < lon2 - lon1 < NEAR_DEGREES:
            return False
        km = distance_km(lat1, lon1, lat2, lon2)
        if km < JUMP_MIN_KM:
            return False
        hours = max((t2 - t1).total_seconds(), 1.0) / 3600.0
        return km / hours > self.max_speed_kmh

    def _anchor(self, terminal_id: str, fix_time: datetime, lat: float, lon: float) -> None:
        self._last[terminal_id] = _LastFix(fix_time, lat, lon)
        if len(self._last) > self.max_terminals:
            self._last.popitem(last=False)


FLAG_NAMES = {
    Flag.FUTURE: "future",
    Flag.NO_FIX: "no_fix",
    Flag.ZERO: "zero",
    Flag.JUMP: "jump",
    Flag.STALE: "stale",
}


# ---------------------------------------------------------------------- stage 3: rows


def needs_durable_ack(messages: list[Message]) -> bool:
    """Whether the frame's reply must wait until its rows are durable."""
    for message in messages:  # noqa: SIM110 - a loop, not any(): no generator per frame
        if message.type not in NOTHING_TO_KEEP:
            return True
    return False


# Rows are built with positional arguments (a third of the cost of keywords for sixteen
# fields); these checks keep that in step with the records' field order.
assert [f.name for f in fields(PositionRow)] == [
    "terminal_id", "fix_time", "received_at", "protocol", "valid", "lat", "lon", "altitude_m",
    "speed_kmh", "course", "satellites", "hdop", "alarms", "attributes", "raw", "flags",
]  # fmt: skip
assert [f.name for f in fields(EventRow)] == [
    "terminal_id", "time", "received_at", "protocol", "type", "alarms", "attributes", "raw",
]  # fmt: skip

_POSITION = MessageType.POSITION  # enum attribute look-ups are slow; a module constant is not


def to_rows(
    messages: list[Message],
    terminal_id: str,
    protocol: str,
    received_at: datetime,
    raw: bytes | None,
    plausibility: Plausibility,
) -> tuple[list[PositionRow], list[EventRow]]:
    """Positions for messages with a fix, events for every message that is not a plain
    position (an alarm with a fix gives both).  The raw frame goes on the first row."""
    positions: list[PositionRow] = []
    events: list[EventRow] = []
    for message in messages:
        fix_time, lat, lon = message.time, message.lat, message.lon
        if fix_time is not None and lat is not None and lon is not None:
            valid = message.valid is not False
            flags = plausibility.check(terminal_id, fix_time, received_at, valid, lat, lon)
            if flags:
                for bit, name in FLAG_NAMES.items():
                    if flags & bit:
                        metrics.tally(metrics.FLAGGED_FIXES, name).count += 1  # no lock per fix
            positions.append(
                PositionRow(
                    terminal_id,
                    fix_time,
                    received_at,
                    protocol,
                    valid,
                    lat,
                    lon,
                    message.altitude_m,
                    message.speed_kmh,
                    message.course,
                    message.satellites,
                    message.hdop,
                    [*message.alarms],
                    dict(message.attributes),
                    raw,
                    flags,
                )
            )
            raw = None
            if message.type == _POSITION:
                continue
        events.append(
            EventRow(
                terminal_id,
                fix_time or received_at,
                received_at,
                protocol,
                str(message.type),
                [*message.alarms],
                dict(message.attributes),
                raw,
            )
        )
        raw = None
    return positions, events
