"""INSERT … ON CONFLICT for both backends, the one dialect difference alerts cares about."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import TextClause


def _insert(conn: Connection, table: Table) -> Any:
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


def upsert(conn: Connection, table: Table, rows: Sequence[dict[str, Any]], key: Sequence[str]) -> None:
    """Insert rows, or update every other column of the row with the same key."""
    if not rows:
        return
    statement = _insert(conn, table)
    columns = [c for c in rows[0] if c not in key]
    statement = statement.on_conflict_do_update(
        index_elements=list(key), set_={c: statement.excluded[c] for c in columns}
    )
    conn.execute(statement, list(rows))


def insert_unless_open(
    conn: Connection, table: Table, values: dict[str, Any], key: Sequence[str], where: TextClause
) -> int | None:
    """Insert one row unless the partial unique index (``key`` WHERE ``where``) already holds
    one; returns the new id, or None when another row (of any process) was there first."""
    statement = (
        _insert(conn, table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=list(key), index_where=where)
        .returning(table.c.id)
    )
    row = conn.execute(statement).first()
    return int(row[0]) if row else None
