"""``gpsfleet bench decode``: items decoded per second for every registered protocol, on one core.

An item is a frame, or each record of a frame that carries several (NMEA sentences, JT/T 808
and GT06 frames, Teltonika AVL records): per frame, ``max(1, messages decoded)``.

The mix of each protocol is one session of its ``DeviceCodec`` (the terminal side the
simulators use): the handshake, then a day-like track of fixes (mostly single reports,
some stored batches where the protocol batches), heartbeats and status frames, followed
by the captured real frames of ``tests/data/frames/<protocol>.jsonl`` that decode in that
session.  The timed loop does what the gateway does per connection: a ``StreamFramer`` is
fed each device write, every frame is decoded with the session's ``DecodeContext``
(replies built), and the terminal id a login announces is carried on.  The mix is built
before the clock starts.  Passes are timed in CPU seconds of the process (so other
processes on a shared machine do not count against it) and the best pass is reported.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from core.messages import Message, MessageType
from core.vocabulary import Alarm, Attr
from gateway.protocols import PROTOCOLS
from gateway.protocols.base import DecodeContext, DeviceCodec, Outgoing, ProtocolError, ProtocolSpec, parse_tz

CAPTURES = Path(__file__).resolve().parent.parent / "tests" / "data" / "frames"
# Ids a codec may accept: an IMEI, or a JT/T 808-2013 phone id (12 BCD digits).
CANDIDATE_IDS = ("352099001234564", "013912345678")
FIXES = 400
BATCH = 5


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "decode",
        help="protocol decoding, items per second per protocol",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per protocol (default 2)")
    parser.add_argument(
        "--protocol", action="append", choices=list(PROTOCOLS), help="only these (repeatable)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object {protocol: items/s}")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    names = args.protocol or list(PROTOCOLS)
    figures: dict[str, int] = {}
    for name in names:
        spec = PROTOCOLS[name]
        writes = build_mix(spec)
        if not writes:
            print(f"{name}: no device codec and no captures; skipped", file=sys.stderr)
            continue
        rate, items, errors = measure(spec, writes, args.seconds)
        figures[name] = int(rate)
        if not args.json:
            print(f"{name:10s} {int(rate):>10,d} items/s  ({items} items per session pass, {errors} errors)")
    if args.json:
        print(json.dumps(figures))
    return 0


# --------------------------------------------------------------------------- the mix


def track(start: datetime, count: int) -> list[Message]:
    """A vehicle driving a loop: a fix every 10 s, moving, with health attributes (external
    voltage on every 10th fix)."""
    fixes = []
    for index in range(count):
        angle = index / count * 2 * math.pi
        attributes: dict[str, object] = {
            Attr.IGNITION: True,
            Attr.BATTERY_V: 4.1,
            Attr.ODOMETER_M: 1_000_000 + 120 * index,
        }
        # external voltage now and then, as trackers report it (a GT06 sends it in a 0x94
        # frame of its own: on every fix, half the GT06 frames would be voltage reports)
        if index % 10 == 0:
            attributes[Attr.POWER_V] = 13.8
        fixes.append(
            Message(
                MessageType.POSITION,
                time=start + timedelta(seconds=10 * index),
                valid=index % 50 != 7,
                lat=round(48.137 + 0.05 * math.sin(angle), 6),
                lon=round(11.575 + 0.08 * math.cos(angle), 6),
                speed_kmh=round(40 + 30 * abs(math.sin(angle * 3)), 1),
                course=round(math.degrees(angle + math.pi / 2) % 360, 1),
                altitude_m=520.0 + index % 13,
                satellites=9,
                hdop=0.9,
                alarms=[Alarm.OVERSPEED] if index % 97 == 13 else [],
                attributes=attributes,
            )
        )
    return fixes


def _device(spec: ProtocolSpec) -> DeviceCodec | None:
    """The protocol's device codec with the first candidate id whose frames decode."""
    if spec.device is None:
        return None
    probe = track(datetime.now(UTC) - timedelta(hours=1), 1)[0]
    for terminal_id in CANDIDATE_IDS:
        try:
            device = spec.device(terminal_id, tz=parse_tz(spec.default_tz))
            writes = [out.data for out in (device.handshake(), device.position(probe)) if out is not None]
            if _decodes(spec, writes):
                return spec.device(terminal_id, tz=parse_tz(spec.default_tz))
        except (ValueError, TypeError, ProtocolError):
            continue
    return None


def build_mix(spec: ProtocolSpec) -> list[bytes]:
    """The device writes of one realistic session, then the captures that decode after it."""
    writes: list[bytes] = []
    device = _device(spec)
    if device is not None:
        writes += _device_session(device)
    for frame in _captures(spec.name):
        if _decodes(spec, writes + [frame]):
            writes.append(frame)
    return writes


def _device_session(device: DeviceCodec) -> list[bytes]:
    out: list[Outgoing | None] = [device.handshake()]
    fixes = track(datetime.now(UTC) - timedelta(hours=2), FIXES)
    index = 0
    while index < len(fixes):
        if index % 40 == 20:  # a stored batch, where the protocol can batch
            batch = device.positions(fixes[index : index + BATCH])
            if batch is not None:
                out.append(batch)
                index += BATCH
                continue
        out.append(device.position(fixes[index]))
        if index % 10 == 9:
            out.append(device.heartbeat({Attr.BATTERY_LEVEL: 90}))
        if index % 50 == 49:
            out.append(device.status({Attr.POWER_V: 12.1, Attr.BATTERY_LEVEL: 80}, [Alarm.LOW_POWER]))
        index += 1
    return [item.data for item in out if item is not None]


def _captures(protocol: str) -> list[bytes]:
    path = CAPTURES / f"{protocol}.jsonl"
    if not path.exists():
        return []
    frames = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("frame_integrity", "ok") != "ok":
            continue
        if row["encoding"] == "hex":
            frames.append(bytes.fromhex(row["frame"]))
        else:
            frames.append(_terminated(row["frame"].encode("latin-1")))
    return frames


def _terminated(wire: bytes) -> bytes:
    """Text captures are published without their line end; a stream carries one."""
    return wire if wire.endswith((b"\n", b";", b"#", b"*")) else wire + b"\r\n"


def _decodes(spec: ProtocolSpec, writes: list[bytes]) -> bool:
    """True when the last write frames and decodes without error after the others."""
    framer = spec.framer()
    context = DecodeContext(tz=parse_tz(spec.default_tz))
    last_ok = False
    for index, data in enumerate(writes):
        last_ok = True
        frames = framer.feed(data)
        if index == len(writes) - 1 and not frames:
            return False
        for frame in frames:
            try:
                decoded = spec.decode(frame, context)
            except ProtocolError:
                last_ok = False
                continue
            if decoded.terminal_id:
                context.terminal_id = decoded.terminal_id
    return last_ok


# --------------------------------------------------------------------------- the timed loop


def _session_pass(spec: ProtocolSpec, writes: list[bytes], received_at: datetime) -> tuple[int, int]:
    framer = spec.framer()
    context = DecodeContext(tz=parse_tz(spec.default_tz), received_at=received_at)
    decode = spec.decode
    items = errors = 0
    for data in writes:
        for frame in framer.feed(data):
            try:
                decoded = decode(frame, context)
            except ProtocolError:
                errors += 1
                continue
            if decoded.terminal_id:
                context.terminal_id = decoded.terminal_id
            items += len(decoded.messages) or 1
    return items, errors


def measure(spec: ProtocolSpec, writes: list[bytes], seconds: float) -> tuple[float, int, int]:
    """(items per second, items per pass, errors per pass).  Whole session passes run for
    ``seconds``; each is timed in CPU seconds of this process (one core: what the machine's
    other processes take is not counted) and the figure is the best pass (timeit's rule)."""
    received_at = datetime.now(UTC)
    items, errors = _session_pass(spec, writes, received_at)  # warm-up
    best = 0.0
    deadline = time.perf_counter() + seconds
    while True:
        started = time.process_time()
        done, _ = _session_pass(spec, writes, received_at)
        spent = time.process_time() - started
        if spent > 0:
            best = max(best, done / spent)
        if time.perf_counter() >= deadline and best:
            return best, items, errors
