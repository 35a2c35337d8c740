"""The real API for browser tests: uvicorn in a thread on a free port over SQLite, with the
seeded fleet; one per test module, so a module that clicks buttons changes only its own."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import uvicorn

from api.app import create_app
from core.settings import Settings
from store.db import open_database
from tests.browser.chromium import CHROMIUM
from tests.browser.support import LiveApi, seed_fleet
from tests.services import free_port, wait_port


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    if CHROMIUM is None:  # CI installs it (.ci/run); a machine without it must say so, not pass
        pytest.fail("chromium is not installed: apt-get install chromium")
    url = f"sqlite:///{tmp_path_factory.mktemp('dashboard') / 'gpsfleet.db'}"
    database = open_database(url)
    settings = Settings(db=url)
    fleet = seed_fleet(database, settings)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, database), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="dashboard-api", daemon=True)
    thread.start()
    try:
        wait_port(port)
        yield LiveApi(f"http://127.0.0.1:{port}", fleet, url)
    finally:
        server.should_exit = True
        thread.join(30)
        database.dispose()
