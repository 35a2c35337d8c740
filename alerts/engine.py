"""The alert engine: the gateway's after-commit hooks feed a bounded queue; one worker thread
updates health, steps the fault rules, raises and clears alerts and opens repair tickets, and
(in the leader process only) runs the time-based rules on a timer."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql.elements import ColumnElement

from alerts import alerts as alert_store
from alerts import tickets as ticket_store
from alerts.health import (
    DISCONNECTING_PROTOCOLS,
    TerminalHealth,
    count_error,
    fingerprint,
    load_health,
    load_versions,
    looks_healthy,
    new_health,
    observe_connection,
    observe_event,
    observe_position,
    refresh_error_rate,
    refresh_sim,
    save_health,
    save_values,
    saving,
)
from alerts.leader import Leadership
from alerts.notify import Notifier
from alerts.registry import RegistryCache, RegistryFacts
from alerts.rules import (
    CONDITIONS,
    REPORT_DRIVEN,
    SEVERITY_PRIORITY,
    Action,
    Condition,
    Fault,
    Rule,
    RuleBook,
    step,
)
from core.settings import Settings
from core.vocabulary import Attr
from store.db import Database
from store.records import EventRow, IngestBatch, PositionRow
from store.tables.alerts import terminal_health

log = logging.getLogger(__name__)

MAX_ITEMS_PER_TRANSACTION = 200
MAX_ROWS_PER_TRANSACTION = 5000  # short transactions: an alarm batch never waits long behind one
BACKLOG_MAX = 5000  # items the worker holds to look for alarm batches among them
HEALTH_CACHE_MAX = 200_000
TICK_CHUNK = 500


@dataclass(slots=True)
class EngineStats:
    batches: int = 0
    rows: int = 0
    dropped_batches: int = 0
    dropped_rows: int = 0
    failures: int = 0
    alerts_raised: int = 0
    alerts_cleared: int = 0
    tickets_opened: int = 0
    ticks: int = 0
    transactions: int = 0
    busy_s: float = 0.0  # time spent evaluating and writing
    leader: bool = False


@dataclass(slots=True)
class _Change:
    terminal_id: str
    fault: str
    action: str
    at: datetime
    rule: Rule
    first_seen: datetime
    evidence: dict[str, Any] = field(default_factory=dict)


class AlertEngine:
    """Implements ``gateway.hooks.GatewayHooks``; ``start()``/``stop()`` run its worker."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        *,
        disconnecting_protocols: Iterable[str] = (),
        notifier: Notifier | None = None,
    ) -> None:
        self.settings = settings
        self.database = database
        self.rulebook = RuleBook(settings.alerts)
        self.disconnecting = DISCONNECTING_PROTOCOLS | set(disconnecting_protocols)
        self.notifier = notifier if notifier is not None else Notifier(settings.notifications, database)
        self.stats = EngineStats()
        self.leadership = Leadership(database)
        self._queue: queue.Queue[tuple[Any, ...]] = queue.Queue(maxsize=settings.alerts.queue_max)
        self._backlog: collections.deque[tuple[Any, ...]] = collections.deque()  # taken, not yet processed
        self._registry = RegistryCache()
        self._cache: dict[str, TerminalHealth] = {}  # health as this process last wrote or read it
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # one transaction at a time in this process (SQLite has one writer)
        self._last_full_warning = 0.0
        shortest_offline_s = self.rulebook.min_offline_s()
        # last seen is written when it moved on this far: the timer judges silence from it
        self._last_seen_resolution_s = min(15.0, (shortest_offline_s or 150.0) / 10.0)

    # ------------------------------------------------------------------ GatewayHooks (never block)

    def after_commit(self, batch: IngestBatch) -> None:
        carries_alarm = any(row.alarms for row in batch.positions) or any(row.alarms for row in batch.events)
        self._offer(("batch", batch, carries_alarm), len(batch))

    def decode_error(self, device_id: str | None, protocol: str, kind: str, at: datetime) -> None:
        if device_id:  # an error of an unknown sender has no terminal to judge
            self._offer(("decode_error", device_id, protocol, kind, at), 1)

    def connection(self, device_id: str, protocol: str, connected: bool, at: datetime) -> None:
        self._offer(("connection", device_id, protocol, connected, at), 1)

    def _offer(self, item: tuple[Any, ...], rows: int) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.stats.dropped_batches += 1
            self.stats.dropped_rows += rows
            now = time.monotonic()
            if now - self._last_full_warning > 10:
                self._last_full_warning = now
                log.warning(
                    "alert engine queue full (%d items): %d batches (%d rows) not evaluated so far; "
                    "the timer still judges connectivity from stored health",
                    self._queue.maxsize,
                    self.stats.dropped_batches,
                    self.stats.dropped_rows,
                )

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize() + len(self._backlog)

    @property
    def queue_full(self) -> bool:
        return self._queue.full()

    def health_check(self) -> Any:
        """For /health: the worker runs and its queue has room (the runtime registers this)."""
        from api.health import Check  # the API's type; imported here so alerts does not need the API

        alive = self._thread is not None and self._thread.is_alive()
        detail = (
            f"worker {'running' if alive else 'stopped'}, queue {self.queue_depth}/{self._queue.maxsize}, "
            f"{self.stats.dropped_batches} batches dropped, leader={self.stats.leader}, "
            f"notifications sent {self.notifier.stats.sent} failed {self.notifier.stats.failed} "
            f"dropped {self.notifier.stats.dropped}"
        )
        return Check("alerts", alive and not self.queue_full, detail)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self.notifier.start()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="alert-engine", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Drain what is queued, stop the timer, give up leadership, flush notifications."""
        self._stopping.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 60)
            self._thread = None
        self.leadership.release()
        self.stats.leader = False
        await asyncio.to_thread(self.notifier.stop)

    def _run(self) -> None:
        every = self.settings.alerts.evaluate_every_s
        next_tick = time.monotonic()
        while True:
            timeout = max(0.0, min(every, next_tick - time.monotonic()))
            items = self._take(timeout)
            if items:
                self._with_retry(self.process, items)
            if self._stopping.is_set() and self._queue.empty() and not self._backlog:
                return
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + every
                self.stats.leader = self.leadership.check()
                if self.stats.leader:
                    self._with_retry(self.tick, datetime.now(UTC))

    def _take(self, timeout: float) -> list[tuple[Any, ...]]:
        """The next items to process: batches carrying alarms first (a backlog of routine
        positions must not delay a fault's ticket), else the oldest, at most a transaction's worth."""
        backlog = self._backlog
        if not backlog:
            try:
                backlog.append(self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait())
            except queue.Empty:
                return []
        while len(backlog) < BACKLOG_MAX:
            try:
                backlog.append(self._queue.get_nowait())
            except queue.Empty:
                break
        urgent = [item for item in backlog if item[0] == "batch" and item[2]]
        if urgent and len(urgent) < len(backlog):
            self._backlog = collections.deque(
                item for item in backlog if not (item[0] == "batch" and item[2])
            )
            return urgent
        items: list[tuple[Any, ...]] = []
        rows = 0
        while backlog and len(items) < MAX_ITEMS_PER_TRANSACTION and rows < MAX_ROWS_PER_TRANSACTION:
            item = backlog.popleft()
            items.append(item)
            rows += len(item[1]) if item[0] == "batch" else 1
        return items

    def _with_retry(self, work: Any, argument: Any) -> None:
        delay = 0.5
        while True:
            try:
                work(argument)
                return
            except OperationalError as exc:  # the database is away: keep the work and wait
                self.stats.failures += 1
                log.warning(
                    "alert engine: database unavailable (%s); retrying in %.1fs", _first_line(exc), delay
                )
                if self._stopping.is_set() and delay > 4:
                    log.error(
                        "alert engine: giving up on %d queued items at shutdown",
                        len(argument) if isinstance(argument, list) else 1,
                    )
                    return
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
            except Exception:
                self.stats.failures += 1
                log.exception("alert engine: evaluation failed; these items are skipped")
                return

    def drain(self) -> None:
        """Process everything queued now, in the caller's thread (tests, benchmarks)."""
        while items := self._take(0):
            self.process(items)

    # ------------------------------------------------------------------ per report

    def process(self, items: list[tuple[Any, ...]]) -> None:
        """Apply hook calls (in order) in one transaction, then send notifications."""
        started = time.perf_counter()
        try:
            self._process(items)
        finally:
            self.stats.transactions += 1
            self.stats.busy_s += time.perf_counter() - started

    def _process(self, items: list[tuple[Any, ...]]) -> None:
        terminal_ids = {row.terminal_id for kind, *rest in items if kind == "batch" for row in _rows(rest[0])}
        terminal_ids |= {rest[0] for kind, *rest in items if kind != "batch"}
        if not terminal_ids:
            return
        changes: list[_Change] = []
        with self._lock, self._cached_health(terminal_ids) as healths, self.database.engine.begin() as conn:
            facts = self._facts(conn, terminal_ids)
            healths.update(self._load(conn, terminal_ids))
            before = {tid: fingerprint(h) for tid, h in healths.items()}
            for terminal_id in terminal_ids - set(healths):
                healths[terminal_id] = new_health(terminal_id, datetime.now(UTC))
            for tid, h in healths.items():
                self._apply_registry(h, facts.get(tid))
            # Of a run of plain positions (valid, unflagged, no alarm) only the last one needs
            # looking at: what they carry besides (voltages, signal) only counts when sustained.
            plain: dict[str, PositionRow] = {}

            def observe_plain(terminal_id: str) -> None:
                row = plain.pop(terminal_id, None)
                if row is not None:
                    self._observe_row(healths[terminal_id], row, changes)

            for kind, *rest in items:
                if kind == "batch":
                    self.stats.batches += 1
                    for row in sorted(_rows(rest[0]), key=lambda r: r.received_at):
                        self.stats.rows += 1
                        if isinstance(row, PositionRow) and _is_plain(row):
                            plain[row.terminal_id] = row
                        else:
                            observe_plain(row.terminal_id)
                            self._observe_row(healths[row.terminal_id], row, changes)
                elif kind == "connection":
                    device_id, protocol, connected, at = rest
                    observe_plain(device_id)
                    h = healths[device_id]
                    observe_connection(h, protocol, connected, at)
                    self._evaluate(h, at, [Fault.OFFLINE], changes, fresh=True)
                else:
                    device_id, protocol, error_kind, at = rest
                    observe_plain(device_id)
                    h = healths[device_id]
                    h.protocol = h.protocol or protocol
                    count_error(h, error_kind, at, self._rules(h))
                    self._evaluate(h, at, [Fault.DATA_ERRORS], changes, fresh=True)
            for terminal_id in list(plain):
                observe_plain(terminal_id)
            events = self._apply(conn, changes, facts)
            to_save: dict[str | None, list[TerminalHealth]] = {"row": [], "values": [], None: []}
            for tid, h in healths.items():
                to_save[saving(h, before.get(tid), self._last_seen_resolution_s)].append(h)
            save_health(conn, to_save["row"])
            save_values(conn, to_save["values"])
        self._notify(events)

    def _load(self, conn: Connection, terminal_ids: Iterable[str]) -> dict[str, TerminalHealth]:
        """Lock the rows; use this process's copy of each unless another process wrote it since."""
        versions = load_versions(conn, terminal_ids, lock=True)
        cache = self._cache
        stale = [t for t, v in versions.items() if t not in cache or cache[t].updated_at != v]
        healths = {t: cache[t] for t in versions if t in cache and cache[t].updated_at == versions[t]}
        healths.update(load_health(conn, stale))
        for h in healths.values():
            h.conditions_changed = False
        return healths

    @contextlib.contextmanager
    def _cached_health(self, terminal_ids: set[str]) -> Iterator[dict[str, TerminalHealth]]:
        """The health objects of one transaction: kept for the next one when it commits,
        forgotten when it fails (they may hold what was rolled back)."""
        healths: dict[str, TerminalHealth] = {}
        try:
            yield healths
        except BaseException:
            for terminal_id in terminal_ids:
                self._cache.pop(terminal_id, None)
            raise
        if len(self._cache) > HEALTH_CACHE_MAX:
            self._cache.clear()
        self._cache.update(healths)

    def _observe_row(self, h: TerminalHealth, row: PositionRow | EventRow, changes: list[_Change]) -> None:
        previous_seen = h.last_seen
        rules = self._rules(h)
        if isinstance(row, PositionRow):
            observe_position(h, row, rules)
        else:
            observe_event(h, row, rules)
        if previous_seen is not None and row.received_at < previous_seen:
            return  # a replay of something older than what was judged already
        if looks_healthy(h):
            return  # every rule would say "no fault" and no fault state is open
        self._evaluate(h, row.received_at, [Fault.OFFLINE, *sorted(REPORT_DRIVEN)], changes, fresh=True)

    def _evaluate(
        self, h: TerminalHealth, at: datetime, faults: Iterable[str], changes: list[_Change], *, fresh: bool
    ) -> None:
        """Step each fault's state to ``at``: ``fresh`` with what the health says now, else only
        the sustain and clear clocks move (the timer, for rules only a report can change)."""
        rules = self._rules(h)
        h.disconnects_between_reports = (h.protocol or "") in self.disconnecting
        for fault in faults:
            rule = rules[fault]
            condition: Condition | None = CONDITIONS[fault](h, at, rule) if fresh else None
            previous = h.conditions.get(fault)
            timing = previous.timing if previous is not None else None
            state, action = step(previous, condition, at, rule)
            if state is None:
                if previous is not None:
                    del h.conditions[fault]
                    h.conditions_changed = True
            else:
                h.conditions[fault] = state
                h.conditions_changed |= state.timing != timing
            if fault == Fault.OFFLINE and action in (Action.RAISE, Action.CLEAR):
                h.set("connectivity", "offline" if action == Action.RAISE else "online", at)
            if action != Action.NONE:
                since = state.since if state is not None else at
                evidence = dict(state.evidence) if state is not None else {}
                changes.append(_Change(h.terminal_id, fault, action, at, rule, since, evidence))

    # ------------------------------------------------------------------ timer (leader only)

    def tick(self, now: datetime | None = None) -> None:
        """Time-based rules: silence, sustain and clear times.  Run by the leader only."""
        now = now or datetime.now(UTC)
        self.stats.ticks += 1
        shortest_offline_s = self.rulebook.min_offline_s()
        looked_at: ColumnElement[bool] = terminal_health.c.pending.is_(True)
        if shortest_offline_s is not None:
            cutoff = now - timedelta(seconds=shortest_offline_s)
            looked_at = or_(
                looked_at,
                (terminal_health.c.connectivity == "online") & (terminal_health.c.last_seen < cutoff),
            )
        with self.database.engine.connect() as conn:
            candidates = [r[0] for r in conn.execute(select(terminal_health.c.terminal_id).where(looked_at))]
        for start in range(0, len(candidates), TICK_CHUNK):
            self._tick_chunk(candidates[start : start + TICK_CHUNK], now)

    def _tick_chunk(self, terminal_ids: list[str], now: datetime) -> None:
        changes: list[_Change] = []
        with (
            self._lock,
            self._cached_health(set(terminal_ids)) as healths,
            self.database.engine.begin() as conn,
        ):
            healths.update(self._load(conn, terminal_ids))
            facts = self._facts(conn, set(healths))
            before = {tid: (fingerprint(h), h.needs_timer()) for tid, h in healths.items()}
            for h in healths.values():
                self._apply_registry(h, facts.get(h.terminal_id))
                self._evaluate(h, now, [Fault.OFFLINE], changes, fresh=True)
                refresh_error_rate(h, now, self._rules(h))
                self._evaluate(h, now, [Fault.DATA_ERRORS], changes, fresh=True)
                if h.connectivity != "offline":  # "no fix while still reporting"
                    self._evaluate(h, now, sorted(REPORT_DRIVEN), changes, fresh=False)
            events = self._apply(conn, [c for c in changes if c.action != Action.TOUCH], facts)
            # only what moved: a fleet of silent terminals is looked at every tick, not rewritten
            save_health(
                conn,
                [
                    h
                    for tid, h in healths.items()
                    if h.conditions_changed or (fingerprint(h), h.needs_timer()) != before[tid]
                ],
            )
        self._notify(events)

    # ------------------------------------------------------------------ alerts and tickets

    def _apply(
        self, conn: Connection, changes: list[_Change], facts: dict[str, RegistryFacts | None]
    ) -> list[tuple[str, dict[str, Any], int | None]]:
        events: list[tuple[str, dict[str, Any], int | None]] = []
        for change in changes:
            fact = facts.get(change.terminal_id)
            customer_id = fact.customer_id if fact else None
            if change.action == Action.RAISE:
                outcome = alert_store.raise_alert(
                    conn,
                    change.terminal_id,
                    change.rule,
                    change.at,
                    first_seen=change.first_seen,
                    evidence=change.evidence,
                    customer_id=customer_id,
                    device_fault=change.rule.ticket,
                )
                if outcome.created:
                    self.stats.alerts_raised += 1
                    events.append(("alert.raised", _alert_payload(conn, outcome.alert_id), customer_id))
                if change.rule.ticket:
                    self._ticket(conn, change, outcome.alert_id, events, customer_id)
            elif change.action == Action.RECUR:
                alert_store.recur_alert(conn, change.terminal_id, change.fault, change.at, change.evidence)
            elif change.action == Action.TOUCH:
                alert_store.touch_alert(conn, change.terminal_id, change.fault, change.at)
            elif change.action == Action.CLEAR:
                if alert_store.clear_alert(conn, change.terminal_id, change.fault, change.at) is not None:
                    self.stats.alerts_cleared += 1
                ticket_store.fault_cleared(conn, change.terminal_id, change.fault, change.at)
        return events

    def _ticket(
        self,
        conn: Connection,
        change: _Change,
        alert_id: int,
        events: list[tuple[str, dict[str, Any], int | None]],
        customer_id: int | None,
    ) -> None:
        outcome = ticket_store.open_for_alert(
            conn,
            self.settings,
            terminal_id=change.terminal_id,
            fault=change.fault,
            priority=SEVERITY_PRIORITY.get(change.rule.severity, "normal"),
            alert_id=alert_id,
            first_seen=change.first_seen,
            at=change.at,
            evidence={
                "fault": change.evidence,
                "first_seen": change.first_seen.isoformat(),
                "last_seen": change.at.isoformat(),
            },
        )
        if outcome is None:
            log.warning(
                "no repair ticket for %s %s: terminal not in the registry", change.terminal_id, change.fault
            )
            return
        alert_store.link_ticket(conn, alert_id, outcome.ticket_id)
        if outcome.action in ("created", "reopened"):
            if outcome.action == "created":
                self.stats.tickets_opened += 1
            row = ticket_store.get_ticket(conn, outcome.ticket_id) or {}
            events.append(
                (
                    f"ticket.{outcome.action if outcome.action == 'reopened' else 'opened'}",
                    ticket_store.public(row, change.at),
                    customer_id,
                )
            )

    def _notify(self, events: list[tuple[str, dict[str, Any], int | None]]) -> None:
        for event, payload, customer_id in events:
            self.notifier.publish(event, payload, customer_id)

    # ------------------------------------------------------------------ registry

    def _facts(self, conn: Connection, terminal_ids: Iterable[str]) -> dict[str, RegistryFacts | None]:
        return self._registry.facts(conn, terminal_ids)

    def forget_registry(self) -> None:
        """Look terminals up again (after a registry change, e.g. a SIM swap)."""
        self._registry.clear()

    def _apply_registry(self, h: TerminalHealth, facts: RegistryFacts | None) -> None:
        if facts is None:
            return
        h.model_name = facts.model_name
        if facts.iccid:
            h.iccid_registered = facts.iccid.upper().rstrip("F")
            refresh_sim(h, datetime.now(UTC))

    def _rules(self, h: TerminalHealth) -> dict[str, Rule]:
        return self.rulebook.rules(h.model_name)


def _is_plain(row: PositionRow) -> bool:
    """A position that can raise nothing by itself: valid, unflagged, no alarm, no cut power."""
    return (
        row.valid
        and not row.flags
        and not row.alarms
        and row.attributes.get(Attr.POWER_CUT) is not True
        and row.attributes.get(Attr.CHECKSUM_OK) is not False
        and row.attributes.get(Attr.GNSS_STATUS) not in ("no_fix", "off")
    )


def _rows(batch: IngestBatch) -> list[PositionRow | EventRow]:
    return [*batch.positions, *batch.events]


def _alert_payload(conn: Connection, alert_id: int) -> dict[str, Any]:
    row = alert_store.get_alert(conn, alert_id) or {}
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
