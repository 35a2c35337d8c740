"""GT06 / Concox: framer, decoder, server replies and the terminal side.

Wire frame: ``78 78 | len(1) | protocol(1) content serial(2) crc(2) | 0D 0A`` or the long
form ``79 79 | len(2) | ...``; ``len`` counts protocol through CRC, and the CRC-ITU covers
the length field through the serial.  Wi-Fi packets put an AP count where the length
belongs, so when ``0D 0A`` is not where the length says the framer cuts at the first
``0D 0A`` instead; such frames carry no checkable CRC.  Device clocks are UTC unless the
terminal's setting (``ctx.tz``) or its login says otherwise.

- ``frames``: protocol numbers, the framer, packets and the CRC;
- ``fields``: the GPS block, cell, terminal information and alarm codes;
- ``messages``: a handler per protocol number, the replies;
- ``device``: the terminal side, for simulators.
"""

from __future__ import annotations

from gateway.protocols.base import ProtocolSpec
from gateway.protocols.gt06.device import Gt06Device
from gateway.protocols.gt06.frames import (
    ADDRESS_REQUEST,
    ALARM,
    ALARM_2,
    GPS_4G,
    GPS_LBS_2,
    INFO,
    LBS_ALARM_4G,
    LBS_STATUS,
    LOGIN,
    MAX_FRAME,
    STATUS,
    STRING,
    TIME_REQUEST,
    Packet,
    encode_packet,
    open_packet,
    split,
    whole_frame,
)
from gateway.protocols.gt06.messages import decode

__all__ = [
    "ADDRESS_REQUEST",
    "ALARM",
    "ALARM_2",
    "GPS_4G",
    "GPS_LBS_2",
    "Gt06Device",
    "INFO",
    "LBS_ALARM_4G",
    "LBS_STATUS",
    "LOGIN",
    "MAX_FRAME",
    "Packet",
    "SPEC",
    "STATUS",
    "STRING",
    "TIME_REQUEST",
    "decode",
    "encode_packet",
    "open_packet",
    "split",
    "whole_frame",
]

SPEC = ProtocolSpec(
    name="gt06",
    split=split,
    decode=decode,
    default_port=5023,
    transports=frozenset({"tcp"}),
    default_tz="UTC",
    max_frame=MAX_FRAME,
    whole_frame=whole_frame,
    device=Gt06Device,
)
