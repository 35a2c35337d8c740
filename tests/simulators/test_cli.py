"""``gpsfleet simulate`` from the command line: quick flags against a server, JSON figures,
scenario errors with their line, and --registry writing the fleet into the registry."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.cli import build_parser, main
from app.commands.simulate import scenario_from_args
from gateway.protocols import PROTOCOLS
from simulators.scenario import expand, quick_scenario
from store.db import open_database
from store.tables.registry import installations, terminals
from tests.simulators.support import AckingServer


@pytest.fixture
def jt808_server() -> Iterator[AckingServer]:
    """The acking server on its own event loop in a thread (the command runs its own loop)."""
    server = AckingServer(PROTOCOLS["jt808"])
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
    yield server
    asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def test_quick_flags_drive_terminals_at_a_target_and_print_figures(
    jt808_server: AckingServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "simulate",
            "--protocol",
            "jt808",
            "--terminals",
            "3",
            "--interval",
            "1",
            "--target",
            f"tcp://127.0.0.1:{jt808_server.port}",
            "--duration",
            "3",
            "--json",
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    figures = json.loads(captured.out.strip().splitlines()[-1])
    assert figures["handshakes"] == 3 and figures["peak_connected"] == 3
    assert figures["fixes_acked"] >= 6 and figures["frames_sent"] > 0
    assert len(jt808_server.received.terminal_ids) == 3
    assert "sent" in captured.err and "acked" in captured.err  # the progress line and the summary


def test_a_bad_scenario_is_refused_with_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[scenario]\nname = "x"\n\n[[fleet]]\nname = "a"\nprotocol = "jt808"\ncount = 0\n')
    assert main(["simulate", "--scenario", str(path)]) == 2
    assert f"{path}:7: fleet[0].count: must be >= 1 and <= 1000000, got 0" in capsys.readouterr().err
    assert main(["simulate", "--protocol", "gt06", "--target", "udp://127.0.0.1:9"]) == 2
    assert "gt06 terminals do not use udp" in capsys.readouterr().err


def test_registry_flag_writes_the_fleet_once(
    jt808_server: AckingServer, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "simulate",
        "--protocol",
        "jt808",
        "--terminals",
        "4",
        "--interval",
        "1",
        "--duration",
        "1",
        "--target",
        f"tcp://127.0.0.1:{jt808_server.port}",
        "--registry",
        "--db",
        sqlite_url,
    ]
    assert main(args) == 0
    assert main(args) == 0  # idempotent: the second run finds them registered
    assert "4 terminals were already registered" in capsys.readouterr().err
    database = open_database(sqlite_url)
    with database.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(terminals)).scalar_one() == 4
        assert conn.execute(select(func.count()).select_from(installations)).scalar_one() == 4
    database.dispose()


def test_interval_and_heartbeat_flags_apply_to_every_group_of_a_scenario() -> None:
    args = build_parser().parse_args(
        ["simulate", "--scenario", "mixed-fleet", "--interval", "2", "--heartbeat", "7"]
    )
    scenario, _target = scenario_from_args(args)
    assert {group.timing.interval_s for group in scenario.fleet} == {2.0}
    assert {group.timing.heartbeat_s for group in scenario.fleet} == {7.0}


@pytest.mark.parametrize(
    "flag", [["--terminals", "5"], ["--seed", "3"], ["--target", "tcp://127.0.0.1:5015"]]
)
def test_quick_mode_flags_with_a_scenario_are_refused_not_ignored(
    flag: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["simulate", "--scenario", "mixed-fleet", "--duration", "1", *flag])
    assert code == 2
    err = capsys.readouterr().err
    assert f"{flag[0]} is for quick mode" in err
    assert "Traceback" not in err


def test_a_scenario_interval_under_a_second_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--scenario", "mixed-fleet", "--interval", "0.5", "--duration", "1"]) == 2
    assert "--interval must be at least 1 s" in capsys.readouterr().err


def test_a_registry_conflict_is_a_clear_error_not_a_traceback(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from fleet import service

    plan = expand(
        quick_scenario(protocol="jt808", terminals=1, interval_s=5, transport="tcp", duration_s=None)
    )[0]
    database = open_database(sqlite_url)
    with database.engine.begin() as conn:
        customer = service.create_customer(conn, name="Someone Else")
        service.create_vehicle(conn, plate=plan.plate, customer_id=customer["id"])
    database.dispose()
    args = [
        "simulate",
        "--protocol",
        "jt808",
        "--terminals",
        "1",
        "--duration",
        "1",
        "--registry",
        "--db",
        sqlite_url,
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "gpsfleet simulate: cannot register the fleet: a vehicle with plate" in err
    assert "already exists" in err and "Traceback" not in err


def test_the_shipped_drill_settings_are_the_fast_rules_the_demo_uses(monkeypatch: pytest.MonkeyPatch) -> None:
    """A drill against a gateway on the default rules (minutes of sustain) failed most rows
    with no hint; deploy/fault-drill.toml is the gateway config a drill needs."""
    from app.commands.demo import FAST_ALERT_RULES, FAST_EVALUATE_EVERY_S
    from core.settings import load_settings

    path = Path(__file__).resolve().parents[2] / "deploy" / "fault-drill.toml"
    monkeypatch.setenv("GPSFLEET_CONFIG", str(path))  # load_settings sets it: restored after
    settings = load_settings(path)
    assert settings.alerts.evaluate_every_s == FAST_EVALUATE_EVERY_S
    rules = {name: rule.model_dump(exclude_unset=True) for name, rule in settings.alerts.rules.items()}
    assert rules == FAST_ALERT_RULES
