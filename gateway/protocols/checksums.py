"""Frame checksums of the binary protocols, computed in C (anycrc) so decoding stays fast.

- ``xor8``: JT/T 808 check code, the XOR of every byte.  Computed as a CRC-8 with the
  polynomial x^8 + 1: since x^8 = 1 modulo that polynomial, the remainder of the message
  is the XOR of its bytes, and anycrc computes it without a Python loop per byte.
- ``crc_itu``: GT06 CRC-ITU, i.e. CRC-16/X-25 (reflected 0x1021, init and final XOR 0xFFFF).
- ``crc16_ibm``: Teltonika CRC-16/IBM, i.e. CRC-16/ARC (reflected 0x8005, init 0).

Each takes bytes (or a memoryview) and returns an int.
"""

from __future__ import annotations

from collections.abc import Callable

import anycrc

ChecksumFn = Callable[[bytes | memoryview], int]

_XOR8 = anycrc.CRC(width=8, poly=0x01, init=0x00, refin=False, refout=False, xorout=0x00)

xor8: ChecksumFn = _XOR8.calc
crc_itu: ChecksumFn = anycrc.Model("CRC16-IBM-SDLC").calc
crc16_ibm: ChecksumFn = anycrc.Model("CRC16-ARC").calc
