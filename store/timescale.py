"""Every TimescaleDB statement gpsfleet issues, in one place, and when it issues them.

After the migrations, on PostgreSQL: when the server has the ``timescaledb`` extension,
``positions`` (on ``fix_time``) and ``events`` (on ``time``) become hypertables with
compression (segmented by terminal, newest first), a compression policy and an optional
retention policy, and a continuous aggregate of hourly figures per terminal
(``positions_hourly``) is kept fresh by a refresh policy.  Without the extension the
same tables stay plain, and one log line says so.  Every statement can run again at each
start: policies are removed and added again so that changed settings take effect.
"""

from __future__ import annotations

import logging
import re

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from core.settings import TimescaleSettings

log = logging.getLogger(__name__)

HOURLY_VIEW = "positions_hourly"
_LOCK_KEY = 0x6770_7473  # "gpts": the TimescaleDB setup, one process at a time
# Window the hourly aggregate is refreshed over; older hours stay as they were computed.
REFRESH_START_OFFSET = "3 days"
REFRESH_END_OFFSET = "1 hour"
REFRESH_EVERY = "30 minutes"

_INTERVAL = re.compile(
    r"^\d+(\.\d+)?\s*(microseconds?|milliseconds?|seconds?|minutes?|hours?|days?|weeks?|months?|years?)$"
)


def _interval(value: str, setting: str) -> str:
    text = " ".join(value.strip().lower().split())
    if not _INTERVAL.match(text):
        raise ValueError(f"store.timescale.{setting} must be an interval such as '7 days', not {value!r}")
    return f"INTERVAL '{text}'"


# The time-series tables and their time columns.  ``events`` (heartbeats every minute or
# so from every terminal) grows as fast as ``positions`` and gets the same treatment.
HYPERTABLES = {"positions": "fix_time", "events": "time"}


def _enable_compression(table: str, time_column: str) -> str:
    # Only once: TimescaleDB refuses to change the settings of a table with compressed chunks.
    return f"""\
DO $$
BEGIN
  IF NOT EXISTS (
    SELECT 1 FROM timescaledb_information.hypertables
    WHERE hypertable_name = '{table}' AND compression_enabled
  ) THEN
    ALTER TABLE {table} SET (
      timescaledb.compress,
      timescaledb.compress_segmentby = 'terminal_id',
      timescaledb.compress_orderby = '{time_column} DESC'
    );
  END IF;
END $$"""


# Distance comes from the odometer the terminals report (cheap: no window functions,
# which a continuous aggregate cannot hold); NULL when a terminal reports none.
_HOURLY_VIEW = f"""\
CREATE MATERIALIZED VIEW IF NOT EXISTS {HOURLY_VIEW}
WITH (timescaledb.continuous) AS
SELECT
  terminal_id,
  time_bucket(INTERVAL '1 hour', fix_time) AS hour,
  count(*) AS positions,
  avg(speed_kmh) AS avg_speed_kmh,
  max(speed_kmh) AS max_speed_kmh,
  min(fix_time) AS first_fix,
  max(fix_time) AS last_fix,
  max(CASE WHEN jsonb_typeof(attributes -> 'odometer_m') = 'number'
      THEN (attributes ->> 'odometer_m')::double precision END)
  - min(CASE WHEN jsonb_typeof(attributes -> 'odometer_m') = 'number'
      THEN (attributes ->> 'odometer_m')::double precision END) AS odometer_distance_m
FROM positions
WHERE flags = 0
GROUP BY terminal_id, time_bucket(INTERVAL '1 hour', fix_time)
WITH NO DATA"""


def timescale_statements(settings: TimescaleSettings) -> list[str]:
    """The statements ``apply_timescale`` issues for these settings, in order."""
    chunk = _interval(settings.chunk_interval, "chunk_interval")
    compress_after = _interval(settings.compress_after, "compress_after")
    retention = _interval(settings.retention, "retention") if settings.retention is not None else None
    statements = ["CREATE EXTENSION IF NOT EXISTS timescaledb"]
    for table, time_column in HYPERTABLES.items():
        statements += [
            f"SELECT create_hypertable('{table}', '{time_column}', "
            f"chunk_time_interval => {chunk}, if_not_exists => TRUE, migrate_data => TRUE)",
            f"SELECT set_chunk_time_interval('{table}', {chunk})",
            _enable_compression(table, time_column),
            f"SELECT remove_compression_policy('{table}', if_exists => TRUE)",
            f"SELECT add_compression_policy('{table}', {compress_after})",
            f"SELECT remove_retention_policy('{table}', if_exists => TRUE)",
        ]
        if retention is not None:
            statements.append(f"SELECT add_retention_policy('{table}', {retention})")
    statements += [
        _HOURLY_VIEW,
        f"SELECT remove_continuous_aggregate_policy('{HOURLY_VIEW}', if_exists => TRUE)",
        f"SELECT add_continuous_aggregate_policy('{HOURLY_VIEW}', "
        f"start_offset => INTERVAL '{REFRESH_START_OFFSET}', "
        f"end_offset => INTERVAL '{REFRESH_END_OFFSET}', "
        f"schedule_interval => INTERVAL '{REFRESH_EVERY}')",
    ]
    return statements


def timescale_available(conn: Connection) -> bool:
    found = conn.exec_driver_sql("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").first()
    return found is not None


def apply_timescale(conn: Connection, settings: TimescaleSettings) -> bool:
    """Issue the TimescaleDB statements when the server has the extension; otherwise log
    one line that plain PostgreSQL is used.  Returns whether TimescaleDB is in use."""
    statements = timescale_statements(settings)  # bad settings fail here, on any server
    if not timescale_available(conn):
        log.info(
            "TimescaleDB is not available on this server: plain PostgreSQL is used "
            "(positions and events are not hypertables; no compression, retention or hourly aggregate)"
        )
        return False
    # two processes starting together would race on the policies: one at a time
    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})")
    try:
        with conn.begin_nested():
            conn.exec_driver_sql(statements[0])
    except DBAPIError as exc:
        log.warning(
            "TimescaleDB is installed on this server but cannot be enabled (%s): plain PostgreSQL is used",
            str(exc.orig).strip().splitlines()[0] if exc.orig else exc,
        )
        return False
    for statement in statements[1:]:
        conn.exec_driver_sql(statement)
    log.info(
        "TimescaleDB: positions and events are hypertables (chunks of %s, compressed after %s, retention %s) "
        "with the hourly aggregate %s",
        settings.chunk_interval,
        settings.compress_after,
        settings.retention or "none",
        HOURLY_VIEW,
    )
    return True
