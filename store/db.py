"""Opening the database named by a URL, for either backend, and checking it answers."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine

from core.settings import TimescaleSettings, mask_dsn

log = logging.getLogger(__name__)


class DatabaseUnavailable(RuntimeError):
    """The configured database does not answer; the message names it, password masked."""


def sqlalchemy_url(url: str) -> str:
    if url.startswith("postgres://"):
        return "postgresql+psycopg://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def libpq_url(url: str) -> str:
    """The URL as psycopg itself takes it (no SQLAlchemy driver suffix)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


class Database:
    """One database: its SQLAlchemy engine (pooled) and which backend it is."""

    def __init__(self, url: str, *, pool_size: int = 8, echo: bool = False) -> None:
        self.url = url
        self.masked_url = mask_dsn(url)
        self.dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if self.dialect == "sqlite":
            path = url.split("sqlite:///", 1)[-1] if url.startswith("sqlite:///") else ""
            if path and path != ":memory:":
                Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
            kwargs["connect_args"] = {"connect_timeout": 5}
        self.engine: Engine = create_engine(sqlalchemy_url(url), **kwargs)
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def check(self) -> None:
        """Raise ``DatabaseUnavailable`` naming the DSN when the server does not answer."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # any driver error means: not reachable as configured
            raise DatabaseUnavailable(
                f"database {self.masked_url} is unreachable: {_first_line(exc)}"
            ) from exc

    def migrate(self, timescale: TimescaleSettings | None = None) -> list[int]:
        """Apply pending schema migrations, then on PostgreSQL the TimescaleDB setup
        (``store.timescale``); returns the versions applied."""
        from store.migrate import migrate
        from store.timescale import apply_timescale

        applied = migrate(self.engine)
        if self.is_postgres:
            with self.engine.begin() as conn:
                apply_timescale(conn, timescale or TimescaleSettings())
        return applied

    def dispose(self) -> None:
        self.engine.dispose()


def open_database(
    url: str, *, pool_size: int = 8, migrate: bool = True, timescale: TimescaleSettings | None = None
) -> Database:
    """Open, check and (by default) migrate: what every command does at start."""
    database = Database(url, pool_size=pool_size)
    database.check()
    if migrate:
        database.migrate(timescale)
    return database


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # Larger pages: fewer b-tree pages to split and log per bulk batch.  Takes effect
    # only on a new, empty file (before the WAL switch below); older files keep theirs.
    cursor.execute("PRAGMA page_size=16384")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _first_line(exc: BaseException) -> str:
    text_ = str(exc).strip().splitlines()
    return text_[0] if text_ else type(exc).__name__
