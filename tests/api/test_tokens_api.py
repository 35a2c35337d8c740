"""Token administration over HTTP: admin creates, lists (never secrets) and revokes."""

from __future__ import annotations

from fastapi.testclient import TestClient

from store.db import Database
from tests.api.support import add_customer, bearer


def test_admin_creates_lists_and_revokes(client: TestClient, database: Database) -> None:
    admin = bearer(database, "admin")
    customer_id = add_customer(database, "Acme Haulage")
    created = client.post(
        "/api/v1/tokens",
        headers=admin,
        json={"role": "customer", "customer_id": customer_id, "name": "portal"},
    )
    assert created.status_code == 201
    body = created.json()
    assert body["role"] == "customer" and body["customer_id"] == customer_id and body["active"]
    token = body["token"]
    assert token.startswith(body["token_prefix"])

    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).json()
    assert me == {"token_id": body["id"], "role": "customer", "customer_id": customer_id, "name": "portal"}

    listed = client.get("/api/v1/tokens", headers=admin)
    assert listed.status_code == 200
    assert body["id"] in [t["id"] for t in listed.json()]
    assert token not in listed.text and "token_hash" not in listed.text
    assert client.get(f"/api/v1/tokens/{body['id']}", headers=admin).json()["name"] == "portal"

    revoked = client.delete(f"/api/v1/tokens/{body['id']}", headers=admin)
    assert revoked.status_code == 200
    assert revoked.json()["active"] is False and revoked.json()["revoked_at"]
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    active = client.get("/api/v1/tokens", headers=admin, params={"include_revoked": "false"}).json()
    assert body["id"] not in [t["id"] for t in active]


def test_unknown_token_id_is_404(client: TestClient, database: Database) -> None:
    admin = bearer(database, "admin")
    assert client.delete("/api/v1/tokens/4040", headers=admin).json() == {"detail": "token 4040 not found"}
    assert client.get("/api/v1/tokens/4040", headers=admin).status_code == 404


def test_bad_requests_say_which_field_is_wrong(client: TestClient, database: Database) -> None:
    admin = bearer(database, "admin")
    response = client.post("/api/v1/tokens", headers=admin, json={"role": "overlord"})
    assert response.status_code == 422
    assert response.json()["detail"].startswith("invalid request: body.role: Input should be 'admin'")
    assert response.json()["errors"][0]["field"] == "body.role"

    response = client.post("/api/v1/tokens", headers=admin, json={"role": "customer"})
    assert response.status_code == 422
    assert "needs a customer id" in response.json()["detail"]
    assert (
        response.json()["detail"].endswith("; send customer_id")
        and "--customer" not in response.json()["detail"]
    )

    response = client.get("/api/v1/tokens/abc", headers=admin)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "path.token_id"

    broken = b'{"role": "noc",'
    response = client.post(
        "/api/v1/tokens", headers={**admin, "content-type": "application/json"}, content=broken
    )
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {
            "field": "body",
            "message": "the body is not valid JSON (Expecting property name enclosed in double quotes "
            f"at character {len(broken)})",
            "type": "json_invalid",
        }
    ]


def test_a_non_admin_cannot_mint_tokens(client: TestClient, database: Database) -> None:
    response = client.post("/api/v1/tokens", headers=bearer(database, "manager"), json={"role": "admin"})
    assert response.status_code == 403
