"""The dashboard through the API: its page and assets are served without a token (they hold no
data), /api/v1/me tells the page who signed in, and the terminal table it polls is protected,
customer-scoped, searched, filtered, sorted and paged."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.settings import Settings
from store.db import Database
from tests.browser.support import SeededFleet, seed_fleet


@pytest.fixture
def seeded(database: Database) -> Iterator[tuple[TestClient, SeededFleet]]:
    settings = Settings(db=database.url)
    fleet = seed_fleet(database, settings)
    with TestClient(create_app(settings, database), raise_server_exceptions=False) as client:
        yield client, fleet


def _as(fleet: SeededFleet, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {fleet.tokens[who]}"}


def test_page_and_assets_need_no_token(sqlite_url: str) -> None:
    from store.db import open_database

    database = open_database(sqlite_url)
    try:
        with TestClient(create_app(Settings(db=sqlite_url), database)) as client:
            root = client.get("/dashboard", follow_redirects=False)
            assert root.status_code == 308 and root.headers["location"] == "/dashboard/"
            page = client.get("/dashboard/")
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            assert '<script src="app.js"' in page.text and 'href="app.css"' in page.text
            assert "default-src 'none'" in page.headers["content-security-policy"]
            script = client.get("/dashboard/app.js")
            assert script.status_code == 200 and "javascript" in script.headers["content-type"]
            assert "/api/v1/dashboard/terminals" in script.text and "中文" in script.text
            style = client.get("/dashboard/app.css")
            assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
            again = client.get("/dashboard/app.js", headers={"If-None-Match": script.headers["etag"]})
            assert again.status_code == 304
            # nothing but the three files: no listing, no way out of the folder
            for path in (
                "/dashboard/../app.py",
                "/dashboard/%2e%2e%2fdashboard.py",
                "/dashboard/dashboard.py",
            ):
                assert client.get(path).status_code == 404, path
            # and no data without a token
            assert client.get("/api/v1/dashboard/terminals").status_code == 401
            assert client.get("/api/v1/me").status_code == 401
    finally:
        database.dispose()


def test_me_answers_role_and_customer(seeded: tuple[TestClient, SeededFleet]) -> None:
    client, fleet = seeded
    admin = client.get("/api/v1/me", headers=_as(fleet, "admin")).json()
    assert admin["role"] == "admin" and admin["customer_id"] is None and admin["name"] == "NOC wall"
    customer = client.get("/api/v1/me", headers=_as(fleet, "harbour")).json()
    assert customer["role"] == "customer" and customer["customer_id"] == fleet.harbour_id


def test_terminal_table_joins_registry_health_and_faults(seeded: tuple[TestClient, SeededFleet]) -> None:
    client, fleet = seeded
    page = client.get("/api/v1/dashboard/terminals", headers=_as(fleet, "admin")).json()
    assert page["total"] == 5
    rows = {row["device_id"]: row for row in page["items"]}
    moving = rows[fleet.moving]
    assert moving["plate"] == "沪A12345" and moving["customer_name"] == "Harbour Freight"
    assert moving["connectivity"] == "online" and moving["power_v"] == pytest.approx(12.6)
    assert moving["gsm_signal"] == 28 and moving["last_lat"] is not None and moving["faults"] == []
    assert [f["fault"] for f in rows[fleet.power_cut]["faults"]] == ["power_cut"]
    assert rows[fleet.in_stock]["connectivity"] == "never_seen" and rows[fleet.in_stock]["plate"] is None


def test_terminal_table_search_filter_sort_page(seeded: tuple[TestClient, SeededFleet]) -> None:
    client, fleet = seeded
    admin = _as(fleet, "admin")

    def ids(**params: object) -> list[str]:
        answer = client.get("/api/v1/dashboard/terminals", params=params, headers=admin)
        assert answer.status_code == 200, answer.text
        return [row["device_id"] for row in answer.json()["items"]]

    assert ids(q="沪B") == [fleet.power_cut]
    assert ids(q="沪b·2000") == [fleet.power_cut]  # a plate as written on the car
    assert ids(q="mountain") == [fleet.other_customer]  # customer names, case-insensitive
    assert ids(show="faulty") == sorted([fleet.power_cut, fleet.antenna_cut])
    assert ids(show="gnss_antenna_cut") == [fleet.antenna_cut]
    assert ids(show="never_seen") == [fleet.in_stock]
    assert ids(sort="faults", order="desc")[2:] == sorted(
        [fleet.moving, fleet.other_customer, fleet.in_stock]
    )
    by_power = ids(sort="power_v", order="desc")
    assert by_power[:3] == [fleet.other_customer, fleet.moving, fleet.power_cut]  # unknown last
    first, second = ids(limit=2), ids(limit=2, offset=2)
    assert len(first) == 2 and len(second) == 2 and not set(first) & set(second)
    typo = client.get("/api/v1/dashboard/terminals", params={"show": "faulty_ones"}, headers=admin)
    assert typo.status_code == 422 and "got 'faulty_ones'" in typo.json()["detail"]
    assert "never_seen, faulty, offline, no_fix" in typo.json()["detail"]
    bad = client.get("/api/v1/dashboard/terminals", params={"sort": "password"}, headers=admin)
    assert bad.status_code == 422 and "query.sort" in bad.json()["detail"]


def test_customer_sees_only_its_terminals(seeded: tuple[TestClient, SeededFleet]) -> None:
    client, fleet = seeded
    page = client.get("/api/v1/dashboard/terminals", headers=_as(fleet, "harbour")).json()
    assert {row["device_id"] for row in page["items"]} == {fleet.moving, fleet.power_cut, fleet.antenna_cut}
    assert page["total"] == 3
    searched = client.get(
        "/api/v1/dashboard/terminals", params={"q": "Mountain"}, headers=_as(fleet, "harbour")
    ).json()
    assert searched["items"] == [] and searched["total"] == 0
