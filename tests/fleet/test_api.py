"""The registry and warranty API with real tokens: roles (403), customer scope (404), errors."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest
from fastapi.testclient import TestClient

from fleet import service
from fleet.validation import iccid_for, imei_for
from store.db import Database
from tests.api.support import api_client, bearer
from tests.fleet.support import T0, Registry, build_registry


@pytest.fixture
def registry(sqlite_database: Database) -> Registry:
    with sqlite_database.engine.begin() as conn:
        reg = build_registry(conn)
        service.install(conn, device_id=reg.imeis[0], plate=reg.plates[0], iccid=reg.iccids[0], at=T0)
        service.install(conn, device_id=reg.imeis[1], plate=reg.plates[2], iccid=reg.iccids[1], at=T0)
    return reg


@pytest.fixture
def client(sqlite_database: Database) -> Iterator[TestClient]:
    with api_client(sqlite_database) as client:
        yield client


def test_clerk_builds_a_registry_and_validation_names_the_field(
    sqlite_database: Database, client: TestClient
) -> None:
    clerk = bearer(sqlite_database, "clerk")
    manager = bearer(sqlite_database, "manager")
    model = client.post(
        "/api/v1/terminal-models",
        json={
            "name": "JT-9",
            "protocol": "jt808",
            "parts": [{"part_number": "ANT", "name": "antenna", "price": "12.50"}],
        },
        headers=manager,
    )
    assert model.status_code == 201, model.text
    assert model.json()["id_kind"] == "phone" and model.json()["parts"][0]["price"] == "12.50"
    assert (
        client.post(
            "/api/v1/terminal-models", json={"name": "X", "protocol": "gt06"}, headers=clerk
        ).status_code
        == 403
    )
    customer = client.post("/api/v1/customers", json={"name": "Acme", "phone": "1"}, headers=clerk)
    assert customer.status_code == 201 and customer.json()["code"].startswith("C")
    bad_vin = client.post(
        "/api/v1/vehicles",
        json={"plate": "粤B1", "customer_id": customer.json()["id"], "vin": "SHORT"},
        headers=clerk,
    )
    assert bad_vin.status_code == 422 and bad_vin.json()["errors"][0]["field"] == "body.vin"
    bad_phone = client.post("/api/v1/terminals", json={"device_id": "12345", "model": "JT-9"}, headers=clerk)
    assert bad_phone.status_code == 422 and bad_phone.json()["errors"][0]["field"] == "body.device_id"
    terminal = client.post(
        "/api/v1/terminals", json={"device_id": "13800138000", "model": "JT-9"}, headers=clerk
    )
    assert terminal.status_code == 201 and terminal.json()["device_id"] == "013800138000"
    duplicate = client.post(
        "/api/v1/terminals", json={"device_id": "013800138000", "model": "JT-9"}, headers=clerk
    )
    assert duplicate.status_code == 409


def test_roles_are_enforced(sqlite_database: Database, client: TestClient, registry: Registry) -> None:
    noc, finance, technician = (bearer(sqlite_database, r) for r in ("noc", "finance", "technician"))
    assert client.get("/api/v1/terminals", headers=noc).status_code == 200
    assert client.get("/api/v1/sims", headers=finance).status_code == 200
    new_customer = {"name": "Nope"}
    assert client.post("/api/v1/customers", json=new_customer, headers=noc).status_code == 403
    assert client.post("/api/v1/customers", json=new_customer, headers=technician).status_code == 403
    swap = {"new_device_id": registry.imeis[2], "reason": "dead"}
    assert (
        client.post(f"/api/v1/terminals/{registry.imeis[0]}/swap", json=swap, headers=finance).status_code
        == 403
    )
    assert client.get("/api/v1/terminals").status_code == 401


def test_customer_token_sees_only_its_own(
    sqlite_database: Database, client: TestClient, registry: Registry
) -> None:
    own = bearer(sqlite_database, "customer", registry.customer_id)
    terminals = client.get("/api/v1/terminals", headers=own).json()
    assert [t["device_id"] for t in terminals["items"]] == [registry.imeis[0]] and terminals["total"] == 1
    assert client.get(f"/api/v1/terminals/{registry.imeis[0]}", headers=own).status_code == 200
    assert client.get(f"/api/v1/terminals/{registry.imeis[1]}", headers=own).status_code == 404
    assert client.get(f"/api/v1/terminals/{registry.imeis[1]}/warranty", headers=own).status_code == 404
    assert client.get(f"/api/v1/customers/{registry.other_customer_id}", headers=own).status_code == 404
    assert [c["id"] for c in client.get("/api/v1/customers", headers=own).json()["items"]] == [
        registry.customer_id
    ]
    plates = {v["plate"] for v in client.get("/api/v1/vehicles", headers=own).json()["items"]}
    assert plates == {registry.plates[0], registry.plates[1]}
    other_vehicle = client.get(
        "/api/v1/vehicles", headers=bearer(sqlite_database, "clerk"), params={"plate": "京A"}
    )
    assert (
        client.get(f"/api/v1/vehicles/{other_vehicle.json()['items'][0]['id']}", headers=own).status_code
        == 404
    )
    assert client.get("/api/v1/sims", headers=own).status_code == 403
    assert client.post("/api/v1/customers", json={"name": "x"}, headers=own).status_code == 403
    installs = client.get("/api/v1/installations", headers=own).json()
    assert [i["device_id"] for i in installs["items"]] == [registry.imeis[0]]


@pytest.mark.parametrize("role", ["technician", "clerk"])  # on site, or the desk from the repair order
def test_swap_history_and_warranty_over_the_api(
    sqlite_database: Database, client: TestClient, registry: Registry, role: str
) -> None:
    technician = bearer(sqlite_database, role)
    swap = client.post(
        f"/api/v1/terminals/{registry.imeis[0]}/swap",
        json={
            "new_device_id": registry.imeis[2],
            "reason": "no fix",
            "symptom": "antenna",
            "at": "2025-06-01T08:00:00Z",
        },
        headers=technician,
    )
    assert swap.status_code == 201, swap.text
    assert swap.json()["performed_by"] == f"test {role}" and swap.json()["plate"] == registry.plates[0]
    again = client.post(
        f"/api/v1/terminals/{registry.imeis[0]}/swap",
        json={"new_device_id": registry.imeis[3], "reason": "x"},
        headers=technician,
    )
    assert again.status_code == 409 and "not installed" in again.json()["detail"]
    history = client.get(f"/api/v1/terminals/{registry.imeis[0]}/history", headers=technician).json()
    assert (
        history["terminal"]["status"] == "returned_for_repair"
        and history["terminal"]["return_symptom"] == "antenna"
    )
    assert history["swaps"][0]["new_device_id"] == registry.imeis[2]
    vehicle_id = history["installations"][0]["vehicle_id"]
    on_day = client.get(
        f"/api/v1/vehicles/{vehicle_id}/installations",
        params={"at": "2025-03-03T12:00:00Z"},
        headers=technician,
    ).json()
    assert [i["device_id"] for i in on_day] == [registry.imeis[0]]
    backwards = client.get(
        f"/api/v1/vehicles/{vehicle_id}/installations",
        params={"start": "2026-01-01T00:00:00Z", "end": "2025-01-01T00:00:00Z"},
        headers=technician,
    )
    assert backwards.status_code == 422
    assert backwards.json()["errors"][0]["field"] == "query.end"  # the query, not a body it has none of
    sim_swap = client.post(
        f"/api/v1/sims/{registry.iccids[0]}/swap",
        json={"new_iccid": registry.iccids[2], "reason": "damaged", "at": "2025-07-01T00:00:00Z"},
        headers=technician,
    )
    assert sim_swap.status_code == 201 and sim_swap.json()["new_iccid"] == registry.iccids[2]
    cover = client.get(
        f"/api/v1/terminals/{registry.imeis[2]}/warranty", params={"on": "2026-02-28"}, headers=technician
    ).json()
    assert cover["in_warranty"] and cover["until"] == "2026-02-28" and cover["source"] == "replacement"
    quote = client.post(
        f"/api/v1/terminals/{registry.imeis[2]}/quote",
        json={"parts": [{"part_number": "BAT", "quantity": 2}], "on": "2026-03-01"},
        headers=bearer(sqlite_database, "finance"),
    )
    assert quote.status_code == 200, quote.text
    body = quote.json()
    assert body["total"] == "160.00" and body["currency"] == "CNY" and not body["coverage"]["in_warranty"]
    assert [line["kind"] for line in body["lines"]] == ["part", "labour"] and body["lines"][1][
        "amount"
    ] == "0.00"


def test_delete_needs_no_history_else_retire(
    sqlite_database: Database, client: TestClient, registry: Registry
) -> None:
    clerk = bearer(sqlite_database, "clerk")
    refused = client.delete(f"/api/v1/terminals/{registry.imeis[0]}", headers=clerk)
    assert refused.status_code == 409 and "retire it instead" in refused.json()["detail"]
    # Named by the device id the clerk typed, not by the registry's internal row id.
    assert refused.json()["detail"].startswith(f"terminal {registry.imeis[0]} cannot be deleted: ")
    installed = client.post(f"/api/v1/terminals/{registry.imeis[0]}/retire", headers=clerk)
    assert installed.status_code == 409 and installed.json()["detail"] == (
        f"terminal {registry.imeis[0]} cannot be retired while it is installed; uninstall or swap it first"
    )
    sim = client.post(f"/api/v1/sims/{registry.iccids[0]}/retire", headers=clerk)
    assert sim.status_code == 409 and sim.json()["detail"].startswith(f"SIM {registry.iccids[0]} cannot")
    assert client.delete(f"/api/v1/terminals/{registry.imeis[3]}", headers=clerk).status_code == 204
    assert client.get(f"/api/v1/terminals/{registry.imeis[3]}", headers=clerk).status_code == 404
    sim = client.post("/api/v1/sims", json={"iccid": iccid_for(99)}, headers=clerk)
    assert sim.status_code == 201
    retired = client.post(f"/api/v1/sims/{iccid_for(99)}/retire", headers=clerk)
    assert retired.status_code == 200 and retired.json()["retired_at"]
    assert iccid_for(99) not in {
        s["iccid"] for s in client.get("/api/v1/sims", headers=clerk).json()["items"]
    }


def test_install_over_the_api_refuses_a_double_binding(
    sqlite_database: Database, client: TestClient, registry: Registry
) -> None:
    technician = bearer(sqlite_database, "technician")
    body = {"device_id": registry.imeis[3], "plate": registry.plates[1], "iccid": registry.iccids[0]}
    taken = client.post("/api/v1/installations", json=body, headers=technician)
    assert taken.status_code == 409 and registry.iccids[0] in taken.json()["detail"]
    ok = client.post("/api/v1/installations", json={**body, "iccid": registry.iccids[3]}, headers=technician)
    assert ok.status_code == 201 and ok.json()["installed_by"] == "test technician"
    assert client.get(f"/api/v1/terminals/{imei_for(999)}", headers=technician).status_code == 404
    ended = client.post(f"/api/v1/terminals/{registry.imeis[3]}/uninstall", json={}, headers=technician)
    assert ended.status_code == 200 and ended.json()["valid_to"] is not None
    assert date.fromisoformat(ended.json()["valid_to"][:10]) >= date(2025, 1, 1)


def test_lists_find_a_plate_as_written_on_the_car_and_refuse_an_unknown_status(
    sqlite_database: Database, client: TestClient, registry: Registry
) -> None:
    clerk = bearer(sqlite_database, "clerk")

    def items(path: str, **params: str) -> list[dict]:  # type: ignore[type-arg]
        answer = client.get(path, params=params, headers=clerk)
        assert answer.status_code == 200, answer.text
        return list(answer.json()["items"])

    # 粤B10001 holds imeis[0]: found by its plate typed with a dot, a space or in lower case.
    assert [t["device_id"] for t in items("/api/v1/terminals", q="粤B·10001")] == [registry.imeis[0]]
    assert [t["device_id"] for t in items("/api/v1/terminals", q="b 1000")] == [registry.imeis[0]]
    assert [v["plate"] for v in items("/api/v1/vehicles", plate="粤b-10001")] == ["粤B10001"]
    assert [i["device_id"] for i in items("/api/v1/installations", plate="粤B 10001")] == [registry.imeis[0]]
    # a caller reads the end of the VIN off the registration
    assert [v["plate"] for v in items("/api/v1/vehicles", vin="n218 3294")] == ["粤B10001"]
    assert items("/api/v1/vehicles", vin="ZZZ") == []

    typo = client.get("/api/v1/terminals", params={"status": "instaled"}, headers=clerk)
    assert typo.status_code == 422 and typo.json()["errors"][0]["field"] == "query.status"
    assert "'installed'" in typo.json()["detail"]
    assert client.get("/api/v1/sims", params={"status": "gone"}, headers=clerk).status_code == 422
    assert len(items("/api/v1/terminals", status="installed")) == 2


def test_a_taken_key_or_an_unknown_protocol_is_said_in_words(
    sqlite_database: Database, client: TestClient, registry: Registry
) -> None:
    clerk, manager = bearer(sqlite_database, "clerk"), bearer(sqlite_database, "manager")
    first = client.post("/api/v1/customers", json={"name": "A Co", "code": "K-1"}, headers=clerk)
    assert first.status_code == 201
    taken = client.post("/api/v1/customers", json={"name": "B Co", "code": "K-1"}, headers=clerk)
    assert taken.status_code == 409 and taken.json()["detail"] == "a customer with code K-1 already exists"
    other = client.post("/api/v1/customers", json={"name": "C Co"}, headers=clerk).json()
    renamed = client.patch(f"/api/v1/customers/{other['id']}", json={"code": "K-1"}, headers=clerk)
    assert renamed.status_code == 409 and "UNIQUE" not in renamed.json()["detail"]

    driver = {"name": "Wang Lei", "licence_number": "440301199001011234"}
    assert client.post("/api/v1/drivers", json=driver, headers=clerk).status_code == 201
    again = client.post("/api/v1/drivers", json={**driver, "name": "Wang L."}, headers=clerk)
    assert again.status_code == 409 and again.json()["detail"] == (
        "a driver with licence number 440301199001011234 already exists"
    )

    typo = client.post("/api/v1/terminal-models", json={"name": "T1", "protocol": "jt/t808"}, headers=manager)
    assert typo.status_code == 422 and typo.json()["errors"][0]["field"] == "body.protocol"
    assert "gps103, gt06, h02, jt808, nmea, teltonika" in typo.json()["detail"]


def test_a_part_is_priced_at_its_url_without_repeating_its_number(
    sqlite_database: Database, client: TestClient, registry: Registry
) -> None:
    manager = bearer(sqlite_database, "manager")
    url = f"/api/v1/terminal-models/{registry.model_id}/parts/GSM-ANT"
    priced = client.put(url, json={"name": "GSM antenna", "price": "25.00"}, headers=manager)
    assert priced.status_code == 200, priced.text
    assert {"part_number": "GSM-ANT", "name": "GSM antenna", "price": "25.00"} in priced.json()["parts"]
    repeated = client.put(
        url, json={"part_number": "GSM-ANT", "name": "GSM antenna", "price": "26"}, headers=manager
    )
    assert repeated.status_code == 200
    other = client.put(url, json={"part_number": "BAT", "name": "battery", "price": "1"}, headers=manager)
    assert other.status_code == 422 and "'BAT' in the body differs from 'GSM-ANT'" in other.json()["detail"]
