"""``create_app(settings, database)``: the FastAPI app with every router listed explicitly.

Each domain package has ``<package>/router.py`` with ``router = APIRouter(prefix="/api/v1")``
and adds ONE line to ``ROUTERS``.  ``/health`` and ``/metrics`` are always served;
``/docs`` and ``/openapi.json`` are open (documentation, no data); everything else needs a
bearer token (see ``api.deps``).  Errors are JSON objects with a ``detail`` string.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, FastAPI, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from alerts import router as alerts_router
from api import dashboard, docs, health, metrics, positions, tokens
from api.deps import RecentTokens
from core.settings import Settings
from fleet import router as fleet_router
from gateway import router as gateway_router
from store.db import Database, DatabaseUnavailable
from warranty import router as warranty_router

log = logging.getLogger(__name__)

ROUTERS: list[APIRouter] = [
    tokens.router,
    positions.router,
    alerts_router.router,
    gateway_router.router,
    fleet_router.router,
    warranty_router.router,
    dashboard.router,
]

OPERATIONS_ROUTERS: list[APIRouter] = [health.router, metrics.router]


def create_app(
    settings: Settings, database: Database, *, routers: Sequence[APIRouter] | None = None
) -> FastAPI:
    """The API for ``database``; ``routers`` replaces ``ROUTERS`` (a gateway-only process
    passes ``()`` to serve just /health and /metrics)."""
    app = FastAPI(
        title="gpsfleet",
        version="0.1.0",
        description=(
            "GPS terminals, fleet registry, warranty, health, alerts and repair tickets. "
            "Every endpoint needs `Authorization: Bearer <token>` (create one with "
            "`gpsfleet token create --role ROLE`); customer tokens see only their own customer."
        ),
        docs_url=None,  # api/docs.py serves it without a CDN
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.settings = settings
    app.state.database = database
    app.state.health_checks = []
    app.state.recent_tokens = RecentTokens()
    app.state.services = {}
    app.add_middleware(metrics.MetricsMiddleware)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DatabaseUnavailable, _database_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(Exception, _internal_error)
    docs.mount(app)
    for router in OPERATIONS_ROUTERS:
        app.include_router(router)
    for router in ROUTERS if routers is None else routers:
        app.include_router(router)
    return app


def describe_validation_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Each error as {field: "query.start", message, type}: which field is wrong, and how."""
    described = []
    for error in errors:
        location = [str(part) for part in error.get("loc", ())]
        if error.get("type") == "json_invalid":  # loc is ("body", character offset)
            reason = str((error.get("ctx") or {}).get("error", "")).strip()
            at = f" at character {location[1]}" if len(location) > 1 else ""
            described.append(
                {
                    "field": "body",
                    "message": f"the body is not valid JSON ({reason or 'cannot be parsed'}{at})",
                    "type": "json_invalid",
                }
            )
            continue
        described.append(
            {
                "field": ".".join(location) or "request",
                "message": str(error.get("msg", "invalid")),
                "type": str(error.get("type", "")),
            }
        )
    return described


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = describe_validation_errors(exc.errors())
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return JSONResponse(
        {"detail": f"invalid request: {detail}", "errors": errors},
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    """A 422 raised by hand has the shape of the validation 422s: ``detail`` and ``errors``."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == status.HTTP_422_UNPROCESSABLE_CONTENT and isinstance(exc.detail, str):
        return JSONResponse(
            {
                "detail": exc.detail,
                "errors": [{"field": "request", "message": exc.detail, "type": "invalid"}],
            },
            status_code=exc.status_code,
            headers=exc.headers,
        )
    return await http_exception_handler(request, exc)


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, DBAPIError) and not exc.connection_invalidated and not _is_operational(exc):
        return await _internal_error(request, exc)
    log.warning("database unavailable during %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(
        {"detail": "database unavailable, try again shortly"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": "5"},
    )


def _is_operational(exc: DBAPIError) -> bool:
    from sqlalchemy.exc import OperationalError

    return isinstance(exc, OperationalError)


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        {"detail": "internal error; it has been logged"},
        status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )
