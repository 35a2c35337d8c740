"""Checks shared by the binary protocol tests: captured frames against their expectations,
framer feedings, and decoding a session of frames."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from datetime import tzinfo as TzInfo
from typing import Any

import pytest

from core.messages import Message
from gateway.protocols.base import ChecksumError, DecodeContext, ProtocolError, ProtocolSpec
from tests.protocols.support import Capture, assert_sane, feedings, run_framer

# Traccar attribute names in the captures -> gpsfleet keys.
TRACCAR_KEYS = {
    "power": "power_v",
    "battery": "battery_v",
    "batteryLevel": "battery_level",
    "iccid": "iccid",
    "ignition": "ignition",
    "charge": "charging",
    "odometer": "odometer_m",
    "fuel1": "fuel",
    "fuel2": "jt808.fuel2",
    "driverUniqueId": "driver_id",
    "temp1": "temperature_c",
}
# Traccar alarm names -> gpsfleet alarm names (protocol-specific ones are passed in).
TRACCAR_ALARMS = {
    "sos": "sos",
    "tampering": "tamper",
    "removing": "tamper",
    "general": "general",
    "hardAcceleration": "harsh_acceleration",
    "hardBraking": "harsh_braking",
    "accident": "accident",
    "powerCut": "power_cut",
    "overspeed": "overspeed",
}


def decode_capture(
    spec: ProtocolSpec, capture: Capture, tz: TzInfo = UTC, *, intact: bool | None = None
) -> list[Message]:
    """Decode one capture as its integrity allows: strictly when intact; otherwise check
    that strict decoding refuses it and that lenient decoding flags it."""
    if capture.intact if intact is None else intact:
        decoded = spec.decode(capture.wire, DecodeContext(tz=tz))
        messages = decoded.messages
        for message in messages:
            assert message.attributes.get("checksum_ok") is not False
        return messages
    with pytest.raises(ProtocolError) as refused:
        spec.decode(capture.wire, DecodeContext(tz=tz))
    if "crc" in capture.integrity.lower():
        assert isinstance(refused.value, ChecksumError), refused.value
    decoded = spec.decode(capture.wire, DecodeContext(tz=tz, lenient=True))
    for message in decoded.messages:
        assert message.attributes["checksum_ok"] is False
    return decoded.messages


def check_capture(
    spec: ProtocolSpec,
    capture: Capture,
    *,
    tz: TzInfo = UTC,
    alarms: dict[str, str] | None = None,
    unmapped: frozenset[str] = frozenset(),
    intact: bool | None = None,
) -> list[Message]:
    """The capture decodes to what its check and expected values say."""
    messages = decode_capture(spec, capture, tz, intact=intact)
    latest = datetime.now(UTC)
    for message in messages:
        assert_sane(message, latest=latest)
    check = capture.check
    without_location = "checkLocation=false" in capture.note
    if check.startswith("verifyPosition") and not without_location:
        assert any(m.has_fix for m in messages), messages
    elif check == "verifyNull":
        assert not any(m.has_fix for m in messages), messages
    else:
        assert messages, f"{capture} decoded to nothing"
    expected = dict(capture.expected)
    if "time" in expected:
        fix = next(m for m in messages if m.has_fix)
        assert fix.time == datetime.fromisoformat(expected.pop("time")).replace(tzinfo=UTC)
        assert fix.valid is expected.pop("valid")
        assert fix.lat == pytest.approx(expected.pop("lat"), abs=1e-5)
        assert fix.lon == pytest.approx(expected.pop("lon"), abs=1e-5)
    for key, value in expected.items():
        if key in unmapped:
            continue  # a vendor value gpsfleet keeps raw (see the test's UNMAPPED note)
        if key == "alarm":
            names = {**TRACCAR_ALARMS, **(alarms or {})}
            assert any(names[value] in m.alarms for m in messages), (value, messages)
            continue
        ours = TRACCAR_KEYS[key]
        values = [m.attributes[ours] for m in messages if ours in m.attributes]
        assert values, f"{capture}: no {ours} in {messages}"
        if isinstance(value, float):
            assert values[0] == pytest.approx(value, abs=1e-3)
        else:
            assert values[0] == value
    return messages


def decode_session(
    spec: ProtocolSpec, frames: list[bytes], tz: TzInfo = UTC, transport: str = "tcp"
) -> list[Any]:
    """Decode frames in one session: JSON shapes of the messages; a refused frame gives
    the error kind in its place."""
    ctx = DecodeContext(tz=tz, transport=transport, received_at=datetime(2024, 1, 1, tzinfo=UTC))
    out: list[Any] = []
    for frame in frames:
        try:
            decoded = spec.decode(frame, ctx)
        except ProtocolError as exc:
            out.append(exc.kind)
            continue
        if decoded.terminal_id:
            ctx.terminal_id = decoded.terminal_id
        out.extend(m.to_json_dict() for m in decoded.messages)
    return out


def check_feedings(
    spec: ProtocolSpec,
    frames: list[bytes],
    corrupt: Callable[[bytes], bytes],
    tz: TzInfo = UTC,
) -> None:
    """Whole, halved, byte by byte, behind garbage, joined, and after a bad-checksum copy:
    the framer gives frames that decode to the same messages."""
    direct = decode_session(spec, frames, tz)
    assert direct and "checksum" not in direct
    for name, chunks in feedings(frames):
        framed = run_framer(spec, chunks)
        assert decode_session(spec, framed, tz) == direct, name
    checked = [frame for frame in frames if corrupt(frame) != frame]  # frames with a checksum
    framed = run_framer(spec, [corrupt(frame) + frame for frame in checked])
    assert len(framed) == 2 * len(checked)
    decoded = decode_session(spec, framed, tz)
    assert [item for item in decoded if item != "checksum"] == decode_session(spec, checked, tz)
    assert decoded.count("checksum") == len(checked)
