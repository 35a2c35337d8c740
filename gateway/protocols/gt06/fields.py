"""GT06 fields shared by many packets: GPS block, cell, terminal information and alarm codes."""

from __future__ import annotations

import struct
from datetime import datetime, tzinfo
from typing import Any

from core.messages import Message, MessageType
from core.vocabulary import Alarm, Attr
from gateway.protocols.base import (
    DecodeContext,
    MalformedFrame,
)
from gateway.protocols.binary import DeviceClock, device_time

_GPS_NO_TIME = struct.Struct(">BIIBH")
_U16 = struct.Struct(">H")
_CELL = struct.Struct(">HBHBH")  # MCC, MNC, LAC, cell id high byte and low word

COURSE_NORTH = 0x0400
COURSE_WEST = 0x0800
COURSE_VALID = 0x1000
COURSE_HAS_ACC = 0x4000
COURSE_ACC = 0x8000

# Alarm codes of the alarm/language byte.
ALARM_CODES: dict[int, str] = {
    0x01: Alarm.SOS,
    0x02: Alarm.POWER_CUT,
    0x03: Alarm.VIBRATION,
    0x04: Alarm.GEOFENCE_ENTER,
    0x05: Alarm.GEOFENCE_EXIT,
    0x06: Alarm.OVERSPEED,
    0x09: Alarm.VIBRATION,
    0x0E: Alarm.LOW_BATTERY,
    0x0F: Alarm.LOW_BATTERY,
    0x11: Alarm.POWER_CUT,  # power off
    0x13: Alarm.TAMPER,
    0x14: Alarm.DOOR,
    0x23: Alarm.FALL_DOWN,
    0x29: Alarm.HARSH_ACCELERATION,
    0x2A: Alarm.HARSH_CORNERING,
    0x2B: Alarm.HARSH_CORNERING,
    0x2C: Alarm.ACCIDENT,
    0x30: Alarm.HARSH_BRAKING,
}
ALARM_TO_CODE: dict[str, int] = {}
for _code, _name in ALARM_CODES.items():
    ALARM_TO_CODE.setdefault(_name, _code)

# Alarm in bits 3-5 of the terminal information byte.
INFO_ALARMS: dict[int, str] = {
    1: Alarm.VIBRATION,
    2: Alarm.POWER_CUT,
    3: Alarm.LOW_BATTERY,
    4: Alarm.SOS,
    6: Alarm.GEOFENCE,
    7: Alarm.TAMPER,  # removed from the vehicle
}

# --------------------------------------------------------------------------- field readers


def session_tz(ctx: DecodeContext) -> tzinfo:
    return ctx.state.get("gt06.tz") or ctx.tz


def session_terminal_id(ctx: DecodeContext) -> str | None:
    return ctx.terminal_id or ctx.state.get("gt06.imei")


_CLOCK = DeviceClock(bcd=False)
_CLOCK_HOURS = _CLOCK.hours
_CLOCK_MINUTES_SECONDS = _CLOCK.minutes_seconds
# the GPS block: clock as YYMMDDhh and mmss words (see DeviceClock), satellites, lat, lon,
# speed, course/status; and the same followed by the usual cell (MCC, MNC, LAC, cell id)
_GPS = struct.Struct(">IHBIIBH")
GPS_AND_CELL = struct.Struct(">IHBIIBHHBHBH")
_CLOCK_BYTES = struct.Struct(">6B")
_IGNITION = Attr.IGNITION
_POSITION = MessageType.POSITION
_STATUS = MessageType.STATUS


def gps_time(data: bytes, pos: int, tz: tzinfo) -> datetime | None:
    year, month, day, hour, minute, second = _CLOCK_BYTES.unpack_from(data, pos)
    if not (year or month or day):
        return None  # the device has no clock yet
    return device_time(2000 + year, month, day, hour, minute, second, tz)


def read_gps(data: bytes, pos: int, ctx: DecodeContext, kind: MessageType = MessageType.POSITION) -> Message:
    """The 18-byte GPS block at ``pos``: time, satellites, lat, lon, speed, course/status."""
    if len(data) < pos + 18:
        raise MalformedFrame("GPS block truncated")
    return fix_message(kind, ctx, *_GPS.unpack_from(data, pos))


def read_fix(data: bytes, pos: int, ctx: DecodeContext, kind: MessageType) -> Message:
    """The GPS block's fields after its clock (satellites to course/status), without a time."""
    return fix_message(kind, ctx, 0, 0, *_GPS_NO_TIME.unpack_from(data, pos))


def fix_message(
    kind: MessageType,
    ctx: DecodeContext,
    hour_key: int,
    minute_second: int,
    info: int,
    lat_raw: int,
    lon_raw: int,
    speed: int,
    flags: int,
) -> Message:
    """The message of a GPS block's fields (its clock as ``DeviceClock`` words)."""
    if hour_key & 0xFFFFFF00:  # year, month or day set
        tz = ctx.state.get("gt06.tz") or ctx.tz  # session_tz, inline: once per fix
        hour = _CLOCK_HOURS.get(hour_key)
        delta = _CLOCK_MINUTES_SECONDS.get(minute_second)
        if hour is not None and delta is not None and hour[0] == tz:
            time: datetime | None = hour[1] + delta
        else:
            time = _CLOCK.reading(hour_key, minute_second, tz)
    else:
        time = None  # the device has no clock yet
    valid = (flags & COURSE_VALID) != 0
    attrs: dict[str, Any] = {}
    if flags & COURSE_HAS_ACC:
        attrs[_IGNITION] = (flags & COURSE_ACC) != 0
    if not valid and not lat_raw and not lon_raw:
        lat = lon = None
    else:
        lat = lat_raw / 1_800_000
        lon = lon_raw / 1_800_000
        if not flags & COURSE_NORTH:
            lat = -lat
        if flags & COURSE_WEST:
            lon = -lon
    return Message(
        kind if lat is not None or kind is not _POSITION else _STATUS,
        ctx.terminal_id or ctx.state.get("gt06.imei"),  # session_terminal_id, inline
        time,
        valid,
        lat,
        lon,
        float(speed),
        float(flags & 0x03FF),
        None,
        info & 0x0F,
        None,
        [],
        attrs,
    )


def read_cell(
    data: bytes, pos: int, cid_size: int = 3, lac_size: int = 2, mnc_size: int = 1
) -> tuple[dict[str, int], int]:
    """MCC, MNC (2 bytes when the MCC's top bit is set), LAC and cell id; and the end."""
    if cid_size == 3 and lac_size == 2 and mnc_size == 1 and len(data) >= pos + 8:
        mcc, mnc, lac, cid_high, cid_low = _CELL.unpack_from(data, pos)
        if not mcc & 0x8000:  # the common GT06 cell, in one unpack
            return {"mcc": mcc, "mnc": mnc, "lac": lac, "cid": cid_high << 16 | cid_low}, pos + 8
    mcc = _U16.unpack_from(data, pos)[0]
    pos += 2
    if mcc & 0x8000 or mnc_size == 2:
        mnc = _U16.unpack_from(data, pos)[0]
        pos += 2
    else:
        mnc = data[pos]
        pos += 1
    lac = int.from_bytes(data[pos : pos + lac_size], "big")
    pos += lac_size
    cid = int.from_bytes(data[pos : pos + cid_size], "big")
    pos += cid_size
    if pos > len(data):
        raise MalformedFrame("cell block truncated")
    return {"mcc": mcc & 0x7FFF, "mnc": mnc, "lac": lac, "cid": cid}, pos


def read_status(data: bytes, pos: int, message: Message) -> None:
    """Terminal information, voltage level, GSM signal and the alarm byte."""
    if len(data) < pos + 3:
        raise MalformedFrame("status block truncated")
    info, voltage, gsm = data[pos], data[pos + 1], data[pos + 2]
    attrs = message.attributes
    attrs[Attr.ARMED] = bool(info & 0x01)
    attrs[Attr.IGNITION] = bool(info & 0x02)
    attrs[Attr.CHARGING] = bool(info & 0x04)
    attrs[Attr.BLOCKED] = bool(info & 0x80)
    attrs["gt06.gps_tracking"] = bool(info & 0x40)
    alarms = message.alarms
    info_alarm = INFO_ALARMS.get((info >> 3) & 0x07)
    if info_alarm:
        alarms.append(info_alarm)
    if voltage <= 6:
        attrs[Attr.BATTERY_LEVEL] = round(voltage * 100 / 6)
    elif voltage <= 100:
        attrs[Attr.BATTERY_LEVEL] = voltage
    attrs[Attr.GSM_SIGNAL_RAW] = gsm
    if gsm <= 4:
        attrs[Attr.GSM_SIGNAL] = gsm * 25
    if len(data) > pos + 3:
        code = data[pos + 3]
        if code:
            attrs[Attr.EVENT_CODE] = code
            alarm = ALARM_CODES.get(code)
            if alarm and alarm not in alarms:
                alarms.append(alarm)


def iccid_digits(data: bytes) -> str:
    digits = data.hex()
    if digits.startswith("98"):  # nibble-swapped, as on the SIM card
        digits = bytes.fromhex(digits)[::-1].hex()[::-1]
    return digits.rstrip("f").upper()
