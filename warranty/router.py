"""``/api/v1`` warranty endpoints: coverage on a day, extended contracts, void, repair quotes."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from fastapi import APIRouter, Depends, status
from sqlalchemy import select
from sqlalchemy.engine import Connection

from api.deps import ALL_ROLES, STAFF_ROLES, Principal, get_database, get_settings, require_roles
from core.settings import Settings
from fleet import service
from fleet.router import registry_call, visible_terminal
from fleet.schemas import ContractIn, ContractOut, CoverageOut, QuoteIn, QuoteLineOut, QuoteOut, VoidIn
from store.db import Database
from store.tables.registry import terminals
from warranty.billing import PartRequest, Quote, quote
from warranty.coverage import Coverage, coverage

router = APIRouter(prefix="/api/v1", tags=["warranty"])

_anyone = require_roles(*ALL_ROLES)
_staff = require_roles(*STAFF_ROLES)
_contract_writers = require_roles("admin", "manager", "clerk")
_voiders = require_roles("admin", "manager")


def _today() -> date:
    return datetime.now(UTC).date()


def coverage_out(device_id: str, on: date, cover: Coverage) -> CoverageOut:
    return CoverageOut(
        device_id=device_id,
        on=on,
        in_warranty=cover.in_warranty,
        until=cover.until,
        reason=cover.reason,
        source=cover.source,
        starts_on=cover.starts_on,
    )


@router.get("/terminals/{device_id}/warranty", summary="In or out of warranty on a day, until when, and why")
def terminal_warranty(
    device_id: str,
    on: date | None = None,
    principal: Principal = Depends(_anyone),
    database: Database = Depends(get_database),
    settings: Settings = Depends(get_settings),
) -> CoverageOut:
    day = on or _today()
    with registry_call(database) as conn:
        terminal = visible_terminal(conn, principal, device_id)
        cover = coverage(conn, terminal["device_id"], day, settings.warranty)
    return coverage_out(terminal["device_id"], day, cover)


@router.get("/terminals/{device_id}/warranty/contracts")
def list_contracts(
    device_id: str, _p: Principal = Depends(_staff), database: Database = Depends(get_database)
) -> list[ContractOut]:
    with registry_call(database) as conn:
        terminal = service.terminal_by_device_id(conn, device_id)
        return [_contract_out(conn, c) for c in service.warranty_contracts_of(conn, terminal["id"])]


@router.post(
    "/terminals/{device_id}/warranty/contracts",
    status_code=status.HTTP_201_CREATED,
    summary="Add an extended warranty contract",
)
def add_contract(
    device_id: str,
    body: ContractIn,
    _p: Principal = Depends(_contract_writers),
    database: Database = Depends(get_database),
) -> ContractOut:
    with registry_call(database, write=True) as conn:
        record = service.add_warranty_contract(conn, device_id=device_id, **body.model_dump())
        return _contract_out(conn, record)


@router.post("/warranty/contracts/{contract_id}/void", summary="Void an extended warranty contract")
def void_contract(
    contract_id: int,
    body: VoidIn,
    _p: Principal = Depends(_voiders),
    database: Database = Depends(get_database),
) -> ContractOut:
    with registry_call(database, write=True) as conn:
        return _contract_out(conn, service.void_warranty_contract(conn, contract_id, reason=body.reason))


def _contract_out(conn: Connection, contract: dict[str, Any]) -> ContractOut:
    """A contract with its terminal's device id (``terminal_id`` is the registry's row id)."""
    device_id = conn.execute(
        select(terminals.c.device_id).where(terminals.c.id == contract["terminal_id"])
    ).scalar_one_or_none()
    return ContractOut.model_validate({**contract, "device_id": device_id})


@router.post("/terminals/{device_id}/warranty/void", summary="Void a terminal's warranty from a day on")
def void_terminal_warranty(
    device_id: str,
    body: VoidIn,
    _p: Principal = Depends(_voiders),
    database: Database = Depends(get_database),
    settings: Settings = Depends(get_settings),
) -> CoverageOut:
    day = body.on or _today()
    with registry_call(database, write=True) as conn:
        terminal = service.void_warranty(conn, device_id=device_id, reason=body.reason, on=day)
        cover = coverage(conn, terminal["device_id"], day, settings.warranty)
    return coverage_out(terminal["device_id"], day, cover)


@router.post("/terminals/{device_id}/quote", summary="What a repair (or installation) costs, line by line")
def repair_quote(
    device_id: str,
    body: QuoteIn,
    principal: Principal = Depends(_anyone),
    database: Database = Depends(get_database),
    settings: Settings = Depends(get_settings),
) -> QuoteOut:
    day = body.on or _today()
    parts = [PartRequest(p.part_number, p.quantity) for p in body.parts]
    with registry_call(database) as conn:
        terminal = visible_terminal(conn, principal, device_id)
        result = quote(conn, terminal["device_id"], parts, day, settings.warranty, work=body.work)
    return quote_out(result)


def quote_out(result: Quote) -> QuoteOut:
    return QuoteOut(
        device_id=result.device_id,
        model_name=result.model_name,
        on=result.on,
        work=result.work,
        currency=result.currency,
        coverage=coverage_out(result.device_id, result.on, result.coverage),
        lines=[
            QuoteLineOut(
                kind=line.kind,
                part_number=line.part_number,
                description=line.description,
                quantity=line.quantity,
                unit_price=line.unit_price,
                amount=line.amount,
                reason=line.reason,
            )
            for line in result.lines
        ],
        total=result.total,
    )
