"""The TimescaleDB statements that would be issued, and plain PostgreSQL (this machine)
working with one log line saying so."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import text

from core.settings import TimescaleSettings
from store.db import open_database
from store.timescale import timescale_statements


def test_the_statements_issued_for_the_default_settings() -> None:
    statements = timescale_statements(TimescaleSettings())
    assert statements[0] == "CREATE EXTENSION IF NOT EXISTS timescaledb"
    for offset, (table, time_column) in ((1, ("positions", "fix_time")), (8, ("events", "time"))):
        assert statements[offset : offset + 2] == [
            f"SELECT create_hypertable('{table}', '{time_column}', chunk_time_interval => INTERVAL '1 day', "
            "if_not_exists => TRUE, migrate_data => TRUE)",
            f"SELECT set_chunk_time_interval('{table}', INTERVAL '1 day')",
        ]
        compression = statements[offset + 2]
        assert (
            compression.startswith("DO $$")
            and f"hypertable_name = '{table}' AND compression_enabled" in compression
        )
        assert f"ALTER TABLE {table} SET (" in compression
        assert "timescaledb.compress_segmentby = 'terminal_id'" in compression
        assert f"timescaledb.compress_orderby = '{time_column} DESC'" in compression
        assert statements[offset + 3 : offset + 7] == [
            f"SELECT remove_compression_policy('{table}', if_exists => TRUE)",
            f"SELECT add_compression_policy('{table}', INTERVAL '7 days')",
            f"SELECT remove_retention_policy('{table}', if_exists => TRUE)",
            f"SELECT add_retention_policy('{table}', INTERVAL '365 days')",
        ]
    view = statements[15]
    assert view.startswith(
        "CREATE MATERIALIZED VIEW IF NOT EXISTS positions_hourly\nWITH (timescaledb.continuous)"
    )
    for figure in ("count(*) AS positions", "avg(speed_kmh)", "max(speed_kmh)", "min(fix_time) AS first_fix"):
        assert figure in view
    assert "time_bucket(INTERVAL '1 hour', fix_time)" in view and "WHERE flags = 0" in view
    assert view.endswith("WITH NO DATA")
    assert statements[16:] == [
        "SELECT remove_continuous_aggregate_policy('positions_hourly', if_exists => TRUE)",
        "SELECT add_continuous_aggregate_policy('positions_hourly', start_offset => INTERVAL '3 days', "
        "end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '30 minutes')",
    ]


def test_the_settings_are_reflected_and_no_retention_means_no_retention_policy() -> None:
    statements = timescale_statements(
        TimescaleSettings(chunk_interval="6 hours", compress_after="2  Days", retention=None)
    )
    assert "chunk_time_interval => INTERVAL '6 hours'" in statements[1]
    assert "SELECT add_compression_policy('positions', INTERVAL '2 days')" in statements
    assert "SELECT add_compression_policy('events', INTERVAL '2 days')" in statements
    assert not [s for s in statements if "add_retention_policy" in s]
    for table in ("positions", "events"):  # a policy set before goes
        assert f"SELECT remove_retention_policy('{table}', if_exists => TRUE)" in statements
    assert len(statements) == len(timescale_statements(TimescaleSettings())) - 2
    assert "INTERVAL '30 days'" in timescale_statements(TimescaleSettings(retention="30 days"))[7]


@pytest.mark.parametrize("bad", ["7", "1 fortnight", "1 day'); DROP TABLE positions; --", ""])
def test_an_interval_setting_that_is_not_an_interval_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="store.timescale.compress_after must be an interval"):
        timescale_statements(TimescaleSettings(compress_after=bad))


def test_plain_postgresql_works_and_says_so_in_one_line(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="store.timescale"):
        database = open_database(pg_url, timescale=TimescaleSettings(retention=None))
    try:
        lines = [r.getMessage() for r in caplog.records if r.name == "store.timescale"]
        assert len(lines) == 1 and "plain PostgreSQL is used" in lines[0]
        with database.engine.connect() as conn:
            assert (
                conn.execute(text("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'")).scalar()
                == 0
            )
            assert conn.execute(text("SELECT count(*) FROM positions")).scalar() == 0
    finally:
        database.dispose()


def test_sqlite_has_no_timescale_step(sqlite_url: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="store.timescale"):
        open_database(sqlite_url).dispose()
    assert not [r for r in caplog.records if r.name == "store.timescale"]


def test_the_hourly_aggregate_query_is_valid_sql_over_positions(pg_url: str) -> None:
    """Without TimescaleDB, check the aggregate's query against the real table: a stand-in
    time_bucket, and the view as a plain materialized view."""
    view = next(s for s in timescale_statements(TimescaleSettings()) if "MATERIALIZED VIEW" in s)
    database = open_database(pg_url)
    try:
        with database.engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE FUNCTION time_bucket(interval, timestamptz) RETURNS timestamptz "
                "LANGUAGE sql IMMUTABLE AS $$ SELECT date_trunc('hour', $2) $$"
            )
            conn.exec_driver_sql(
                "INSERT INTO positions (terminal_id, fix_time, received_at, lat, lon, speed_kmh, valid, "
                "protocol, attributes, flags) VALUES "
                "('T1', '2026-11-01 08:10Z', now(), 1, 2, 40, true, 'gt06', '{\"odometer_m\": 1000}', 0), "
                "('T1', '2026-11-01 08:50Z', now(), 1, 2, 60, true, 'gt06', '{\"odometer_m\": 1900}', 0), "
                "('T1', '2026-11-01 08:55Z', now(), 1, 2, 900, true, 'gt06', '{\"odometer_m\": \"x\"}', 8)"
            )
            conn.exec_driver_sql(
                view.replace("WITH (timescaledb.continuous) ", "").replace("WITH NO DATA", "WITH DATA")
            )
            row = conn.exec_driver_sql(
                "SELECT positions, avg_speed_kmh, max_speed_kmh, odometer_distance_m FROM positions_hourly"
            ).one()
        assert tuple(row) == (2, 50.0, 60.0, 900.0)
    finally:
        database.dispose()


def test_the_compression_blocks_are_valid_plpgsql(pg_url: str) -> None:
    """Run the DO blocks against a stand-in catalogue saying compression is on already
    (so they check the catalogue and skip the TimescaleDB-only ALTER)."""
    blocks = [s for s in timescale_statements(TimescaleSettings()) if s.startswith("DO $$")]
    assert len(blocks) == 2
    database = open_database(pg_url)
    try:
        with database.engine.begin() as conn:
            conn.exec_driver_sql("CREATE SCHEMA timescaledb_information")
            conn.exec_driver_sql(
                "CREATE VIEW timescaledb_information.hypertables AS "
                "SELECT 'positions'::name AS hypertable_name, true AS compression_enabled "
                "UNION ALL SELECT 'events'::name, true"
            )
            for block in blocks:
                conn.exec_driver_sql(block)
    finally:
        database.dispose()
