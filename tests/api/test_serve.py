"""``gpsfleet serve`` as a real process: answers /health, drains on SIGTERM and exits 0;
an unreachable PostgreSQL is a clear error naming the DSN (password masked), no fallback."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

from api.auth import create_token
from core.settings import Settings
from store.db import open_database
from tests.api.support import GPSFLEET, clean_env, gpsfleet
from tests.services import free_port


def _token(db_url: str, role: str = "noc") -> str:
    database = open_database(db_url)
    try:
        return create_token(database.engine, role=role).token
    finally:
        database.dispose()


def _free_gateway_ports() -> dict[str, str]:
    """Every protocol listener on a port the OS picks (0), so tests never collide."""
    variables = {}
    for name, protocol in Settings().gateway.protocols.items():
        variables[f"GPSFLEET_GATEWAY__PROTOCOLS__{name.upper()}__PORT"] = "0"
        if protocol.udp_port is not None:
            variables[f"GPSFLEET_GATEWAY__PROTOCOLS__{name.upper()}__UDP_PORT"] = "0"
    return variables


def _wait_healthy(process: subprocess.Popen[str], port: int, token: str) -> httpx.Response:
    """Poll /health until the server answers; fail with its output if it died first."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited {process.returncode}: {process.communicate()[1]}")
        try:
            return httpx.get(
                f"http://127.0.0.1:{port}/health", headers={"Authorization": f"Bearer {token}"}, timeout=5
            )
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("serve never answered /health")


def _stop(process: subprocess.Popen[str]) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    try:
        _out, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        _out, err = process.communicate()
        raise AssertionError(f"serve did not stop on SIGTERM: {err}") from None
    return process.returncode, err


def test_serve_answers_health_and_stops_on_sigterm(db_url: str, tmp_path: Path) -> None:
    token = _token(db_url)
    port = free_port()
    process = subprocess.Popen(
        [GPSFLEET, "serve", "--db", db_url, "--api-port", str(port)],  # role "all": API, gateway, alerts
        env=clean_env(GPSFLEET_DATA_DIR=str(tmp_path / "data"), **_free_gateway_ports()),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        response = _wait_healthy(process, port, token)
        assert response.status_code == 200, response.text
        checks = response.json()["checks"]
        assert checks["database"]["ok"] is True
        assert {"gateway", "alerts"} <= set(checks), checks
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 401
    finally:
        returncode, err = _stop(process)
    assert returncode == 0, err
    assert "SIGTERM received: draining and stopping" in err
    assert f"serving on http://127.0.0.1:{port}" in err
    assert "uvloop loop" in err


def test_serve_takes_its_database_and_port_from_the_environment(sqlite_url: str, tmp_path: Path) -> None:
    token = _token(sqlite_url)
    port = free_port()
    env = clean_env(
        GPSFLEET_DB=sqlite_url,
        GPSFLEET_API_PORT=str(port),
        GPSFLEET_ROLE="gateway",
        GPSFLEET_DATA_DIR=str(tmp_path / "data"),
        GPSFLEET_GATEWAY__HOST="127.0.0.1",
        **_free_gateway_ports(),
    )
    process = subprocess.Popen(
        [GPSFLEET, "serve"], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert _wait_healthy(process, port, token).status_code == 200
        headers = {"Authorization": f"Bearer {token}"}
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", headers=headers, timeout=5)
        assert metrics.status_code == 200 and "gpsfleet_api_requests_total" in metrics.text
        # a gateway-only process serves no domain API
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/me", headers=headers, timeout=5).status_code == 404
    finally:
        returncode, err = _stop(process)
    assert returncode == 0, err
    assert not (tmp_path / "var" / "gpsfleet.db").exists()  # the configured database, not the default
    assert "starting gateway" in err and "stopping gateway" in err


def test_unreachable_postgresql_exits_naming_the_masked_dsn(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql://fleet:hunter2@127.0.0.1:{port}/gpsfleet"
    for command in (["serve", "--db", url], ["token", "list", "--db", url]):
        result = gpsfleet(*command, cwd=tmp_path)
        assert result.returncode == 2, command
        assert f"database postgresql://fleet:***@127.0.0.1:{port}/gpsfleet is unreachable" in result.stderr
        assert "hunter2" not in result.stderr + result.stdout
        assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # no SQLite fallback file appeared


def test_a_taken_port_is_a_clear_error(sqlite_url: str, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = gpsfleet("serve", "--db", sqlite_url, "--api-port", str(port), cwd=tmp_path)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "starting gateway" not in result.stderr  # refused before any terminal could connect
