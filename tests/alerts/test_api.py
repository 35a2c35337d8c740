"""The health, alerts and tickets API: filters, acknowledgement, tickets by hand, transitions,
roles and customer scope."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from alerts.engine import AlertEngine
from api.app import create_app
from api.auth import create_token
from fleet import service
from fleet.validation import imei_for
from tests.alerts.support import MODEL, batch, build_fleet, fast_settings, open_db, position


@pytest.fixture
def api(db_url: str):  # type: ignore[no-untyped-def]
    database = open_db(db_url)
    fleet = build_fleet(database)
    with database.engine.begin() as conn:
        other = service.create_customer(conn, name="Other Co")
        service.create_vehicle(conn, plate="B20001", customer_id=other["id"])
        service.create_terminal(conn, device_id=imei_for(99), model=MODEL)
        service.install(conn, device_id=imei_for(99), plate="B20001")
    settings = fast_settings(db_url)
    engine = AlertEngine(settings, database)
    now = datetime.now(UTC)
    engine.process(
        [
            (
                "batch",
                batch(
                    position(fleet.in_warranty, now, alarms=["gnss_antenna_cut"]),
                    position(fleet.healthy, now, power_v=12.5),
                    position(imei_for(99), now, alarms=["power_cut"]),
                ),
            )
        ]
    )
    tokens = {
        role: create_token(database.engine, role=role, name=f"{role}-user").token
        for role in ("noc", "clerk", "manager", "technician")
    }
    tokens["customer"] = create_token(database.engine, role="customer", customer_id=fleet.customer_id).token
    client = TestClient(create_app(settings, database))
    yield client, tokens, fleet
    client.close()
    database.dispose()


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_health_summary_and_one_terminal(api) -> None:  # type: ignore[no-untyped-def]
    client, tokens, fleet = api
    summary = client.get("/api/v1/health", headers=_h(tokens["noc"])).json()
    assert summary["terminals"] == 4 and summary["online"] == 3 and summary["never_seen"] == 1
    assert (
        summary["faulty"] == 2
        and summary["per_fault"]["gnss_antenna_cut"] == 1
        and summary["per_fault"]["power_cut"] == 1
    )
    mine = client.get("/api/v1/health", headers=_h(tokens["customer"])).json()
    assert mine["terminals"] == 3 and mine["per_fault"]["power_cut"] == 0
    one = client.get(f"/api/v1/terminals/{fleet.in_warranty}/health", headers=_h(tokens["customer"])).json()
    assert one["connectivity"] == "online" and one["faults"] == ["gnss_antenna_cut"]
    assert [a["fault"] for a in one["open_alerts"]] == ["gnss_antenna_cut"]
    assert (
        client.get(f"/api/v1/terminals/{imei_for(99)}/health", headers=_h(tokens["customer"])).status_code
        == 404
    )
    assert (
        client.get(f"/api/v1/terminals/{fleet.out_of_warranty}/health", headers=_h(tokens["noc"])).json()[
            "connectivity"
        ]
        == "never_seen"
    )
    assert client.get("/api/v1/health").status_code == 401


def test_alerts_filter_and_acknowledge(api) -> None:  # type: ignore[no-untyped-def]
    client, tokens, fleet = api
    listed = client.get("/api/v1/alerts", params={"state": "raised"}, headers=_h(tokens["noc"])).json()
    assert listed["total"] == 2
    typo = client.get("/api/v1/alerts", params={"fault": "antenna_cut"}, headers=_h(tokens["noc"]))
    assert typo.status_code == 422 and "unknown fault 'antenna_cut'" in typo.json()["detail"]
    assert "gnss_antenna_cut" in typo.json()["detail"]
    # the same shape as a validation 422: detail and an errors list
    assert typo.json()["errors"] == [
        {"field": "request", "message": typo.json()["detail"], "type": "invalid"}
    ]
    high = client.get("/api/v1/tickets", params={"priority": "HIGH"}, headers=_h(tokens["noc"]))
    assert high.status_code == 422 and high.json()["errors"][0]["field"] == "query.priority"
    assert (
        client.get("/api/v1/alerts", params={"fault": "power_cut"}, headers=_h(tokens["customer"])).json()[
            "total"
        ]
        == 0
    )
    [alert] = client.get(
        "/api/v1/alerts", params={"terminal_id": fleet.in_warranty}, headers=_h(tokens["noc"])
    ).json()["items"]
    assert (alert["plate"], alert["customer_name"]) == ("A10001", "Acme Logistics")  # the vehicle it is in
    one = client.get(f"/api/v1/alerts/{alert['id']}", headers=_h(tokens["noc"])).json()
    assert one["plate"] == "A10001" and one["customer_name"] == "Acme Logistics"
    done = client.post(
        f"/api/v1/alerts/{alert['id']}/acknowledge",
        json={"comment": "customer informed"},
        headers=_h(tokens["noc"]),
    )
    assert done.status_code == 200
    assert (done.json()["state"], done.json()["acknowledged_by"], done.json()["ack_comment"]) == (
        "acknowledged",
        "noc-user",
        "customer informed",
    )
    again = client.post(f"/api/v1/alerts/{alert['id']}/acknowledge", json={}, headers=_h(tokens["noc"]))
    assert again.status_code == 409 and "only a raised alert" in again.json()["detail"]
    assert re.search(
        r"\(acknowledged by noc-user at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)$", again.json()["detail"]
    )
    assert (
        client.post(
            f"/api/v1/alerts/{alert['id']}/acknowledge", json={}, headers=_h(tokens["customer"])
        ).status_code
        == 403
    )


def test_tickets_by_hand_transitions_and_scope(api) -> None:  # type: ignore[no-untyped-def]
    client, tokens, fleet = api
    auto = client.get(
        "/api/v1/tickets", params={"state": "open", "source": "auto"}, headers=_h(tokens["noc"])
    ).json()
    assert auto["total"] == 2
    mine = client.get("/api/v1/tickets", headers=_h(tokens["customer"])).json()
    assert [t["terminal_id"] for t in mine["items"]] == [fleet.in_warranty]
    other = next(t for t in auto["items"] if t["terminal_id"] == imei_for(99))
    assert client.get(f"/api/v1/tickets/{other['id']}", headers=_h(tokens["customer"])).status_code == 404

    created = client.post(
        "/api/v1/tickets",
        json={"terminal_id": fleet.out_of_warranty, "symptoms": "screen dark", "priority": "high"},
        headers=_h(tokens["clerk"]),
    )
    assert created.status_code == 201, created.text
    ticket = created.json()
    assert (
        ticket["number"].startswith("RSO-")
        and ticket["in_warranty"] is False
        and ticket["created_by"] == "clerk-user"
    )
    assert (
        client.post(
            "/api/v1/tickets", json={"terminal_id": fleet.out_of_warranty}, headers=_h(tokens["clerk"])
        ).status_code
        == 409
    )
    assert (
        client.post("/api/v1/tickets", json={"terminal_id": "000"}, headers=_h(tokens["clerk"])).status_code
        == 404
    )

    url = f"/api/v1/tickets/{ticket['id']}/transitions"
    bad = client.post(url, json={"to": "resolved"}, headers=_h(tokens["manager"]))
    assert bad.status_code == 409 and "cannot go from open to resolved" in bad.json()["detail"]
    assert client.post(url, json={"to": "approved"}, headers=_h(tokens["technician"])).status_code == 403
    for state, role in (("approved", "manager"), ("dispatched", "manager"), ("in_progress", "technician")):
        moved = client.post(url, json={"to": state, "comment": f"{state} ok"}, headers=_h(tokens[role]))
        assert moved.status_code == 200 and moved.json()["state"] == state
    detail = client.get(f"/api/v1/tickets/{ticket['id']}", headers=_h(tokens["noc"])).json()
    assert [(h["actor"], h["to_state"]) for h in detail["history"]] == [
        ("clerk-user", "open"),
        ("manager-user", "approved"),
        ("manager-user", "dispatched"),
        ("technician-user", "in_progress"),
    ]
    assert detail["response_minutes"] is not None and detail["response_overdue"] is False


def test_a_clerk_finds_tickets_by_plate_and_by_the_number_the_caller_reads_out(api) -> None:  # type: ignore[no-untyped-def]
    client, tokens, fleet = api
    clerk = _h(tokens["clerk"])
    by_plate = client.get("/api/v1/tickets", params={"plate": "a 10001"}, headers=clerk).json()
    assert [t["terminal_id"] for t in by_plate["items"]] == [fleet.in_warranty]
    assert client.get("/api/v1/tickets", params={"plate": "Z99999"}, headers=clerk).json()["total"] == 0
    part = client.get("/api/v1/tickets", params={"plate": "10001"}, headers=clerk).json()  # as typed so far
    assert [t["terminal_id"] for t in part["items"]] == [fleet.in_warranty]

    ticket = by_plate["items"][0]
    for key in (ticket["number"], ticket["number"].lower(), str(ticket["id"])):
        found = client.get(f"/api/v1/tickets/{key}", headers=clerk)
        assert found.status_code == 200 and found.json()["id"] == ticket["id"], key
    assert client.get(f"/api/v1/tickets/{ticket['number']}/history", headers=clerk).status_code == 200
    moved = client.post(
        f"/api/v1/tickets/{ticket['number']}/transitions",
        json={"to": "approved"},
        headers=_h(tokens["manager"]),
    )
    assert moved.status_code == 200 and moved.json()["state"] == "approved"
    assert client.get("/api/v1/tickets/RSO-999999", headers=clerk).status_code == 404
    wrong = client.get("/api/v1/tickets/ticket-7", headers=clerk)
    assert wrong.status_code == 422 and "RSO-000010" in wrong.json()["detail"]
    customer = client.get(f"/api/v1/tickets/{ticket['number']}", headers=_h(tokens["customer"]))
    assert customer.status_code == 200  # the customer's own ticket

    unknown = client.get("/api/v1/tickets", params={"state": "bogus"}, headers=clerk)
    assert unknown.status_code == 422 and unknown.json()["detail"].count("open") == 2  # the list, the hint


def test_an_alert_does_not_follow_its_terminal_to_another_customer(api, db_url: str) -> None:  # type: ignore[no-untyped-def]
    client, tokens, fleet = api
    database = open_db(db_url)
    try:
        with database.engine.begin() as conn:  # the terminal goes to Other Co's new truck
            service.uninstall(conn, device_id=fleet.in_warranty)
            other = service.create_customer(conn, name="Other Co 2")
            service.create_vehicle(conn, plate="C30001", customer_id=other["id"])
            service.install(conn, device_id=fleet.in_warranty, plate="C30001")
    finally:
        database.dispose()
    for role in ("noc", "customer"):
        [alert] = client.get(
            "/api/v1/alerts", params={"terminal_id": fleet.in_warranty}, headers=_h(tokens[role])
        ).json()["items"]
        assert alert["customer_id"] == fleet.customer_id
        assert (alert["plate"], alert["customer_name"]) == (None, None), role


def test_a_caller_names_the_vehicle_by_its_plate(api) -> None:  # type: ignore[no-untyped-def]
    client, tokens, fleet = api
    clerk = _h(tokens["clerk"])
    opened = client.post("/api/v1/tickets", json={"plate": "a 10003", "symptoms": "no sound"}, headers=clerk)
    assert opened.status_code == 201, opened.text
    assert opened.json()["terminal_id"] == fleet.healthy and opened.json()["vehicle_plate"] == "A10003"
    unknown = client.post("/api/v1/tickets", json={"plate": "Z99999"}, headers=clerk)
    assert unknown.status_code == 404 and unknown.json()["detail"] == "vehicle Z99999 not found"
    for body in ({}, {"plate": "A10003", "terminal_id": fleet.healthy}):
        both = client.post("/api/v1/tickets", json=body, headers=clerk)
        assert (
            both.status_code == 422 and "name the terminal (terminal_id) or the vehicle (plate)" in both.text
        )
        assert both.json()["detail"] == (
            "invalid request: body: name the terminal (terminal_id) or the vehicle (plate), one of them"
        )


def test_a_ticket_names_a_known_fault_or_none(api) -> None:  # type: ignore[no-untyped-def]
    client, tokens, fleet = api
    clerk = _h(tokens["clerk"])
    typo = client.post(
        "/api/v1/tickets", json={"terminal_id": fleet.healthy, "fault": "gnss_antena_cut"}, headers=clerk
    )
    assert typo.status_code == 422
    assert typo.json()["errors"][0]["message"].startswith("unknown fault 'gnss_antena_cut'; faults: offline")
    assert "gnss_antenna_cut" in typo.text and "reported" in typo.text
    assert client.get("/api/v1/tickets", params={"state": "open"}, headers=clerk).json()["total"] == 2
    listed = client.get("/api/v1/tickets", params={"fault": "no_gps"}, headers=clerk)
    assert listed.status_code == 422 and "unknown fault 'no_gps'" in listed.text
    named = client.post(
        "/api/v1/tickets", json={"terminal_id": fleet.healthy, "fault": "gnss_antenna_cut"}, headers=clerk
    )
    assert named.status_code == 201 and named.json()["fault"] == "gnss_antenna_cut"
    reported = client.get("/api/v1/tickets", params={"fault": "reported"}, headers=clerk)
    assert reported.status_code == 200 and reported.json()["total"] == 0


def test_a_ticket_by_hand_is_for_a_terminal_in_a_vehicle(api) -> None:  # type: ignore[no-untyped-def]
    client, tokens, fleet = api
    clerk = _h(tokens["clerk"])
    with client.app.state.database.engine.begin() as conn:  # the caller reads the old IMEI off a paper
        service.create_terminal(conn, device_id=imei_for(77), model=MODEL)
        service.swap_terminal(
            conn, old_device_id=fleet.healthy, new_device_id=imei_for(77), performed_by="tech", reason="fault"
        )
    stale = client.post("/api/v1/tickets", json={"terminal_id": fleet.healthy}, headers=clerk)
    assert stale.status_code == 409 and f"terminal {fleet.healthy} is in no vehicle now" in stale.text
    by_plate = client.post("/api/v1/tickets", json={"plate": "A10003"}, headers=clerk)
    assert by_plate.status_code == 201 and by_plate.json()["terminal_id"] == imei_for(77)


def test_a_retired_terminal_leaves_the_fleet_health(api) -> None:  # type: ignore[no-untyped-def]
    client, tokens, fleet = api
    noc = _h(tokens["noc"])
    before = client.get("/api/v1/health", headers=noc).json()
    with client.app.state.database.engine.begin() as conn:
        spare = service.create_terminal(conn, device_id=imei_for(78), model=MODEL)
        service.uninstall(conn, device_id=fleet.healthy)  # seen online, then taken out and retired
        for device_id in (imei_for(78), fleet.healthy):
            service.retire_record(conn, "terminal", service.terminal_by_device_id(conn, device_id)["id"])
    after = client.get("/api/v1/health", headers=noc).json()
    assert spare["device_id"] == imei_for(78)
    assert (after["terminals"], after["online"], after["never_seen"]) == (
        before["terminals"] - 1,
        before["online"] - 1,
        before["never_seen"],
    )
