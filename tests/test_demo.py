"""The README's first command: ``gpsfleet demo`` starts everything in one process, prints an
admin token, repair tickets appear in the API within a minute, and Ctrl-C stops it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.services import free_port

pytestmark = [pytest.mark.slow, pytest.mark.mqtt]

GPSFLEET = str(Path(sys.executable).with_name("gpsfleet"))


def test_demo_opens_tickets_within_a_minute_and_stops_on_ctrl_c(tmp_path: Path, mqtt_url: str) -> None:
    api_port = free_port()
    env = {
        **os.environ,
        "GPSFLEET_DATA_DIR": str(tmp_path / "var"),
        "GPSFLEET_GATEWAY__MQTT__URL": mqtt_url,  # the throwaway broker, not whatever listens on 1883
    }
    env.pop("GPSFLEET_CONFIG", None)
    stderr = open(tmp_path / "demo.err", "wb")
    process = subprocess.Popen(
        [GPSFLEET, "demo", "--duration", "60", "--api-port", str(api_port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    printed: list[str] = []
    try:
        assert process.stdout is not None
        token = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            printed.append(line)
            if "admin token" in line:
                token = line.split()[-1]
            if "Ctrl-C stops" in line:  # the end of the banner
                break
        assert token, "the demo printed no token:\n" + "".join(printed)
        text = "".join(printed)
        assert "sqlite:///var/demo.db" in text  # the store it chose, said out loud
        assert f"http://127.0.0.1:{api_port}/docs" in text
        assert "MQTT: broker" in text and "answers" in text
        assert "serial" in text and "/dev/pts/" in text
        assert f"http://127.0.0.1:{api_port}/dashboard/" in text
        assert httpx.get(f"http://127.0.0.1:{api_port}/dashboard/", timeout=5).status_code == 200

        headers = {"Authorization": f"Bearer {token}"}
        base = f"http://127.0.0.1:{api_port}/api/v1"
        tickets: list[dict] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            response = httpx.get(f"{base}/tickets", headers=headers, timeout=5)
            assert response.status_code == 200, response.text
            tickets = response.json()["items"]
            wanted = {"gnss_antenna_cut", "power_cut", "sim_mismatch"} <= {t["fault"] for t in tickets}
            if wanted and {t["in_warranty"] for t in tickets} == {True, False}:
                break
            time.sleep(1)
        faults = {t["fault"] for t in tickets}
        assert {"gnss_antenna_cut", "power_cut", "sim_mismatch"} <= faults, faults
        assert {t["in_warranty"] for t in tickets} == {True, False}, "some tickets are out of warranty"
        alerts = httpx.get(f"{base}/alerts", headers=headers, timeout=5).json()["items"]
        assert len(alerts) >= len(tickets)
        assert httpx.get(f"{base}/tickets", timeout=5).status_code == 401  # the token is needed

        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=90)
        printed.append(rest)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        stderr.close()
    log = (tmp_path / "demo.err").read_text(errors="replace")
    assert process.returncode == 0, "".join(printed) + log
    assert "Traceback" not in log, log
    assert "stopping: the gateway drains" in "".join(printed)
    assert (tmp_path / "var" / "demo.db").exists()
