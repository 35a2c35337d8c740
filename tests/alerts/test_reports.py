"""The monthly and quarterly ticket report: periods, volumes, SLA, hours, faults per model,
and who may read it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from alerts import reports
from alerts import tickets as ticket_store
from api.app import create_app
from api.auth import create_token
from core.settings import Settings
from fleet import service
from fleet.validation import imei_for
from store.db import Database
from tests.alerts.support import MODEL, Fleet, build_fleet, open_db

NOV = datetime(2026, 11, 1, tzinfo=UTC)


def test_a_month_and_a_quarter_are_bounded_in_the_zone_asked_for() -> None:
    month = reports.parse_period("2026-11", "Asia/Shanghai")
    assert (month.label, month.start.astimezone(UTC), month.end.astimezone(UTC)) == (
        "2026-11",
        datetime(2026, 10, 31, 16, tzinfo=UTC),
        datetime(2026, 11, 30, 16, tzinfo=UTC),
    )
    quarter = reports.parse_period("2026-q4")
    assert (quarter.label, quarter.start, quarter.end) == (
        "2026-Q4",
        datetime(2026, 10, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert reports.parse_period("2027Q1").end == datetime(2027, 4, 1, tzinfo=UTC)
    assert reports.last_month(datetime(2026, 1, 15, tzinfo=UTC)).label == "2025-12"
    # 31 December 20:00 UTC is already January in Shanghai: last month is December there
    assert reports.last_month(datetime(2026, 12, 31, 20, tzinfo=UTC), "Asia/Shanghai").label == "2026-12"


def test_a_zone_is_read_whatever_its_case() -> None:
    period = reports.parse_period("2026-10", " europe/berlin")
    assert period.tz == "Europe/Berlin"
    # summer time at the start, winter time at the end
    assert (period.start.isoformat(), period.end.isoformat()) == (
        "2026-10-01T00:00:00+02:00",
        "2026-11-01T00:00:00+01:00",
    )


@pytest.mark.parametrize(
    ("period", "tz", "message"),
    [
        ("2026-13", "UTC", "not 01–12"),
        ("2026-Q5", "UTC", "neither a month"),
        ("November", "UTC", "neither a month"),
        ("2026-11", "Mars/Olympus", "unknown time zone"),
        ("2026-11", "localtime", "unknown time zone"),  # the server's setting, not a zone
    ],
)
def test_a_period_that_cannot_be_read_says_why(period: str, tz: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        reports.parse_period(period, tz)


@pytest.fixture
def desk(db_url: str) -> Any:
    database = open_db(db_url)
    fleet = build_fleet(database, now=NOV - timedelta(days=30))
    yield database, fleet, Settings(db=db_url)
    database.dispose()


def _open(database: Database, settings: Settings, terminal: str, at: datetime, **values: Any) -> int:
    with database.engine.begin() as conn:
        row = ticket_store.open_by_hand(conn, settings, terminal_id=terminal, actor="clerk", at=at, **values)
    return int(row["id"])


def _move(database: Database, ticket_id: int, *steps: tuple[str, datetime]) -> None:
    with database.engine.begin() as conn:
        for state, at in steps:
            ticket_store.transition(conn, ticket_id, state, actor="manager", at=at)


def _repair_path(start: datetime, responded_h: float, resolved_h: float) -> list[tuple[str, datetime]]:
    return [
        ("approved", start + timedelta(hours=responded_h)),
        ("dispatched", start + timedelta(hours=responded_h)),
        ("in_progress", start + timedelta(hours=responded_h + 0.5)),
        ("resolved", start + timedelta(hours=resolved_h)),
    ]


def _november(desk: Any) -> tuple[Database, Fleet, dict[str, Any]]:
    database, fleet, settings = desk
    a_at = datetime(2026, 11, 3, 10, tzinfo=UTC)
    a = _open(database, settings, fleet.in_warranty, a_at, priority="urgent", fault="gnss_antenna_cut")
    _move(database, a, *_repair_path(a_at, 1, 30))  # responded in time (2 h), repaired late (24 h)
    _open(database, settings, fleet.out_of_warranty, datetime(2026, 11, 10, tzinfo=UTC), fault="offline")
    c = _open(database, settings, fleet.healthy, datetime(2026, 11, 20, tzinfo=UTC), priority="high")
    _move(database, c, ("cancelled", datetime(2026, 11, 20, 1, tzinfo=UTC)))
    d_at = datetime(2026, 10, 30, tzinfo=UTC)  # October's, repaired in November
    d = _open(database, settings, fleet.healthy, d_at, fault="power_cut")
    _move(database, d, *_repair_path(d_at, 2, 72))
    _open(
        database,
        settings,
        fleet.in_warranty,
        datetime(2026, 11, 29, tzinfo=UTC),
        priority="low",
        fault="offline",
    )
    with database.engine.connect() as conn:
        report = reports.ticket_report(
            conn, reports.parse_period("2026-11"), datetime(2026, 11, 30, 12, tzinfo=UTC)
        )
    return database, fleet, report


def test_the_report_counts_a_months_tickets_and_what_was_finished_in_it(desk: Any) -> None:
    _, _, report = _november(desk)
    counts = report["tickets"]
    assert counts["opened"] == 4  # October's ticket is not November's
    assert counts["by_source"] == {"manual": 4}
    assert counts["by_priority"] == {"urgent": 1, "high": 1, "normal": 1, "low": 1}
    assert counts["by_fault"] == {"offline": 2, "gnss_antenna_cut": 1, "reported": 1}
    assert (counts["cancelled"], counts["reopened"]) == (1, 0)
    assert counts["resolved_in_period"] == 2  # November's urgent one and October's
    assert counts["closed_in_period"] == 0  # a cancelled ticket is not a closed one
    assert counts["open_at_end"] == 2
    assert report["warranty"] == {"in": 3, "out": 1, "unknown": 0}


def test_the_report_measures_sla_and_hours_and_leaves_cancelled_tickets_out(desk: Any) -> None:
    _, _, report = _november(desk)
    # responded: the urgent one in 1 h (met); the normal one never, 24 h long past (missed);
    # the low one not yet, due 2 December (pending)
    assert report["sla"]["response"] == {"met": 1, "missed": 1, "pending": 1, "met_percent": 50.0}
    assert report["sla"]["repair"] == {"met": 0, "missed": 2, "pending": 1, "met_percent": 0.0}
    assert report["hours"]["response"] == {"count": 1, "mean": 1.0, "median": 1.0, "p90": 1.0}
    assert report["hours"]["repair"] == {"count": 1, "mean": 30.0, "median": 30.0, "p90": 30.0}


def test_the_report_gives_faults_per_terminal_model(desk: Any) -> None:
    _, _, report = _november(desk)
    assert report["by_model"] == [
        {
            "model": "GT06N",
            "tickets": 4,
            "terminals": 3,
            "tickets_per_100_terminals": 133.3,
            "faults": {"offline": 2, "gnss_antenna_cut": 1, "reported": 1},
        }
    ]


def test_a_retired_terminal_is_not_one_of_its_models_terminals(desk: Any) -> None:
    database, _, _ = desk
    with database.engine.begin() as conn:
        spare = service.create_terminal(conn, device_id=imei_for(88), model=MODEL)
        service.retire_record(conn, "terminal", spare["id"])
    _, _, report = _november(desk)
    assert report["by_model"][0]["terminals"] == 3  # the three in vehicles, not the retired spare


def test_a_ticket_belongs_to_the_month_of_the_zone_the_report_is_for(desk: Any) -> None:
    database, fleet, settings = desk
    _open(
        database, settings, fleet.healthy, datetime(2026, 10, 31, 17, tzinfo=UTC)
    )  # 1 November, 01:00 in Shanghai
    now = datetime(2026, 12, 1, tzinfo=UTC)
    with database.engine.connect() as conn:
        utc = reports.ticket_report(conn, reports.parse_period("2026-11"), now)
        shanghai = reports.ticket_report(conn, reports.parse_period("2026-11", "Asia/Shanghai"), now)
    assert (utc["tickets"]["opened"], shanghai["tickets"]["opened"]) == (0, 1)
    assert shanghai["period"]["start"] == "2026-11-01T00:00:00+08:00"


def test_managers_and_finance_read_the_report_and_others_may_not(desk: Any) -> None:
    database, fleet, settings = desk
    _november(desk)
    tokens = {
        role: create_token(database.engine, role=role).token
        for role in ("manager", "finance", "clerk", "noc")
    }
    tokens["customer"] = create_token(database.engine, role="customer", customer_id=fleet.customer_id).token
    with TestClient(create_app(settings, database)) as client:

        def get(token: str | None, **params: str) -> Any:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return client.get("/api/v1/reports/tickets", params=params, headers=headers)

        answer = get(tokens["manager"], period="2026-Q4", tz="UTC")
        assert answer.status_code == 200
        assert (answer.json()["period"]["label"], answer.json()["tickets"]["opened"]) == ("2026-Q4", 5)
        assert get(tokens["finance"], period="2026-11").json()["tickets"]["opened"] == 4
        assert get(tokens["manager"]).json()["period"]["label"] == reports.last_month(datetime.now(UTC)).label
        assert get(None, period="2026-11").status_code == 401
        for role in ("clerk", "noc", "customer"):
            assert get(tokens[role], period="2026-11").status_code == 403
        refused = get(tokens["manager"], period="2026-11", tz="Nowhere/City")
        assert refused.status_code == 422 and "unknown time zone" in refused.text
        assert "neither a month" in get(tokens["manager"], period="Q4").text


def test_the_report_command_prints_a_table_or_the_apis_json(
    desk: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    database, _, settings = desk
    _november(desk)
    from app.cli import main

    assert main(["report", "tickets", "--db", settings.db, "--period", "2026-11"]) == 0
    table = capsys.readouterr().out
    assert "Repair tickets 2026-11" in table and "opened            4  (manual 4)" in table
    assert "GT06N                   4          3    133.3" in table
    assert main(["report", "tickets", "--db", settings.db, "--period", "2026-Q4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["period"]["label"], report["tickets"]["opened"]) == ("2026-Q4", 5)
    assert (
        main(["report", "tickets", "--db", settings.db, "--period", "2026-11", "--tz", "Mars/Olympus"]) == 2
    )
    assert "unknown time zone 'Mars/Olympus'" in capsys.readouterr().err


def test_a_repair_that_did_not_hold_is_reopened_open_and_not_repaired(desk: Any) -> None:
    database, fleet, settings = desk
    at = datetime(2026, 11, 3, 10, tzinfo=UTC)
    ticket = _open(database, settings, fleet.in_warranty, at, priority="urgent")
    _move(database, ticket, *_repair_path(at, 1, 5), ("in_progress", at + timedelta(hours=6)))
    now = datetime(2026, 11, 3, 12, tzinfo=UTC) + timedelta(hours=6)
    with database.engine.connect() as conn:
        report = reports.ticket_report(conn, reports.parse_period("2026-11"), now)
        row = ticket_store.get_ticket(conn, ticket)
    assert row is not None
    counts = report["tickets"]
    # resolved once in November, and open at its end all the same
    assert (counts["reopened"], counts["resolved_in_period"], counts["open_at_end"]) == (1, 1, 1)
    assert report["sla"]["repair"] == {"met": 0, "missed": 0, "pending": 1, "met_percent": None}
    shown = ticket_store.public(row, now)
    assert (shown["state"], shown["resolved_at"], shown["repair_minutes"]) == ("in_progress", None, None)


def test_a_ticket_closed_from_the_desk_or_cancelled_is_never_overdue(desk: Any) -> None:
    database, fleet, settings = desk
    at = datetime(2026, 11, 3, 10, tzinfo=UTC)
    verified = _open(database, settings, fleet.in_warranty, at, fault="offline")
    with database.engine.begin() as conn:
        ticket_store.fault_cleared(conn, fleet.in_warranty, "offline", at + timedelta(hours=1))
    _move(database, verified, ("closed", at + timedelta(hours=2)))
    dropped = _open(database, settings, fleet.healthy, at)
    _move(database, dropped, ("cancelled", at + timedelta(hours=1)))
    a_month_later = at + timedelta(days=30)
    with database.engine.connect() as conn:
        shown = {
            n: ticket_store.public(ticket_store.get_ticket(conn, n) or {}, a_month_later)
            for n in (verified, dropped)
        }
    assert (shown[verified]["response_overdue"], shown[verified]["repair_overdue"]) == (False, False)
    assert (shown[verified]["response_minutes"], shown[verified]["repair_minutes"]) == (120.0, 120.0)
    assert (shown[dropped]["response_overdue"], shown[dropped]["repair_overdue"]) == (False, False)


def test_a_month_that_is_over_keeps_its_figures_when_a_ticket_comes_back_later(desk: Any) -> None:
    database, fleet, settings = desk
    at = datetime(2026, 10, 20, tzinfo=UTC)
    sent_back = _open(database, settings, fleet.in_warranty, at, fault="offline")
    _move(database, sent_back, *_repair_path(at, 1, 5), ("in_progress", datetime(2026, 11, 2, tzinfo=UTC)))
    returned = _open(database, settings, fleet.healthy, at, fault="power_cut")
    _move(
        database,
        returned,
        *_repair_path(at, 1, 11 * 24 + 18),  # resolved 31 October 18:00
        ("closed", datetime(2026, 10, 31, 20, tzinfo=UTC)),
    )
    with database.engine.begin() as conn:  # the fault is back within the reopen window
        outcome = ticket_store.open_for_alert(
            conn,
            settings,
            terminal_id=fleet.healthy,
            fault="power_cut",
            priority="normal",
            alert_id=7,
            first_seen=datetime(2026, 11, 1, 2, tzinfo=UTC),
            at=datetime(2026, 11, 1, 2, tzinfo=UTC),
            evidence={},
        )
    assert outcome is not None and outcome.action == "reopened"
    with database.engine.connect() as conn:
        october = reports.ticket_report(
            conn, reports.parse_period("2026-10"), datetime(2026, 11, 5, tzinfo=UTC)
        )
        november = reports.ticket_report(
            conn, reports.parse_period("2026-11"), datetime(2026, 11, 5, tzinfo=UTC)
        )
    counts = october["tickets"]
    assert (counts["resolved_in_period"], counts["closed_in_period"], counts["open_at_end"]) == (2, 1, 0)
    counts = november["tickets"]
    assert (counts["resolved_in_period"], counts["closed_in_period"], counts["open_at_end"]) == (0, 0, 2)


def test_the_desk_lists_the_open_tickets_that_are_late(desk: Any) -> None:
    database, fleet, settings = desk
    at = datetime.now(UTC) - timedelta(hours=30)  # normal: respond in 24 h, repair in 120 h
    unanswered = _open(database, settings, fleet.in_warranty, at)
    answered_late = _open(database, settings, fleet.out_of_warranty, at)
    _move(database, answered_late, ("approved", at + timedelta(hours=25)))
    in_time = _open(database, settings, fleet.healthy, at, fault="offline")
    _move(database, in_time, ("approved", at + timedelta(hours=1)))
    fresh = _open(database, settings, fleet.healthy, datetime.now(UTC))
    dropped = _open(database, settings, fleet.in_warranty, at, fault="power_cut")
    _move(database, dropped, ("cancelled", at + timedelta(hours=1)))
    manager = create_token(database.engine, role="manager").token
    with TestClient(create_app(settings, database)) as client:

        def listed(overdue: str) -> dict[int, bool]:
            page = client.get(
                "/api/v1/tickets",
                params={"overdue": overdue},
                headers={"Authorization": f"Bearer {manager}"},
            ).json()
            return {t["id"]: t["response_overdue"] or t["repair_overdue"] for t in page["items"]}

        late, not_late = listed("true"), listed("false")
    assert set(late) == {unanswered, answered_late} and all(late.values())
    assert set(not_late) == {in_time, fresh, dropped} and not any(not_late.values())
