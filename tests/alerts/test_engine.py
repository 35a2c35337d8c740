"""The alert engine on a real database (both backends): health, alerts and repair tickets."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from alerts.engine import AlertEngine
from alerts.health import get_health
from alerts.tickets import CLEARED_TO_VERIFY, DuplicateTicket, TicketError, history, open_by_hand, transition
from store.tables.alerts import alerts, tickets
from tests.alerts.support import batch, build_fleet, event, fast_settings, open_db, position


def _count(engine: AlertEngine, table, **where) -> int:  # type: ignore[no-untyped-def]
    query = select(func.count()).select_from(table)
    for name, value in where.items():
        query = query.where(table.c[name] == value)
    with engine.database.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def _tickets(engine: AlertEngine, **where) -> list[dict]:  # type: ignore[no-untyped-def]
    query = select(tickets).order_by(tickets.c.id)
    for name, value in where.items():
        query = query.where(tickets.c[name] == value)
    with engine.database.engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


@pytest.fixture
def setup(db_url: str):  # type: ignore[no-untyped-def]
    database = open_db(db_url)
    fleet = build_fleet(database)
    engine = AlertEngine(fast_settings(db_url), database)
    yield engine, fleet
    database.dispose()


def test_antenna_cut_opens_a_ticket_with_the_coverage_of_the_day(setup) -> None:  # type: ignore[no-untyped-def]
    engine, fleet = setup
    now = datetime.now(UTC)
    engine.process(
        [
            (
                "batch",
                batch(
                    position(fleet.in_warranty, now, alarms=["gnss_antenna_cut"]),
                    position(fleet.out_of_warranty, now, alarms=["gnss_antenna_cut"]),
                ),
            )
        ]
    )
    rows = {t["terminal_id"]: t for t in _tickets(engine)}
    assert set(rows) == {fleet.in_warranty, fleet.out_of_warranty}
    inside, outside = rows[fleet.in_warranty], rows[fleet.out_of_warranty]
    assert inside["in_warranty"] is True and outside["in_warranty"] is False
    assert inside["warranty_until"] > now.date() > outside["warranty_until"]
    assert inside["purchased_on"] == (now - timedelta(days=30)).date()  # the repair order's purchase date
    assert outside["purchased_on"] == (now - timedelta(days=800)).date()
    assert inside["fault"] == "gnss_antenna_cut" and inside["state"] == "open" and inside["source"] == "auto"
    assert inside["vehicle_plate"] == "A10001" and inside["sim_iccid"] == fleet.iccids[fleet.in_warranty]
    assert (inside["customer_name"], inside["contact"], inside["phone"]) == (
        "Acme Logistics",
        "Li Wei",
        "+86 10 5555 0101",
    )
    assert inside["priority"] == "normal" and inside["response_due"] == inside["created_at"] + timedelta(
        hours=24
    )
    assert inside["evidence"]["alert_id"] == inside["alert_id"]
    with engine.database.engine.connect() as conn:
        alert = conn.execute(select(alerts).where(alerts.c.id == inside["alert_id"])).mappings().one()
    assert (
        alert["state"] == "raised"
        and alert["ticket_id"] == inside["id"]
        and alert["customer_id"] == fleet.customer_id
    )


def test_a_retransmitted_alarm_or_a_replay_opens_no_second_ticket(setup) -> None:  # type: ignore[no-untyped-def]
    engine, fleet = setup
    now = datetime.now(UTC)
    frame = position(fleet.in_warranty, now, alarms=["power_cut"])
    engine.process([("batch", batch(frame)), ("batch", batch(frame))])
    engine.process([("batch", batch(frame))])  # replayed from the spool later
    retransmitted = position(
        fleet.in_warranty, now + timedelta(seconds=20), alarms=["power_cut"], fix_time=now
    )
    engine.process([("batch", batch(retransmitted))])  # the device sent it again (no ack seen)
    assert _count(engine, tickets) == 1 and _count(engine, alerts) == 1
    assert _tickets(engine)[0]["priority"] == "high"


def test_no_ticket_for_a_healthy_terminal_or_for_overspeed(setup) -> None:  # type: ignore[no-untyped-def]
    engine, fleet = setup
    now = datetime.now(UTC)
    rows = [
        position(
            fleet.healthy,
            now + timedelta(seconds=i),
            lat=31.23 + i / 1000,
            power_v=12.6,
            gsm_signal=80,
            battery_level=90,
            alarms=["overspeed", "harsh_braking"] if i == 3 else [],
        )
        for i in range(6)
    ]
    engine.process([("batch", batch(*rows))])
    engine.tick(now + timedelta(seconds=2))
    assert _count(engine, tickets) == 0 and _count(engine, alerts) == 0
    with engine.database.engine.connect() as conn:
        h = get_health(conn, fleet.healthy)
    assert h is not None and (h.connectivity, h.gnss, h.power, h.battery, h.gsm) == (
        "online",
        "fix",
        "on",
        "ok",
        "ok",
    )


def test_silence_raises_offline_with_a_ticket_and_a_report_clears_it(setup) -> None:  # type: ignore[no-untyped-def]
    engine, fleet = setup
    t0 = datetime.now(UTC)
    engine.process([("batch", batch(position(fleet.in_warranty, t0)))])
    engine.tick(t0 + timedelta(seconds=2))
    assert _count(engine, alerts) == 0
    engine.tick(t0 + timedelta(seconds=4))  # threshold 3 s
    [ticket] = _tickets(engine)
    assert ticket["fault"] == "offline" and ticket["priority"] == "high"
    heard = t0.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert ticket["symptoms"].startswith(f"offline: last heard from {heard}, silent for 4 s; first seen ")
    with engine.database.engine.connect() as conn:
        h = get_health(conn, fleet.in_warranty)
    assert h is not None and h.connectivity == "offline" and h.connectivity_since == t0 + timedelta(seconds=4)
    back = t0 + timedelta(seconds=10)
    engine.process([("batch", batch(event(fleet.in_warranty, back)))])
    [ticket] = _tickets(engine)
    assert ticket["verification"] == CLEARED_TO_VERIFY and ticket["fault_cleared_at"] == back
    assert _count(engine, alerts, state="cleared") == 1
    with engine.database.engine.connect() as conn:
        assert [e["action"] for e in history(conn, ticket["id"])] == ["created", "fault_cleared"]


def test_a_fault_back_within_the_window_reopens_its_ticket(setup) -> None:  # type: ignore[no-untyped-def]
    engine, fleet = setup
    t0 = datetime.now(UTC)
    device = fleet.in_warranty
    engine.process([("batch", batch(position(device, t0, alarms=["gnss_antenna_cut"])))])
    engine.process(
        [("batch", batch(position(device, t0 + timedelta(seconds=5))))]
    )  # cleared (clear_s 0 in tests)
    engine.process(
        [("batch", batch(position(device, t0 + timedelta(seconds=9), alarms=["gnss_antenna_cut"])))]
    )
    [ticket] = _tickets(engine)
    assert ticket["verification"] is None and ticket["occurrences"] == 2 and _count(engine, alerts) == 2
    engine.process([("batch", batch(position(device, t0 + timedelta(seconds=12))))])
    with engine.database.engine.begin() as conn:
        transition(
            conn,
            ticket["id"],
            "closed",
            actor="noc-anna",
            at=t0 + timedelta(seconds=13),
            comment="checked remotely",
        )
    engine.process(
        [("batch", batch(position(device, t0 + timedelta(seconds=20), alarms=["gnss_antenna_cut"])))]
    )
    [ticket] = _tickets(engine)
    assert ticket["state"] == "open" and ticket["reopened"] == 1
    with engine.database.engine.connect() as conn:
        actions = [e["action"] for e in history(conn, ticket["id"])]
    assert actions == [
        "created",
        "fault_cleared",
        "fault_returned",
        "fault_cleared",
        "transition",
        "reopened",
    ]


def test_sustain_time_is_kept_by_the_timer(db_url: str) -> None:
    database = open_db(db_url)
    fleet = build_fleet(database)
    engine = AlertEngine(fast_settings(db_url, rules={"no_fix": {"sustain_s": 60}}), database)
    t0 = datetime.now(UTC)
    engine.process([("batch", batch(position(fleet.in_warranty, t0, valid=False)))])
    for seconds in (1, 2):  # still reporting, still no fix
        engine.process([("batch", batch(event(fleet.in_warranty, t0 + timedelta(seconds=seconds))))])
    engine.tick(t0 + timedelta(seconds=2.5))
    assert _count(engine, alerts) == 0
    engine.process([("batch", batch(event(fleet.in_warranty, t0 + timedelta(seconds=59))))])
    engine.tick(t0 + timedelta(seconds=60.5))
    assert _count(engine, alerts, fault="no_fix") == 1 and _count(engine, tickets, fault="no_fix") == 1
    database.dispose()


def test_health_survives_a_restart(setup, db_url: str) -> None:  # type: ignore[no-untyped-def]
    engine, fleet = setup
    now = datetime.now(UTC)
    engine.process(
        [
            (
                "batch",
                batch(
                    position(
                        fleet.healthy, now, power_v=12.1, alarms=["low_battery"], iccid="8986000000000000000"
                    )
                ),
            )
        ]
    )
    engine.database.dispose()
    database = open_db(db_url)
    restarted = AlertEngine(fast_settings(db_url), database)
    with database.engine.connect() as conn:
        h = get_health(conn, fleet.healthy)
    assert h is not None and h.power == "on" and h.power_since == now and h.battery == "low"
    assert h.sim == "mismatch" and h.iccid_registered == fleet.iccids[fleet.healthy]
    assert h.conditions["sim_mismatch"].raised
    restarted.process(
        [
            (
                "batch",
                batch(position(fleet.healthy, now + timedelta(seconds=1), iccid=fleet.iccids[fleet.healthy])),
            )
        ]
    )
    with database.engine.connect() as conn:
        h = get_health(conn, fleet.healthy)
    assert h is not None and h.sim == "match" and "sim_mismatch" not in h.conditions
    assert _count(restarted, alerts, fault="sim_mismatch", state="cleared") == 1
    database.dispose()


def test_decode_errors_raise_a_data_quality_alert_without_a_ticket(setup) -> None:  # type: ignore[no-untyped-def]
    engine, fleet = setup
    now = datetime.now(UTC)
    items = [
        ("decode_error", fleet.healthy, "gt06", "checksum" if i % 2 else "malformed", now) for i in range(61)
    ]
    engine.process(items)
    with engine.database.engine.connect() as conn:
        h = get_health(conn, fleet.healthy)
    assert (
        h is not None and h.data_quality == "poor" and h.checksum_errors_1h == 30 and h.decode_errors_1h == 31
    )
    assert _count(engine, alerts, fault="data_errors") == 1 and _count(engine, tickets) == 0
    engine.tick(now + timedelta(hours=1, minutes=1))  # the errors aged out ...
    assert _count(engine, alerts, fault="data_errors", state="cleared") == 0
    engine.tick(now + timedelta(hours=1, minutes=11))  # ... and stayed out for the clear time
    assert _count(engine, alerts, fault="data_errors", state="cleared") == 1


def test_ticket_workflow_by_hand_with_history_and_illegal_moves(setup) -> None:  # type: ignore[no-untyped-def]
    engine, fleet = setup
    now = datetime.now(UTC)
    with engine.database.engine.begin() as conn:
        ticket = open_by_hand(
            conn,
            engine.settings,
            terminal_id=fleet.out_of_warranty,
            actor="clerk-bo",
            at=now,
            symptoms="no position since Monday",
            priority="urgent",
        )
        assert (
            ticket["in_warranty"] is False
            and ticket["vehicle_plate"] == "A10002"
            and ticket["fault"] == "reported"
        )
        assert ticket["response_due"] == now + timedelta(hours=2)
        with pytest.raises(DuplicateTicket):
            open_by_hand(conn, engine.settings, terminal_id=fleet.out_of_warranty, actor="clerk-bo", at=now)
    with engine.database.engine.begin() as conn:
        with pytest.raises(
            TicketError, match="cannot go from open to resolved; allowed: approved, cancelled"
        ):
            transition(conn, ticket["id"], "resolved", actor="tech", at=now)
        for state in ("approved", "dispatched", "in_progress", "resolved", "closed"):
            ticket = transition(conn, ticket["id"], state, actor="mgr-zhou", at=now + timedelta(minutes=5))
        assert ticket["responded_at"] == now + timedelta(minutes=5)
        with pytest.raises(TicketError, match="closed is final"):
            transition(conn, ticket["id"], "open", actor="mgr-zhou", at=now)
        steps = history(conn, ticket["id"])
    assert [(s["from_state"], s["to_state"]) for s in steps][-1] == ("resolved", "closed")
    assert {s["actor"] for s in steps} == {"clerk-bo", "mgr-zhou"}


def test_two_engines_racing_on_postgres_open_one_ticket(pg_url: str) -> None:
    database = open_db(pg_url)
    fleet = build_fleet(database)
    engines = [AlertEngine(fast_settings(pg_url), open_db(pg_url)) for _ in range(2)]
    now = datetime.now(UTC)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(engine: AlertEngine, offset: int) -> None:
        try:
            barrier.wait()
            for i in range(5):
                at = now + timedelta(seconds=i)
                engine.process(
                    [
                        (
                            "batch",
                            batch(
                                position(fleet.in_warranty, at, alarms=["gnss_antenna_cut"]),
                                position(fleet.out_of_warranty, at, alarms=["power_cut"]),
                            ),
                        )
                    ]
                )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(e, n)) for n, e in enumerate(engines)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert _count(engines[0], tickets) == 2 and _count(engines[0], alerts) == 2
    # leadership: one timer across processes, taken over when the leader goes
    assert [e.leadership.check() for e in engines] == [True, False]
    # the leader's process dies: its server session goes, and with it the lock
    with engines[1].database.engine.connect() as conn:
        # with a timeout, pg_terminate_backend waits until the session (and its lock) is gone
        conn.execute(
            text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": engines[0].leadership.backend_pid}
        )
    assert engines[1].leadership.check() is True
    assert engines[0].leadership.check() is False  # it notices, and does not run the timer
    for e in engines:
        e.leadership.release()
        e.database.dispose()
    database.dispose()


def test_hooks_never_block_and_say_when_the_queue_is_full(sqlite_url: str, caplog) -> None:  # type: ignore[no-untyped-def]
    database = open_db(sqlite_url)
    engine = AlertEngine(fast_settings(sqlite_url, queue_max=2), database)
    now = datetime.now(UTC)
    for _ in range(5):
        engine.after_commit(batch(position("1", now)))
    assert engine.queue_full and engine.stats.dropped_batches == 3
    assert "alert engine queue full" in caplog.text


def test_the_worker_runs_hooks_and_timer_in_the_background(setup) -> None:  # type: ignore[no-untyped-def]
    engine, fleet = setup

    async def scenario() -> None:
        await engine.start()
        engine.connection(fleet.in_warranty, "gt06", True, datetime.now(UTC))
        engine.after_commit(batch(position(fleet.in_warranty, datetime.now(UTC))))
        for _ in range(100):  # offline after 3 s of silence, within the timeout plus 5 s
            await asyncio.sleep(0.1)
            if _count(engine, tickets, fault="offline"):
                break
        await engine.stop()

    asyncio.run(scenario())
    assert _count(engine, tickets, fault="offline") == 1 and engine.stats.ticks > 0


def test_a_process_sees_what_another_process_wrote_to_a_terminals_health(db_url: str) -> None:
    database = open_db(db_url)
    fleet = build_fleet(database)
    receiving, leader = (AlertEngine(fast_settings(db_url), open_db(db_url)) for _ in range(2))
    t0 = datetime.now(UTC)
    receiving.process([("batch", batch(position(fleet.in_warranty, t0)))])  # cached in "receiving"
    leader.tick(t0 + timedelta(seconds=4))  # the other process's timer: offline
    assert _count(leader, alerts, fault="offline", state="raised") == 1
    receiving.process([("batch", batch(position(fleet.in_warranty, t0 + timedelta(seconds=5))))])
    assert _count(leader, alerts, fault="offline", state="cleared") == 1
    with database.engine.connect() as conn:
        h = get_health(conn, fleet.in_warranty)
    assert h is not None and h.connectivity == "online" and "offline" not in h.conditions
    for engine in (receiving, leader):
        engine.database.dispose()
    database.dispose()


def test_batches_with_alarms_jump_a_backlog_of_routine_positions(sqlite_url: str) -> None:
    engine = AlertEngine(fast_settings(sqlite_url), open_db(sqlite_url))
    now = datetime.now(UTC)
    for i in range(300):
        engine.after_commit(batch(position("1", now + timedelta(seconds=i))))
    engine.after_commit(batch(position("2", now, alarms=["gnss_antenna_cut"])))
    first = engine._take(0)
    assert [item[1].positions[0].terminal_id for item in first] == ["2"]
    second = engine._take(0)
    assert len(second) == 200 and engine.queue_depth == 100  # the rest in arrival order
    assert second[0][1].positions[0].fix_time == now
