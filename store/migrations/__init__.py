"""The ordered list of schema migrations. Add a module and one line here."""

from __future__ import annotations

from types import ModuleType

MIGRATIONS: list[ModuleType] = []
