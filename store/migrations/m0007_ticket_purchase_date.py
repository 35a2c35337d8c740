"""Migration 7: a repair ticket records the terminal's purchase date, as the service
regulation's repair order does (rule 2), beside the model, customer and warranty."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection

VERSION = 7
NAME = "ticket_purchase_date"


def upgrade(conn: Connection) -> None:
    conn.execute(text("ALTER TABLE tickets ADD COLUMN purchased_on DATE"))
