"""/health reflects the database and every registered check; /metrics is Prometheus text."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from fastapi.testclient import TestClient

from api import health
from api.health import Check
from store.db import Database, open_database
from tests.api.support import api_client, bearer


def test_health_is_ok_with_the_database(client: TestClient, database: Database) -> None:
    response = client.get("/health", headers=bearer(database, "noc"))
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": {"ok": True, "detail": database.dialect}},
    }


def test_a_failing_or_broken_check_makes_health_503(
    client: TestClient, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    def gateway() -> Check:
        return Check("gateway", False, "spool 97% full")

    def broken() -> Check:
        raise RuntimeError("boom")

    async def stuck() -> Check:
        await asyncio.sleep(30)
        return Check("stuck", True)

    class Engine:
        def health_check(self) -> Check:
            raise OSError("queue gone")

    monkeypatch.setattr(health, "CHECK_TIMEOUT_S", 0.2)
    client.app.state.health_checks.extend([gateway, broken, stuck, Engine().health_check])  # type: ignore[attr-defined]
    response = client.get("/health", headers=bearer(database, "manager"))
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["gateway"] == {"ok": False, "detail": "spool 97% full"}
    assert body["checks"]["broken"] == {"ok": False, "detail": "check raised RuntimeError: boom"}
    assert body["checks"]["stuck"] == {"ok": False, "detail": "no answer within 0.2s"}
    assert body["checks"]["Engine"] == {"ok": False, "detail": "check raised OSError: queue gone"}


def test_health_is_503_when_postgresql_goes_away(pg_url: str, pg_admin_url: str) -> None:
    database = open_database(pg_url)
    try:
        with api_client(database) as client:
            headers = bearer(database, "noc")
            bearer_of_admin = bearer(database, "admin")
            assert client.get("/health", headers=headers).status_code == 200
            assert client.get("/api/v1/tokens", headers=bearer_of_admin).status_code == 200
            name = pg_url.rsplit("/", 1)[1]
            with psycopg.connect(pg_admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            # a token this process verified lately still gets the red report, with details
            response = client.get("/health", headers=headers)
            assert response.status_code == 503
            body = response.json()
            assert body["status"] == "fail"
            assert body["checks"]["database"]["ok"] is False
            assert name in body["checks"]["database"]["detail"]
            # a token never seen cannot be checked now: a plain 503, not a 401
            response = client.get("/health", headers={"Authorization": "Bearer gpf_never-seen-before"})
            assert response.status_code == 503
            assert response.json() == {"detail": "database unavailable, try again shortly"}
            assert response.headers["Retry-After"] == "5"
            assert client.get("/api/v1/me", headers=headers).json()["role"] == "noc"
            assert client.get("/api/v1/tokens", headers=bearer_of_admin).status_code == 503
    finally:
        database.dispose()


def test_metrics_count_requests_by_route_and_status(client: TestClient, database: Database) -> None:
    headers = bearer(database, "noc")
    client.get("/api/v1/tokens/7")  # 401, counted under its route template
    client.get("/health", headers=headers)
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'gpsfleet_api_requests_total{method="GET",route="/api/v1/tokens/{token_id}",status="401"}' in text
    assert 'gpsfleet_api_requests_total{method="GET",route="/health",status="200"}' in text
    assert 'gpsfleet_api_request_seconds_bucket{le="0.005",method="GET",route="/health"}' in text
    assert 'gpsfleet_api_auth_failures_total{reason="missing"}' in text
    assert "process_cpu_seconds_total" in text  # the default registry's collectors


def test_recent_tokens_are_bounded_expire_and_are_forgotten_on_revocation() -> None:
    from api.deps import Principal, RecentTokens

    recent = RecentTokens(size=2)
    for n in range(3):
        recent.remember(f"gpf_{n}", Principal(token_id=n, role="noc", customer_id=None, name=str(n)))
    assert recent.recall("gpf_0") is None  # the least recently used went first
    assert [recent.recall(f"gpf_{n}").token_id for n in (1, 2)] == [1, 2]  # type: ignore[union-attr]
    recent.forget(2)
    assert recent.recall("gpf_2") is None
    recent.keep_s = 0.0
    assert recent.recall("gpf_1") is None
