"""Bearer tokens: 401 without/with a bad or revoked token, 403 for a role that may not,
404 (never 403) for another customer's objects, and what is stored."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pytest
from fastapi import APIRouter, Depends
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from api.auth import STAFF_ROLES, create_token, list_tokens, revoke_token
from api.deps import ALL_ROLES, Principal, not_found, require_roles
from core.settings import Settings
from store.db import Database
from store.tables.auth import api_tokens
from tests.api.support import add_customer, bearer


def test_no_token_is_401_with_a_bearer_challenge(client: TestClient) -> None:
    for path in ("/health", "/metrics", "/api/v1/tokens", "/api/v1/me"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert "bearer token" in response.json()["detail"]


@pytest.mark.parametrize(
    "authorization",
    ["Bearer gpf_not-a-real-token", "Bearer nonsense", "Basic dXNlcjpwYXNz", "Bearer", "gpf_x"],
)
def test_wrong_token_or_scheme_is_401(client: TestClient, authorization: str) -> None:
    response = client.get("/api/v1/me", headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["detail"]


def test_revoked_token_is_401_at_once(client: TestClient, database: Database) -> None:
    new = create_token(database.engine, role="noc", name="wall screen")
    headers = {"Authorization": f"Bearer {new.token}"}
    assert client.get("/api/v1/me", headers=headers).json()["name"] == "wall screen"
    revoke_token(database.engine, new.info.id)
    response = client.get("/api/v1/me", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"detail": "invalid or revoked token"}
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_role_that_may_not_is_403(client: TestClient, database: Database) -> None:
    customer_id = add_customer(database, "Acme Haulage")
    customer = bearer(database, "customer", customer_id)
    for path in ("/health", "/metrics", "/api/v1/tokens"):
        response = client.get(path, headers=customer)
        assert response.status_code == 403, path
        assert "customer" in response.json()["detail"]
    for role in sorted(STAFF_ROLES - {"admin"}):
        response = client.get("/api/v1/tokens", headers=bearer(database, role))
        assert response.status_code == 403, role
        assert response.json()["detail"] == f"role {role!r} may not do this; allowed: admin"


def test_every_staff_role_reads_health_and_metrics(client: TestClient, database: Database) -> None:
    for role in sorted(STAFF_ROLES):
        headers = bearer(database, role)
        assert client.get("/health", headers=headers).status_code == 200, role
        assert client.get("/metrics", headers=headers).status_code == 200, role


def test_documentation_is_open_and_declares_bearer_auth(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "/api/v1/tokens" in spec["paths"]


def test_only_the_hash_is_stored_and_use_is_noted(client: TestClient, database: Database) -> None:
    new = create_token(database.engine, role="clerk")
    with database.engine.connect() as conn:
        row = conn.execute(select(api_tokens).where(api_tokens.c.id == new.info.id)).one()
    assert new.token.startswith("gpf_") and len(new.token) > 40
    assert row.token_hash == hashlib.sha256(new.token.encode()).hexdigest()
    assert new.token not in [str(value) for value in row]
    assert row.last_used_at is None
    client.get("/api/v1/me", headers={"Authorization": f"Bearer {new.token}"})
    (listed,) = [t for t in list_tokens(database.engine) if t.id == new.info.id]
    assert listed.last_used_at is not None and listed.last_used_at >= listed.created_at


def test_token_rules(database: Database) -> None:
    from api.auth import TokenError

    with pytest.raises(TokenError, match="needs a customer id"):
        create_token(database.engine, role="customer")
    with pytest.raises(TokenError, match="only customer tokens name a customer"):
        create_token(database.engine, role="noc", customer_id=1)
    with pytest.raises(TokenError, match="unknown role"):
        create_token(database.engine, role="root")
    with pytest.raises(TokenError, match="customer 424242 does not exist"):
        create_token(database.engine, role="customer", customer_id=424242)
    with pytest.raises(TokenError, match="no token with id 999"):
        revoke_token(database.engine, 999)


# A tiny router that owns objects of two customers, scoped the way every domain router is.
@dataclass
class Parcel:
    id: int
    customer_id: int
    label: str


def _scoped_router(parcels: list[Parcel]) -> APIRouter:
    router = APIRouter(prefix="/api/v1")

    @router.get("/parcels")
    def list_parcels(principal: Principal = Depends(require_roles(*ALL_ROLES))) -> list[dict[str, object]]:
        return [vars(p) for p in parcels if principal.can_see(p.customer_id)]

    @router.get("/parcels/{parcel_id}")
    def read_parcel(
        parcel_id: int, principal: Principal = Depends(require_roles(*ALL_ROLES))
    ) -> dict[str, object]:
        for parcel in parcels:
            if parcel.id == parcel_id and principal.can_see(parcel.customer_id):
                return vars(parcel)
        raise not_found("parcel", parcel_id)

    return router


def test_another_customers_object_is_404_and_never_listed(database: Database) -> None:
    acme = add_customer(database, "Acme Haulage")
    bolt = add_customer(database, "Bolt Taxis")
    parcels = [Parcel(1, acme, "acme one"), Parcel(2, bolt, "bolt one"), Parcel(3, acme, "acme two")]
    app = create_app(Settings(db=database.url), database, routers=[_scoped_router(parcels)])
    with TestClient(app) as client:
        acme_token = bearer(database, "customer", acme)
        assert client.get("/api/v1/parcels/1", headers=acme_token).json()["label"] == "acme one"
        response = client.get("/api/v1/parcels/2", headers=acme_token)
        assert response.status_code == 404
        assert response.json() == {"detail": "parcel 2 not found"}
        missing = client.get("/api/v1/parcels/99", headers=acme_token)
        assert missing.status_code == 404 and missing.json() == {"detail": "parcel 99 not found"}
        assert [p["id"] for p in client.get("/api/v1/parcels", headers=acme_token).json()] == [1, 3]

        bolt_token = bearer(database, "customer", bolt)
        assert [p["id"] for p in client.get("/api/v1/parcels", headers=bolt_token).json()] == [2]
        noc = bearer(database, "noc")
        assert [p["id"] for p in client.get("/api/v1/parcels", headers=noc).json()] == [1, 2, 3]
        assert client.get("/api/v1/parcels/2", headers=noc).status_code == 200
