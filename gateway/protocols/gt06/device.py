"""The GT06 terminal side: login, positions, alarms, heartbeats and 0x94 information, for simulators."""

from __future__ import annotations

import struct
from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from typing import Any

from core.messages import Message
from core.vocabulary import Attr
from gateway.protocols.base import (
    DeviceCodec,
    Outgoing,
    ReplyEvent,
)
from gateway.protocols.binary import bcd_encode, to_device_clock
from gateway.protocols.gt06.fields import (
    ALARM_TO_CODE,
    COURSE_ACC,
    COURSE_HAS_ACC,
    COURSE_NORTH,
    COURSE_VALID,
    COURSE_WEST,
    INFO_ALARMS,
)
from gateway.protocols.gt06.frames import (
    ALARM,
    GPS_LBS_2,
    INFO,
    LBS_STATUS,
    LOGIN,
    STATUS,
    encode_packet,
    open_packet,
    split,
)

_GPS = struct.Struct(">6BBIIBH")  # date-time, satellites, lat, lon, speed, course/status
_U16 = struct.Struct(">H")


def _tz_extension(tz: tzinfo) -> int:
    """Login extension bits: zone as hhmm << 4, bit 3 for west, low bits: language (English)."""
    offset = tz.utcoffset(None)
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    west = minutes < 0
    hours, rest = divmod(abs(minutes), 60)
    return ((hours * 100 + rest) << 4) | (0x08 if west else 0) | 0x02


class Gt06Device(DeviceCodec):
    """A GT06N-style tracker: login, 0x22 positions, 0x16 alarms, 0x13 heartbeats and
    0x94 information (external power, ICCID)."""

    protocol = "gt06"
    type_id = 0x2201

    def __init__(self, terminal_id: str, *, tz: Any = UTC, transport: str = "tcp") -> None:
        super().__init__(terminal_id, tz=tz, transport=transport)
        self.imei_bcd = bcd_encode(terminal_id, 8)
        self._buffer = b""
        self._iccid_sent: str | None = None

    def packet(self, protocol: int, content: bytes, *, long: bool = False) -> tuple[bytes, int]:
        serial = self.next_seq()
        return encode_packet(protocol, content, serial, long=long), serial

    def handshake(self) -> Outgoing:
        content = self.imei_bcd + _U16.pack(self.type_id) + _U16.pack(_tz_extension(self.tz))
        data, serial = self.packet(LOGIN, content)
        return Outgoing(data, serial)

    def _gps_block(self, message: Message) -> bytes:
        clock = to_device_clock(message.time or datetime.now(UTC), self.tz)
        lat = message.lat or 0.0
        lon = message.lon or 0.0
        flags = round(message.course or 0) % 360
        if lat >= 0:
            flags |= COURSE_NORTH
        if lon < 0:
            flags |= COURSE_WEST
        if message.valid:
            flags |= COURSE_VALID
        ignition = message.attributes.get(Attr.IGNITION)
        if ignition is not None:
            flags |= COURSE_HAS_ACC | (COURSE_ACC if ignition else 0)
        satellites = min(message.satellites or 0, 15)
        return _GPS.pack(
            clock.year - 2000,
            clock.month,
            clock.day,
            clock.hour,
            clock.minute,
            clock.second,
            0xC0 | satellites,
            round(abs(lat) * 1_800_000),
            round(abs(lon) * 1_800_000),
            min(round(message.speed_kmh or 0), 255),
            flags,
        )

    @staticmethod
    def _cell(attributes: Mapping[str, Any]) -> bytes:
        cell = attributes.get(Attr.CELL) or {}
        return struct.pack(
            ">HBH", int(cell.get("mcc", 0)), int(cell.get("mnc", 0)), int(cell.get("lac", 0))
        ) + int(cell.get("cid", 0)).to_bytes(3, "big")

    @staticmethod
    def _terminal_info(attributes: Mapping[str, Any], alarms: list[str]) -> bytes:
        info = 0x40  # GPS tracking on
        if attributes.get(Attr.ARMED):
            info |= 0x01
        if attributes.get(Attr.IGNITION):
            info |= 0x02
        if attributes.get(Attr.CHARGING):
            info |= 0x04
        if attributes.get(Attr.BLOCKED):
            info |= 0x80
        for code, name in INFO_ALARMS.items():
            if name in alarms:
                info |= code << 3
                break
        level = attributes.get(Attr.BATTERY_LEVEL)
        voltage = 6 if level is None else max(0, min(6, round(level * 6 / 100)))
        signal = attributes.get(Attr.GSM_SIGNAL)
        gsm = 4 if signal is None else max(0, min(4, round(signal / 25)))
        code = next((ALARM_TO_CODE[name] for name in alarms if name in ALARM_TO_CODE), 0)
        return bytes((info, voltage, gsm, code, 0x02))

    def _extras(self, attributes: Mapping[str, Any], *, iccid: bool) -> bytes:
        """0x94 frames a real device sends besides its reports: external power, and its
        ICCID (with status, and once a session or when the SIM changed with positions)."""
        data = b""
        power = attributes.get(Attr.POWER_V)
        if power is not None:
            data += self.packet(INFO, b"\x00" + _U16.pack(round(power * 100)), long=True)[0]
        card = attributes.get(Attr.ICCID)
        if card and (iccid or card != self._iccid_sent):
            self._iccid_sent = card
            imsi = str(attributes.get(Attr.IMSI) or "0")
            content = (
                b"\x0a"
                + self.imei_bcd
                + bcd_encode(imsi, 8)
                + bytes.fromhex(str(attributes[Attr.ICCID]).ljust(20, "f"))
            )
            data += self.packet(INFO, content, long=True)[0]
        return data

    def position(self, message: Message) -> Outgoing:
        attrs = message.attributes
        alarm_codes = [
            name for name in message.alarms if name in ALARM_TO_CODE or name in INFO_ALARMS.values()
        ]
        if alarm_codes:
            content = self._gps_block(message) + b"\x09" + self._cell(attrs)
            content += self._terminal_info(attrs, message.alarms)
            data, serial = self.packet(ALARM, content)
            needs_ack = True
        else:
            content = self._gps_block(message) + self._cell(attrs)
            ignition = attrs.get(Attr.IGNITION)
            content += bytes((1 if ignition else 0, 0x00, 1 if attrs.get(Attr.ARCHIVED) else 0))
            odometer = attrs.get(Attr.ODOMETER_M)
            if odometer is not None:
                content += int(odometer).to_bytes(4, "big")
            data, serial = self.packet(GPS_LBS_2, content)
            needs_ack = False
        return Outgoing(data + self._extras(attrs, iccid=False), serial, needs_ack)

    def heartbeat(self, attributes: Mapping[str, Any] | None = None) -> Outgoing:
        data, serial = self.packet(STATUS, self._terminal_info(attributes or {}, []))
        return Outgoing(data, serial)

    def status(self, attributes: Mapping[str, Any], alarms: list[str]) -> Outgoing:
        if alarms:
            data, serial = self.packet(
                LBS_STATUS, self._cell(attributes) + self._terminal_info(attributes, alarms)
            )
        else:
            data, serial = self.packet(STATUS, self._terminal_info(attributes, []))
        return Outgoing(data + self._extras(attributes, iccid=True), serial)

    def on_reply(self, data: bytes) -> ReplyEvent:
        event = ReplyEvent()
        buffered = self._buffer + data
        result = split(buffered)
        self._buffer = buffered[result.consumed :]
        for raw in result.frames:
            try:
                packet = open_packet(raw, lenient=False)
            except ValueError:
                continue
            if packet.serial is not None:
                event.acked.append(packet.serial)
            if packet.protocol == LOGIN:
                event.handshake_done = True
        return event

    def corrupt_checksum(self, frame: bytes) -> bytes:
        """The first frame of a write (the report; 0x94 extras may follow) with a bad CRC."""
        frames = split(frame).frames
        if not frames:
            return frame
        first = frames[0]
        bad = first[:-4] + bytes((first[-4] ^ 0xFF, first[-3] ^ 0xFF)) + first[-2:]
        return bad + frame[len(first) :]
