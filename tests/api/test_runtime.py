"""The runtime's component seam: start in order, stop in reverse, checks join /health."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from api.auth import create_token
from api.health import Check
from app.runtime import Component, Runtime, StartupError, build_components
from core.settings import Settings
from store.db import Database


class Recorder:
    """A component that notes what happened to it (a stand-in for the gateway or alerts)."""

    def __init__(self, name: str, journal: list[str], *, fail_start: bool = False, healthy: bool = True):
        self.name, self.journal, self.fail_start, self.healthy = name, journal, fail_start, healthy

    async def start(self) -> None:
        self.journal.append(f"start {self.name}")
        if self.fail_start:
            raise RuntimeError("port 5023 taken")

    async def stop(self) -> None:
        self.journal.append(f"stop {self.name}")

    def health_check(self) -> Check:
        return Check(self.name, self.healthy, "draining" if not self.healthy else "ok")


def test_components_start_in_order_stop_in_reverse_and_report_health(database: Database) -> None:
    journal: list[str] = []
    token = create_token(database.engine, role="noc").token
    settings = Settings(db=database.url, api_port=0)
    components: list[tuple[str, Component]] = [
        ("alerts", Recorder("alerts", journal)),
        ("gateway", Recorder("gateway", journal, healthy=False)),
    ]

    async def scenario() -> httpx.Response:
        runtime = Runtime(settings, database, "all", components=components)
        await runtime.start()
        try:
            assert runtime.app.state.services["gateway"] is components[1][1]
            async with httpx.AsyncClient() as http:
                return await http.get(
                    f"http://127.0.0.1:{runtime.api_port}/health",
                    headers={"Authorization": f"Bearer {token}"},
                )
        finally:
            await runtime.stop()

    response = asyncio.run(scenario())
    assert journal == ["start alerts", "start gateway", "stop gateway", "stop alerts"]
    assert response.status_code == 503
    assert response.json()["checks"]["gateway"] == {"ok": False, "detail": "draining"}
    assert response.json()["checks"]["alerts"] == {"ok": True, "detail": "ok"}


def test_a_component_that_fails_to_start_stops_the_others(database: Database) -> None:
    journal: list[str] = []
    settings = Settings(db=database.url, api_port=0)
    components: list[tuple[str, Component]] = [
        ("alerts", Recorder("alerts", journal)),
        ("gateway", Recorder("gateway", journal, fail_start=True)),
    ]

    async def scenario() -> None:
        await Runtime(settings, database, "all", components=components).start()

    with pytest.raises(StartupError, match="gateway failed to start: port 5023 taken"):
        asyncio.run(scenario())
    assert journal == ["start alerts", "start gateway", "stop alerts"]


def test_role_api_runs_no_components(database: Database) -> None:
    runtime = Runtime(Settings(db=database.url, api_port=0), database, "api")
    assert runtime.components == [] and runtime.app.state.health_checks == []
    assert build_components(runtime.settings, database, runtime.app, "api") == []
