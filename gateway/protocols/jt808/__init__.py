"""JT/T 808 (2011, 2013 and 2019 headers): framer, decoder, platform replies, terminal side.

Wire frame: ``7E | id(2) props(2) phone(6 BCD; 2019: version(1) + phone(10 BCD)) serial(2)
[packet total(2) index(2)] body | xor(1) | 7E`` with 0x7E/0x7D escaped as 7D 02 / 7D 01.
``split`` cuts raw frames between flags; ``decode`` unescapes, checks the XOR and reads the
body.  Times are the terminal's local clock (``ctx.tz``, +08:00 by default in settings).

- ``frames``: message ids, the framer, escaping, the header and the XOR check;
- ``location``: 0x0200 bodies (alarm/status bits, additional items) both ways;
- ``messages``: a handler per message id, sub-packages, the platform's replies;
- ``device``: the terminal side, for simulators.
"""

from __future__ import annotations

from gateway.protocols.base import ProtocolSpec
from gateway.protocols.jt808.device import Jt808Device, Jt808Device2019
from gateway.protocols.jt808.frames import (
    ATTRIBUTES,
    AUTHENTICATE,
    BATCH,
    HEARTBEAT,
    LOCATION,
    LOCATION_ANSWER,
    MAX_FRAME,
    PHOTO,
    PLATFORM_RESPONSE,
    REGISTER,
    REGISTER_RESPONSE,
    TERMINAL_RESPONSE,
    TRANSPARENT,
    Frame,
    encode_frame,
    escape,
    open_frame,
    split,
    unescape,
    whole_frame,
)
from gateway.protocols.jt808.location import ALARM_BITS, decode_location, encode_location
from gateway.protocols.jt808.messages import MAX_PENDING, decode, decode_text

__all__ = [
    "ALARM_BITS",
    "ATTRIBUTES",
    "AUTHENTICATE",
    "BATCH",
    "HEARTBEAT",
    "LOCATION",
    "LOCATION_ANSWER",
    "MAX_FRAME",
    "MAX_PENDING",
    "PHOTO",
    "PLATFORM_RESPONSE",
    "REGISTER",
    "REGISTER_RESPONSE",
    "SPEC",
    "TERMINAL_RESPONSE",
    "TRANSPARENT",
    "Frame",
    "Jt808Device",
    "Jt808Device2019",
    "decode",
    "decode_location",
    "decode_text",
    "encode_frame",
    "encode_location",
    "escape",
    "open_frame",
    "split",
    "whole_frame",
    "unescape",
]

SPEC = ProtocolSpec(
    name="jt808",
    split=split,
    decode=decode,
    default_port=5015,
    transports=frozenset({"tcp", "udp"}),
    default_tz="+08:00",
    max_frame=MAX_FRAME,
    whole_frame=whole_frame,
    device=Jt808Device,
)
