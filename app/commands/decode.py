"""``gpsfleet decode``: decode wire frames of one protocol and print one JSON object per frame.

``gpsfleet decode --protocol P [--hex | --text] [--udp] [--tz ZONE] [--lenient] [FRAME ...]``

Each FRAME (or, with none given, each non-blank line of standard input) is one wire frame:
hex digits with ``--hex`` (the default for binary protocols), the literal text with
``--text`` (the default for text protocols; H02 mixes text and binary frames, so without
``--hex`` or ``--text`` a line that does not decode as text is tried as hex).  For each one
it prints
``{"ok": true, "messages": [...], "reply": "<hex or null>"}`` or
``{"ok": false, "error": "<kind>: <detail>"}``.  The frames of one invocation are one
session, in order: an identification or login names the terminal for the frames after it.
With ``--udp`` a frame is a datagram, cut by the protocol's datagram framer when it has
one.  Exit status: 0 when every frame decoded, 1 when any did not, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import binascii
import json
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, tzinfo
from typing import Any, TextIO

from gateway.protocols import PROTOCOLS
from gateway.protocols.base import (
    DecodeContext,
    FramingError,
    MalformedFrame,
    ProtocolError,
    ProtocolSpec,
    parse_tz,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "decode",
        help="decode wire frames of a protocol to JSON (one line per frame)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--protocol", required=True, choices=list(PROTOCOLS), help="the terminals' protocol")
    encoding = parser.add_mutually_exclusive_group()
    encoding.add_argument(
        "--hex", dest="encoding", action="store_const", const="hex", help="frames are hex digits"
    )
    encoding.add_argument(
        "--text", dest="encoding", action="store_const", const="text", help="frames are literal text"
    )
    parser.add_argument("--udp", action="store_true", help="each frame is a UDP datagram")
    parser.add_argument(
        "--tz", type=_zone, metavar="ZONE", help="zone the terminal reports local time in (+08:00)"
    )
    parser.add_argument("--lenient", action="store_true", help="decode frames with a wrong checksum, flagged")
    parser.add_argument(
        "frames", nargs="*", metavar="FRAME", help="wire frames (default: lines of standard input)"
    )
    parser.set_defaults(handler=run)


def _zone(text: str) -> tzinfo:
    try:
        return parse_tz(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    spec = PROTOCOLS[args.protocol]
    encoding = args.encoding or ("text" if spec.text else "hex")
    hex_fallback = args.encoding is None and spec.text
    context = DecodeContext(
        tz=args.tz if args.tz is not None else parse_tz(spec.default_tz),
        lenient=args.lenient,
        transport="udp" if args.udp else "tcp",
    )
    inputs = args.frames if args.frames else _stdin_lines(sys.stdin)
    failures = 0
    for line in inputs:
        result = decode_input(spec, line, encoding, context)
        if not result["ok"] and hex_fallback and _looks_hex(line):
            second = decode_input(spec, line, "hex", context)
            result = second if second["ok"] else result
        failures += not result["ok"]
        sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    return 1 if failures else 0


def _looks_hex(line: str) -> bool:
    digits = "".join(line.split())
    return len(digits) % 2 == 0 and len(digits) >= 8 and all(c in "0123456789abcdefABCDEF" for c in digits)


def _stdin_lines(stream: TextIO) -> Iterator[str]:
    for line in stream:
        line = line.rstrip("\r\n")
        if line.strip():
            yield line


def decode_input(spec: ProtocolSpec, line: str, encoding: str, context: DecodeContext) -> dict[str, Any]:
    """Decode one input line in the session ``context``: the JSON object to print."""
    try:
        frames = _frames(spec, _wire(line, encoding), context.transport)
        messages: list[dict[str, Any]] = []
        reply = b""
        for frame in frames:
            context.received_at = datetime.now(UTC)
            decoded = spec.decode(frame, context)
            if decoded.terminal_id:
                context.terminal_id = decoded.terminal_id
            messages.extend(message.to_json_dict() for message in decoded.messages)
            reply += decoded.reply or b""
    except ProtocolError as exc:
        return {"ok": False, "error": str(exc)}
    except Exception as exc:  # a decoder bug must not end the session: report it as a line
        return {"ok": False, "error": f"internal: {type(exc).__name__}: {exc}"}
    return {"ok": True, "messages": messages, "reply": reply.hex() if reply else None}


def _wire(line: str, encoding: str) -> bytes:
    if encoding == "hex":
        digits = "".join(line.split())
        if digits[:2].lower() == "0x":
            digits = digits[2:]
        try:
            return binascii.unhexlify(digits)
        except (binascii.Error, ValueError):
            raise MalformedFrame(f"not a hex string: {line[:40]!r}") from None
    try:
        return line.encode("latin-1")
    except UnicodeEncodeError:
        raise MalformedFrame(f"text frame with characters outside latin-1: {line[:40]!r}") from None


def _frames(spec: ProtocolSpec, wire: bytes, transport: str) -> Iterable[bytes]:
    if not wire:
        raise MalformedFrame("empty frame")
    if transport == "udp" and spec.split_datagram is not None:
        frames = spec.split_datagram(wire).frames
        if not frames:
            raise FramingError(f"no {spec.name} frame in the datagram")
        return frames
    return (wire,)
