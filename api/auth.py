"""Roles and bearer tokens: create (shown once), verify, revoke, list.

A token is ``gpf_`` followed by 32 random bytes (URL-safe base64).  Only its SHA-256 is
stored.  Plain SHA-256 rather than an HMAC keyed by ``secret_key``: the token carries 256
bits of randomness, so its hash cannot be brute-forced and a key adds no strength, while
keying it would tie every token to one secret: rotating the secret, or a CLI run with a
different secret than the server, would silently turn every token into a 401.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import inspect, select, text, update
from sqlalchemy.engine import Connection, Engine

from store.tables.auth import api_tokens


class Role(StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    NOC = "noc"
    CLERK = "clerk"
    TECHNICIAN = "technician"
    FINANCE = "finance"
    CUSTOMER = "customer"


ALL_ROLES: frozenset[str] = frozenset(role.value for role in Role)
STAFF_ROLES: frozenset[str] = ALL_ROLES - {Role.CUSTOMER.value}

TOKEN_PREFIX = "gpf_"
_SHOWN_PREFIX_LENGTH = 12  # "gpf_" and 8 random characters: enough to tell tokens apart
_LAST_USED_RESOLUTION = timedelta(minutes=1)  # no write per request, only once a minute


class TokenError(ValueError):
    """A token cannot be created or revoked as asked; the message says why."""


@dataclass(frozen=True)
class TokenInfo:
    """A stored token as listed: never the token itself, only its first characters."""

    id: int
    name: str
    role: str
    customer_id: int | None
    token_prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class NewToken:
    """A token just created: ``token`` is the secret, shown this once and never again."""

    info: TokenInfo
    token: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(engine: Engine, *, role: str, customer_id: int | None = None, name: str = "") -> NewToken:
    """Store a new token and return it with its secret (the only time it is seen)."""
    if role not in ALL_ROLES:
        raise TokenError(f"unknown role {role!r}: choose one of {', '.join(sorted(ALL_ROLES))}")
    if role == Role.CUSTOMER and customer_id is None:
        raise TokenError("a customer token needs a customer id: it sees only that customer's data")
    if role != Role.CUSTOMER and customer_id is not None:
        raise TokenError(f"only customer tokens name a customer; a {role} token sees every customer")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        if customer_id is not None:
            _check_customer_exists(conn, customer_id)
        inserted = conn.execute(
            api_tokens.insert()
            .values(
                name=name or f"{role} token",
                role=role,
                customer_id=customer_id,
                token_prefix=token[:_SHOWN_PREFIX_LENGTH],
                token_hash=hash_token(token),
                created_at=now,
            )
            .returning(*api_tokens.c)
        ).one()
    return NewToken(_info(inserted), token)


def _check_customer_exists(conn: Connection, customer_id: int) -> None:
    # The registry (migration 3) may not be installed yet; where it is, the id must exist.
    if not inspect(conn).has_table("customers"):
        return
    found = conn.execute(text("SELECT 1 FROM customers WHERE id = :id"), {"id": customer_id}).first()
    if found is None:
        raise TokenError(f"customer {customer_id} does not exist")


def verify_token(engine: Engine, token: str) -> TokenInfo | None:
    """The active token matching ``token``, or None (unknown or revoked). Notes its use."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    with engine.connect() as conn:
        row = conn.execute(select(api_tokens).where(api_tokens.c.token_hash == hash_token(token))).first()
    if row is None or row.revoked_at is not None:
        return None
    info = _info(row)
    now = datetime.now(UTC)
    if info.last_used_at is None or now - info.last_used_at >= _LAST_USED_RESOLUTION:
        with engine.begin() as conn:
            conn.execute(update(api_tokens).where(api_tokens.c.id == info.id).values(last_used_at=now))
    return info


def revoke_token(engine: Engine, token_id: int) -> TokenInfo:
    """Revoke a token; revoking one already revoked keeps the first revocation time."""
    with engine.begin() as conn:
        conn.execute(
            update(api_tokens)
            .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
        row = conn.execute(select(api_tokens).where(api_tokens.c.id == token_id)).first()
    if row is None:
        raise TokenError(f"no token with id {token_id}")
    return _info(row)


def get_token(engine: Engine, token_id: int) -> TokenInfo | None:
    with engine.connect() as conn:
        row = conn.execute(select(api_tokens).where(api_tokens.c.id == token_id)).first()
    return _info(row) if row is not None else None


def list_tokens(engine: Engine, *, include_revoked: bool = True) -> list[TokenInfo]:
    query = select(api_tokens).order_by(api_tokens.c.id)
    if not include_revoked:
        query = query.where(api_tokens.c.revoked_at.is_(None))
    with engine.connect() as conn:
        return [_info(row) for row in conn.execute(query)]


def _info(row: object) -> TokenInfo:
    mapping = row._mapping  # type: ignore[attr-defined]
    return TokenInfo(
        id=mapping["id"],
        name=mapping["name"],
        role=mapping["role"],
        customer_id=mapping["customer_id"],
        token_prefix=mapping["token_prefix"],
        created_at=mapping["created_at"],
        last_used_at=mapping["last_used_at"],
        revoked_at=mapping["revoked_at"],
    )
