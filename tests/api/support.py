"""Helpers for API tests: a client for an app on a real database, tokens, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import create_token
from core.settings import Settings
from store.db import Database

GPSFLEET = str(Path(sys.executable).parent / "gpsfleet")


def api_client(database: Database, settings: Settings | None = None) -> TestClient:
    """A TestClient for the full app on ``database``; use it as a context manager."""
    settings = settings or Settings(db=database.url)
    return TestClient(create_app(settings, database), raise_server_exceptions=False)


def bearer(database: Database, role: str, customer_id: int | None = None) -> dict[str, str]:
    """Authorization headers for a fresh token of ``role``."""
    token = create_token(database.engine, role=role, customer_id=customer_id, name=f"test {role}").token
    return {"Authorization": f"Bearer {token}"}


def add_customer(database: Database, name: str) -> int:
    from fleet.service import create_customer

    with database.engine.begin() as conn:
        return int(create_customer(conn, name=name)["id"])


def clean_env(**variables: str) -> dict[str, str]:
    """The environment without any GPSFLEET_* variable, plus ``variables``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPSFLEET_")}
    env.update(variables)
    return env


def gpsfleet(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``gpsfleet`` console script in a clean environment."""
    return subprocess.run(
        [GPSFLEET, *args],
        env=env if env is not None else clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )
