"""Per-terminal hex logging of every frame in and out, switched on and off at run time.

Switches live in the ``gateway_hexlog`` table so that an API process can turn logging on
for a gateway running elsewhere; each gateway re-reads them every few seconds (and at
once when the API runs in the same process).  Logged frames go to the ``gpsfleet.hexlog``
logger and into a small ring per terminal that the API shows to support staff.
"""

from __future__ import annotations

import logging
from collections import deque
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection

from core.messages import format_time
from store.tables.gateway import gateway_hexlog

hex_logger = logging.getLogger("gpsfleet.hexlog")

RING_FRAMES = 200


class HexLog:
    """Which terminals are logged, and their most recent frames."""

    def __init__(self, ring_frames: int = RING_FRAMES) -> None:
        self._switches: dict[str, datetime | None] = {}  # device id -> until (None: until switched off)
        self._recent: dict[str, deque[dict[str, Any]]] = {}
        self.ring_frames = ring_frames

    def enabled(self, device_id: str | None) -> bool:
        if not self._switches or device_id is None or device_id not in self._switches:
            return False
        until = self._switches[device_id]
        if until is not None and until < datetime.now(UTC):
            del self._switches[device_id]
            return False
        return True

    def switches(self) -> dict[str, datetime | None]:
        return dict(self._switches)

    def replace(self, switches: dict[str, datetime | None]) -> None:
        self._switches = dict(switches)

    def enable(self, device_id: str, until: datetime | None = None) -> None:
        self._switches[device_id] = until

    def disable(self, device_id: str) -> None:
        self._switches.pop(device_id, None)

    def record(self, device_id: str, protocol: str, transport: str, direction: str, data: bytes) -> None:
        at = datetime.now(UTC)
        text = data.hex()
        hex_logger.info("%s %s/%s %s %s", device_id, protocol, transport, direction, text)
        ring = self._recent.get(device_id)
        if ring is None:
            ring = self._recent[device_id] = deque(maxlen=self.ring_frames)
        ring.append(
            {
                "at": format_time(at),
                "direction": direction,
                "protocol": protocol,
                "transport": transport,
                "hex": text,
            }
        )

    def recent(self, device_id: str) -> list[dict[str, Any]]:
        return list(self._recent.get(device_id, ()))


def load_switches(conn: Connection) -> dict[str, datetime | None]:
    now = datetime.now(UTC)
    rows = conn.execute(select(gateway_hexlog.c.device_id, gateway_hexlog.c.until)).all()
    return {row.device_id: row.until for row in rows if row.until is None or row.until > now}


def save_switch(conn: Connection, device_id: str, on: bool, by: str, until: datetime | None = None) -> None:
    conn.execute(delete(gateway_hexlog).where(gateway_hexlog.c.device_id == device_id))
    if on:
        conn.execute(
            insert(gateway_hexlog).values(
                device_id=device_id, enabled_by=by, enabled_at=datetime.now(UTC), until=until
            )
        )
