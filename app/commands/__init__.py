"""The sub-commands of ``gpsfleet``, in the order ``--help`` lists them."""

from __future__ import annotations

from types import ModuleType

COMMANDS: list[ModuleType] = []
