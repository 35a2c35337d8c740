"""Bulk ingest: a batch of positions and events, and the terminal states they move, in one
transaction.  Duplicates are counted no-ops, so a batch retried after a lost connection
stores nothing twice and leaves the states as they were.

PostgreSQL takes the rows by binary COPY (``store.ingest_postgres``), SQLite by multi-row
INSERTs built one slice ahead on a prepare thread (``store.ingest_sqlite``); the
terminal-state rules are shared (``store.ingest_prepare``).
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any, cast

import psycopg

from store import ingest_postgres, ingest_sqlite
from store.db import Database
from store.records import IngestBatch, WriteResult

log = logging.getLogger(__name__)


class WriteFailed(RuntimeError):
    """The batch was not stored (the transaction rolled back).

    ``retryable`` is True when the database itself failed (unreachable, connection lost,
    locked, deadlock): the same batch may be written again later.  False means the batch
    holds something the database refuses, and writing it again will fail again.
    """

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class PositionWriter:
    """Writes batches to the database.  One writer per thread; each ``write`` takes a
    pooled connection for one transaction and gives it back."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def write(self, batch: IngestBatch) -> WriteResult:
        """Store the batch in one transaction; raise ``WriteFailed`` when it was not stored."""
        if not len(batch):
            return WriteResult()
        try:
            pooled = self.database.engine.raw_connection()
        except Exception as exc:  # the server does not answer
            raise self._failed(batch, exc, retryable=True) from exc
        try:
            if self.database.is_postgres:
                return self._write_postgres(pooled, batch)
            conn = cast(sqlite3.Connection, pooled.driver_connection)
            ingest_sqlite.prepare_connection(conn, pooled.info)
            return ingest_sqlite.write_batch(conn, pooled.info, batch)
        except Exception as exc:
            driver = pooled.driver_connection
            if isinstance(driver, psycopg.Connection) and (driver.closed or driver.broken):
                pooled.invalidate(exc)  # never hand a dead connection to the next write
            retryable = isinstance(exc, psycopg.OperationalError | sqlite3.OperationalError)
            raise self._failed(batch, exc, retryable=retryable) from exc
        finally:
            pooled.close()

    def _failed(self, batch: IngestBatch, exc: BaseException, *, retryable: bool) -> WriteFailed:
        return WriteFailed(
            f"batch of {len(batch.positions)} positions and {len(batch.events)} events not "
            f"stored in {self.database.masked_url}: {type(exc).__name__}: {_first_line(exc)}",
            retryable=retryable,
        )

    @staticmethod
    def _write_postgres(pooled: Any, batch: IngestBatch) -> WriteResult:
        conn: psycopg.Connection[Any] = pooled.driver_connection
        ingest_postgres.prepare_connection(conn, pooled.info)
        try:
            result = ingest_postgres.write_batch(conn, batch)
            conn.commit()
        except BaseException:
            if not conn.closed:
                try:
                    conn.rollback()
                except psycopg.Error:
                    pass  # the connection is gone; the server rolled back already
            raise
        return result


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ""
