"""API fixtures: a migrated database on both backends, and a client for the whole app."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from store.db import Database, open_database
from tests.api.support import api_client


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    database = open_database(db_url)
    yield database
    database.dispose()


@pytest.fixture
def client(database: Database) -> Iterator[TestClient]:
    with api_client(database) as client:
        yield client
