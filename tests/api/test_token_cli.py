"""``gpsfleet token`` end to end: the printed token works against the API until revoked."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from store.db import Database
from tests.api.support import add_customer, gpsfleet


def test_create_prints_the_token_alone_on_the_last_line(
    db_url: str, database: Database, client: TestClient
) -> None:
    created = gpsfleet("token", "create", "--role", "noc", "--name", "wall screen", "--db", db_url)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("gpf_") and " " not in token
    assert created.stdout == token + "\n"  # nothing else on stdout: TOKEN=$(gpsfleet token create …)
    assert "shown only now" in created.stderr

    headers = {"Authorization": f"Bearer {token}"}
    me = client.get("/api/v1/me", headers=headers).json()
    assert me["role"] == "noc" and me["name"] == "wall screen"

    listed = gpsfleet("token", "list", "--json", "--db", db_url)
    assert listed.returncode == 0, listed.stderr
    (entry,) = json.loads(listed.stdout)
    assert entry["id"] == me["token_id"] and entry["active"] and entry["last_used_at"]
    assert token not in listed.stdout
    table = gpsfleet("token", "list", "--db", db_url)
    assert "wall screen" in table.stdout and token[:12] in table.stdout and token not in table.stdout

    revoked = gpsfleet("token", "revoke", str(me["token_id"]), "--db", db_url)
    assert revoked.returncode == 0, revoked.stderr
    assert f"token {me['token_id']} (noc, 'wall screen') revoked" in revoked.stdout
    assert client.get("/api/v1/me", headers=headers).status_code == 401
    assert json.loads(gpsfleet("token", "list", "--active", "--json", "--db", db_url).stdout) == []


def test_customer_tokens_name_an_existing_customer(db_url: str, database: Database) -> None:
    missing = gpsfleet("token", "create", "--role", "customer", "--db", db_url)
    assert missing.returncode == 2 and "needs a customer id" in missing.stderr and missing.stdout == ""
    assert missing.stderr.rstrip().endswith("; pass --customer ID")
    unknown = gpsfleet("token", "create", "--role", "customer", "--customer", "777", "--db", db_url)
    assert unknown.returncode == 2 and "customer 777 does not exist" in unknown.stderr
    customer_id = add_customer(database, "Acme Haulage")
    created = gpsfleet(
        "token", "create", "--role", "customer", "--customer", str(customer_id), "--db", db_url
    )
    assert created.returncode == 0, created.stderr
    assert f"customer {customer_id}" in created.stderr


def test_bad_role_and_unknown_id_are_clear_errors(sqlite_url: str) -> None:
    bad_role = gpsfleet("token", "create", "--role", "root", "--db", sqlite_url)
    assert bad_role.returncode == 2 and "invalid choice: 'root'" in bad_role.stderr
    unknown = gpsfleet("token", "revoke", "12", "--db", sqlite_url)
    assert unknown.returncode == 1 and "no token with id 12" in unknown.stderr


def test_the_database_comes_from_gpsfleet_db_too(sqlite_url: str) -> None:
    from tests.api.support import clean_env

    created = gpsfleet("token", "create", "--role", "admin", env=clean_env(GPSFLEET_DB=sqlite_url))
    assert created.returncode == 0, created.stderr
    listed = gpsfleet("token", "list", "--json", "--db", sqlite_url)
    assert [t["role"] for t in json.loads(listed.stdout)] == ["admin"]
