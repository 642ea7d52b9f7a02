"""Writes the frame-store fuzzer's seed corpus (committed; rerun only when the layout changes).

Seeds are whole data areas of a frame store (frames.h, layout 3): small valid
stores (one frame, a history ring, 4-D frames with metadata, a registered
subscriber, a pinner entry) and the usual ways one goes wrong (layouts 1 and
2, truncated, lying sizes and slot fields, meta that is not JSON or whose
length lies).
"""
from __future__ import annotations

import os
import struct
import sys

MAGIC, V1_MAGIC, V2_MAGIC, VERSION = 0x334D5246494D4853, 0x314D5246494D4853, 0x324D5246494D4853, 3
PAGE, HEAD, SUB_SIZE, MAX_SUBS, SLOT_SIZE = 4096, 1024, 64, 64, 128
PINNERS_AT = HEAD + MAX_SUBS * SUB_SIZE
TABLE_AT = PINNERS_AT + 64 * 32
UINT8, UINT16, FLOAT32 = 3, 5, 11
COMPLETE, WRITING, RESERVED = 2, 1, 1


def round_page(n: int) -> int:
    return (n + PAGE - 1) // PAGE * PAGE


def store(capacity: int = 4096, slots: int = 2, max_slots: int = 2, history: int = 1,
          meta: int = 0, magic: int = MAGIC, version: int = VERSION) -> bytearray:
    table = history + max_slots
    ctrl = round_page(TABLE_AT + table * SLOT_SIZE)
    stride = meta + capacity
    out = bytearray(ctrl + table * stride)
    struct.pack_into("<QIIQIIIIIIQ", out, 0, magic, version, ctrl, capacity, meta, table, slots,
                     max_slots, history, history + slots, stride)
    return out


def frame(out: bytearray, slot: int, generation: int, shape: tuple, dtype: int = UINT8,
          meta: bytes = b"", state: int = COMPLETE) -> None:
    """Writes a frame into `slot` and names it latest (and in the ring)."""
    ctrl, capacity, meta_cap, _table, _s, _m, history = struct.unpack_from("<IQIIIII", out, 12)
    dims = list(shape) + [0] * (4 - len(shape))
    itemsize = {UINT8: 1, UINT16: 2, FLOAT32: 4}[dtype]
    nbytes = itemsize
    for d in shape:
        nbytes *= d
    struct.pack_into("<II4QIIQQQII", out, TABLE_AT + slot * SLOT_SIZE, state, len(shape), *dims,
                     dtype, RESERVED, nbytes, generation, 1, 1, len(meta))
    base = ctrl + slot * (meta_cap + capacity)
    out[base:base + len(meta)] = meta
    out[base + meta_cap:base + meta_cap + nbytes] = bytes([generation & 0xFF]) * nbytes
    word = generation << 8 | (slot + 1)
    if state == COMPLETE:
        struct.pack_into("<QQ", out, 56, word, generation)
        struct.pack_into("<Q", out, 512 + 8 * (generation % history), word)


def seeds() -> dict[str, bytes]:
    one = store()
    frame(one, 0, 1, (16, 16, 4))
    ring = store(history=3, slots=2, max_slots=3)
    for generation, slot in ((4, 1), (5, 3), (6, 0)):
        frame(ring, slot, generation, (8, 8), UINT16)
    tall = store(capacity=8192, meta=PAGE)
    frame(tall, 1, 9, (2, 4, 8, 3), FLOAT32, meta=b'{"exposure": 0.5}')
    subscribed = store()
    frame(subscribed, 0, 2, (4, 4))
    struct.pack_into("<IIQQII", subscribed, HEAD + 5 * SUB_SIZE, 1, 1234, 0, 2, 1, 1)
    torn = store()
    frame(torn, 1, 1, (16, 16), state=WRITING)
    pinned = bytearray(one)
    struct.pack_into("<III", pinned, PINNERS_AT + 3 * 32, 4321, 2, 1)
    not_json = store(meta=PAGE)
    frame(not_json, 0, 3, (4, 4), meta=b"\xff\x00{not json")
    long_meta = bytearray(not_json)
    struct.pack_into("<I", long_meta, TABLE_AT + 76, PAGE + 1)  # meta_len past its area
    lying = bytearray(one)
    struct.pack_into("<I", lying, TABLE_AT + 4, 7)  # ndim 7
    return {
        "empty_store": bytes(store()),
        "one_frame": bytes(one),
        "history_ring": bytes(ring),
        "four_dims_with_meta": bytes(tall),
        "subscriber": bytes(subscribed),
        "torn": bytes(torn),
        "lying_slot": bytes(lying),
        "layout_1": bytes(store(magic=V1_MAGIC, version=1)),
        "layout_2": bytes(store(magic=V2_MAGIC, version=2)),
        "pinner": bytes(pinned),
        "meta_not_json": bytes(not_json),
        "meta_len_lies": bytes(long_meta),
        "truncated": bytes(one[: len(one) // 2]),
        "head_only": bytes(one[:HEAD]),
    }


def main(directory: str) -> None:
    os.makedirs(directory, exist_ok=True)
    for name, content in seeds().items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(content)


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "corpus_frames"))
