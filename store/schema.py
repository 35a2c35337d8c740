"""The whole schema: every table module imported once so ``metadata`` knows them all."""

from __future__ import annotations

from store.tables.base import metadata

__all__ = ["metadata"]
