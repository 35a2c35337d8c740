"""Helpers for the alert tests: a small registry, settings with short thresholds, frames as rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from core.settings import Settings
from fleet import service
from fleet.validation import iccid_for, imei_for
from store.db import Database, open_database
from store.records import EventRow, IngestBatch, PositionRow

MODEL = "GT06N"


@dataclass
class Fleet:
    in_warranty: str  # device ids
    out_of_warranty: str
    healthy: str
    iccids: dict[str, str]
    customer_id: int


def fast_settings(db_url: str, **alerts: Any) -> Settings:
    """Settings whose time-based rules act within seconds (tests)."""
    rules = {
        "offline": {"threshold": 0.05},  # 3 s of silence
        "gnss_antenna_cut": {"clear_s": 0.0},
        "power_cut": {"clear_s": 0.0},
        **alerts.pop("rules", {}),
    }
    return Settings(db=db_url, alerts={"evaluate_every_s": 0.2, "rules": rules, **alerts})


def open_db(url: str) -> Database:
    return open_database(url, pool_size=4)


def build_fleet(database: Database, now: datetime | None = None) -> Fleet:
    now = now or datetime.now(UTC)
    with database.engine.begin() as conn:
        service.create_terminal_model(conn, name=MODEL, protocol="gt06", warranty_months=12)
        customer = service.create_customer(
            conn,
            name="Acme Logistics",
            contact_name="Li Wei",
            phone="+86 10 5555 0101",
            address="1 Harbour Rd",
        )
        devices, iccids = [], {}
        for number, (plate, installed) in enumerate(
            [
                ("A10001", now - timedelta(days=30)),
                ("A10002", now - timedelta(days=800)),
                ("A10003", now - timedelta(days=10)),
            ],
            start=1,
        ):
            device_id, iccid = imei_for(number), iccid_for(number)
            service.create_vehicle(conn, plate=plate, customer_id=customer["id"], vin=None)
            service.create_terminal(conn, device_id=device_id, model=MODEL, purchased_on=installed.date())
            service.create_sim(conn, iccid=iccid, msisdn=f"1380000000{number}")
            service.install(conn, device_id=device_id, plate=plate, iccid=iccid, at=installed)
            devices.append(device_id)
            iccids[device_id] = iccid
    return Fleet(devices[0], devices[1], devices[2], iccids, customer["id"])


def position(
    terminal_id: str,
    at: datetime,
    *,
    alarms: list[str] | None = None,
    valid: bool = True,
    lat: float = 31.2304,
    lon: float = 121.4737,
    speed: float = 40.0,
    fix_time: datetime | None = None,
    **attributes: Any,
) -> PositionRow:
    return PositionRow(
        terminal_id=terminal_id,
        fix_time=fix_time or at,
        received_at=at,
        protocol="gt06",
        valid=valid,
        lat=lat,
        lon=lon,
        speed_kmh=speed,
        alarms=alarms or [],
        attributes=attributes,
        raw=b"\x78\x78test",
    )


def event(terminal_id: str, at: datetime, type_: str = "heartbeat", **attributes: Any) -> EventRow:
    return EventRow(
        terminal_id=terminal_id, time=at, received_at=at, protocol="gt06", type=type_, attributes=attributes
    )


def batch(*rows: PositionRow | EventRow) -> IngestBatch:
    out = IngestBatch()
    for row in rows:
        (out.positions if isinstance(row, PositionRow) else out.events).append(row)
    return out
