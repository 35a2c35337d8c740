"""``gpsfleet bench ingest``: positions per second through the whole gateway, acknowledged
only after commit, with stop-and-wait terminals on real TCP connections.

This process starts a gateway on ``--db`` (unless ``--target HOST:PORT`` names a running
one) and registers the simulated terminals in the registry (fleet.service; reused by later
runs).  Separate load processes (multiprocessing, so the gateway keeps its own core) build
every frame beforehand with the protocol's own ``DeviceCodec``, connect, do the protocol's
handshake, then each terminal sends one fix, waits for its acknowledgement, and sends the
next, for ``--seconds``.  ``--idle-connections N`` also holds N logged-in connections that
send nothing and checks they are all still open at the end.  Afterwards the database is
checked: ``stored`` counts the run's fixes in it, ``lost`` the acknowledged ones missing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import resource
import statistics
import sys
import time
from array import array
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import mkdtemp
from typing import Any

from sqlalchemy import and_, func, select

from app.context import add_db_argument, database_or_exit, settings_from
from core.messages import Message, MessageType
from store.db import Database

PREFIX = {"jt808": "0166", "teltonika": "8612", "gt06": "8613", "h02": "8614", "gps103": "8615"}
FRAMES_PER_TERMINAL_PER_S = 100  # built beforehand; a terminal that runs out builds more on the fly


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ingest",
        help="positions/s and acknowledgement latency through the gateway (stop-and-wait terminals)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    add_db_argument(parser)
    parser.add_argument(
        "--protocol", default="jt808", help="a protocol that acknowledges positions (jt808, teltonika)"
    )
    parser.add_argument("--connections", type=int, default=500, help="stop-and-wait terminals (default 500)")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long they send (default 20)")
    parser.add_argument(
        "--idle-connections", type=int, default=0, help="logged-in connections that stay silent"
    )
    parser.add_argument(
        "--load-processes", type=int, default=1, help="processes playing the terminals (default 1)"
    )
    parser.add_argument(
        "--target", metavar="HOST:PORT", help="drive a running gateway instead of starting one"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run)


# --------------------------------------------------------------------------- identities


def device_ids(protocol: str, count: int, offset: int = 0) -> list[str]:
    prefix = PREFIX.get(protocol, "8619")
    if protocol == "jt808":
        return [f"{prefix}{offset + i:08d}" for i in range(count)]
    return [_luhn(f"{prefix}{offset + i:010d}") for i in range(count)]


def _luhn(body: str) -> str:
    total = 0
    for index, char in enumerate(reversed(body)):
        digit = int(char) * (2 if index % 2 == 0 else 1)
        total += digit - 9 if digit > 9 else digit
    return body + str((10 - total % 10) % 10)


def register_terminals(database: Database, protocol: str, ids: list[str]) -> int:
    """Register the ids not yet in the registry; returns how many were new."""
    from fleet import service
    from fleet.errors import NotFound
    from store.tables.registry import terminals

    model = f"BENCH-{protocol.upper()}"
    with database.engine.begin() as conn:
        try:
            service.terminal_model_by_name(conn, model)
        except NotFound:
            service.create_terminal_model(conn, name=model, protocol=protocol)
        known = set(
            conn.execute(select(terminals.c.device_id).where(terminals.c.device_id.in_(ids))).scalars()
        )
    new = [device_id for device_id in ids if device_id not in known]
    for start in range(0, len(new), 1000):
        with database.engine.begin() as conn:
            for device_id in new[start : start + 1000]:
                service.create_terminal(conn, device_id=device_id, model=model)
    return len(new)


def first_free_time(database: Database, ids: list[str]) -> datetime:
    """Fix times of this run start after every fix these terminals already have."""
    from store.tables.positions import positions

    floor = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    with database.engine.connect() as conn:
        latest = conn.execute(
            select(func.max(positions.c.fix_time)).where(positions.c.terminal_id.in_(ids))
        ).scalar()
    return max(floor, latest + timedelta(seconds=1)) if latest else floor


def count_stored(database: Database, ids: list[str], since: datetime) -> int:
    from store.tables.positions import positions

    total = 0
    with database.engine.connect() as conn:
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            total += conn.execute(
                select(func.count())
                .select_from(positions)
                .where(and_(positions.c.terminal_id.in_(chunk), positions.c.fix_time >= since))
            ).scalar_one()
    return total


# --------------------------------------------------------------------------- load process


def raise_fd_limit(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(max(soft, wanted), hard) if hard != resource.RLIM_INFINITY else max(soft, wanted)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def _fix(index: int, start: datetime, lane: int) -> Message:
    return Message(
        MessageType.POSITION,
        time=start + timedelta(seconds=index),
        valid=True,
        lat=round(30.0 + (lane % 100) * 0.01 + index * 0.00005, 6),
        lon=round(120.0 + (lane // 100) * 0.01 + index * 0.00005, 6),
        speed_kmh=20.0,
        course=45.0,
        satellites=9,
    )


class _LoadTerminal(asyncio.Protocol):
    """One stop-and-wait terminal: the next frame goes out when the previous one is acknowledged."""

    def __init__(
        self, worker: _LoadWorker, codec: Any, frames: list[tuple[bytes, int | None]], lane: int
    ) -> None:
        self.worker = worker
        self.codec = codec
        self.frames = frames
        self.lane = lane
        self.next_index = 0
        self.transport: asyncio.Transport | None = None
        self.handshake_done = asyncio.get_running_loop().create_future()
        self.logged_in = False
        self.running = False
        self.waiting_seq: int | None = None
        self.sent_at = 0.0
        self.sent = 0
        self.acked = 0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        first = self.codec.handshake()
        if first is None:
            self.logged_in = True
            self.handshake_done.set_result(True)
        else:
            transport.write(first.data)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        event = self.codec.on_reply(data)
        if not self.logged_in:
            for follow in event.send:
                assert self.transport is not None
                self.transport.write(follow.data)
            if event.handshake_done or event.rejected:
                self.logged_in = True
                if not self.handshake_done.done():
                    self.handshake_done.set_result(not event.rejected)
            return
        if self.waiting_seq is not None and self.waiting_seq in event.acked:
            self.waiting_seq = None
            self.acked += 1
            self.worker.latencies.append((time.perf_counter() - self.sent_at) * 1000.0)
            if self.running:
                self.send_next()
            else:
                self.worker.settled()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.handshake_done.done():
            self.handshake_done.set_result(False)
        if self.waiting_seq is not None:
            self.waiting_seq = None
            self.worker.settled()

    def send_next(self) -> None:
        if self.next_index >= len(self.frames):
            self.frames.append(_frame(self.codec, self.next_index, self.worker.start, self.lane))
        data, seq = self.frames[self.next_index]
        self.next_index += 1
        self.waiting_seq = seq
        self.sent += 1
        self.sent_at = time.perf_counter()
        assert self.transport is not None
        self.transport.write(data)


def _frame(codec: Any, index: int, start: datetime, lane: int) -> tuple[bytes, int | None]:
    out = codec.position(_fix(index, start, lane))
    return out.data, out.seq


class _LoadWorker:
    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self.start = datetime.fromisoformat(job["start"])
        self.latencies: array[float] = array("d")
        self._settled = asyncio.Event()
        self.terminals: list[_LoadTerminal] = []

    def settled(self) -> None:
        if not any(t.waiting_seq is not None for t in self.terminals):
            self._settled.set()

    async def run(self, go: Any, ready: Any) -> dict[str, Any]:
        from gateway.protocols import PROTOCOLS

        job = self.job
        device = PROTOCOLS[job["protocol"]].device
        assert device is not None
        per_terminal = int(job["seconds"] * FRAMES_PER_TERMINAL_PER_S)
        loop = asyncio.get_running_loop()
        host, port = job["host"], job["port"]
        built = time.perf_counter()
        plans = []
        for lane, device_id in zip(job["lanes"], job["ids"], strict=True):
            codec = device(device_id)
            handshake_seq = codec.seq
            frames: list[tuple[bytes, int | None]] = []
            plans.append((codec, frames, lane, handshake_seq))
        semaphore = asyncio.Semaphore(200)

        async def open_one(
            codec: Any, frames: list[tuple[bytes, int | None]], lane: int
        ) -> _LoadTerminal | None:
            async with semaphore:
                try:
                    _, terminal = await loop.create_connection(
                        lambda: _LoadTerminal(self, codec, frames, lane), host, port
                    )
                    ok = await asyncio.wait_for(terminal.handshake_done, 30)
                except (OSError, TimeoutError):
                    return None
                return terminal if ok else None

        # Handshakes first (they advance the codecs' serial numbers), then the frames.
        opened = await asyncio.gather(*(open_one(codec, frames, lane) for codec, frames, lane, _ in plans))
        self.terminals = [t for t in opened if t is not None]
        for codec, frames, lane, _ in plans:
            frames.extend(_frame(codec, i, self.start, lane) for i in range(per_terminal))
        idle: list[_LoadTerminal] = []
        for device_id in job["idle_ids"]:
            codec = device(device_id)
            terminal_or_none = await open_one(codec, [], -1)
            if terminal_or_none is not None:
                idle.append(terminal_or_none)
        build_s = time.perf_counter() - built
        ready.put({"connected": len(self.terminals), "idle_connected": len(idle), "build_s": build_s})
        await loop.run_in_executor(None, go.wait)
        started = time.perf_counter()
        for terminal in self.terminals:
            terminal.running = True
            terminal.send_next()
        await asyncio.sleep(job["seconds"])
        for terminal in self.terminals:
            terminal.running = False
        elapsed = time.perf_counter() - started
        self.settled()
        try:
            await asyncio.wait_for(self._settled.wait(), 30)
        except TimeoutError:
            pass
        idle_held = sum(1 for t in idle if not t.closed)
        for terminal in self.terminals + idle:
            if terminal.transport is not None:
                terminal.transport.close()
        return {
            "sent": sum(t.sent for t in self.terminals),
            "acked": sum(t.acked for t in self.terminals),
            "elapsed_s": elapsed,
            "latencies": self.latencies.tobytes(),
            "connected": len(self.terminals),
            "idle_connected": len(idle),
            "idle_held": idle_held,
            "frames_built_late": sum(max(0, t.next_index - per_terminal) for t in self.terminals),
        }


def _load_process(job: dict[str, Any], go: Any, ready: Any, results: Any) -> None:
    raise_fd_limit(len(job["ids"]) + len(job["idle_ids"]) + 1024)
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        results.put(runner.run(_LoadWorker(job).run(go, ready)))


# --------------------------------------------------------------------------- the run


def run(args: argparse.Namespace) -> int:
    from gateway.protocols import PROTOCOLS

    if args.protocol not in PROTOCOLS or PROTOCOLS[args.protocol].device is None:
        print(f"gpsfleet bench ingest: no simulated terminal for protocol {args.protocol!r}", file=sys.stderr)
        return 2
    probe = PROTOCOLS[args.protocol].device("0")  # type: ignore[misc]
    if not probe.position(_fix(0, datetime.now(UTC), 0)).needs_ack:
        print(
            f"gpsfleet bench ingest: {args.protocol} does not acknowledge positions; use jt808 or teltonika",
            file=sys.stderr,
        )
        return 2
    raise_fd_limit(args.connections + args.idle_connections + 4096)
    settings = settings_from(args, data_dir=Path(mkdtemp(prefix="gpsfleet-bench-")))
    database = database_or_exit(settings)
    ids = device_ids(args.protocol, args.connections)
    idle_ids = device_ids(args.protocol, args.idle_connections, offset=args.connections)
    new = register_terminals(database, args.protocol, ids + idle_ids)
    start = first_free_time(database, ids)
    protocol_settings = settings.gateway.protocols[args.protocol].model_copy(
        update={"port": 0, "udp_port": None}
    )
    settings = settings.model_copy(
        update={
            "gateway": settings.gateway.model_copy(
                update={
                    "host": "127.0.0.1",
                    "protocols": {args.protocol: protocol_settings},
                    "max_connections": args.connections + args.idle_connections + 1000,
                    "max_connections_per_address": args.connections + args.idle_connections + 1000,
                    "serial_ports": [],
                    "mqtt": settings.gateway.mqtt.model_copy(update={"enabled": False}),
                }
            )
        }
    )
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        figures = runner.run(_drive(args, settings, database, ids, idle_ids, start))
    figures["registered_new"] = new
    stored = count_stored(database, ids, start)
    deadline = time.monotonic() + 30
    while stored < figures["acked"] and time.monotonic() < deadline:  # a spooled batch drains late
        time.sleep(0.5)
        stored = count_stored(database, ids, start)
    figures["stored"] = stored
    figures["lost"] = max(0, figures["acked"] - stored)
    database.dispose()
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for key, value in figures.items():
            print(f"{key:>22}: {value}")
    return 0 if figures["lost"] == 0 else 1


async def _drive(
    args: argparse.Namespace,
    settings: Any,
    database: Database,
    ids: list[str],
    idle_ids: list[str],
    start: datetime,
) -> dict[str, Any]:
    from fleet.directory import TerminalDirectory
    from gateway.server import Gateway

    gateway: Gateway | None = None
    if args.target:
        host, _, port_text = args.target.rpartition(":")
        port = int(port_text)
    else:
        gateway = Gateway(settings, database, TerminalDirectory(database))
        await gateway.start()
        host, port = "127.0.0.1", gateway.ports[args.protocol]["tcp"]
    context = multiprocessing.get_context("spawn")
    go, ready, results = context.Event(), context.Queue(), context.Queue()
    processes = []
    count = max(1, args.load_processes)
    for number in range(count):
        job = {
            "protocol": args.protocol,
            "host": host,
            "port": port,
            "ids": ids[number::count],
            "lanes": list(range(number, len(ids), count)),
            "idle_ids": idle_ids[number::count],
            "seconds": args.seconds,
            "start": start.isoformat(),
        }
        process = context.Process(target=_load_process, args=(job, go, ready, results), daemon=True)
        process.start()
        processes.append(process)
    loop = asyncio.get_running_loop()
    readiness = [await loop.run_in_executor(None, _from_children, ready, processes) for _ in processes]
    batches_before = _batch_figures()
    writer_clock = _writer_clock(gateway)
    writer_before = time.clock_gettime(writer_clock) if writer_clock is not None else 0.0
    cpu_before = time.process_time()
    go.set()
    reports = [await loop.run_in_executor(None, _from_children, results, processes) for _ in processes]
    cpu_s = time.process_time() - cpu_before
    writer_cpu_s = time.clock_gettime(writer_clock) - writer_before if writer_clock is not None else None
    batches = {key: value - batches_before[key] for key, value in _batch_figures().items()}
    for process in processes:
        await loop.run_in_executor(None, process.join, 10)
    status = gateway.status() if gateway is not None else {}
    if gateway is not None:
        await gateway.stop()
    latencies = array("d")
    for report in reports:
        latencies.frombytes(report["latencies"])
    ordered = sorted(latencies)
    elapsed = max(report["elapsed_s"] for report in reports)
    acked = sum(report["acked"] for report in reports)

    def percentile(p: float) -> float | None:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 2) if ordered else None

    return {
        "protocol": args.protocol,
        "database": database.dialect,
        "connections": sum(r["connected"] for r in readiness),
        "seconds": round(elapsed, 2),
        "positions_per_s": round(acked / elapsed) if elapsed else 0,
        "ack_p50_ms": percentile(0.50),
        "ack_p99_ms": percentile(0.99),
        "ack_max_ms": round(ordered[-1], 2) if ordered else None,
        "ack_mean_ms": round(statistics.fmean(ordered), 2) if ordered else None,
        "sent": sum(report["sent"] for report in reports),
        "acked": acked,
        "idle_connections": len(idle_ids),
        "idle_held": sum(report["idle_held"] for report in reports),
        "gateway_cpu_s": round(cpu_s, 2) if gateway is not None else None,
        "gateway_cpu_us_per_position": round(cpu_s * 1e6 / acked, 1)
        if gateway is not None and acked
        else None,
        "writer_thread_cpu_s": round(writer_cpu_s, 2) if writer_cpu_s is not None else None,
        "load_processes": count,
        "frames_built_late": sum(report["frames_built_late"] for report in reports),
        "batches": int(batches["count"]),
        "batch_rows_mean": round(batches["rows"] / batches["count"], 1) if batches["count"] else None,
        "batch_commit_ms_mean": round(batches["seconds"] * 1000 / batches["count"], 2)
        if batches["count"]
        else None,
        "spool_used": bool(status.get("writer", {}).get("spool_records")) if status else None,
        "load_average": [round(x, 2) for x in __import__("os").getloadavg()],
    }


def _from_children(queue: Any, processes: list[Any]) -> Any:
    """The next message of the load processes; raise when one of them died instead."""
    import queue as queue_module

    while True:
        try:
            return queue.get(timeout=1.0)
        except queue_module.Empty:
            dead = [p for p in processes if p.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"a load process exited with status {dead[0].exitcode}") from None


def _writer_clock(gateway: Any) -> int | None:
    """The CPU clock of the gateway's writer thread (its share of ``gateway_cpu_s``)."""
    thread = getattr(getattr(gateway, "writer", None), "_thread", None)
    if thread is None or thread.ident is None or not hasattr(time, "pthread_getcpuclockid"):
        return None
    return time.pthread_getcpuclockid(thread.ident)


def _batch_figures() -> dict[str, float]:
    from prometheus_client import REGISTRY

    def sample(name: str, labels: dict[str, str] | None = None) -> float:
        return REGISTRY.get_sample_value(name, labels or {}) or 0.0

    return {
        "count": sample("gpsfleet_gateway_batch_rows_count"),
        "rows": sample("gpsfleet_gateway_batch_rows_sum"),
        "seconds": sample("gpsfleet_gateway_batch_seconds_sum", {"target": "database"}),
    }
