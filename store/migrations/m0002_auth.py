"""Migration 2: the API token table (frozen copy of store/tables/auth.py at version 2)."""

from __future__ import annotations

from sqlalchemy import Column, Integer, MetaData, String, Table
from sqlalchemy.engine import Connection

from store.tables.base import UtcDateTime, metadata

VERSION = 2
NAME = "auth tokens"

_frozen = MetaData(naming_convention=metadata.naming_convention)

Table(
    "api_tokens",
    _frozen,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("role", String(20), nullable=False),
    Column("customer_id", Integer, nullable=True, index=True),
    Column("token_prefix", String(16), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_used_at", UtcDateTime, nullable=True),
    Column("revoked_at", UtcDateTime, nullable=True),
)


def upgrade(conn: Connection) -> None:
    _frozen.create_all(conn)
