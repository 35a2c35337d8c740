"""``gpsfleet decode`` run as a subprocess: real frames of every protocol, stdin, errors, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.protocols import PROTOCOLS
from tests.protocols.support import load_captures

ROOT = Path(__file__).resolve().parent.parent
MESSAGE_KEYS = {
    "type",
    "terminal_id",
    "time",
    "valid",
    "lat",
    "lon",
    "speed_kmh",
    "course",
    "altitude_m",
    "satellites",
    "hdop",
    "alarms",
    "attributes",
}
KINDS = {"framing", "checksum", "malformed", "unsupported", "session"}


def gpsfleet(*args: str, stdin: str | None = None) -> tuple[int, list[dict[str, Any]], str]:
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "decode", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()], done.stderr


def check_shape(result: dict[str, Any]) -> None:
    if result["ok"]:
        assert set(result) == {"ok", "messages", "reply"}
        assert result["reply"] is None or bytes.fromhex(result["reply"])
        for message in result["messages"]:
            assert set(message) == MESSAGE_KEYS
            assert message["time"] is None or message["time"].endswith("Z")
    else:
        assert set(result) == {"ok", "error"}
        assert result["error"].split(":", 1)[0] in KINDS, result


def sessions(protocol: str) -> list[list]:
    """The captures as the source ran them: NMEA's last two lines on a fresh decoder."""
    captures = load_captures(protocol)
    if protocol == "nmea":
        return [[c for c in captures if c.seq < 34], [c for c in captures if c.seq >= 34]]
    return [captures]


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_every_captured_frame_in_session(protocol: str) -> None:
    """Intact frames decode (NMEA's sample has wrong checksums: --lenient there); frames the
    source itself broke are error lines, and then the exit status is 1."""
    for captures in sessions(protocol):
        args = ["--protocol", protocol]
        if protocol == "nmea":
            args.append("--lenient")
        if all(c.encoding == "hex" for c in captures):
            args.append("--hex")  # H02 mixes text and hex: the default text falls back to hex
        code, results, stderr = gpsfleet(*args, *(c.frame for c in captures))
        assert len(results) == len(captures), stderr
        for capture, result in zip(captures, results, strict=True):
            check_shape(result)
            if capture.intact:
                assert result["ok"], (capture, result)
                if capture.check.startswith("verifyPosition"):
                    assert result["messages"], capture
        assert code == (0 if all(r["ok"] for r in results) else 1)


def test_stdin_lines_are_one_session_with_replies() -> None:
    lines = "##,imei:359586015829802,A;\n\n359586015829802\nimei:359586015829802,help me,0809231429,,F,062947.294,A,2234.4026,N,11354.3277,E,0.00,;\n"
    code, results, _ = gpsfleet("--protocol", "gps103", stdin=lines)
    assert code == 0
    assert [r["reply"] for r in results] == [b"LOAD".hex(), b"ON".hex(), None]
    assert results[2]["messages"][0]["alarms"] == ["sos"]
    assert results[2]["messages"][0]["time"] == "2008-09-23T06:29:47.294Z"


def test_identification_names_the_terminal_for_later_frames() -> None:
    code, results, _ = gpsfleet(
        "--protocol",
        "nmea",
        "$GPRMC,012006,A,4828.10,N,1353.52,E,0.00,0.00,180915,020.3,E*42",
        "$GPFID,ID123456ABC",
        "$GPRMC,012007,A,4828.10,N,1353.52,E,0.00,0.00,180915,020.3,E",
    )
    assert code == 0
    assert results[0]["messages"] == []
    assert [m["type"] for m in results[1]["messages"]] == ["login", "position"]
    assert {m["terminal_id"] for m in results[1]["messages"] + results[2]["messages"]} == {"ID123456ABC"}


def test_errors_are_lines_and_exit_one() -> None:
    code, results, _ = gpsfleet(
        "--protocol",
        "h02",
        "--hex",
        "zz-not-hex",
        "2427051711092133391406135002584900014337822e000000ffffffffff0000",
    )
    assert code == 1
    assert results[0] == {"ok": False, "error": results[0]["error"]}
    assert results[0]["error"].startswith("malformed: ")
    assert results[1]["ok"] and results[1]["messages"][0]["terminal_id"] == "2705171109"


def test_checksum_error_unless_lenient() -> None:
    frame = "$GPGGA,000000.000,6010.34349,N,02445.72838,E,1,05,1.7,0.9,M,35.1,M,,*59"
    code, results, _ = gpsfleet("--protocol", "nmea", "$PGID,42", frame)
    assert code == 1
    assert results[1]["error"].startswith("checksum: ")
    code, results, _ = gpsfleet("--protocol", "nmea", "--lenient", "$PGID,42", frame)
    assert code == 0
    assert results[1]["messages"][-1]["attributes"]["checksum_ok"] is False


def test_udp_datagram_and_time_zone() -> None:
    datagram = (
        "*HQ,2705171109,V1,213324,A,5002.5849,N,01433.7822,E,0.00,000,140613,FFFFFFFF#*HQ,2705171109,HTBT,88#"
    )
    code, results, _ = gpsfleet("--protocol", "h02", "--udp", datagram)
    assert code == 0
    assert [m["type"] for m in results[0]["messages"]] == ["position", "heartbeat"]
    obd = "imei:359710048977327,OBD,180301094003,5000000,0.00,0.00,98,18,68.63%,55,25.10%,1368,14.24,,,,;"
    code, results, _ = gpsfleet("--protocol", "gps103", "--tz", "+08:00", obd)
    assert code == 0
    assert results[0]["messages"][0]["time"] == "2018-03-01T01:40:03Z"


@pytest.mark.parametrize(
    "args",
    [
        ["--protocol", "nmea", "--tz", "Mars/Olympus", "x"],
        ["--protocol", "nosuch", "x"],
        ["--protocol", "h02", "--hex", "--text", "x"],
        [],
    ],
)
def test_usage_errors_exit_two(args: list[str]) -> None:
    code, results, stderr = gpsfleet(*args)
    assert code == 2
    assert results == []
    assert "usage" in stderr


def test_bench_decode_json_names_every_protocol() -> None:
    """The benchmark's shape (its speed is a figure, not a test): one positive rate per protocol."""
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "bench", "decode", "--json", "--seconds", "0.02"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert set(figures) == set(PROTOCOLS)
    assert all(isinstance(rate, int) and rate > 0 for rate in figures.values())


def test_a_reader_that_stops_early_ends_decode_quietly() -> None:
    """``gpsfleet decode ... | head -1`` printed a BrokenPipeError traceback."""
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "decode", "--protocol", "gt06", "--hex", *["zz"] * 20_000],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.readline()  # the output is far larger than a pipe holds: the writer blocks
    process.stdout.close()
    error = process.stderr.read().decode()
    assert process.wait(timeout=60) != 0
    assert "Traceback" not in error
