"""Customer scoping: which terminals a customer may see (those now in its vehicles)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Connection

from fleet.validation import device_id_candidates
from store.tables.registry import installations, terminals, vehicles

_CURRENT = (
    select(terminals.c.device_id)
    .select_from(installations.join(terminals).join(vehicles))
    .where(installations.c.valid_to.is_(None))
)


def customer_terminal_ids(conn: Connection, customer_id: int) -> set[str]:
    """Device ids of the terminals installed in the customer's vehicles now."""
    return set(conn.execute(_CURRENT.where(vehicles.c.customer_id == customer_id)).scalars())


def customer_owns_terminal(conn: Connection, customer_id: int, device_id: str) -> bool:
    query = _CURRENT.where(
        vehicles.c.customer_id == customer_id, terminals.c.device_id.in_(device_id_candidates(device_id))
    )
    return conn.execute(query.limit(1)).first() is not None
