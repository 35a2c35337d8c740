"""docker-compose.yml cannot run here: check that every GPSFLEET_* variable it sets is a
real setting with a valid value, that every service has a health check, and that the
image, the broker config and the published ports agree with the settings."""

from __future__ import annotations

import os
import re
import types
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel

from core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]


@pytest.fixture(autouse=True)
def _no_gpsfleet_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("GPSFLEET_"):
            monkeypatch.delenv(name)


def _interpolate(value: str) -> str:
    """What compose substitutes: ${VAR:-default} → default, ${VAR:?message} → a test value."""
    value = re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)
    value = re.sub(r"\$\{[A-Z0-9_]+:\?[^}]*\}", "compose-test-secret", value)
    assert "${" not in value, f"unhandled interpolation in {value!r}"
    return value.replace("$$", "$")


def _environment(service: str) -> dict[str, str]:
    environment = SERVICES[service].get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {name: _interpolate(str(value)) for name, value in environment.items()}


def _is_setting(annotation: Any, path: list[str]) -> bool:
    """Does ``path`` (lower-case names split on ``__``) lead to a field of ``annotation``?"""
    if not path:
        return True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(path[0])
        return field is not None and _is_setting(field.annotation, path[1:])
    origin = get_origin(annotation)
    if origin is dict:
        return _is_setting(get_args(annotation)[1], path[1:])  # any key, e.g. a protocol name
    if origin in (Union, types.UnionType):
        return any(_is_setting(arg, path) for arg in get_args(annotation) if arg is not type(None))
    return False


def test_every_service_has_a_healthcheck() -> None:
    assert set(SERVICES) == {"timescaledb", "mosquitto", "gpsfleet"}
    for name, service in SERVICES.items():
        assert service["healthcheck"]["test"], name
    assert "pg_isready" in " ".join(SERVICES["timescaledb"]["healthcheck"]["test"])
    assert SERVICES["timescaledb"]["image"].startswith("timescale/timescaledb:")
    assert SERVICES["mosquitto"]["image"].startswith("eclipse-mosquitto:")
    depends = SERVICES["gpsfleet"]["depends_on"]
    assert {name: rule["condition"] for name, rule in depends.items()} == {
        "timescaledb": "service_healthy",
        "mosquitto": "service_healthy",
    }


def test_every_gpsfleet_variable_is_a_real_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    environment = _environment("gpsfleet")
    variables = {name: value for name, value in environment.items() if name.startswith("GPSFLEET_")}
    assert variables and set(variables) == set(environment)
    # pydantic-settings silently ignores unknown top-level variables: check the names ourselves.
    unknown = [
        name
        for name in variables
        if not _is_setting(Settings, name.removeprefix("GPSFLEET_").lower().split("__"))
    ]
    assert unknown == []

    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    settings = Settings()  # a wrong value fails here, as it would in the container
    assert settings.db == "postgresql://gpsfleet:gpsfleet@timescaledb:5432/gpsfleet"
    assert settings.api_host == "0.0.0.0" and settings.api_port == 8080
    assert settings.secret_key.get_secret_value() == "compose-test-secret"
    assert settings.gateway.mqtt.enabled and settings.gateway.mqtt.url == "mqtt://mosquitto:1883"
    assert len(settings.gateway.protocols) == len(Settings().gateway.protocols)


def test_the_check_catches_a_misspelt_variable() -> None:
    assert _is_setting(Settings, ["gateway", "protocols", "jt808", "port"])
    assert not _is_setting(Settings, ["gateway", "protocols", "jt808", "prot"])
    assert not _is_setting(Settings, ["api_prot"])
    assert _is_setting(Settings, ["notifications", "smtp", "password"])


def test_the_secret_must_come_from_the_environment() -> None:
    raw = SERVICES["gpsfleet"]["environment"]["GPSFLEET_SECRET_KEY"]
    assert raw.startswith("${GPSFLEET_SECRET_KEY:?")


def test_ports_published_are_the_settings_ports() -> None:
    defaults = Settings()
    published = set(SERVICES["gpsfleet"]["ports"])
    assert f"{defaults.api_port}:{defaults.api_port}" in published
    for name, protocol in defaults.gateway.protocols.items():
        assert f"{protocol.port}:{protocol.port}" in published, name
        if protocol.udp_port:
            assert f"{protocol.udp_port}:{protocol.udp_port}/udp" in published, name
    assert "1883:1883" in SERVICES["mosquitto"]["ports"]


def test_image_and_broker_config_are_in_the_repo() -> None:
    assert SERVICES["gpsfleet"]["build"] == "."
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "FROM python:3.11-slim" in dockerfile
    assert "pip install ." in dockerfile and 'CMD ["serve"]' in dockerfile
    mounts = SERVICES["mosquitto"]["volumes"]
    assert "./deploy/mosquitto.conf:/mosquitto/config/mosquitto.conf:ro" in mounts
    assert "listener 1883" in (ROOT / "deploy" / "mosquitto.conf").read_text()


def test_the_example_settings_file_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPSFLEET_CONFIG", str(ROOT / "deploy" / "gpsfleet.toml"))
    settings = Settings()
    assert settings.gateway.protocols["jt808"].tz == "+08:00"
    assert settings.gateway.protocols["gt06"].port == 5023  # untouched sections keep defaults
