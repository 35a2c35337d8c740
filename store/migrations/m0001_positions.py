"""Migration 0001: positions, events and terminal_state, as they were at version 1 (frozen)."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Float, Integer, LargeBinary, MetaData, String, Table, Text
from sqlalchemy.engine import Connection

from store.tables.base import JsonType, UtcDateTime, metadata

VERSION = 1
NAME = "positions"


def upgrade(conn: Connection) -> None:
    frozen = MetaData(naming_convention=metadata.naming_convention)
    Table(
        "positions",
        frozen,
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
        Column("alarms", JsonType),
        Column("attributes", JsonType),
        Column("raw", LargeBinary),
        Column("flags", Integer, nullable=False, server_default="0"),
    )
    Table(
        "events",
        frozen,
        Column("terminal_id", String(64), primary_key=True),
        Column("time", UtcDateTime, primary_key=True),
        Column("type", String(32), primary_key=True),
        Column("received_at", UtcDateTime, nullable=False),
        Column("protocol", String(32), nullable=False),
        Column("alarms", JsonType),
        Column("attributes", JsonType),
        Column("raw", LargeBinary),
    )
    Table(
        "terminal_state",
        frozen,
        Column("terminal_id", String(64), primary_key=True),
        Column("protocol", String(32), nullable=False),
        Column("last_seen", UtcDateTime, nullable=False),
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
        Column("attributes", JsonType),
        Column("attributes_time", UtcDateTime),
        Column("alarms", JsonType),
        Column("alarms_time", UtcDateTime),
    )
    frozen.create_all(conn)
