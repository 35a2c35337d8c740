"""Request and response bodies of the registry and warranty API (pydantic)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

Item = TypeVar("Item")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[Item]):
    total: int
    limit: int
    offset: int
    items: list[Item]


class CustomerIn(_In):
    name: str = Field(max_length=200)
    kind: Literal["company", "individual"] = "company"
    code: str | None = Field(
        default=None, max_length=40, description="customer number; generated when left out"
    )
    contact_name: str | None = None
    phone: str | None = None
    email: str | None = None
    address: str | None = None
    notes: str | None = None


class CustomerPatch(_In):
    name: str | None = None
    kind: Literal["company", "individual"] | None = None
    code: str | None = None
    contact_name: str | None = None
    phone: str | None = None
    email: str | None = None
    address: str | None = None
    notes: str | None = None


class CustomerOut(_Out):
    id: int
    code: str
    name: str
    kind: str
    contact_name: str | None
    phone: str | None
    email: str | None
    address: str | None
    notes: str | None
    created_at: datetime
    updated_at: datetime
    retired_at: datetime | None


class DriverIn(_In):
    name: str
    phone: str | None = None
    licence_number: str | None = None
    customer_id: int | None = None


class DriverPatch(_In):
    name: str | None = None
    phone: str | None = None
    licence_number: str | None = None
    customer_id: int | None = None


class DriverOut(_Out):
    id: int
    name: str
    phone: str | None
    licence_number: str | None
    customer_id: int | None
    created_at: datetime
    retired_at: datetime | None


class VehicleIn(_In):
    plate: str
    customer_id: int
    vin: str | None = Field(default=None, description="17 characters, no I, O or Q")
    make: str | None = None
    model: str | None = None
    colour: str | None = None
    driver_id: int | None = None


class VehiclePatch(_In):
    plate: str | None = None
    customer_id: int | None = None
    vin: str | None = None
    make: str | None = None
    model: str | None = None
    colour: str | None = None
    driver_id: int | None = None


class VehicleOut(_Out):
    id: int
    plate: str
    vin: str | None
    make: str | None
    model: str | None
    colour: str | None
    customer_id: int
    driver_id: int | None
    created_at: datetime
    retired_at: datetime | None


class PartIn(_In):
    part_number: str
    name: str
    price: Decimal = Field(ge=0, decimal_places=2)


class PartPut(_In):
    """A part at its URL: the part number is the URL's (repeating it in the body is allowed)."""

    part_number: str | None = None
    name: str
    price: Decimal = Field(ge=0, decimal_places=2)


class PartOut(_Out):
    part_number: str
    name: str
    price: Decimal


class TerminalModelIn(_In):
    name: str
    protocol: str = Field(description="what the gateway decodes: gps103, gt06, h02, jt808, nmea, teltonika")
    id_kind: Literal["imei", "phone", "other"] | None = Field(
        default=None, description="what the device id is; default: phone for jt808, else imei"
    )
    warranty_months: int | None = Field(default=None, ge=0, le=240)
    warranty_from: Literal["installation", "purchase"] | None = None
    currency: str = "CNY"
    parts: list[PartIn] = Field(default_factory=list)


class TerminalModelPatch(_In):
    name: str | None = None
    protocol: str | None = None
    id_kind: Literal["imei", "phone", "other"] | None = None
    warranty_months: int | None = Field(default=None, ge=0, le=240)
    warranty_from: Literal["installation", "purchase"] | None = None
    currency: str | None = None


class TerminalModelOut(_Out):
    id: int
    name: str
    protocol: str
    id_kind: str
    warranty_months: int | None
    warranty_from: str | None
    currency: str
    retired_at: datetime | None
    parts: list[PartOut] = Field(default_factory=list)


class TerminalIn(_In):
    device_id: str = Field(description="IMEI (15 digits, Luhn) or the JT/T 808 terminal phone number")
    model_id: int | None = None
    model: str | None = Field(default=None, description="the model's name, instead of model_id")
    serial_number: str | None = None
    firmware: str | None = None
    purchased_on: date | None = None
    delivered_on: date | None = None
    status: Literal["stock", "returned_for_repair", "scrapped"] = "stock"
    enabled: bool = True
    tz: str | None = None
    lenient: bool | None = None
    notes: str | None = None


class TerminalPatch(_In):
    model_id: int | None = None
    serial_number: str | None = None
    firmware: str | None = None
    purchased_on: date | None = None
    delivered_on: date | None = None
    status: Literal["stock", "returned_for_repair", "scrapped"] | None = None
    enabled: bool | None = None
    tz: str | None = None
    lenient: bool | None = None
    notes: str | None = None


class TerminalOut(_Out):
    id: int
    device_id: str
    serial_number: str | None
    model_id: int
    model_name: str | None = None
    firmware: str | None
    purchased_on: date | None
    delivered_on: date | None
    status: str
    enabled: bool
    tz: str | None
    lenient: bool | None
    replaces_terminal_id: int | None
    return_plate: str | None
    return_symptom: str | None
    warranty_void_reason: str | None
    warranty_voided_on: date | None
    notes: str | None
    retired_at: datetime | None
    plate: str | None = Field(default=None, description="the vehicle it is installed in now")
    iccid: str | None = Field(default=None, description="the SIM it holds now")
    customer_id: int | None = None


class SimIn(_In):
    iccid: str = Field(description="19-20 digits with the Luhn check digit")
    msisdn: str | None = None
    imsi: str | None = None
    carrier: str | None = None
    plan: str | None = None
    status: Literal["stock", "active", "suspended", "terminated"] = "stock"


class SimPatch(_In):
    msisdn: str | None = None
    imsi: str | None = None
    carrier: str | None = None
    plan: str | None = None
    status: Literal["stock", "active", "suspended", "terminated"] | None = None


class SimOut(_Out):
    id: int
    iccid: str
    msisdn: str | None
    imsi: str | None
    carrier: str | None
    plan: str | None
    status: str
    retired_at: datetime | None


class InstallIn(_In):
    device_id: str
    plate: str
    iccid: str | None = None
    at: datetime | None = Field(default=None, description="when it was installed; default now")
    installed_by: str | None = None
    mount_location: str | None = None


class UninstallIn(_In):
    at: datetime | None = None
    reason: str | None = None
    terminal_status: Literal["stock", "returned_for_repair", "scrapped"] = "stock"


class InstallationOut(_Out):
    id: int
    terminal_id: int
    device_id: str
    sim_id: int | None
    iccid: str | None
    msisdn: str | None = None
    vehicle_id: int
    plate: str
    valid_from: datetime
    valid_to: datetime | None
    installed_by: str | None
    mount_location: str | None
    ended_by: str | None
    end_reason: str | None


class TerminalSwapIn(_In):
    new_device_id: str
    reason: str = Field(description="why the terminal is swapped")
    symptom: str | None = Field(default=None, description="the fault symptom tagged on the returned terminal")
    new_iccid: str | None = Field(
        default=None, description="swap the SIM too; default: the new terminal takes it"
    )
    performed_by: str | None = Field(default=None, description="default: the token's name")
    at: datetime | None = None
    ticket_ref: str | None = None


class SimSwapIn(_In):
    new_iccid: str
    reason: str
    symptom: str | None = None
    performed_by: str | None = None
    at: datetime | None = None
    ticket_ref: str | None = None


class SwapOut(_Out):
    id: int
    kind: str
    vehicle_id: int | None
    plate: str | None
    old_terminal_id: int | None
    new_terminal_id: int | None
    old_device_id: str | None
    new_device_id: str | None
    old_sim_id: int | None
    new_sim_id: int | None
    old_iccid: str | None
    new_iccid: str | None
    performed_by: str
    performed_at: datetime
    reason: str
    symptom: str | None
    ticket_ref: str | None
    installation_id: int | None = None


class TerminalHistoryOut(BaseModel):
    terminal: TerminalOut
    installations: list[InstallationOut]
    swaps: list[SwapOut]


class CoverageOut(BaseModel):
    device_id: str
    on: date
    in_warranty: bool
    until: date | None = Field(description="the last covered day, inclusive")
    reason: str
    source: str
    starts_on: date | None


class ContractIn(_In):
    starts_on: date
    ends_on: date = Field(description="last covered day, inclusive")
    reference: str | None = None
    notes: str | None = None


class ContractOut(_Out):
    id: int
    terminal_id: int = Field(description="the registry's row id of the terminal")
    device_id: str | None = Field(default=None, description="the terminal's IMEI or phone number")
    reference: str | None
    starts_on: date
    ends_on: date
    notes: str | None
    void_reason: str | None
    voided_at: datetime | None


class VoidIn(_In):
    reason: str
    on: date | None = Field(default=None, description="void from this day; default today")


class QuotePartIn(_In):
    part_number: str
    quantity: int = Field(default=1, ge=1, le=1000)


class QuoteIn(_In):
    parts: list[QuotePartIn] = Field(default_factory=list)
    on: date | None = Field(default=None, description="the day of the repair; default today")
    work: Literal["repair", "installation"] = "repair"


class QuoteLineOut(BaseModel):
    kind: str
    part_number: str | None
    description: str
    quantity: int
    unit_price: Decimal
    amount: Decimal
    reason: str


class QuoteOut(BaseModel):
    device_id: str
    model_name: str
    on: date
    work: str
    currency: str
    coverage: CoverageOut
    lines: list[QuoteLineOut]
    total: Decimal


def public(record: dict[str, Any]) -> dict[str, Any]:
    """A record without the private bookkeeping keys the import adds."""
    return {k: v for k, v in record.items() if not k.startswith("_")}
