"""The positions API through the real app: tokens, customer scoping, paging, the range
limit and the three downloads, on both backends."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Connection

from fleet import service
from store.db import Database
from store.ingest import PositionWriter
from store.records import Flag, IngestBatch
from store.tables.registry import installations, terminals, vehicles
from tests.api.support import api_client, bearer
from tests.store.support import T0, position

OURS, THEIRS, MOVED = "860000000000009", "860000000000017", "860000000000025"
RANGE = {"start": "2026-11-01T07:00:00Z", "end": "2026-11-02T07:00:00Z"}


@pytest.fixture
def client(database: Database) -> Iterator[TestClient]:
    with database.engine.begin() as conn:
        model = service.create_terminal_model(conn, name="GT06N", protocol="gt06")
        for number, device_id in enumerate((OURS, THEIRS)):
            customer = service.create_customer(conn, name=f"customer {number}")
            service.create_vehicle(conn, plate=f"PLATE-{number}", customer_id=int(customer["id"]))
            service.create_terminal(conn, device_id=device_id, model_id=int(model["id"]))
            service.install(conn, device_id=device_id, plate=f"PLATE-{number}", at=T0)
        # moved into our customer's second vehicle after its last fix (for its previous owner)
        service.create_vehicle(conn, plate="PLATE-0B", customer_id=customer_id_of(conn, OURS))
        service.create_terminal(conn, device_id=MOVED, model_id=int(model["id"]))
        service.install(conn, device_id=MOVED, plate="PLATE-0B", at=T0 + timedelta(hours=1))
    PositionWriter(database).write(
        IngestBatch(
            [
                position(OURS, -600, lat=9.0),  # before it was installed in the customer's vehicle
                *[position(OURS, s, attributes={"power_v": 12.0 + s / 1000}) for s in range(0, 50, 10)],
                position(OURS, 55, flags=Flag.JUMP),
                position(THEIRS, 30, lat=7.0),
                position(MOVED, 1800, lat=5.0),
            ]
        )
    )
    with api_client(database) as client:
        yield client


def customer_id_of(conn: Connection, device_id: str) -> int:
    """The customer whose vehicle the terminal is installed in."""
    query = (
        select(vehicles.c.customer_id)
        .select_from(installations.join(terminals).join(vehicles))
        .where(terminals.c.device_id == device_id)
    )
    return int(conn.execute(query).scalar_one())


def customer_id(database: Database, device_id: str) -> int:
    with database.engine.connect() as conn:
        return customer_id_of(conn, device_id)


@pytest.mark.parametrize(
    "path",
    ["/api/v1/positions/latest", f"/api/v1/terminals/{OURS}/track", f"/api/v1/terminals/{OURS}/track.gpx"],
)
def test_every_endpoint_needs_a_token_of_a_role_that_may_see_positions(
    client: TestClient, database: Database, path: str
) -> None:
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer nope"}).status_code == 401
    forbidden = client.get(path, params=RANGE, headers=bearer(database, "finance"))
    assert forbidden.status_code == 403 and "finance" in forbidden.json()["detail"]
    for role in ("admin", "manager", "noc", "clerk", "technician"):
        assert client.get(path, params=RANGE, headers=bearer(database, role)).status_code == 200


def test_staff_see_every_latest_position_and_customers_only_theirs(
    client: TestClient, database: Database
) -> None:
    staff = client.get("/api/v1/positions/latest", headers=bearer(database, "noc"))
    assert staff.status_code == 200
    body = staff.json()
    assert [p["terminal_id"] for p in body["positions"]] == [OURS, THEIRS, MOVED] and body["count"] == 3
    ours = body["positions"][0]
    assert ours["fix_time"] == "2026-11-01T08:00:40Z"  # the flagged later fix is not the latest
    assert ours["health"] == {"power_v": 12.04}
    headers = bearer(database, "customer", customer_id(database, OURS))
    mine = client.get("/api/v1/positions/latest", headers=headers).json()
    assert [p["terminal_id"] for p in mine["positions"]] == [OURS]  # MOVED's fix is its previous owner's
    moved = client.get(f"/api/v1/terminals/{MOVED}/track", params=RANGE, headers=headers)
    assert moved.status_code == 200 and moved.json()["points"] == []
    asked = client.get("/api/v1/positions/latest", params={"terminal_id": [THEIRS, OURS]}, headers=headers)
    assert [p["terminal_id"] for p in asked.json()["positions"]] == [OURS]
    filtered = client.get(
        "/api/v1/positions/latest", params={"terminal_id": THEIRS}, headers=bearer(database, "noc")
    )
    assert [p["terminal_id"] for p in filtered.json()["positions"]] == [THEIRS]


def test_a_track_is_paged_with_next_cursor(client: TestClient, database: Database) -> None:
    headers = bearer(database, "manager")
    seen, cursor = [], None
    while True:
        params = {**RANGE, "page_size": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"/api/v1/terminals/{OURS}/track", params=params, headers=headers)
        assert page.status_code == 200, page.text
        body = page.json()
        assert body["terminal_id"] == OURS and body["count"] == len(body["points"]) <= 2
        seen += [p["fix_time"] for p in body["points"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == ["2026-11-01T07:50:00Z"] + [f"2026-11-01T08:00:{s:02d}Z" for s in range(0, 50, 10)]
    flagged = client.get(
        f"/api/v1/terminals/{OURS}/track", params={**RANGE, "include_flagged": "true"}, headers=headers
    )
    assert flagged.json()["points"][-1]["flags"] == Flag.JUMP


def test_a_customer_sees_its_terminal_since_installation_and_no_other(
    client: TestClient, database: Database
) -> None:
    headers = bearer(database, "customer", customer_id(database, OURS))
    own = client.get(f"/api/v1/terminals/{OURS}/track", params=RANGE, headers=headers)
    assert [p["fix_time"] for p in own.json()["points"]][0] == "2026-11-01T08:00:00Z"
    for path in (f"/api/v1/terminals/{THEIRS}/track", f"/api/v1/terminals/{THEIRS}/track.csv"):
        response = client.get(path, params=RANGE, headers=headers)
        assert response.status_code == 404 and THEIRS in response.json()["detail"]
    before = client.get(
        f"/api/v1/terminals/{OURS}/track",
        params={"start": "2026-11-01T07:00:00Z", "end": "2026-11-01T07:55:00Z"},
        headers=headers,
    )
    assert before.status_code == 200 and before.json()["points"] == []


def test_a_range_over_the_maximum_and_bad_input_answer_422_saying_why(
    client: TestClient, database: Database
) -> None:
    headers = bearer(database, "noc")
    too_long = {"start": "2026-10-01T00:00:00Z", "end": "2026-11-02T00:00:00Z"}
    for path in (f"/api/v1/terminals/{OURS}/track", f"/api/v1/terminals/{OURS}/track.geojson"):
        response = client.get(path, params=too_long, headers=headers)
        assert response.status_code == 422
        assert "at most 31 days" in response.json()["detail"]
    bad_cursor = client.get(
        f"/api/v1/terminals/{OURS}/track", params={**RANGE, "cursor": "x!"}, headers=headers
    )
    assert bad_cursor.status_code == 422 and "cursor" in bad_cursor.json()["detail"]
    naive = client.get(
        f"/api/v1/terminals/{OURS}/track",
        params={"start": "2026-11-01T07:00:00", "end": RANGE["end"]},
        headers=headers,
    )
    assert naive.status_code == 422 and "time zone" in naive.json()["detail"]
    assert client.get(f"/api/v1/terminals/{OURS}/track.kml", headers=headers).status_code in (404, 422)


def test_the_downloads_stream_each_format_with_its_content_type(
    client: TestClient, database: Database
) -> None:
    headers = bearer(database, "customer", customer_id(database, OURS))
    geo = client.get(f"/api/v1/terminals/{OURS}/track.geojson", params=RANGE, headers=headers)
    assert geo.status_code == 200 and geo.headers["content-type"].startswith("application/geo+json")
    assert 'filename="860000000000009-20261101T070000Z.geojson"' in geo.headers["content-disposition"]
    features = json.loads(geo.text)["features"]
    assert len([f for f in features if f["geometry"]["type"] == "Point"]) == 5  # since installation
    gpx = client.get(f"/api/v1/terminals/{OURS}/track.gpx", params=RANGE, headers=headers)
    assert gpx.headers["content-type"].startswith("application/gpx+xml")
    points = ET.fromstring(gpx.text).findall(".//{http://www.topografix.com/GPX/1/1}trkpt")
    assert len(points) == 5
    table = client.get(f"/api/v1/terminals/{OURS}/track.csv", params=RANGE, headers=headers)
    assert table.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(table.text)))
    assert [r["fix_time"] for r in rows] == [f"2026-11-01T08:00:{s:02d}Z" for s in range(0, 50, 10)]
    staff = client.get(f"/api/v1/terminals/{OURS}/track.csv", params=RANGE, headers=bearer(database, "clerk"))
    assert len(list(csv.DictReader(io.StringIO(staff.text)))) == 6


def test_the_default_range_is_the_last_day(client: TestClient, database: Database) -> None:
    response = client.get(f"/api/v1/terminals/{OURS}/track", headers=bearer(database, "noc"))
    body = response.json()
    assert response.status_code == 200 and body["points"] == []  # the fixtures are from 2026-11-01
    start, end = (datetime.fromisoformat(body[key]) for key in ("start", "end"))
    assert end - start == timedelta(days=1)
