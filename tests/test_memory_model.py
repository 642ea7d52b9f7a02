"""A model of one process's segments, checked against the real thing by Hypothesis.

Random sequences of create/attach/detach/remove/lock/unlock/write over a few
objects and two keys, all from one thread; after every step the file in
/dev/shm exists exactly when the model says the name is taken, and every
attached object sees its segment's data.
"""
from __future__ import annotations

import itertools
import os
import uuid
from dataclasses import dataclass, field

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from shmimage import (
    AccessMode,
    AlreadyExistsError,
    LockError,
    NotFoundError,
    SharedMemory,
    SharedMemoryError,
)
from workers_memory import shm_path

OBJECTS = 4
KEYS = 2


@dataclass
class Generation:
    """One segment: a name's content between its creation and its removal."""

    size: int
    persistent: bool
    token: int = 0
    holders: set[int] = field(default_factory=set)
    lock_holder: int | None = None


class SegmentModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        run = uuid.uuid4().hex
        self.keys = [f"shmi-test-model-{run}-{k}" for k in range(KEYS)]
        self.objects = [SharedMemory(self.keys[i % KEYS]) for i in range(OBJECTS)]
        self.named: dict[int, Generation | None] = {k: None for k in range(KEYS)}
        self.mapped: dict[int, Generation] = {}  # object index -> its segment
        self.read_only: set[int] = set()
        self.tokens = itertools.count(1)

    def key_of(self, obj: int) -> int:
        return obj % KEYS

    def leave(self, obj: int) -> None:
        gen = self.mapped.pop(obj)
        gen.holders.discard(obj)
        self.read_only.discard(obj)
        if gen.lock_holder == obj:  # detach releases the lock first
            gen.lock_holder = None
        key = self.key_of(obj)
        if not gen.holders and not gen.persistent and self.named[key] is gen:
            self.named[key] = None

    @rule(obj=st.integers(0, OBJECTS - 1), size=st.integers(8, 9000), persistent=st.booleans())
    def create(self, obj: int, size: int, persistent: bool) -> None:
        shm, key = self.objects[obj], self.key_of(obj)
        if obj in self.mapped:
            with pytest.raises(SharedMemoryError):
                shm.create(size, persistent=persistent)
        elif self.named[key] is not None:
            with pytest.raises(AlreadyExistsError):
                shm.create(size, persistent=persistent)
        else:
            shm.create(size, persistent=persistent)
            gen = Generation(size, persistent, holders={obj})
            self.named[key] = self.mapped[obj] = gen
            with shm.data as mv:
                assert bytes(mv) == bytes(size)

    @rule(obj=st.integers(0, OBJECTS - 1), read_only=st.booleans())
    def attach(self, obj: int, read_only: bool) -> None:
        shm, gen = self.objects[obj], self.named[self.key_of(obj)]
        mode = AccessMode.READ_ONLY if read_only else AccessMode.READ_WRITE
        if obj in self.mapped:
            with pytest.raises(SharedMemoryError):
                shm.attach(mode)
        elif gen is None:
            with pytest.raises(NotFoundError):
                shm.attach(mode)
        else:
            shm.attach(mode)
            gen.holders.add(obj)
            self.mapped[obj] = gen
            if read_only:
                self.read_only.add(obj)

    @rule(obj=st.integers(0, OBJECTS - 1))
    def lock(self, obj: int) -> None:
        shm, gen = self.objects[obj], self.mapped.get(obj)
        if gen is None or obj in self.read_only or gen.lock_holder == obj:
            with pytest.raises(LockError):
                shm.lock(timeout=0)
        elif gen.lock_holder is not None:
            # This thread holds it through another object: refused either way.
            try:
                assert shm.lock(timeout=0) is False
            except LockError:
                pass
        else:
            assert shm.lock(timeout=0) is True
            assert shm.owner_died is False
            gen.lock_holder = obj

    @rule(obj=st.integers(0, OBJECTS - 1))
    def unlock(self, obj: int) -> None:
        shm, gen = self.objects[obj], self.mapped.get(obj)
        if gen is None or gen.lock_holder != obj:
            with pytest.raises(LockError):
                shm.unlock()
        else:
            shm.unlock()
            gen.lock_holder = None

    @rule(obj=st.integers(0, OBJECTS - 1))
    def detach(self, obj: int) -> None:
        assert self.objects[obj].detach() is (obj in self.mapped)
        if obj in self.mapped:
            self.leave(obj)

    @rule(key=st.integers(0, KEYS - 1))
    def remove(self, key: int) -> None:
        if self.named[key] is None:
            with pytest.raises(NotFoundError):
                SharedMemory.remove(self.keys[key])
        else:
            SharedMemory.remove(self.keys[key])
            self.named[key] = None

    @rule(obj=st.integers(0, OBJECTS - 1))
    def write(self, obj: int) -> None:
        if obj in self.mapped and obj not in self.read_only:
            gen = self.mapped[obj]
            gen.token = next(self.tokens)
            with self.objects[obj].data as mv:
                mv[:4] = gen.token.to_bytes(4, "little")
                mv[-1] = gen.token % 256

    @invariant()
    def names_match_the_model(self) -> None:
        for key, gen in self.named.items():
            path = shm_path(SharedMemory(self.keys[key]).native_key)
            assert os.path.exists(path) == (gen is not None)

    @invariant()
    def every_mapping_sees_its_segment(self) -> None:
        for obj, gen in self.mapped.items():
            shm = self.objects[obj]
            assert shm.is_attached and shm.size == gen.size
            with shm.data as mv:
                assert mv[:4] == gen.token.to_bytes(4, "little")
                assert mv[-1] == gen.token % 256

    def teardown(self) -> None:
        for shm in self.objects:
            shm.detach()
        for key in self.keys:
            try:
                SharedMemory.remove(key)
            except NotFoundError:
                pass


SegmentModel.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
test_segment_model = SegmentModel.TestCase
