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

import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import Counter
from sqlalchemy.exc import OperationalError

from api.auth import ALL_ROLES, STAFF_ROLES, Role, hash_token, verify_token
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


class RecentTokens:
    """Tokens this process verified lately, so that while the database is unreachable
    their callers still get answers that need no database (``/health`` turning red with
    its details, ``/metrics``, the gateway's hex-log switch) instead of a bare 503.

    Bounded (least recently used out first); an entry older than ``keep_s`` is not used.
    A token revoked in the ``keep_s`` before an outage may be honoured during it, for
    those database-free answers only: everything else fails without its database.
    """

    def __init__(self, size: int = 1024, keep_s: float = 900.0) -> None:
        self.size = size
        self.keep_s = keep_s
        self._entries: OrderedDict[str, tuple[float, Principal]] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, token: str, principal: Principal) -> None:
        key = hash_token(token)
        with self._lock:
            self._entries[key] = (time.monotonic(), principal)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def recall(self, token: str) -> Principal | None:
        with self._lock:
            entry = self._entries.get(hash_token(token))
        if entry is None or time.monotonic() - entry[0] > self.keep_s:
            return None
        return entry[1]

    def forget(self, token_id: int) -> None:
        with self._lock:
            for key in [k for k, (_, p) in self._entries.items() if p.token_id == token_id]:
                del self._entries[key]


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
    token = credentials.credentials
    recent: RecentTokens | None = getattr(request.app.state, "recent_tokens", None)
    try:
        info = await run_in_threadpool(verify_token, database.engine, token)
    except OperationalError:  # the database is unreachable: a 503, unless seen lately
        remembered = recent.recall(token) if recent is not None else None
        if remembered is None:
            raise
        request.state.principal = remembered
        return remembered
    if info is None:
        AUTH_FAILURES.labels("invalid").inc()
        raise _unauthorized("invalid or revoked token", "invalid_token")
    principal = Principal(token_id=info.id, role=info.role, customer_id=info.customer_id, name=info.name)
    if recent is not None:
        recent.remember(token, principal)
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
