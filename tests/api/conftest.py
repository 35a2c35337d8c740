"""API fixtures: a client for the whole app on the migrated ``database`` (both backends)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from store.db import Database
from tests.api.support import api_client


@pytest.fixture
def client(database: Database) -> Iterator[TestClient]:
    with api_client(database) as client:
        yield client
