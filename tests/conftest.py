"""Fixtures shared by the whole suite: the real servers and fresh databases on both backends."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from store.db import Database, open_database
from tests.services import MosquittoServer, PostgresServer

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer | None]:
    """The throwaway PostgreSQL server (None when GPSFLEET_TEST_PG_URL names an existing one)."""
    if os.environ.get("GPSFLEET_TEST_PG_URL"):
        yield None
        return
    server = PostgresServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def pg_admin_url(pg_server: PostgresServer | None) -> str:
    return os.environ.get("GPSFLEET_TEST_PG_URL") or (pg_server.url if pg_server else "")


@pytest.fixture
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = pg_admin_url.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    try:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg.OperationalError:
        pass  # a fault test left the server down; the cluster is thrown away anyway


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'gpsfleet.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Runs a test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    """A migrated database on each backend (``db_url``), disposed afterwards."""
    database = open_database(db_url)
    yield database
    database.dispose()


@pytest.fixture(scope="session")
def mqtt_server() -> Iterator[MosquittoServer | None]:
    if os.environ.get("GPSFLEET_TEST_MQTT_URL"):
        yield None
        return
    server = MosquittoServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def mqtt_url(mqtt_server: MosquittoServer | None) -> str:
    return os.environ.get("GPSFLEET_TEST_MQTT_URL") or (mqtt_server.url if mqtt_server else "")
