"""Migration 4: the gateway's quarantine list, MQTT dead letters and hex-log switches."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, LargeBinary, MetaData, String, Table, Text
from sqlalchemy.engine import Connection

from store.tables.base import UtcDateTime
from store.tables.base import metadata as shared_metadata

VERSION = 4
NAME = "gateway"


def upgrade(conn: Connection) -> None:
    frozen = MetaData(naming_convention=shared_metadata.naming_convention)
    Table(
        "gateway_quarantine",
        frozen,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("device_id", String(64), nullable=False, unique=True),
        Column("protocol", String(32), nullable=False),
        Column("transport", String(16), nullable=False),
        Column("remote_address", String(128)),
        Column("first_seen", UtcDateTime, nullable=False),
        Column("last_seen", UtcDateTime, nullable=False),
        Column("sightings", BigInteger, nullable=False, default=1),
        Column("last_frame", LargeBinary),
        Column("status", String(16), nullable=False, default="new", index=True),
        Column("claimed_by", String(200)),
        Column("claimed_at", UtcDateTime),
        Column("assigned_by", String(200)),
        Column("assigned_at", UtcDateTime),
        Column("note", Text),
    )
    Table(
        "mqtt_dead_letters",
        frozen,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("received_at", UtcDateTime, nullable=False, index=True),
        Column("topic", String(512), nullable=False),
        Column("protocol", String(32)),
        Column("terminal_id", String(64)),
        Column("payload", LargeBinary, nullable=False),
        Column("kind", String(32), nullable=False),
        Column("reason", Text, nullable=False),
    )
    Table(
        "gateway_hexlog",
        frozen,
        Column("device_id", String(64), primary_key=True),
        Column("enabled_by", String(200), nullable=False),
        Column("enabled_at", UtcDateTime, nullable=False),
        Column("until", UtcDateTime),
    )
    frozen.create_all(conn)
