"""Everything a repair ticket needs to know about a terminal at a moment: model, SIM, vehicle, owner."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.engine import Connection

from fleet.validation import aware, device_id_candidates
from store.tables.registry import customers, installations, sims, terminal_models, terminals, vehicles


@dataclass(frozen=True, slots=True)
class TerminalContext:
    device_id: str
    terminal_pk: int
    serial_number: str | None
    status: str
    firmware: str | None
    purchased_on: date | None
    model_id: int
    model_name: str
    protocol: str
    installation_id: int | None  # the installation valid at the moment asked, if any
    installed_since: datetime | None
    mount_location: str | None
    iccid: str | None
    msisdn: str | None
    vehicle_id: int | None
    plate: str | None
    vin: str | None
    customer_id: int | None
    customer_name: str | None
    customer_contact: str | None
    customer_phone: str | None
    customer_address: str | None


def terminal_context(conn: Connection, device_id: str, at: datetime) -> TerminalContext | None:
    """The terminal and what it was bound to at ``at``; None when the id is not registered."""
    at = aware(at)
    candidates = device_id_candidates(device_id)
    query = (
        select(
            terminals.c.id,
            terminals.c.device_id,
            terminals.c.serial_number,
            terminals.c.status,
            terminals.c.firmware,
            terminals.c.purchased_on,
            terminal_models.c.id.label("model_id"),
            terminal_models.c.name.label("model_name"),
            terminal_models.c.protocol,
            installations.c.id.label("installation_id"),
            installations.c.valid_from,
            installations.c.mount_location,
            sims.c.iccid,
            sims.c.msisdn,
            vehicles.c.id.label("vehicle_id"),
            vehicles.c.plate,
            vehicles.c.vin,
            customers.c.id.label("customer_id"),
            customers.c.name.label("customer_name"),
            customers.c.contact_name,
            customers.c.phone,
            customers.c.address,
        )
        .select_from(
            terminals.join(terminal_models, terminal_models.c.id == terminals.c.model_id)
            .outerjoin(
                installations,
                and_(
                    installations.c.terminal_id == terminals.c.id,
                    installations.c.valid_from <= at,
                    or_(installations.c.valid_to.is_(None), installations.c.valid_to > at),
                ),
            )
            .outerjoin(sims, sims.c.id == installations.c.sim_id)
            .outerjoin(vehicles, vehicles.c.id == installations.c.vehicle_id)
            .outerjoin(customers, customers.c.id == vehicles.c.customer_id)
        )
        .where(terminals.c.device_id.in_(candidates))
    )
    rows = conn.execute(query).all()
    if not rows:
        return None
    row = min(rows, key=lambda r: candidates.index(r.device_id))
    return TerminalContext(
        device_id=row.device_id,
        terminal_pk=row.id,
        serial_number=row.serial_number,
        status=row.status,
        firmware=row.firmware,
        purchased_on=row.purchased_on,
        model_id=row.model_id,
        model_name=row.model_name,
        protocol=row.protocol,
        installation_id=row.installation_id,
        installed_since=row.valid_from,
        mount_location=row.mount_location,
        iccid=row.iccid,
        msisdn=row.msisdn,
        vehicle_id=row.vehicle_id,
        plate=row.plate,
        vin=row.vin,
        customer_id=row.customer_id,
        customer_name=row.customer_name,
        customer_contact=row.contact_name,
        customer_phone=row.phone,
        customer_address=row.address,
    )
