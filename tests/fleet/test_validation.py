"""Identifier checks: Luhn on IMEI and ICCID, VIN, JT/T 808 phone numbers, plates."""

from __future__ import annotations

import pytest

from fleet import validation as v
from fleet.errors import Invalid


def test_luhn_accepts_known_imei_and_rejects_a_changed_digit() -> None:
    assert v.imei("490154203237518") == "490154203237518"  # the GSMA example IMEI
    with pytest.raises(Invalid) as caught:
        v.imei("490154203237519")
    assert caught.value.field == "device_id" and "Luhn" in caught.value.message


@pytest.mark.parametrize("bad", ["49015420323751", "4901542032375180", "49015420323751A", ""])
def test_imei_must_be_15_digits(bad: str) -> None:
    with pytest.raises(Invalid, match="15 digits"):
        v.imei(bad)


def test_generated_ids_pass_their_own_checks() -> None:
    for number in (0, 1, 999_999, 123_456):
        assert v.imei(v.imei_for(number))
        assert v.iccid(v.iccid_for(number))


def test_iccid_19_or_20_digits_with_luhn() -> None:
    body19 = "898600123456789012"
    good19 = body19 + v.luhn_digit(body19)
    assert v.iccid(good19) == good19
    body20 = "8986001234567890123"
    assert v.iccid(body20 + v.luhn_digit(body20))
    bad = good19[:-1] + str((int(good19[-1]) + 1) % 10)
    with pytest.raises(Invalid, match="Luhn") as caught:
        v.iccid(bad)
    assert caught.value.field == "iccid"
    with pytest.raises(Invalid, match="19-20 digits"):
        v.iccid("898600123456789")


def test_vin_rejects_i_o_q_and_wrong_length() -> None:
    assert v.vin("lsvau2180n2183294") == "LSVAU2180N2183294"
    for bad in ("LSVAU2180N218329", "LSVAU2180N21832940", "LSVAU2180N218329O"):
        with pytest.raises(Invalid) as caught:
            v.vin(bad)
        assert caught.value.field == "vin"
    assert v.vin("") is None


def test_jt808_phone_is_stored_zero_padded_to_12_digits() -> None:
    assert v.jt808_phone("13800138000") == "013800138000"
    assert v.jt808_phone("00000000013800138000") == "00000000013800138000"
    with pytest.raises(Invalid):
        v.jt808_phone("1380013")


def test_device_id_candidates_cover_gt06_padding_and_unpadded_phone() -> None:
    assert v.device_id_candidates("0358753060000012") == ["0358753060000012", "358753060000012"]
    assert "013800138000" in v.device_id_candidates("13800138000")


def test_plate_normal_form() -> None:
    assert v.plate(" 粤B·123-45 ") == "粤B12345"
    with pytest.raises(Invalid):
        v.plate("X")
