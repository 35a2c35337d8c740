"""The on-disk spool: records survive reopening, drain oldest first, a torn tail is cut, a
damaged record is set aside (never silently dropped), and a full spool refuses."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.spool import Spool, SpoolFull, decode_batch, encode_batch
from store.records import EventRow, IngestBatch, PositionRow


def _payload(number: int) -> bytes:
    return f"record-{number:04d}".encode() * 4


def test_records_survive_reopening_and_drain_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1_000_000, segment_bytes=200)  # several segments
    for number in range(20):
        spool.append(_payload(number))
    spool.close()
    reopened = Spool(tmp_path, max_bytes=1_000_000, segment_bytes=200)
    assert reopened.records == 20
    first = reopened.peek(7)
    assert [r.payload for r in first] == [_payload(n) for n in range(7)]
    reopened.consume(first)
    reopened.close()
    again = Spool(tmp_path, max_bytes=1_000_000, segment_bytes=200)
    rest = again.peek(100)
    assert [r.payload for r in rest] == [_payload(n) for n in range(7, 20)]
    again.consume(rest)
    assert again.empty and again.size_bytes == 0
    assert not list(tmp_path.glob("*.seg"))


def test_a_torn_record_at_the_end_is_cut_off(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1_000_000)
    for number in range(3):
        spool.append(_payload(number))
    spool.close()
    segment = sorted(tmp_path.glob("*.seg"))[-1]
    with open(segment, "ab") as handle:  # a crash in the middle of the next append
        handle.write(b"GS\x00\x00\x01\x00\x12\x34")
    reopened = Spool(tmp_path, max_bytes=1_000_000)
    assert [r.payload for r in reopened.peek(10)] == [_payload(n) for n in range(3)]
    reopened.append(_payload(3))
    assert [r.payload for r in reopened.peek(10)][-1] == _payload(3)


def test_a_damaged_record_in_an_older_segment_is_set_aside(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1_000_000, segment_bytes=120)
    for number in range(6):
        spool.append(_payload(number))
    spool.close()
    oldest = sorted(tmp_path.glob("*.seg"))[0]
    data = bytearray(oldest.read_bytes())
    data[-3] ^= 0xFF  # flip a byte of the last record's payload
    oldest.write_bytes(bytes(data))
    reopened = Spool(tmp_path, max_bytes=1_000_000, segment_bytes=120)
    payloads = [r.payload for r in reopened.peek(100)]
    assert len(payloads) == 5 and _payload(5) in payloads
    assert list(tmp_path.glob("*.bad")), "the damaged bytes are kept for a person to look at"


def test_a_full_spool_refuses_instead_of_dropping(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=2048)
    written = 0
    with pytest.raises(SpoolFull):
        while True:
            spool.append(b"x" * 100)
            written += 1
    assert spool.records == written and spool.size_bytes <= 2048
    spool.consume(spool.peek(written // 2 + 1))  # drains the oldest segment: its file goes
    assert spool.size_bytes < 2048 - 110
    spool.append(b"x" * 100)  # room again


def test_batches_round_trip_through_the_spool_format() -> None:
    now = datetime(2026, 5, 1, 12, 30, 15, 250000, tzinfo=UTC)
    batch = IngestBatch(
        positions=[
            PositionRow(
                "T1",
                now,
                now,
                "jt808",
                True,
                31.5,
                121.25,
                10.0,
                50.5,
                90.0,
                9,
                0.8,
                ["sos"],
                {"ignition": True, "cell": {"mcc": 460}},
                b"\x7e\x01",
                8,
            )
        ],
        events=[EventRow("T1", now, now, "jt808", "heartbeat", [], {"gsm_signal": 80}, None)],
    )
    assert decode_batch(encode_batch(batch)) == batch


def test_spool_files_are_private(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000)
    spool.append(b"secret positions")
    segment = next(tmp_path.glob("*.seg"))
    assert os.stat(segment).st_mode & 0o077 == 0
