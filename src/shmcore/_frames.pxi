# Frames in a segment: a control block, then slots. Included by _shmcore.pyx.
#
# A writer holds the segment's mutex for a whole publish and an exclusive
# byte-range lock on the slot it fills; readers pin the latest slot with a
# shared byte-range lock (no mutex), so a slot being read is never chosen for
# writing. The kernel drops both kinds of lock when a process dies, so a slot
# abandoned mid-write is simply free again, and `latest` only ever names
# complete slots.
from libc.string cimport memcmp, memcpy

import numpy as np

from shmimage.errors import InvalidImageError, NoFrameError, TornFrameError

SLOTS = FRM_MIN_SLOTS
CTRL_SIZE = FRM_CTRL_SIZE
# Every numeric dtype numpy produces natively (stored in native byte order).
DTYPES = tuple(sorted({np.dtype(c).str for c in "?bhilqBHILQefd"}))
cdef int COPY_THREADS = 2
cdef uint64_t PAGE = 4096
cdef int64_t SPIN_NS = 10000  # long enough for a prompt answer, short on a busy machine
cdef long _PID = os.getpid()
cdef dict _CODES = {}


def _refresh_pid():
    global _PID
    _PID = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_refresh_pid)


cdef bytes _dtype_code(object dtype):
    code = _CODES.get(dtype)
    if code is None:
        code = _CODES[dtype] = dtype.str.encode()
    return code


MAX_FRAME_BYTES = 1 << 46


def set_spin_ns(int64_t ns):
    """How long wait() spins before sleeping in the kernel (0: never)."""
    global SPIN_NS
    SPIN_NS = max(0, ns)


def set_copy_threads(int n):
    """How many threads share a large copy or reservation (1 to 8)."""
    global COPY_THREADS
    COPY_THREADS = max(1, min(8, n))


cdef uint64_t round_page(uint64_t n):
    return (n + PAGE - 1) & ~(PAGE - 1)


def frame_bytes(tuple shape, object dtype):
    """Bytes of a frame, refusing counts no segment could hold."""
    n = np.dtype(dtype).itemsize
    for d in shape:
        n *= int(d)
    if n > MAX_FRAME_BYTES:
        raise InvalidImageError(f"a frame of shape {shape} ({n} bytes) is too large")
    return n


def segment_size(uint64_t slot_capacity, int nslots=FRM_MIN_SLOTS):
    """Data bytes for a frame store with `nslots` slots of `slot_capacity`."""
    return FRM_CTRL_SIZE + nslots * round_page(max(slot_capacity, 1))


cdef class FrameStore:
    """The frame protocol over one attached Segment."""

    cdef readonly Segment segment
    cdef frm_ctrl *ctrl
    cdef unsigned char *slots
    cdef int nslots
    cdef readonly uint64_t capacity
    cdef int pins[8]
    cdef public FrameStore successor
    # What _meta last validated in each slot (shape and dtype fields), and the
    # Python objects made from it; and the last array made over each slot
    # (index slot * 2 + writable). A frame's geometry rarely changes, and
    # building these anew is most of the cost of a view() or loan().
    cdef frm_slot seen[8]
    cdef list specs
    cdef list arrays

    @staticmethod
    def build(uint64_t slot_capacity, bytes key=b"", bint persistent=False,
              int nslots=FRM_MIN_SLOTS, uint64_t last_generation=0):
        """A new, unnamed store (name it with segment.link or segment.swap)."""
        cdef uint64_t cap = round_page(max(slot_capacity, 1))
        seg = Segment.build(segment_size(cap, nslots), key, persistent, reserve=FRM_CTRL_SIZE)
        cdef frm_ctrl *c = <frm_ctrl *>shmp_data(&(<Segment>seg).seg)
        c.magic = FRM_MAGIC
        c.version = FRM_VERSION
        c.nslots = nslots
        c.slot_capacity = cap
        c.slots_offset = FRM_CTRL_SIZE
        c.last_generation = last_generation
        return FrameStore(seg)

    def __cinit__(self, Segment segment):
        cdef frm_ctrl c
        cdef uint64_t size = shmp_hdr(&segment.seg).data_size
        if size < FRM_CTRL_SIZE or sizeof(frm_ctrl) > FRM_CTRL_SIZE:
            raise IncompatibleSegmentError("the segment holds no frames")
        memcpy(&c, shmp_data(&segment.seg), sizeof(frm_ctrl))
        if c.magic != FRM_MAGIC or c.version != FRM_VERSION:
            raise IncompatibleSegmentError("the segment holds no shmimage frames of this version")
        if (c.nslots < FRM_MIN_SLOTS or c.nslots > FRM_MAX_SLOTS or c.slot_capacity == 0
                or c.slot_capacity % PAGE or c.slots_offset != FRM_CTRL_SIZE
                or c.slot_capacity > (size - FRM_CTRL_SIZE) // c.nslots):
            raise IncompatibleSegmentError("the frame control block disagrees with the segment")
        self.segment = segment
        self.ctrl = <frm_ctrl *>shmp_data(&segment.seg)
        self.slots = shmp_data(&segment.seg) + FRM_CTRL_SIZE
        self.nslots = c.nslots
        self.capacity = c.slot_capacity
        memset(self.pins, 0, sizeof(self.pins))
        memset(self.seen, 0, sizeof(self.seen))
        self.specs = [None] * FRM_MAX_SLOTS
        self.arrays = [None] * (2 * FRM_MAX_SLOTS)

    @property
    def superseded(self):
        return self.segment.superseded

    @property
    def generation(self):
        return frm_load_latest(self.ctrl) >> 8

    @property
    def seq(self):
        return frm_load_seq(self.ctrl)

    # -- writing --

    def publish(self, object array, object timeout=None):
        """Copy `array` in as the new latest frame; its generation, or 0 when
        the caller must move to `successor` (or reattach) and try again."""
        cdef Py_buffer src
        cdef int slot
        cdef uint64_t nbytes = array.nbytes
        cdef bint contiguous = array.flags.c_contiguous
        if contiguous:
            PyObject_GetBuffer(array, &src, PyBUF_C_CONTIGUOUS)
        try:
            return self._publish(array, &src if contiguous else NULL, nbytes, timeout)
        finally:
            if contiguous:
                PyBuffer_Release(&src)

    cdef uint64_t _publish(self, object array, Py_buffer *src, uint64_t nbytes,
                           object timeout) except? 0:
        cdef int slot
        if not self.segment._lock(timeout):
            raise TimeoutError("timed out waiting for the segment's lock")
        try:
            if self._must_move(nbytes):
                return 0
            slot = self._claim(timeout, src == NULL)
            try:
                if src != NULL and nbytes and not self.ctrl.slots[slot].reserved:
                    self._fill(slot, src.buf, nbytes)
                elif src != NULL and nbytes:
                    with nogil:
                        shmp_copy(self.slots + slot * self.capacity, src.buf, nbytes,
                                  COPY_THREADS)
                elif nbytes:
                    np.copyto(self._array(slot, array.shape, array.dtype, True), array,
                              casting="no")
                return self._commit(slot, array.shape, array.dtype)
            except BaseException:
                self._abandon(slot)
                raise
        finally:
            self.segment._unlock()

    def loan_begin(self, tuple shape, object dtype, object timeout=None):
        """Lock and claim a slot; (slot, writable ndarray over it) or None when
        the caller must move to `successor` (or reattach) and try again."""
        dtype = np.dtype(dtype)
        cdef uint64_t nbytes = frame_bytes(shape, dtype)
        cdef int slot = -1
        if not self.segment._lock(timeout):
            raise TimeoutError("timed out waiting for the segment's lock")
        try:
            if self._must_move(nbytes):
                self.segment._unlock()
                return None
            slot = self._claim(timeout)
            return slot, self._array(slot, shape, dtype, True)
        except BaseException:
            if slot >= 0:
                self._abandon(slot)
            self.segment._unlock()
            raise

    def loan_end(self, int slot, tuple shape, object dtype, bint commit):
        """Publish (commit) or drop a loaned slot, then unlock."""
        try:
            if commit:
                return self._commit(slot, shape, np.dtype(dtype))
            self._abandon(slot)
            return 0
        finally:
            self.segment._unlock()

    cdef bint _must_move(self, uint64_t nbytes) except -1:
        if self.segment.superseded:
            return True
        if nbytes > self.capacity:
            self.successor = self._grow(nbytes)
            return True
        return False

    cdef FrameStore _grow(self, uint64_t nbytes):
        """A larger store under the same name; call with the lock held."""
        # At least double, so a stream of slowly growing frames grows rarely.
        cdef FrameStore new = FrameStore.build(
            max(nbytes, self.capacity * 2), self.segment.key.encode(),
            self.segment.persistent, self.nslots, self.ctrl.last_generation)
        try:
            new._carry_latest(self)
            new.segment.swap(self.segment)
        except BaseException:
            new.segment.discard()
            raise
        frm_bump_seq(self.ctrl)
        shmp_wake(&self.segment.seg, &self.ctrl.seq)
        return new

    cdef int _carry_latest(self, FrameStore old) except -1:
        """Copy `old`'s latest frame into slot 0 of this unnamed store, so
        readers that follow the swap never find it empty."""
        cdef uint64_t latest = frm_load_latest(old.ctrl)
        cdef int src
        if latest == 0:
            return 0
        src = <int>(latest & 0xff) - 1
        if src < 0 or src >= old.nslots:
            return 0
        meta = old._meta(src)
        self._reserve(0, 0)
        cdef size_t length = frame_bytes(meta[0], meta[1])
        with nogil:
            shmp_copy(self.slots, old.slots + src * old.capacity, length, COPY_THREADS)
        memcpy(&self.ctrl.slots[0], &old.ctrl.slots[src], sizeof(frm_slot))
        self.ctrl.slots[0].reserved = 1
        frm_store_latest(self.ctrl, (latest >> 8) << 8 | 1)
        return 0

    cdef int _claim(self, object timeout, bint reserve=True) except -1:
        """An exclusive slot: never the latest, never one pinned by a reader.
        Its pages are reserved unless `reserve` is false (see _fill)."""
        cdef int64_t ns = timeout_ns(timeout)
        cdef double deadline = time.monotonic() + ns / 1e9 if ns >= 0 else 0
        cdef int i, slot, rc
        cdef uint64_t latest
        cdef int order[8]
        while True:
            latest = frm_load_latest(self.ctrl)
            self._claim_order(<int>(latest & 0xff) - 1, order)
            for i in range(self.nslots):
                slot = order[i]
                if slot < 0 or self.pins[slot]:
                    continue
                rc = shmp_range_lock(&self.segment.seg, slot, 1)
                if rc == 0:
                    frm_store_state(&self.ctrl.slots[slot], FRM_WRITING)
                    if reserve:
                        self._reserve(slot, 0)
                    return slot
                if rc != EAGAIN:
                    check(rc, "claim a frame slot")
            if ns >= 0 and time.monotonic() >= deadline:
                raise TimeoutError("every spare frame slot is pinned by a view")
            with nogil:
                shmp_nap()
            PyErr_CheckSignals()

    cdef void _claim_order(self, int latest, int *order):
        """Slots to try, most recently written first (never the latest): a
        writer alternates between two slots while readers keep up, so the
        frames it writes stay warm in the cache."""
        cdef int i, j, k, n = 0
        for i in range(self.nslots):
            if i == latest:
                continue
            j = n
            while j > 0 and (self.ctrl.slots[order[j - 1]].generation
                             < self.ctrl.slots[i].generation):
                order[j] = order[j - 1]
                j -= 1
            order[j] = i
            n += 1
        for k in range(n, self.nslots):
            order[k] = -1

    cdef int _reserve(self, int slot, uint64_t skip) except -1:
        """Reserve a slot's pages from `skip` on (the first `skip` bytes were
        reserved by _fill)."""
        cdef frm_slot *s = &self.ctrl.slots[slot]
        cdef int rc = 0
        cdef uint64_t off
        if s.reserved:
            return 0
        off = SHMP_HEADER_SIZE + FRM_CTRL_SIZE + slot * self.capacity + skip
        if skip < self.capacity:
            with nogil:
                rc = shmp_reserve(&self.segment.seg, off, self.capacity - skip, COPY_THREADS)
        if rc:
            self._abandon(slot)
            check(rc, "reserve a frame slot")
        s.reserved = 1
        return 0

    cdef int _fill(self, int slot, const void *src, uint64_t nbytes) except -1:
        """The first write into a slot: reserve and copy in one pass, then
        reserve the rest of the slot."""
        cdef uint64_t off = SHMP_HEADER_SIZE + FRM_CTRL_SIZE + slot * self.capacity
        cdef int rc
        with nogil:
            rc = shmp_fill(&self.segment.seg, off, src, nbytes, COPY_THREADS)
        if rc:
            self._abandon(slot)
            check(rc, "reserve a frame slot")
        return self._reserve(slot, round_page(nbytes))

    cdef int _commit(self, int slot, tuple shape, object dtype) except -1:
        cdef frm_slot *s = &self.ctrl.slots[slot]
        cdef uint64_t gen = self.ctrl.last_generation + 1
        cdef uint64_t nbytes = dtype.itemsize
        cdef int i, ndim = len(shape)
        cdef bytes code = _dtype_code(dtype)
        s.ndim = ndim
        for i in range(3):
            s.shape[i] = shape[i] if i < ndim else 0
            if i < ndim:
                nbytes *= s.shape[i]
        memset(s.dtype, 0, 8)
        memcpy(s.dtype, <const char *>code, len(code))
        s.itemsize = dtype.itemsize
        s.nbytes = nbytes
        s.generation = gen
        s.timestamp_ns = frm_wall_ns()
        s.writer_pid = _PID
        frm_store_state(s, FRM_COMPLETE)
        self.ctrl.last_generation = gen
        frm_store_latest(self.ctrl, gen << 8 | <uint64_t>(slot + 1))
        shmp_range_unlock(&self.segment.seg, slot)
        frm_bump_seq(self.ctrl)
        if frm_waiters(self.ctrl):
            shmp_wake(&self.segment.seg, &self.ctrl.seq)
        return gen

    cdef void _abandon(self, int slot):
        frm_store_state(&self.ctrl.slots[slot], FRM_FREE)
        shmp_range_unlock(&self.segment.seg, slot)

    # -- reading --

    def pin(self):
        """Pin the latest complete frame's slot: (slot, meta)."""
        cdef uint64_t latest, gen
        cdef int slot, rc, attempt
        for attempt in range(10000):
            latest = frm_load_latest(self.ctrl)
            if latest == 0:
                self._no_frame()
            slot = <int>(latest & 0xff) - 1
            gen = latest >> 8
            if slot < 0 or slot >= self.nslots:
                raise IncompatibleSegmentError("the latest frame names no slot")
            if not self.pins[slot]:
                rc = shmp_range_lock(&self.segment.seg, slot, 0)
                if rc == EAGAIN:
                    frm_yield()
                    continue
                check(rc, "pin a frame")
            if (frm_load_state(&self.ctrl.slots[slot]) != FRM_COMPLETE
                    or self.ctrl.slots[slot].generation != gen):
                if not self.pins[slot]:
                    shmp_range_unlock(&self.segment.seg, slot)
                continue
            self.pins[slot] += 1
            try:
                return slot, self._meta(slot)
            except BaseException:
                self.unpin(slot)
                raise
        raise TimeoutError("could not pin the latest frame")

    def unpin(self, int slot):
        self.pins[slot] -= 1
        if self.pins[slot] == 0 and self.segment.is_attached:
            shmp_range_unlock(&self.segment.seg, slot)

    cdef tuple _meta(self, int slot):
        """The slot's frame facts, checked against the slot's real size."""
        cdef frm_slot s
        memcpy(&s, &self.ctrl.slots[slot], sizeof(frm_slot))
        spec = self._spec(slot, &s)
        return spec[0], spec[1], int(s.generation), int(s.timestamp_ns), int(s.writer_pid)

    cdef tuple _spec(self, int slot, frm_slot *s):
        """(shape, dtype) of a snapshot of a slot descriptor, validated once
        for as long as its shape and dtype fields stay the same."""
        cdef frm_slot *seen = &self.seen[slot]
        if (self.specs[slot] is not None and s.ndim == seen.ndim
                and memcmp(s.shape, seen.shape, sizeof(s.shape)) == 0
                and memcmp(s.dtype, seen.dtype, sizeof(s.dtype)) == 0):
            return self.specs[slot]
        if s.ndim not in (2, 3):
            raise IncompatibleSegmentError("a frame with a bad number of dimensions")
        shape = tuple(int(s.shape[i]) for i in range(s.ndim))
        code = s.dtype[:strnlen8(s.dtype)].decode("ascii", "replace")
        if code not in DTYPES or min(shape) < 1:
            raise IncompatibleSegmentError("a frame with a bad shape or dtype")
        dtype = np.dtype(code)
        nbytes = dtype.itemsize
        for n in shape:
            nbytes *= n
            if nbytes > self.capacity:
                raise IncompatibleSegmentError("a frame larger than its slot")
        memcpy(seen, s, sizeof(frm_slot))
        self.specs[slot] = (shape, dtype)
        return self.specs[slot]

    def array(self, int slot, tuple shape, object dtype, bint writable=False):
        """A zero-copy ndarray over a slot; it keeps the mapping alive."""
        return self._array(slot, shape, dtype, writable)

    cdef object _array(self, int slot, tuple shape, object dtype, bint writable):
        cdef int i = slot * 2 + writable
        cdef tuple last = self.arrays[i]
        if (last is not None and (last[0] is shape or last[0] == shape)
                and (last[1] is dtype or last[1] == dtype)):
            return last[2].view()  # a new array object: the caller may reshape it
        cdef uint64_t off = FRM_CTRL_SIZE + slot * self.capacity
        mv = memoryview(self.segment)[off:off + frame_bytes(shape, dtype)]
        if not writable:
            mv = mv.toreadonly()
        array = np.frombuffer(mv, dtype=dtype).reshape(shape)
        self.arrays[i] = (shape, dtype, array)
        return array.view()

    def forget_arrays(self):
        """Drop the arrays kept for reuse, so that they hold no buffer of the
        segment (call before deciding whether it can be unmapped)."""
        self.arrays = [None] * (2 * FRM_MAX_SLOTS)

    def copy_out(self, int slot, tuple shape, object dtype):
        """A private copy of a pinned slot, copied with the GIL released."""
        out = np.empty(shape, dtype=dtype)
        cdef unsigned char[::1] dst = out.reshape(-1).view(np.uint8)
        cdef unsigned char *src = self.slots + slot * self.capacity
        cdef size_t n = out.nbytes
        if n:
            with nogil:
                shmp_copy(&dst[0], src, n, COPY_THREADS)
        return out

    def info(self):
        """Facts of the latest frame without pinning it (rechecked after)."""
        cdef uint64_t latest
        for _ in range(1000):
            latest = frm_load_latest(self.ctrl)
            if latest == 0:
                self._no_frame()
            slot = <int>(latest & 0xff) - 1
            if slot < 0 or slot >= self.nslots:
                raise IncompatibleSegmentError("the latest frame names no slot")
            meta = self._meta(slot)
            if frm_load_latest(self.ctrl) == latest and meta[2] == latest >> 8:
                return meta
        raise TimeoutError("frames change too fast to read their facts")

    cdef int _no_frame(self) except -1:
        cdef int i, locked
        for i in range(self.nslots):
            if frm_load_state(&self.ctrl.slots[i]) == FRM_WRITING:
                locked = 1
                shmp_range_test(&self.segment.seg, i, &locked)
                if not locked:
                    raise TornFrameError(
                        "the writer died in the middle of a publish and no complete frame exists")
        raise NoFrameError("nothing has been published yet")

    def wait(self, uint64_t after, object timeout=None):
        """Block until a generation newer than `after`; it, or 0 when the
        store was superseded (reattach and wait again)."""
        cdef int64_t ns = timeout_ns(timeout)
        cdef int64_t left = ns
        cdef double deadline = time.monotonic() + ns / 1e9 if ns >= 0 else 0
        cdef uint32_t seq
        cdef uint64_t gen
        cdef int rc = 0
        cdef int64_t spin
        while True:
            seq = frm_load_seq(self.ctrl)
            gen = frm_load_latest(self.ctrl) >> 8
            if gen > after:
                return gen
            if self.segment.superseded:
                return 0
            if ns >= 0:
                left = <int64_t>((deadline - time.monotonic()) * 1e9)
                if left <= 0:
                    raise TimeoutError("no new frame within the timeout")
            spin = SPIN_NS if ns < 0 else min(SPIN_NS, left)
            self.segment.waiting += 1  # keeps detach() from unmapping under us
            with nogil:
                if not frm_spin_for_seq(self.ctrl, seq, spin):
                    frm_add_waiter(self.ctrl, 1)
                    rc = shmp_wait(&self.segment.seg, &self.ctrl.seq, seq, left)
                    frm_add_waiter(self.ctrl, -1)
            self.segment.waiting -= 1
            if rc and rc != ETIMEDOUT:
                check(rc, "wait")
            PyErr_CheckSignals()


cdef extern from *:
    """
    static size_t strnlen8(const char *s) { size_t n = 0; while (n < 8 && s[n]) n++; return n; }
    """
    size_t strnlen8(const char *s)
