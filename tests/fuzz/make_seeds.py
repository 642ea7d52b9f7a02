"""Writes the fuzzers' seed corpus (committed; rerun only when the layout changes).

Seeds are whole segment files: a valid header, and the usual ways one goes
wrong (half-built, other version, truncated, lying sizes, long key).
"""
from __future__ import annotations

import os
import struct
import sys

MAGIC = 0x31474D494D48535F
HEADER = 4096


def header(data_size: int, *, version: int = 1, state: int = 1, total: int | None = None,
           key: bytes = b"seed", flags: int = 0, key_len: int | None = None) -> bytes:
    total = HEADER + data_size if total is None else total
    head = struct.pack("<QIIQQIIIIII", MAGIC, version, HEADER, data_size, total, state, flags,
                       1, 0, len(key) if key_len is None else key_len, 0)
    return (head + key).ljust(HEADER, b"\0")


SEEDS = {
    "valid": header(4096) + bytes(4096),
    "valid_persistent": header(4096, flags=1) + bytes(4096),
    "half_built": header(4096, state=0) + bytes(4096),
    "other_version": header(4096, version=2) + bytes(4096),
    "truncated_header": header(4096)[:100],
    "truncated_data": header(8192) + bytes(100),
    "sizes_disagree": header(4096, total=HEADER) + bytes(4096),
    "huge_size": header(2**63) + bytes(16),
    "long_key": header(4096, key=b"k" * 255) + bytes(4096),
    "lying_key_len": header(4096, key_len=100000) + bytes(4096),
    "empty": b"",
}


def main(directory: str) -> None:
    os.makedirs(directory, exist_ok=True)
    for name, content in SEEDS.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(content)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus"))
