"""API bearer tokens: who may call the API, with which role, for which customer."""

from __future__ import annotations

from sqlalchemy import Column, Integer, String, Table

from store.tables.base import UtcDateTime, metadata

# customer_id has no foreign key: customers arrive with the registry (migration 3) and a
# token must outlive a customer's deletion long enough to be listed and revoked.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("role", String(20), nullable=False),
    Column("customer_id", Integer, nullable=True, index=True),
    Column("token_prefix", String(16), nullable=False),  # first characters, to recognise a token
    Column("token_hash", String(64), nullable=False, unique=True),  # hex SHA-256 of the token
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_used_at", UtcDateTime, nullable=True),
    Column("revoked_at", UtcDateTime, nullable=True),
)
