"""The C-computed checksums equal slow bit-by-bit reference versions and the catalogue
check values."""

from __future__ import annotations

import functools
import operator

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.protocols.checksums import crc16_ibm, crc_itu, xor8

CHECK_INPUT = b"123456789"  # the CRC catalogue's check input


def crc_x25_reference(data: bytes) -> int:
    """CRC-16/X-25 bit by bit: reflected 0x1021 (0x8408), init 0xFFFF, final XOR 0xFFFF."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc ^ 0xFFFF


def crc_arc_reference(data: bytes) -> int:
    """CRC-16/ARC bit by bit: reflected 0x8005 (0xA001), init 0, no final XOR."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def test_catalogue_check_values():
    assert crc_itu(CHECK_INPUT) == 0x906E
    assert crc16_ibm(CHECK_INPUT) == 0xBB3D
    assert xor8(CHECK_INPUT) == 0x31
    assert xor8(b"") == 0


def test_gt06_login_example_from_the_facts():
    # 78 78 0D 01 0864717003283581 0009 3F04 0D 0A: CRC over length .. serial
    assert crc_itu(bytes.fromhex("0D01086471700328358100 09".replace(" ", ""))) == 0x3F04


def test_checksums_accept_memoryview():
    data = memoryview(b"\x00\x7e\x7d" * 10)
    assert xor8(data) == xor8(bytes(data))
    assert crc_itu(data) == crc_itu(bytes(data))


@settings(max_examples=300)
@given(st.binary(max_size=600))
def test_fast_checksums_equal_the_references(data):
    assert xor8(data) == functools.reduce(operator.xor, data, 0)
    assert crc_itu(data) == crc_x25_reference(data)
    assert crc16_ibm(data) == crc_arc_reference(data)
