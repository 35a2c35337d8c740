"""Throwaway servers the suite starts itself: a PostgreSQL cluster and a Mosquitto broker.

Each runs from the installed server binaries in a temporary folder on a free port, so the
suite depends on no machine's configuration and a fault test may stop, kill and restart
them.  ``GPSFLEET_TEST_PG_URL`` / ``GPSFLEET_TEST_MQTT_URL`` point the suite at existing
servers instead (then fault tests that stop a server are refused with a clear error).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


class ServiceMissing(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def _pg_bindir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    for directory in reversed(candidates):
        if Path(directory, "postgres").exists() and Path(directory, "initdb").exists():
            return Path(directory)
    found = shutil.which("postgres")
    if found and shutil.which("initdb"):
        return Path(found).parent
    raise ServiceMissing(
        "PostgreSQL server binaries (initdb, postgres) not found: install the Debian package "
        "'postgresql' (apt-get install postgresql) or set GPSFLEET_TEST_PG_URL"
    )


class PostgresServer:
    """A private cluster: initdb into a temporary folder, run as an unprivileged user."""

    def __init__(self) -> None:
        self.bindir = _pg_bindir()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="gpsfleet-pg-"))
        self.datadir = self.root / "data"
        self.process: subprocess.Popen[bytes] | None = None
        self.user: str | None = None
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            self.user = "postgres" if _user_exists("postgres") else "nobody"
            os.chmod(self.root, 0o777)
        self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.datadir),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url_for(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, cmd: list[str]) -> None:
        result = subprocess.run(cmd, user=self.user, capture_output=True, cwd=self.root)
        if result.returncode:
            raise RuntimeError(f"{cmd[0]} failed: {result.stderr.decode(errors='replace')}")

    def start(self) -> None:
        log = open(self.root / "postgres.log", "ab")
        self.process = subprocess.Popen(
            [
                str(self.bindir / "postgres"),
                "-D",
                str(self.datadir),
                "-p",
                str(self.port),
                "-k",
                str(self.root),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=on",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
                "-c",
                "shared_buffers=256MB",
            ],
            user=self.user,
            stdout=log,
            stderr=log,
            cwd=self.root,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    "postgres exited: " + (self.root / "postgres.log").read_text(errors="replace")
                )
            ready = subprocess.run(
                [str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                capture_output=True,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise TimeoutError("postgres did not become ready")

    def stop(self, *, kill: bool = False) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGINT)  # SIGINT: fast shutdown
            self.process.wait(30)
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class MosquittoServer:
    """A private broker with persistence, so a restart keeps QoS 1 sessions."""

    def __init__(self) -> None:
        binary = shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
        )
        if not binary:
            raise ServiceMissing(
                "mosquitto not found: install the Debian package 'mosquitto' or set GPSFLEET_TEST_MQTT_URL"
            )
        self.binary = binary
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="gpsfleet-mqtt-"))
        config = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.root}/",
            "autosave_interval 1",
            "max_queued_messages 100000",
            f"log_dest file {self.root}/mosquitto.log",
        ]
        if os.geteuid() == 0:
            config.append("user root")
        (self.root / "mosquitto.conf").write_text("\n".join(config) + "\n")
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.root / "mosquitto.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_port(self.port, 20)

    def stop(self, *, kill: bool = False) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            self.process.wait(20)
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False
