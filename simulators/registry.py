"""Writes a simulated fleet into the registry, so the gateway recognises its terminals.

For each terminal plan: its customer, vehicle (plate, VIN), SIM (ICCID, MSISDN), the
terminal itself under a terminal model with a warranty, and the installation that binds
them.  Groups marked ``warranty = "expired"`` were bought and installed years ago, so
their warranty has run out; the others were installed a few months back.  Everything goes
through ``fleet.service``, the same functions the API uses, so the records obey the
registry's rules.  A terminal already registered is left as it is (running twice is fine).

This is the one simulators module that imports the registry (``fleet``) and the store:
``gpsfleet simulate --registry`` and the demo need it; the virtual terminals do not.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from simulators.scenario import TerminalPlan

CUSTOMERS = (
    ("Huadong Cold Chain Logistics", "Li Wei", "+86 21 5566 7788", "88 Jiangchang Rd, Jing'an, Shanghai"),
    ("Pearl River Couriers", "Chen Jing", "+86 20 3344 5566", "12 Huangpu Ave W, Tianhe, Guangzhou"),
    ("Yangtze Construction Equipment", "Wang Fang", "+86 27 8765 4321", "5 Optics Valley Ave, Wuhan"),
    ("Capital City Taxis", "Zhang Min", "+86 10 6655 4433", "201 Chaoyang North Rd, Beijing"),
    ("West Lake School Buses", "Zhao Lei", "+86 571 8800 1122", "9 Wensan Rd, Xihu, Hangzhou"),
)
MAKES = (("Foton", "Aumark"), ("JAC", "Shuailing"), ("Dongfeng", "Captain"), ("BYD", "T3"), ("Isuzu", "ELF"))
PARTS = (
    {"part_number": "GNSS-ANT-01", "name": "GNSS antenna with 3 m cable", "price": "45.00"},
    {"part_number": "PWR-HARN-02", "name": "power harness with fuse", "price": "30.00"},
    {"part_number": "BAT-LI-03", "name": "backup battery 450 mAh", "price": "38.50"},
    {"part_number": "GSM-ANT-04", "name": "GSM antenna", "price": "25.00"},
)
DEFAULT_MODELS = {
    "jt808": "SIM JT/T 808 vehicle terminal",
    "gt06": "SIM GT06 tracker",
    "teltonika": "SIM Teltonika FMB tracker",
    "h02": "SIM H02 tracker",
    "gps103": "SIM TK103 tracker",
    "nmea": "SIM NMEA receiver",
}
WARRANTY_MONTHS = 12


@dataclass(slots=True)
class SeedResult:
    customers: int = 0
    vehicles: int = 0
    terminals: int = 0
    sims: int = 0
    installations: int = 0
    models: int = 0
    already_registered: int = 0

    def add(self, other: SeedResult) -> None:
        for name in self.__slots__:  # type: ignore[attr-defined]
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def __str__(self) -> str:
        return (
            f"registry: {self.terminals} terminals, {self.sims} SIMs, {self.vehicles} vehicles, "
            f"{self.installations} installations, {self.customers} customers, {self.models} terminal models "
            f"({self.already_registered} terminals were already registered)"
        )


def model_name(plan: TerminalPlan) -> str:
    return plan.group.model or DEFAULT_MODELS[plan.group.protocol]


def installed_at(plan: TerminalPlan, today: date) -> tuple[date, datetime]:
    """(purchased on, installed at): years ago for expired warranties, months ago otherwise."""
    rng = random.Random(f"install:{plan.terminal_id}")
    if plan.group.warranty == "expired":
        days_ago = rng.randint(400 + WARRANTY_MONTHS * 31, 1100 + WARRANTY_MONTHS * 31)
    else:
        days_ago = rng.randint(20, WARRANTY_MONTHS * 28 - 60)
    installed = datetime.combine(today - timedelta(days=days_ago), datetime.min.time(), UTC) + timedelta(
        hours=rng.randint(8, 17)
    )
    return installed.date() - timedelta(days=rng.randint(3, 30)), installed


def seed_registry(database: Any, plans: Iterable[TerminalPlan], *, chunk: int = 250) -> SeedResult:
    """Register every planned terminal (idempotent), one transaction per ``chunk`` terminals.

    Each terminal costs some forty statements through ``fleet.service`` (about 70 terminals
    a second on PostgreSQL here; threads do not help: the time is Python's, not the wire's).
    """
    plans = list(plans)
    result = SeedResult()
    with database.engine.begin() as conn:
        _models(conn, plans, result)
        customers = {
            name: _customer_id(conn, name, result) for name in sorted({customer_name(p) for p in plans})
        }
    for start in range(0, len(plans), chunk):
        result.add(_seed_chunk(database, plans[start : start + chunk], customers))
    return result


def _models(conn: Any, plans: list[TerminalPlan], result: SeedResult) -> None:
    from fleet import service
    from fleet.errors import NotFound

    for name, protocol in sorted({(model_name(plan), plan.group.protocol) for plan in plans}):
        try:
            service.terminal_model_by_name(conn, name)
        except NotFound:
            service.create_terminal_model(
                conn,
                name=name,
                protocol=protocol,
                warranty_months=WARRANTY_MONTHS,
                warranty_from="installation",
                parts=[dict(part) for part in PARTS],
            )
            result.models += 1


def _seed_chunk(database: Any, plans: list[TerminalPlan], customers: dict[str, int]) -> SeedResult:
    from fleet import service
    from fleet.errors import NotFound

    result = SeedResult()
    today = datetime.now(UTC).date()
    with database.engine.begin() as conn:
        for plan in plans:
            try:
                service.terminal_by_device_id(conn, plan.terminal_id)
                result.already_registered += 1
                continue
            except NotFound:
                pass
            make, model = MAKES[plan.index % len(MAKES)]
            purchased, installed = installed_at(plan, today)
            service.create_vehicle(
                conn,
                plate=plan.plate,
                customer_id=customers[customer_name(plan)],
                vin=plan.vin,
                make=make,
                model=model,
            )
            service.create_sim(
                conn, iccid=plan.iccid, msisdn=plan.msisdn, carrier="China Mobile", now=installed
            )
            service.create_terminal(
                conn,
                device_id=plan.terminal_id,
                model=model_name(plan),
                serial_number=f"SN{plan.index:07d}",
                firmware="SIM-2.4.1",
                purchased_on=purchased,
                delivered_on=purchased + timedelta(days=2),
                now=installed - timedelta(days=1),
            )
            service.install(
                conn,
                device_id=plan.terminal_id,
                plate=plan.plate,
                iccid=plan.iccid,
                at=installed,
                installed_by="gpsfleet simulator",
                mount_location="under the dashboard",
            )
            result.vehicles += 1
            result.sims += 1
            result.terminals += 1
            result.installations += 1
    return result


def customer_name(plan: TerminalPlan) -> str:
    return plan.group.customer or CUSTOMERS[plan.index % len(CUSTOMERS)][0]


def _customer_id(conn: Any, name: str, result: SeedResult) -> int:
    """The customer of that name, created (with a contact) when it is not there yet."""
    from sqlalchemy import select

    from fleet import service
    from store.tables.registry import customers

    row = conn.execute(select(customers.c.id).where(customers.c.name == name)).first()
    if row is not None:
        return int(row[0])
    details = next((c for c in CUSTOMERS if c[0] == name), (name, "Fleet manager", "+86 400 800 0000", "—"))
    record = service.create_customer(
        conn, name=name, contact_name=details[1], phone=details[2], address=details[3]
    )
    result.customers += 1
    return int(record["id"])
