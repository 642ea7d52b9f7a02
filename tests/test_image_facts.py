"""Facts tied to pixels: Frame, read_frame(), view_frame(), read(out=) and meta."""
from __future__ import annotations

import multiprocessing
import pickle
import struct

import numpy as np
import pytest
from shmimage import FrameInfo, IncompatibleSegmentError, SharedImage
from shmimage.image import Frame
from workers_frames import facts_match_pixels
from workers_image import SLOT_SIZE, SLOTS_AT, WAIT, frame_generation, gen_frame, shm_path

ctx = multiprocessing.get_context("spawn")
SHAPE = (32, 48)
HEADER = 4096


@pytest.fixture
def image(unique_key):
    with SharedImage(unique_key()) as img:
        img.publish(gen_frame(SHAPE, 1), meta={"generation": 1})
        yield img


def test_facts_match_pixels_under_a_racing_writer(image, procs) -> None:
    parent_end, child_end = ctx.Pipe(duplex=False)
    proc = procs.start(facts_match_pixels, image.key, 1001, child_end)
    assert parent_end.poll(WAIT) and parent_end.recv() == "ready"
    for generation in range(2, 1002):
        image.publish(gen_frame(SHAPE, generation), meta={"generation": generation},
                      timeout=WAIT)
    assert parent_end.poll(WAIT)
    result = parent_end.recv()
    proc.join(WAIT)
    assert result[0] == "ok", result
    assert result[1] > 0 and result[2] == 0, result


def test_read_out_copies_into_the_callers_array(image) -> None:
    out = np.empty(SHAPE, np.float32)
    assert image.read(out=out) is out
    assert frame_generation(out) == 1
    frame = image.read_frame(out=out)
    assert frame.pixels is out and frame.info.generation == 1
    for wrong in (np.empty((32, 47), np.float32), np.empty(SHAPE, np.float64),
                  np.empty((48, 32), np.float32).T, [[0.0]]):
        with pytest.raises(ValueError):
            image.read(out=wrong)
    readonly = np.empty(SHAPE, np.float32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError):
        image.read(out=readonly)


def test_meta_round_trip(image) -> None:
    meta = {"frame_id": 7, "exposure": 0.25, "pose": [1, 2, 3], "name": "cam0"}
    generation = image.publish(gen_frame(SHAPE, 2), meta=meta)
    assert image.info().meta == meta
    assert image.read_frame().info.meta == meta
    with image.view_frame() as frame:
        assert frame.info.meta == meta and frame.info.generation == generation
        assert frame_generation(frame.pixels) == 2
    with image.loan(SHAPE, np.float32, meta={"loaned": True}) as pixels:
        pixels[...] = 3
    assert image.read_frame().info.meta == {"loaned": True}
    image.publish(gen_frame(SHAPE, 4))
    assert image.info().meta == {}


def test_meta_is_bounded_to_64_kib_and_json(image) -> None:
    at_limit = {"x": "a" * (65536 - len('{"x":""}'))}
    image.publish(gen_frame(SHAPE, 2), meta=at_limit)
    assert image.info().meta == at_limit
    with pytest.raises(ValueError, match="at most 65536"):
        image.publish(gen_frame(SHAPE, 3), meta={"x": "a" * 65536})
    with pytest.raises(ValueError, match="at most 65536"):
        image.loan(SHAPE, meta={"x": "a" * 65536})
    with pytest.raises(ValueError, match="JSON"):
        image.publish(gen_frame(SHAPE, 3), meta={"x": object()})
    with pytest.raises(TypeError):
        image.publish(gen_frame(SHAPE, 3), meta=[1, 2])  # type: ignore[arg-type]
    assert image.info().generation == 2


@pytest.mark.parametrize("junk", [b"\xff\xfe\x00", b"not json", b"[1, 2]", b"{" * 5000])
def test_hostile_meta_bytes_are_an_incompatible_segment(unique_key, junk) -> None:
    with SharedImage(unique_key()) as image:
        image.publish(gen_frame(SHAPE, 1), meta={"a": 1})
        slot = image.status()["pins"]  # (nothing pinned: just attached)
        assert slot == []
        path = shm_path(image.native_key)
        with open(path, "r+b") as f:
            f.seek(HEADER + 12)
            ctrl_size, = struct.unpack("<I", f.read(4))
            f.seek(HEADER + 48)
            stride, = struct.unpack("<Q", f.read(8))
            f.seek(HEADER + 56)
            latest, = struct.unpack("<Q", f.read(8))
            index = (latest & 0xFF) - 1
            f.seek(HEADER + ctrl_size + index * stride)
            f.write(junk)
            f.seek(HEADER + SLOTS_AT + index * SLOT_SIZE + 76)
            f.write(struct.pack("<I", len(junk)))
        with pytest.raises(IncompatibleSegmentError, match="meta"):
            image.info()
        with pytest.raises(IncompatibleSegmentError):
            image.read_frame()
        assert frame_generation(image.read()) == 1  # pixels alone never decode meta


def test_frame_and_frame_info_pickle_as_values(image) -> None:
    with image.view_frame() as frame:
        pass
    assert isinstance(frame, Frame) and isinstance(frame.info, FrameInfo)
    copy = pickle.loads(pickle.dumps(frame))
    assert copy.info == frame.info and copy.info.meta == {"generation": 1}
    np.testing.assert_array_equal(copy.pixels, frame.pixels)
    assert copy.pixels.flags.owndata or copy.pixels.base is not frame.pixels.base
    assert pickle.loads(pickle.dumps(image.info())) == image.info()
    assert hash(image.info()) == hash(image.info())
