"""The time-series tables: positions, events (non-position messages) and terminal_state.

``positions`` is keyed on (terminal_id, fix_time): that key is the uniqueness rule (a
re-sent fix is a no-op), the index every track query walks, and it contains the time
column, as a TimescaleDB hypertable requires.  ``terminal_state`` holds one row per
terminal: the last unflagged fix, when it was last heard, and its latest health values.
Keep this module what ``store/migrations/m0001_positions.py`` and ``m0006`` build.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Float, Integer, LargeBinary, String, Table, Text

from store.tables.base import JsonType, UtcDateTime, metadata

positions = Table(
    "positions",
    metadata,
    Column("terminal_id", String(64), primary_key=True),
    Column("fix_time", UtcDateTime, primary_key=True),
    Column("received_at", UtcDateTime, nullable=False),
    Column("lat", Float, nullable=False),
    Column("lon", Float, nullable=False),
    Column("altitude_m", Float),
    Column("speed_kmh", Float),
    Column("course", Float),
    Column("satellites", Integer),
    Column("hdop", Float),
    Column("valid", Boolean, nullable=False),
    Column("protocol", String(32), nullable=False),
    Column("alarms", JsonType),  # NULL when none
    Column("attributes", JsonType),  # NULL when none
    Column("raw", LargeBinary),
    Column("flags", Integer, nullable=False, server_default="0"),  # store.records.Flag bits
)

events = Table(
    "events",
    metadata,
    Column("terminal_id", String(64), primary_key=True),
    Column("time", UtcDateTime, primary_key=True),
    Column("type", String(32), primary_key=True),
    Column("received_at", UtcDateTime, nullable=False),
    Column("protocol", String(32), nullable=False),
    Column("alarms", JsonType),
    Column("attributes", JsonType),
    Column("raw", LargeBinary),
)

terminal_state = Table(
    "terminal_state",
    metadata,
    Column("terminal_id", String(64), primary_key=True),
    Column("protocol", String(32), nullable=False),
    Column("last_seen", UtcDateTime, nullable=False),  # latest received_at of any message
    # the last unflagged fix
    Column("fix_time", UtcDateTime),
    Column("fix_received_at", UtcDateTime),
    Column("lat", Float),
    Column("lon", Float),
    Column("altitude_m", Float),
    Column("speed_kmh", Float),
    Column("course", Float),
    Column("satellites", Integer),
    Column("hdop", Float),
    Column("valid", Boolean),
    # health: the latest value each message carried (core.vocabulary.HEALTH_ATTRIBUTES)
    Column("power_v", Float),
    Column("power_cut", Boolean),
    Column("battery_v", Float),
    Column("battery_level", Float),
    Column("gsm_signal", Float),
    Column("iccid", Text),
    Column("ignition", Boolean),
    Column("charging", Boolean),
    Column("gnss_status", Text),
    Column("odometer_m", Float),
    Column("firmware", Text),
    Column("attributes", JsonType),  # every attribute key merged, latest value wins
    Column("attributes_time", UtcDateTime),  # time of the newest message merged in
    Column("alarms", JsonType),  # alarms of the newest message that carried any
    Column("alarms_time", UtcDateTime),
    postgresql_with={"fillfactor": 50},  # room for in-place (HOT) updates: migration 6
)
