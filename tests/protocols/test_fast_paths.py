"""The decoders' fast paths (JT/T 808 and GT06 frames read in place, the framers'
whole-frame test, the remembered device-clock hours, the 0x8001 check code folded from its
fields) give exactly what the general paths give."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.decode import build_mix
from core.messages import Message
from gateway.protocols import get_protocol, gt06, jt808
from gateway.protocols.base import DecodeContext, Decoded, MalformedFrame, ProtocolError, Split, StreamFramer
from gateway.protocols.binary import BCD, DeviceClock, device_time
from gateway.protocols.gt06 import fields as gt06_fields
from gateway.protocols.gt06 import messages as gt06_messages
from gateway.protocols.jt808 import messages as jt808_messages
from tests.protocols.support import load_captures

JT808 = get_protocol("jt808")
GT06 = get_protocol("gt06")
CST = timezone(timedelta(hours=8))
RECEIVED = datetime(2024, 5, 1, 12, tzinfo=UTC)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PHONE = "013345678906"
ZONES = (UTC, CST, timezone(-timedelta(hours=5, minutes=30)))


def context(tz: tzinfo = CST, lenient: bool = False) -> DecodeContext:
    return DecodeContext(tz=tz, lenient=lenient, received_at=RECEIVED)


def message_view(message: Message) -> tuple[Any, ...]:
    """Every field, attributes in their order (the JSON shape keeps it)."""
    return (message.to_json_dict(), list(message.attributes.items()), message.time)


def outcome(decode: Any, frame: bytes, ctx: DecodeContext) -> tuple[Any, ...]:
    try:
        decoded: Decoded = decode(frame, ctx)
    except ProtocolError as exc:
        return ("error", type(exc), str(exc))
    return (
        [message_view(m) for m in decoded.messages],
        decoded.reply,
        decoded.terminal_id,
        repr(sorted(ctx.state.items())),
    )


def jt808_general(frame: bytes, ctx: DecodeContext) -> Decoded:
    if frame[:1] == b"(":
        return jt808.decode_text(frame, ctx)
    return jt808_messages.decode_opened(jt808.open_frame(frame, ctx.lenient), ctx)


def gt06_general(frame: bytes, ctx: DecodeContext) -> Decoded:
    return gt06_messages.decode_packet(gt06.open_packet(frame, ctx.lenient), ctx)


def session_agrees(spec: Any, general: Any, frames: list[bytes], lenient: bool) -> None:
    """Decode a session's frames in order both ways, each with its own context."""
    fast_ctx, general_ctx = context(lenient=lenient), context(lenient=lenient)
    for frame in frames:
        assert outcome(spec.decode, frame, fast_ctx) == outcome(general, frame, general_ctx), frame.hex()
        fast_ctx.terminal_id = general_ctx.terminal_id = None


# --------------------------------------------------------------------------- JT/T 808


def jt808_frames() -> list[bytes]:
    """The bench's session (locations, heartbeats, batches, registration, captures) and every
    intact capture on its own."""
    frames = [frame for write in build_mix(JT808) for frame in JT808.split(write).frames]
    frames += [c.wire for c in load_captures("jt808") if c.intact and c.encoding == "hex"]
    return frames


@pytest.mark.parametrize("lenient", [False, True])
def test_jt808_fast_path_agrees_on_the_bench_session_and_captures(lenient):
    frames = jt808_frames()
    assert sum(1 for frame in frames if 0x7D in frame[1:-1]) >= 5  # escaped frames are in the mix
    session_agrees(JT808, jt808_general, frames, lenient)


def test_jt808_fast_path_agrees_on_broken_frames():
    """Wrong check codes, lengths and flags: the fast path must hand them on, untouched."""
    frames = []
    for frame in jt808_frames()[:60]:
        frames.append(frame[:-2] + bytes((frame[-2] ^ 0x01,)) + frame[-1:])  # check code
        frames.append(frame[:3] + bytes((frame[3] ^ 0x01,)) + frame[4:])  # body length
        frames.append(frame[:-1] + b"\x00")  # end flag
        frames.append(frame[:-3] + frame[-2:])  # a byte short
    for lenient in (False, True):
        session_agrees(JT808, jt808_general, frames, lenient)


def test_jt808_vendor_location_whose_length_fits_a_2013_header_is_read_as_vendor():
    """0x5501 has a 1-byte serial: a frame whose declared length happens to fit the 2-byte
    one must still be read with the vendor header."""
    capture = next(c.wire for c in load_captures("jt808") if c.wire[1:3] == b"\x55\x01")
    vendor_body = jt808.open_frame(capture, lenient=True).body
    assert len(vendor_body) >= 34
    # the vendor reading takes the serial's low byte as the body's first byte
    frame = jt808.encode_frame(0x5501, bytes.fromhex(PHONE), vendor_body[0], vendor_body[1:])
    decoded = JT808.decode(frame, context())
    assert decoded.messages[0].attributes.get("charging") is True
    session_agrees(JT808, jt808_general, [frame], lenient=False)


PHONES = st.binary(min_size=6, max_size=6)
IDS = st.sampled_from([jt808.LOCATION, jt808.HEARTBEAT, jt808.BATCH, jt808.REGISTER, 0x0900, 0x5501, 0x0003])


@FUZZ
@given(
    msg_id=IDS,
    phone=PHONES,
    serial=st.integers(0, 0xFFFF),
    body=st.binary(max_size=80),
    version=st.sampled_from([None, None, 1]),
    subpackage=st.sampled_from([None, None, (2, 1), (1, 1)]),
    lenient=st.booleans(),
)
def test_jt808_fast_path_agrees_on_any_frame(msg_id, phone, serial, body, version, subpackage, lenient):
    if version is not None:
        phone = b"\x00" * 4 + phone
    frame = jt808.encode_frame(msg_id, phone, serial, body, version, subpackage)
    session_agrees(JT808, jt808_general, [frame], lenient)


@FUZZ
@given(
    phone=PHONES,
    serial=st.integers(0, 0xFFFF),
    msg_id=st.integers(0, 0xFFFF),
    result=st.integers(0, 4),
    own_serial=st.integers(0, 0xFFFF),
)
def test_jt808_acknowledge_equals_the_encoded_frame(phone, serial, msg_id, result, own_serial):
    ctx = context()
    ctx.state["jt808.serial"] = own_serial
    reply = jt808_messages.acknowledge(phone, serial, msg_id, ctx, result)
    next_serial = (own_serial + 1) & 0xFFFF
    body = struct.pack(">HHB", serial, msg_id, result)
    assert reply == jt808.encode_frame(jt808.PLATFORM_RESPONSE, phone, next_serial, body)
    assert ctx.state["jt808.serial"] == next_serial


# --------------------------------------------------------------------------- GT06


def gt06_frames() -> list[bytes]:
    frames = [frame for write in build_mix(GT06) for frame in GT06.split(write).frames]
    frames += [c.wire for c in load_captures("gt06") if c.intact]
    return frames


@pytest.mark.parametrize("lenient", [False, True])
def test_gt06_fast_path_agrees_on_the_bench_session_and_captures(lenient):
    session_agrees(GT06, gt06_general, gt06_frames(), lenient)


def test_gt06_fast_path_agrees_on_broken_frames():
    frames = []
    for frame in gt06_frames()[:60]:
        frames.append(frame[:-3] + bytes((frame[-3] ^ 0x01,)) + frame[-2:])  # CRC
        frames.append(frame[:2] + bytes((frame[2] ^ 0x01,)) + frame[3:])  # length
        frames.append(frame[:-1] + b"\x00")  # end
    for lenient in (False, True):
        session_agrees(GT06, gt06_general, frames, lenient)


@FUZZ
@given(
    protocol=st.sampled_from(sorted(gt06_messages._UNANSWERED_FIXES | {gt06.STATUS, gt06.ALARM, 0x2A})),
    content=st.binary(max_size=60),
    serial=st.integers(0, 0xFFFF),
    lenient=st.booleans(),
)
def test_gt06_fast_path_agrees_on_any_frame(protocol, content, serial, lenient):
    frame = gt06.encode_packet(protocol, content, serial)
    session_agrees(GT06, gt06_general, [frame], lenient)


@FUZZ
@given(
    protocol=st.sampled_from(sorted(gt06_messages._USUAL_CELL_TYPES)),
    gps=st.binary(min_size=18, max_size=18),
    cell=st.binary(min_size=8, max_size=8),
    rest=st.binary(max_size=12),
)
def test_gt06_gps_and_cell_in_one_unpack_equal_the_general_readers(protocol, gps, cell, rest):
    content = gps + cell + rest
    try:
        expected = gt06_fields.read_gps(content, 0, context())
        expected_cell, _ = gt06_fields.read_cell(content, 18)
    except MalformedFrame:
        with pytest.raises(MalformedFrame):
            gt06_messages.gps_lbs_message(protocol, content, context())
        return
    message = gt06_messages.gps_lbs_message(protocol, content, context())
    assert message.attributes.pop("cell") == expected_cell
    assert message_view(message)[2] == expected.time
    for field in ("type", "valid", "lat", "lon", "speed_kmh", "course", "satellites", "alarms"):
        assert getattr(message, field) == getattr(expected, field)


@given(protocol=st.integers(0, 0xFF), serial=st.one_of(st.none(), st.integers(0, 0xFFFF)))
def test_gt06_echo_equals_the_encoded_packet(protocol, serial):
    assert gt06.frames.reply(protocol, serial) == gt06.encode_packet(protocol, b"", serial or 0)


# --------------------------------------------------------------------------- framers


@pytest.mark.parametrize("spec", [JT808, GT06], ids=lambda spec: spec.name)
def test_whole_frame_agrees_with_split(spec):
    samples = build_mix(spec)
    samples += [write[:-1] for write in samples] + [write + write[:3] for write in samples]
    assert spec.whole_frame is not None
    assert any(spec.whole_frame(write) for write in samples)
    for write in samples:
        if spec.whole_frame(write):  # then split, by its fast path or its loop, gives that frame
            for split in (spec.split, general_split(spec)):
                result = split(write)
                assert (result.consumed, result.frames, result.garbage) == (len(write), [write], 0)


def general_split(spec: Any) -> Any:
    """``split`` by its general loop: a garbage byte in front keeps it off its fast path."""

    def split(buffer: bytes) -> Split:
        result = spec.split(b"\x00" + buffer)
        assert result.consumed >= 1 and result.garbage >= 1
        return Split(result.consumed - 1, result.frames, result.garbage - 1)

    return split


@FUZZ
@given(data=st.data(), name=st.sampled_from(["jt808", "gt06"]))
def test_framer_with_and_without_whole_frame_cut_the_same(data, name):
    spec = get_protocol(name)
    writes = build_mix_cached(name)
    stream = b"".join(data.draw(st.lists(st.sampled_from(writes), min_size=1, max_size=6)))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=5)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    with_test = spec.framer()
    without = StreamFramer(general_split(spec), spec.max_frame * 2)
    for chunk in chunks:
        assert with_test.feed(chunk) == without.feed(chunk)
    assert (with_test.frames, with_test.garbage_bytes, with_test.buffered) == (
        without.frames,
        without.garbage_bytes,
        without.buffered,
    )


_MIXES: dict[str, list[bytes]] = {}


def build_mix_cached(name: str) -> list[bytes]:
    if name not in _MIXES:
        _MIXES[name] = build_mix(get_protocol(name))[:40]
    return _MIXES[name]


# --------------------------------------------------------------------------- device clocks


def clock_fields(raw: bytes, bcd: bool) -> tuple[int, ...]:
    return tuple(BCD[byte] for byte in raw) if bcd else tuple(raw)


def expected_time(raw: bytes, bcd: bool, tz: tzinfo) -> datetime | type[MalformedFrame]:
    year, month, day, hour, minute, second = clock_fields(raw, bcd)
    try:
        return device_time(2000 + year, month, day, hour, minute, second, tz)
    except MalformedFrame:
        return MalformedFrame


def jt808_time(raw: bytes, tz: tzinfo) -> datetime | type[MalformedFrame]:
    body = bytes(8) + bytes.fromhex("0000000300000004") + bytes(6) + raw
    try:
        return jt808.decode_location(body, 0, len(body), "013345678906", context(tz)).time  # type: ignore[return-value]
    except MalformedFrame:
        return MalformedFrame


def gt06_time(raw: bytes, tz: tzinfo) -> datetime | type[MalformedFrame] | None:
    hour_key, minute_second = struct.unpack(">IH", raw)
    try:
        return gt06_fields.fix_message(
            gt06_fields._POSITION, context(tz), hour_key, minute_second, 9, 1, 1, 0, 0x1000
        ).time
    except MalformedFrame:
        return MalformedFrame


CLOCKS = st.one_of(
    st.binary(min_size=6, max_size=6),
    st.tuples(
        st.integers(0, 99), st.integers(1, 12), st.integers(1, 31), st.integers(0, 23), st.integers(0, 59)
    ).map(lambda t: bytes.fromhex("".join(f"{v:02d}" for v in t)) + b"\x30"),
)


@FUZZ
@given(raw=CLOCKS, zones=st.lists(st.sampled_from(ZONES), min_size=1, max_size=3))
def test_remembered_clock_hours_give_device_time(raw, zones):
    """Read twice in each zone (the second read uses the remembered hour), zones switching."""
    for tz in zones:
        for _ in range(2):
            assert jt808_time(raw, tz) == expected_time(raw, True, tz)
            gt06_expected = (
                None if not raw[0] and not raw[1] and not raw[2] else expected_time(raw, False, tz)
            )
            assert gt06_time(raw, tz) == gt06_expected


def test_a_zone_with_daylight_saving_time_is_not_remembered():
    berlin = ZoneInfo("Europe/Berlin")
    clock = DeviceClock(bcd=True)
    # 2024-03-31 01:30 and 03:30 in Berlin: the clocks went forward at 02:00 (UTC+1 -> UTC+2)
    before = clock.reading(0x24033101, 0x3000, berlin)
    after = clock.reading(0x24033103, 0x3000, berlin)
    assert before == datetime(2024, 3, 31, 0, 30, tzinfo=UTC)
    assert after == datetime(2024, 3, 31, 1, 30, tzinfo=UTC)
    assert not clock.hours


def test_remembered_hours_are_bounded():
    clock = DeviceClock(bcd=False)
    for day in range(DeviceClock.MAX_HOURS // 24 + 2):
        for hour in range(24):
            start = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=day, hours=hour)
            key = (start.year - 2000) << 24 | start.month << 16 | start.day << 8 | start.hour
            assert clock.reading(key, 0x0102, UTC) == start + timedelta(minutes=1, seconds=2)
    assert 0 < len(clock.hours) <= DeviceClock.MAX_HOURS
