"""The protocol registry: one line per protocol, nothing discovered by magic."""

from __future__ import annotations

from gateway.protocols.base import ProtocolSpec
from gateway.protocols.gps103 import SPEC as GPS103
from gateway.protocols.gt06 import SPEC as GT06
from gateway.protocols.h02 import SPEC as H02
from gateway.protocols.jt808 import SPEC as JT808
from gateway.protocols.nmea import SPEC as NMEA
from gateway.protocols.teltonika import SPEC as TELTONIKA

PROTOCOLS: dict[str, ProtocolSpec] = {
    "jt808": JT808,
    "gt06": GT06,
    "teltonika": TELTONIKA,
    "nmea": NMEA,
    "h02": H02,
    "gps103": GPS103,
}


def get_protocol(name: str) -> ProtocolSpec:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise KeyError(f"unknown protocol {name!r}; known: {', '.join(sorted(PROTOCOLS))}") from None
