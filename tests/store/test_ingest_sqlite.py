"""The SQLite writer's own parts: how a batch is cut into statements, and a build of
SQLite that binds fewer variables per statement."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, select

from store.db import open_database
from store.ingest import PositionWriter
from store.ingest_sqlite import _slice_rows, _slices
from store.records import IngestBatch
from store.tables.positions import positions, terminal_state
from tests.store.support import position


def test_slices_are_powers_of_two_small_first_and_keep_the_order() -> None:
    items = list(range(10_000))
    slices = list(_slices(items, 1024))
    assert [len(s) for s in slices] == [16, 256, 512, *[1024] * 9]
    assert [item for s in slices for item in s] == items
    assert [len(s) for s in _slices(list(range(2048)), 1024)] == [1024, 1024]
    assert [len(s) for s in _slices(list(range(7)), 1024)] == [1, 2, 4]
    assert list(_slices([], 1024)) == []


def test_a_slice_binds_no_more_variables_than_sqlite_allows() -> None:
    assert _slice_rows(250_000, 16) == 1024  # never more than MAX_SLICE_ROWS
    assert _slice_rows(32_766, 28) == 1024
    assert _slice_rows(999, 16) == 32  # SQLite before 3.32
    assert _slice_rows(20, 16) == 1


def test_a_build_with_a_low_variable_cap_still_takes_large_batches(tmp_path: Path) -> None:
    database = open_database(f"sqlite:///{tmp_path / 'capped.db'}")
    database.dispose()  # the connections opened by the migrations have no cap

    def cap(conn: sqlite3.Connection, _record: Any) -> None:
        conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)

    event.listen(database.engine, "connect", cap)
    rows = [position(f"T{n % 4}", n) for n in range(1500)]
    writer = PositionWriter(database)
    assert writer.write(IngestBatch(rows)).inserted == 1500
    assert writer.write(IngestBatch(rows[-40:])).duplicates == 40
    with database.engine.connect() as conn:
        driver: Any = conn.connection.driver_connection
        assert driver.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) == 999
        assert conn.execute(select(func.count()).select_from(positions)).scalar_one() == 1500
        newest = conn.execute(
            select(terminal_state.c.fix_time).where(terminal_state.c.terminal_id == "T3")
        ).scalar_one()
    assert newest == rows[-1].fix_time
    database.dispose()


def _write_in_child(url: str) -> None:
    database = open_database(url, migrate=False)
    rows = [position(f"C{n % 3}", n) for n in range(2000)]
    assert PositionWriter(database).write(IngestBatch(rows)).inserted == 2000
    database.dispose()


def test_a_forked_process_writes_large_batches_too(tmp_path: Path) -> None:
    """The child of a fork inherits the parent's prepare-thread executor without its thread."""
    url = f"sqlite:///{tmp_path / 'forked.db'}"
    database = open_database(url)
    assert (
        PositionWriter(database).write(IngestBatch([position(f"P{n % 3}", n) for n in range(2000)])).inserted
        == 2000
    )
    database.dispose()
    child = multiprocessing.get_context("fork").Process(target=_write_in_child, args=(url,))
    child.start()
    child.join(60)
    if child.is_alive():
        child.kill()
    assert child.exitcode == 0
    database = open_database(url)
    with database.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(positions)).scalar_one() == 4000
    database.dispose()
