# Frames in a segment: a thin wrapper over frames.c (the protocol, its
# layout and its validation). Included by _shmcore.pyx.
#
# C follows a store that was replaced under its name (grown) by itself: a
# call that may move gets blank storage for the successor (`_spare`), and
# when it moved there, the successor is adopted as `self.successor`.
from libc.errno cimport EINTR
from libc.string cimport memcmp, memcpy

import numpy as np

from shmimage.errors import InvalidImageError, NoFrameError, TornFrameError

MAX_FRAME_BYTES = FRM_MAX_FRAME_BYTES
MAX_DIMS = FRM_MAX_DIMS
cdef int64_t SPIN_NS = 10000  # long enough for a prompt answer, short on a busy machine

# frames.h's element type codes, in order; stored native.
DTYPES = (None,) + tuple(np.dtype(t) for t in (
    np.bool_, np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64,
    np.uint64, np.float16, np.float32, np.float64))
cdef dict _CODES = {dt: code for code, dt in enumerate(DTYPES) if dt is not None}


cdef uint32_t dtype_code(object dtype) except 0:
    """The element type code of a native numpy dtype."""
    code = _CODES.get(dtype)
    if code is None:
        raise InvalidImageError(
            f"a frame's dtype is bool, int8 to int64, uint8 to uint64 or float16 to float64, "
            f"not {dtype}")
    return code


def frame_bytes(tuple shape, object dtype):
    """Bytes of a frame, refusing counts no segment could hold."""
    n = np.dtype(dtype).itemsize
    for d in shape:
        n *= int(d)
    if n > MAX_FRAME_BYTES:
        raise InvalidImageError(f"a frame of shape {shape} ({n} bytes) is too large")
    return n


def segment_size(uint64_t capacity, int slots=FRM_MIN_SPARES, int max_slots=FRM_MIN_SPARES,
                 int history=1):
    """Data bytes of a frame store with these options."""
    cdef frm_options o = _options(capacity, slots, max_slots, history)
    cdef uint64_t size = 0
    check(frm_data_size(&o, &size), "size a frame store")
    return size


cdef frm_options _options(uint64_t capacity, int slots, int max_slots, int history):
    cdef frm_options o
    o.capacity = capacity
    o.slots = slots
    o.max_slots = max_slots
    o.history = history
    o.meta_capacity = FRM_META_MAX
    return o


cdef int64_t deadline_of(object timeout) except? -2:
    """The monotonic deadline of a call: computed once, it bounds the whole call."""
    cdef int64_t ns = timeout_ns(timeout)
    return -1 if ns < 0 else frm_now_ns() + ns


cdef int fail(int rc, str what) except -1:
    """Raise the exception for a frames.c status (0: nothing)."""
    if rc == 0:
        return 0
    if rc == ETIMEDOUT:
        raise TimeoutError(f"{what}: timed out")
    if rc == FRM_ENOFRAME:
        raise NoFrameError("nothing has been published yet")
    if rc == FRM_ETORN:
        raise TornFrameError(
            "the writer died in the middle of a publish and no complete frame exists")
    if rc == EDEADLK:
        raise LockError(f"{what}: this thread already holds the segment's lock")
    if rc == ESTALE:
        raise IncompatibleSegmentError(f"{what}: the store was replaced")
    return check(rc, what)


cdef int fail_frame(int rc, str what) except -1:
    """fail(), where EINVAL means a frame that does not fit its store."""
    if rc == EINVAL:
        raise InvalidImageError(f"{what}: the frame does not fit the store's slots")
    return fail(rc, what)


cdef int spec_of(tuple shape, object dtype, frm_spec *spec) except -1:
    cdef int i, ndim = len(shape)
    if ndim < 2 or ndim > <int>FRM_MAX_DIMS:
        raise InvalidImageError(f"a frame has 2 to 4 dimensions, not {ndim}")
    spec.ndim = ndim
    for i in range(FRM_MAX_DIMS):
        spec.shape[i] = shape[i] if i < ndim else 0
    spec.dtype = dtype_code(dtype)
    spec.meta = NULL
    spec.meta_len = 0
    return 0


cdef class FrameStore:
    """The frame protocol over one attached Segment."""

    cdef frm_store st
    cdef bint opened
    cdef readonly Segment segment
    # The store that replaced this one, once a call followed it there.
    cdef readonly FrameStore successor
    cdef FrameStore _next  # blank storage C attaches a successor into
    # What each slot's frame looked like when last turned into Python objects
    # (shape and dtype), those objects, and the last array made over each
    # slot (index slot * 2 + writable): a frame's geometry rarely changes,
    # and building these anew is most of the cost of a view() or loan().
    cdef frm_frame seen[FRM_MAX_TABLE]
    cdef list specs
    cdef list arrays

    def __cinit__(self, Segment segment=None):
        if segment is None:
            return  # blank: storage for a successor
        segment._check()
        check(frm_open(&self.st, &segment.seg), "open the frame store")
        self.segment = segment
        self._opened()

    cdef _opened(self):
        self.opened = True
        self.specs = [None] * FRM_MAX_TABLE
        self.arrays = [None] * (2 * FRM_MAX_TABLE)

    def __dealloc__(self):
        if self.opened:
            frm_close(&self.st)

    @staticmethod
    def attach(str name, bint writable=True, bint create=False, bytes key=b"",
               bint persistent=False, uint64_t capacity=0, int slots=FRM_MIN_SPARES,
               int max_slots=FRM_MIN_SPARES, int history=1):
        """Attach the store under `name`, following replacements; with
        `create`, build it (with these options) when there is none."""
        cdef FrameStore self = FrameStore.__new__(FrameStore)
        cdef Segment seg = Segment.__new__(Segment)
        cdef frm_options o = _options(capacity, slots, max_slots, history)
        cdef bytes bname = name.encode()
        cdef const char *cname = bname
        cdef const char *ckey = key
        cdef size_t klen = min(len(key), SHMP_KEY_MAX)
        cdef int rc, created = 0
        if create and frm_check_options(&o) == EINVAL:
            raise ValueError(
                f"store options out of bounds: slots={slots} (2 to max_slots), "
                f"max_slots={max_slots} (at most {FRM_MAX_SPARES}), "
                f"history={history} (1 to {FRM_MAX_HISTORY})")
        with nogil:
            rc = frm_attach(&self.st, &seg.seg, cname, writable, create, &o, ckey, klen,
                            persistent, &created)
        fail(rc, f"{'create or ' if create else ''}attach {name!r}")
        seg._attached()
        self.segment = seg
        self._opened()
        return self

    # -- following --

    cdef frm_follow _spare(self):
        cdef frm_follow fw
        if self._next is None:
            self._next = FrameStore.__new__(FrameStore)
            self._next.segment = Segment.__new__(Segment)
        fw.store = &self._next.st
        fw.seg = &self._next.segment.seg
        fw.moved = 0
        return fw

    cdef FrameStore _adopt(self, frm_follow *fw):
        """The store a call ended in: this one, or the successor it moved to."""
        cdef FrameStore new
        if not fw.moved:
            return self
        fw.moved = 0
        new, self._next = self._next, None
        new.segment._attached()
        new._opened()
        self.successor = new
        return new

    @property
    def live(self):
        """The newest store known to have replaced this one (or this one)."""
        cdef FrameStore s = self
        while s.successor is not None:
            s = s.successor
        return s

    @property
    def superseded(self):
        return self.segment.superseded

    @property
    def generation(self):
        return frm_generation(&self.st)

    @property
    def capacity(self):
        return self.st.capacity

    @property
    def options(self):
        """The store options: capacity, slots, max_slots, history."""
        return {"capacity": self.st.capacity, "slots": self.st.slots,
                "max_slots": self.st.max_slots, "history": self.st.history}

    # -- writing --

    def publish(self, object array, object timeout=None):
        """Copy `array` in as the new latest frame; its generation."""
        cdef Py_buffer src
        cdef frm_spec spec
        cdef frm_follow fw
        cdef int64_t deadline
        cdef uint64_t gen = 0
        cdef int rc
        dtype = array.dtype
        if not array.flags.c_contiguous or dtype not in _CODES:
            return self._publish_copy(array, timeout)
        spec_of(array.shape, dtype, &spec)
        deadline = deadline_of(timeout)
        PyObject_GetBuffer(array, &src, PyBUF_C_CONTIGUOUS)
        fw = self._spare()
        self.segment.waiting += 1
        try:
            while True:
                with nogil:
                    rc = frm_publish(&self.st, &fw, src.buf, &spec, deadline, &gen)
                if rc != EINTR:
                    break
                PyErr_CheckSignals()
        finally:
            self.segment.waiting -= 1
            PyBuffer_Release(&src)
            self._adopt(&fw)
        fail_frame(rc, "publish")
        return gen

    def _publish_copy(self, object array, object timeout):
        """Publish an array numpy must copy in (strided, byte-swapped)."""
        dtype = array.dtype.newbyteorder("=")
        store, slot, dst = self.loan_begin(array.shape, dtype, timeout)
        try:
            np.copyto(dst, array, casting="equiv")
        except BaseException:
            store.loan_end(slot, array.shape, dtype, False)
            raise
        return store.loan_end(slot, array.shape, dtype, True)

    def loan_begin(self, tuple shape, object dtype, object timeout=None):
        """Lock and claim a slot: (store, slot, writable ndarray over it),
        `store` being the one to call loan_end on."""
        cdef frm_spec spec
        cdef frm_claim_t c
        cdef frm_follow fw
        cdef int rc
        cdef FrameStore store
        dtype = np.dtype(dtype)
        spec_of(shape, dtype, &spec)
        cdef uint64_t nbytes = frame_bytes(shape, dtype)
        cdef int64_t deadline = deadline_of(timeout)
        fw = self._spare()
        self.segment.waiting += 1
        try:
            while True:
                with nogil:
                    rc = frm_claim(&self.st, &fw, nbytes, 0, deadline, &c)
                if rc != EINTR:
                    break
                PyErr_CheckSignals()
        finally:
            self.segment.waiting -= 1
            store = self._adopt(&fw)
        fail(rc, "claim a frame slot")
        store.segment.lock_thread = PyThread_get_thread_ident()
        try:
            return store, c.slot, store._array(c.slot, shape, dtype, True)
        except BaseException:
            store._end(c.slot, NULL)
            raise

    def loan_end(self, int slot, tuple shape, object dtype, bint commit):
        """Publish (commit) or drop a loaned slot, then unlock; the generation or 0."""
        cdef frm_spec spec
        if not commit:
            return self._end(slot, NULL)
        try:
            spec_of(shape, np.dtype(dtype), &spec)
        except BaseException:
            self._end(slot, NULL)
            raise
        return self._end(slot, &spec)

    cdef uint64_t _end(self, int slot, frm_spec *spec) except? 0:
        cdef frm_claim_t c
        cdef uint64_t gen = 0
        cdef int rc
        c.store = &self.st
        c.slot = slot
        c.meta = shmp_data(&self.segment.seg) + self.st.ctrl_size + slot * self.st.stride
        c.pixels = c.meta + self.st.meta_capacity
        self.segment.lock_thread = 0
        rc = frm_commit(&c, spec, &gen) if spec != NULL else frm_abandon(&c)
        fail_frame(rc, "publish" if spec != NULL else "cancel a loan")
        return gen

    # -- reading --

    def pin(self):
        """Pin the latest complete frame: (store, slot, meta), `store` being
        the one to unpin it on."""
        cdef frm_frame f
        cdef frm_follow fw = self._spare()
        cdef int rc = frm_pin(&self.st, &fw, &f)
        cdef FrameStore store = self._adopt(&fw)
        fail(rc, "pin a frame")
        try:
            return store, f.slot, store._meta(&f)
        except BaseException:
            store.unpin(f.slot)
            raise

    def unpin(self, int slot):
        if self.segment.is_attached:
            frm_unpin(&self.st, slot)

    def info(self):
        """Facts of the latest frame without pinning it."""
        cdef frm_frame f
        cdef frm_follow fw = self._spare()
        cdef int rc = frm_latest(&self.st, &fw, &f)
        cdef FrameStore store = self._adopt(&fw)
        fail(rc, "read the latest frame's facts")
        return store._meta(&f)

    cdef tuple _meta(self, frm_frame *f):
        spec = self._spec(f)
        return spec[0], spec[1], f.generation, f.timestamp_ns, f.writer_pid

    cdef tuple _spec(self, frm_frame *f):
        """(shape, dtype) of a validated frame, made once per geometry."""
        cdef int slot = f.slot
        cdef frm_frame *seen = &self.seen[slot]
        cdef tuple spec = self.specs[slot]
        if (spec is not None and f.ndim == seen.ndim and f.dtype == seen.dtype
                and memcmp(f.shape, seen.shape, sizeof(f.shape)) == 0):
            return spec
        shape = tuple([f.shape[i] for i in range(f.ndim)])
        spec = (shape, DTYPES[f.dtype])
        memcpy(seen, f, sizeof(frm_frame))
        self.specs[slot] = spec
        return spec

    def array(self, int slot, tuple shape, object dtype, bint writable=False):
        """A zero-copy ndarray over a slot; it keeps the mapping alive."""
        return self._array(slot, shape, dtype, writable)

    cdef object _array(self, int slot, tuple shape, object dtype, bint writable):
        cdef int i = slot * 2 + writable
        cdef tuple last = self.arrays[i]
        if (last is not None and (last[0] is shape or last[0] == shape)
                and (last[1] is dtype or last[1] == dtype)):
            return last[2].view()  # a new array object: the caller may reshape it
        cdef uint64_t off = self._offset(slot)
        mv = memoryview(self.segment)[off:off + frame_bytes(shape, dtype)]
        if not writable:
            mv = mv.toreadonly()
        array = np.frombuffer(mv, dtype=dtype).reshape(shape)
        self.arrays[i] = (shape, dtype, array)
        return array.view()

    cdef uint64_t _offset(self, int slot) except? 0:
        """Where a slot's pixels start in the data area."""
        if slot < 0 or <uint32_t>slot >= self.st.table_slots:
            raise ValueError(f"no frame slot {slot}")
        return self.st.ctrl_size + slot * self.st.stride + self.st.meta_capacity

    def forget_arrays(self):
        """Drop the arrays kept for reuse, so that they hold no buffer of the
        segment (call before deciding whether it can be unmapped)."""
        self.arrays = [None] * (2 * FRM_MAX_TABLE)

    def copy_out(self, int slot, tuple shape, object dtype):
        """A private copy of a pinned slot, copied with the GIL released."""
        out = np.empty(shape, dtype=dtype)
        cdef size_t n = out.nbytes
        cdef uint64_t off = self._offset(slot)
        if n > self.st.capacity:
            raise ValueError("a frame larger than its slot")
        cdef unsigned char[::1] dst = out.reshape(-1).view(np.uint8)
        cdef unsigned char *src = shmp_data(&self.segment.seg) + off
        if n:
            with nogil:
                shmp_copy(&dst[0], src, n, 2)
        return out

    def wait(self, uint64_t after, object timeout=None):
        """Block until a generation newer than `after`; it."""
        cdef frm_follow fw = self._spare()
        cdef int64_t deadline = deadline_of(timeout)
        cdef int64_t spin = SPIN_NS
        cdef uint64_t gen = 0
        cdef int rc
        cdef Segment seg = self.segment
        seg.waiting += 1  # keeps detach() from unmapping under us
        try:
            while True:
                with nogil:
                    rc = frm_wait(&self.st, &fw, after, deadline, spin, &gen)
                if rc != EINTR:
                    break
                spin = 0
                PyErr_CheckSignals()
        finally:
            seg.waiting -= 1
            self._adopt(&fw)
        if rc == ETIMEDOUT:
            raise TimeoutError("no new frame within the timeout")
        fail(rc, "wait")
        return gen
