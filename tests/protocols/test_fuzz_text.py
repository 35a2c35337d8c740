"""Property-based fuzzing of the text protocols: framers and decoders raise only ProtocolError."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.protocols import gps103, h02, nmea
from gateway.protocols.base import DecodeContext, ProtocolError, ProtocolSpec
from tests.protocols.support import load_captures

SPECS = {"nmea": nmea.SPEC, "h02": h02.SPEC, "gps103": gps103.SPEC}
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def seeds(protocol: str) -> list[bytes]:
    return [capture.wire for capture in load_captures(protocol)]


def mutated(protocol: str) -> st.SearchStrategy[bytes]:
    """Real frames with bytes flipped, cut, or with text glued on, and plain random bytes."""
    frames = st.sampled_from(seeds(protocol))
    flips = st.tuples(frames, st.integers(0, 200), st.integers(0, 255)).map(
        lambda t: t[0][: t[1] % max(len(t[0]), 1)] + bytes([t[2]]) + t[0][t[1] % max(len(t[0]), 1) + 1 :]
    )
    cuts = st.tuples(frames, st.integers(0, 200)).map(lambda t: t[0][: t[1]])
    glued = st.tuples(frames, st.binary(max_size=20), frames).map(lambda t: t[0] + t[1] + t[2])
    commas = st.tuples(frames, st.text(",.-*#$0123456789AVNSEW ", max_size=12)).map(
        lambda t: t[0].replace(b",", t[1].encode(), 1)
    )
    return st.one_of(flips, cuts, glued, commas, st.binary(max_size=300))


def decode_all(spec: ProtocolSpec, frames: list[bytes], ctx: DecodeContext) -> None:
    for frame in frames:
        try:
            decoded = spec.decode(frame, ctx)
        except ProtocolError:
            continue
        if decoded.terminal_id:
            ctx.terminal_id = decoded.terminal_id
        for message in decoded.messages:
            message.to_json_dict()


@pytest.mark.parametrize("protocol", list(SPECS))
def test_decoders_raise_only_protocol_errors(protocol: str) -> None:
    spec = SPECS[protocol]

    @FUZZ
    @given(frame=mutated(protocol), lenient=st.booleans())
    def run(frame: bytes, lenient: bool) -> None:
        decode_all(
            spec, [frame], DecodeContext(lenient=lenient, received_at=datetime(2026, 1, 1, tzinfo=UTC))
        )

    run()


@pytest.mark.parametrize("protocol", list(SPECS))
def test_framers_stay_bounded_and_lose_nothing_after(protocol: str) -> None:
    spec = SPECS[protocol]
    good = seeds(protocol)[-1]
    terminator = {"nmea": b"\r\n", "gps103": b";", "h02": b""}[protocol]

    @FUZZ
    @given(chunks=st.lists(st.binary(max_size=400) | mutated(protocol), max_size=8))
    def run(chunks: list[bytes]) -> None:
        framer = spec.framer()
        frames: list[bytes] = []
        for chunk in chunks:
            frames += framer.feed(chunk)
            assert framer.buffered <= framer.max_buffer
        decode_all(spec, frames, DecodeContext())
        # Whatever came before, a line end and a good frame come out whole (H02 has no line
        # ends: a cut binary frame there may take any bytes that follow, so start clean).
        framer.feed(b"\r\n")
        if protocol == "h02":
            framer.clear()
        assert framer.feed(good + terminator) == [good.rstrip(b"\r\n;")]

    run()


@pytest.mark.parametrize("protocol", ["h02", "gps103"])
def test_datagram_framers(protocol: str) -> None:
    spec = SPECS[protocol]
    assert spec.split_datagram is not None

    @FUZZ
    @given(datagram=mutated(protocol))
    def run(datagram: bytes) -> None:
        result = spec.split_datagram(datagram)  # type: ignore[misc]
        assert result.consumed == len(datagram)
        decode_all(spec, result.frames, DecodeContext())

    run()
