"""NMEA 0183 over serial ports and TCP trackers: line framer, epoch-merging decoder, device side.

Two ways in:

* a GNSS receiver on a serial port: the port configuration names the terminal
  (``ctx.terminal_id``); the receiver repeats RMC, VTG, GGA, GSA, GSV, GLL... every second;
* a tracker over TCP (Traccar's "T55" family): an identification line first (``$PGID``,
  ``$PCPTI``, ``IMEI n``, ``$IMEI=n``, a bare IMEI, ``$DEVID,0x...``, ``$GPFID``, or an id
  glued in front of a sentence: ``<id>$GPRMC``, ``<id>,$GPRMC``, ``4711/<imei>/$GPRMC``),
  then sentences, vendor sentences (``$GPRMA``, ``$TRCCR``, ``$GPIOP``) and ``QZE`` lines.

The checksum is checked here (``A * 72`` spacing and vendor fields glued after ``*hh`` are
tolerated; a truncated ``*7`` counts as no checksum); a wrong one raises ``ChecksumError``
unless ``ctx.lenient``, which flags ``checksum_ok: False``.  pynmea2 then parses the
sentence once; the decoder reads its field strings directly.  GSV (satellites in view)
adds nothing to a position: it is checked, not parsed; so is a VTG whose epoch's RMC
already gave speed and course.

Epochs: RMC, GGA and GLL carry the time of day; GSA and VTG belong to the epoch of the last
timed sentence.  The sentences of one epoch are merged into one position.  The epoch is
complete, and its position emitted, as soon as every enriching sentence type seen in the
previous epoch has arrived (learnt per session, so a receiver sending RMC, VTG, GGA, GSA
emits at its GSA with no added latency), or when the next epoch starts.  While nothing has
been learnt yet (the first epoch, a tracker sending lone RMC lines) the first position
sentence completes the epoch.  A repeated RMC/GGA/GLL also starts a new epoch.

Session rule: until the terminal is identified (no ``ctx.terminal_id`` and no id line yet),
positions are held back (the last ``PRE_ID_BUFFER`` of them) and released, carrying the
id, with the identification.  Plain NMEA gets no reply.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pynmea2

from core.messages import Message, MessageType, knots_to_kmh
from core.vocabulary import Attr
from gateway.protocols.base import (
    ChecksumError,
    DecodeContext,
    Decoded,
    DeviceCodec,
    MalformedFrame,
    Outgoing,
    ProtocolSpec,
    Split,
    UnsupportedMessage,
)

MAX_LINE = 512
PRE_ID_BUFFER = 16

# --------------------------------------------------------------------------- shared text helpers


def xor8(data: bytes) -> int:
    """XOR of all bytes, folded in halves as one big integer (C speed, no per-byte loop)."""
    value = int.from_bytes(data, "little")
    size = len(data)
    while size > 1:
        half = (size + 1) >> 1
        value = (value & ((1 << (half << 3)) - 1)) ^ (value >> (half << 3))
        size = half
    return value


_HEX_PAIRS = [(f"{value:02X}".encode(), f"{value:02x}".encode()) for value in range(256)]


def nmea_checksum(body: str) -> str:
    """XOR of the characters of ``body`` (what lies between ``$`` and ``*``), two hex digits."""
    return f"{xor8(body.encode('latin-1')):02X}"


def degrees_minutes(value: str, hemisphere: str = "") -> float:
    """NMEA ``(d)ddmm.mmmm`` (any number of degree digits and decimals) to signed degrees.

    ``S`` and ``W`` negate.  The H02 oddities are read too: no dot (``37573392`` is
    ddmmmmmm with four decimals) and the negative degree-minute form ``-23-29.0095``.
    """
    text = value.strip()
    if not text:
        raise MalformedFrame("empty coordinate")
    negative = False
    degrees = 0.0
    try:
        if text.startswith("-"):
            negative = True
            text = text[1:]
            if "-" in text:  # "-23-29.0095": degrees and minutes each carry the sign
                whole, minutes = text.split("-", 1)
                degrees = int(whole) + float(minutes) / 60.0
                text = ""
        if text:
            if "." not in text:
                if len(text) <= 4:
                    raise MalformedFrame(f"coordinate without minutes: {value!r}")
                text = text[:-4] + "." + text[-4:]
            number = float(text)
            whole_degrees = int(number // 100)
            degrees = whole_degrees + (number - whole_degrees * 100) / 60.0
    except (ValueError, OverflowError):
        raise MalformedFrame(f"bad coordinate {value!r}") from None
    if hemisphere in ("S", "W", "s", "w"):
        negative = True
    return round(-degrees if negative else degrees, 7) + 0.0  # never -0.0


def time_of_day(text: str) -> time:
    """``hhmmss[.sss]`` to a time (no date)."""
    try:
        hour, minute, second = int(text[0:2]), int(text[2:4]), int(text[4:6])
        micro = 0
        if len(text) > 7 and text[6] == ".":
            fraction = text[7:13]
            micro = int(fraction.ljust(6, "0"))
        return time(hour, minute, min(second, 59), micro)
    except (ValueError, IndexError):
        raise MalformedFrame(f"bad time of day {text!r}") from None


def day_month_year(text: str) -> date:
    """``ddmmyy`` (two-digit years: 80-99 are 19xx) to a date."""
    try:
        day, month, year = int(text[0:2]), int(text[2:4]), int(text[4:6])
        if len(text) != 6:
            raise ValueError
        return date(year + (1900 if year >= 80 else 2000), month, day)
    except (ValueError, IndexError):
        raise MalformedFrame(f"bad date {text!r}") from None


def nearest_day(tod: time, around: datetime) -> datetime:
    """The UTC datetime with time of day ``tod`` closest to ``around`` (for date-less fixes)."""
    around = around.astimezone(UTC)
    base = datetime.combine(around.date(), tod, UTC)
    candidates = (base - timedelta(days=1), base, base + timedelta(days=1))
    return min(candidates, key=lambda candidate: abs(candidate - around))


def to_float(text: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise MalformedFrame(f"bad number {text!r}") from None
    if not math.isfinite(value):
        raise MalformedFrame(f"bad number {text!r}")
    return value


# --------------------------------------------------------------------------- framer

_CONTROL = bytes(range(0, 32)) + bytes(range(127, 256))
_NOT_TEXT = bytes(byte for byte in _CONTROL if byte not in b"\r\n")
_ID_PREFIX = re.compile(rb"[0-9]{3,20},?|[0-9]{1,10}/[0-9A-Za-z]{3,24}/")
_ID_PREFIX_TEXT = re.compile(_ID_PREFIX.pattern.decode())


def split(buffer: bytes) -> Split:
    """Cut whole CR/LF-terminated lines; bytes that cannot belong to a line are garbage."""
    cut = max(buffer.rfind(b"\n"), buffer.rfind(b"\r"))
    if cut < 0:
        if len(buffer) <= MAX_LINE:
            return Split(0, [])
        restart = buffer.rfind(b"$", 1)  # resync on the last sentence start, if any
        dropped = restart if restart > 0 else len(buffer)
        return Split(dropped, [], dropped)
    frames: list[bytes] = []
    garbage = 0
    body = buffer[:cut]
    clean = len(body.translate(None, _NOT_TEXT)) == len(body)
    for raw in body.replace(b"\r", b"\n").split(b"\n"):
        if not raw:
            continue
        if clean and (raw[0] == 0x24 or 0x24 not in raw) and len(raw) <= MAX_LINE:
            frames.append(raw)
            continue
        line, skipped = _clean_line(raw)
        garbage += skipped
        if line:
            frames.append(line)
    return Split(cut + 1, frames, garbage)


def _clean_line(raw: bytes) -> tuple[bytes, int]:
    """Drop control bytes and anything before a sentence that cannot be an id prefix."""
    if len(raw.translate(None, _CONTROL)) != len(raw):
        last = max(raw.rfind(bytes([byte])) for byte in set(raw) if byte in _CONTROL)
        start = last + 1
    else:
        start = 0
    dollar = raw.find(b"$", start)
    if dollar > start and not _ID_PREFIX.fullmatch(raw, start, dollar):
        start = dollar
    if len(raw) - start > MAX_LINE:
        return b"", len(raw)
    return (raw[start:] if start else raw), start


# --------------------------------------------------------------------------- session state

_RMC, _GGA, _GLL, _VTG, _GSA, _ZDA = 1, 2, 4, 8, 16, 32
_POSITIONED = _RMC | _GGA | _GLL


class _Session:
    """Per-connection NMEA state kept in ``ctx.state['nmea']``."""

    __slots__ = (
        "terminal_id",
        "epoch",
        "seen",
        "expected",
        "emitted",
        "fix",
        "tod",
        "day",
        "has_position",
        "waiting",
        "dropped_before_id",
        "release",
    )

    def __init__(self) -> None:
        self.terminal_id: str | None = None
        self.waiting: list[Message] = []
        self.release: tuple[bytes, list[Message]] = (b"", [])  # the last identification's answer
        self.dropped_before_id = 0
        self.expected = 0
        self.reset()

    def reset(self) -> None:
        self.epoch: str | None = None
        self.seen = 0
        self.emitted = False
        self.fix = Message(MessageType.POSITION)
        self.tod = ""  # hhmmss[.sss], converted once when the epoch is emitted
        self.day: str | date = ""  # RMC's ddmmyy, or ZDA's date
        self.has_position = False


def _session(ctx: DecodeContext) -> _Session:
    session = ctx.state.get("nmea")
    if session is None:
        session = ctx.state["nmea"] = _Session()
    return session


# --------------------------------------------------------------------------- decoding


def decode(frame: bytes, ctx: DecodeContext) -> Decoded:
    session = ctx.state.get("nmea") or _session(ctx)
    out: list[Message] = []
    if frame[:1] == b"$" and frame[3:6] in _STANDARD and not session.waiting:
        # The hot path: a talker sentence on an identified (or not yet) session.
        _sentence(frame, ctx, session, out)
        terminal_id = session.terminal_id or ctx.terminal_id
        if terminal_id is None:
            if out:
                _hold(session, out)
            return Decoded([], None, None)
        for message in out:
            message.terminal_id = terminal_id
        return Decoded(out, None, None)
    line = frame.decode("latin-1").strip()
    if not line:
        raise MalformedFrame("empty line")
    announced: str | None = None

    dollar = line.find("$")
    if dollar > 0:  # an id glued in front of a sentence
        if not _ID_PREFIX_TEXT.fullmatch(line, 0, dollar):
            raise MalformedFrame(f"bad id prefix {line[:dollar]!r}")
        prefix = line[:dollar].rstrip(",/")
        announced = prefix.rsplit("/", 1)[-1]
        line = line[dollar:]
    elif dollar < 0:
        announced = _identification(line)
        if announced is None:
            if line.startswith("QZE,"):
                announced = _qze(line, ctx, out)
            else:
                raise UnsupportedMessage(f"not an NMEA sentence: {line[:40]!r}")
        line = ""

    changed = announced is not None and _identify(session, announced, ctx, out)
    if line[:1] == "$" and line[3:6] in _SENTENCES:
        _sentence(line.encode("latin-1"), ctx, session, out)
    elif line:
        head = line[1:6]
        handler = _VENDOR.get(head[:5]) or _VENDOR.get(head[:4])
        if handler is not None:
            found = handler(line, ctx, session, out)
            if found is not None:
                announced = found
                changed = _identify(session, found, ctx, out)
        else:
            _sentence(line.encode("latin-1"), ctx, session, out)

    terminal_id = session.terminal_id or ctx.terminal_id
    if terminal_id is None:
        _hold(session, out)
        return Decoded([], None, None)
    if announced is not None and not changed and frame == session.release[0]:
        # The same identification decoded again (the gateway re-decodes a session's first
        # frame when the registry sets another zone or leniency): the same answer.
        return Decoded(list(session.release[1]), None, announced)
    if session.waiting:
        out = session.waiting + out
        session.waiting = []
    if changed:
        out.insert(0, Message(MessageType.LOGIN, terminal_id, time=_now(ctx).replace(microsecond=0)))
    for message in out:
        if message.terminal_id is None:
            message.terminal_id = terminal_id
    if changed:
        session.release = (frame, list(out))
    return Decoded(out, None, announced)


def _now(ctx: DecodeContext) -> datetime:
    return ctx.received_at or datetime.now(UTC)


def _hold(session: _Session, out: list[Message]) -> None:
    """Keep messages decoded before identification; the oldest go first when full."""
    session.waiting.extend(out)
    overflow = len(session.waiting) - PRE_ID_BUFFER
    if overflow > 0:
        del session.waiting[:overflow]
        session.dropped_before_id += overflow


def _identify(session: _Session, terminal_id: str, ctx: DecodeContext, out: list[Message]) -> bool:
    """Record the id a line announced; True when it is new for this session."""
    if terminal_id == session.terminal_id:
        return False
    if session.terminal_id is not None:
        # Another terminal on this line: close the previous one's epoch under its own id.
        before = len(out)
        _close(session, ctx, out)
        for message in out[before:]:
            message.terminal_id = session.terminal_id
        session.reset()
        session.expected = 0
    session.terminal_id = terminal_id
    return True


_IMEI_LINE = re.compile(r"IMEI[ =:]?\s*([0-9A-Za-z]{4,24})\Z")
_BARE_ID = re.compile(r"[0-9A-Fa-f]{6,24}\Z")


def _identification(line: str) -> str | None:
    """An identification line without ``$`` (``IMEI n``, a bare IMEI): its id, or None."""
    if _BARE_ID.match(line):
        return line
    match = _IMEI_LINE.match(line)
    return match.group(1) if match else None


def _checked_fields(line: str, ctx: DecodeContext) -> tuple[list[str], bool]:
    """Fields of a vendor sentence after checking its checksum (``$`` and ``*hh`` removed)."""
    body, ok = _verified(line, ctx)
    return body[1:].split(","), ok


_HEX = frozenset("0123456789ABCDEFabcdef")


def _verified(line: str, ctx: DecodeContext) -> tuple[str, bool]:
    """The sentence without ``*hh`` (and any vendor tail after it), and whether the checksum
    held.  ``A * 72`` spacing is accepted either way it was summed; a truncated ``*7`` is as
    if absent.  A wrong checksum raises ``ChecksumError`` unless ``ctx.lenient``."""
    star = line.find("*")
    if star < 0:
        return line, True
    raw = line[:star]
    body = raw.rstrip()
    checksum = line[star + 1 :].lstrip()[:2].upper()
    if len(checksum) != 2 or not _HEX.issuperset(checksum):
        return body, True
    computed = nmea_checksum(body[1:])
    if checksum == computed or checksum == nmea_checksum(raw[1:]):
        return body, True
    if not ctx.lenient:
        raise ChecksumError(f"{checksum} != {computed} in {body[:12]}")
    return body, False


def _sentence(frame: bytes, ctx: DecodeContext, session: _Session, out: list[Message]) -> None:
    """A standard sentence: the checksum checked here, the fields read by pynmea2 (GSV,
    which adds nothing to a position, is only checked)."""
    star = frame.find(b"*")
    checksum_ok = True
    if star < 0:
        body = frame
    elif star == len(frame) - 3 and frame[star + 1 :] in _HEX_PAIRS[xor8(frame[1:star])]:
        body = frame[:star]
    else:
        text, checksum_ok = _verified(frame.decode("latin-1"), ctx)
        body = text.encode("latin-1")
    kind = body[3:6]
    if kind == b"GSV":
        return
    if kind == b"VTG" and session.fix.speed_kmh is not None and session.fix.course is not None:
        _complete(session, _VTG, ctx, out)  # RMC gave speed and course: nothing to read
        return
    try:
        sentence = pynmea2.parse(body.decode("latin-1"))
    except pynmea2.SentenceTypeError:
        raise UnsupportedMessage(f"sentence {body[1:6]!r}") from None
    except pynmea2.ParseError:
        raise MalformedFrame(f"not an NMEA sentence: {body[:40]!r}") from None
    sentence_type = getattr(sentence, "sentence_type", None)  # proprietary sentences have none
    handler = _SENTENCES.get(sentence_type) if sentence_type else None
    if handler is None:
        raise UnsupportedMessage(f"sentence {body[1:6].decode('latin-1')}")
    handler(sentence.data, ctx, session, out)
    if not checksum_ok:
        _flag_checksum(session, out)


def _flag_checksum(session: _Session, out: list[Message]) -> None:
    session.fix.attributes[Attr.CHECKSUM_OK] = False
    for message in out:
        message.attributes[Attr.CHECKSUM_OK] = False


# ----------------------------------------------------------------- epochs of standard sentences


def _epoch_key(text: str) -> str:
    return text.rstrip("0").rstrip(".") if "." in text else text


def _enter(session: _Session, key: str, kind: int, ctx: DecodeContext, out: list[Message]) -> None:
    """Start a new epoch when the time of day changes or a position sentence repeats."""
    if key != session.epoch or session.seen & kind:
        _close(session, ctx, out)
        if session.epoch is not None:
            session.expected = session.seen
        session.reset()
        session.epoch = key


def _close(session: _Session, ctx: DecodeContext, out: list[Message]) -> None:
    if session.has_position and not session.emitted:
        out.append(_finish(session, ctx))
        session.emitted = True


def _complete(session: _Session, kind: int, ctx: DecodeContext, out: list[Message]) -> None:
    """Emit the epoch when the sentences the last epoch had are all in, or when a position
    sentence the last epoch lacked arrives (a tracker sending lone lines of varying types)."""
    session.seen |= kind
    if not session.has_position or session.emitted:
        return
    expected = session.expected
    if not (expected & ~session.seen) or (kind & _POSITIONED and not expected & kind):
        out.append(_finish(session, ctx))
        session.emitted = True


def _finish(session: _Session, ctx: DecodeContext) -> Message:
    fix = session.fix
    tod = time_of_day(session.tod) if session.tod else time(0)
    day = session.day
    if isinstance(day, str) and day:
        day = day_month_year(day)
    if day:
        fix.time = datetime.combine(day, tod, UTC)  # type: ignore[arg-type]
    else:
        fix.time = nearest_day(tod, _now(ctx))
    message = Message(
        MessageType.POSITION,
        None,
        fix.time,
        fix.valid,
        fix.lat,
        fix.lon,
        fix.speed_kmh,
        fix.course,
        fix.altitude_m,
        fix.satellites,
        fix.hdop,
        [],
        dict(fix.attributes),
    )
    return message


def _checked_time(text: str) -> str:
    """A cheap check of ``hhmmss[.sss]``: the conversion waits for the epoch's end."""
    if len(text) < 6 or not text[:6].isdigit() or text[:2] > "23" or text[2:4] > "59" or text[4:6] > "60":
        raise MalformedFrame(f"bad time of day {text!r}")
    return text


def _checked_day(text: str) -> str:
    """A cheap check of ``ddmmyy``; impossible days (31 April) fail when converted."""
    if (
        len(text) != 6
        or not text.isdigit()
        or not ("01" <= text[:2] <= "31")
        or not ("01" <= text[2:4] <= "12")
    ):
        raise MalformedFrame(f"bad date {text!r}")
    return text


def _position(session: _Session, lat: str, ns: str, lon: str, ew: str) -> None:
    if session.has_position or not lat or not lon:
        return
    fix = session.fix
    fix.lat = degrees_minutes(lat, ns) + 0.0
    fix.lon = degrees_minutes(lon, ew) + 0.0
    if not (-90.0 <= fix.lat <= 90.0 and -180.0 <= fix.lon <= 180.0):
        raise MalformedFrame(f"coordinate out of range: {lat},{ns} {lon},{ew}")
    session.has_position = True


def _rmc(data: list[str], ctx: DecodeContext, session: _Session, out: list[Message]) -> None:
    if len(data) < 9:
        raise MalformedFrame(f"RMC with {len(data)} fields")
    _enter(session, _epoch_key(data[0]), _RMC, ctx, out)
    if data[0]:
        session.tod = _checked_time(data[0])
    if data[8]:
        session.day = _checked_day(data[8])
    fix = session.fix
    fix.valid = data[1] == "A" and (len(data) < 12 or data[11] != "N")
    session.has_position = False  # RMC's coordinates win over GGA/GLL's
    _position(session, data[2], data[3], data[4], data[5])
    speed = to_float(data[6])
    if speed is not None:
        fix.speed_kmh = knots_to_kmh(speed)
    course = to_float(data[7])
    if course is not None:
        fix.course = course % 360.0
    _complete(session, _RMC, ctx, out)


def _gga(data: list[str], ctx: DecodeContext, session: _Session, out: list[Message]) -> None:
    if len(data) < 9:
        raise MalformedFrame(f"GGA with {len(data)} fields")
    _enter(session, _epoch_key(data[0]), _GGA, ctx, out)
    if data[0] and not session.tod:
        session.tod = _checked_time(data[0])
    fix = session.fix
    _position(session, data[1], data[2], data[3], data[4])
    quality = data[5]
    if fix.valid is None or not session.seen & _RMC:
        fix.valid = bool(quality) and quality != "0"
    if data[6]:
        try:
            fix.satellites = int(data[6])
        except ValueError:
            raise MalformedFrame(f"bad satellite count {data[6]!r}") from None
    hdop = to_float(data[7])
    if hdop is not None:
        fix.hdop = hdop
    altitude = to_float(data[8])
    if altitude is not None:
        fix.altitude_m = altitude
    _complete(session, _GGA, ctx, out)


def _gll(data: list[str], ctx: DecodeContext, session: _Session, out: list[Message]) -> None:
    if len(data) < 6:
        raise MalformedFrame(f"GLL with {len(data)} fields")
    _enter(session, _epoch_key(data[4]), _GLL, ctx, out)
    if data[4] and not session.tod:
        session.tod = _checked_time(data[4])
    _position(session, data[0], data[1], data[2], data[3])
    if session.fix.valid is None:
        session.fix.valid = data[5] == "A" and (len(data) < 7 or data[6] != "N")
    _complete(session, _GLL, ctx, out)


def _vtg(data: list[str], ctx: DecodeContext, session: _Session, out: list[Message]) -> None:
    fix = session.fix
    if data and fix.course is None:
        course = to_float(data[0])
        if course is not None:
            fix.course = course % 360.0
    if fix.speed_kmh is None:
        kmh = to_float(data[6]) if len(data) > 6 else None
        if kmh is None and len(data) > 4:
            knots = to_float(data[4])
            kmh = knots_to_kmh(knots) if knots is not None else None
        fix.speed_kmh = kmh
    _complete(session, _VTG, ctx, out)


def _gsa(data: list[str], ctx: DecodeContext, session: _Session, out: list[Message]) -> None:
    if len(data) < 17:
        raise MalformedFrame(f"GSA with {len(data)} fields")
    attributes = session.fix.attributes
    if Attr.PDOP not in attributes:  # several GSA (one per constellation): the first wins
        pdop, hdop, vdop = to_float(data[14]), to_float(data[15]), to_float(data[16])
        if pdop is not None:
            attributes[Attr.PDOP] = pdop
        if vdop is not None:
            attributes[Attr.VDOP] = vdop
        if session.fix.hdop is None and hdop is not None:
            session.fix.hdop = hdop
        attributes[Attr.GNSS_STATUS] = "fix" if data[1] in ("2", "3") else "no_fix"
    _complete(session, _GSA, ctx, out)


def _zda(data: list[str], ctx: DecodeContext, session: _Session, out: list[Message]) -> None:
    if len(data) < 4 or not data[0] or not data[3]:
        return
    _enter(session, _epoch_key(data[0]), 0, ctx, out)
    if not session.tod:
        session.tod = _checked_time(data[0])
    try:
        session.day = date(int(data[3]), int(data[2]), int(data[1]))
    except ValueError:
        raise MalformedFrame(f"bad ZDA date {data[1:4]}") from None
    _complete(session, _ZDA, ctx, out)


def _ignored(data: list[str], ctx: DecodeContext, session: _Session, out: list[Message]) -> None:
    """GSV (satellites in view) adds nothing to a position."""


def _rma(data: list[str], ctx: DecodeContext, session: _Session, out: list[Message]) -> None:
    """Loran-C/GPS RMA: a fix without time; stamped with the reception time."""
    if len(data) < 9:
        raise MalformedFrame(f"RMA with {len(data)} fields")
    if not data[1] or not data[3]:
        return
    speed, course = to_float(data[7]), to_float(data[8])
    out.append(
        Message(
            MessageType.POSITION,
            time=_now(ctx).replace(microsecond=0),
            valid=data[0] == "A",
            lat=degrees_minutes(data[1], data[2]),
            lon=degrees_minutes(data[3], data[4]),
            speed_kmh=knots_to_kmh(speed) if speed is not None else None,
            course=course % 360.0 if course is not None else None,
        )
    )


_SENTENCES: dict[str, Any] = {
    "RMC": _rmc,
    "GGA": _gga,
    "GLL": _gll,
    "VTG": _vtg,
    "GSA": _gsa,
    "ZDA": _zda,
    "GSV": _ignored,
    "RMA": _rma,
}
_STANDARD = frozenset(kind.encode() for kind in _SENTENCES)


# --------------------------------------------------------------------------- vendor lines


def _vendor_id(line: str, ctx: DecodeContext, session: _Session, out: list[Message]) -> str:
    """``$PGID,<id>``, ``$PCPTI,<id>,...``, ``$IMEI=<n>``, ``$GPFID,<id>``, ``$DEVID,0x<hex>``."""
    fields, _ = _checked_fields(line, ctx)
    head = fields[0]
    if head.startswith("IMEI"):
        value = head[4:].lstrip("=:, ") or (fields[1] if len(fields) > 1 else "")
    else:
        value = fields[1].strip() if len(fields) > 1 else ""
    if head == "DEVID" and value[:2].lower() == "0x":
        try:
            value = str(int(value[2:], 16))  # Traccar-compatible: the hex id in decimal
        except ValueError:
            raise MalformedFrame(f"bad DEVID {value!r}") from None
    if not value or not value.isalnum():
        raise MalformedFrame(f"bad identification line {line[:40]!r}")
    return value


def _trccr(line: str, ctx: DecodeContext, session: _Session, out: list[Message]) -> None:
    """``$TRCCR,yyyyMMddHHmmss.sss,A,lat,lon,speed kn,course,altitude,battery %,``."""
    fields, ok = _checked_fields(line, ctx)
    if len(fields) < 9:
        raise MalformedFrame(f"TRCCR with {len(fields)} fields")
    stamp = fields[1]
    try:
        when = datetime.strptime(stamp[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        if "." in stamp:
            when = when.replace(microsecond=int(stamp.split(".", 1)[1][:6].ljust(6, "0")))
        lat, lon = float(fields[3]), float(fields[4])
    except ValueError:
        raise MalformedFrame(f"bad TRCCR {line[:40]!r}") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise MalformedFrame(f"TRCCR coordinate out of range: {lat},{lon}")
    speed, course, altitude = to_float(fields[5]), to_float(fields[6]), to_float(fields[7])
    attributes: dict[str, Any] = {}
    battery = to_float(fields[8])
    if battery is not None:
        attributes[Attr.BATTERY_LEVEL] = battery
    if not ok:
        attributes[Attr.CHECKSUM_OK] = False
    out.append(
        Message(
            MessageType.POSITION,
            time=when,
            valid=fields[2] == "A",
            lat=lat,
            lon=lon,
            speed_kmh=knots_to_kmh(speed) if speed is not None else None,
            course=course % 360.0 if course is not None else None,
            altitude_m=altitude,
            attributes=attributes,
        )
    )


def _gpiop(line: str, ctx: DecodeContext, session: _Session, out: list[Message]) -> None:
    """``$GPIOP,inputs,outputs,adc1..adc4,power V,battery V``: I/O state, no fix."""
    fields, ok = _checked_fields(line, ctx)
    if len(fields) < 9:
        raise MalformedFrame(f"GPIOP with {len(fields)} fields")
    attributes: dict[str, Any] = {"nmea.inputs": fields[1], "nmea.outputs": fields[2]}
    for index in range(4):
        value = to_float(fields[3 + index])
        if value is not None:
            attributes[f"nmea.adc{index + 1}"] = value
    power, battery = to_float(fields[7]), to_float(fields[8])
    if power is not None:
        attributes[Attr.POWER_V] = power
    if battery is not None:
        attributes[Attr.BATTERY_V] = battery
    if not ok:
        attributes[Attr.CHECKSUM_OK] = False
    out.append(Message(MessageType.STATUS, time=_now(ctx).replace(microsecond=0), attributes=attributes))


def _qze(line: str, ctx: DecodeContext, out: list[Message]) -> str:
    """``QZE,imei,event,ddMMyyyy,hhmmss,lat,lon,speed km/h,course,A|V,io``: decimal degrees."""
    fields = line.split(",")
    if len(fields) < 10 or not fields[1].isdigit():
        raise MalformedFrame(f"bad QZE line {line[:40]!r}")
    try:
        when = datetime.strptime(fields[3] + fields[4], "%d%m%Y%H%M%S").replace(tzinfo=UTC)
        lat, lon = float(fields[5]), float(fields[6])
    except ValueError:
        raise MalformedFrame(f"bad QZE line {line[:40]!r}") from None
    speed, course = to_float(fields[7]), to_float(fields[8])
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise MalformedFrame(f"QZE coordinate out of range: {lat},{lon}")
    out.append(
        Message(
            MessageType.POSITION,
            time=when,
            valid=fields[9] == "A",
            lat=lat,
            lon=lon,
            speed_kmh=speed,
            course=course % 360.0 if course is not None else None,
            attributes={Attr.EVENT_CODE: fields[2]},
        )
    )
    return fields[1]


_VENDOR = {
    "PGID,": _vendor_id,
    "PCPTI": _vendor_id,
    "IMEI": _vendor_id,
    "GPFID": _vendor_id,
    "DEVID": _vendor_id,
    "TRCCR": _trccr,
    "GPIOP": _gpiop,
}


# --------------------------------------------------------------------------- device side


def sentence(body: str) -> str:
    """``$body*HH`` with CR LF."""
    return f"${body}*{nmea_checksum(body)}\r\n"


def format_degrees_minutes(value: float, degree_digits: int) -> str:
    """Unsigned ``(d)ddmm.mmmm`` for a coordinate (the hemisphere letter goes apart)."""
    magnitude = abs(value)
    degrees = int(magnitude)
    minutes = round((magnitude - degrees) * 60.0, 4)
    if minutes >= 60.0:
        degrees, minutes = degrees + 1, 0.0
    return f"{degrees:0{degree_digits}d}{minutes:07.4f}"


class NmeaDevice(DeviceCodec):
    """A GNSS receiver (serial: no identification) or an NMEA tracker over TCP ($PGID first)."""

    protocol = "nmea"

    def handshake(self) -> Outgoing | None:
        if self.transport == "serial":
            return None
        return Outgoing(sentence(f"PGID,{self.terminal_id}").encode(), needs_ack=False)

    def position(self, message: Message) -> Outgoing:
        """One receiver epoch: RMC, VTG, GGA, GSA and GSV, as a u-blox receiver sends them."""
        when = (message.time or datetime.now(UTC)).astimezone(UTC)
        tod = when.strftime("%H%M%S") + f".{when.microsecond // 10000:02d}"
        lat = format_degrees_minutes(message.lat or 0.0, 2)
        lon = format_degrees_minutes(message.lon or 0.0, 3)
        ns = "S" if (message.lat or 0.0) < 0 else "N"
        ew = "W" if (message.lon or 0.0) < 0 else "E"
        valid = message.valid is not False
        knots = (message.speed_kmh or 0.0) / 1.852
        course = message.course or 0.0
        satellites = message.satellites if message.satellites is not None else (8 if valid else 0)
        hdop = message.hdop if message.hdop is not None else 1.0
        altitude = message.altitude_m or 0.0
        used = [str(prn) for prn in range(1, min(satellites, 12) + 1)]
        lines = [
            sentence(
                f"GPRMC,{tod},{'A' if valid else 'V'},{lat},{ns},{lon},{ew},{knots:.3f},{course:.2f},"
                f"{when.strftime('%d%m%y')},,,{'A' if valid else 'N'}"
            ),
            sentence(f"GPVTG,{course:.2f},T,,M,{knots:.3f},N,{message.speed_kmh or 0.0:.3f},K,A"),
            sentence(
                f"GPGGA,{tod},{lat},{ns},{lon},{ew},{1 if valid else 0},{satellites:02d},{hdop:.2f},"
                f"{altitude:.1f},M,0.0,M,,"
            ),
            sentence(
                f"GPGSA,A,{3 if valid else 1},{','.join(used + [''] * (12 - len(used)))},"
                f"{hdop * 1.4:.2f},{hdop:.2f},{hdop * 1.1:.2f}"
            ),
        ]
        in_view = max(satellites, 1)
        pages = min((in_view + 3) // 4, 3)
        for page in range(pages):
            sats = [
                f"{prn:02d},{30 + prn % 50:02d},{(prn * 37) % 360:03d},{25 + prn % 20:02d}"
                for prn in range(page * 4 + 1, min(page * 4 + 4, in_view) + 1)
            ]
            lines.append(sentence(f"GPGSV,{pages},{page + 1},{in_view:02d},{','.join(sats)}"))
        return Outgoing("".join(lines).encode(), needs_ack=False)

    def status(self, attributes: Mapping[str, Any], alarms: list[str]) -> Outgoing | None:
        """``$GPIOP`` with the power and battery voltages (trackers only)."""
        if self.transport == "serial":
            return None
        power = float(attributes.get(Attr.POWER_V, 0.0))
        battery = float(attributes.get(Attr.BATTERY_V, 0.0))
        body = f"GPIOP,00000000,00000000,0.00,0.00,0.00,0.00,{power:.2f},{battery:.2f}"
        return Outgoing(sentence(body).encode(), needs_ack=False)

    def corrupt_checksum(self, frame: bytes) -> bytes:
        lines = frame.split(b"\r\n")
        for index, line in enumerate(lines):
            star = line.rfind(b"*")
            if star >= 0 and len(line) >= star + 3:
                wrong = (int(line[star + 1 : star + 3], 16) ^ 0x5A) & 0xFF
                lines[index] = line[: star + 1] + f"{wrong:02X}".encode()
                break
        return b"\r\n".join(lines)


SPEC = ProtocolSpec(
    name="nmea",
    split=split,
    decode=decode,
    default_port=5005,
    transports=frozenset({"tcp", "serial"}),
    text=True,
    max_frame=MAX_LINE,
    device=NmeaDevice,
)
