"""The warranty API over HTTP: extended contracts name their terminal by its device id."""

from __future__ import annotations

from store.db import Database
from tests.api.support import api_client, bearer
from tests.fleet.support import T0, build_registry


def test_a_contract_names_its_terminal_by_device_id(sqlite_database: Database) -> None:
    from fleet import service

    with sqlite_database.engine.begin() as conn:
        reg = build_registry(conn)
        service.install(conn, device_id=reg.imeis[0], plate=reg.plates[0], at=T0)
    manager = bearer(sqlite_database, "manager")
    with api_client(sqlite_database) as client:
        url = f"/api/v1/terminals/{reg.imeis[0]}/warranty/contracts"
        added = client.post(
            url,
            json={"starts_on": "2026-03-01", "ends_on": "2027-02-28", "reference": "EXT-1"},
            headers=manager,
        )
        assert added.status_code == 201, added.text
        assert added.json()["device_id"] == reg.imeis[0] and isinstance(added.json()["terminal_id"], int)
        [listed] = client.get(url, headers=manager).json()
        assert listed["device_id"] == reg.imeis[0]
        voided = client.post(
            f"/api/v1/warranty/contracts/{listed['id']}/void", json={"reason": "not paid"}, headers=manager
        )
        assert voided.status_code == 200 and voided.json()["device_id"] == reg.imeis[0]
        assert voided.json()["void_reason"] == "not paid"
