"""Fixtures of the gateway tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from store.db import Database, open_database


@pytest.fixture
def sqlite_database(sqlite_url: str) -> Iterator[Database]:
    """A migrated SQLite database, for transport tests that need only one backend."""
    database = open_database(sqlite_url)
    yield database
    database.dispose()
