"""``gpsfleet config``: the effective settings (file, environment, flags), secrets masked."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterator
from typing import Any

from app.context import add_db_argument, settings_from
from core.settings import Settings, masked_dump


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "config",
        help="print the effective settings, secrets and DSN passwords masked",
        description=(
            "Print the settings as gpsfleet would run with them: defaults, the TOML file "
            "(--config or GPSFLEET_CONFIG), GPSFLEET_* variables and flags. Secrets show as ***."
        ),
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_db_argument(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    dump = masked_dump(settings_from(args))
    if args.json:
        print(json.dumps(dump, indent=2, sort_keys=True))
    else:
        for line in sources(args):
            print(f"# {line}")
        for key, value in flatten(dump):
            print(f"{key} = {json.dumps(value)}")
    return 0


def sources(args: argparse.Namespace) -> list[str]:
    """Where the values come from, for the operator: the file and the variables' names."""
    path = getattr(args, "config", None) or os.environ.get("GPSFLEET_CONFIG")
    variables = sorted(
        name for name in os.environ if name.startswith("GPSFLEET_") and name != "GPSFLEET_CONFIG"
    )
    settings = [name for name in variables if _names_a_setting(name)]
    lines = [
        f"settings file: {path}" if path else "settings file: none (--config FILE or GPSFLEET_CONFIG)",
        f"environment: {', '.join(settings)}" if settings else "environment: no GPSFLEET_* settings",
    ]
    if ignored := [name for name in variables if name not in settings]:
        lines.append(f"ignored, not settings: {', '.join(ignored)}")
    return lines


def _names_a_setting(variable: str) -> bool:
    """GPSFLEET_API_PORT and GPSFLEET_GATEWAY__... name settings; GPSFLEET_API_PROT does not."""
    field = variable.removeprefix("GPSFLEET_").split("__", 1)[0].lower()
    return field in Settings.model_fields


def flatten(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Dotted keys with their leaf values: ``gateway.protocols.jt808.port = 5015``."""
    if isinstance(node, dict) and node:
        for key in sorted(node):
            yield from flatten(node[key], f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(node, list) and node and any(isinstance(item, dict | list) for item in node):
        for index, item in enumerate(node):
            yield from flatten(item, f"{prefix}.{index}")
    else:
        yield prefix, node
