"""The migrations build exactly the declared schema, and an old database upgrades in place."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import create_engine, inspect, select, text

from store.db import Database, sqlalchemy_url
from store.migrate import current_version, migrate
from store.migrations import MIGRATIONS
from store.schema import metadata
from store.tables.positions import positions, terminal_state

HEAD = max(m.VERSION for m in MIGRATIONS)


def test_migrating_an_empty_database_yields_exactly_the_declared_schema(db_url: str) -> None:
    engine = create_engine(sqlalchemy_url(db_url))
    try:
        assert migrate(engine) == sorted(m.VERSION for m in MIGRATIONS)
        inspector = inspect(engine)
        built = {
            name: [column["name"] for column in inspector.get_columns(name)]
            for name in inspector.get_table_names()
            if name != "schema_version"
        }
        declared = {
            name: [column.name for column in table.columns] for name, table in metadata.tables.items()
        }
        assert sorted(built) == sorted(declared)
        for name, columns in declared.items():
            assert built[name] == columns, f"table {name}: migration and tables module differ"
    finally:
        engine.dispose()


def test_versions_are_unique_and_consecutive() -> None:
    versions = sorted(m.VERSION for m in MIGRATIONS)
    assert versions == list(range(1, len(versions) + 1))


def test_a_version_1_database_upgrades_in_place(db_url: str) -> None:
    database = Database(db_url)
    try:
        assert migrate(database.engine, target=1) == [1]
        fix = datetime(2026, 1, 2, 3, 4, 5, 600_000, tzinfo=UTC)
        with database.engine.begin() as conn:
            assert current_version(conn) == 1
            conn.execute(
                positions.insert().values(
                    terminal_id="old-1",
                    fix_time=fix,
                    received_at=fix,
                    lat=1.5,
                    lon=2.5,
                    valid=True,
                    protocol="h02",
                    attributes={"power_v": 12.4},
                    flags=0,
                )
            )
        assert (
            migrate(database.engine) == [m.VERSION for m in sorted(MIGRATIONS, key=lambda m: m.VERSION)][1:]
        )
        with database.engine.connect() as conn:
            assert current_version(conn) == HEAD
            row = conn.execute(select(positions)).one()
        assert (row.terminal_id, row.fix_time, row.lat, row.attributes) == (
            "old-1",
            fix,
            1.5,
            {"power_v": 12.4},
        )
        assert migrate(database.engine) == []  # at head: nothing more to do
        if database.is_postgres:
            assert state_fillfactor(database) == ["fillfactor=50"]
    finally:
        database.dispose()


def state_fillfactor(database: Database) -> list[str] | None:
    with database.engine.connect() as conn:
        options = conn.execute(text("SELECT reloptions FROM pg_class WHERE relname = 'terminal_state'"))
        return options.scalar_one()


def test_the_state_table_keeps_room_for_in_place_updates_on_postgresql(pg_url: str) -> None:
    database = Database(pg_url)
    try:
        migrate(database.engine)
        assert state_fillfactor(database) == ["fillfactor=50"]
        with database.engine.begin() as conn:  # what the declared table would create
            conn.execute(text("DROP TABLE terminal_state"))
            terminal_state.create(conn)
        assert state_fillfactor(database) == ["fillfactor=50"]
    finally:
        database.dispose()
