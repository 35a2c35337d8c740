"""Repair quotes: which lines a repair costs and why (rules 1 and 7 of the regulation).

Installation is free.  In warranty a repair is free.  Out of warranty only the parts are
charged, at the model's catalogue price; labour is never charged.  Money is ``Decimal``
with two places, in the currency of the terminal's model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.engine import Connection

from core.settings import WarrantySettings
from fleet.errors import Invalid
from fleet.service import minor_to_price, terminal_by_device_id
from store.tables.registry import terminal_model_parts, terminal_models
from warranty.coverage import Coverage, coverage

ZERO = Decimal("0.00")


@dataclass(frozen=True, slots=True)
class PartRequest:
    part_number: str
    quantity: int = 1


@dataclass(frozen=True, slots=True)
class QuoteLine:
    kind: str  # part | labour | installation
    description: str
    quantity: int
    unit_price: Decimal  # catalogue price, shown even when not charged
    amount: Decimal  # what is charged
    reason: str
    part_number: str | None = None


@dataclass(frozen=True, slots=True)
class Quote:
    device_id: str
    model_name: str
    on: date
    work: str
    coverage: Coverage
    currency: str
    lines: list[QuoteLine] = field(default_factory=list)

    @property
    def total(self) -> Decimal:
        return sum((line.amount for line in self.lines), ZERO)


def quote(
    conn: Connection,
    device_id: str,
    parts: list[PartRequest],
    on: date,
    settings: WarrantySettings,
    *,
    work: Literal["repair", "installation"] = "repair",
) -> Quote:
    """The lines and total of a repair (or installation) of ``device_id`` done on ``on``."""
    terminal = terminal_by_device_id(conn, device_id)
    model = conn.execute(select(terminal_models).where(terminal_models.c.id == terminal["model_id"])).one()
    catalogue = {
        row.part_number: row
        for row in conn.execute(
            select(terminal_model_parts).where(
                terminal_model_parts.c.model_id == model.id, terminal_model_parts.c.retired_at.is_(None)
            )
        )
    }
    cover = coverage(conn, terminal["device_id"], on, settings)
    lines: list[QuoteLine] = []
    for index, request in enumerate(parts):
        if request.quantity < 1:
            raise Invalid("quantity must be at least 1", field=f"parts[{index}].quantity")
        part = _part(catalogue, request.part_number)
        if part is None:
            raise Invalid(
                f"part {request.part_number!r} is not in the catalogue of model {model.name}",
                field=f"parts[{index}].part_number",
            )
        unit = minor_to_price(part.price_minor)
        if work == "installation":
            amount, reason = ZERO, "installation is free, parts included"
        elif cover.in_warranty:
            amount, reason = ZERO, f"free; {cover.reason}"
        else:
            amount, reason = unit * request.quantity, f"charged at catalogue price; {cover.reason}"
        lines.append(QuoteLine("part", part.name, request.quantity, unit, amount, reason, part.part_number))
    if work == "installation":
        lines.append(QuoteLine("installation", "installation", 1, ZERO, ZERO, "installation is free"))
    else:
        lines.append(QuoteLine("labour", "labour", 1, ZERO, ZERO, "labour is never charged"))
    return Quote(terminal["device_id"], model.name, on, work, cover, model.currency, lines)


def _part(catalogue: dict[str, Any], part_number: str) -> Any:
    """The catalogue's part as a clerk types its number: exactly, or else in another case
    (``ant-1`` for ``ANT-1``) when that names one part only."""
    typed = part_number.strip()
    if typed in catalogue:
        return catalogue[typed]
    alike = [part for number, part in catalogue.items() if number.casefold() == typed.casefold()]
    return alike[0] if len(alike) == 1 else None
