"""Binary decoders against recorded output: a device session and damaged frames decode to
exactly what they decoded to when the recording was made.

The decoders' hot paths are tuned for speed (``gpsfleet bench decode``); this pins every
field, attribute, alarm, reply byte and error text of a realistic session, so that a faster
path that reads one thing differently fails here.  The recording, in tests/data/golden, was
made with the decoders before they were tuned.  After an intended change of decoded output,
re-record with ``python -m tests.protocols.test_decode_golden`` and review the diff.
"""

from __future__ import annotations

import json
import math
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.messages import Message, MessageType
from core.vocabulary import Alarm, Attr
from gateway.protocols import PROTOCOLS
from gateway.protocols.base import DecodeContext, DeviceCodec, ProtocolError, parse_tz

GOLDEN = Path(__file__).resolve().parent.parent / "data" / "golden"
PROTOCOL_NAMES = ("jt808", "gt06", "teltonika")
TERMINAL_IDS = {"jt808": "013912345678", "gt06": "352099001234564", "teltonika": "352099001234564"}
START = datetime(2026, 3, 14, 6, 30, tzinfo=UTC)
RECEIVED_AT = datetime(2026, 3, 14, 9, 0, tzinfo=UTC)


def _fix(index: int) -> Message:
    angle = index / 24 * 2 * math.pi
    return Message(
        MessageType.POSITION,
        time=START + timedelta(seconds=37 * index),
        valid=index % 9 != 4,
        lat=round(-33.86 + 0.04 * math.sin(angle), 6)
        if index % 7 == 3
        else round(48.137 + 0.05 * math.sin(angle), 6),
        lon=round(-58.38 + 0.07 * math.cos(angle), 6)
        if index % 5 == 2
        else round(11.575 + 0.08 * math.cos(angle), 6),
        speed_kmh=round(45 * abs(math.sin(angle * 3)), 1),
        course=round(math.degrees(angle) % 360, 1),
        altitude_m=float(480 + index % 17),
        satellites=index % 14,
        hdop=1.1,
        alarms=[[], [Alarm.SOS], [Alarm.OVERSPEED], [Alarm.POWER_CUT, Alarm.LOW_POWER]][index % 11 % 4],
        attributes={
            Attr.IGNITION: index % 6 != 0,
            Attr.POWER_V: round(12.0 + index % 5 * 0.35, 2),
            Attr.BATTERY_V: 4.05,
            Attr.BATTERY_LEVEL: 100 - index,
            Attr.ODOMETER_M: 2_000_000 + 450 * index,
            Attr.GSM_SIGNAL: index * 7 % 100,
            Attr.FUEL: 31.5,
            Attr.ICCID: "89860112345678901234",
        },
    )


def _session_writes(device: DeviceCodec) -> list[bytes]:
    """What one terminal sends: handshake, fixes, a stored batch, heartbeats and a status."""
    sent = [device.handshake()]
    for index in range(24):
        sent.append(device.position(_fix(index)))
        if index % 8 == 7:
            sent.append(device.heartbeat({Attr.BATTERY_LEVEL: 70}))
    sent.append(device.positions([_fix(index) for index in range(24, 29)]))
    sent.append(
        device.status({Attr.POWER_V: 11.2, Attr.BATTERY_LEVEL: 15}, [Alarm.LOW_POWER, Alarm.LOW_BATTERY])
    )
    return [item.data for item in sent if item is not None]


def _damaged(frame: bytes) -> list[bytes]:
    """Bit flips, truncations and a dropped byte at some eight places of one frame."""
    variants = []
    for index in range(0, len(frame), max(1, len(frame) // 8)):
        variants.append(frame[:index] + bytes((frame[index] ^ 0x41,)) + frame[index + 1 :])
        variants.append(frame[:index])
        variants.append(frame[:index] + frame[index + 1 :])
    return variants


def _result(name: str, writes: list[bytes], lenient: bool, terminal_id: str | None) -> list[Any]:
    """Each frame's messages, reply and announced id (or its error), in session order."""
    spec = PROTOCOLS[name]
    framer = spec.framer()
    context = DecodeContext(
        terminal_id=terminal_id, tz=parse_tz(spec.default_tz), lenient=lenient, received_at=RECEIVED_AT
    )
    out: list[Any] = []
    for data in writes:
        for frame in framer.feed(data):
            try:
                decoded = spec.decode(frame, context)
            except ProtocolError as exc:
                out.append({"error": f"{type(exc).__name__}: {exc}"})
                continue
            if decoded.terminal_id:
                context.terminal_id = decoded.terminal_id
            out.append(
                {
                    "messages": [_exact(message) for message in decoded.messages],
                    "reply": decoded.reply.hex() if decoded.reply is not None else None,
                    "terminal_id": decoded.terminal_id,
                }
            )
    out.append({"garbage_bytes": framer.garbage_bytes, "buffered": framer.buffered})
    return out


def _exact(message: Message) -> dict[str, Any]:
    """The public JSON shape (json tells 1 from 1.0 and True), the time at full precision
    with its offset."""
    shape = message.to_json_dict()
    shape["time"] = message.time.isoformat() if message.time is not None else None
    return shape


def record(name: str) -> list[dict[str, Any]]:
    """The cases of one protocol with what the decoders make of them now."""
    spec = PROTOCOLS[name]
    assert spec.device is not None
    terminal_id = TERMINAL_IDS[name]
    device = spec.device(terminal_id, tz=parse_tz(spec.default_tz))
    writes = _session_writes(device)
    cases: list[tuple[list[bytes], bool, str | None]] = [(writes, False, None)]
    # the first fix, the last fix or batch and a heartbeat, damaged, each in a session of its own
    samples = [writes[1], writes[-2]] + [write for write in writes[2:12] if len(write) < 24][:1]
    for sample in samples:
        for variant in _damaged(sample):
            for lenient in (False, True):
                cases.append(([variant], lenient, terminal_id))
    return [
        {
            "writes": [write.hex() for write in case_writes],
            "lenient": lenient,
            "terminal_id": case_id,
            "result": _result(name, case_writes, lenient, case_id),
        }
        for case_writes, lenient, case_id in cases
    ]


def _load(name: str) -> list[dict[str, Any]]:
    path = GOLDEN / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize("name", PROTOCOL_NAMES)
def test_decoded_output_matches_the_recording(name: str) -> None:
    cases = _load(name)
    assert len(cases) > 30
    mismatches = []
    for number, case in enumerate(cases):
        writes = [bytes.fromhex(write) for write in case["writes"]]
        actual = json.loads(json.dumps(_result(name, writes, case["lenient"], case["terminal_id"])))
        if actual != case["result"]:
            mismatches.append(number)
    assert not mismatches, f"{name}: cases {mismatches[:10]} decode differently from tests/data/golden"


@pytest.mark.parametrize("name", PROTOCOL_NAMES)
def test_the_recorded_session_decodes_positions_with_replies(name: str) -> None:
    session = _load(name)[0]["result"]
    decoded = [frame for frame in session if "messages" in frame]
    assert len(decoded) == len(session) - 1, "every frame of the session decoded"
    fixes = [m for frame in decoded for m in frame["messages"] if m["lat"] is not None]
    assert len(fixes) >= 24
    assert any(frame["reply"] for frame in decoded)


def main() -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for name in sys.argv[1:] or PROTOCOL_NAMES:
        lines = [json.dumps(case, sort_keys=True) for case in record(name)]
        (GOLDEN / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"{name}: {len(lines)} cases")


if __name__ == "__main__":
    main()
