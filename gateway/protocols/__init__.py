"""The protocol registry: one line per protocol, nothing discovered by magic."""

from __future__ import annotations

from gateway.protocols.base import ProtocolSpec

PROTOCOLS: dict[str, ProtocolSpec] = {}


def get_protocol(name: str) -> ProtocolSpec:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise KeyError(f"unknown protocol {name!r}; known: {', '.join(sorted(PROTOCOLS))}") from None
