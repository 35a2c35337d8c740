"""``/health``: readiness. The database answers, and so does every registered check.

Components add checks to ``app.state.health_checks``: callables (plain or async) that
return a ``Check``.  A check that raises or takes longer than ``CHECK_TIMEOUT_S`` counts
as failed, so one stuck component cannot hang the probe.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import STAFF_ROLES, Principal, require_roles
from store.db import Database

CHECK_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""


HealthCheck = Callable[[], "Check | Awaitable[Check]"]
"""What ``app.state.health_checks`` holds."""

router = APIRouter(tags=["operations"])


def database_check(database: Database) -> Check:
    """SELECT 1, with a statement timeout on PostgreSQL so a stuck server fails fast."""
    try:
        with database.engine.connect() as conn:
            if database.is_postgres:
                conn.execute(text(f"SET LOCAL statement_timeout = {int(CHECK_TIMEOUT_S * 1000)}"))
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means the database is not usable
        return Check("database", False, f"{database.masked_url}: {_first_line(exc)}")
    return Check("database", True, database.dialect)


async def run_check(name: str, check: HealthCheck) -> Check:
    """Run one check (plain callables in a thread) with the timeout; failures become a Check."""
    try:
        if inspect.iscoroutinefunction(check):
            result = await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
        else:
            result = await asyncio.wait_for(asyncio.to_thread(check), CHECK_TIMEOUT_S)
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(result, CHECK_TIMEOUT_S)
    except TimeoutError:
        return Check(name, False, f"no answer within {CHECK_TIMEOUT_S:g}s")
    except Exception as exc:  # a broken check is a failed check, not a failed probe
        return Check(name, False, f"check raised {type(exc).__name__}: {_first_line(exc)}")
    if not isinstance(result, Check):
        return Check(name, False, f"check returned {type(result).__name__}, not Check")
    return result


async def readiness(request: Request) -> tuple[bool, dict[str, dict[str, Any]]]:
    database: Database = request.app.state.database
    checks: list[HealthCheck] = [lambda: database_check(database)]
    checks.extend(request.app.state.health_checks)
    # A check that raises or times out is reported under its function's name.
    names = ["database"] + [_check_name(check) for check in checks[1:]]
    results = await asyncio.gather(*(run_check(n, c) for n, c in zip(names, checks, strict=True)))
    report: dict[str, dict[str, Any]] = {}
    for result in results:
        key = result.name if result.name not in report else f"{result.name}#{len(report)}"
        report[key] = {"ok": result.ok, "detail": result.detail}
    return all(r.ok for r in results), report


def _check_name(check: HealthCheck) -> str:
    owner = getattr(check, "__self__", None)  # a bound method: name it after its object
    if owner is not None:
        return type(owner).__name__
    return str(getattr(check, "__name__", "check"))


@router.get(
    "/health",
    summary="Readiness: the database and every component answer",
    responses={503: {"description": "a check failed"}},
)
async def health(
    request: Request, _principal: Principal = Depends(require_roles(*STAFF_ROLES))
) -> JSONResponse:
    ok, report = await readiness(request)
    return JSONResponse({"status": "ok" if ok else "fail", "checks": report}, status_code=200 if ok else 503)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
