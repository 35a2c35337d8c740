"""The on-disk spool: batches the database could not take, fsynced, drained oldest first.

Append-only segment files ``<seq>.seg`` in one folder hold records framed as
``MAGIC, length, CRC-32, payload``.  A record is acknowledged to a terminal only after its
``fsync`` returned.  Draining reads records from the oldest segment onwards; a cursor file
says how far the database has taken them (written without fsync: a lost cursor replays
records, and replays are duplicates the store ignores).  A fully drained segment is
deleted.  The spool is bounded by ``max_bytes``: ``append`` raises ``SpoolFull`` rather than
dropping anything.  At open, a torn record at the end of the newest segment (a crash during
a write that was never acknowledged) is cut off; a damaged record anywhere else is moved
aside to a ``.bad`` file, logged and counted, never silently dropped.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import struct
import zlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from core.messages import format_time
from gateway import metrics
from store.records import EventRow, IngestBatch, PositionRow

log = logging.getLogger(__name__)

MAGIC = b"GS"
HEADER = struct.Struct(">2sII")  # magic, payload length, crc32
MAX_RECORD = 256 * 1024 * 1024
CURSOR_FILE = "cursor"


class SpoolFull(RuntimeError):
    """The spool holds ``max_bytes``: the gateway must stop reading until it drains."""


@dataclass(frozen=True, slots=True, order=True)
class SpoolPosition:
    segment: int
    offset: int


@dataclass(slots=True)
class SpoolRecord:
    end: SpoolPosition  # where the next record starts: consume(end) marks this one done
    payload: bytes


class Spool:
    """One writer thread appends and drains; other threads only read the counters."""

    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int = 16 * 1024 * 1024) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.segment_bytes = max(64, min(segment_bytes, max_bytes // 4))
        self.size_bytes = 0
        self.records = 0  # records appended and not yet consumed
        self._segments: list[int] = []
        self._sizes: dict[int, int] = {}
        self._write_fd: int | None = None
        self._cursor = SpoolPosition(0, 0)
        self._recover()

    # ------------------------------------------------------------------ state

    @property
    def empty(self) -> bool:
        return self.records == 0

    @property
    def full(self) -> bool:
        return self.size_bytes >= self.max_bytes

    def has_room(self, payload_bytes: int) -> bool:
        return self.size_bytes + HEADER.size + payload_bytes <= self.max_bytes

    # ------------------------------------------------------------------ writing

    def append(self, payload: bytes) -> None:
        """Write one record and fsync it; raise ``SpoolFull`` when it would not fit."""
        if len(payload) > MAX_RECORD:
            raise ValueError(f"spool record of {len(payload)} bytes is larger than {MAX_RECORD}")
        if not self.has_room(len(payload)):
            raise SpoolFull(f"spool at {self.size_bytes} of {self.max_bytes} bytes")
        segment = self._segment_for_write(HEADER.size + len(payload))
        record = HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload
        fd = self._write_fd
        assert fd is not None
        written = 0
        while written < len(record):
            written += os.write(fd, record[written:])
        os.fsync(fd)
        self._sizes[segment] += len(record)
        self.size_bytes += len(record)
        self.records += 1
        self._publish()

    def _segment_for_write(self, record_bytes: int) -> int:
        if self._segments and self._write_fd is not None:
            last = self._segments[-1]
            if self._sizes[last] + record_bytes <= self.segment_bytes or self._sizes[last] == 0:
                return last
        self._close_writer()
        number = (self._segments[-1] + 1) if self._segments else self._cursor.segment + 1
        path = self._path(number)
        self._write_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        _fsync_directory(self.directory)
        self._segments.append(number)
        self._sizes[number] = 0
        return number

    def _close_writer(self) -> None:
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None

    # ------------------------------------------------------------------ draining

    def peek(self, max_records: int) -> list[SpoolRecord]:
        """The oldest records not yet consumed (at most ``max_records``)."""
        out: list[SpoolRecord] = []
        position = self._cursor
        for segment in list(self._segments):
            if segment < position.segment:
                continue
            offset = position.offset if segment == position.segment else 0
            with open(self._path(segment), "rb") as handle:
                handle.seek(offset)
                while len(out) < max_records:
                    header = handle.read(HEADER.size)
                    if not header:
                        break
                    payload = _read_record(header, handle)
                    if payload is None:
                        self._set_aside(segment, offset)
                        return out
                    offset += HEADER.size + len(payload)
                    out.append(SpoolRecord(SpoolPosition(segment, offset), payload))
            if len(out) >= max_records:
                break
        return out

    def consume(self, records: list[SpoolRecord]) -> None:
        """Mark records (from ``peek``) as stored; delete segments drained to their end."""
        if not records:
            return
        self._cursor = records[-1].end
        self.records = max(0, self.records - len(records))
        for segment in list(self._segments):
            drained = segment < self._cursor.segment or (
                segment == self._cursor.segment and self._cursor.offset >= self._sizes[segment]
            )
            is_writing = segment == self._segments[-1] and self._write_fd is not None
            if not drained or (is_writing and self.records):
                break
            if is_writing:
                self._close_writer()
            self._remove_segment(segment)
        self._write_cursor()
        self._publish()

    # ------------------------------------------------------------------ recovery

    def _recover(self) -> None:
        numbers = sorted(int(p.stem) for p in self.directory.glob("*.seg") if p.stem.isdigit())
        self._cursor = self._read_cursor()
        for number in numbers:
            size = self._path(number).stat().st_size
            if number < self._cursor.segment or (
                number == self._cursor.segment and self._cursor.offset >= size
            ):
                self._path(number).unlink()
                continue
            self._segments.append(number)
            self._sizes[number] = size
        if self._segments and self._cursor.segment < self._segments[0]:
            self._cursor = SpoolPosition(self._segments[0], 0)
        # Validate every record; count what is left to drain.
        for index, number in enumerate(list(self._segments)):
            start = self._cursor.offset if number == self._cursor.segment else 0
            good_end, count, damaged = _scan(self._path(number), start)
            newest = index == len(self._segments) - 1
            if damaged:
                self._set_aside(number, good_end, torn=newest)
            self.records += count
        self.size_bytes = sum(self._sizes.values())
        if self.records:
            log.warning("spool: %d batches (%d bytes) wait to be drained", self.records, self.size_bytes)
        self._publish()

    def _set_aside(self, segment: int, offset: int, *, torn: bool = False) -> None:
        """Move a damaged tail of a segment to a .bad file (kept for a person to look at).
        At the end of the newest segment it is most likely a write a crash interrupted
        (never acknowledged); elsewhere it is damage, counted and logged as an error."""
        path = self._path(segment)
        bad = path.with_suffix(f".{offset}.bad")
        with open(path, "rb") as source, open(bad, "wb") as target:
            source.seek(offset)
            target.write(source.read())
        os.truncate(path, offset)
        if torn:
            log.warning(
                "spool: torn record at the end of segment %d (offset %d) moved to %s", segment, offset, bad
            )
        else:
            metrics.SPOOL_CORRUPT.inc()
            log.error("spool: damaged record in segment %d at offset %d moved to %s", segment, offset, bad)
        removed = self._sizes[segment] - offset
        self._sizes[segment] = offset
        self.size_bytes -= removed

    def _remove_segment(self, segment: int) -> None:
        self._path(segment).unlink(missing_ok=True)
        self.size_bytes -= self._sizes.pop(segment, 0)
        self._segments.remove(segment)

    def _read_cursor(self) -> SpoolPosition:
        try:
            segment, offset = (self.directory / CURSOR_FILE).read_text().split()
            return SpoolPosition(int(segment), int(offset))
        except (FileNotFoundError, ValueError):
            return SpoolPosition(0, 0)

    def _write_cursor(self) -> None:
        temporary = self.directory / (CURSOR_FILE + ".tmp")
        temporary.write_text(f"{self._cursor.segment} {self._cursor.offset}\n")
        os.replace(temporary, self.directory / CURSOR_FILE)

    def _path(self, number: int) -> Path:
        return self.directory / f"{number:012d}.seg"

    def _publish(self) -> None:
        metrics.SPOOL_BYTES.set(self.size_bytes)
        metrics.SPOOL_RECORDS.set(self.records)

    def close(self) -> None:
        self._close_writer()


def _read_record(header: bytes, handle: Any) -> bytes | None:
    if len(header) < HEADER.size:
        return None
    magic, length, crc = HEADER.unpack(header)
    if magic != MAGIC or length > MAX_RECORD:
        return None
    payload: bytes = handle.read(length)
    if len(payload) != length or zlib.crc32(payload) != crc:
        return None
    return payload


def _scan(path: Path, start: int) -> tuple[int, int, bool]:
    """(end of the last good record, records from ``start``, whether damage follows)."""
    count = 0
    offset = start
    with open(path, "rb") as handle:
        handle.seek(start)
        while True:
            header = handle.read(HEADER.size)
            if not header:
                return offset, count, False
            payload = _read_record(header, handle)
            if payload is None:
                return offset, count, True
            offset += HEADER.size + len(payload)
            count += 1


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------- batch encoding


def _time(value: datetime) -> str:
    return format_time(value) or ""


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _raw(value: bytes | None) -> str | None:
    return base64.b64encode(value).decode("ascii") if value is not None else None


def _unraw(value: str | None) -> bytes | None:
    return base64.b64decode(value) if value is not None else None


def encode_batch(batch: IngestBatch) -> bytes:
    """An ``IngestBatch`` as a spool payload (JSON: readable, stable across versions)."""
    positions = [
        [
            p.terminal_id,
            _time(p.fix_time),
            _time(p.received_at),
            p.protocol,
            p.valid,
            p.lat,
            p.lon,
            p.altitude_m,
            p.speed_kmh,
            p.course,
            p.satellites,
            p.hdop,
            p.alarms,
            p.attributes,
            _raw(p.raw),
            p.flags,
        ]
        for p in batch.positions
    ]
    events = [
        [
            e.terminal_id,
            _time(e.time),
            _time(e.received_at),
            e.protocol,
            e.type,
            e.alarms,
            e.attributes,
            _raw(e.raw),
        ]
        for e in batch.events
    ]
    return json.dumps({"v": 1, "p": positions, "e": events}, separators=(",", ":")).encode()


def decode_batch(payload: bytes) -> IngestBatch:
    data = json.loads(payload)
    if data.get("v") != 1:
        raise ValueError(f"unknown spool record version {data.get('v')!r}")
    positions = [
        PositionRow(
            terminal_id=p[0],
            fix_time=_parse_time(p[1]),
            received_at=_parse_time(p[2]),
            protocol=p[3],
            valid=p[4],
            lat=p[5],
            lon=p[6],
            altitude_m=p[7],
            speed_kmh=p[8],
            course=p[9],
            satellites=p[10],
            hdop=p[11],
            alarms=p[12],
            attributes=p[13],
            raw=_unraw(p[14]),
            flags=p[15],
        )
        for p in data["p"]
    ]
    events = [
        EventRow(
            terminal_id=e[0],
            time=_parse_time(e[1]),
            received_at=_parse_time(e[2]),
            protocol=e[3],
            type=e[4],
            alarms=e[5],
            attributes=e[6],
            raw=_unraw(e[7]),
        )
        for e in data["e"]
    ]
    return IngestBatch(positions=positions, events=events)
