"""The registry's operations as plain functions on a connection: create, install, swap, retire.

Every function takes an open SQLAlchemy ``Connection`` (the caller owns the transaction),
checks the registry's rules and raises ``fleet.errors`` (``Invalid`` 422 naming the field,
``Conflict`` 409, ``NotFound`` 404).  Records come back as plain dicts.  Terminals, SIMs
and vehicles are addressed by their natural keys (device id, ICCID, plate), which is what
a technician writes on a repair order.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import uuid4

from sqlalchemy import Table, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError

from fleet import validation as v
from fleet.errors import Conflict, Invalid, NotFound
from store.tables.registry import (
    customers,
    drivers,
    installations,
    sims,
    swaps,
    terminal_model_parts,
    terminal_models,
    terminals,
    vehicles,
    warranty_contracts,
)

Record = dict[str, Any]

# Which protocols identify a terminal by its JT/T 808 phone number rather than an IMEI.
PHONE_ID_PROTOCOLS = frozenset({"jt808"})


def utcnow() -> datetime:
    return datetime.now(UTC)


CLOCK_SKEW = timedelta(minutes=5)  # a technician's phone may run a little ahead


def done_at(at: datetime | None, field: str = "at") -> datetime:
    """When work on site was done: now, or a moment already past (never a planned one, which
    would show the vehicle's terminal and SIM changed before anybody went)."""
    if at is None:
        return utcnow()
    at = v.aware(at)
    if at > utcnow() + CLOCK_SKEW:
        raise Invalid(f"{field} {at.isoformat()} is in the future; record work once it is done", field=field)
    return at


def as_record(row: Row[Any] | Mapping[str, Any] | None) -> Record | None:
    return None if row is None else dict(row._mapping if isinstance(row, Row) else row)


def _one(conn: Connection, table: Table, what: str, key: str, value: Any) -> Record:
    row = conn.execute(select(table).where(table.c[key] == value)).first()
    if row is None:
        raise NotFound(f"{what} {value} not found", field=key)
    return dict(row._mapping)


def _insert(conn: Connection, table: Table, values: Record, what: str) -> Record:
    """Insert one row inside a savepoint, turning a unique violation into a 409."""
    try:
        with conn.begin_nested():
            new_id = conn.execute(insert(table).values(**values).returning(table.c.id)).scalar_one()
    except IntegrityError as exc:
        raise Conflict(f"{what} already exists or references a missing record: {_first_line(exc)}") from exc
    return _one(conn, table, what, "id", new_id)


def _update(conn: Connection, table: Table, record_id: int, values: Record, what: str) -> Record:
    if values:
        try:
            with conn.begin_nested():
                conn.execute(update(table).where(table.c.id == record_id).values(**values))
        except IntegrityError as exc:
            raise Conflict(f"{what} update conflicts with another record: {_first_line(exc)}") from exc
    return _one(conn, table, what, "id", record_id)


def _save_changes(
    conn: Connection,
    table: Table,
    current: Mapping[str, Any],
    merged: Mapping[str, Any],
    what: str,
    unique: tuple[str, ...] = (),
) -> Record:
    """Write the columns of ``merged`` that differ from ``current`` (unique ones checked first)."""
    changed = {k: val for k, val in merged.items() if current.get(k) != val}
    for column in unique:
        if changed.get(column):
            _unique_or_conflict(conn, table, column, changed[column], what, except_id=current["id"])
    if changed:
        changed["updated_at"] = utcnow()
    return _update(conn, table, current["id"], changed, what)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", exc)).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --- customers, drivers, vehicles -------------------------------------------------------------


def create_customer(
    conn: Connection,
    *,
    name: str,
    kind: str = "company",
    code: str | None = None,
    contact_name: str | None = None,
    phone: str | None = None,
    email: str | None = None,
    address: str | None = None,
    notes: str | None = None,
    now: datetime | None = None,
) -> Record:
    now = now or utcnow()
    values = customer_values(
        name=name,
        kind=kind,
        code=code or f"pending-{uuid4().hex}",  # replaced by C<id> below
        contact_name=contact_name,
        phone=phone,
        email=email,
        address=address,
        notes=notes,
    )
    if code is not None:
        _unique_or_conflict(conn, customers, "code", values["code"], "a customer with code")
    record = _insert(conn, customers, {**values, "created_at": now, "updated_at": now}, "customer")
    if code is None:  # the customer number follows the id: C000042
        record = _update(conn, customers, record["id"], {"code": f"C{record['id']:06d}"}, "customer")
    return record


def customer_values(**fields: Any) -> Record:
    """Checked customer columns from raw values (also used by the CSV import)."""
    return {
        "code": v.required(fields.get("code"), "code", 40),
        "name": v.required(fields.get("name"), "name"),
        "kind": v.choice(fields.get("kind") or "company", v.CUSTOMER_KINDS, "kind"),
        "contact_name": v.optional(fields.get("contact_name"), "contact_name"),
        "phone": v.optional(fields.get("phone"), "phone", 40),
        "email": v.optional(fields.get("email"), "email"),
        "address": v.optional(fields.get("address"), "address", 2000),
        "notes": v.optional(fields.get("notes"), "notes", 4000),
    }


def update_customer(conn: Connection, customer_id: int, **fields: Any) -> Record:
    current = get_customer(conn, customer_id)
    merged = customer_values(**{**current, **fields})
    return _save_changes(conn, customers, current, merged, "customer", unique=("code",))


def get_customer(conn: Connection, customer_id: int) -> Record:
    return _one(conn, customers, "customer", "id", customer_id)


def create_driver(
    conn: Connection,
    *,
    name: str,
    phone: str | None = None,
    licence_number: str | None = None,
    customer_id: int | None = None,
    now: datetime | None = None,
) -> Record:
    now = now or utcnow()
    if customer_id is not None:
        get_customer(conn, customer_id)
    values = driver_values(name=name, phone=phone, licence_number=licence_number)
    if values["licence_number"]:
        _unique_or_conflict(
            conn, drivers, "licence_number", values["licence_number"], "a driver with licence number"
        )
    return _insert(
        conn,
        drivers,
        {**values, "customer_id": customer_id, "created_at": now, "updated_at": now},
        "driver",
    )


def driver_values(**fields: Any) -> Record:
    return {
        "name": v.required(fields.get("name"), "name"),
        "phone": v.optional(fields.get("phone"), "phone", 40),
        "licence_number": v.optional(fields.get("licence_number"), "licence_number", 40),
    }


def update_driver(conn: Connection, driver_id: int, **fields: Any) -> Record:
    current = _one(conn, drivers, "driver", "id", driver_id)
    merged = driver_values(**{**current, **fields})
    if "customer_id" in fields:
        if fields["customer_id"] is not None:
            get_customer(conn, fields["customer_id"])
        merged["customer_id"] = fields["customer_id"]
    return _save_changes(conn, drivers, current, merged, "driver", unique=("licence_number",))


def create_vehicle(
    conn: Connection,
    *,
    plate: str,
    customer_id: int,
    vin: str | None = None,
    make: str | None = None,
    model: str | None = None,
    colour: str | None = None,
    driver_id: int | None = None,
    now: datetime | None = None,
) -> Record:
    now = now or utcnow()
    values = vehicle_values(plate=plate, vin=vin, make=make, model=model, colour=colour)
    _check_vehicle_refs(conn, customer_id, driver_id)
    _unique_or_conflict(conn, vehicles, "plate", values["plate"], "a vehicle with plate")
    if values["vin"]:
        _unique_or_conflict(conn, vehicles, "vin", values["vin"], "a vehicle with VIN")
    return _insert(
        conn,
        vehicles,
        {**values, "customer_id": customer_id, "driver_id": driver_id, "created_at": now, "updated_at": now},
        "vehicle",
    )


def vehicle_values(**fields: Any) -> Record:
    return {
        "plate": v.plate(fields.get("plate") or ""),
        "vin": v.vin(fields.get("vin")),
        "make": v.optional(fields.get("make"), "make", 80),
        "model": v.optional(fields.get("model"), "model", 80),
        "colour": v.optional(fields.get("colour"), "colour", 40),
    }


def _check_vehicle_refs(conn: Connection, customer_id: int | None, driver_id: int | None) -> None:
    if customer_id is None:
        raise Invalid("customer_id is required", field="customer_id")
    if conn.execute(select(customers.c.id).where(customers.c.id == customer_id)).first() is None:
        raise Invalid(f"customer {customer_id} does not exist", field="customer_id")
    if (
        driver_id is not None
        and conn.execute(select(drivers.c.id).where(drivers.c.id == driver_id)).first() is None
    ):
        raise Invalid(f"driver {driver_id} does not exist", field="driver_id")


def _unique_or_conflict(
    conn: Connection, table: Table, column: str, value: Any, what: str, *, except_id: int | None = None
) -> None:
    query = select(table.c.id).where(table.c[column] == value)
    if except_id is not None:
        query = query.where(table.c.id != except_id)
    if conn.execute(query).first() is not None:
        raise Conflict(f"{what} {value} already exists", field=column)


def update_vehicle(conn: Connection, vehicle_id: int, **fields: Any) -> Record:
    current = get_vehicle(conn, vehicle_id)
    merged = vehicle_values(**{**current, **fields})
    merged["customer_id"] = fields.get("customer_id", current["customer_id"])
    merged["driver_id"] = fields.get("driver_id", current["driver_id"])
    _check_vehicle_refs(conn, merged["customer_id"], merged["driver_id"])
    return _save_changes(conn, vehicles, current, merged, "vehicle", unique=("plate", "vin"))


def get_vehicle(conn: Connection, vehicle_id: int) -> Record:
    return _one(conn, vehicles, "vehicle", "id", vehicle_id)


def vehicle_by_plate(conn: Connection, plate: str) -> Record:
    return _one(conn, vehicles, "vehicle", "plate", v.plate(plate))


# --- terminal models and parts ----------------------------------------------------------------


def create_terminal_model(
    conn: Connection,
    *,
    name: str,
    protocol: str,
    id_kind: str | None = None,
    warranty_months: int | None = None,
    warranty_from: str | None = None,
    currency: str = "CNY",
    parts: list[Mapping[str, Any]] | None = None,
    now: datetime | None = None,
) -> Record:
    now = now or utcnow()
    values = model_values(
        name=name,
        protocol=protocol,
        id_kind=id_kind,
        warranty_months=warranty_months,
        warranty_from=warranty_from,
        currency=currency,
    )
    _unique_or_conflict(conn, terminal_models, "name", values["name"], "terminal model")
    record = _insert(
        conn, terminal_models, {**values, "created_at": now, "updated_at": now}, "terminal model"
    )
    for part in parts or []:
        set_part(conn, record["id"], **part)
    return record


def model_values(**fields: Any) -> Record:
    protocol = v.choice(v.required(fields.get("protocol"), "protocol", 20), v.PROTOCOLS, "protocol")
    id_kind = fields.get("id_kind") or ("phone" if protocol in PHONE_ID_PROTOCOLS else "imei")
    months = fields.get("warranty_months")
    if months is not None and (not isinstance(months, int) or not 0 <= months <= 240):
        raise Invalid("warranty_months must be a whole number of months, 0-240", field="warranty_months")
    warranty_from = fields.get("warranty_from")
    currency = (fields.get("currency") or "CNY").strip().upper()
    if len(currency) != 3 or not currency.isalpha():
        raise Invalid(f"currency must be an ISO 4217 code, got {currency!r}", field="currency")
    return {
        "name": v.required(fields.get("name"), "name", 80),
        "protocol": protocol,
        "id_kind": v.choice(id_kind, v.ID_KINDS, "id_kind"),
        "warranty_months": months,
        "warranty_from": v.choice(warranty_from, v.WARRANTY_FROM, "warranty_from") if warranty_from else None,
        "currency": currency,
    }


def update_terminal_model(conn: Connection, model_id: int, **fields: Any) -> Record:
    current = get_terminal_model(conn, model_id)
    merged = model_values(**{**current, **fields})
    return _save_changes(conn, terminal_models, current, merged, "terminal model", unique=("name",))


def get_terminal_model(conn: Connection, model_id: int) -> Record:
    return _one(conn, terminal_models, "terminal model", "id", model_id)


def terminal_model_by_name(conn: Connection, name: str) -> Record:
    return _one(conn, terminal_models, "terminal model", "name", name.strip())


def set_part(
    conn: Connection, model_id: int, *, part_number: str, name: str, price: Decimal | str | float
) -> Record:
    """Add a spare part to a model's catalogue, or change its name and price."""
    part_number = v.required(part_number, "part_number", 40)
    values = {"name": v.required(name, "name"), "price_minor": price_to_minor(price), "retired_at": None}
    existing = conn.execute(
        select(terminal_model_parts.c.id).where(
            terminal_model_parts.c.model_id == model_id, terminal_model_parts.c.part_number == part_number
        )
    ).first()
    if existing:
        return _update(conn, terminal_model_parts, existing.id, values, "part")
    return _insert(
        conn, terminal_model_parts, {**values, "model_id": model_id, "part_number": part_number}, "part"
    )


def model_parts(conn: Connection, model_id: int) -> list[Record]:
    rows = conn.execute(
        select(terminal_model_parts)
        .where(terminal_model_parts.c.model_id == model_id, terminal_model_parts.c.retired_at.is_(None))
        .order_by(terminal_model_parts.c.part_number)
    )
    return [dict(r._mapping) for r in rows]


def price_to_minor(price: Decimal | str | float) -> int:
    try:
        amount = Decimal(str(price))
    except ArithmeticError:
        raise Invalid(f"price must be a decimal amount, got {price!r}", field="price") from None
    if not amount.is_finite() or amount < 0 or amount != amount.quantize(Decimal("0.01")):
        raise Invalid(
            f"price must be a non-negative amount with at most 2 decimals, got {price}", field="price"
        )
    return int(amount * 100)


def minor_to_price(minor: int) -> Decimal:
    return (Decimal(minor) / 100).quantize(Decimal("0.01"))


# --- terminals and SIMs -----------------------------------------------------------------------


def create_terminal(
    conn: Connection,
    *,
    device_id: str,
    model_id: int | None = None,
    model: str | None = None,
    serial_number: str | None = None,
    firmware: str | None = None,
    purchased_on: date | None = None,
    delivered_on: date | None = None,
    status: str = "stock",
    enabled: bool = True,
    tz: str | None = None,
    lenient: bool | None = None,
    notes: str | None = None,
    now: datetime | None = None,
) -> Record:
    """Register a terminal; ``model_id`` or the model ``name`` says which catalogue entry."""
    now = now or utcnow()
    model_record = _model_for(conn, model_id, model)
    values = terminal_values(
        model_record,
        device_id=device_id,
        serial_number=serial_number,
        firmware=firmware,
        purchased_on=purchased_on,
        delivered_on=delivered_on,
        status=status,
        enabled=enabled,
        tz=tz,
        lenient=lenient,
        notes=notes,
    )
    if status == "installed":
        raise Invalid("a new terminal cannot be 'installed': install it into a vehicle", field="status")
    _unique_or_conflict(conn, terminals, "device_id", values["device_id"], "terminal")
    return _insert(conn, terminals, {**values, "created_at": now, "updated_at": now}, "terminal")


def _model_for(conn: Connection, model_id: int | None, name: str | None) -> Record:
    if model_id is not None:
        row = conn.execute(select(terminal_models).where(terminal_models.c.id == model_id)).first()
    elif name:
        row = conn.execute(select(terminal_models).where(terminal_models.c.name == name.strip())).first()
    else:
        raise Invalid("model is required (model_id or model name)", field="model")
    if row is None:
        raise Invalid(f"terminal model {model_id or name} does not exist", field="model")
    return dict(row._mapping)


def terminal_values(model: Mapping[str, Any], **fields: Any) -> Record:
    tz = v.optional(fields.get("tz"), "tz", 40)
    if tz is not None:
        check_tz(tz)
    return {
        "device_id": v.device_id(fields.get("device_id") or "", model["id_kind"]),
        "model_id": model["id"],
        "serial_number": v.optional(fields.get("serial_number"), "serial_number", 60),
        "firmware": v.optional(fields.get("firmware"), "firmware", 80),
        "purchased_on": fields.get("purchased_on"),
        "delivered_on": fields.get("delivered_on"),
        "status": v.choice(fields.get("status") or "stock", v.TERMINAL_STATUSES, "status"),
        "enabled": bool(fields.get("enabled", True)),
        "tz": tz,
        "lenient": fields.get("lenient"),
        "notes": v.optional(fields.get("notes"), "notes", 4000),
    }


def check_tz(tz: str) -> None:
    """A zone a terminal reports local time in: an IANA name or a fixed offset ``+08:00``."""
    import re
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if re.match(r"^[+-](0\d|1[0-4]):[0-5]\d$", tz) or tz == "UTC":
        return
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid(f"tz must be an IANA zone or an offset like +08:00, got {tz!r}", field="tz") from None


def update_terminal(conn: Connection, device_id: str, **fields: Any) -> Record:
    """Change a terminal's details (not its id, not 'installed': that is what install does)."""
    current = terminal_by_device_id(conn, device_id)
    if current["retired_at"] is not None:
        raise Conflict(f"terminal {current['device_id']} is retired", field="device_id")
    new_status = fields.get("status", current["status"])
    if new_status != current["status"] and "installed" in (new_status, current["status"]):
        raise Conflict(
            f"terminal {current['device_id']} status changes to or from 'installed' only by "
            "install, uninstall or a swap",
            field="status",
        )
    model_record = _model_for(conn, fields.get("model_id", current["model_id"]), None)
    merged = terminal_values(model_record, **{**current, **fields, "device_id": current["device_id"]})
    return _save_changes(conn, terminals, current, merged, "terminal")


def terminal_by_device_id(conn: Connection, device_id: str) -> Record:
    """The terminal whose stored id matches ``device_id`` in any of its written forms."""
    candidates = v.device_id_candidates(device_id)
    rows = conn.execute(select(terminals).where(terminals.c.device_id.in_(candidates))).all()
    if not rows:
        raise NotFound(f"terminal {device_id} not found", field="device_id")
    exact_first = min(rows, key=lambda r: candidates.index(r.device_id))
    return dict(exact_first._mapping)


def terminals_in_vehicle(conn: Connection, plate: str) -> list[str]:
    """Device ids of the terminals installed in the vehicle now (404 for an unknown plate)."""
    vehicle = vehicle_by_plate(conn, plate)
    query = (
        select(terminals.c.device_id)
        .select_from(installations.join(terminals))
        .where(installations.c.vehicle_id == vehicle["id"], installations.c.valid_to.is_(None))
        .order_by(terminals.c.device_id)
    )
    return list(conn.execute(query).scalars())


def stored_device_id(conn: Connection, device_id: str) -> str:
    """The registry's form of a device id as typed (a JT/T 808 phone without its leading zero,
    a GT06 IMEI with one); the id as given when no terminal has it.  Positions, health, alerts
    and tickets are kept under the stored form, so every lookup by device id starts here."""
    try:
        return str(terminal_by_device_id(conn, device_id)["device_id"])
    except NotFound:
        return device_id.strip()


def create_sim(
    conn: Connection,
    *,
    iccid: str,
    msisdn: str | None = None,
    imsi: str | None = None,
    carrier: str | None = None,
    plan: str | None = None,
    status: str = "stock",
    now: datetime | None = None,
) -> Record:
    now = now or utcnow()
    values = sim_values(iccid=iccid, msisdn=msisdn, imsi=imsi, carrier=carrier, plan=plan, status=status)
    _unique_or_conflict(conn, sims, "iccid", values["iccid"], "SIM")
    if values["msisdn"]:
        _unique_or_conflict(conn, sims, "msisdn", values["msisdn"], "a SIM with MSISDN")
    return _insert(conn, sims, {**values, "created_at": now, "updated_at": now}, "SIM")


def sim_values(**fields: Any) -> Record:
    return {
        "iccid": v.iccid(fields.get("iccid") or ""),
        "msisdn": v.msisdn(fields.get("msisdn")),
        "imsi": v.imsi(fields.get("imsi")),
        "carrier": v.optional(fields.get("carrier"), "carrier", 80),
        "plan": v.optional(fields.get("plan"), "plan", 80),
        "status": v.choice(fields.get("status") or "stock", v.SIM_STATUSES, "status"),
    }


def update_sim(conn: Connection, iccid: str, **fields: Any) -> Record:
    """Change a SIM's details; one in a terminal in a vehicle goes back to stock only by
    uninstall or a SIM swap (suspended or terminated by its carrier, it is still there)."""
    current = sim_by_iccid(conn, iccid)
    if fields.get("status") == "stock" and current["status"] != "stock":
        holding = open_installation(conn, sim_id=current["id"])
        if holding is not None:
            raise Conflict(
                f"SIM {current['iccid']} is in {_describe_installation(conn, holding)}: "
                "it goes back to stock by uninstall or a SIM swap",
                field="status",
            )
    merged = sim_values(**{**current, **fields, "iccid": current["iccid"]})
    return _save_changes(conn, sims, current, merged, "SIM", unique=("msisdn",))


def sim_by_iccid(conn: Connection, iccid: str) -> Record:
    return _one(conn, sims, "SIM", "iccid", iccid.strip())


# --- installations ----------------------------------------------------------------------------


def open_installation(
    conn: Connection, *, terminal_id: int | None = None, sim_id: int | None = None
) -> Record | None:
    query = select(installations).where(installations.c.valid_to.is_(None))
    if terminal_id is not None:
        query = query.where(installations.c.terminal_id == terminal_id)
    if sim_id is not None:
        query = query.where(installations.c.sim_id == sim_id)
    return as_record(conn.execute(query).first())


def _overlapping(conn: Connection, column: str, value: int, start: datetime) -> Record | None:
    """An installation of this terminal/SIM that is open or ends after ``start``."""
    row = conn.execute(
        select(installations)
        .where(
            installations.c[column] == value,
            or_(installations.c.valid_to.is_(None), installations.c.valid_to > start),
        )
        .limit(1)
    ).first()
    return as_record(row)


def _describe_installation(conn: Connection, installation: Mapping[str, Any]) -> str:
    row = conn.execute(
        select(terminals.c.device_id, vehicles.c.plate)
        .select_from(installations.join(terminals).join(vehicles))
        .where(installations.c.id == installation["id"])
    ).one()
    return (
        f"terminal {row.device_id} in vehicle {row.plate} since {installation['valid_from']:%Y-%m-%d %H:%M}"
    )


def install(
    conn: Connection,
    *,
    device_id: str,
    plate: str,
    iccid: str | None = None,
    at: datetime | None = None,
    installed_by: str | None = None,
    mount_location: str | None = None,
) -> Record:
    """Bind a terminal (and its SIM) to a vehicle from ``at`` on; the warranty starts here."""
    at = done_at(at)
    terminal = terminal_by_device_id(conn, device_id)
    vehicle = vehicle_by_plate(conn, plate)
    sim = sim_by_iccid(conn, iccid) if iccid else None
    _check_installable(conn, terminal, sim, vehicle, at)
    record = _open_installation(
        conn,
        terminal["id"],
        sim["id"] if sim else None,
        vehicle["id"],
        at,
        installed_by=v.optional(installed_by, "installed_by"),
        mount_location=v.optional(mount_location, "mount_location"),
    )
    _set_status(conn, terminals, terminal["id"], "installed")
    if sim:
        _set_status(conn, sims, sim["id"], "active")
    return record


def _check_installable(
    conn: Connection,
    terminal: Mapping[str, Any],
    sim: Mapping[str, Any] | None,
    vehicle: Mapping[str, Any],
    at: datetime,
) -> None:
    if terminal["retired_at"] is not None or terminal["status"] == "scrapped":
        raise Conflict(f"terminal {terminal['device_id']} is scrapped or retired", field="device_id")
    if terminal["status"] == "returned_for_repair":
        raise Conflict(
            f"terminal {terminal['device_id']} is returned for repair; put it back to stock first",
            field="device_id",
        )
    if vehicle["retired_at"] is not None:
        raise Conflict(f"vehicle {vehicle['plate']} is retired", field="plate")
    clash = _overlapping(conn, "terminal_id", terminal["id"], at)
    if clash:
        raise Conflict(
            f"terminal {terminal['device_id']} is already installed: {_describe_installation(conn, clash)}",
            field="device_id",
        )
    if sim is None:
        return
    if sim["retired_at"] is not None or sim["status"] == "terminated":
        raise Conflict(f"SIM {sim['iccid']} is terminated or retired", field="iccid")
    clash = _overlapping(conn, "sim_id", sim["id"], at)
    if clash:
        raise Conflict(
            f"SIM {sim['iccid']} is already in use: {_describe_installation(conn, clash)}", field="iccid"
        )


def _set_status(conn: Connection, table: Table, record_id: int, status: str, **extra: Any) -> None:
    conn.execute(
        update(table).where(table.c.id == record_id).values(status=status, updated_at=utcnow(), **extra)
    )


def _close(
    conn: Connection, installation: Mapping[str, Any], at: datetime, by: str | None, reason: str | None
) -> None:
    if at <= installation["valid_from"]:
        raise Invalid(
            f"the end time {at.isoformat()} must be after the installation start "
            f"{installation['valid_from'].isoformat()}",
            field="at",
        )
    conn.execute(
        update(installations)
        .where(installations.c.id == installation["id"])
        .values(valid_to=at, ended_by=by, end_reason=reason)
    )


def uninstall(
    conn: Connection,
    *,
    device_id: str,
    at: datetime | None = None,
    by: str | None = None,
    reason: str | None = None,
    terminal_status: str = "stock",
) -> Record:
    """End a terminal's installation: the terminal goes back to stock, its SIM too."""
    at = done_at(at)
    terminal = terminal_by_device_id(conn, device_id)
    current = open_installation(conn, terminal_id=terminal["id"])
    if current is None:
        raise Conflict(f"terminal {terminal['device_id']} is not installed", field="device_id")
    _close(conn, current, at, by, reason)
    _set_status(conn, terminals, terminal["id"], v.choice(terminal_status, v.TERMINAL_STATUSES, "status"))
    if current["sim_id"] is not None:
        _set_status(conn, sims, current["sim_id"], "stock")
    return _one(conn, installations, "installation", "id", current["id"])


def swap_terminal(
    conn: Connection,
    *,
    old_device_id: str,
    new_device_id: str,
    performed_by: str,
    reason: str,
    symptom: str | None = None,
    at: datetime | None = None,
    new_iccid: str | None = None,
    ticket_ref: str | None = None,
) -> Record:
    """Rule 5: the new terminal takes the vehicle and the old one's SIM (unless ``new_iccid``
    swaps it too); the old terminal is returned for repair, tagged with plate and symptom."""
    at = done_at(at)
    performed_by = v.required(performed_by, "performed_by")
    reason = v.required(reason, "reason", 2000)
    old = terminal_by_device_id(conn, old_device_id)
    new = terminal_by_device_id(conn, new_device_id)
    if old["id"] == new["id"]:
        raise Invalid("the new terminal must differ from the old one", field="new_device_id")
    current = open_installation(conn, terminal_id=old["id"])
    if current is None:
        raise Conflict(f"terminal {old['device_id']} is not installed in any vehicle", field="old_device_id")
    vehicle = get_vehicle(conn, current["vehicle_id"])
    new_sim = sim_by_iccid(conn, new_iccid) if new_iccid else None
    if new_sim and new_sim["id"] == current["sim_id"]:
        new_sim = None  # "swapping" to the SIM it already has keeps it
    if new["status"] != "stock" or new["retired_at"] is not None:
        raise Conflict(
            f"new terminal {new['device_id']} is {new['status']}; only a terminal in stock can replace another",
            field="new_device_id",
        )
    _check_installable(conn, new, new_sim, vehicle, at)  # before any change: a refusal changes nothing
    _close(conn, current, at, performed_by, f"terminal swap: {reason}")
    sim_id = new_sim["id"] if new_sim else current["sim_id"]
    new_installation = _open_installation(
        conn,
        new["id"],
        sim_id,
        vehicle["id"],
        at,
        installed_by=performed_by,
        mount_location=current["mount_location"],
    )
    _set_status(
        conn,
        terminals,
        old["id"],
        "returned_for_repair",
        return_plate=vehicle["plate"],
        return_symptom=v.optional(symptom, "symptom", 2000),
    )
    _set_status(conn, terminals, new["id"], "installed", replaces_terminal_id=old["id"])
    if new_sim:
        _set_status(conn, sims, new_sim["id"], "active")
        if current["sim_id"] is not None:
            _set_status(conn, sims, current["sim_id"], "stock")
    return _record_swap(
        conn,
        kind="terminal",
        vehicle=vehicle,
        old_terminal_id=old["id"],
        new_terminal_id=new["id"],
        old_sim_id=current["sim_id"] if new_sim else None,
        new_sim_id=new_sim["id"] if new_sim else None,
        performed_by=performed_by,
        performed_at=at,
        reason=reason,
        symptom=symptom,
        ticket_ref=ticket_ref,
        installation_id=new_installation["id"],
    )


def swap_sim(
    conn: Connection,
    *,
    old_iccid: str,
    new_iccid: str,
    performed_by: str,
    reason: str,
    at: datetime | None = None,
    symptom: str | None = None,
    ticket_ref: str | None = None,
) -> Record:
    """Rule 6: the terminal holding ``old_iccid`` gets ``new_iccid``; the old SIM goes to stock."""
    at = done_at(at)
    performed_by = v.required(performed_by, "performed_by")
    reason = v.required(reason, "reason", 2000)
    old_sim = sim_by_iccid(conn, old_iccid)
    new_sim = sim_by_iccid(conn, new_iccid)
    if old_sim["id"] == new_sim["id"]:
        raise Invalid("the new SIM must differ from the old one", field="new_iccid")
    current = open_installation(conn, sim_id=old_sim["id"])
    if current is None:
        raise Conflict(f"SIM {old_sim['iccid']} is not in any installed terminal", field="old_iccid")
    terminal = _one(conn, terminals, "terminal", "id", current["terminal_id"])
    vehicle = get_vehicle(conn, current["vehicle_id"])
    if new_sim["retired_at"] is not None or new_sim["status"] == "terminated":
        raise Conflict(f"SIM {new_sim['iccid']} is terminated or retired", field="new_iccid")
    clash = _overlapping(conn, "sim_id", new_sim["id"], at)
    if clash:
        raise Conflict(
            f"SIM {new_sim['iccid']} is already in use: {_describe_installation(conn, clash)}",
            field="new_iccid",
        )
    _close(conn, current, at, performed_by, f"SIM swap: {reason}")
    new_installation = _open_installation(
        conn,
        terminal["id"],
        new_sim["id"],
        vehicle["id"],
        at,
        installed_by=current["installed_by"],
        mount_location=current["mount_location"],
    )
    _set_status(conn, sims, old_sim["id"], "stock")
    _set_status(conn, sims, new_sim["id"], "active")
    return _record_swap(
        conn,
        kind="sim",
        vehicle=vehicle,
        old_terminal_id=terminal["id"],
        new_terminal_id=terminal["id"],
        old_sim_id=old_sim["id"],
        new_sim_id=new_sim["id"],
        performed_by=performed_by,
        performed_at=at,
        reason=reason,
        symptom=symptom,
        ticket_ref=ticket_ref,
        installation_id=new_installation["id"],
    )


def _open_installation(
    conn: Connection,
    terminal_id: int,
    sim_id: int | None,
    vehicle_id: int,
    at: datetime,
    *,
    installed_by: str | None,
    mount_location: str | None,
) -> Record:
    """A new open installation (the caller has checked it may exist)."""
    values = {
        "terminal_id": terminal_id,
        "sim_id": sim_id,
        "vehicle_id": vehicle_id,
        "valid_from": at,
        "valid_to": None,
        "installed_by": installed_by,
        "mount_location": mount_location,
        "created_at": utcnow(),
    }
    return _insert(conn, installations, values, "installation")


def _record_swap(
    conn: Connection, *, vehicle: Mapping[str, Any], installation_id: int, **values: Any
) -> Record:
    values["symptom"] = v.optional(values.get("symptom"), "symptom", 2000)
    values["ticket_ref"] = v.optional(values.get("ticket_ref"), "ticket_ref", 60)
    record = _insert(
        conn,
        swaps,
        {**values, "vehicle_id": vehicle["id"], "plate": vehicle["plate"], "created_at": utcnow()},
        "swap",
    )
    return describe_swap(conn, record) | {"installation_id": installation_id}


def describe_swap(conn: Connection, swap: Mapping[str, Any]) -> Record:
    """A swap record with device ids and ICCIDs beside the row ids."""
    ids = [swap["old_terminal_id"], swap["new_terminal_id"]]
    devices = dict(
        conn.execute(select(terminals.c.id, terminals.c.device_id).where(terminals.c.id.in_(ids))).all()
    )
    sim_ids = [swap["old_sim_id"], swap["new_sim_id"]]
    iccids = dict(conn.execute(select(sims.c.id, sims.c.iccid).where(sims.c.id.in_(sim_ids))).all())
    return {
        **swap,
        "old_device_id": devices.get(swap["old_terminal_id"]),
        "new_device_id": devices.get(swap["new_terminal_id"]),
        "old_iccid": iccids.get(swap["old_sim_id"]),
        "new_iccid": iccids.get(swap["new_sim_id"]),
    }


# --- history ----------------------------------------------------------------------------------

_HISTORY_COLUMNS = (
    installations,
    terminals.c.device_id,
    sims.c.iccid,
    sims.c.msisdn,
    vehicles.c.plate,
)


def installations_during(
    conn: Connection,
    start: datetime,
    end: datetime | None = None,
    *,
    terminal_id: int | None = None,
    vehicle_id: int | None = None,
    sim_id: int | None = None,
) -> list[Record]:
    """Installations that overlap ``[start, end)`` (``end`` None: the instant ``start``)."""
    start = v.aware(start)
    end = v.aware(end) if end else None
    query = (
        select(*_HISTORY_COLUMNS)
        .select_from(installations.join(terminals).join(vehicles).outerjoin(sims))
        .where(
            installations.c.valid_from < end if end else installations.c.valid_from <= start,
            or_(installations.c.valid_to.is_(None), installations.c.valid_to > start),
        )
        .order_by(installations.c.valid_from)
    )
    for column, value in (("terminal_id", terminal_id), ("vehicle_id", vehicle_id), ("sim_id", sim_id)):
        if value is not None:
            query = query.where(installations.c[column] == value)
    return [dict(r._mapping) for r in conn.execute(query)]


def terminal_history(conn: Connection, device_id: str) -> Record:
    """Every installation and swap of a terminal, oldest first."""
    terminal = terminal_by_device_id(conn, device_id)
    rows = conn.execute(
        select(*_HISTORY_COLUMNS)
        .select_from(installations.join(terminals).join(vehicles).outerjoin(sims))
        .where(installations.c.terminal_id == terminal["id"])
        .order_by(installations.c.valid_from)
    )
    swap_rows = conn.execute(
        select(swaps)
        .where(or_(swaps.c.old_terminal_id == terminal["id"], swaps.c.new_terminal_id == terminal["id"]))
        .order_by(swaps.c.performed_at, swaps.c.id)
    )
    return {
        "terminal": terminal,
        "installations": [dict(r._mapping) for r in rows],
        "swaps": [describe_swap(conn, dict(r._mapping)) for r in swap_rows],
    }


# --- warranty records -------------------------------------------------------------------------


def add_warranty_contract(
    conn: Connection,
    *,
    device_id: str,
    starts_on: date,
    ends_on: date,
    reference: str | None = None,
    notes: str | None = None,
) -> Record:
    """An extended warranty for one terminal, covering ``starts_on`` to ``ends_on`` inclusive."""
    terminal = terminal_by_device_id(conn, device_id)
    if ends_on < starts_on:
        raise Invalid("ends_on must not be before starts_on", field="ends_on")
    _refuse_past_void(terminal, ends_on, "starts_on", "a contract would not cover it")
    reference = v.optional(reference, "reference", 60)
    if reference is not None and any(
        c["reference"] == reference and c["voided_at"] is None
        for c in warranty_contracts_of(conn, terminal["id"])
    ):
        raise Conflict(
            f"terminal {terminal['device_id']} already has contract {reference}", field="reference"
        )
    return _insert(
        conn,
        warranty_contracts,
        {
            "terminal_id": terminal["id"],
            "starts_on": starts_on,
            "ends_on": ends_on,
            "reference": reference,
            "notes": v.optional(notes, "notes", 4000),
            "created_at": utcnow(),
        },
        "warranty contract",
    )


def _refuse_past_void(terminal: Record, day: date, field: str, why: str) -> None:
    """409 when ``day`` falls on or after the terminal's warranty void."""
    voided_on = terminal["warranty_voided_on"]
    if voided_on is not None and day >= voided_on:
        raise Conflict(
            f"the warranty of terminal {terminal['device_id']} is void since {voided_on} "
            f"({terminal['warranty_void_reason']}): {why}",
            field=field,
        )


def void_warranty_contract(conn: Connection, contract_id: int, *, reason: str) -> Record:
    contract = _one(conn, warranty_contracts, "warranty contract", "id", contract_id)
    if contract["voided_at"] is not None:  # a second void would rewrite when and why
        raise Conflict(
            f"warranty contract {contract_id} was voided on {v.aware(contract['voided_at']).date()} "
            f"({contract['void_reason']})"
        )
    return _update(
        conn,
        warranty_contracts,
        contract_id,
        {"void_reason": v.required(reason, "reason", 2000), "voided_at": utcnow()},
        "warranty contract",
    )


def void_warranty(conn: Connection, *, device_id: str, reason: str, on: date) -> Record:
    """Void a terminal's warranty from ``on`` (tampering, water, a third-party repair...).  A
    void already in force is only ever moved earlier: a later day would give back cover."""
    terminal = terminal_by_device_id(conn, device_id)
    _refuse_past_void(terminal, on, "on", "a later day would give cover back")
    return _update(
        conn,
        terminals,
        terminal["id"],
        {
            "warranty_void_reason": v.required(reason, "reason", 2000),
            "warranty_voided_on": on,
            "updated_at": utcnow(),
        },
        "terminal",
    )


def warranty_contracts_of(conn: Connection, terminal_id: int) -> list[Record]:
    rows = conn.execute(
        select(warranty_contracts)
        .where(warranty_contracts.c.terminal_id == terminal_id)
        .order_by(warranty_contracts.c.starts_on)
    )
    return [dict(r._mapping) for r in rows]


# --- retire and delete ------------------------------------------------------------------------

# What history each kind of record is referenced by; a referenced record is retired, not deleted.
_REFERENCES: dict[str, list[tuple[Table, str, str]]] = {
    "customer": [(vehicles, "customer_id", "vehicles"), (drivers, "customer_id", "drivers")],
    "driver": [(vehicles, "driver_id", "vehicles")],
    "vehicle": [(installations, "vehicle_id", "installations")],
    "terminal_model": [(terminals, "model_id", "terminals")],
    "terminal": [
        (installations, "terminal_id", "installations"),
        (warranty_contracts, "terminal_id", "contracts"),
    ],
    "sim": [(installations, "sim_id", "installations")],
}
TABLES: dict[str, Table] = {
    "customer": customers,
    "driver": drivers,
    "vehicle": vehicles,
    "terminal_model": terminal_models,
    "terminal": terminals,
    "sim": sims,
}


def delete_record(conn: Connection, kind: str, record_id: int) -> None:
    """Delete a record nothing refers to; otherwise 409 telling to retire it instead."""
    table = TABLES[kind]
    record = _one(conn, table, kind.replace("_", " "), "id", record_id)
    for ref_table, column, name in _REFERENCES[kind]:
        count = conn.execute(
            select(func.count()).select_from(ref_table).where(ref_table.c[column] == record_id)
        ).scalar_one()
        if count:
            raise Conflict(
                f"{_record_name(kind, record)} cannot be deleted: {count} {name} refer to it and history "
                f"needs them; retire it instead",
            )
    if kind == "terminal_model":
        conn.execute(terminal_model_parts.delete().where(terminal_model_parts.c.model_id == record_id))
    conn.execute(table.delete().where(table.c.id == record_id))


def retire_record(conn: Connection, kind: str, record_id: int, *, at: datetime | None = None) -> Record:
    """Retire a record: kept for history, hidden from default lists, refused for new bindings."""
    table = TABLES[kind]
    label = kind.replace("_", " ")
    record = _one(conn, table, label, "id", record_id)
    active = _active_binding(conn, kind, record_id)
    if active:
        raise Conflict(f"{_record_name(kind, record)} cannot be retired while {active}")
    values: Record = {"retired_at": record["retired_at"] or (at or utcnow()), "updated_at": utcnow()}
    if kind == "terminal":
        values["enabled"] = False
    return _update(conn, table, record_id, values, label)


def _record_name(kind: str, record: Record) -> str:
    """A record as the clerk knows it: a terminal by its device id, a SIM by its ICCID, the
    others by id with their plate or name (never a bare internal id for a terminal or SIM)."""
    if kind == "terminal":
        return f"terminal {record['device_id']}"
    if kind == "sim":
        return f"SIM {record['iccid']}"
    name = record.get("plate") or record.get("name")
    return f"{kind.replace('_', ' ')} {record['id']}" + (f" ({name})" if name else "")


def _active_binding(conn: Connection, kind: str, record_id: int) -> str | None:
    open_ = installations.c.valid_to.is_(None)
    if (
        kind == "terminal"
        and conn.execute(
            select(installations.c.id).where(open_, installations.c.terminal_id == record_id)
        ).first()
    ):
        return "it is installed; uninstall or swap it first"
    if (
        kind == "sim"
        and conn.execute(select(installations.c.id).where(open_, installations.c.sim_id == record_id)).first()
    ):
        return "it is in an installed terminal; swap it first"
    if (
        kind == "vehicle"
        and conn.execute(
            select(installations.c.id).where(open_, installations.c.vehicle_id == record_id)
        ).first()
    ):
        return "a terminal is installed in it"
    if (
        kind == "customer"
        and conn.execute(
            select(vehicles.c.id).where(vehicles.c.customer_id == record_id, vehicles.c.retired_at.is_(None))
        ).first()
    ):
        return "it has vehicles in service"
    return None
