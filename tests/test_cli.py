"""Every ``gpsfleet`` command, and every sub-command below it, answers ``--help`` (exit 0).

The paths come from the parser built from ``app.commands.COMMANDS``, so a new command is
covered without touching this file.  Top-level commands run the installed console script;
deeper ones run in-process (same parser, much cheaper on a busy machine).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from app.cli import build_parser, main
from tests.api.support import gpsfleet


def _command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every path of sub-command names, found from the registered parsers themselves."""
    paths = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                paths.extend(_command_paths(child, (*prefix, name)))
    return paths


COMMAND_PATHS = _command_paths(build_parser())


def test_every_registered_command_is_found() -> None:
    from app.commands import COMMANDS

    top_level = {path[0] for path in COMMAND_PATHS if path}
    assert len(top_level) >= len(COMMANDS)
    assert {"serve", "token", "config"} <= top_level
    assert ("token", "create") in COMMAND_PATHS


@pytest.mark.parametrize(
    "path", [p for p in COMMAND_PATHS if len(p) <= 1], ids=lambda path: " ".join(path) or "gpsfleet"
)
def test_console_script_help(path: tuple[str, ...]) -> None:
    result = gpsfleet(*path, "--help", timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: gpsfleet")
    assert result.stderr == ""


@pytest.mark.parametrize("path", [p for p in COMMAND_PATHS if len(p) > 1], ids=" ".join)
def test_sub_command_help(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*path, "--help"])
    assert exit_.value.code == 0
    output = capsys.readouterr()
    assert output.out.startswith(f"usage: gpsfleet {' '.join(path)}")
    assert output.err == ""


def test_the_readme_names_every_benchmark() -> None:
    """The README's command list is where an operator looks first: every bench is in it."""
    import re
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"^gpsfleet bench \{([^}]*)\}", readme, re.M)[0].split(","))
    named |= set(re.findall(r"^gpsfleet bench ([a-z-]+)\b", readme, re.M))
    benches = {path[1] for path in COMMAND_PATHS if len(path) == 2 and path[0] == "bench"}
    assert benches and named == benches


def test_a_settings_file_that_is_not_toml_is_named_in_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gpsfleet.toml"
    path.write_text("db = \n")
    monkeypatch.setenv("GPSFLEET_CONFIG", str(path))  # --config sets it: restored after the test
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", str(path), "config"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"cannot read the settings file {path}:" in err
    assert "line 1" in err


def test_config_names_its_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Which file and which GPSFLEET_* variables made these values (never the variables' values)."""
    for name in [name for name in os.environ if name.startswith("GPSFLEET_")]:
        monkeypatch.delenv(name)  # CI sets variables of its own
    path = tmp_path / "gpsfleet.toml"
    path.write_text("api_port = 9000\n")
    monkeypatch.setenv("GPSFLEET_CONFIG", str(path))
    monkeypatch.setenv("GPSFLEET_API_PORT", "9001")
    monkeypatch.setenv("GPSFLEET_SECRET_KEY", "very-secret-value")
    monkeypatch.setenv("GPSFLEET_API_PROT", "9002")  # a typo: pydantic ignores it, the operator should not
    assert main(["--config", str(path), "config"]) == 0
    out = capsys.readouterr().out
    assert f"# settings file: {path}" in out
    assert "# environment: GPSFLEET_API_PORT, GPSFLEET_SECRET_KEY\n" in out
    assert "# ignored, not settings: GPSFLEET_API_PROT\n" in out
    assert "very-secret-value" not in out
    assert "api_port = 9001" in out


@pytest.mark.parametrize("path", [p for p in COMMAND_PATHS if p], ids=" ".join)
def test_help_shows_no_source_markup(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    """The descriptions come from docstrings: their ``literal`` marks showed in --help."""
    with pytest.raises(SystemExit):
        main([*path, "--help"])
    assert "``" not in capsys.readouterr().out


@pytest.mark.parametrize("command", [["simulate", "--protocol", "nmea"], ["demo"]], ids=" ".join)
@pytest.mark.parametrize("duration", ["-5", "0", "nan", "soon"])
def test_a_duration_that_is_not_a_positive_number_is_a_usage_error(
    command: list[str], duration: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--duration -5`` ran the demo (store, gateway, API, fleet) only to stop it at once."""
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--duration", duration])
    assert exit_info.value.code == 2
    assert "--duration: seconds must be a number > 0" in capsys.readouterr().err
