"""Which process runs the time-based rules: the holder of a PostgreSQL advisory lock, held on a
dedicated connection (the server releases it when that process or connection dies, and the
next process to ask takes over); on SQLite, the one process there is."""

from __future__ import annotations

import logging

import psycopg

from store.db import Database, libpq_url

log = logging.getLogger(__name__)

TIMER_LOCK_KEY = 0x6770_616C  # "gpal": the alert timer


class Leadership:
    def __init__(self, database: Database, key: int = TIMER_LOCK_KEY) -> None:
        self._database = database
        self._key = key
        self._conn: psycopg.Connection | None = None
        self.held = not database.is_postgres

    def check(self) -> bool:
        """Whether this process leads now: keeps the lock if its connection still answers,
        else tries to take it.  Never raises (a database away means: not leader)."""
        if not self._database.is_postgres:
            return True
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(
                    libpq_url(self._database.url), autocommit=True, connect_timeout=5
                )
                self.held = False
            if self.held:
                self._conn.execute("SELECT 1")
            else:
                row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
                self.held = bool(row and row[0])
                if self.held:
                    log.info("alert timer: this process leads (advisory lock %#x)", self._key)
        except psycopg.Error as exc:
            if self.held:
                log.warning("alert timer: lost the leader lock (%s)", str(exc).strip().splitlines()[0])
            self._close()
        return self.held

    @property
    def backend_pid(self) -> int | None:
        """The server process holding (or asking for) the lock, for operators and tests."""
        return self._conn.info.backend_pid if self._conn is not None and not self._conn.closed else None

    def release(self) -> None:
        if self._conn is not None and not self._conn.closed and self.held:
            try:
                self._conn.execute("SELECT pg_advisory_unlock(%s)", (self._key,))
            except psycopg.Error:
                pass
        self._close()

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
        self._conn = None
        self.held = not self._database.is_postgres
