"""``--registry``: the simulated fleet written through fleet.service, resolvable by the gateway's
directory, with warranties in force or expired as the scenario says, and idempotent."""

from __future__ import annotations

from datetime import UTC, datetime

from core.settings import Settings
from fleet.directory import TerminalDirectory
from simulators.registry import seed_registry
from simulators.scenario import expand, parse_scenario, quick_scenario
from store.db import open_database
from warranty.coverage import coverage

FLEET = """
[scenario]
name = "registry"
seed = 12

[[fleet]]
name = "new vans"
protocol = "jt808"
count = 14
customer = "Harbour Freight"

[[fleet]]
name = "old trackers"
protocol = "gt06"
count = 9
warranty = "expired"
model = "GT06N (2021)"

[[fleet]]
name = "taxis"
protocol = "teltonika"
transport = "udp"
count = 7
"""


def test_the_fleet_is_registered_once_with_the_warranties_it_declares(db_url: str) -> None:
    database = open_database(db_url)
    plans = expand(parse_scenario(FLEET))
    first = seed_registry(database, plans, chunk=4)  # several transactions
    assert (first.terminals, first.sims, first.vehicles, first.installations) == (30, 30, 30, 30)
    assert first.already_registered == 0 and first.models == 3
    again = seed_registry(database, plans, chunk=4)
    assert again.terminals == 0 and again.already_registered == 30 and again.customers == 0

    directory = TerminalDirectory(database)
    today = datetime.now(UTC).date()
    with database.engine.connect() as conn:
        for plan in plans:
            info = directory.resolve(plan.terminal_id)
            assert info is not None and info.enabled and info.status == "installed", plan.terminal_id
            assert info.protocol == plan.group.protocol
            covered = coverage(conn, plan.terminal_id, today, Settings().warranty)
            assert covered.in_warranty is (plan.group.warranty == "active"), (plan.group.name, covered.reason)
    database.dispose()


def test_quick_fleets_of_two_protocols_with_the_same_seed_are_both_registered(sqlite_url: str) -> None:
    """``simulate --protocol jt808 --registry`` then ``--protocol h02 --registry`` (both seed 1):
    different terminals, so they must not share plates, VINs or SIMs (that was a Conflict
    traceback)."""
    database = open_database(sqlite_url)
    try:
        first = expand(
            quick_scenario(protocol="jt808", terminals=3, interval_s=5, transport="tcp", duration_s=None)
        )
        second = expand(
            quick_scenario(protocol="h02", terminals=3, interval_s=5, transport="udp", duration_s=None)
        )
        seed_registry(database, first)
        result = seed_registry(database, second)
        assert result.terminals == 3 and result.vehicles == 3
        directory = TerminalDirectory(database)
        for plan in first + second:
            info = directory.resolve(plan.terminal_id)
            assert info is not None and info.status == "installed", plan.terminal_id
    finally:
        database.dispose()
