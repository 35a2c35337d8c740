"""MQTT dead letters: payloads that could not be decoded, kept with the reason."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from store.db import Database
from store.tables.gateway import mqtt_dead_letters


def dead_letter_row(
    topic: str, payload: bytes, kind: str, reason: str, protocol: str | None, terminal_id: str | None
) -> dict[str, Any]:
    return {
        "received_at": datetime.now(UTC),
        "topic": topic[:512],
        "protocol": protocol,
        "terminal_id": terminal_id,
        "payload": payload,
        "kind": kind,
        "reason": reason,
    }


def insert_dead_letter(database: Database, row: dict[str, Any]) -> None:
    """Blocking: run in a thread."""
    with database.engine.begin() as conn:
        conn.execute(mqtt_dead_letters.insert().values(**row))
