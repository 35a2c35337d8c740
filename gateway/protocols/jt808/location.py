"""JT/T 808 location reports: alarm and status bits, additional items, both directions."""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from core.messages import Message, MessageType
from core.vocabulary import Alarm, Attr
from gateway.protocols.base import (
    DecodeContext,
    MalformedFrame,
)
from gateway.protocols.binary import (
    BCD,
    DeviceClock,
    ascii_text,
    device_time,
    to_device_clock,
)
from gateway.protocols.jt808.frames import (
    BLIND_LOCATION_2,
    Frame,
)

# Status dword bits
STATUS_ACC = 1 << 0
STATUS_VALID = 1 << 1
STATUS_SOUTH = 1 << 2
STATUS_WEST = 1 << 3
STATUS_OIL_CUT = 1 << 10
STATUS_CIRCUIT_CUT = 1 << 11

# Alarm dword: bit -> shared alarm name (None: recorded only in the raw ``jt808.alarm``).
ALARM_BITS: tuple[str | None, ...] = (
    Alarm.SOS,  # 0 emergency
    Alarm.OVERSPEED,  # 1
    Alarm.FATIGUE,  # 2 fatigue driving
    Alarm.GENERAL,  # 3 danger warning
    Alarm.GNSS_FAULT,  # 4 GNSS module fault
    Alarm.GNSS_ANTENNA_CUT,  # 5
    Alarm.GNSS_ANTENNA_SHORT,  # 6
    Alarm.LOW_POWER,  # 7 main power under-voltage
    Alarm.POWER_CUT,  # 8 main power cut
    Alarm.DEVICE_FAULT,  # 9 LCD fault
    Alarm.DEVICE_FAULT,  # 10 TTS fault
    Alarm.DEVICE_FAULT,  # 11 camera fault
    Alarm.DEVICE_FAULT,  # 12 IC card module fault
    None,  # 13 overspeed pre-warning
    None,  # 14 fatigue pre-warning
    None,
    None,
    Alarm.TAMPER,  # 17 vendor use: tampering
    None,  # 18 driving time overrun for the day
    None,  # 19 parking overtime
    Alarm.GEOFENCE,  # 20 enter/exit area
    Alarm.GEOFENCE,  # 21 enter/exit route
    None,  # 22 route driving time
    None,  # 23 route deviation
    None,  # 24 VSS fault
    None,  # 25 abnormal fuel
    Alarm.GENERAL,  # 26 vehicle stolen
    Alarm.GENERAL,  # 27 illegal ignition
    Alarm.MOVEMENT,  # 28 illegal displacement
    Alarm.ACCIDENT,  # 29 collision warning
    Alarm.ACCIDENT,  # 30 rollover warning
    Alarm.DOOR,  # 31 illegal door open
)
# The bit a terminal sets for each shared alarm (the first bit with that meaning).
ALARM_TO_BIT: dict[str, int] = {}
for _bit, _name in enumerate(ALARM_BITS):
    if _name is not None:
        ALARM_TO_BIT.setdefault(_name, _bit)
ALARM_TO_BIT[Alarm.GEOFENCE_ENTER] = ALARM_TO_BIT[Alarm.GEOFENCE_EXIT] = 20

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_LOCATION = struct.Struct(">IIIIhHH")  # alarm, status, lat, lon, altitude, speed, course
_SUB_ITEM = struct.Struct(">HH")  # 0xEB sub-item length, id
# the fixed part, with the BCD clock as YYMMDDhh and mmss words (see DeviceClock)
_LOCATION_AND_CLOCK = struct.Struct(">IIIIhHHIH")
_BLOCKED_BITS = STATUS_OIL_CUT | STATUS_CIRCUIT_CUT
_CLOCK = DeviceClock(bcd=True)
_CLOCK_HOURS = _CLOCK.hours
_CLOCK_MINUTES_SECONDS = _CLOCK.minutes_seconds

# --------------------------------------------------------------------------- location


def _item_fuel(value: bytes, attrs: dict[str, Any], alarms: list[str]) -> None:
    if len(value) == 2:
        attrs[Attr.FUEL] = _U16.unpack(value)[0] / 10


def _item_tachograph_speed(value: bytes, attrs: dict[str, Any], alarms: list[str]) -> None:
    if len(value) == 2:
        attrs["jt808.tachograph_speed_kmh"] = _U16.unpack(value)[0] / 10


def _item_uint(key: str) -> Callable[[bytes, dict[str, Any], list[str]], None]:
    def read(value: bytes, attrs: dict[str, Any], alarms: list[str]) -> None:
        attrs[key] = int.from_bytes(value, "big")

    return read


def _item_user_status(value: bytes, attrs: dict[str, Any], alarms: list[str]) -> None:
    status = int.from_bytes(value, "big")
    attrs["jt808.user_status"] = status
    if status & 0x08:
        alarms.append(Alarm.VIBRATION)


def _item_power_decivolts(value: bytes, attrs: dict[str, Any], alarms: list[str]) -> None:
    if len(value) == 2:
        attrs[Attr.POWER_V] = _U16.unpack(value)[0] / 10


def _item_battery_level(value: bytes, attrs: dict[str, Any], alarms: list[str]) -> None:
    if len(value) == 1 and value[0] <= 100:
        attrs[Attr.BATTERY_LEVEL] = value[0]


def _item_iccid_text(value: bytes, attrs: dict[str, Any], alarms: list[str]) -> None:
    text = ascii_text(value)
    if 18 <= len(text) <= 22 and text[:19].isdigit():
        attrs[Attr.ICCID] = text
    else:
        attrs["jt808.xd6"] = value.hex()


def _item_extensions(value: bytes, attrs: dict[str, Any], alarms: list[str]) -> None:
    _extensions(value, 0, len(value), attrs)


def _extensions(value: bytes, pos: int, size: int, attrs: dict[str, Any]) -> None:
    """0xEB between ``pos`` and ``size``: vendor sub-items ``len(2) id(2) value(len-2)`` (a
    leading word above 200 is an MCC: the cell-tower layout, kept raw)."""
    if size - pos < 4 or _U16.unpack_from(value, pos)[0] > 200:
        attrs["jt808.xeb"] = value[pos:size].hex()
        return
    while pos + 4 <= size:
        length, sub_id = _SUB_ITEM.unpack_from(value, pos)
        end = pos + 2 + length
        if length < 2 or end > size:
            break
        start = pos + 4
        pos = end
        if sub_id == 0x00B2 and length == 12:
            attrs[_ICCID] = value[start:end].hex().rstrip("f").upper()
        elif sub_id == 0x00CE and length == 4:
            attrs[_POWER_V] = _U16.unpack_from(value, start)[0] / 100
        elif sub_id == 0x0001 and length >= 4:  # fuel 1, 0.1 units (some send a 3rd byte)
            attrs[_FUEL] = _U16.unpack_from(value, start)[0] / 10
        elif sub_id == 0x0023:
            try:
                attrs["jt808.fuel2"] = float(ascii_text(value[start:end]))
            except ValueError:
                attrs["jt808.eb0023"] = value[start:end].hex()
        else:
            key = _EXTENSION_KEYS.get(sub_id)
            if key is None:
                key = f"jt808.eb{sub_id:04x}"
                if len(_EXTENSION_KEYS) < 1024:
                    _EXTENSION_KEYS[sub_id] = key
            attrs[key] = value[start:end].hex()


_EXTENSION_KEYS: dict[int, str] = {}
_ICCID = Attr.ICCID
_POWER_V = Attr.POWER_V
_FUEL = Attr.FUEL


ItemReader = Callable[[bytes, dict[str, Any], list[str]], None]
ITEMS: dict[int, ItemReader] = {
    0x02: _item_fuel,
    0x03: _item_tachograph_speed,
    0x04: _item_uint("jt808.alarm_event_id"),
    0x25: _item_uint("jt808.extended_status"),
    0x2A: _item_uint("jt808.io_status"),
    0x2B: _item_uint("jt808.analog"),
    0xD0: _item_user_status,
    0xD3: _item_power_decivolts,
    0xD4: _item_battery_level,
    0xD6: _item_iccid_text,
    0xEB: _item_extensions,
    0xFE: _item_battery_level,
}
_ODOMETER_M = Attr.ODOMETER_M
_GSM_SIGNAL = Attr.GSM_SIGNAL
_GSM_SIGNAL_RAW = Attr.GSM_SIGNAL_RAW
_STATUS = Attr.STATUS
_IGNITION = Attr.IGNITION
_BLOCKED = Attr.BLOCKED
_POSITION = MessageType.POSITION
_STATUS_MESSAGE = MessageType.STATUS
_RAW_ITEM_KEYS = tuple(f"jt808.x{item:02x}" for item in range(256))


def decode_location(
    body: bytes, start: int, end: int, terminal_id: str | None, ctx: DecodeContext
) -> Message:
    """One 0x0200 body (also each item of a 0x0704 batch) between ``start`` and ``end``."""
    if end - start < 28:
        raise MalformedFrame("location body shorter than 28 bytes")
    alarm, status, lat_raw, lon_raw, altitude, speed, course, hour_key, minute_second = (
        _LOCATION_AND_CLOCK.unpack_from(body, start)
    )
    tz = ctx.tz
    hour = _CLOCK_HOURS.get(hour_key)
    delta = _CLOCK_MINUTES_SECONDS.get(minute_second)
    if hour is not None and delta is not None and hour[0] == tz:
        time = hour[1] + delta
    else:
        time = _CLOCK.reading(hour_key, minute_second, tz)
    attrs: dict[str, Any] = {
        _STATUS: status,
        _IGNITION: (status & STATUS_ACC) != 0,
        _BLOCKED: (status & _BLOCKED_BITS) != 0,
    }
    alarms: list[str] = []
    if alarm:
        attrs["jt808.alarm"] = alarm
        bits = alarm
        while bits:
            low = bits & -bits
            name = ALARM_BITS[low.bit_length() - 1]
            if name is not None and name not in alarms:
                alarms.append(name)
            bits ^= low
    pos = start + 28
    items = ITEMS
    satellites = None
    while pos + 2 <= end:
        item_id = body[pos]
        length = body[pos + 1]
        pos += 2 + length
        if pos > end:  # a vendor tail that is not TLV: keep it, keep the fix
            attrs["jt808.unparsed"] = body[pos - 2 - length : end].hex()
            break
        # the three items nearly every terminal sends, read inline for speed
        if item_id == 0x01 and length == 4:
            attrs[_ODOMETER_M] = _U32.unpack_from(body, pos - 4)[0] * 100
        elif item_id == 0x31 and length == 1:
            satellites = body[pos - 1]
        elif item_id == 0x30 and length == 1:
            raw = body[pos - 1]
            attrs[_GSM_SIGNAL_RAW] = raw
            if raw <= 31:  # CSQ scale 0-31
                attrs[_GSM_SIGNAL] = round(raw * 100 / 31)
        elif item_id == 0xEB:  # read in place, not from a copy
            _extensions(body, pos - length, pos, attrs)
        else:
            reader = items.get(item_id)
            if reader is not None:
                reader(body[pos - length : pos], attrs, alarms)
            elif length:
                attrs[_RAW_ITEM_KEYS[item_id]] = body[pos - length : pos].hex()
    valid = (status & STATUS_VALID) != 0
    lat: float | None = lat_raw / 1e6
    lon: float | None = lon_raw / 1e6
    if not valid and not lat_raw and not lon_raw:
        lat = lon = None  # no fix was ever taken: no position at all
    else:
        if status & STATUS_SOUTH:
            lat = -lat  # type: ignore[operator]
        if status & STATUS_WEST:
            lon = -lon  # type: ignore[operator]
    return Message(
        _POSITION if lat is not None else _STATUS_MESSAGE,
        terminal_id,
        time,
        valid,
        lat,
        lon,
        speed / 10,
        float(course % 360) if course <= 360 else None,
        float(altitude),
        satellites,
        None,
        alarms,
        attrs,
    )


def encode_location(message: Message, tz: Any) -> bytes:
    """A 0x0200 body from a Message: alarm and status bits, fix, and the health
    attributes as additional items."""
    alarm = 0
    for name in message.alarms:
        bit = ALARM_TO_BIT.get(name)
        if bit is not None:
            alarm |= 1 << bit
    attrs = message.attributes
    status = 0
    if attrs.get(Attr.IGNITION):
        status |= STATUS_ACC
    if message.valid:
        status |= STATUS_VALID
    lat = message.lat or 0.0
    lon = message.lon or 0.0
    if lat < 0:
        status |= STATUS_SOUTH
    if lon < 0:
        status |= STATUS_WEST
    if attrs.get(Attr.BLOCKED):
        status |= STATUS_OIL_CUT
    clock = to_device_clock(message.time or datetime.now(UTC), tz)
    body = _LOCATION.pack(
        alarm,
        status,
        round(abs(lat) * 1e6),
        round(abs(lon) * 1e6),
        round(message.altitude_m or 0),
        round((message.speed_kmh or 0) * 10),
        round(message.course or 0) % 360,
    ) + bytes.fromhex(clock.strftime("%y%m%d%H%M%S"))
    items = bytearray()
    if attrs.get(Attr.ODOMETER_M) is not None:
        items += b"\x01\x04" + _U32.pack(round(attrs[Attr.ODOMETER_M] / 100))
    if attrs.get(Attr.FUEL) is not None:
        items += b"\x02\x02" + _U16.pack(round(attrs[Attr.FUEL] * 10))
    signal = attrs.get(Attr.GSM_SIGNAL_RAW)
    if signal is None and attrs.get(Attr.GSM_SIGNAL) is not None:
        signal = round(attrs[Attr.GSM_SIGNAL] * 31 / 100)
    if signal is not None:
        items += b"\x30\x01" + bytes((min(int(signal), 255),))
    if message.satellites is not None:
        items += b"\x31\x01" + bytes((min(message.satellites, 255),))
    if attrs.get(Attr.BATTERY_LEVEL) is not None:
        items += b"\xd4\x01" + bytes((max(0, min(100, round(attrs[Attr.BATTERY_LEVEL]))),))
    extensions = bytearray()
    if attrs.get(Attr.ICCID):
        extensions += b"\x00\x0c\x00\xb2" + bytes.fromhex(str(attrs[Attr.ICCID]).ljust(20, "f"))
    if attrs.get(Attr.POWER_V) is not None:
        extensions += b"\x00\x04\x00\xce" + _U16.pack(round(attrs[Attr.POWER_V] * 100))
    if extensions:
        items += b"\xeb" + bytes((len(extensions),)) + extensions
    return body + bytes(items)


def decode_vendor_location(frame: Frame, ctx: DecodeContext) -> list[Message]:
    """0x5501/0x5502: a JT600 binary location (UTC), then signal, satellites, odometer,
    battery, cell and the product's status and alarm words."""
    body = frame.body
    if len(body) < 34:
        raise MalformedFrame("vendor location shorter than 34 bytes")
    bcd = BCD
    time = device_time(
        2000 + bcd[body[2]], bcd[body[1]], bcd[body[0]], bcd[body[3]], bcd[body[4]], bcd[body[5]], UTC
    )
    lat_digits = body[6:10].hex()  # DDMMmmmm
    lon_digits = body[10:15].hex()[:9]  # DDDMMmmmm, then a flag nibble
    if not (lat_digits.isdigit() and lon_digits.isdigit()):
        raise MalformedFrame("vendor location coordinates are not BCD")
    flags = body[14] & 0x0F
    lat = int(lat_digits[:2]) + int(lat_digits[2:]) / 600_000
    lon = int(lon_digits[:3]) + int(lon_digits[3:]) / 600_000
    if not flags & 0x02:
        lat = -lat
    if not flags & 0x04:
        lon = -lon
    rssi, satellites, odometer_km, battery, cid, lac, product, status, alarm = struct.unpack_from(
        ">BBIBIHBHH", body, 17
    )
    attrs: dict[str, Any] = {
        Attr.GSM_SIGNAL_RAW: rssi,
        Attr.ODOMETER_M: odometer_km * 1000,
        Attr.CELL: {"lac": lac, "cid": cid},
        "jt808.product": product,
        Attr.STATUS: status,
    }
    if battery == 0xAA:
        attrs[Attr.CHARGING] = True
    elif battery <= 100:
        attrs[Attr.BATTERY_LEVEL] = battery
    alarms: list[str] = []
    if product in (1, 2) and alarm & 0x01:
        alarms.append(Alarm.LOW_POWER)
    elif product == 3:
        attrs[Attr.BLOCKED] = bool(status & 0x20)
        for bit, name in ((0x02, Alarm.LOW_POWER), (0x04, Alarm.VIBRATION), (0x08, Alarm.LOW_BATTERY)):
            if alarm & bit:
                alarms.append(name)
    if frame.msg_id == BLIND_LOCATION_2:
        attrs[Attr.ARCHIVED] = True
    message = Message(
        MessageType.POSITION,
        frame.terminal_id,
        time,
        bool(flags & 0x01),
        round(lat, 6),
        round(lon, 6),
        float(body[15]),
        float(body[16] * 2 % 360),
        None,
        satellites,
        None,
        alarms,
        attrs,
    )
    return [message]
