"""``gpsfleet config``: the effective settings with secrets masked; unsafe defaults refused."""

from __future__ import annotations

import json
from pathlib import Path

from tests.api.support import clean_env, gpsfleet


def test_config_masks_secrets_and_dsn_passwords(tmp_path: Path) -> None:
    config_file = tmp_path / "gpsfleet.toml"
    config_file.write_text(
        '[gateway.mqtt]\nenabled = true\npassword = "mqtt-hunter2"\n'
        '[notifications.smtp]\nhost = "mail.example"\npassword = "smtp-hunter2"\n'
        "[gateway.protocols.jt808]\nport = 6808\n"
    )
    env = clean_env(
        GPSFLEET_DB="postgresql://fleet:db-hunter2@db.example:5432/gpsfleet",
        GPSFLEET_SECRET_KEY="key-hunter2",
        GPSFLEET_API_PORT="9090",
        GPSFLEET_GATEWAY__MQTT__URL="mqtts://gateway:broker-hunter2@broker.example:8883",
    )
    result = gpsfleet("--config", str(config_file), "config", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout
    dump = json.loads(result.stdout)
    assert dump["db"] == "postgresql://fleet:***@db.example:5432/gpsfleet"
    assert dump["secret_key"] == "***"
    assert dump["gateway"]["mqtt"]["password"] == "***" and dump["gateway"]["mqtt"]["enabled"] is True
    assert dump["notifications"]["smtp"]["password"] == "***"
    assert dump["gateway"]["mqtt"]["url"] == "mqtts://gateway:***@broker.example:8883"
    assert dump["api_port"] == 9090
    assert dump["gateway"]["protocols"]["jt808"]["port"] == 6808
    assert dump["gateway"]["protocols"]["jt808"]["tz"] == "+08:00"  # the rest of the section kept
    assert dump["gateway"]["protocols"]["gt06"]["port"] == 5023  # other protocols kept

    text = gpsfleet("--config", str(config_file), "config", env=env)
    assert text.returncode == 0 and "hunter2" not in text.stdout
    lines = text.stdout.splitlines()
    assert 'db = "postgresql://fleet:***@db.example:5432/gpsfleet"' in lines
    assert 'secret_key = "***"' in lines
    assert "gateway.protocols.jt808.port = 6808" in lines


def test_defaults_run_out_of_the_box() -> None:
    result = gpsfleet("config", "--json")
    assert result.returncode == 0, result.stderr
    dump = json.loads(result.stdout)
    assert dump["db"] == "sqlite:///var/gpsfleet.db" and dump["api_host"] == "127.0.0.1"


def test_default_secret_is_refused_off_localhost() -> None:
    for command in (["config"], ["serve", "--db", "sqlite:///unused.db"]):
        result = gpsfleet(*command, env=clean_env(GPSFLEET_API_HOST="0.0.0.0"))
        assert result.returncode == 2, command
        assert "invalid settings" in result.stderr and "GPSFLEET_SECRET_KEY" in result.stderr
        assert "Traceback" not in result.stderr
    allowed = gpsfleet("config", env=clean_env(GPSFLEET_API_HOST="0.0.0.0", GPSFLEET_SECRET_KEY="s3cret-k3y"))
    assert allowed.returncode == 0, allowed.stderr


def test_invalid_values_name_the_setting(tmp_path: Path) -> None:
    result = gpsfleet(
        "config", env=clean_env(GPSFLEET_API_PORT="eighty", GPSFLEET_GATEWAY__MAX_CONNECTIONS="0")
    )
    assert result.returncode == 2
    assert "api_port:" in result.stderr and "gateway.max_connections:" in result.stderr
    missing = gpsfleet("--config", str(tmp_path / "nope.toml"), "config")
    assert missing.returncode == 2 and "cannot read the settings file" in missing.stderr
