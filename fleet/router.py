"""``/api/v1`` registry endpoints: customers, drivers, vehicles, terminal models, terminals, SIMs,
installations, swaps and history.  Thin: checks who may call, then ``fleet.service`` does it.

Roles: clerk, manager and admin write the registry; manager and admin the catalogue;
technicians also install and swap; every staff role reads.  A customer token reads only
its own customer, drivers, vehicles and the terminals installed in them now (404 for
others, lists filtered) and never SIMs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status
from fastapi.exceptions import RequestValidationError
from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import Connection

from api.deps import ALL_ROLES, STAFF_ROLES, Principal, get_database, not_found, require_roles
from fleet import service
from fleet.errors import FleetError, Invalid, NotFound
from fleet.schemas import (
    CustomerIn,
    CustomerOut,
    CustomerPatch,
    DriverIn,
    DriverOut,
    DriverPatch,
    InstallationOut,
    InstallIn,
    Page,
    PartOut,
    PartPut,
    SimIn,
    SimOut,
    SimPatch,
    SimSwapIn,
    SwapOut,
    TerminalHistoryOut,
    TerminalIn,
    TerminalModelIn,
    TerminalModelOut,
    TerminalModelPatch,
    TerminalOut,
    TerminalPatch,
    TerminalSwapIn,
    UninstallIn,
    VehicleIn,
    VehicleOut,
    VehiclePatch,
)
from fleet.scope import customer_owns_terminal
from fleet.validation import aware, device_id_candidates, plate_search
from store.db import Database
from store.tables.registry import (
    customers,
    drivers,
    installations,
    sims,
    terminal_models,
    terminals,
    vehicles,
)

router = APIRouter(prefix="/api/v1", tags=["fleet"])

REGISTRY_WRITERS = ("admin", "manager", "clerk")
CATALOGUE_WRITERS = ("admin", "manager")
FIELD_WORKERS = ("admin", "manager", "clerk", "technician")  # install and uninstall
SWAPPERS = ("admin", "manager", "clerk", "technician")  # the desk records the swap on the order

_anyone = require_roles(*ALL_ROLES)
_staff = require_roles(*STAFF_ROLES)
_writer = require_roles(*REGISTRY_WRITERS)
_catalogue = require_roles(*CATALOGUE_WRITERS)
_field = require_roles(*FIELD_WORKERS)
_swapper = require_roles(*SWAPPERS)


@contextmanager
def registry_call(database: Database, *, write: bool = False) -> Iterator[Connection]:
    """A connection (a transaction when writing) whose registry errors become HTTP answers:
    ``Invalid`` a 422 naming the field, ``Conflict`` 409, ``NotFound`` 404."""
    try:
        with database.engine.begin() if write else database.engine.connect() as conn:
            yield conn
    except Invalid as exc:
        raise RequestValidationError(
            [{"loc": _location(exc.field), "msg": exc.message, "type": "value_error"}]
        ) from exc
    except FleetError as exc:
        raise HTTPException(exc.status, detail=exc.message) from exc


def _location(field: str | None) -> tuple[str, ...]:
    """Where a bad value was: a body field, or ``query.end`` / ``path.device_id`` as named."""
    if field and field.split(".")[0] in ("query", "path"):
        return tuple(field.split(".", 1))
    return ("body", field or "request")


def _page(
    conn: Connection, query: Any, order: Any, limit: int, offset: int
) -> tuple[int, list[dict[str, Any]]]:
    total = conn.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    rows = conn.execute(query.order_by(order).limit(limit).offset(offset))
    return int(total), [dict(r._mapping) for r in rows]


def _retired_filter(table: Any, include_retired: bool) -> Any:
    return True if include_retired else table.c.retired_at.is_(None)


def _performer(principal: Principal, given: str | None) -> str:
    return given or principal.name or f"token {principal.token_id}"


# --- customers --------------------------------------------------------------------------------


@router.get("/customers", summary="List customers (a customer token sees only itself)")
def list_customers(
    q: str | None = Query(None, description="part of the name or the code"),
    include_retired: bool = False,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
    principal: Principal = Depends(_anyone),
    database: Database = Depends(get_database),
) -> Page[CustomerOut]:
    query = select(customers).where(_retired_filter(customers, include_retired))
    if q:
        query = query.where(or_(customers.c.name.contains(q), customers.c.code.contains(q)))
    if principal.customer_scope is not None:
        query = query.where(customers.c.id == principal.customer_scope)
    with registry_call(database) as conn:
        total, rows = _page(conn, query, customers.c.id, limit, offset)
    return Page(total=total, limit=limit, offset=offset, items=[CustomerOut.model_validate(r) for r in rows])


@router.post("/customers", status_code=status.HTTP_201_CREATED, summary="Open a customer file")
def create_customer(
    body: CustomerIn, _p: Principal = Depends(_writer), database: Database = Depends(get_database)
) -> CustomerOut:
    with registry_call(database, write=True) as conn:
        return CustomerOut.model_validate(service.create_customer(conn, **body.model_dump()))


@router.get("/customers/{customer_id}")
def read_customer(
    customer_id: int, principal: Principal = Depends(_anyone), database: Database = Depends(get_database)
) -> CustomerOut:
    if not principal.can_see(customer_id):
        raise not_found("customer", customer_id)
    with registry_call(database) as conn:
        return CustomerOut.model_validate(service.get_customer(conn, customer_id))


@router.patch("/customers/{customer_id}")
def update_customer(
    customer_id: int,
    body: CustomerPatch,
    _p: Principal = Depends(_writer),
    database: Database = Depends(get_database),
) -> CustomerOut:
    with registry_call(database, write=True) as conn:
        return CustomerOut.model_validate(
            service.update_customer(conn, customer_id, **body.model_dump(exclude_unset=True))
        )


# --- drivers ----------------------------------------------------------------------------------


@router.get("/drivers")
def list_drivers(
    customer_id: int | None = None,
    q: str | None = None,
    include_retired: bool = False,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
    principal: Principal = Depends(_anyone),
    database: Database = Depends(get_database),
) -> Page[DriverOut]:
    query = select(drivers).where(_retired_filter(drivers, include_retired))
    if principal.customer_scope is not None:
        customer_id = principal.customer_scope
    if customer_id is not None:
        query = query.where(drivers.c.customer_id == customer_id)
    if q:
        query = query.where(or_(drivers.c.name.contains(q), drivers.c.licence_number.contains(q)))
    with registry_call(database) as conn:
        total, rows = _page(conn, query, drivers.c.id, limit, offset)
    return Page(total=total, limit=limit, offset=offset, items=[DriverOut.model_validate(r) for r in rows])


@router.post("/drivers", status_code=status.HTTP_201_CREATED)
def create_driver(
    body: DriverIn, _p: Principal = Depends(_writer), database: Database = Depends(get_database)
) -> DriverOut:
    with registry_call(database, write=True) as conn:
        return DriverOut.model_validate(service.create_driver(conn, **body.model_dump()))


def _visible_driver(conn: Connection, principal: Principal, driver_id: int) -> dict[str, Any]:
    row = conn.execute(select(drivers).where(drivers.c.id == driver_id)).first()
    if row is None or not principal.can_see(row.customer_id):
        raise not_found("driver", driver_id)
    return dict(row._mapping)


@router.get("/drivers/{driver_id}")
def read_driver(
    driver_id: int, principal: Principal = Depends(_anyone), database: Database = Depends(get_database)
) -> DriverOut:
    with registry_call(database) as conn:
        return DriverOut.model_validate(_visible_driver(conn, principal, driver_id))


@router.patch("/drivers/{driver_id}")
def update_driver(
    driver_id: int,
    body: DriverPatch,
    _p: Principal = Depends(_writer),
    database: Database = Depends(get_database),
) -> DriverOut:
    with registry_call(database, write=True) as conn:
        return DriverOut.model_validate(
            service.update_driver(conn, driver_id, **body.model_dump(exclude_unset=True))
        )


# --- vehicles ---------------------------------------------------------------------------------


@router.get("/vehicles")
def list_vehicles(
    customer_id: int | None = None,
    plate: str | None = Query(None, description="part of the plate"),
    vin: str | None = Query(None, description="part of the VIN, as read off the registration"),
    include_retired: bool = False,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
    principal: Principal = Depends(_anyone),
    database: Database = Depends(get_database),
) -> Page[VehicleOut]:
    query = select(vehicles).where(_retired_filter(vehicles, include_retired))
    if principal.customer_scope is not None:
        customer_id = principal.customer_scope
    if customer_id is not None:
        query = query.where(vehicles.c.customer_id == customer_id)
    if plate:
        query = query.where(vehicles.c.plate.contains(plate_search(plate)))
    if vin and vin.strip():
        query = query.where(vehicles.c.vin.contains("".join(vin.split()).upper()))
    with registry_call(database) as conn:
        total, rows = _page(conn, query, vehicles.c.id, limit, offset)
    return Page(total=total, limit=limit, offset=offset, items=[VehicleOut.model_validate(r) for r in rows])


@router.post("/vehicles", status_code=status.HTTP_201_CREATED)
def create_vehicle(
    body: VehicleIn, _p: Principal = Depends(_writer), database: Database = Depends(get_database)
) -> VehicleOut:
    with registry_call(database, write=True) as conn:
        return VehicleOut.model_validate(service.create_vehicle(conn, **body.model_dump()))


def _visible_vehicle(conn: Connection, principal: Principal, vehicle_id: int) -> dict[str, Any]:
    row = conn.execute(select(vehicles).where(vehicles.c.id == vehicle_id)).first()
    if row is None or not principal.can_see(row.customer_id):
        raise not_found("vehicle", vehicle_id)
    return dict(row._mapping)


@router.get("/vehicles/{vehicle_id}")
def read_vehicle(
    vehicle_id: int, principal: Principal = Depends(_anyone), database: Database = Depends(get_database)
) -> VehicleOut:
    with registry_call(database) as conn:
        return VehicleOut.model_validate(_visible_vehicle(conn, principal, vehicle_id))


@router.patch("/vehicles/{vehicle_id}")
def update_vehicle(
    vehicle_id: int,
    body: VehiclePatch,
    _p: Principal = Depends(_writer),
    database: Database = Depends(get_database),
) -> VehicleOut:
    with registry_call(database, write=True) as conn:
        return VehicleOut.model_validate(
            service.update_vehicle(conn, vehicle_id, **body.model_dump(exclude_unset=True))
        )


@router.get(
    "/vehicles/{vehicle_id}/installations",
    summary="Which terminals (and SIMs) were in this vehicle at a moment or during a period",
)
def vehicle_installations(
    vehicle_id: int,
    at: datetime | None = Query(None, description="a moment; with neither at nor start: the whole history"),
    start: datetime | None = None,
    end: datetime | None = None,
    principal: Principal = Depends(_anyone),
    database: Database = Depends(get_database),
) -> list[InstallationOut]:
    with registry_call(database) as conn:
        _visible_vehicle(conn, principal, vehicle_id)
        rows = _history_rows(conn, at, start, end, vehicle_id=vehicle_id)
    return [InstallationOut.model_validate(r) for r in rows]


def _history_rows(
    conn: Connection,
    at: datetime | None,
    start: datetime | None,
    end: datetime | None,
    *,
    vehicle_id: int | None = None,
    sim_id: int | None = None,
) -> list[dict[str, Any]]:
    """Installations at a moment (``at``), during ``[start, end)``, or all of them."""
    if at is not None:
        start, end = aware(at), None
    elif start is not None or end is not None:
        if start is None or end is None or end <= start:
            raise Invalid("give both start and end, end after start", field="query.end")
        start, end = aware(start), aware(end)
    else:
        start, end = _BEGINNING, _END
    return service.installations_during(conn, start, end, vehicle_id=vehicle_id, sim_id=sim_id)


_BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)
_END = datetime(9999, 1, 1, tzinfo=UTC)


# --- terminal models --------------------------------------------------------------------------


def _model_out(conn: Connection, record: dict[str, Any]) -> TerminalModelOut:
    parts = [
        PartOut(part_number=p["part_number"], name=p["name"], price=service.minor_to_price(p["price_minor"]))
        for p in service.model_parts(conn, record["id"])
    ]
    return TerminalModelOut.model_validate({**record, "parts": parts})


@router.get("/terminal-models", summary="The product catalogue: models, warranty policy and spare parts")
def list_terminal_models(
    protocol: str | None = None,
    include_retired: bool = False,
    _p: Principal = Depends(_anyone),
    database: Database = Depends(get_database),
) -> list[TerminalModelOut]:
    query = select(terminal_models).where(_retired_filter(terminal_models, include_retired))
    if protocol:
        query = query.where(terminal_models.c.protocol == protocol)
    with registry_call(database) as conn:
        return [
            _model_out(conn, dict(r._mapping)) for r in conn.execute(query.order_by(terminal_models.c.name))
        ]


@router.post("/terminal-models", status_code=status.HTTP_201_CREATED)
def create_terminal_model(
    body: TerminalModelIn, _p: Principal = Depends(_catalogue), database: Database = Depends(get_database)
) -> TerminalModelOut:
    with registry_call(database, write=True) as conn:
        record = service.create_terminal_model(conn, **body.model_dump())
        return _model_out(conn, record)


@router.get("/terminal-models/{model_id}")
def read_terminal_model(
    model_id: int, _p: Principal = Depends(_anyone), database: Database = Depends(get_database)
) -> TerminalModelOut:
    with registry_call(database) as conn:
        return _model_out(conn, service.get_terminal_model(conn, model_id))


@router.patch("/terminal-models/{model_id}")
def update_terminal_model(
    model_id: int,
    body: TerminalModelPatch,
    _p: Principal = Depends(_catalogue),
    database: Database = Depends(get_database),
) -> TerminalModelOut:
    with registry_call(database, write=True) as conn:
        record = service.update_terminal_model(conn, model_id, **body.model_dump(exclude_unset=True))
        return _model_out(conn, record)


@router.put("/terminal-models/{model_id}/parts/{part_number}", summary="Add or reprice a spare part")
def put_part(
    model_id: int,
    part_number: str,
    body: PartPut,
    _p: Principal = Depends(_catalogue),
    database: Database = Depends(get_database),
) -> TerminalModelOut:
    if body.part_number not in (None, part_number):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"part_number {body.part_number!r} in the body differs from {part_number!r} in the URL",
        )
    with registry_call(database, write=True) as conn:
        service.get_terminal_model(conn, model_id)
        service.set_part(conn, model_id, part_number=part_number, name=body.name, price=body.price)
        return _model_out(conn, service.get_terminal_model(conn, model_id))


# --- terminals --------------------------------------------------------------------------------

_TERMINAL_LIST = select(
    terminals,
    terminal_models.c.name.label("model_name"),
    vehicles.c.plate,
    vehicles.c.customer_id,
    sims.c.iccid,
).select_from(
    terminals.join(terminal_models, terminal_models.c.id == terminals.c.model_id)
    .outerjoin(
        installations,
        and_(installations.c.terminal_id == terminals.c.id, installations.c.valid_to.is_(None)),
    )
    .outerjoin(vehicles, vehicles.c.id == installations.c.vehicle_id)
    .outerjoin(sims, sims.c.id == installations.c.sim_id)
)


@router.get("/terminals")
def list_terminals(
    status_: Literal["stock", "installed", "returned_for_repair", "scrapped"] | None = Query(
        None, alias="status", description="stock, installed, returned_for_repair, scrapped"
    ),
    model_id: int | None = None,
    customer_id: int | None = Query(None, description="installed in this customer's vehicles now"),
    q: str | None = Query(
        None, description="part of the device id, serial number or plate of the vehicle it is in now"
    ),
    include_retired: bool = False,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
    principal: Principal = Depends(_anyone),
    database: Database = Depends(get_database),
) -> Page[TerminalOut]:
    query = _TERMINAL_LIST.where(_retired_filter(terminals, include_retired))
    if principal.customer_scope is not None:
        customer_id = principal.customer_scope
    if customer_id is not None:
        query = query.where(vehicles.c.customer_id == customer_id)
    if status_:
        query = query.where(terminals.c.status == status_)
    if model_id is not None:
        query = query.where(terminals.c.model_id == model_id)
    if q:
        query = query.where(
            or_(
                terminals.c.device_id.contains(q),
                terminals.c.serial_number.contains(q),
                vehicles.c.plate.contains(plate_search(q)),
            )
        )
    with registry_call(database) as conn:
        total, rows = _page(conn, query, terminals.c.id, limit, offset)
    return Page(total=total, limit=limit, offset=offset, items=[TerminalOut.model_validate(r) for r in rows])


@router.post("/terminals", status_code=status.HTTP_201_CREATED)
def create_terminal(
    body: TerminalIn, _p: Principal = Depends(_writer), database: Database = Depends(get_database)
) -> TerminalOut:
    with registry_call(database, write=True) as conn:
        record = service.create_terminal(conn, **body.model_dump())
        return _terminal_out(conn, record["device_id"])


def _terminal_out(conn: Connection, device_id: str) -> TerminalOut:
    row = conn.execute(
        _TERMINAL_LIST.where(terminals.c.device_id.in_(device_id_candidates(device_id)))
    ).first()
    if row is None:
        raise NotFound(f"terminal {device_id} not found")
    return TerminalOut.model_validate(dict(row._mapping))


def visible_terminal(conn: Connection, principal: Principal, device_id: str) -> dict[str, Any]:
    """The terminal if this caller may see it (a customer: installed in its vehicles now), else 404."""
    try:
        terminal = service.terminal_by_device_id(conn, device_id)
    except NotFound:
        raise not_found("terminal", device_id) from None
    if principal.customer_scope is not None and not customer_owns_terminal(
        conn, principal.customer_scope, terminal["device_id"]
    ):
        raise not_found("terminal", device_id)
    return terminal


@router.get("/terminals/{device_id}")
def read_terminal(
    device_id: str, principal: Principal = Depends(_anyone), database: Database = Depends(get_database)
) -> TerminalOut:
    with registry_call(database) as conn:
        terminal = visible_terminal(conn, principal, device_id)
        return _terminal_out(conn, terminal["device_id"])


@router.patch("/terminals/{device_id}")
def update_terminal(
    device_id: str,
    body: TerminalPatch,
    _p: Principal = Depends(_writer),
    database: Database = Depends(get_database),
) -> TerminalOut:
    with registry_call(database, write=True) as conn:
        record = service.update_terminal(conn, device_id, **body.model_dump(exclude_unset=True))
        return _terminal_out(conn, record["device_id"])


@router.get("/terminals/{device_id}/history", summary="Every installation and swap of a terminal")
def terminal_history(
    device_id: str, principal: Principal = Depends(_anyone), database: Database = Depends(get_database)
) -> TerminalHistoryOut:
    with registry_call(database) as conn:
        terminal = visible_terminal(conn, principal, device_id)
        history = service.terminal_history(conn, terminal["device_id"])
        if principal.customer_scope is not None:  # only the time it spent in this customer's vehicles
            own = set(
                conn.execute(
                    select(vehicles.c.id).where(vehicles.c.customer_id == principal.customer_scope)
                ).scalars()
            )
            history["installations"] = [i for i in history["installations"] if i["vehicle_id"] in own]
            history["swaps"] = [s for s in history["swaps"] if s["vehicle_id"] in own]
        return TerminalHistoryOut(
            terminal=_terminal_out(conn, terminal["device_id"]),
            installations=[InstallationOut.model_validate(i) for i in history["installations"]],
            swaps=[SwapOut.model_validate(s) for s in history["swaps"]],
        )


@router.post(
    "/terminals/{device_id}/swap", status_code=status.HTTP_201_CREATED, summary="Terminal swap (rule 5)"
)
def swap_terminal(
    device_id: str,
    body: TerminalSwapIn,
    principal: Principal = Depends(_swapper),
    database: Database = Depends(get_database),
) -> SwapOut:
    with registry_call(database, write=True) as conn:
        swap = service.swap_terminal(
            conn,
            old_device_id=device_id,
            new_device_id=body.new_device_id,
            performed_by=_performer(principal, body.performed_by),
            reason=body.reason,
            symptom=body.symptom,
            at=body.at,
            new_iccid=body.new_iccid,
            ticket_ref=body.ticket_ref,
        )
        return SwapOut.model_validate(swap)


@router.post("/terminals/{device_id}/uninstall", summary="End the terminal's installation")
def uninstall_terminal(
    device_id: str,
    body: UninstallIn,
    principal: Principal = Depends(_field),
    database: Database = Depends(get_database),
) -> InstallationOut:
    with registry_call(database, write=True) as conn:
        record = service.uninstall(
            conn,
            device_id=device_id,
            at=body.at,
            by=_performer(principal, None),
            reason=body.reason,
            terminal_status=body.terminal_status,
        )
        return _installation_out(conn, record["id"])


# --- SIMs -------------------------------------------------------------------------------------


@router.get("/sims")
def list_sims(
    status_: Literal["stock", "active", "suspended", "terminated"] | None = Query(None, alias="status"),
    carrier: str | None = None,
    q: str | None = Query(None, description="part of the ICCID or MSISDN"),
    include_retired: bool = False,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
    _p: Principal = Depends(_staff),
    database: Database = Depends(get_database),
) -> Page[SimOut]:
    query = select(sims).where(_retired_filter(sims, include_retired))
    if status_:
        query = query.where(sims.c.status == status_)
    if carrier:
        query = query.where(sims.c.carrier == carrier)
    if q:
        query = query.where(or_(sims.c.iccid.contains(q), sims.c.msisdn.contains(q)))
    with registry_call(database) as conn:
        total, rows = _page(conn, query, sims.c.id, limit, offset)
    return Page(total=total, limit=limit, offset=offset, items=[SimOut.model_validate(r) for r in rows])


@router.post("/sims", status_code=status.HTTP_201_CREATED)
def create_sim(
    body: SimIn, _p: Principal = Depends(_writer), database: Database = Depends(get_database)
) -> SimOut:
    with registry_call(database, write=True) as conn:
        return SimOut.model_validate(service.create_sim(conn, **body.model_dump()))


@router.get("/sims/{iccid}")
def read_sim(
    iccid: str, _p: Principal = Depends(_staff), database: Database = Depends(get_database)
) -> SimOut:
    with registry_call(database) as conn:
        return SimOut.model_validate(service.sim_by_iccid(conn, iccid))


@router.patch("/sims/{iccid}")
def update_sim(
    iccid: str, body: SimPatch, _p: Principal = Depends(_writer), database: Database = Depends(get_database)
) -> SimOut:
    with registry_call(database, write=True) as conn:
        return SimOut.model_validate(service.update_sim(conn, iccid, **body.model_dump(exclude_unset=True)))


@router.get("/sims/{iccid}/installations", summary="Which terminals this SIM was in, at a moment or ever")
def sim_installations(
    iccid: str,
    at: datetime | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    _p: Principal = Depends(_staff),
    database: Database = Depends(get_database),
) -> list[InstallationOut]:
    with registry_call(database) as conn:
        sim = service.sim_by_iccid(conn, iccid)
        return [
            InstallationOut.model_validate(r) for r in _history_rows(conn, at, start, end, sim_id=sim["id"])
        ]


@router.post("/sims/{iccid}/swap", status_code=status.HTTP_201_CREATED, summary="SIM swap (rule 6)")
def swap_sim(
    iccid: str,
    body: SimSwapIn,
    principal: Principal = Depends(_swapper),
    database: Database = Depends(get_database),
) -> SwapOut:
    with registry_call(database, write=True) as conn:
        swap = service.swap_sim(
            conn,
            old_iccid=iccid,
            new_iccid=body.new_iccid,
            performed_by=_performer(principal, body.performed_by),
            reason=body.reason,
            symptom=body.symptom,
            at=body.at,
            ticket_ref=body.ticket_ref,
        )
        return SwapOut.model_validate(swap)


# --- installations ----------------------------------------------------------------------------


def _installation_query() -> Any:
    return select(
        installations, terminals.c.device_id, sims.c.iccid, sims.c.msisdn, vehicles.c.plate
    ).select_from(installations.join(terminals).join(vehicles).outerjoin(sims))


def _installation_out(conn: Connection, installation_id: int) -> InstallationOut:
    row = conn.execute(_installation_query().where(installations.c.id == installation_id)).first()
    if row is None:
        raise NotFound(f"installation {installation_id} not found")
    return InstallationOut.model_validate(dict(row._mapping))


@router.get("/installations", summary="Installations, filtered; 'at' answers which were valid at a moment")
def list_installations(
    device_id: str | None = None,
    plate: str | None = None,
    iccid: str | None = None,
    at: datetime | None = None,
    current: bool | None = Query(None, description="true: only open installations"),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
    principal: Principal = Depends(_anyone),
    database: Database = Depends(get_database),
) -> Page[InstallationOut]:
    query = _installation_query()
    if principal.customer_scope is not None:
        query = query.where(vehicles.c.customer_id == principal.customer_scope)
    if device_id:
        query = query.where(terminals.c.device_id.in_(device_id_candidates(device_id)))
    if plate:
        query = query.where(vehicles.c.plate == plate_search(plate))
    if iccid:
        query = query.where(sims.c.iccid == iccid.strip())
    if at is not None:
        moment = aware(at)
        query = query.where(
            installations.c.valid_from <= moment,
            or_(installations.c.valid_to.is_(None), installations.c.valid_to > moment),
        )
    if current is True:
        query = query.where(installations.c.valid_to.is_(None))
    elif current is False:
        query = query.where(installations.c.valid_to.is_not(None))
    with registry_call(database) as conn:
        total, rows = _page(conn, query, installations.c.id, limit, offset)
    return Page(
        total=total, limit=limit, offset=offset, items=[InstallationOut.model_validate(r) for r in rows]
    )


@router.post(
    "/installations", status_code=status.HTTP_201_CREATED, summary="Install a terminal (and SIM) in a vehicle"
)
def create_installation(
    body: InstallIn, principal: Principal = Depends(_field), database: Database = Depends(get_database)
) -> InstallationOut:
    with registry_call(database, write=True) as conn:
        record = service.install(
            conn,
            device_id=body.device_id,
            plate=body.plate,
            iccid=body.iccid,
            at=body.at,
            installed_by=body.installed_by or _performer(principal, None),
            mount_location=body.mount_location,
        )
        return _installation_out(conn, record["id"])


@router.get("/installations/{installation_id}")
def read_installation(
    installation_id: int, principal: Principal = Depends(_anyone), database: Database = Depends(get_database)
) -> InstallationOut:
    with registry_call(database) as conn:
        out = _installation_out(conn, installation_id)
        owner = conn.execute(select(vehicles.c.customer_id).where(vehicles.c.id == out.vehicle_id)).scalar()
    if not principal.can_see(owner):
        raise not_found("installation", installation_id)
    return out


# --- delete and retire ------------------------------------------------------------------------

_KINDS: dict[str, tuple[str, Callable[[Connection, str], int]]] = {
    "customers": ("customer", lambda conn, key: int(key)),
    "drivers": ("driver", lambda conn, key: int(key)),
    "vehicles": ("vehicle", lambda conn, key: int(key)),
    "terminal-models": ("terminal_model", lambda conn, key: int(key)),
    "terminals": ("terminal", lambda conn, key: int(service.terminal_by_device_id(conn, key)["id"])),
    "sims": ("sim", lambda conn, key: int(service.sim_by_iccid(conn, key)["id"])),
}


def _record_id(conn: Connection, collection: str, key: str) -> tuple[str, int]:
    kind, resolve = _KINDS[collection]
    try:
        return kind, resolve(conn, key)
    except ValueError:
        raise NotFound(f"{kind.replace('_', ' ')} {key} not found") from None


def _add_delete_and_retire(collection: str) -> None:
    writers = _catalogue if collection == "terminal-models" else _writer

    def delete(
        key: str, _p: Principal = Depends(writers), database: Database = Depends(get_database)
    ) -> Response:
        with registry_call(database, write=True) as conn:
            kind, record_id = _record_id(conn, collection, key)
            service.delete_record(conn, kind, record_id)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    def retire(
        key: str, _p: Principal = Depends(writers), database: Database = Depends(get_database)
    ) -> dict[str, Any]:
        with registry_call(database, write=True) as conn:
            kind, record_id = _record_id(conn, collection, key)
            record = service.retire_record(conn, kind, record_id)
        return {"id": record["id"], "retired_at": record["retired_at"]}

    router.add_api_route(
        f"/{collection}/{{key}}",
        delete,
        methods=["DELETE"],
        status_code=status.HTTP_204_NO_CONTENT,
        summary=f"Delete from {collection} (409 when history needs it: retire instead)",
        response_class=Response,
    )
    router.add_api_route(
        f"/{collection}/{{key}}/retire",
        retire,
        methods=["POST"],
        summary=f"Retire from {collection}: kept for history, out of service",
    )


for _collection in _KINDS:
    _add_delete_and_retire(_collection)
