"""The quarantine list: terminals the registry does not know, kept for NOC staff to claim
and assign.  Sightings are upserted at most once a minute per device (throttled)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from store.db import Database
from store.tables.gateway import gateway_quarantine

UPSERT_EVERY_S = 60.0


class QuarantineRecorder:
    """Counts sightings in memory and writes them to the table at most once a minute."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._written: dict[str, float] = {}
        self._unwritten: dict[str, int] = {}

    def due(self, device_id: str) -> bool:
        """Count a sighting; True when it should be written now."""
        self._unwritten[device_id] = self._unwritten.get(device_id, 0) + 1
        last = self._written.get(device_id)
        now = time.monotonic()
        if last is not None and now - last < UPSERT_EVERY_S:
            return False
        self._written[device_id] = now  # claimed now, so a burst of frames writes once
        return True

    def write(self, device_id: str, protocol: str, transport: str, remote: str, frame: bytes) -> None:
        """Blocking: run in a thread."""
        sightings = self._unwritten.pop(device_id, 1)
        with self.database.engine.begin() as conn:
            record_sighting(conn, device_id, protocol, transport, remote, frame, sightings)


def record_sighting(
    conn: Connection,
    device_id: str,
    protocol: str,
    transport: str,
    remote: str,
    frame: bytes,
    sightings: int = 1,
) -> None:
    now = datetime.now(UTC)
    existing = conn.execute(
        select(gateway_quarantine.c.id).where(gateway_quarantine.c.device_id == device_id)
    ).first()
    if existing is None:
        conn.execute(
            gateway_quarantine.insert().values(
                device_id=device_id,
                protocol=protocol,
                transport=transport,
                remote_address=remote,
                first_seen=now,
                last_seen=now,
                sightings=sightings,
                last_frame=frame,
                status="new",
            )
        )
        return
    conn.execute(
        update(gateway_quarantine)
        .where(gateway_quarantine.c.id == existing.id)
        .values(
            protocol=protocol,
            transport=transport,
            remote_address=remote,
            last_seen=now,
            sightings=gateway_quarantine.c.sightings + sightings,
            last_frame=frame,
        )
    )


def quarantine_row(row: Any) -> dict[str, Any]:
    return {
        "device_id": row.device_id,
        "protocol": row.protocol,
        "transport": row.transport,
        "remote_address": row.remote_address,
        "first_seen": row.first_seen,
        "last_seen": row.last_seen,
        "sightings": row.sightings,
        "last_frame_hex": row.last_frame.hex() if row.last_frame else None,
        "status": row.status,
        "claimed_by": row.claimed_by,
        "claimed_at": row.claimed_at,
        "assigned_by": row.assigned_by,
        "assigned_at": row.assigned_at,
        "note": row.note,
    }
