"""Fixtures of the fleet tests: a migrated database on both backends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from store.db import Database, open_database


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    database = open_database(db_url)
    yield database
    database.dispose()


@pytest.fixture
def sqlite_database(sqlite_url: str) -> Iterator[Database]:
    database = open_database(sqlite_url)
    yield database
    database.dispose()
