"""FastAPI dependencies every router uses: the caller (Principal), roles, database, settings.

Use in a router::

    @router.get("/things/{thing_id}")
    def read_thing(
        thing_id: int,
        principal: Principal = Depends(require_roles(*STAFF_ROLES, "customer")),
        database: Database = Depends(get_database),
    ) -> ThingOut:
        thing = ...
        if thing is None or not principal.can_see(thing.customer_id):
            raise not_found("thing", thing_id)   # another customer's object: 404, never 403

Lists filter with ``principal.customer_scope`` (None: every customer).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import Counter

from api.auth import ALL_ROLES, STAFF_ROLES, Role, verify_token
from core.settings import Settings
from store.db import Database

__all__ = [
    "ALL_ROLES",
    "STAFF_ROLES",
    "Principal",
    "Role",
    "get_database",
    "get_settings",
    "not_found",
    "require_roles",
]

AUTH_FAILURES = Counter(
    "gpsfleet_api_auth_failures_total",
    "Requests refused: no token, a bad or revoked one, or a role that may not",
    ["reason"],
)

_bearer = HTTPBearer(auto_error=False, description="a token from `gpsfleet token create`")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's id, role, customer (customer tokens only) and name."""

    token_id: int
    role: str
    customer_id: int | None
    name: str

    @property
    def is_customer(self) -> bool:
        return self.role == Role.CUSTOMER

    @property
    def customer_scope(self) -> int | None:
        """The only customer this caller may see, or None for staff (every customer)."""
        return self.customer_id if self.is_customer else None

    def can_see(self, customer_id: int | None) -> bool:
        """May this caller see an object owned by ``customer_id`` (None: no customer)?"""
        return not self.is_customer or (customer_id is not None and customer_id == self.customer_id)


def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def not_found(what: str, key: object) -> HTTPException:
    """The 404 for a missing object, and for one that belongs to another customer."""
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"{what} {key} not found")


def _unauthorized(detail: str, error: str | None = None) -> HTTPException:
    challenge = f'Bearer error="{error}"' if error else "Bearer"
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": challenge})


async def current_principal(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
) -> Principal:
    """The caller of this request, from its ``Authorization: Bearer`` token; 401 otherwise."""
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        AUTH_FAILURES.labels("missing").inc()
        raise _unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    database = get_database(request)
    info = await run_in_threadpool(verify_token, database.engine, credentials.credentials)
    if info is None:
        AUTH_FAILURES.labels("invalid").inc()
        raise _unauthorized("invalid or revoked token", "invalid_token")
    principal = Principal(token_id=info.id, role=info.role, customer_id=info.customer_id, name=info.name)
    request.state.principal = principal
    return principal


def require_roles(*roles: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency returning the caller when its role is one of ``roles`` (all when none).

    401 without a valid token, 403 when the token's role may not call the endpoint.
    """
    allowed = frozenset(roles) or ALL_ROLES
    unknown = allowed - ALL_ROLES
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}")

    async def dependency(principal: Principal = Depends(current_principal)) -> Principal:
        if principal.role not in allowed:
            AUTH_FAILURES.labels("forbidden").inc()
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"role {principal.role!r} may not do this; allowed: {', '.join(sorted(allowed))}",
            )
        return principal

    return dependency
