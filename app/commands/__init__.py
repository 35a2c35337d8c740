"""The sub-commands of ``gpsfleet``, in the order ``--help`` lists them."""

from __future__ import annotations

from types import ModuleType

from app.commands import bench, config, decode, demo, fleet, report, serve, simulate, token

COMMANDS: list[ModuleType] = [
    serve,
    token,
    fleet,
    report,
    config,
    bench,
    decode,
    simulate,
    demo,
]
