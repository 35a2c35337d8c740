"""A small fleet for the dashboard tests, built through the real services: the registry
(fleet.service), stored positions (store.ingest.PositionWriter), health, alerts and automatic
tickets (alerts.engine.AlertEngine), a ticket opened by hand (alerts.tickets) and an unknown
terminal seen by the gateway (gateway.quarantine)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from alerts import tickets as ticket_store
from alerts.engine import AlertEngine
from api.auth import create_token
from core.settings import Settings
from fleet import service
from fleet.validation import iccid_for, imei_for
from gateway.quarantine import record_sighting
from store.db import Database
from store.ingest import PositionWriter
from store.records import IngestBatch, PositionRow

MODEL = "GT06N"
UNKNOWN_DEVICE = "868120300000999"


@dataclass
class SeededFleet:
    moving: str  # device ids of customer "Harbour Freight"
    power_cut: str
    antenna_cut: str
    other_customer: str  # of "Mountain Buses"
    in_stock: str  # registered, never heard from
    harbour_id: int
    mountain_id: int
    overdue_ticket: str = ""  # ticket numbers
    urgent_ticket: str = ""
    tokens: dict[str, str] = field(default_factory=dict)


@dataclass
class LiveApi:
    """The API serving the seeded fleet: its address, the fleet, its database."""

    base: str
    fleet: SeededFleet
    database_url: str


def _fix(
    device_id: str, at: datetime, lat: float, lon: float, alarms: list[str] | None = None, **attrs: object
) -> PositionRow:
    return PositionRow(
        terminal_id=device_id,
        fix_time=at,
        received_at=at,
        protocol="gt06",
        valid=True,
        lat=lat,
        lon=lon,
        speed_kmh=42.0,
        course=90.0,
        satellites=9,
        alarms=alarms or [],
        attributes=dict(attrs),
        raw=b"\x78\x78seed",
    )


def seed_fleet(database: Database, settings: Settings) -> SeededFleet:
    now = datetime.now(UTC)
    devices = {
        name: imei_for(n) for n, name in enumerate(("moving", "power", "antenna", "other", "stock"), 1)
    }
    with database.engine.begin() as conn:
        service.create_terminal_model(conn, name=MODEL, protocol="gt06", warranty_months=24)
        harbour = service.create_customer(
            conn, name="Harbour Freight", contact_name="Li Wei", phone="+86 21 5555 0101"
        )
        mountain = service.create_customer(conn, name="Mountain Buses", contact_name="Zhang Min")
        for number, (name, plate, customer) in enumerate(
            [
                ("moving", "沪A12345", harbour),
                ("power", "沪B20002", harbour),
                ("antenna", "沪C30003", harbour),
                ("other", "川D40004", mountain),
            ],
            start=1,
        ):
            installed = now - timedelta(days=60 if name != "antenna" else 900)
            service.create_vehicle(conn, plate=plate, customer_id=customer["id"], vin=None)
            service.create_terminal(conn, device_id=devices[name], model=MODEL, purchased_on=installed.date())
            service.create_sim(conn, iccid=iccid_for(number), msisdn=f"1380000000{number}")
            service.install(conn, device_id=devices[name], plate=plate, iccid=iccid_for(number), at=installed)
        service.create_terminal(conn, device_id=devices["stock"], model=MODEL)
        record_sighting(conn, UNKNOWN_DEVICE, "gt06", "tcp", "10.1.2.3:40112", b"\x78\x78\x0d\x01")

    # A drive around a block in Shanghai for the track; the others report once.
    start = now - timedelta(minutes=40)
    rows = [
        _fix(
            devices["moving"],
            start + timedelta(minutes=2 * i),
            31.2304 + 0.01 * math.sin(i / 3),
            121.4737 + 0.004 * i,
            power_v=12.6,
            battery_level=95,
            gsm_signal=28,
        )
        for i in range(20)
    ]
    rows.append(_fix(devices["power"], now - timedelta(minutes=1), 31.10, 121.30, ["power_cut"], power_v=0.0))
    rows.append(_fix(devices["antenna"], now - timedelta(minutes=1), 31.20, 121.60, ["gnss_antenna_cut"]))
    rows.append(
        _fix(devices["other"], now - timedelta(minutes=1), 30.66, 104.06, power_v=24.1, gsm_signal=20)
    )
    batch = IngestBatch()
    batch.positions.extend(rows)
    PositionWriter(database).write(batch)
    AlertEngine(settings, database).process([("batch", batch)])

    with database.engine.begin() as conn:
        overdue = ticket_store.open_by_hand(
            conn,
            settings,
            terminal_id=devices["moving"],
            actor="desk",
            at=now - timedelta(days=4),
            symptoms="screen dark after car wash",
            priority="high",
        )
        urgent = ticket_store.open_by_hand(
            conn,
            settings,
            terminal_id=devices["other"],
            actor="desk",
            at=now,
            fault="weak_gsm",
            symptoms="drops out in the tunnel",
            priority="urgent",
        )
    fleet = SeededFleet(
        moving=devices["moving"],
        power_cut=devices["power"],
        antenna_cut=devices["antenna"],
        other_customer=devices["other"],
        in_stock=devices["stock"],
        harbour_id=harbour["id"],
        mountain_id=mountain["id"],
        overdue_ticket=ticket_store.ticket_number(overdue["id"]),
        urgent_ticket=ticket_store.ticket_number(urgent["id"]),
    )
    fleet.tokens = {
        "admin": create_token(database.engine, role="admin", name="NOC wall").token,
        "technician": create_token(database.engine, role="technician", name="Wang tech").token,
        "harbour": create_token(
            database.engine, role="customer", customer_id=harbour["id"], name="Harbour portal"
        ).token,
    }
    return fleet
