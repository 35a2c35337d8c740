"""NMEA 0183: captured lines in session, epochs, talkers, checksums, id lines, framer, device codec."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.messages import Message, MessageType
from core.vocabulary import Attr
from gateway.protocols import nmea
from gateway.protocols.base import (
    ChecksumError,
    DecodeContext,
    Decoded,
    MalformedFrame,
    ProtocolError,
    UnsupportedMessage,
)
from tests.protocols.support import assert_sane, feedings, load_captures, run_framer

CAPTURES = load_captures("nmea")
RECEIVED = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)
# The source's last two lines run on a fresh decoder: NMEA before identification.
FRESH_SESSION_AT = 34


def context(**fields: object) -> DecodeContext:
    fields.setdefault("received_at", RECEIVED)
    return DecodeContext(**fields)  # type: ignore[arg-type]


def feed(ctx: DecodeContext, line: str) -> Decoded:
    decoded = nmea.decode(line.encode("latin-1"), ctx)
    if decoded.terminal_id:
        ctx.terminal_id = decoded.terminal_id
    return decoded


def fixes(messages: list[Message]) -> list[Message]:
    return [m for m in messages if m.type == MessageType.POSITION and m.has_fix]


def checksum_is_wrong(line: str) -> bool:
    """Independent check: a two-hex-digit ``*hh`` that is not the XOR of the sentence."""
    if "$" not in line or "*" not in line:
        return False
    body = line[line.index("$") + 1 : line.index("*")].rstrip()
    given = line[line.index("*") + 1 :].strip()[:2]
    if len(given) < 2:
        return False
    value = 0
    for char in body.encode():
        value ^= char
    return int(given, 16) != value


@pytest.mark.parametrize("lenient", [False, True])
def test_captured_lines_in_session(lenient: bool) -> None:
    ctx = context(lenient=lenient)
    for capture in CAPTURES:
        if capture.seq == FRESH_SESSION_AT:
            ctx = context(lenient=lenient)
        line = capture.frame
        if checksum_is_wrong(line) and not lenient:
            with pytest.raises(ChecksumError):
                feed(ctx, line)
            continue
        decoded = feed(ctx, line)
        for message in decoded.messages:
            assert_sane(message)
            assert message.terminal_id, capture
            if checksum_is_wrong(line):
                assert message.attributes.get(Attr.CHECKSUM_OK) is False or message.type == MessageType.LOGIN
        found = fixes(decoded.messages)
        if capture.check.startswith("verifyPosition"):
            assert found, capture
        elif capture.check == "verifyNull":
            assert not found, capture
        elif capture.check == "verifyNotNull":
            assert decoded.messages, capture
        if capture.expected.get("battery") is not None:
            assert decoded.messages[-1].attributes[Attr.BATTERY_V] == capture.expected["battery"]


def test_wrong_checksums_in_the_sample_are_the_ones_expected() -> None:
    """The capture file marks every NMEA line 'ok'; four of them carry a wrong *hh."""
    wrong = {c.seq for c in CAPTURES if checksum_is_wrong(c.frame)}
    assert wrong == {10, 25, 28, 29}


# --------------------------------------------------------------------------- epochs


def receiver_epoch(tod: str, day: str = "271126", lat: str = "4807.0380", alt: str = "545.4") -> list[str]:
    """One u-blox style second: RMC, VTG, GGA, GSA and GSV."""
    return [
        nmea.sentence(f"GPRMC,{tod},A,{lat},N,01131.0000,E,022.4,084.4,{day},003.1,W,A").strip(),
        nmea.sentence("GPVTG,084.4,T,,M,022.4,N,041.5,K,A").strip(),
        nmea.sentence(f"GPGGA,{tod},{lat},N,01131.0000,E,1,08,0.9,{alt},M,46.9,M,,").strip(),
        nmea.sentence("GPGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1").strip(),
        nmea.sentence("GPGSV,2,1,08,01,40,083,46,02,17,308,41,12,07,344,39,14,22,228,45").strip(),
        nmea.sentence("GPGSV,2,2,08,15,40,083,46,16,17,308,41,17,07,344,39,18,22,228,45").strip(),
    ]


def test_serial_receiver_epochs_merge_into_one_position_each() -> None:
    ctx = context(terminal_id="rx-1", transport="serial")
    emitted: list[tuple[int, Message]] = []
    lines = receiver_epoch("120000.00") + receiver_epoch("120001.00", lat="4807.0400", alt="546.0")
    lines += receiver_epoch("120002.00", lat="4807.0420", alt="547.0")
    for index, line in enumerate(lines):
        emitted += [(index, m) for m in feed(ctx, line).messages]
    assert [m.time for _, m in emitted] == [datetime(2026, 11, 27, 12, 0, s, tzinfo=UTC) for s in range(3)]
    # The first epoch is emitted at its RMC (nothing learnt yet); later ones once their GSA is in.
    assert [index for index, _ in emitted] == [0, 9, 15]
    first, second, third = (m for _, m in emitted)
    assert first.altitude_m is None
    assert second.altitude_m == 546.0 and third.altitude_m == 547.0
    assert second.terminal_id == "rx-1"
    assert second.satellites == 8
    assert second.hdop == 0.9
    assert second.attributes[Attr.PDOP] == 2.5
    assert second.attributes[Attr.VDOP] == 2.1
    assert second.speed_kmh == pytest.approx(22.4 * 1.852, abs=1e-3)
    assert second.course == 84.4
    assert second.lat == pytest.approx(48.117333, abs=1e-6)
    assert second.lon == pytest.approx(11.516667, abs=1e-6)
    assert second.valid is True


def test_gga_first_receiver_order() -> None:
    ctx = context(terminal_id="rx-2", transport="serial")
    out: list[Message] = []
    for tod in ("235958.000", "235959.000"):
        for line in (
            nmea.sentence(f"GNGGA,{tod},5231.2000,N,01323.4000,E,1,12,0.7,40.0,M,44.0,M,,"),
            nmea.sentence("GNGSA,A,3,01,02,03,04,,,,,,,,,1.2,0.7,1.0"),
            nmea.sentence(f"GNRMC,{tod},A,5231.2000,N,01323.4000,E,0.5,10.0,311226,,,A"),
            nmea.sentence("GNVTG,10.0,T,,M,0.5,N,0.9,K,A"),
        ):
            out += feed(ctx, line.strip()).messages
    assert len(out) == 2
    assert out[1].time == datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert out[1].altitude_m == 40.0 and out[1].satellites == 12


def test_epoch_is_closed_by_the_next_one() -> None:
    ctx = context(terminal_id="rx-3", transport="serial")
    for line in receiver_epoch("080000.00") + receiver_epoch("080001.00"):
        feed(ctx, line)
    # The third epoch misses its GSA: its position comes when the fourth begins.
    assert feed(ctx, receiver_epoch("080002.00")[0]).messages == []
    assert feed(ctx, receiver_epoch("080002.00")[2]).messages == []
    (late,) = feed(ctx, receiver_epoch("080003.00")[0]).messages
    assert late.time == datetime(2026, 11, 27, 8, 0, 2, tzinfo=UTC)
    assert late.altitude_m == 545.4


def test_gga_only_takes_the_date_of_reception() -> None:
    ctx = context(terminal_id="rx-4", received_at=datetime(2026, 11, 27, 0, 0, 5, tzinfo=UTC))
    (fix,) = feed(ctx, "$GPGGA,235959.000,6010.34349,N,02445.72838,E,1,05,1.7,0.9,M,35.1,M,,").messages
    assert fix.time == datetime(2026, 11, 26, 23, 59, 59, tzinfo=UTC)
    assert fix.valid is True and fix.satellites == 5 and fix.altitude_m == 0.9


def test_zda_gives_the_date() -> None:
    ctx = context(terminal_id="rx-5")
    feed(ctx, nmea.sentence("GPZDA,101530.00,04,07,2019,00,00").strip())
    (fix,) = feed(
        ctx, nmea.sentence("GPGGA,101530.00,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,").strip()
    ).messages
    assert fix.time == datetime(2019, 7, 4, 10, 15, 30, tzinfo=UTC)


def test_gll_position() -> None:
    ctx = context(terminal_id="rx-6")
    (fix,) = feed(ctx, nmea.sentence("GPGLL,4916.45,N,12311.12,W,225444,A,A").strip()).messages
    assert fix.lat == pytest.approx(49.274167, abs=1e-6)
    assert fix.lon == pytest.approx(-123.185333, abs=1e-6)
    assert fix.valid is True


@pytest.mark.parametrize("talker", ["GP", "GN", "GL", "GA", "GB", "BD"])
def test_talkers(talker: str) -> None:
    ctx = context(terminal_id="rx-7")
    line = nmea.sentence(f"{talker}RMC,081836,A,3751.65,S,14507.36,E,000.0,360.0,130998,011.3,E").strip()
    (fix,) = feed(ctx, line).messages
    assert fix.time == datetime(1998, 9, 13, 8, 18, 36, tzinfo=UTC)
    assert fix.lat == pytest.approx(-37.860833, abs=1e-6)
    assert fix.course == 0.0


def test_rmc_no_fix_mode_is_invalid() -> None:
    ctx = context(terminal_id="rx-8")
    line = nmea.sentence("GPRMC,081836,A,3751.65,S,14507.36,E,0,0,130998,,,N").strip()
    (fix,) = feed(ctx, line).messages
    assert fix.valid is False


# --------------------------------------------------------------------------- checksums


def test_checksum_forms() -> None:
    body = "GPRMC,012006,A,4828.10,N,1353.52,E,0.00,0.00,180915,020.3,E"
    good = nmea.nmea_checksum(body)
    bad = f"{int(good, 16) ^ 1:02X}"
    for line in (
        f"${body}*{good}",
        f"${body}",
        f"${body}*{good[0]}",
        f"${body} * {good}",
        f"${body}*{good},11,8657330",
        f"${body}*{good.lower()}",
        f"${body} *{nmea.nmea_checksum(body + ' ')}",  # some firmware sums the space before *
    ):
        ctx = context(terminal_id="t")
        assert fixes(feed(ctx, line).messages), line
    with pytest.raises(ChecksumError):
        feed(context(terminal_id="t"), f"${body}*{bad}")
    (flagged,) = feed(context(terminal_id="t", lenient=True), f"${body}*{bad}").messages
    assert flagged.attributes[Attr.CHECKSUM_OK] is False


def test_vendor_sentence_checksums() -> None:
    body = "GPIOP,01000000,00000000,0.00,0.00,0.00,0.00,4.69,4.24"
    with pytest.raises(ChecksumError):
        feed(context(terminal_id="t"), f"${body}*00")
    (status,) = feed(context(terminal_id="t"), nmea.sentence(body).strip()).messages
    assert status.type == MessageType.STATUS
    assert status.attributes[Attr.POWER_V] == 4.69
    assert status.attributes[Attr.BATTERY_V] == 4.24


# --------------------------------------------------------------------------- identification


@pytest.mark.parametrize(
    ("line", "terminal_id"),
    [
        (nmea.sentence("PGID,123456789012345").strip(), "123456789012345"),
        (nmea.sentence("PCPTI,AB12345,102030,0").strip(), "AB12345"),
        ("IMEI 359586015829802", "359586015829802"),
        ("$IMEI=359586015829802", "359586015829802"),
        ("358244017671308", "358244017671308"),
        ("$DEVID,0x0103846677F21422*41", str(0x0103846677F21422)),
        ("$GPFID,ID123456ABC", "ID123456ABC"),
    ],
)
def test_identification_lines(line: str, terminal_id: str) -> None:
    ctx = context()
    decoded = feed(ctx, line)
    assert decoded.terminal_id == terminal_id
    assert [m.type for m in decoded.messages] == [MessageType.LOGIN]
    (fix,) = feed(ctx, "$GPRMC,012006,A,4828.10,N,1353.52,E,0.00,0.00,180915,020.3,E*42").messages
    assert fix.terminal_id == terminal_id


@pytest.mark.parametrize(
    ("prefix", "terminal_id"),
    [("123456789", "123456789"), ("123456789,", "123456789"), ("4711/359586015829802/", "359586015829802")],
)
def test_id_glued_to_a_sentence(prefix: str, terminal_id: str) -> None:
    ctx = context()
    decoded = feed(ctx, prefix + "$GPRMC,155708.252,V,4610.1676,N,00606.4586,E,000.0,000.0,060214,,,N*76")
    assert decoded.terminal_id == terminal_id
    assert [m.type for m in decoded.messages] == [MessageType.LOGIN, MessageType.POSITION]
    assert decoded.messages[1].terminal_id == terminal_id
    again = feed(ctx, prefix + "$GPRMC,155709.252,V,4610.1676,N,00606.4586,E,000.0,000.0,060214,,,N")
    assert [m.type for m in again.messages] == [MessageType.POSITION]


def test_positions_wait_for_identification() -> None:
    ctx = context()
    for second in range(nmea.PRE_ID_BUFFER + 3):
        line = nmea.sentence(f"GPRMC,0120{second:02d},A,4828.10,N,1353.52,E,0.00,0.00,180915,,").strip()
        assert feed(ctx, line).messages == []
    decoded = feed(ctx, "$GPFID,ID123456ABC")
    assert decoded.messages[0].type == MessageType.LOGIN
    held = decoded.messages[1:]
    assert len(held) == nmea.PRE_ID_BUFFER  # the oldest were dropped, and counted
    assert ctx.state["nmea"].dropped_before_id == 3
    assert all(m.terminal_id == "ID123456ABC" for m in held)
    assert held[-1].time == datetime(2015, 9, 18, 1, 20, nmea.PRE_ID_BUFFER + 2, tzinfo=UTC)


def test_qze_trccr_rma() -> None:
    ctx = context()
    decoded = feed(ctx, "QZE,868994033976700,35,28062020,113553,22.13673,114.57263,0,22,A,0")
    assert decoded.terminal_id == "868994033976700"
    (fix,) = fixes(decoded.messages)
    assert fix.time == datetime(2020, 6, 28, 11, 35, 53, tzinfo=UTC)
    assert (fix.lat, fix.lon) == (22.13673, 114.57263)
    (trccr,) = feed(ctx, "$TRCCR,20140111000000.000,A,60.000000,60.000000,0.00,0.00,0.00,50,*3a").messages
    assert trccr.time == datetime(2014, 1, 11, tzinfo=UTC)
    assert trccr.attributes[Attr.BATTERY_LEVEL] == 50.0
    (rma,) = feed(ctx, nmea.sentence("GPRMA,A,4828.10,N,01353.52,E,,,10.0,90.0,,").strip()).messages
    assert rma.time == RECEIVED
    assert rma.speed_kmh == pytest.approx(18.52)


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (nmea.sentence("GPTXT,01,01,02,ANTSTATUS=OK").strip(), UnsupportedMessage),
        ("$GPRMC,012006,A,4828.10,N,1353.52,E,0.00,0.00,189915,020.3,E", MalformedFrame),
        ("$GPRMC,256006,A,4828.10,N,1353.52,E,0.00,0.00,180915,020.3,E", MalformedFrame),
        ("$GPRMC,012006,A,9928.10,N,1353.52,E,0.00,0.00,180915,020.3,E", MalformedFrame),
        ("$GPRMC,012006,A", MalformedFrame),
        ("hello there", UnsupportedMessage),
        ("abc$GPRMC,012006,A,4828.10,N,1353.52,E,0.00,0.00,180915,020.3,E", MalformedFrame),
    ],
)
def test_bad_lines_are_errors(line: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        feed(context(terminal_id="t"), line)


# --------------------------------------------------------------------------- framer and device


@pytest.mark.parametrize("way", [name for name, _ in feedings([b""])])
def test_framer_feedings(way: str) -> None:
    lines = [c.wire for c in CAPTURES] + [
        line.encode() for line in receiver_epoch("120000.00") + receiver_epoch("120001.00")
    ]
    chunks = dict(feedings([line + b"\r\n" for line in lines]))[way]
    assert run_framer(nmea.SPEC, chunks) == lines


def test_framer_garbage_and_bounds() -> None:
    framer = nmea.SPEC.framer()
    line = b"$GPRMC,012006,A,4828.10,N,1353.52,E,0.00,0.00,180915,020.3,E*42"
    assert framer.feed(b"\x00\xffxx" + line + b"\n" + b"junk" + line + b"\r\n\r\n") == [line, line]
    assert framer.garbage_bytes == 8
    framer.feed(b"A" * 3000)
    assert framer.buffered <= nmea.MAX_LINE
    assert framer.feed(line + b"\n") == [line]


@pytest.mark.parametrize("transport", ["serial", "tcp"])
def test_device_stream_round_trip(transport: str) -> None:
    device = nmea.NmeaDevice("358244017671308", transport=transport)
    sent = [
        Message(
            MessageType.POSITION,
            time=datetime(2026, 11, 27, 5, 0, second, 500000, tzinfo=UTC),
            valid=True,
            lat=52.520008 + second * 1e-4,
            lon=-13.404954,
            speed_kmh=50.0,
            course=90.5,
            altitude_m=34.5,
            satellites=9,
            hdop=0.8,
        )
        for second in range(4)
    ]
    writes = [device.handshake(), *(device.position(m) for m in sent)]
    framer = nmea.SPEC.framer()
    ctx = context(terminal_id="358244017671308" if transport == "serial" else None, transport=transport)
    out: list[Message] = []
    for outgoing in writes:
        if outgoing is None:
            continue
        assert not outgoing.needs_ack
        for frame in framer.feed(outgoing.data):
            decoded = nmea.decode(frame, ctx)
            assert decoded.reply is None
            if decoded.terminal_id:
                ctx.terminal_id = decoded.terminal_id
            out += fixes(decoded.messages)
    assert [m.time for m in out] == [m.time for m in sent]
    for got, want in zip(out[1:], sent[1:], strict=True):  # the first epoch is emitted at its RMC
        assert got.terminal_id == "358244017671308"
        assert got.lat == pytest.approx(want.lat, abs=2e-6)
        assert got.lon == pytest.approx(want.lon, abs=2e-6)
        assert got.speed_kmh == pytest.approx(50.0, abs=0.01)
        assert got.course == 90.5
        assert got.altitude_m == 34.5
        assert got.satellites == 9
        assert got.hdop == 0.8


def test_device_status_and_corrupt_checksum() -> None:
    device = nmea.NmeaDevice("358244017671308")
    status = device.status({Attr.POWER_V: 12.4, Attr.BATTERY_V: 4.1}, [])
    assert status is not None
    (message,) = feed(context(terminal_id="x"), status.data.decode().strip()).messages
    assert message.attributes[Attr.POWER_V] == 12.4
    broken = device.corrupt_checksum(status.data)
    with pytest.raises(ChecksumError):
        feed(context(terminal_id="x"), broken.decode().strip())
    assert nmea.NmeaDevice("x", transport="serial").handshake() is None
    assert device.on_reply(b"anything").acked == []


def test_a_bad_copy_before_the_good_line_loses_nothing() -> None:
    device = nmea.NmeaDevice("358244017671308")
    good = nmea.sentence("GPRMC,012006,A,4828.10,N,1353.52,E,0.00,0.00,180915,020.3,E").encode()
    frames = run_framer(nmea.SPEC, [device.corrupt_checksum(good) + good])
    assert len(frames) == 2
    ctx = context(terminal_id="358244017671308")
    with pytest.raises(ChecksumError):
        nmea.decode(frames[0], ctx)
    assert fixes(nmea.decode(frames[1], ctx).messages)


def test_identification_decoded_again_gives_the_same_answer() -> None:
    """The gateway decodes a session's first frame again when the registry sets another
    zone or leniency: the positions held before the id must come out again."""
    ctx = context()
    feed(ctx, "$GPRMC,012006,A,4828.10,N,1353.52,E,0.00,0.00,180915,020.3,E*42")
    first = nmea.decode(b"$GPFID,ID123456ABC", ctx)
    ctx.lenient = True
    again = nmea.decode(b"$GPFID,ID123456ABC", ctx)
    assert [m.to_json_dict() for m in again.messages] == [m.to_json_dict() for m in first.messages]
    assert [m.type for m in again.messages] == [MessageType.LOGIN, MessageType.POSITION]


def test_proprietary_sentence_with_a_wrong_checksum_is_an_error_value_in_lenient_mode() -> None:
    # pynmea2 reads "$PGGA" as a proprietary sentence without a sentence type.
    frame = b"$PGGA,000000.000,4610.1676,N,00606.4586,E,0,00,4.3,0.0,M,50.7,M,,0000*59\r\n"
    with pytest.raises(ProtocolError):
        nmea.SPEC.decode(frame.strip(), DecodeContext(lenient=True, terminal_id="123456789012345"))
