"""``gpsfleet bench alerts``: time from a fault frame to its repair ticket visible in the API,
while positions flow in at ``--rate`` per second.

This process runs the whole stack in one event loop, as ``gpsfleet serve`` does: gateway
(JT/T 808 over TCP), store, alert engine and the API on a free port.  A second process plays
the terminals: ``--terminals`` connections report positions at ``--rate`` in total, and every
``--fault-every`` seconds one more terminal sends a GNSS-antenna-cut alarm frame; it then polls
``GET /api/v1/tickets?terminal_id=…&fault=gnss_antenna_cut`` over HTTP with a NOC token until
the ticket is there.  The latency is measured from writing the frame to the socket to the API
answer that shows the ticket.  Load terminals are registered once (reused by later runs);
fault terminals are new each run.  Offline and clock-drift rules are off here: the load
terminals' fix times step a second per report (faster than the clock, ending just before now)
to keep every position unique.  ``--path direct`` leaves out the gateway and the second
process: positions go through PositionWriter and the engine's after-commit hook, as the
gateway hands them over.  The figures include backlog samples (event-loop lag, the gateway
writer's queue, the engine's queue) that say where time went.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import secrets
import statistics
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import mkdtemp
from typing import Any

from app.context import add_db_argument, database_or_exit, settings_from
from core.settings import Settings
from store.db import Database

LOAD_PREFIX = "0177"
PATHS = {
    "gateway": "JT/T 808 terminals over TCP -> gateway -> store -> alert engine -> API (HTTP poll)",
    "direct": "PositionWriter -> alert engine (after_commit) -> API (HTTP poll); no gateway",
}
FAULT_PREFIX = "0188"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "alerts",
        help="fault frame to ticket visible in the API (latency) under position load",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    add_db_argument(parser)
    parser.add_argument("--rate", type=int, default=5000, help="positions per second in total (default 5000)")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the load runs (default 30)")
    parser.add_argument("--terminals", type=int, default=1000, help="load terminals (default 1000)")
    parser.add_argument(
        "--fault-every", type=float, default=0.25, help="seconds between fault frames (default 0.25)"
    )
    parser.add_argument(
        "--path",
        choices=sorted(PATHS),
        default="gateway",
        help="gateway: terminals over TCP (default); direct: PositionWriter and the engine's hook, no gateway",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run)


# --------------------------------------------------------------------------- registry


def _register(database: Database, phones: list[str], model: str = "BENCH-JT808") -> None:
    from fleet import service
    from fleet.errors import NotFound

    with database.engine.begin() as conn:
        try:
            service.terminal_model_by_name(conn, model)
        except NotFound:
            service.create_terminal_model(conn, name=model, protocol="jt808", warranty_months=24)
        try:
            customer_id = service.vehicle_by_plate(conn, "BENCH0")["customer_id"]
        except NotFound:
            customer_id = service.create_customer(conn, name="Bench Logistics", contact_name="Bench")["id"]
            service.create_vehicle(conn, plate="BENCH0", customer_id=customer_id)
        installed = datetime.now(UTC) - timedelta(days=100)
        for phone in phones:
            try:
                service.terminal_by_device_id(conn, phone)
                continue
            except NotFound:
                pass
            plate = "B" + phone[-9:]
            service.create_vehicle(conn, plate=plate, customer_id=customer_id)
            service.create_terminal(conn, device_id=phone, model=model)
            service.install(conn, device_id=phone, plate=plate, at=installed)


# --------------------------------------------------------------------------- the terminals' side


def _client(
    port: int,
    api_url: str,
    token: str,
    load: list[str],
    faults: list[str],
    rate: int,
    seconds: float,
    fault_every: float,
    results: Any,
) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        results.put(asyncio.run(_drive(port, api_url, token, load, faults, rate, seconds, fault_every)))
    except BaseException as exc:
        results.put({"error": f"{type(exc).__name__}: {exc}"})
        raise


async def _open(phone: str, port: int) -> tuple[Any, asyncio.StreamReader, asyncio.StreamWriter]:
    from gateway.protocols.base import parse_tz
    from gateway.protocols.jt808 import SPEC, Jt808Device

    codec = Jt808Device(phone, tz=parse_tz(SPEC.default_tz))  # the zone the gateway expects
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(codec.handshake().data)
    while True:
        event = codec.on_reply(await asyncio.wait_for(reader.read(4096), 30))
        for out in event.send:
            writer.write(out.data)
        if event.handshake_done:
            return codec, reader, writer


async def _drain(reader: asyncio.StreamReader) -> None:
    while await reader.read(65536):
        pass


def _message(phone: str, at: datetime, n: int, alarms: list[str] | None = None) -> Any:
    from core.messages import Message, MessageType

    return Message(
        MessageType.POSITION,
        phone,
        at,
        valid=True,
        lat=31.2 + n * 1e-5,
        lon=121.4 + n * 1e-5,
        speed_kmh=float(n % 80),
        course=float(n % 360),
        satellites=9,
        alarms=alarms or [],
    )


async def _drive(
    port: int,
    api_url: str,
    token: str,
    load: list[str],
    faults: list[str],
    rate: int,
    seconds: float,
    fault_every: float,
) -> dict[str, Any]:
    import httpx

    connections = []
    for start in range(0, len(load), 100):  # handshakes in waves, as a fleet reconnecting would
        connections += await asyncio.gather(*(_open(p, port) for p in load[start : start + 100]))
    fault_connections = await asyncio.gather(*(_open(p, port) for p in faults))
    drains = [asyncio.create_task(_drain(r)) for _, r, _ in [*connections, *fault_connections]]
    sent = 0
    interval = len(connections) / rate  # each terminal's reporting interval
    # fix times step one second per report, starting far enough back to stay in the past
    reports_each = int(seconds / interval) + 2
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=reports_each + 5)
    # frames are built before the clock starts, so that this process leaves the CPU to the server
    frames = [
        [
            codec.position(_message(codec.terminal_id, base + timedelta(seconds=n), n)).data
            for n in range(reports_each)
        ]
        for codec, _, _ in connections
    ]
    stop_at = time.monotonic() + seconds

    async def report(index: int, codec: Any, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await asyncio.sleep(interval * index / len(connections))
        n = 0
        next_at = time.monotonic()
        while time.monotonic() < stop_at and n < reports_each:
            writer.write(frames[index][n])
            sent += 1
            n += 1
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    latencies: list[float] = []
    missing: list[str] = []

    async def fault(codec: Any, writer: asyncio.StreamWriter, client: httpx.AsyncClient) -> None:
        frame = codec.position(
            _message(codec.terminal_id, datetime.now(UTC).replace(microsecond=0), 1, ["gnss_antenna_cut"])
        )
        sent_at = time.perf_counter()
        writer.write(frame.data)
        await _await_ticket(client, codec.terminal_id, sent_at, latencies, missing)

    started = time.monotonic()
    loaders = [asyncio.create_task(report(i, c, w)) for i, (c, _, w) in enumerate(connections)]
    pollers = []
    async with httpx.AsyncClient(
        base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    ) as client:
        await asyncio.sleep(min(2.0, seconds / 5))  # let the load settle first
        for codec, _, writer in fault_connections:
            if time.monotonic() > stop_at - 1:
                break
            pollers.append(asyncio.create_task(fault(codec, writer, client)))
            await asyncio.sleep(fault_every)
        await asyncio.gather(*loaders)
        elapsed = time.monotonic() - started
        await asyncio.gather(*pollers)
    for _, _, writer in [*connections, *fault_connections]:
        writer.close()
    for task in drains:
        task.cancel()
    return {"sent": sent, "elapsed_s": elapsed, "latencies": latencies, "missing": missing}


async def _await_ticket(
    client: Any, terminal_id: str, sent_at: float, latencies: list[float], missing: list[str]
) -> None:
    """Poll the API until the terminal's antenna-cut ticket shows; record how long it took."""
    import httpx

    params = {"terminal_id": terminal_id, "fault": "gnss_antenna_cut"}
    while time.perf_counter() - sent_at < 30:
        try:
            answer = await client.get("/api/v1/tickets", params=params)
        except httpx.HTTPError:
            continue  # a slow answer under load: ask again
        if answer.status_code == 200 and answer.json()["total"]:
            latencies.append(time.perf_counter() - sent_at)
            return
        await asyncio.sleep(0.02)
    missing.append(terminal_id)


async def _drive_direct(
    database: Database,
    engine: Any,
    api_url: str,
    token: str,
    load: list[str],
    faults: list[str],
    rate: int,
    seconds: float,
    fault_every: float,
) -> dict[str, Any]:
    """Without the gateway: positions written by PositionWriter in a thread and handed to the
    engine's after-commit hook, as the gateway does; fault rows the same way."""
    import concurrent.futures
    import threading

    import httpx

    from store.ingest import PositionWriter
    from store.records import IngestBatch, PositionRow

    per_tick, tick_s = max(1, rate // 10), 0.1
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=int(seconds * rate / len(load)) + 10)
    counters = {"sent": 0}
    stop_at = time.monotonic() + seconds

    def feed() -> None:
        writer = PositionWriter(database)
        n = 0
        next_at = time.monotonic()
        while time.monotonic() < stop_at:
            now = datetime.now(UTC)
            rows = [
                PositionRow(
                    terminal_id=load[(n + i) % len(load)],
                    fix_time=base + timedelta(seconds=(n + i) // len(load)),
                    received_at=now,
                    protocol="jt808",
                    valid=True,
                    lat=31.2 + (n + i) % 97 * 1e-4,
                    lon=121.4,
                    speed_kmh=float((n + i) % 80),
                    course=90.0,
                    satellites=9,
                )
                for i in range(per_tick)
            ]
            batch = IngestBatch(positions=rows)
            writer.write(batch)
            engine.after_commit(batch)
            counters["sent"] += per_tick
            n += per_tick
            next_at += tick_s
            time.sleep(max(0.0, next_at - time.monotonic()))

    started = time.monotonic()
    feeder = threading.Thread(target=feed, name="bench-feeder", daemon=True)
    feeder.start()
    fault_writer = concurrent.futures.ThreadPoolExecutor(max_workers=1)  # one PositionWriter per thread
    writers: dict[str, Any] = {}

    def write_fault(terminal_id: str) -> None:
        writer = writers.setdefault("w", PositionWriter(database))
        at = datetime.now(UTC)
        batch = IngestBatch(
            positions=[
                PositionRow(
                    terminal_id=terminal_id,
                    fix_time=at,
                    received_at=at,
                    protocol="jt808",
                    valid=True,
                    lat=31.2,
                    lon=121.4,
                    alarms=["gnss_antenna_cut"],
                )
            ]
        )
        writer.write(batch)
        engine.after_commit(batch)

    latencies: list[float] = []
    missing: list[str] = []
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(
        base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    ) as client:

        async def fault(terminal_id: str) -> None:
            sent_at = time.perf_counter()
            await loop.run_in_executor(fault_writer, write_fault, terminal_id)
            await _await_ticket(client, terminal_id, sent_at, latencies, missing)

        await asyncio.sleep(min(2.0, seconds / 5))
        pollers = []
        for terminal_id in faults:
            if time.monotonic() > stop_at - 1:
                break
            pollers.append(asyncio.create_task(fault(terminal_id)))
            await asyncio.sleep(fault_every)
        await asyncio.to_thread(feeder.join)
        elapsed = time.monotonic() - started
        await asyncio.gather(*pollers)
    fault_writer.shutdown()
    return {"sent": counters["sent"], "elapsed_s": elapsed, "latencies": latencies, "missing": missing}


# --------------------------------------------------------------------------- the server's side


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


async def _serve_and_measure(
    settings: Settings, database: Database, args: argparse.Namespace
) -> dict[str, Any]:
    from alerts.engine import AlertEngine
    from api.auth import create_token
    from app.runtime import Runtime
    from fleet.directory import TerminalDirectory
    from gateway.server import Gateway

    run_id = secrets.randbelow(10_000)
    load = [f"{LOAD_PREFIX}{n:08d}" for n in range(args.terminals)]
    fault_count = int(args.seconds / args.fault_every) + 1
    faults = [f"{FAULT_PREFIX}{run_id:04d}{n:04d}" for n in range(fault_count)]
    t0 = time.monotonic()
    await asyncio.to_thread(_register, database, load + faults)
    registry_s = time.monotonic() - t0
    token = create_token(database.engine, role="noc", name="bench alerts").token

    engine = AlertEngine(settings, database)
    gateway = (
        Gateway(settings, database, TerminalDirectory(database), engine) if args.path == "gateway" else None
    )
    components: list[tuple[str, Any]] = [("alerts", engine)] + ([("gateway", gateway)] if gateway else [])
    runtime = Runtime(settings, database, "all", components=components)
    await runtime.start()
    try:
        api_url = f"http://127.0.0.1:{runtime.api_port}"
        samples: list[tuple[int, int, int, float]] = []

        async def sample() -> None:  # where a backlog builds up: event loop, gateway writer, engine
            while True:
                started = time.monotonic()
                await asyncio.sleep(0.5)
                lag = time.monotonic() - started - 0.5
                writer_queue = (
                    gateway.writer.queued if gateway is not None and gateway.writer is not None else 0
                )
                samples.append((writer_queue, engine.queue_depth, engine.stats.rows, lag))

        sampler = asyncio.create_task(sample())
        if gateway is None:
            outcome = await _drive_direct(
                database, engine, api_url, token, load, faults, args.rate, args.seconds, args.fault_every
            )
        else:
            context = multiprocessing.get_context("spawn")
            results = context.Queue()
            client = context.Process(
                target=_client,
                args=(
                    gateway.ports["jt808"]["tcp"],
                    api_url,
                    token,
                    load,
                    faults,
                    args.rate,
                    args.seconds,
                    args.fault_every,
                    results,
                ),
                daemon=True,
            )
            client.start()
            outcome = await asyncio.to_thread(results.get, True, args.seconds + 300)
            if "error" in outcome:
                raise RuntimeError(f"the terminals' process failed: {outcome['error']}")
            await asyncio.to_thread(client.join, 30)
        sampler.cancel()
        await asyncio.sleep(1.0)
        stats = engine.stats
        queue_depth = engine.queue_depth
    finally:
        await runtime.stop()
    latencies = outcome["latencies"]
    ms = [round(v * 1000, 1) for v in latencies]
    return {
        "benchmark": "alerts",
        "path": PATHS[args.path],
        "db": database.masked_url,
        "rate_target": args.rate,
        "terminals": args.terminals,
        "seconds": round(outcome["elapsed_s"], 1),
        "positions_sent": outcome["sent"],
        "positions_per_s": round(outcome["sent"] / outcome["elapsed_s"], 1),
        "engine_rows": stats.rows,
        "engine_transactions": stats.transactions,
        "engine_busy_s": round(stats.busy_s, 1),
        "engine_dropped_batches": stats.dropped_batches,
        "engine_queue_at_end": queue_depth,
        "faults": len(latencies) + len(outcome["missing"]),
        "tickets_seen": len(latencies),
        "missing": len(outcome["missing"]),
        "latency_p50_ms": _percentile(ms, 0.50),
        "latency_p90_ms": _percentile(ms, 0.90),
        "latency_p99_ms": _percentile(ms, 0.99),
        "latency_max_ms": max(ms) if ms else None,
        "latency_mean_ms": round(statistics.fmean(ms), 1) if ms else None,
        "registry_setup_s": round(registry_s, 1),
        "max_gateway_writer_queue": max((s[0] for s in samples), default=0),
        "max_engine_queue": max((s[1] for s in samples), default=0),
        "max_event_loop_lag_ms": round(max((s[3] for s in samples), default=0.0) * 1000, 1),
        "samples": len(samples),
    }


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    settings = settings.model_copy(
        update={
            "api_port": 0,
            "data_dir": Path(mkdtemp(prefix="gpsfleet-bench-alerts-")),
            "gateway": settings.gateway.model_copy(
                update={
                    "host": "127.0.0.1",
                    "protocols": {
                        name: spec.model_copy(update={"port": 0} if name == "jt808" else {"enabled": False})
                        for name, spec in settings.gateway.protocols.items()
                    },
                }
            ),
            "alerts": settings.alerts.model_copy(
                update={
                    "evaluate_every_s": 1.0,
                    "rules": {
                        **settings.alerts.rules,
                        "offline": settings.alerts.rules.get("offline", _off()).model_copy(
                            update={"enabled": False}
                        ),
                        "clock_drift": _off(),
                    },
                }
            ),
        }
    )
    database = database_or_exit(settings)
    try:
        result = _run_uvloop(_serve_and_measure(settings, database, args))
    finally:
        database.dispose()
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>24}: {value}")
    ok = result["missing"] == 0 and result["latency_p99_ms"] is not None
    return 0 if ok else 1


def _run_uvloop(main: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    """The stack runs on uvloop, as ``gpsfleet serve`` runs it."""
    try:
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def _off() -> Any:
    from core.settings import RuleSettings

    return RuleSettings(enabled=False)
