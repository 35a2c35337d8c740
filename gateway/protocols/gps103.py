"""GPS103 / TK103 (Xexun-style ``imei:`` text): framer, decoder, LOAD/ON replies, device side.

Frames are ASCII and end with ``;`` (``*`` for the alternative layout, CR/LF for some
firmware), or arrive unterminated: the next ``imei:`` then ends the previous one.

* login ``##,imei:<IMEI>,A;`` → the server answers ``LOAD``;
* heartbeat: the bare IMEI (``359586015829802;``) → the server answers ``ON``; a heartbeat
  glued in front of a report is answered too;
* report ``imei:<IMEI>,<keyword>,<local time>,<phone>,F,<hhmmss.sss UTC>,<A|V>,<lat>,<N|S>,
  <lon>,<E|W>,<knots>,<course>,<altitude>,<acc>,<door>,<fuel1 %>,<fuel2 %>,<temp>;``:
  the fix time is the UTC time of day on the local date, moved by a day when the local
  time is on the other side of midnight (a terminal in UTC+3 at 02:59 local reports
  23:59:57 UTC of the previous day).  Without a UTC time the local time is converted with
  the terminal's zone (``ctx.tz``).  ``L`` instead of ``F``: no GPS, LAC/CID in hex follow;
* ``imei:<IMEI>,OBD,<local time>,odometer,fuel,avg fuel,hours,speed,load %,coolant,
  throttle %,rpm,battery V,DTCs...``: engine data without a fix;
* the alternative layout ``imei:<IMEI>,<name>,---,...,hhmmss,ddmmyy,rssi,valid,lat,lon,
  km/h,course,altitude,hdop,satellites,ignition,charge,...,*`` (decimal degrees).

The keyword is kept as ``event_code`` and mapped onto the shared alarms.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, tzinfo
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
)
from gateway.protocols.nmea import degrees_minutes, format_degrees_minutes, nearest_day, time_of_day

MAX_FRAME = 1024
LOGIN_REPLY = b"LOAD"
HEARTBEAT_REPLY = b"ON"

KEYWORD_ALARMS = {
    "help me": Alarm.SOS,
    "low battery": Alarm.LOW_BATTERY,
    "ac alarm": Alarm.POWER_CUT,
    "move": Alarm.MOVEMENT,
    "speed": Alarm.OVERSPEED,
    "stockade": Alarm.GEOFENCE,
    "door alarm": Alarm.DOOR,
    "sensor alarm": Alarm.VIBRATION,
    "accident alarm": Alarm.ACCIDENT,
    "bonnet alarm": Alarm.TAMPER,
    "acc alarm": Alarm.GENERAL,
    "footbrake alarm": Alarm.GENERAL,
}
ALARM_KEYWORDS = {alarm: keyword for keyword, alarm in KEYWORD_ALARMS.items() if alarm != Alarm.GENERAL}

# --------------------------------------------------------------------------- framer

_DELIMITER = re.compile(rb"[;*\r\n]")
_CONTROL = bytes(range(0, 32)) + b"\x7f"  # latin-1 letters may appear in keywords


def split(buffer: bytes) -> Split:
    """Frames end at ``;``, ``*`` or a line end; an unterminated one at the next ``imei:``."""
    frames: list[bytes] = []
    garbage = 0
    position = 0
    size = len(buffer)
    while position < size:
        found = _DELIMITER.search(buffer, position)
        end = found.start() if found else size
        first = buffer.find(b"imei:", position, end)
        if first >= 0:
            second = buffer.find(b"imei:", first + 5, end)
            if second >= 0:  # an unterminated report followed by the next one
                cut = second - 3 if buffer[second - 3 : second] == b"##," else second
                garbage += _take(buffer[position:cut], frames)
                position = cut
                continue
        if found is None:
            rest = buffer[position:]
            if len(rest) == 15 and rest.isdigit():  # a bare-IMEI heartbeat, no terminator
                frames.append(rest)
                position = size
            elif len(rest) > MAX_FRAME:
                restart = buffer.find(b"imei:", position + 1)
                skipped = (restart if restart > 0 else size) - position
                garbage += skipped
                position += skipped
                continue
            break
        garbage += _take(buffer[position:end], frames)
        position = end + 1
    return Split(position, frames, garbage)


def split_datagram(datagram: bytes) -> Split:
    """A datagram holds whole frames; the last one may lack its terminator."""
    result = split(datagram)
    if result.consumed < len(datagram):
        result.garbage += _take(datagram[result.consumed :], result.frames)
    return Split(len(datagram), result.frames, result.garbage)


def _take(segment: bytes, frames: list[bytes]) -> int:
    """Add the frame in ``segment`` (one delimited piece); returns the garbage bytes skipped."""
    if not segment:
        return 0
    start = 0
    if len(segment.translate(None, _CONTROL)) != len(segment):
        start = max(segment.rfind(bytes([byte])) for byte in set(segment) if byte in _CONTROL) + 1
    marker = segment.find(b"imei:", start)
    if marker >= 0:
        if segment[start:marker].endswith(b"##,"):
            start = marker - 3
        else:  # keep a heartbeat IMEI glued in front, drop anything else
            start = marker - _trailing_id(segment[start:marker])
    else:
        body = segment[start:].rstrip()
        digits = _trailing_id(body)
        if not digits:
            return len(segment)
        start = len(body) - digits
        segment = body
    frame = segment[start:]
    if frame:
        frames.append(frame)
    return start


def _trailing_id(text: bytes) -> int:
    """Length of the 10-20 digit id that ``text`` ends with, or 0."""
    digits = len(text) - len(text.rstrip(b"0123456789"))
    return digits if 10 <= digits <= 20 else 0


# --------------------------------------------------------------------------- decoding

_GLUED_HEARTBEAT = re.compile(r"(\d{10,20})(?=imei:|##,)")


def decode(frame: bytes, ctx: DecodeContext) -> Decoded:
    text = frame.decode("latin-1").strip().rstrip(";*").strip()
    if not text:
        raise MalformedFrame("empty frame")
    if text.isdigit():
        if not 10 <= len(text) <= 20:
            raise MalformedFrame(f"heartbeat id of {len(text)} digits")
        return Decoded([Message(MessageType.HEARTBEAT, text, time=_now(ctx))], HEARTBEAT_REPLY, text)
    messages: list[Message] = []
    reply: bytes | None = None
    glued = _GLUED_HEARTBEAT.match(text)
    if glued:
        messages.append(Message(MessageType.HEARTBEAT, glued.group(1), time=_now(ctx)))
        reply = HEARTBEAT_REPLY
        text = text[glued.end() :]
    if text.startswith("##,"):
        fields = text[3:].split(",")
        terminal_id = _imei(fields[0])
        messages.append(Message(MessageType.LOGIN, terminal_id, time=_now(ctx)))
        return Decoded(messages, LOGIN_REPLY, terminal_id)
    fields = [field.strip() for field in text.split(",")]
    terminal_id = _imei(fields[0])
    keyword = fields[1] if len(fields) > 1 else ""
    if keyword == "OBD":
        message = _obd(fields, ctx)
    elif len(fields) >= 15 and fields[2].startswith("-") and len(fields[5]) == 6:
        message = _alternative(fields)
    elif len(fields) >= 5 and fields[4] == "F":
        message = _report(fields, ctx)
    else:
        message = _no_gps(fields, ctx)
    _apply_keyword(message, keyword)
    message.terminal_id = terminal_id
    messages.append(message)
    return Decoded(messages, reply, terminal_id)


def _now(ctx: DecodeContext) -> datetime:
    return ctx.now().astimezone(UTC).replace(microsecond=0)


def _imei(field: str) -> str:
    if not field.startswith("imei:"):
        raise MalformedFrame(f"expected imei:, got {field[:20]!r}")
    value = field[5:]
    if not value.isdigit() or not 5 <= len(value) <= 20:
        raise MalformedFrame(f"bad IMEI {value!r}")
    return value


def _local_time(field: str) -> datetime | None:
    """``yyMMddHHmm[ss]`` or ``yy/MM/dd HH:mm`` (naive, the terminal's zone); None if unset."""
    digits = "".join(char for char in field if char.isdigit())
    if len(digits) not in (10, 12):
        return None
    try:
        return datetime(
            2000 + int(digits[0:2]),
            int(digits[2:4]),
            int(digits[4:6]),
            int(digits[6:8]),
            int(digits[8:10]),
            int(digits[10:12]) if len(digits) == 12 else 0,
        )
    except ValueError:
        return None


def _from_local(local: datetime, zone: tzinfo) -> datetime:
    return local.replace(tzinfo=zone).astimezone(UTC)


def fix_time(local_field: str, utc_field: str, ctx: DecodeContext) -> datetime:
    """The fix time: UTC time of day on the local date (rolled by a day when needed)."""
    local = _local_time(local_field)
    tod: time | None = None
    if len(utc_field) >= 6 and utc_field[:6].isdigit():
        tod = time_of_day(utc_field)
    if tod is not None and local is not None:
        return nearest_day(tod, local.replace(tzinfo=UTC))
    if local is not None:
        return _from_local(local, ctx.tz)
    if tod is not None:
        return nearest_day(tod, ctx.now())
    return _now(ctx)


def _report(fields: list[str], ctx: DecodeContext) -> Message:
    if len(fields) < 11:
        raise MalformedFrame(f"report with {len(fields)} fields")
    field = fields + [""] * (19 - len(fields))
    if not field[7] or not field[9]:
        raise MalformedFrame("F report without coordinates")
    message = Message(
        MessageType.POSITION,
        time=fix_time(field[2], field[5], ctx),
        valid=field[6] == "A",
        lat=degrees_minutes(field[7], field[8]),
        lon=degrees_minutes(field[9], field[10]),
    )
    if not (-90.0 <= message.lat <= 90.0 and -180.0 <= message.lon <= 180.0):  # type: ignore[operator]
        raise MalformedFrame(f"coordinate out of range: {field[7]} {field[9]}")
    speed = _number(field[11])
    if speed is not None:
        message.speed_kmh = knots_to_kmh(speed)
    course = _number(field[12])
    if course is not None:
        message.course = course % 360.0
    message.altitude_m = _number(field[13])
    attributes = message.attributes
    if field[14] in ("0", "1"):
        attributes[Attr.IGNITION] = field[14] == "1"
    if field[15] in ("0", "1"):
        attributes["gps103.door"] = field[15] == "1"
    fuel = _fuel(field[16])
    if fuel is not None:
        attributes[Attr.FUEL] = fuel
    fuel2 = _fuel(field[17])
    if fuel2 is not None:
        attributes["gps103.fuel2"] = fuel2
    elif re.fullmatch(r"[PCBU][0-9A-F]{4}", field[17]):
        attributes["gps103.dtcs"] = [field[17]]
    temperature = _number(field[18])
    if temperature is not None:
        attributes[Attr.TEMPERATURE_C] = temperature
    return message


def _number(field: str) -> float | None:
    try:
        value = float(field) if field else None
    except ValueError:
        return None
    return value if value is None or math.isfinite(value) else None


def _fuel(field: str) -> float | None:
    """``10.5%`` (percent) or ``51.6`` (the device's unit); odd integers are not fuel."""
    value = _number(field.rstrip("%"))
    if value is None or value < 0 or (field.endswith("%") and value > 100) or value > 1000:
        return None
    return value


def _no_gps(fields: list[str], ctx: DecodeContext) -> Message:
    """``L`` reports (or anything without a fix): the cell when LAC/CID are given."""
    local = fields[2] if len(fields) > 2 else ""
    message = Message(MessageType.STATUS, time=fix_time(local, "", ctx), valid=False)
    if len(fields) > 4 and fields[4] == "L":
        codes = [value for value in fields[5:] if value]
        try:
            if len(codes) >= 2:
                message.attributes[Attr.CELL] = {"lac": int(codes[0], 16), "cid": int(codes[1], 16)}
        except ValueError:
            pass
    message.attributes[Attr.GNSS_STATUS] = "no_fix"
    return message


def _obd(fields: list[str], ctx: DecodeContext) -> Message:
    """Engine data: odometer, fuel, hours, speed, load, coolant, throttle, rpm, battery, DTCs."""
    field = fields + [""] * (14 - len(fields))
    message = Message(MessageType.STATUS, time=fix_time(field[2], "", ctx))
    attributes = message.attributes
    odometer = _number(field[3])
    if odometer is not None:
        attributes[Attr.ODOMETER_M] = odometer
    for index, key in ((4, "gps103.fuel_rate"), (5, "gps103.fuel_average"), (6, "gps103.engine_hours")):
        value = _number(field[index])
        if value is not None:
            attributes[key] = value
    speed = _number(field[7])
    if speed is not None:
        message.speed_kmh = speed
    for index, key in ((8, "gps103.engine_load"), (10, "gps103.throttle")):
        value = _number(field[index].rstrip("%"))
        if value is not None:
            attributes[key] = value
    coolant = _number(field[9].lstrip("+"))
    if coolant is not None:
        attributes["gps103.coolant_c"] = coolant
    rpm = _number(field[11])
    if rpm is not None:
        attributes["gps103.rpm"] = int(rpm)
    battery = _number(field[12])
    if battery is not None:
        attributes[Attr.POWER_V] = battery
    codes = [value for value in field[13:] if value]
    if codes:
        attributes["gps103.dtcs"] = codes
    return message


def _alternative(fields: list[str]) -> Message:
    """``...,hhmmss,ddmmyy,rssi,valid,lat,lon,km/h,course,altitude,hdop,satellites,ignition,charge``."""
    field = fields + [""] * (18 - len(fields))
    try:
        when = datetime.combine(
            date(2000 + int(field[6][4:6]), int(field[6][2:4]), int(field[6][0:2])),
            time_of_day(field[5]),
            UTC,
        )
        lat, lon = float(field[9]), float(field[10])
    except ValueError:
        raise MalformedFrame("bad alternative report") from None
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise MalformedFrame(f"coordinate out of range: {lat} {lon}")
    message = Message(MessageType.POSITION, time=when, valid=field[8] == "1", lat=lat, lon=lon)
    message.speed_kmh = _number(field[11])
    course = _number(field[12])
    message.course = course % 360.0 if course is not None else None
    message.altitude_m = _number(field[13])
    message.hdop = _number(field[14])
    satellites = _number(field[15])
    message.satellites = int(satellites) if satellites is not None else None
    signal = _number(field[7])
    if signal is not None:
        message.attributes[Attr.GSM_SIGNAL_RAW] = int(signal)
    if field[16] in ("0", "1"):
        message.attributes[Attr.IGNITION] = field[16] == "1"
    if field[17] in ("0", "1"):
        message.attributes[Attr.CHARGING] = field[17] == "1"
    return message


def _apply_keyword(message: Message, keyword: str) -> None:
    """The report's keyword: ``event_code``, and the shared alarm or attribute it means."""
    message.attributes[Attr.EVENT_CODE] = keyword
    lowered = keyword.lower()
    alarm = KEYWORD_ALARMS.get(lowered)
    if alarm is not None:
        message.alarms.append(alarm)
        if alarm == Alarm.POWER_CUT:
            message.attributes[Attr.POWER_CUT] = True
    elif lowered in ("acc on", "acc off"):
        message.attributes[Attr.IGNITION] = lowered == "acc on"
    elif lowered.startswith("t:"):
        temperature = _number(keyword[2:].lstrip("+"))
        if temperature is not None:
            message.attributes[Attr.TEMPERATURE_C] = temperature


# --------------------------------------------------------------------------- device side


class Gps103Device(DeviceCodec):
    """A TK103-style tracker: ``##`` login answered by LOAD, IMEI heartbeats answered by ON."""

    protocol = "gps103"

    def __init__(self, terminal_id: str, *, tz: tzinfo = UTC, transport: str = "tcp") -> None:
        super().__init__(terminal_id, tz=tz, transport=transport)
        self._login: list[int] = []
        self._heartbeats: list[int] = []

    def handshake(self) -> Outgoing | None:
        seq = self.next_seq()
        self._login.append(seq)
        return Outgoing(f"##,imei:{self.terminal_id},A;".encode(), seq=seq)

    def _local(self, when: datetime) -> str:
        return when.astimezone(self.tz).strftime("%y%m%d%H%M%S")

    def position(self, message: Message) -> Outgoing:
        when = (message.time or datetime.now(UTC)).astimezone(UTC)
        keyword = next((ALARM_KEYWORDS[a] for a in message.alarms if a in ALARM_KEYWORDS), "tracker")
        lat, lon = message.lat or 0.0, message.lon or 0.0
        ignition = message.attributes.get(Attr.IGNITION)
        fuel = message.attributes.get(Attr.FUEL)
        temperature = message.attributes.get(Attr.TEMPERATURE_C)
        text = (
            f"imei:{self.terminal_id},{keyword},{self._local(when)},,F,"
            f"{when:%H%M%S}.{when.microsecond // 1000:03d},{'V' if message.valid is False else 'A'},"
            f"{format_degrees_minutes(lat, 2)},{'S' if lat < 0 else 'N'},{format_degrees_minutes(lon, 3)},{'W' if lon < 0 else 'E'},"
            f"{(message.speed_kmh or 0.0) / 1.852:.2f},{message.course or 0.0:.2f},"
            f"{'' if message.altitude_m is None else f'{message.altitude_m:.1f}'},"
            f"{'' if ignition is None else int(bool(ignition))},,"
            f"{'' if fuel is None else f'{float(fuel):.2f}%'},,"
            f"{'' if temperature is None else f'{float(temperature):+.1f}'};"
        )
        return Outgoing(text.encode(), needs_ack=False)

    def heartbeat(self, attributes: Mapping[str, Any] | None = None) -> Outgoing | None:
        seq = self.next_seq()
        self._heartbeats.append(seq)
        del self._heartbeats[:-16]
        return Outgoing(f"{self.terminal_id};".encode(), seq=seq)

    def status(self, attributes: Mapping[str, Any], alarms: list[str]) -> Outgoing | None:
        """A no-GPS (``L``) report carrying an alarm keyword."""
        keyword = next((ALARM_KEYWORDS[a] for a in alarms if a in ALARM_KEYWORDS), "tracker")
        now = datetime.now(UTC)
        return Outgoing(
            f"imei:{self.terminal_id},{keyword},{self._local(now)},,L,;".encode(), needs_ack=False
        )

    def on_reply(self, data: bytes) -> ReplyEvent:
        event = ReplyEvent()
        rest = data.strip()
        while rest:
            if rest.startswith(LOGIN_REPLY):
                event.handshake_done = True
                event.acked.extend(self._login)
                self._login.clear()
                rest = rest[len(LOGIN_REPLY) :]
            elif rest.startswith(HEARTBEAT_REPLY):
                if self._heartbeats:
                    event.acked.append(self._heartbeats.pop(0))
                rest = rest[len(HEARTBEAT_REPLY) :]
            else:
                rest = rest[1:]
            rest = rest.lstrip(b";\r\n ")
        return event


SPEC = ProtocolSpec(
    name="gps103",
    split=split,
    decode=decode,
    default_port=5001,
    transports=frozenset({"tcp", "udp"}),
    text=True,
    max_frame=MAX_FRAME,
    split_datagram=split_datagram,
    device=Gps103Device,
)
