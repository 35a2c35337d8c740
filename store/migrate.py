"""Versioned schema migrations, applied in order at start on either backend.

Each migration is a module in ``store/migrations`` with ``VERSION``, ``NAME`` and
``upgrade(conn)``, listed in ``store.migrations.MIGRATIONS``.  A migration writes the
schema as it was at that version (frozen), so an old database upgrades in place; the
test ``tests/store/test_migrations.py`` checks that the result equals ``store.schema``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import Column, Integer, MetaData, String, Table, inspect, select, text
from sqlalchemy.engine import Connection, Engine

from store.tables.base import UtcDateTime

log = logging.getLogger(__name__)

_version_metadata = MetaData()
schema_version = Table(
    "schema_version",
    _version_metadata,
    Column("version", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("applied_at", UtcDateTime, nullable=False),
)

_LOCK_KEY = 0x6770_7366  # "gpsf": one migrating process at a time on PostgreSQL


def current_version(conn: Connection) -> int:
    if not inspect(conn).has_table("schema_version"):
        return 0
    value = conn.execute(select(schema_version.c.version).order_by(schema_version.c.version.desc())).first()
    return int(value[0]) if value else 0


def migrate(engine: Engine, target: int | None = None) -> list[int]:
    from store.migrations import MIGRATIONS

    applied: list[int] = []
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        _version_metadata.create_all(conn)
        version = current_version(conn)
        for migration in sorted(MIGRATIONS, key=lambda m: m.VERSION):
            if migration.VERSION <= version or (target is not None and migration.VERSION > target):
                continue
            log.info("applying migration %04d %s", migration.VERSION, migration.NAME)
            migration.upgrade(conn)
            conn.execute(
                schema_version.insert().values(
                    version=migration.VERSION, name=migration.NAME, applied_at=datetime.now(UTC)
                )
            )
            applied.append(migration.VERSION)
    return applied
