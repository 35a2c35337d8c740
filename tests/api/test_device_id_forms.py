"""A JT/T 808 terminal typed as its 11-digit phone number (how it is written on the SIM and
in the terminal's settings) is the registry's 12-digit 013800138000 everywhere: its track and
exports, latest position, health, alerts and tickets, not an empty answer for a terminal that
reports all day; a ticket opened under the short form is the terminal's one open ticket."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from alerts.engine import AlertEngine
from fleet import service
from store.db import Database, open_database
from store.ingest import PositionWriter
from tests.alerts.support import batch, fast_settings, position
from tests.api.support import api_client, bearer

SHORT, STORED = "13800138000", "013800138000"


@pytest.fixture
def reporting(db_url: str) -> Iterator[tuple[Database, TestClient]]:
    database = open_database(db_url)
    now = datetime.now(UTC)
    with database.engine.begin() as conn:
        service.create_terminal_model(conn, name="JT-1", protocol="jt808", warranty_months=12)
        customer = service.create_customer(conn, name="Pearl River Couriers")
        service.create_vehicle(conn, plate="粤A10001", customer_id=customer["id"])
        service.create_terminal(conn, device_id=SHORT, model="JT-1")
        service.install(conn, device_id=SHORT, plate="粤A10001", at=now - timedelta(days=3))
    fixes = batch(
        *(position(STORED, now - timedelta(minutes=10 - i), lat=23.1 + i / 1000) for i in range(5)),
        position(STORED, now, alarms=["gnss_antenna_cut"]),
    )
    PositionWriter(database).write(fixes)
    settings = fast_settings(db_url)
    AlertEngine(settings, database).process([("batch", fixes)])
    with api_client(database, settings) as client:
        yield database, client
    database.dispose()


def test_the_short_form_finds_what_the_terminal_reported(reporting: tuple[Database, TestClient]) -> None:
    database, client = reporting
    noc = bearer(database, "noc")
    track = client.get(f"/api/v1/terminals/{SHORT}/track", headers=noc).json()
    assert (track["terminal_id"], track["count"]) == (STORED, 6)
    gpx = client.get(f"/api/v1/terminals/{SHORT}/track.gpx", headers=noc)
    assert gpx.status_code == 200 and gpx.text.count("<trkpt") == 6
    assert STORED in gpx.headers["content-disposition"]
    latest = client.get("/api/v1/positions/latest", params={"terminal_id": SHORT}, headers=noc).json()
    assert [p["terminal_id"] for p in latest["positions"]] == [STORED]
    health = client.get(f"/api/v1/terminals/{SHORT}/health", headers=noc).json()
    assert health["connectivity"] == "online" and [a["fault"] for a in health["open_alerts"]] == [
        "gnss_antenna_cut"
    ]
    alerts = client.get("/api/v1/alerts", params={"terminal_id": SHORT}, headers=noc).json()
    tickets = client.get("/api/v1/tickets", params={"terminal_id": SHORT}, headers=noc).json()
    assert alerts["total"] == 1 and tickets["total"] == 1


def test_a_ticket_opened_under_the_short_form_is_the_terminals(
    reporting: tuple[Database, TestClient],
) -> None:
    database, client = reporting
    clerk = bearer(database, "clerk")
    opened = client.post(
        "/api/v1/tickets", json={"terminal_id": SHORT, "symptoms": "no sound"}, headers=clerk
    )
    assert opened.status_code == 201 and opened.json()["terminal_id"] == STORED
    again = client.post("/api/v1/tickets", json={"terminal_id": STORED}, headers=clerk)
    assert again.status_code == 409  # the same terminal and fault: one open ticket
    listed = client.get("/api/v1/tickets", params={"terminal_id": STORED, "source": "manual"}, headers=clerk)
    assert [t["id"] for t in listed.json()["items"]] == [opened.json()["id"]]


def test_a_mistyped_terminal_is_named_not_answered_with_an_empty_track(
    reporting: tuple[Database, TestClient],
) -> None:
    database, client = reporting
    noc = bearer(database, "noc")
    for path in ("track", "track.csv"):
        typo = client.get(f"/api/v1/terminals/13800183000/{path}", headers=noc)
        assert typo.status_code == 404 and typo.json()["detail"] == "terminal 13800183000 not found"
    with database.engine.begin() as conn:  # registered, never heard from: an empty track is the truth
        service.create_terminal(conn, device_id="13800138001", model="JT-1")
    quiet = client.get("/api/v1/terminals/13800138001/track", headers=noc)
    assert quiet.status_code == 200 and quiet.json()["count"] == 0
