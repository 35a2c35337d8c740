"""What the rules need from the fleet registry per terminal (model, customer, SIM), looked up in
bulk and cached for a minute, so a batch of a thousand terminals costs one query, not a thousand."""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import and_, select
from sqlalchemy.engine import Connection

from store.tables.registry import installations, sims, terminal_models, terminals, vehicles

TTL_S = 60.0


@dataclass(frozen=True, slots=True)
class RegistryFacts:
    model_name: str | None
    customer_id: int | None
    iccid: str | None


class RegistryCache:
    def __init__(self, ttl_s: float = TTL_S) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[float, RegistryFacts | None]] = {}

    def facts(self, conn: Connection, terminal_ids: Iterable[str]) -> dict[str, RegistryFacts | None]:
        now = time.monotonic()
        out: dict[str, RegistryFacts | None] = {}
        missing: list[str] = []
        for tid in terminal_ids:
            entry = self._entries.get(tid)
            if entry is None or entry[0] < now:
                missing.append(tid)
            else:
                out[tid] = entry[1]
        if missing:
            found = current_facts(conn, missing)
            found.update(_by_other_forms(conn, [tid for tid in missing if tid not in found]))
            for tid in missing:
                facts = found.get(tid)
                # spread the expiries so that a fleet seen at once is not looked up again at once
                self._entries[tid] = (now + self.ttl_s * random.uniform(0.75, 1.25), facts)
                out[tid] = facts
        return out

    def clear(self) -> None:
        self._entries.clear()


def current_facts(conn: Connection, device_ids: list[str]) -> dict[str, RegistryFacts]:
    """Model, owner and SIM of each terminal as installed now (one query per thousand)."""
    out: dict[str, RegistryFacts] = {}
    for start in range(0, len(device_ids), 1000):
        query = (
            select(terminals.c.device_id, terminal_models.c.name, vehicles.c.customer_id, sims.c.iccid)
            .select_from(
                terminals.join(terminal_models, terminal_models.c.id == terminals.c.model_id)
                .outerjoin(
                    installations,
                    and_(installations.c.terminal_id == terminals.c.id, installations.c.valid_to.is_(None)),
                )
                .outerjoin(sims, sims.c.id == installations.c.sim_id)
                .outerjoin(vehicles, vehicles.c.id == installations.c.vehicle_id)
            )
            .where(terminals.c.device_id.in_(device_ids[start : start + 1000]))
        )
        for row in conn.execute(query):
            out[row.device_id] = RegistryFacts(row.name, row.customer_id, row.iccid)
    return out


def _by_other_forms(conn: Connection, device_ids: list[str]) -> dict[str, RegistryFacts]:
    """Terminals that send their id in another form than the registry keeps (GT06's leading
    zero, a JT/T 808 phone without its padding): every other form looked up in one query."""
    from fleet.validation import device_id_candidates

    others = {tid: device_id_candidates(tid)[1:] for tid in device_ids}
    found = current_facts(conn, sorted({form for forms in others.values() for form in forms}))
    out: dict[str, RegistryFacts] = {}
    for tid, forms in others.items():
        known = next((form for form in forms if form in found), None)
        if known is not None:
            out[tid] = found[known]
    return out
