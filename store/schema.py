"""The whole schema: every table module imported once so ``metadata`` knows them all."""

from __future__ import annotations

import store.tables.alerts  # noqa: F401
import store.tables.auth  # noqa: F401
import store.tables.gateway  # noqa: F401
import store.tables.positions  # noqa: F401
import store.tables.registry  # noqa: F401
from store.tables.base import metadata

__all__ = ["metadata"]
