"""Every endpoint of the assembled app, from every router, refuses a request without a token.

Iterates the real routes (from the app's OpenAPI document), so an endpoint added to a
router in ``api.app.ROUTERS`` without ``require_roles`` fails here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.settings import Settings
from store.db import Database, open_database


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Database]]:
    database = open_database(f"sqlite:///{tmp_path_factory.mktemp('routes') / 'gpsfleet.db'}")
    with TestClient(create_app(Settings(db=database.url), database), raise_server_exceptions=False) as client:
        yield client, database
    database.dispose()


def _routes() -> list[tuple[str, str]]:
    """(method, path) of every endpoint, from the OpenAPI document of the assembled app."""
    app = create_app(Settings(), database=None)  # type: ignore[arg-type]  # routes only
    return [
        (method.upper(), path)
        for path, operations in sorted(app.openapi()["paths"].items())
        for method in sorted(operations)
    ]


ROUTES = _routes()


def test_the_app_has_the_domain_routers() -> None:
    paths = {path for _method, path in ROUTES}
    assert {"/health", "/metrics", "/api/v1/tokens"} <= paths
    assert len(paths) > 3


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_no_token_no_answer(app_client: tuple[TestClient, Database], method: str, path: str) -> None:
    client, _database = app_client
    url = re.sub(r"\{[^}]+\}", "1", path)
    response = client.request(method, url, json={} if method in {"POST", "PUT", "PATCH"} else None)
    assert response.status_code == 401, f"{method} {path} answered {response.status_code} without a token"
    assert response.headers["WWW-Authenticate"] == "Bearer"
