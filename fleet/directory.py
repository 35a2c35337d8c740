"""The gateway's view of the registry: who is this device id, and may it talk to us?"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, select

from fleet.validation import device_id_candidates
from store.db import Database
from store.tables.registry import installations, terminal_models, terminals, vehicles


@dataclass(frozen=True, slots=True)
class TerminalInfo:
    device_id: str  # as stored in the registry
    terminal_pk: int
    enabled: bool  # False for scrapped, disabled or retired terminals: refuse their data
    status: str
    model_name: str
    protocol: str
    customer_id: int | None  # owner of the vehicle it is installed in, None when not installed
    tz: str | None  # overrides the protocol's time zone when set
    lenient: bool | None  # overrides the protocol's checksum leniency when set


_RESOLVE = select(
    terminals.c.id,
    terminals.c.device_id,
    terminals.c.enabled,
    terminals.c.status,
    terminals.c.retired_at,
    terminals.c.tz,
    terminals.c.lenient,
    terminal_models.c.name.label("model_name"),
    terminal_models.c.protocol,
    vehicles.c.customer_id,
).select_from(
    terminals.join(terminal_models, terminal_models.c.id == terminals.c.model_id)
    .outerjoin(
        installations,
        and_(installations.c.terminal_id == terminals.c.id, installations.c.valid_to.is_(None)),
    )
    .outerjoin(vehicles, vehicles.c.id == installations.c.vehicle_id)
)


class TerminalDirectory:
    """Resolves a device id to its registry entry in one indexed query per call."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def resolve(self, device_id: str) -> TerminalInfo | None:
        candidates = device_id_candidates(device_id)
        with self.database.engine.connect() as conn:
            rows = conn.execute(_RESOLVE.where(terminals.c.device_id.in_(candidates))).all()
        if not rows:
            return None
        row = min(rows, key=lambda r: candidates.index(r.device_id))  # the exact form wins
        return TerminalInfo(
            device_id=row.device_id,
            terminal_pk=row.id,
            enabled=bool(row.enabled) and row.status != "scrapped" and row.retired_at is None,
            status=row.status,
            model_name=row.model_name,
            protocol=row.protocol,
            customer_id=row.customer_id,
            tz=row.tz,
            lenient=row.lenient,
        )
