"""Property-based fuzzing of the binary protocols: arbitrary and mutated bytes through every
framer and decoder give frames or ProtocolError, nothing else, in bounded time and memory."""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.messages import Message, MessageType
from gateway.protocols import get_protocol, jt808
from gateway.protocols.base import DecodeContext, ProtocolError, ProtocolSpec
from tests.protocols.support import load_captures

NAMES = ("jt808", "gt06", "teltonika")
FUZZ = settings(max_examples=300, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
START_MARKERS = {"jt808": b"\x7e", "gt06": b"\x78\x78", "teltonika": b"\x00\x00\x00\x00"}


def samples(name: str) -> list[bytes]:
    """Real frames plus frames of every kind the terminal codec builds."""
    spec = get_protocol(name)
    frames = [c.wire for c in load_captures(name)]
    assert spec.device is not None
    device = spec.device("013345678906" if name == "jt808" else "356307042441013")
    fix = Message(
        MessageType.POSITION,
        time=datetime(2024, 5, 1, tzinfo=UTC),
        valid=True,
        lat=1.5,
        lon=2.5,
        alarms=["sos"],
        attributes={"power_v": 12.0, "iccid": "89860477012070271502", "battery_level": 50},
    )
    for out in (device.handshake(), device.position(fix), device.positions([fix, fix]), device.heartbeat()):
        if out is not None:
            frames.append(out.data)
    frames.append(device.status({"power_v": 1.0}, ["power_cut"]).data)  # type: ignore[union-attr]
    return frames


SAMPLES = {name: samples(name) for name in NAMES}


def decode_or_protocol_error(spec: ProtocolSpec, frame: bytes, context: DecodeContext) -> None:
    try:
        decoded = spec.decode(frame, context)
    except ProtocolError:
        return
    for message in decoded.messages:
        message.to_json_dict()


def check_split(spec: ProtocolSpec, data: bytes) -> None:
    result = spec.split(data)
    assert 0 <= result.consumed <= len(data)
    assert 0 <= result.garbage <= result.consumed
    assert sum(map(len, result.frames)) + result.garbage <= result.consumed
    for frame in result.frames:
        assert frame and frame in data


@pytest.mark.parametrize("name", NAMES)
@FUZZ
@given(data=st.binary(max_size=512))
def test_split_arbitrary_bytes(name, data):
    spec = get_protocol(name)
    check_split(spec, data)
    check_split(spec, START_MARKERS[name] + data)


@pytest.mark.parametrize("name", NAMES)
@FUZZ
@given(data=st.binary(max_size=512), lenient=st.booleans(), udp=st.booleans())
def test_decode_arbitrary_bytes(name, data, lenient, udp):
    spec = get_protocol(name)
    context = DecodeContext(lenient=lenient, transport="udp" if udp else "tcp")
    decode_or_protocol_error(spec, data, context)
    decode_or_protocol_error(spec, START_MARKERS[name] + data, context)


@pytest.mark.parametrize("name", NAMES)
@FUZZ
@given(data=st.data(), lenient=st.booleans())
def test_decode_mutated_real_frames(name, data, lenient):
    spec = get_protocol(name)
    frame = bytearray(data.draw(st.sampled_from(SAMPLES[name])))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(frame) - 1))
        frame[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(frame)))
    context = DecodeContext(lenient=lenient, transport=data.draw(st.sampled_from(["tcp", "udp"])))
    decode_or_protocol_error(spec, bytes(frame), context)
    decode_or_protocol_error(spec, bytes(frame[:cut]), context)


@pytest.mark.parametrize("name", NAMES)
@FUZZ
@given(chunks=st.lists(st.binary(max_size=300), max_size=20), data=st.data())
def test_stream_framer_stays_bounded(name, chunks, data):
    spec = get_protocol(name)
    framer = spec.framer()
    context = DecodeContext(lenient=True)
    real = data.draw(st.sampled_from(SAMPLES[name]))
    for chunk in [*chunks, real]:
        for frame in framer.feed(chunk):
            decode_or_protocol_error(spec, frame, context)
        assert framer.buffered <= framer.max_buffer
    assert len(context.state) <= 4


@pytest.mark.parametrize("name", NAMES)
@FUZZ
@given(data=st.binary(max_size=200))
def test_device_reads_arbitrary_replies(name, data):
    spec = get_protocol(name)
    assert spec.device is not None
    device = spec.device("013345678906" if name == "jt808" else "356307042441013")
    device.handshake()
    event = device.on_reply(data)
    assert all(isinstance(seq, int) for seq in event.acked)


def test_huge_declared_lengths_allocate_nothing_large():
    frames = {
        "teltonika": b"\x00\x00\x00\x00\xff\xff\xff\xff\x08\x01",
        "gt06": b"\x79\x79\xff\xff\x01\x02\x03\r\n",
        "jt808": b"\x7e" + b"\x02\x00\x03\xff" + bytes(10) + b"\x7e",
    }
    tracemalloc.start()
    try:
        for name, frame in frames.items():
            spec = get_protocol(name)
            for lenient in (False, True):
                decode_or_protocol_error(spec, frame, DecodeContext(lenient=lenient))
            framer = spec.framer()
            framer.feed(frame + bytes(100))
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


def test_jt808_sub_package_state_is_bounded():
    context = DecodeContext()
    phone = bytes.fromhex("013345678906")
    for total in range(2, 50):
        frame = jt808.encode_frame(jt808.BATCH, phone, total, b"\x00", subpackage=(total, 1))
        assert spec_decode(frame, context).messages == []
    assert len(context.state["jt808.packets"]) <= jt808.MAX_PENDING


def spec_decode(frame: bytes, context: DecodeContext):  # type: ignore[no-untyped-def]
    return get_protocol("jt808").decode(frame, context)
