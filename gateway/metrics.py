"""The gateway's Prometheus metrics, defined once on the default registry that /metrics serves."""

from __future__ import annotations

import threading

from prometheus_client import REGISTRY, Counter, Gauge, Histogram


class Tally:
    """A per-frame count kept as a plain int by the event loop and added to its counter
    when metrics are collected: ``Counter.inc`` takes a lock and checks its argument, which
    cost about a microsecond a frame.  Only the loop writes ``count``; only ``fold`` (under
    a lock) writes ``folded``, so no increment is lost between the two threads."""

    __slots__ = ("count", "folded", "_counter")

    def __init__(self, counter: Counter) -> None:
        self.count = 0
        self.folded = 0
        self._counter = counter

    def fold(self) -> None:
        count = self.count
        if count != self.folded:
            self._counter.inc(count - self.folded)
            self.folded = count


_TALLIES: dict[tuple[int, tuple[str, ...]], Tally] = {}
_FOLDING = threading.Lock()


def tally(counter: Counter, *labels: str) -> Tally:
    """The tally of ``counter`` with ``labels`` (one per label set, shared by sessions)."""
    key = (id(counter), labels)
    found = _TALLIES.get(key)
    if found is None:
        found = _TALLIES.setdefault(key, Tally(counter.labels(*labels)))
    return found


class _FoldTallies:
    """Registered before the counters, so each collection folds the tallies in first."""

    def collect(self) -> list[object]:
        with _FOLDING:
            for counted in list(_TALLIES.values()):
                counted.fold()
        return []

    def describe(self) -> list[object]:
        return []


REGISTRY.register(_FoldTallies())  # type: ignore[arg-type]

FRAMES_IN = Counter(
    "gpsfleet_gateway_frames_in_total", "Frames received from terminals", ["protocol", "transport"]
)
REPLIES_OUT = Counter(
    "gpsfleet_gateway_replies_out_total", "Replies sent to terminals", ["protocol", "transport"]
)
DECODE_ERRORS = Counter(
    "gpsfleet_gateway_decode_errors_total", "Frames that could not be decoded", ["protocol", "kind"]
)
GARBAGE_BYTES = Counter(
    "gpsfleet_gateway_garbage_bytes_total", "Bytes skipped by framers while resyncing", ["protocol"]
)
UNKNOWN_TERMINALS = Counter(
    "gpsfleet_gateway_unknown_terminal_frames_total",
    "Frames from terminals not in the registry, by outcome (refused, quarantined, disabled, anonymous)",
    ["protocol", "outcome"],
)
FLAGGED_FIXES = Counter(
    "gpsfleet_gateway_flagged_fixes_total", "Fixes stored with a plausibility flag", ["flag"]
)
CONNECTIONS = Gauge(
    "gpsfleet_gateway_connections", "Open connections (or serial/MQTT sessions)", ["protocol", "transport"]
)
CONNECTIONS_REFUSED = Counter(
    "gpsfleet_gateway_connections_refused_total", "Connections refused or closed by the gateway", ["reason"]
)
BATCH_ROWS = Histogram(
    "gpsfleet_gateway_batch_rows",
    "Rows per committed batch",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
)
BATCH_SECONDS = Histogram(
    "gpsfleet_gateway_batch_seconds",
    "Time to commit one batch (database or spool)",
    ["target"],
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
)
ROWS_STORED = Counter(
    "gpsfleet_gateway_rows_total", "Rows made durable, by target (database, spool, drained)", ["target"]
)
DUPLICATES = Counter("gpsfleet_gateway_duplicate_positions_total", "Positions already stored (no-ops)")
WRITE_FAILURES = Counter("gpsfleet_gateway_write_failures_total", "Batches the database refused")
QUEUE_FRAMES = Gauge("gpsfleet_gateway_queue_frames", "Frames waiting for the writer")
BACKPRESSURE = Gauge("gpsfleet_gateway_backpressure", "1 while reading is paused (queue or spool full)")
SPOOL_BYTES = Gauge("gpsfleet_gateway_spool_bytes", "Bytes in the on-disk spool")
SPOOL_RECORDS = Gauge("gpsfleet_gateway_spool_records", "Batches in the on-disk spool waiting to drain")
SPOOL_CORRUPT = Counter(
    "gpsfleet_gateway_spool_corrupt_records_total", "Spool records whose CRC or length did not match"
)
SERIAL_PORT_UP = Gauge("gpsfleet_gateway_serial_port_up", "1 while the serial port is open", ["device"])
SERIAL_REOPENS = Counter("gpsfleet_gateway_serial_reopens_total", "Serial port (re)open attempts", ["device"])
MQTT_CONNECTED = Gauge("gpsfleet_gateway_mqtt_connected", "1 while connected to the MQTT broker")
MQTT_DEAD_LETTERS = Counter(
    "gpsfleet_gateway_mqtt_dead_letters_total", "MQTT payloads put on the dead-letter table", ["kind"]
)
