"""Valid-looking identities for a simulated fleet: IMEIs, JT/T 808 phone ids, ICCIDs, VINs.

Every number passes the checks real systems apply (the Luhn digit of an IMEI and of an
ICCID, the check digit of a VIN), and each is derived from a seed and an index, so a
scenario run twice yields the same fleet and ``--registry`` matches what the terminals
announce.
"""

from __future__ import annotations

import hashlib
import random


def luhn_digit(digits: str) -> str:
    """The Luhn check digit to append to ``digits``."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 0:  # every second digit from the right, the check digit excluded
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    return number.isdigit() and len(number) > 1 and luhn_digit(number[:-1]) == number[-1]


def _stable_int(*parts: object, digits: int) -> int:
    text = ":".join(str(part) for part in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big") % 10**digits


# Type allocation codes of common tracker modules (the first 8 IMEI digits).
_TACS = ("35209900", "86471700", "35608807", "86235203", "35907206")


def imei(seed: object, index: int) -> str:
    tac = _TACS[_stable_int(seed, "tac", index, digits=4) % len(_TACS)]
    serial = f"{_stable_int(seed, 'imei', index, digits=6):06d}"
    body = tac + serial
    return body + luhn_digit(body)


def jt808_phone(seed: object, index: int) -> str:
    """A JT/T 808-2013 terminal id: the SIM's 11-digit phone number with a leading 0."""
    return f"01{_stable_int(seed, 'jt808', index, digits=10):010d}"


def iccid(seed: object, index: int, generation: int = 0) -> str:
    """An ICCID: 89 (telecom), country 86, issuer 01, account digits, Luhn digit (20 digits)."""
    body = f"898601{_stable_int(seed, 'iccid', index, generation, digits=13):013d}"
    return body + luhn_digit(body)


def msisdn(seed: object, index: int) -> str:
    return f"+8613{_stable_int(seed, 'msisdn', index, digits=9):09d}"


_VIN_VALUES = {
    **{str(d): d for d in range(10)},
    **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
    **dict(zip("JKLMN", range(1, 6), strict=True)),
    "P": 7,
    "R": 9,
    **dict(zip("STUVWXYZ", range(2, 10), strict=True)),
}
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
_VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"


def vin_check_digit(vin: str) -> str:
    total = sum(_VIN_VALUES[char] * weight for char, weight in zip(vin, _VIN_WEIGHTS, strict=True))
    remainder = total % 11
    return "X" if remainder == 10 else str(remainder)


def vin(seed: object, index: int) -> str:
    rng = random.Random(_stable_int(seed, "vin", index, digits=12))
    chars = ["L", "G", "B"] + [rng.choice(_VIN_CHARS) for _ in range(14)]
    chars[8] = "0"
    chars[9] = rng.choice("LMNPRST")  # model year
    chars[8] = vin_check_digit("".join(chars))
    return "".join(chars)


_PROVINCES = "京沪粤苏浙鲁川鄂"


def plate(seed: object, index: int) -> str:
    rng = random.Random(_stable_int(seed, "plate", index, digits=12))
    letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"
    tail = "".join(rng.choice(letters + "0123456789") for _ in range(4))
    return f"{rng.choice(_PROVINCES)}{rng.choice(letters)}·{rng.randint(0, 9)}{tail}"
