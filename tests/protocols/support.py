"""Shared helpers for protocol tests: the captured frames, sanity rules, framer feeding."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from core.messages import Message
from core.vocabulary import ALARMS
from gateway.protocols.base import ProtocolSpec

FRAMES = Path(__file__).resolve().parent.parent / "data" / "frames"


@dataclass(frozen=True)
class Capture:
    """One real device frame from tests/data/frames/<protocol>.jsonl."""

    protocol: str
    encoding: str  # "hex" or "text"
    frame: str
    check: str  # verifyPosition(s), verifyAttribute(s), verifyNull, verifyNotNull
    expected: dict[str, Any]
    note: str
    seq: int
    integrity: str  # "ok" or "as-in-source: ..."

    @property
    def wire(self) -> bytes:
        return bytes.fromhex(self.frame) if self.encoding == "hex" else self.frame.encode("latin-1")

    @property
    def intact(self) -> bool:
        return self.integrity == "ok"

    def __str__(self) -> str:
        return f"{self.protocol}#{self.seq}:{self.note}"


def load_captures(protocol: str) -> list[Capture]:
    captures = []
    with open(FRAMES / f"{protocol}.jsonl", encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            row = json.loads(line)
            captures.append(
                Capture(
                    protocol=row["protocol"],
                    encoding=row["encoding"],
                    frame=row["frame"],
                    check=row["check"],
                    expected=row.get("expected", {}),
                    note=row.get("note", ""),
                    seq=row.get("seq", 0),
                    integrity=row.get("frame_integrity", "ok"),
                )
            )
    return captures


# Shared sanity rules every decoded message must satisfy.
EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)
SPEED_CAP_KMH = 1000.0


def assert_sane(message: Message, *, latest: datetime | None = None) -> None:
    latest = latest or datetime.now(UTC) + timedelta(days=2)
    if message.time is not None:
        assert message.time.tzinfo is not None and message.time.utcoffset() == timedelta(0), message
        assert EARLIEST <= message.time <= latest, message.time
    if message.lat is not None:
        assert -90.0 <= message.lat <= 90.0, message.lat
    if message.lon is not None:
        assert -180.0 <= message.lon <= 180.0, message.lon
    if message.speed_kmh is not None:
        assert 0.0 <= message.speed_kmh <= SPEED_CAP_KMH, message.speed_kmh
    if message.course is not None:
        assert 0.0 <= message.course <= 360.0, message.course
    if message.satellites is not None:
        assert 0 <= message.satellites <= 128, message.satellites
    for alarm in message.alarms:
        assert alarm in ALARMS, f"alarm {alarm!r} is not in the shared vocabulary"
    json.dumps(message.to_json_dict())  # attributes must be JSON values


def feedings(
    frames: list[bytes], garbage: bytes = b"\x00\x13garbage\xff"
) -> Iterator[tuple[str, list[bytes]]]:
    """The ways a framer must be fed the same frames: whole, halved, byte by byte, behind
    garbage, and all joined in one chunk.  Yields (name, chunks)."""
    stream = b"".join(frames)
    yield "whole", list(frames)
    halves = []
    for frame in frames:
        middle = len(frame) // 2
        halves += [frame[:middle], frame[middle:]]
    yield "halves", halves
    yield "bytes", [stream[i : i + 1] for i in range(len(stream))]
    yield "behind-garbage", [garbage + frame for frame in frames]
    yield "joined", [stream]


def run_framer(spec: ProtocolSpec, chunks: list[bytes]) -> list[bytes]:
    framer = spec.framer()
    out: list[bytes] = []
    for chunk in chunks:
        out.extend(framer.feed(chunk))
    return out
