"""Repair quotes: installation free, in-warranty repair free, out of warranty parts only."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from core.settings import WarrantySettings
from fleet import service
from fleet.errors import Invalid
from store.db import Database
from tests.fleet.support import T0, build_registry
from warranty.billing import PartRequest, quote

PARTS = [PartRequest("ANT-GPS", 2), PartRequest("BAT", 1)]


def test_in_warranty_repair_is_free_with_a_reason_per_line(sqlite_database: Database) -> None:
    with sqlite_database.engine.begin() as conn:
        reg = build_registry(conn)
        service.install(conn, device_id=reg.imeis[0], plate=reg.plates[0], at=T0)
        result = quote(conn, reg.imeis[0], PARTS, date(2025, 6, 1), WarrantySettings())
    assert result.total == Decimal("0.00") and result.currency == "CNY"
    assert result.coverage.in_warranty
    parts = [line for line in result.lines if line.kind == "part"]
    assert [line.unit_price for line in parts] == [Decimal("35.50"), Decimal("80.00")]
    assert all(line.amount == 0 and "in warranty" in line.reason for line in parts)
    assert parts[0].reason == "free; in warranty until 2026-02-28: 12 months from installation on 2025-03-01"
    labour = [line for line in result.lines if line.kind == "labour"]
    assert len(labour) == 1 and labour[0].amount == 0 and "never" in labour[0].reason


def test_out_of_warranty_charges_parts_at_catalogue_price_never_labour(sqlite_database: Database) -> None:
    with sqlite_database.engine.begin() as conn:
        reg = build_registry(conn)
        service.install(conn, device_id=reg.imeis[0], plate=reg.plates[0], at=T0)
        result = quote(conn, reg.imeis[0], PARTS, date(2026, 3, 1), WarrantySettings())
    assert not result.coverage.in_warranty
    assert result.total == Decimal("151.00")  # 2 × 35.50 + 80.00
    assert all("out of warranty" in line.reason for line in result.lines if line.kind == "part")
    # The coverage is said once, not "out of warranty: ... (out of warranty: ...)".
    assert result.lines[0].reason == f"charged at catalogue price; {result.coverage.reason}"
    assert result.lines[0].reason.count("warranty") == 1
    assert sum(line.amount for line in result.lines if line.kind == "labour") == 0


def test_installation_is_free_even_with_parts(sqlite_database: Database) -> None:
    with sqlite_database.engine.begin() as conn:
        reg = build_registry(conn)
        result = quote(conn, reg.imeis[0], PARTS, date(2030, 1, 1), WarrantySettings(), work="installation")
    assert result.total == 0 and any(line.kind == "installation" for line in result.lines)


def test_unknown_part_names_the_line(sqlite_database: Database) -> None:
    with sqlite_database.engine.begin() as conn:
        reg = build_registry(conn)
        with pytest.raises(Invalid) as caught:
            quote(
                conn,
                reg.imeis[0],
                [PartRequest("BAT"), PartRequest("NOPE")],
                date(2025, 6, 1),
                WarrantySettings(),
            )
    assert caught.value.field == "parts[1].part_number"


def test_a_part_number_is_found_as_the_clerk_types_it(sqlite_database: Database) -> None:
    with sqlite_database.engine.begin() as conn:
        reg = build_registry(conn)
        service.install(conn, device_id=reg.imeis[0], plate=reg.plates[0], at=T0)
        typed = [PartRequest("ant-gps", 2), PartRequest(" Bat ", 1)]
        result = quote(conn, reg.imeis[0], typed, date(2026, 3, 1), WarrantySettings())
    parts = [(line.part_number, line.amount) for line in result.lines if line.kind == "part"]
    assert parts == [("ANT-GPS", Decimal("71.00")), ("BAT", Decimal("80.00"))]
