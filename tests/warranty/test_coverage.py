"""Warranty coverage: the last day, purchase or installation start, contracts, void, replacements."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from core.settings import WarrantySettings
from fleet import service
from fleet.errors import Conflict
from store.db import Database
from tests.fleet.support import T0, build_registry
from warranty.coverage import add_months, coverage

INSTALL_DAY = T0.date()  # 2025-03-01
LAST_DAY = date(2026, 2, 28)  # 12 months from 2025-03-01, inclusive


def test_add_months_clamps_to_month_end() -> None:
    assert add_months(date(2025, 1, 31), 1) == date(2025, 2, 28)
    assert add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)
    assert add_months(date(2025, 11, 15), 14) == date(2027, 1, 15)


def test_last_day_is_covered_the_next_is_not(database: Database) -> None:
    settings = WarrantySettings(count_from="installation")
    with database.engine.begin() as conn:
        reg = build_registry(conn)
        service.install(conn, device_id=reg.imeis[0], plate=reg.plates[0], at=T0)
        on_last = coverage(conn, reg.imeis[0], LAST_DAY, settings)
        day_after = coverage(conn, reg.imeis[0], LAST_DAY + timedelta(days=1), settings)
    assert on_last.in_warranty and on_last.until == LAST_DAY and on_last.source == "base"
    assert "installation" in on_last.reason
    assert not day_after.in_warranty and day_after.until == LAST_DAY and day_after.source == "expired"


def test_purchase_date_start_from_settings_or_model(database: Database) -> None:
    with database.engine.begin() as conn:
        reg = build_registry(conn)  # purchased 2025-01-10
        service.install(conn, device_id=reg.imeis[0], plate=reg.plates[0], at=T0)
        by_purchase = coverage(conn, reg.imeis[0], date(2026, 1, 9), WarrantySettings(count_from="purchase"))
        after = coverage(conn, reg.imeis[0], date(2026, 1, 10), WarrantySettings(count_from="purchase"))
        service.update_terminal_model(conn, reg.model_id, warranty_from="purchase", warranty_months=24)
        model_says = coverage(
            conn, reg.imeis[0], date(2026, 6, 1), WarrantySettings(count_from="installation")
        )
    assert by_purchase.in_warranty and by_purchase.until == date(2026, 1, 9)
    assert not after.in_warranty
    assert model_says.in_warranty and model_says.until == date(2027, 1, 9) and "purchase" in model_says.reason


def test_not_installed_terminal_has_not_started(database: Database) -> None:
    with database.engine.begin() as conn:
        reg = build_registry(conn)
        result = coverage(conn, reg.imeis[0], date(2030, 1, 1), WarrantySettings())
    assert result.in_warranty and result.until is None and result.source == "not_started"


def test_extended_contract_continues_cover_and_void_contract_does_not(database: Database) -> None:
    settings = WarrantySettings()
    with database.engine.begin() as conn:
        reg = build_registry(conn)
        service.install(conn, device_id=reg.imeis[0], plate=reg.plates[0], at=T0)
        contract = service.add_warranty_contract(
            conn,
            device_id=reg.imeis[0],
            starts_on=date(2026, 3, 1),
            ends_on=date(2027, 2, 28),
            reference="EXT-1",
        )
        during_base = coverage(conn, reg.imeis[0], date(2025, 6, 1), settings)
        during_extension = coverage(conn, reg.imeis[0], date(2026, 7, 1), settings)
        service.void_warranty_contract(conn, contract["id"], reason="not paid")
        voided = coverage(conn, reg.imeis[0], date(2026, 7, 1), settings)
    assert during_base.in_warranty and during_base.until == date(2027, 2, 28)  # continuous cover
    assert during_extension.in_warranty and during_extension.source == "extended"
    assert "EXT-1" in during_extension.reason
    assert not voided.in_warranty and voided.until == LAST_DAY


def test_void_warranty_ends_cover_from_its_day(database: Database) -> None:
    settings = WarrantySettings()
    with database.engine.begin() as conn:
        reg = build_registry(conn)
        service.install(conn, device_id=reg.imeis[0], plate=reg.plates[0], at=T0)
        service.void_warranty(
            conn, device_id=reg.imeis[0], reason="opened by a third party", on=date(2025, 6, 1)
        )
        before = coverage(conn, reg.imeis[0], date(2025, 5, 31), settings)
        after = coverage(conn, reg.imeis[0], date(2025, 6, 1), settings)
    assert before.in_warranty and before.until == date(2025, 5, 31)
    assert not after.in_warranty and after.source == "void" and "third party" in after.reason


@pytest.mark.parametrize(
    ("rule", "until"),
    [("remainder", LAST_DAY), ("fresh", date(2026, 8, 31))],  # fresh: 12 months from the swap day
)
def test_swapped_terminal_warranty_follows_the_replacement_rule(
    database: Database, rule: str, until: date
) -> None:
    settings = WarrantySettings(replacement_rule=rule)  # type: ignore[arg-type]
    swap_at = datetime(2025, 9, 1, 9, 0, tzinfo=T0.tzinfo)
    with database.engine.begin() as conn:
        reg = build_registry(conn)
        service.install(conn, device_id=reg.imeis[0], plate=reg.plates[0], at=T0)
        service.swap_terminal(
            conn,
            old_device_id=reg.imeis[0],
            new_device_id=reg.imeis[1],
            performed_by="Z",
            reason="dead",
            at=swap_at,
        )
        result = coverage(conn, reg.imeis[1], date(2025, 10, 1), settings)
        on_until = coverage(conn, reg.imeis[1], until, settings)
        past = coverage(conn, reg.imeis[1], until + timedelta(days=1), settings)
    assert result.in_warranty and result.until == until
    assert result.source == ("replacement" if rule == "remainder" else "base")
    assert on_until.in_warranty and not past.in_warranty


def test_a_void_stands_as_made_a_second_one_only_moves_it_earlier(database: Database) -> None:
    settings = WarrantySettings()
    with database.engine.begin() as conn:
        reg = build_registry(conn)
        service.install(conn, device_id=reg.imeis[0], plate=reg.plates[0], at=T0)
        service.void_warranty(conn, device_id=reg.imeis[0], reason="water inside", on=date(2025, 6, 1))
        with pytest.raises(Conflict, match=r"void since 2025-06-01 \(water inside\)"):
            service.void_warranty(conn, device_id=reg.imeis[0], reason="typo", on=date(2025, 9, 1))
        still_void = coverage(conn, reg.imeis[0], date(2025, 7, 1), settings)
        service.void_warranty(conn, device_id=reg.imeis[0], reason="opened earlier", on=date(2025, 5, 1))
        earlier = coverage(conn, reg.imeis[0], date(2025, 5, 15), settings)
        contract = service.add_warranty_contract(
            conn, device_id=reg.imeis[1], starts_on=date(2026, 3, 1), ends_on=date(2027, 2, 28)
        )
        service.void_warranty_contract(conn, contract["id"], reason="not paid")
        with pytest.raises(Conflict, match=r"was voided on .* \(not paid\)"):
            service.void_warranty_contract(conn, contract["id"], reason="again")
        kept = service.warranty_contracts_of(conn, service.terminal_by_device_id(conn, reg.imeis[1])["id"])
    assert not still_void.in_warranty and "water inside" in still_void.reason
    assert not earlier.in_warranty and "opened earlier" in earlier.reason
    assert kept[0]["void_reason"] == "not paid"


def test_a_contract_is_sold_once_and_never_for_a_void_warranty(database: Database) -> None:
    with database.engine.begin() as conn:
        reg = build_registry(conn)
        service.install(conn, device_id=reg.imeis[0], plate=reg.plates[0], at=T0)
        term = {"starts_on": date(2026, 3, 1), "ends_on": date(2027, 2, 28)}
        first = service.add_warranty_contract(conn, device_id=reg.imeis[0], reference="EXT-7", **term)
        with pytest.raises(Conflict, match="already has contract EXT-7") as twice:
            service.add_warranty_contract(conn, device_id=reg.imeis[0], reference="EXT-7", **term)
        service.void_warranty_contract(conn, first["id"], reason="entered on the wrong terminal")
        again = service.add_warranty_contract(conn, device_id=reg.imeis[0], reference="EXT-7", **term)
        service.void_warranty(conn, device_id=reg.imeis[1], reason="water inside", on=date(2025, 6, 1))
        with pytest.raises(Conflict, match=r"void since 2025-06-01 \(water inside\)"):
            service.add_warranty_contract(conn, device_id=reg.imeis[1], **term)
        before_void = service.add_warranty_contract(
            conn, device_id=reg.imeis[1], starts_on=date(2025, 1, 1), ends_on=date(2025, 5, 31)
        )
    assert twice.value.field == "reference" and again["reference"] == "EXT-7"
    assert before_void["ends_on"] == date(2025, 5, 31)
