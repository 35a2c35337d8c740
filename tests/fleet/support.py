"""A small registry built through fleet.service, shared by the fleet and warranty tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy.engine import Connection

from fleet import service
from fleet.validation import iccid_for, imei_for

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


@dataclass
class Registry:
    model_id: int
    customer_id: int
    other_customer_id: int
    plates: list[str]
    imeis: list[str]
    iccids: list[str]


def build_registry(conn: Connection, *, terminals: int = 4, sims: int = 4) -> Registry:
    model = service.create_terminal_model(
        conn,
        name="GT-100",
        protocol="gt06",
        warranty_months=12,
        parts=[
            {"part_number": "ANT-GPS", "name": "GPS antenna", "price": "35.50"},
            {"part_number": "BAT", "name": "backup battery", "price": "80.00"},
        ],
    )
    acme = service.create_customer(
        conn,
        name="Acme Logistics",
        kind="company",
        contact_name="Li Wei",
        phone="13800000001",
        address="1 Road",
    )
    other = service.create_customer(conn, name="Other Transport", kind="company")
    plates = ["粤B10001", "粤B10002", "京A20001"]
    service.create_vehicle(conn, plate=plates[0], customer_id=acme["id"], vin="LSVAU2180N2183294")
    service.create_vehicle(conn, plate=plates[1], customer_id=acme["id"])
    service.create_vehicle(conn, plate=plates[2], customer_id=other["id"])
    imeis = [imei_for(i) for i in range(1, terminals + 1)]
    for imei in imeis:
        service.create_terminal(conn, device_id=imei, model_id=model["id"], purchased_on=date(2025, 1, 10))
    iccids = [iccid_for(i) for i in range(1, sims + 1)]
    for number, iccid in enumerate(iccids, start=1):
        service.create_sim(conn, iccid=iccid, msisdn=f"1480000{number:04d}", carrier="CMCC")
    return Registry(model["id"], acme["id"], other["id"], plates, imeis, iccids)
