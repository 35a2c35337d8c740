"""Checks and normal forms of the registry's identifiers: IMEI, ICCID, VIN, JT/T 808 phone, plate."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from core.settings import GatewaySettings
from fleet.errors import Invalid

ID_KINDS = ("imei", "phone", "other")
CUSTOMER_KINDS = ("company", "individual")
TERMINAL_STATUSES = ("stock", "installed", "returned_for_repair", "scrapped")
SIM_STATUSES = ("stock", "active", "suspended", "terminated")
WARRANTY_FROM = ("installation", "purchase")
PROTOCOLS = tuple(sorted(GatewaySettings().protocols))  # what the gateway decodes

_DIGITS = re.compile(r"^[0-9]+$")
_VIN = re.compile(r"^[A-HJ-NPR-Z0-9]{17}$")  # ISO 3779: no I, O or Q
_OTHER_ID = re.compile(r"^[A-Za-z0-9]{4,20}$")
_PLATE_SPACES = re.compile(r"[\s\-·]+")


_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)  # a digit doubled, its two digits summed


def luhn_ok(digits: str) -> bool:
    """True when the last digit is the Luhn check digit of the others."""
    total = sum(ord(c) - 48 for c in digits[-1::-2]) + sum(_DOUBLED[ord(c) - 48] for c in digits[-2::-2])
    return total % 10 == 0


def luhn_digit(body: str) -> str:
    """The Luhn check digit to append to ``body``."""
    for candidate in "0123456789":
        if luhn_ok(body + candidate):
            return candidate
    raise AssertionError("unreachable: one digit always completes a Luhn sum")


def imei(value: str, field: str = "device_id") -> str:
    value = value.strip()
    if len(value) != 15 or not _DIGITS.match(value):
        raise Invalid(f"IMEI must be 15 digits, got {value!r}", field=field)
    if not luhn_ok(value):
        raise Invalid(f"IMEI {value} fails its Luhn check digit", field=field)
    return value


def jt808_phone(value: str, field: str = "device_id") -> str:
    """A JT/T 808 terminal phone number: 2013 edition BCD[6] (12 digits, a mobile number
    zero-padded on the left) or 2019 edition BCD[10] (up to 20 digits)."""
    value = value.strip()
    if not _DIGITS.match(value) or not 11 <= len(value) <= 20:
        raise Invalid(f"JT/T 808 terminal phone number must be 11-20 digits, got {value!r}", field=field)
    return value.zfill(12)


def device_id(value: str, id_kind: str, field: str = "device_id") -> str:
    """The terminal id in its stored form, checked as the model's ``id_kind`` says."""
    if id_kind == "imei":
        return imei(value, field)
    if id_kind == "phone":
        return jt808_phone(value, field)
    value = value.strip()
    if not _OTHER_ID.match(value):
        raise Invalid(f"terminal id must be 4-20 letters or digits, got {value!r}", field=field)
    return value


def device_id_candidates(value: str) -> list[str]:
    """The stored forms a device id as sent by a terminal may have (exact form first)."""
    value = value.strip()
    candidates = [value]
    if _DIGITS.match(value):
        stripped = value.lstrip("0")
        if stripped and stripped != value:
            candidates.append(stripped)  # GT06 sends the IMEI as 16 BCD digits, "0" first
        if len(value) < 12:
            candidates.append(value.zfill(12))  # a JT/T 808 phone written without its padding
    return candidates


def iccid(value: str, field: str = "iccid") -> str:
    value = value.strip()
    if not _DIGITS.match(value) or not 19 <= len(value) <= 20:
        raise Invalid(f"ICCID must be 19-20 digits, got {value!r}", field=field)
    if not luhn_ok(value):
        raise Invalid(f"ICCID {value} fails its Luhn check digit", field=field)
    return value


def msisdn(value: str | None, field: str = "msisdn") -> str | None:
    if value is None or not value.strip():
        return None
    cleaned = value.strip().lstrip("+")
    if not _DIGITS.match(cleaned) or not 5 <= len(cleaned) <= 15:
        raise Invalid(f"MSISDN must be 5-15 digits (an optional leading +), got {value!r}", field=field)
    return cleaned


def imsi(value: str | None, field: str = "imsi") -> str | None:
    if value is None or not value.strip():
        return None
    value = value.strip()
    if not _DIGITS.match(value) or not 14 <= len(value) <= 15:
        raise Invalid(f"IMSI must be 14-15 digits, got {value!r}", field=field)
    return value


def vin(value: str | None, field: str = "vin") -> str | None:
    if value is None or not value.strip():
        return None
    value = value.strip().upper()
    if not _VIN.match(value):
        raise Invalid(
            f"VIN must be 17 letters or digits without I, O or Q, got {value!r}",
            field=field,
        )
    return value


def plate(value: str, field: str = "plate") -> str:
    """A licence plate in one form: upper case, no spaces or dashes (粤B·12345 → 粤B12345)."""
    cleaned = _PLATE_SPACES.sub("", value.strip()).upper()
    if not 2 <= len(cleaned) <= 20:
        raise Invalid(f"plate must be 2-20 characters, got {value!r}", field=field)
    return cleaned


def plate_search(text: str) -> str:
    """Text searched for among plates, in their stored form (粤b·1234 → 粤B1234); too short for a
    plate, it is only upper-cased."""
    try:
        return plate(text)
    except Invalid:
        return text.strip().upper()


def choice(value: str, allowed: tuple[str, ...], field: str) -> str:
    value = value.strip().lower()
    if value not in allowed:
        raise Invalid(f"{field} must be one of {', '.join(allowed)}, got {value!r}", field=field)
    return value


def required(value: str | None, field: str, max_length: int = 200) -> str:
    if value is None or not value.strip():
        raise Invalid(f"{field} is required", field=field)
    return optional(value, field, max_length) or ""


def optional(value: str | None, field: str, max_length: int = 200) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if len(value) > max_length:
        raise Invalid(f"{field} is longer than {max_length} characters", field=field)
    return value or None


def parse_date(value: str | None, field: str) -> date | None:
    if value is None or not value.strip():
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise Invalid(f"{field} must be a date YYYY-MM-DD, got {value!r}", field=field) from None


def parse_time(value: str | None, field: str) -> datetime | None:
    """An ISO 8601 time; a time without a zone is taken as UTC, a bare date as its midnight UTC."""
    if value is None or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(f"{field} must be an ISO 8601 time, got {value!r}", field=field) from None
    return aware(parsed)


def parse_bool(value: str | None, field: str, default: bool | None = None) -> bool | None:
    if value is None or not value.strip():
        return default
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "y", "on"):
        return True
    if lowered in ("0", "false", "no", "n", "off"):
        return False
    raise Invalid(f"{field} must be true or false, got {value!r}", field=field)


def aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def imei_for(number: int, tac: str = "35875306") -> str:
    """A valid IMEI for serial ``number`` under a type allocation code (tests, simulators, benchmarks)."""
    body = f"{tac}{number % 1_000_000:06d}"
    return body + luhn_digit(body)


def iccid_for(number: int, issuer: str = "8986001") -> str:
    """A valid 19-digit ICCID for serial ``number`` (tests, simulators, benchmarks)."""
    body = f"{issuer}{number % 100_000_000_000:011d}"
    return body + luhn_digit(body)
