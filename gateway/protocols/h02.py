"""H02 (Sinotrack ``*HQ`` family): text and binary ``$`` framer, decoder, optional replies, device side.

Text frames: ``*HQ,<id>,<type>,...#`` (also ``*hq`` and ``*TH``; CR/LF after ``#`` are
swallowed).  Types read: V1/V2/V5/VI1 (and V4 command echoes) carry a fix; V19 adds the
ICCID; VP1 has no time field (``VP1,V`` carries cells); V3 and NBR carry cell towers;
LINK and HTBT are heartbeats with the battery level; BS, BASE and XT carry no fix.
Binary frames: ``$`` + BCD id (5 bytes, or 8 bytes for 15-digit IMEIs in 42-byte frames),
time, date, BCD coordinates with a flag nibble, speed, course, status; 32 bytes, or 45/48
with odometer and serving cell.  There is no length field: over TCP the framer takes the
frame the next start marker (or the end of the buffered bytes) delimits; a UDP datagram is
one or several whole frames.  No checksum in either form.

Frames that start with ``X`` (a vendor binary variant) are skipped as garbage.

Time is UTC, speed is knots (reported as km/h).  The status word is active-low: bit 0
vibration, bit 1 or 18 SOS, bit 2 overspeed, bit 19 power cut; bit 10 set = ignition on.

Replies: H02 trackers do not wait for an acknowledgement of reports or heartbeats (they
send V1 whether or not the server answers), and an unexpected ``*HQ`` line is read as a
command by some firmware, so by default the server sends nothing.  With
``ctx.options["ack"]`` the server answers each report/heartbeat the way the Micodus sibling
does: ``*HQ,<id>,V4,<type>,<yyyyMMddHHmmss UTC>#``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from core.messages import Message, MessageType, knots_to_kmh
from core.vocabulary import Alarm, Attr
from gateway.protocols.base import (
    DecodeContext,
    Decoded,
    DeviceCodec,
    MalformedFrame,
    Outgoing,
    ProtocolSpec,
    ReplyEvent,
    Split,
    UnsupportedMessage,
)
from gateway.protocols.nmea import (
    day_month_year,
    degrees_minutes,
    format_degrees_minutes,
    time_of_day,
    to_float,
)

MAX_TEXT = 1024
SHORT, LONG_ID, LONG, LONGER = 32, 42, 45, 48
_TRAILERS = b"\r\n"

# --------------------------------------------------------------------------- framer


def split(buffer: bytes) -> Split:
    """Text frames run from ``*`` to ``#``; binary ones from ``$`` over a fixed layout."""
    frames: list[bytes] = []
    garbage = 0
    position = 0
    size = len(buffer)
    while position < size:
        marker = buffer[position]
        if marker in _TRAILERS:
            position += 1
            continue
        if marker == 0x2A:  # '*' text frame up to '#'
            end = buffer.find(b"#", position + 1, position + MAX_TEXT)
            if end < 0:
                if size - position < MAX_TEXT and _next_start(buffer, position + 1) < 0:
                    break  # need more bytes
                garbage += 1  # no '#' in reach, or another start first: resync
                position += 1
                continue
            restart = _next_start(buffer, position + 1, end)
            if restart >= 0:  # a frame cut short and followed by a new one
                garbage += restart - position
                position = restart
                continue
            frames.append(buffer[position : end + 1])
            position = end + 1
            continue
        if marker == 0x24:  # '$' binary frame
            length = _binary_length(buffer, position)
            if length is None:
                break
            if length == 0:
                garbage += 1
                position += 1
                continue
            frames.append(buffer[position : position + length])
            position += length
            continue
        next_start = _next_start(buffer, position + 1)
        skipped = (next_start if next_start >= 0 else size) - position
        garbage += skipped
        position += skipped
    return Split(position, frames, garbage)


def split_datagram(datagram: bytes) -> Split:
    """A UDP datagram holds whole frames: a binary frame may end the datagram at any length."""
    result = split(datagram)
    rest = datagram[result.consumed :]
    if rest:
        if rest[:1] == b"$" and len(rest) >= SHORT and _binary_layout(rest, 0):
            result.frames.append(rest)
        else:
            result.garbage += len(rest)
    return Split(len(datagram), result.frames, result.garbage)


def _next_start(buffer: bytes, start: int, end: int | None = None) -> int:
    """Where the next frame marker is (text frames never hold ``*`` or ``$``), or -1."""
    limit = len(buffer) if end is None else end
    found = [
        index for index in (buffer.find(b"*", start, limit), buffer.find(b"$", start, limit)) if index >= 0
    ]
    return min(found) if found else -1


def _is_bcd(data: bytes) -> bool:
    return all((byte >> 4) < 10 and (byte & 0x0F) < 10 for byte in data)


def _binary_layout(buffer: bytes, start: int) -> int:
    """Id length (5 or 8) when the time and date after it read as BCD, else 0."""
    for id_length in (5, 8):
        when = buffer[start + 1 + id_length : start + 7 + id_length]
        if len(when) == 6 and _is_bcd(when) and when[0] < 0x24 and when[1] < 0x60 and 0 < when[4] < 0x13:
            return id_length
    return 0


def _binary_length(buffer: bytes, start: int) -> int | None:
    """Length of the binary frame at ``start``: None = need more bytes, 0 = not a frame."""
    available = len(buffer) - start
    if available < SHORT:
        return None if _is_bcd(buffer[start + 1 : start + 6]) else 0
    id_length = _binary_layout(buffer, start)
    if not id_length:
        return 0
    candidates = (LONG_ID,) if id_length == 8 else (SHORT, LONG, LONGER)
    for length in candidates:
        if available == length:
            return length  # the bytes received end exactly here: one TCP write
        if available > length and buffer[start + length] in b"*$\r\n":
            return length
    if available > candidates[-1]:
        return candidates[0]  # nothing delimits it: the shortest layout, resync after
    return None


# --------------------------------------------------------------------------- decoding


def decode(frame: bytes, ctx: DecodeContext) -> Decoded:
    if not frame:
        raise MalformedFrame("empty frame")
    if frame[0] == 0x24:
        message = _decode_binary(frame)
        return Decoded([message], _ack(ctx, message.terminal_id, "V1"), message.terminal_id)
    if frame[0] != 0x2A:
        raise MalformedFrame(f"not an H02 frame: starts with {frame[:1]!r}")
    text = frame.decode("latin-1").rstrip("\r\n")
    if not text.endswith("#"):
        raise MalformedFrame("text frame without '#'")
    fields = text[1:-1].split(",")
    if len(fields) < 3 or fields[0].upper() not in ("HQ", "TH"):
        raise MalformedFrame(f"not an *HQ frame: {text[:20]!r}")
    terminal_id = fields[1].strip()
    if not terminal_id.isalnum():
        raise MalformedFrame(f"bad device id {terminal_id!r}")
    kind = fields[2].upper()
    reader = _READERS.get(kind)
    if reader is None:
        raise UnsupportedMessage(f"H02 type {kind}")
    messages = reader(fields[3:], ctx)
    for message in messages:
        message.terminal_id = terminal_id
    reply = _ack(ctx, terminal_id, kind) if kind in _ACKED else None
    return Decoded(messages, reply, terminal_id)


def _ack(ctx: DecodeContext, terminal_id: str | None, kind: str) -> bytes | None:
    if not ctx.options.get("ack") or terminal_id is None:
        return None
    return reply_frame(terminal_id, kind, ctx.now())


def reply_frame(terminal_id: str, kind: str, at: datetime) -> bytes:
    """The optional server acknowledgement ``*HQ,<id>,V4,<type>,<yyyyMMddHHmmss>#``."""
    return f"*HQ,{terminal_id},V4,{kind},{at.astimezone(UTC).strftime('%Y%m%d%H%M%S')}#".encode()


def _status_word(text: str) -> int:
    try:
        value = int(text, 16)
    except ValueError:
        raise MalformedFrame(f"bad status word {text!r}") from None
    if len(text) != 8:
        raise MalformedFrame(f"status word is not 8 hex digits: {text!r}")
    return value


def apply_status(message: Message, status: int) -> None:
    """The active-low status word: alarms, ignition, and the raw value."""
    message.attributes[Attr.STATUS] = status
    message.attributes[Attr.IGNITION] = bool(status & (1 << 10))
    if not status & 1:
        message.alarms.append(Alarm.VIBRATION)
    if not status & (1 << 1) or not status & (1 << 18):
        message.alarms.append(Alarm.SOS)
    if not status & (1 << 2):
        message.alarms.append(Alarm.OVERSPEED)
    if not status & (1 << 19):
        message.alarms.append(Alarm.POWER_CUT)
        message.attributes[Attr.POWER_CUT] = True


def _fix_time(tod: str, day: str, ctx: DecodeContext) -> datetime:
    """UTC time from ``hhmmss`` and ``ddmmyy``; the reception time for whatever is missing."""
    tod, day = tod.strip(), day.strip()
    if tod and day:
        return datetime.combine(day_month_year(day), time_of_day(tod), UTC)
    now = ctx.now().astimezone(UTC).replace(microsecond=0)
    if day:  # a date without time (VP1): now if it is that day, else the day's start
        on = day_month_year(day)
        return now if abs(now.date() - on) <= timedelta(days=1) else datetime.combine(on, now.time(), UTC)
    return now


def _location(fields: list[str], ctx: DecodeContext) -> Message:
    """``hhmmss,A|V,lat,N|S,lon,E|W,speed,course,ddmmyy,status`` (status may be absent)."""
    if len(fields) < 9:
        raise MalformedFrame(f"location with {len(fields)} fields")
    message = Message(MessageType.POSITION, time=_fix_time(fields[0], fields[8], ctx))
    message.valid = fields[1].strip().upper() == "A"
    if fields[2].strip() and fields[4].strip():
        message.lat = degrees_minutes(fields[2], fields[3].strip())
        message.lon = degrees_minutes(fields[4], fields[5].strip())
        if not (-90.0 <= message.lat <= 90.0 and -180.0 <= message.lon <= 180.0):
            raise MalformedFrame(f"coordinate out of range: {fields[2]} {fields[4]}")
    else:
        message.type = MessageType.STATUS  # no fix in this report
        message.valid = False
    speed = to_float(fields[6])
    if speed is not None:
        message.speed_kmh = knots_to_kmh(speed)
    course = to_float(fields[7])
    if course is not None:
        message.course = course % 360.0
    if len(fields) > 9 and fields[9].strip():
        apply_status(message, _status_word(fields[9].strip()))
    return message


def _cell(mcc: str, mnc: str, lac: str, cid: str) -> dict[str, int] | None:
    """A serving cell; devices send it in decimal or in hex (letters, or an MCC < 200)."""
    values = [part.strip() for part in (mcc, mnc, lac, cid)]
    if not all(values):
        return None
    try:
        decimal = [int(value) for value in values]
        if not 200 <= decimal[0] <= 999:
            raise ValueError
        numbers = decimal
    except ValueError:
        try:
            numbers = [int(value, 16) for value in values]
        except ValueError:
            return None
    if not numbers[2] and not numbers[3]:
        return None
    return {"mcc": numbers[0], "mnc": numbers[1], "lac": numbers[2], "cid": numbers[3]}


def _v1(fields: list[str], ctx: DecodeContext) -> list[Message]:
    message = _location(fields, ctx)
    extras = fields[10:]
    if len(extras) >= 4:
        cell = _cell(*extras[:4])
        if cell is not None:
            message.attributes[Attr.CELL] = cell
    return [message]


def _v19(fields: list[str], ctx: DecodeContext) -> list[Message]:
    """V1 layout, then ``,<phone>,<ICCID>,<status>`` in place of the status word."""
    if len(fields) < 12:
        raise MalformedFrame(f"V19 with {len(fields)} fields")
    message = _location(fields[:9] + [fields[-1]], ctx)
    iccid = "".join(char for char in fields[-2] if char.isalnum()).rstrip("Ff")
    if iccid:
        message.attributes[Attr.ICCID] = iccid
    return [message]


def _vp1(fields: list[str], ctx: DecodeContext) -> list[Message]:
    """``VP1,A,lat,N,lon,E,speed,course,ddmmyy`` or ``VP1,V,mcc,mnc,lac,cid,rssi[Ylac,cid,rssi]...``."""
    if fields and fields[0].upper() == "A" and len(fields) >= 8:
        return [_location(["", *fields[:8]], ctx)]
    message = Message(MessageType.STATUS, time=_fix_time("", "", ctx), valid=False)
    if len(fields) >= 5:
        cells = _vp1_cells(fields)
        if cells:
            message.attributes[Attr.CELL] = cells[0]
            message.attributes["h02.cells"] = cells
    return [message]


def _vp1_cells(fields: list[str]) -> list[dict[str, int]]:
    try:
        mcc, mnc = int(fields[1]), int(fields[2])
        cells = []
        for group in ",".join(fields[3:]).split("Y"):
            parts = [part for part in group.split(",") if part]
            if len(parts) >= 2:
                cells.append({"mcc": mcc, "mnc": mnc, "lac": int(parts[0]), "cid": int(parts[1])})
        return cells
    except ValueError:
        return []


def _v4(fields: list[str], ctx: DecodeContext) -> list[Message]:
    """``V4,<command>,<result...>,<command time>,<V1 location>``: a command echo and a fix."""
    if len(fields) < 11:
        raise MalformedFrame(f"V4 with {len(fields)} fields")
    location = fields[-10:]
    result = ",".join(fields[:-10])
    position = _location(location, ctx)
    position.attributes[Attr.RESULT] = result
    echo = Message(MessageType.COMMAND_RESULT, time=position.time, attributes={Attr.RESULT: result})
    return [echo, position]


def _cells_report(fields: list[str], ctx: DecodeContext, kind: str) -> list[Message]:
    """V3 (``hhmmss,MCCMNC,n,{lac,cid,rxlev,ta}*n,...,ddmmyy,status``) and NBR
    (``hhmmss,mcc,mnc,ta,n,{lac,cid,rxlev}*n,ddmmyy,status[,battery]``)."""
    try:
        if kind == "V3":
            mcc, mnc = int(fields[1][:3]), int(fields[1][3:])
            count, start, width = int(fields[2]), 3, 4
        else:
            mcc, mnc = int(fields[1]), int(fields[2])
            count, start, width = int(fields[4]), 5, 3
        cells = [
            {
                "mcc": mcc,
                "mnc": mnc,
                "lac": int(fields[start + i * width]),
                "cid": int(fields[start + i * width + 1]),
            }
            for i in range(count)
        ]
    except (ValueError, IndexError):
        raise MalformedFrame(f"bad {kind} cell list") from None
    tail = fields[start + count * width :]
    day_index = next((i for i, value in enumerate(tail) if len(value) == 6 and value.isdigit()), None)
    day = tail[day_index] if day_index is not None else ""
    message = Message(MessageType.STATUS, time=_fix_time(fields[0], day, ctx), valid=False)
    if cells:
        message.attributes[Attr.CELL] = cells[0]
        message.attributes["h02.cells"] = cells
    if day_index is not None and day_index + 1 < len(tail):
        apply_status(message, _status_word(tail[day_index + 1].strip()))
    return [message]


def _v3(fields: list[str], ctx: DecodeContext) -> list[Message]:
    return _cells_report(fields, ctx, "V3")


def _nbr(fields: list[str], ctx: DecodeContext) -> list[Message]:
    return _cells_report(fields, ctx, "NBR")


def _link(fields: list[str], ctx: DecodeContext) -> list[Message]:
    """``LINK,hhmmss,gsm%,satellites,battery%,steps,turnovers,ddmmyy,status``."""
    message = Message(MessageType.HEARTBEAT)
    if len(fields) >= 8:
        message.time = _fix_time(fields[0], fields[6], ctx)
        signal, satellites, battery = to_float(fields[1]), to_float(fields[2]), to_float(fields[3])
        if signal is not None:
            message.attributes[Attr.GSM_SIGNAL_RAW] = int(signal)
            message.attributes[Attr.GSM_SIGNAL] = max(0, min(100, int(signal)))
        if satellites is not None:
            message.satellites = int(satellites)
        if battery is not None:
            message.attributes[Attr.BATTERY_LEVEL] = max(0, min(100, int(battery)))
        if fields[7].strip():
            apply_status(message, _status_word(fields[7].strip()))
    else:
        message.time = _fix_time("", "", ctx)
    return [message]


def _htbt(fields: list[str], ctx: DecodeContext) -> list[Message]:
    """``HTBT[,battery%]``."""
    message = Message(MessageType.HEARTBEAT, time=_fix_time("", "", ctx))
    battery = to_float(fields[0]) if fields else None
    if battery is not None:
        message.attributes[Attr.BATTERY_LEVEL] = max(0, min(100, int(battery)))
    return [message]


def _no_fix(fields: list[str], ctx: DecodeContext) -> list[Message]:
    """BS, BASE, XT: device status without a fix; the status word when there is one."""
    message = Message(MessageType.STATUS, time=_fix_time("", "", ctx), valid=False)
    words = [value.strip() for value in fields if len(value.strip()) == 8]
    for word in words:
        try:
            apply_status(message, int(word, 16))
            break
        except ValueError:
            continue
    return [message]


_READERS = {
    "V1": _v1,
    "V2": _v1,
    "V5": _v1,
    "V6": _v1,
    "VI1": _v1,
    "V19": _v19,
    "VP1": _vp1,
    "V4": _v4,
    "V3": _v3,
    "NBR": _nbr,
    "LINK": _link,
    "HTBT": _htbt,
    "BS": _no_fix,
    "BASE": _no_fix,
    "XT": _no_fix,
}
_ACKED = frozenset({"V1", "V2", "V5", "V6", "VI1", "V19", "VP1", "LINK", "HTBT", "V3", "NBR"})


def _bcd(data: bytes) -> str:
    return data.hex()


def _decode_binary(frame: bytes) -> Message:
    id_length = _binary_layout(frame, 0)
    if len(frame) < SHORT or not id_length:
        raise MalformedFrame(f"binary frame of {len(frame)} bytes does not read")
    if id_length == 8 and len(frame) < LONG_ID:
        raise MalformedFrame(f"long-id binary frame of {len(frame)} bytes")
    digits = frame.hex()
    terminal_id = digits[2 : 2 + id_length * 2]
    if id_length == 8:
        terminal_id = terminal_id[:15]
    cursor = 1 + id_length
    body = digits[cursor * 2 :]
    try:
        hour, minute, second = int(body[0:2]), int(body[2:4]), int(body[4:6])
        day, month, year = int(body[6:8]), int(body[8:10]), int(body[10:12])
        when = datetime(2000 + year, month, day, hour, minute, second, tzinfo=UTC)
        lat_digits, level, lon_digits, flags = body[12:20], frame[cursor + 10], body[22:31], int(body[31], 16)
        lat = int(lat_digits[0:2]) + int(lat_digits[2:]) / 10000.0 / 60.0
        lon = int(lon_digits[0:3]) + int(lon_digits[3:]) / 10000.0 / 60.0
        speed = int(body[32:35])
        course = (int(body[35], 16) & 0x0F) * 100 + int(body[36:38])
    except ValueError:
        raise MalformedFrame("binary frame with non-BCD fields") from None
    if lat > 90.0 or lon > 180.0:
        raise MalformedFrame(f"coordinate out of range: {lat} {lon}")
    message = Message(
        MessageType.POSITION,
        terminal_id,
        when,
        bool(flags & 0x2),
        round(lat if flags & 0x4 else -lat, 6) + 0.0,
        round(lon if flags & 0x8 else -lon, 6) + 0.0,
        knots_to_kmh(speed),
        float(course % 360),
    )
    status_at = cursor + 19
    apply_status(message, int.from_bytes(frame[status_at : status_at + 4], "big"))
    message.attributes["h02.level"] = level
    tail = frame[status_at + 4 :]
    if len(frame) == LONG:
        # 45-byte frames: ..., odometer(4), MCC(2), MNC(1), LAC(2), CID(3)
        message.attributes["h02.odometer"] = int.from_bytes(tail[4:8], "big")
        mcc, mnc = int.from_bytes(tail[8:10], "big"), tail[10]
        lac, cid = int.from_bytes(tail[11:13], "big"), int.from_bytes(tail[13:16], "big")
        if mcc and (lac or cid):
            message.attributes[Attr.CELL] = {"mcc": mcc, "mnc": mnc, "lac": lac, "cid": cid}
    return message


# --------------------------------------------------------------------------- device side


def status_word(alarms: list[str], attributes: Mapping[str, Any]) -> int:
    """The active-low status word a device sends for these alarms and attributes."""
    word = 0xFFFFFFFF
    if Alarm.VIBRATION in alarms:
        word &= ~1
    if Alarm.SOS in alarms:
        word &= ~(1 << 1)
    if Alarm.OVERSPEED in alarms:
        word &= ~(1 << 2)
    if Alarm.POWER_CUT in alarms or attributes.get(Attr.POWER_CUT):
        word &= ~(1 << 19)
    if attributes.get(Attr.IGNITION) is False:
        word &= ~(1 << 10)
    return word & 0xFFFFFFFF


class H02Device(DeviceCodec):
    """A Sinotrack-style H02 tracker sending text V1 reports (binary with ``binary=True``)."""

    protocol = "h02"

    def __init__(
        self, terminal_id: str, *, tz: Any = UTC, transport: str = "tcp", binary: bool = False
    ) -> None:
        super().__init__(terminal_id, tz=tz, transport=transport)
        self.binary = binary

    def position(self, message: Message) -> Outgoing:
        when = (message.time or datetime.now(UTC)).astimezone(UTC)
        lat, lon = message.lat or 0.0, message.lon or 0.0
        knots = (message.speed_kmh or 0.0) / 1.852
        word = status_word(message.alarms, message.attributes)
        if self.binary and self.terminal_id.isdigit() and len(self.terminal_id) == 10:
            return Outgoing(self._binary(when, message, knots, word), needs_ack=False)
        text = (
            f"*HQ,{self.terminal_id},V1,{when:%H%M%S},{'V' if message.valid is False else 'A'},"
            f"{format_degrees_minutes(lat, 2)},{'S' if lat < 0 else 'N'},"
            f"{format_degrees_minutes(lon, 3)},{'W' if lon < 0 else 'E'},"
            f"{knots:06.2f},{int(message.course or 0):03d},{when:%d%m%y},{word:08X}#"
        )
        return Outgoing(text.encode(), needs_ack=False)

    def _binary(self, when: datetime, message: Message, knots: float, word: int) -> bytes:
        lat, lon = abs(message.lat or 0.0), abs(message.lon or 0.0)
        lat_minutes = round((lat - int(lat)) * 600000)
        lon_minutes = round((lon - int(lon)) * 600000)
        flags = (0x2 if message.valid is not False else 0) | (0x4 if (message.lat or 0) >= 0 else 0)
        flags |= 0x8 if (message.lon or 0) >= 0 else 0
        course = int(message.course or 0) % 360
        digits = (
            f"{self.terminal_id}{when:%H%M%S%d%m%y}{int(lat):02d}{lat_minutes:06d}00"
            f"{int(lon):03d}{lon_minutes:06d}{flags:X}{min(int(round(knots)), 999):03d}{course:03d}"
        )
        return b"$" + bytes.fromhex(digits) + word.to_bytes(4, "big") + b"\xff\x00\x00"

    def heartbeat(self, attributes: Mapping[str, Any] | None = None) -> Outgoing | None:
        level = int((attributes or {}).get(Attr.BATTERY_LEVEL, 100))
        return Outgoing(f"*HQ,{self.terminal_id},HTBT,{level}#".encode(), needs_ack=False)

    def status(self, attributes: Mapping[str, Any], alarms: list[str]) -> Outgoing | None:
        """A LINK heartbeat: signal, satellites, battery and the status word."""
        now = datetime.now(UTC)
        signal = int(attributes.get(Attr.GSM_SIGNAL, 80))
        battery = int(attributes.get(Attr.BATTERY_LEVEL, 100))
        word = status_word(alarms, attributes)
        text = f"*HQ,{self.terminal_id},LINK,{now:%H%M%S},{signal},0,{battery},0,0,{now:%d%m%y},{word:08X}#"
        return Outgoing(text.encode(), needs_ack=False)

    def on_reply(self, data: bytes) -> ReplyEvent:
        """Server lines are acknowledgements (``V4``) the tracker does not wait for."""
        event = ReplyEvent()
        for frame in split_datagram(data).frames:
            fields = frame.decode("latin-1").strip("*#").split(",")
            if len(fields) >= 4 and fields[2] == "V4" and fields[1] == self.terminal_id:
                event.handshake_done = True
        return event


SPEC = ProtocolSpec(
    name="h02",
    split=split,
    decode=decode,
    default_port=5013,
    transports=frozenset({"tcp", "udp"}),
    text=True,
    max_frame=MAX_TEXT,
    split_datagram=split_datagram,
    device=H02Device,
)
