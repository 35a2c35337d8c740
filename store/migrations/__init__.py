"""The ordered list of schema migrations. Add a module and one line here."""

from __future__ import annotations

from types import ModuleType

from store.migrations import (
    m0001_positions,
    m0002_auth,
    m0003_registry,
    m0004_gateway,
    m0005_alerts,
    m0006_state_fillfactor,
    m0007_ticket_purchase_date,
)

MIGRATIONS: list[ModuleType] = [
    m0001_positions,
    m0002_auth,
    m0003_registry,
    m0004_gateway,
    m0005_alerts,
    m0006_state_fillfactor,
    m0007_ticket_purchase_date,
]
