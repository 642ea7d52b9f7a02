# Frames in a segment: a thin wrapper over frames.c (the protocol, its
# layout and its validation) and keywatch.c. Included by _shmcore.pyx.
#
# C follows a store that was replaced under its name (grown) by itself: a
# call that may move gets blank storage for the successor (`_spare`), and
# when it moved there, the successor is adopted as `self.successor`.
#
# Arrays over a slot have a FramePin as their base: it owns one pin of the
# slot (or the writer's claim) and one export of the segment, so the frame
# stays true and the mapping stays valid until the last array is gone.
cimport cython
from cpython.buffer cimport PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.errno cimport EACCES, EAGAIN, EINTR, ENOENT, ENOSPC
from libc.string cimport memcmp, memcpy

import numpy as np

cdef extern from "<errno.h>":
    int ECANCELED

from shmimage.errors import (
    EndOfStream,
    InvalidImageError,
    NoFrameError,
    OutOfResourcesError,
    TornFrameError,
)

_ndarray = np.ndarray
_dtype = np.dtype

MAX_FRAME_BYTES = FRM_MAX_FRAME_BYTES
MAX_DIMS = FRM_MAX_DIMS
# wait() sleeps in the kernel at once, without frames.c's spin: a waiter
# that spins keeps its CPU from the process it waits for (the kernel often
# wakes that one on the waker's CPU), so in a ping-pong the spin ran to its
# end every time, costing wall time and CPU alike.
cdef int64_t SPIN_NS = 0

# frames.h's element type codes, in order; stored native.
DTYPES = (None,) + tuple(np.dtype(t) for t in (
    np.bool_, np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64,
    np.uint64, np.float16, np.float32, np.float64))
cdef dict _CODES = {dt: code for code, dt in enumerate(DTYPES) if dt is not None}


cdef object as_dtype(object dtype):
    """np.dtype(dtype), without the call for what is one already (it parses
    its arguments: a tenth of a loan()'s cost)."""
    return dtype if isinstance(dtype, _dtype) else np.dtype(dtype)


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
    n = as_dtype(dtype).itemsize
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


cdef int _check_options(frm_options *o) except -1:
    if frm_check_options(o) == EINVAL:
        raise ValueError(
            f"store options out of bounds: slots={o.slots} (2 to max_slots), "
            f"max_slots={o.max_slots} (at most {FRM_MAX_SPARES}), "
            f"history={o.history} (1 to {FRM_MAX_HISTORY})")
    return 0


cdef frm_options _options(uint64_t capacity, int slots, int max_slots, int history,
                          uint64_t min_capacity=0):
    cdef frm_options o
    o.capacity = capacity
    o.min_capacity = min_capacity
    o.slots = slots
    o.max_slots = max_slots
    o.history = history
    o.meta_capacity = FRM_META_MAX
    return o


cdef int64_t deadline_of(object timeout) except? -2:
    """The monotonic deadline of a call: computed once, it bounds the whole call."""
    cdef int64_t ns = timeout_ns(timeout)
    return -1 if ns < 0 else frm_now_ns() + ns


cdef int fail(int rc, str what, str subject=None) except -1:
    """Raise the exception for a frames.c status (0: nothing); `subject`
    names the segment (the user's key, then the native name)."""
    if rc == 0:
        return 0
    if rc == ETIMEDOUT:
        raise TimeoutError(f"{what}: timed out")
    if rc == FRM_ENOFRAME:
        raise NoFrameError("nothing has been published yet")
    if rc == FRM_ETORN:
        raise TornFrameError(
            "the writer died in the middle of a publish and no complete frame exists")
    if rc == FRM_EEND:
        raise EndOfStream("the writer ended the stream")
    if rc == EDEADLK:
        raise LockError(f"{what}: this thread already holds the segment's lock")
    if rc == ESTALE:
        raise IncompatibleSegmentError(f"{what}: the store was replaced")
    if rc == ECANCELED:
        raise NotAttachedError(f"{what}: detached")
    return check(rc, what, subject)


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


cdef int spec_meta(frm_spec *spec, bytes meta) except -1:
    if meta is not None and len(meta):
        if len(meta) > FRM_META_MAX:
            raise ValueError(f"meta is {len(meta)} bytes encoded, at most {FRM_META_MAX}")
        spec.meta = <const char *>meta
        spec.meta_len = len(meta)
    return 0


@cython.no_gc  # it references its store, never the other way: no cycle to collect
cdef class FramePin:
    """One pin (or a writer's claim) of a slot, exporting its bytes: the
    base of the arrays over that frame. Dropping the last one unpins."""

    cdef FrameStore store
    cdef Py_buffer seg_buf  # keeps the mapping, counted as a segment export
    cdef bint has_buf
    cdef unsigned char *ptr
    cdef Py_ssize_t size
    cdef int slot
    cdef bint pinned
    cdef bint readonly
    cdef uint32_t pid
    cdef uintptr_t taker  # the thread that pinned (frm_thread)

    def __getbuffer__(self, Py_buffer *view, int flags):
        if (flags & PyBUF_WRITABLE) and self.readonly:
            raise BufferError("this frame's array is read-only")
        PyBuffer_FillInfo(view, self, self.ptr, self.size, self.readonly, flags)

    def __releasebuffer__(self, Py_buffer *view):
        pass

    cdef void _release(self):
        """Unpin, in the process that pinned (a forked child holds no pins)."""
        cdef FrameStore store = self.store
        if self.pinned and store is not None and self.pid == frm_pid():
            if store.segment is not None and store.segment.attached:
                frm_unpin_taken(&store.st, self.slot, self.taker)
        self.pinned = False

    def __dealloc__(self):
        self._release()
        if self.has_buf:
            self.has_buf = False
            PyBuffer_Release(&self.seg_buf)

    @property
    def is_pinned(self):
        return bool(self.pinned)

    def freeze(self):
        """Refuse writable exports from now on (a loan block has ended)."""
        self.readonly = True


cdef class KeyWatch:
    """Waits for a segment name to appear (keywatch.c); cancel() wakes it."""

    cdef kw_watch w
    cdef bint opened

    def __cinit__(self, str name):
        cdef bytes bname = name.encode()
        check(kw_open(&self.w, bname), f"watch for {name!r}")
        self.opened = True

    def __dealloc__(self):
        if self.opened:
            kw_close(&self.w)

    def wait(self, object timeout=None):
        """Sleep until the name may exist: True (look again) or False (the
        timeout passed). NotAttachedError once cancelled."""
        cdef int64_t ns = timeout_ns(timeout)
        cdef int rc
        with nogil:
            rc = kw_wait(&self.w, ns)
        if rc == ETIMEDOUT:
            return False
        fail(rc, "wait for the key")
        return True

    def cancel(self):
        kw_cancel(&self.w)


cdef class FrameStore:
    """The frame protocol over one attached Segment."""

    cdef frm_store st
    cdef bint opened
    cdef readonly Segment segment
    # The store that replaced this one, once a call followed it there.
    cdef readonly FrameStore successor
    cdef FrameStore _next  # blank storage C attaches a successor into
    # What each slot's frame looked like when last turned into Python objects
    # (shape and dtype), and those objects: a frame's geometry rarely
    # changes, and building them anew is much of the cost of a view().
    cdef frm_frame seen[FRM_MAX_TABLE]
    cdef list specs

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

    def __dealloc__(self):
        if self.opened:
            frm_close(&self.st)

    @staticmethod
    def attach(str name, bint writable=True, bint create=False, bytes key=b"",
               bint persistent=False, uint64_t capacity=0, int slots=FRM_MIN_SPARES,
               int max_slots=FRM_MIN_SPARES, int history=1, uint64_t min_capacity=0,
               str user_key=None):
        """Attach the store under `name`, following replacements; with
        `create`, build it (with these options) when there is none.
        `user_key`, the user's key for `name`, is only for messages."""
        cdef FrameStore self = FrameStore.__new__(FrameStore)
        cdef Segment seg = Segment.__new__(Segment)
        cdef frm_options o = _options(capacity, slots, max_slots, history, min_capacity)
        cdef bytes bname = name.encode()
        cdef const char *cname = bname
        cdef const char *ckey = key
        cdef size_t klen = min(len(key), SHMP_KEY_MAX)
        cdef int rc, created = 0
        if create:
            _check_options(&o)
        with nogil:
            rc = frm_attach(&self.st, &seg.seg, cname, writable, create, &o, ckey, klen,
                            persistent, &created)
        seg.subject = subject_of(user_key, name)
        fail(rc, "create or attach" if create else "attach", seg.subject)
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
        """The store options: capacity (the lower bound), slots, max_slots, history."""
        return {"capacity": self.st.min_capacity, "slots": self.st.slots,
                "max_slots": self.st.max_slots, "history": self.st.history,
                "slot_capacity": self.st.capacity}

    # -- the store as it is --

    def pinners(self):
        """Live pinning handles: [(pid, pins, slots)]."""
        cdef frm_pin_info info[FRM_MAX_PINNERS]
        cdef int n = 0
        check(frm_pinners(&self.st, info, FRM_MAX_PINNERS, &n), "list the pins")
        return [(info[i].pid, info[i].pins,
                 [s for s in range(self.st.table_slots) if info[i].slots[s // 32] >> (s % 32) & 1])
                for i in range(n)]

    def subscribers(self):
        """Live registered subscribers: [(pid, lossless, next_generation)]."""
        cdef frm_sub sub
        cdef int alive = 0
        cdef int rc
        out = []
        for k in range(FRM_MAX_SUBS):
            rc = frm_subscriber(&self.st, k, &sub, &alive)
            if rc == ENOENT:
                continue
            fail(rc, "list the subscribers")
            if alive:
                out.append((sub.pid, bool(sub.flags & 1), sub.next_generation))
        return out

    def slots_in_use(self):
        """Slots of the table taken so far (history plus spares), and the table's size."""
        return frm_active_slots(&self.st), self.st.table_slots

    def set_persistent(self):
        check(frm_set_persistent(&self.st), "make the segment persistent")

    def cancel_waits(self):
        """Wake every wait() on this handle with NotAttachedError, for good."""
        if self.segment is not None and self.segment.attached:
            frm_cancel(&self.st)

    def rebuild(self, uint64_t capacity, int slots, int max_slots, int history,
                uint64_t min_capacity, object timeout=None):
        """Rebuild under the same name with these options, carrying the kept
        frames: the new store."""
        cdef frm_options o = _options(capacity, slots, max_slots, history, min_capacity)
        cdef frm_follow fw
        cdef int64_t deadline = deadline_of(timeout)
        cdef int rc
        _check_options(&o)
        fw = self._spare()
        self.segment.waiting += 1
        try:
            while True:
                with nogil:
                    rc = frm_rebuild(&self.st, &fw, &o, deadline)
                if rc != EINTR:
                    break
                PyErr_CheckSignals()
        finally:
            self.segment.waiting -= 1
            store = self._adopt(&fw)
        if rc == FRM_ESLOW:
            raise TimeoutError(
                f"rebuild the store: timed out waiting for lossless subscriber pid "
                f"{self.st.slow_pid}, which has not taken frames a history of {history} drops")
        fail(rc, "rebuild the store")
        return store

    # -- writing --

    cdef int _claim_failed(self, int rc, str what) except -1:
        """fail_frame(), naming who pins when no slot could be had."""
        cdef int total
        if rc == FRM_EOWNPINS:
            total = sum(p[1] for p in self.pinners() if p[0] == frm_pid())
            raise BufferError(
                f"{what}: this process pins every slot up to max_slots={self.st.max_slots} "
                f"({total} pins held by arrays from view()/loan(), all taken by this "
                f"thread): drop some first")
        if rc == FRM_ESLOW:
            raise TimeoutError(
                f"{what}: timed out waiting for lossless subscriber pid {self.st.slow_pid}, "
                f"which has not taken the frame this publish would drop")
        if rc == FRM_EPINNED:
            who = ", ".join(f"pid {p[0]} ({p[1]} pins)" for p in self.pinners()) or "nobody now"
            raise TimeoutError(
                f"{what}: timed out, every slot up to max_slots={self.st.max_slots} "
                f"is pinned: {who}")
        return fail_frame(rc, what)

    def publish(self, object array, object timeout=None, bytes meta=None):
        """Copy `array` in as the new latest frame; its generation."""
        cdef Py_buffer src
        cdef frm_spec spec
        cdef frm_follow fw
        cdef int64_t deadline
        cdef uint64_t gen = 0
        cdef int rc
        dtype = array.dtype
        if not array.flags.c_contiguous or dtype not in _CODES:
            return self._publish_copy(array, timeout, meta)
        spec_of(array.shape, dtype, &spec)
        spec_meta(&spec, meta)
        deadline = deadline_of(timeout)
        PyObject_GetBuffer(array, &src, PyBUF_C_CONTIGUOUS)
        if <uint64_t>src.len <= FRM_NOW_MAX_BYTES:
            # A small frame into an idle store: too little to release the GIL for.
            rc = frm_publish_now(&self.st, src.buf, &spec, &gen)
            if rc == 0 or gen != 0:  # published (an error then is the unlock's)
                PyBuffer_Release(&src)
                self._claim_failed(rc, "publish")
                return gen
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
            store = self._adopt(&fw)
        (<FrameStore>store)._claim_failed(rc, "publish")
        return gen

    def _publish_copy(self, object array, object timeout, bytes meta):
        """Publish an array numpy must copy in (strided, byte-swapped)."""
        dtype = array.dtype.newbyteorder("=")
        meta_len = len(meta) if meta is not None else 0
        store, slot, dst = self.loan_begin(array.shape, dtype, timeout, meta_len)
        try:
            np.copyto(dst, array, casting="equiv")
        except BaseException:
            store.loan_end(slot, array.shape, dtype, False)
            raise
        return store.loan_end(slot, array.shape, dtype, True, meta)

    def loan_begin(self, tuple shape, object dtype, object timeout=None, int meta_len=0):
        """Lock and claim a slot: (store, slot, writable ndarray over it),
        `store` being the one to call loan_end on. The array's base is the
        claim's FramePin."""
        cdef frm_spec spec
        cdef frm_claim_t c
        cdef frm_follow fw
        cdef int rc
        cdef FrameStore store
        dtype = as_dtype(dtype)
        spec_of(shape, dtype, &spec)
        cdef uint64_t nbytes = frame_bytes(shape, dtype)
        cdef int64_t deadline = deadline_of(timeout)
        if meta_len > <int>FRM_META_MAX:
            raise ValueError(f"meta is {meta_len} bytes encoded, at most {FRM_META_MAX}")
        fw = self._spare()
        self.segment.waiting += 1
        try:
            while True:
                with nogil:
                    rc = frm_claim(&self.st, &fw, nbytes, meta_len, deadline, &c)
                if rc != EINTR:
                    break
                PyErr_CheckSignals()
        finally:
            self.segment.waiting -= 1
            store = self._adopt(&fw)
        store._claim_failed(rc, "claim a frame slot")
        store.segment.lock_thread = PyThread_get_thread_ident()
        try:
            pin = store._new_pin(c.slot, store._offset(c.slot), nbytes, False)
            return store, c.slot, _ndarray(shape, dtype, pin)
        except BaseException:
            store._end(c.slot, NULL, False)
            raise

    def loan_end(self, int slot, tuple shape, object dtype, bint commit, bytes meta=None,
                 FramePin pin=None):
        """Publish (commit) or drop a loaned slot, then unlock; the generation
        or 0. With `pin`, the published slot stays pinned while it lives."""
        cdef frm_spec spec
        if not commit:
            return self._end(slot, NULL, False)
        try:
            spec_of(shape, as_dtype(dtype), &spec)
            spec_meta(&spec, meta)
        except BaseException:
            self._end(slot, NULL, False)
            raise
        gen = self._end(slot, &spec, pin is not None)
        if pin is not None:
            pin.pinned = True
            pin.taker = frm_thread()
        return gen

    cdef uint64_t _end(self, int slot, frm_spec *spec, bint keep) except? 0:
        cdef frm_claim_t c
        cdef uint64_t gen = 0
        cdef int rc
        c.store = &self.st
        c.slot = slot
        c.meta = shmp_data(&self.segment.seg) + self.st.ctrl_size + slot * self.st.stride
        c.pixels = c.meta + self.st.meta_capacity
        self.segment.lock_thread = 0
        if spec == NULL:
            rc = frm_abandon(&c)
        elif keep:
            rc = frm_commit_pinned(&c, spec, &gen)
        else:
            rc = frm_commit(&c, spec, &gen)
        fail_frame(rc, "publish" if spec != NULL else "cancel a loan")
        return gen

    # -- reading --

    cdef FrameStore _pin(self, frm_frame *f):
        """Pin the latest frame into *f: the store it is pinned in."""
        cdef frm_follow fw = self._spare()
        cdef int rc = frm_pin(&self.st, &fw, f)
        cdef FrameStore store = self._adopt(&fw)
        fail(rc, "pin a frame")
        return store

    cdef FramePin _new_pin(self, int slot, uint64_t offset, uint64_t nbytes, bint readonly):
        cdef FramePin pin = FramePin.__new__(FramePin)
        PyObject_GetBuffer(self.segment, &pin.seg_buf, PyBUF_SIMPLE)
        pin.has_buf = True
        pin.store = self
        pin.slot = slot
        pin.ptr = shmp_data(&self.segment.seg) + offset
        pin.size = nbytes
        pin.readonly = readonly or not self.segment.seg.writable
        pin.pid = frm_pid()
        pin.taker = frm_thread()
        return pin

    def view(self):
        """Pin the latest frame: (store, read-only ndarray, facts); the
        array's base owns the pin."""
        cdef frm_frame f
        cdef FrameStore store = self._pin(&f)
        cdef FramePin pin
        try:
            facts = store._facts(&f)
            pin = store._new_pin(f.slot, f.offset, f.nbytes, True)
        except BaseException:
            frm_unpin(&store.st, f.slot)
            raise
        pin.pinned = True
        return store, _ndarray(facts[0], facts[1], pin), facts

    def read(self, object out=None):
        """A copy of the latest frame (into `out` when given): (store, array, facts)."""
        cdef frm_frame f
        cdef FrameStore store = self._pin(&f)
        try:
            facts = store._facts(&f)
            return store, store._copy(&f, facts, out), facts
        finally:
            frm_unpin(&store.st, f.slot)

    def info(self):
        """Facts of the latest frame, its meta included."""
        cdef frm_frame f
        cdef FrameStore store = self._pin(&f)
        try:
            return store._facts(&f)
        finally:
            frm_unpin(&store.st, f.slot)

    cdef tuple _facts(self, frm_frame *f):
        """(shape, dtype, generation, timestamp_ns, writer_pid, meta bytes)."""
        spec = self._spec(f)
        meta = b""
        if f.meta_len:
            meta = PyBytes_FromStringAndSize(
                <char *>shmp_data(&self.segment.seg) + f.meta_offset, f.meta_len)
        return spec[0], spec[1], f.generation, f.timestamp_ns, f.writer_pid, meta

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

    cdef object _copy(self, frm_frame *f, tuple facts, object out):
        """Copy a pinned frame out with the GIL released: into `out` (same
        shape and dtype, C-contiguous, writable) or a new array."""
        cdef Py_buffer dst
        cdef unsigned char *src = shmp_data(&self.segment.seg) + f.offset
        cdef size_t n = f.nbytes
        if out is None:
            out = np.empty(facts[0], dtype=facts[1])
        elif not isinstance(out, np.ndarray) or out.shape != facts[0] or out.dtype != facts[1]:
            raise ValueError(
                f"out must be an ndarray of shape {facts[0]} and dtype {facts[1]} (the "
                f"frame's), not {getattr(out, 'shape', type(out).__name__)} "
                f"{getattr(out, 'dtype', '')}".rstrip())
        elif not out.flags.c_contiguous or not out.flags.writeable:
            raise ValueError("out must be C-contiguous and writable")
        PyObject_GetBuffer(out, &dst, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS)
        try:
            if <size_t>dst.len != n:
                raise ValueError("out does not match the frame's size")
            with nogil:
                shmp_copy(dst.buf, src, n, 2)
        finally:
            PyBuffer_Release(&dst)
        return out

    cdef uint64_t _offset(self, int slot) except? 0:
        """Where a slot's pixels start in the data area."""
        if slot < 0 or <uint32_t>slot >= self.st.table_slots:
            raise ValueError(f"no frame slot {slot}")
        return self.st.ctrl_size + slot * self.st.stride + self.st.meta_capacity

    def wait(self, uint64_t after, object timeout=None):
        """Block until a generation newer than `after`; it."""
        cdef frm_follow fw = self._spare()
        cdef int64_t deadline = deadline_of(timeout)
        cdef uint64_t gen = 0
        cdef int rc
        cdef Segment seg = self.segment
        seg.waiting += 1  # keeps detach() from unmapping under us
        try:
            while True:
                with nogil:
                    rc = frm_wait(&self.st, &fw, after, deadline, SPIN_NS, &gen)
                if rc != EINTR:
                    break
                PyErr_CheckSignals()
        finally:
            seg.waiting -= 1
            self._adopt(&fw)
        if rc == ETIMEDOUT:
            raise TimeoutError("no new frame within the timeout")
        fail(rc, "wait")
        return gen

    # -- streams --

    def view_from(self, uint64_t want, bint copy=False):
        """Pin the kept frame of the lowest generation >= `want`: (store,
        ndarray, facts), or None when there is none that new yet. The
        array's base owns the pin (a private copy with `copy`)."""
        cdef frm_frame f
        cdef frm_follow fw = self._spare()
        cdef int rc = frm_pin_from(&self.st, &fw, want, &f)
        cdef FrameStore store = self._adopt(&fw)
        cdef FramePin pin
        if rc == EAGAIN:
            return None
        fail(rc, "pin a frame of the stream")
        if copy:
            try:
                facts = store._facts(&f)
                return store, store._copy(&f, facts, None), facts
            finally:
                frm_unpin(&store.st, f.slot)
        try:
            facts = store._facts(&f)
            pin = store._new_pin(f.slot, f.offset, f.nbytes, True)
        except BaseException:
            frm_unpin(&store.st, f.slot)
            raise
        pin.pinned = True
        return store, _ndarray(facts[0], facts[1], pin), facts

    def wait_from(self, uint64_t want, object timeout=None):
        """Block until generation `want` is published or the stream ends
        before it; False on timeout."""
        cdef frm_follow fw = self._spare()
        cdef int64_t deadline = deadline_of(timeout)
        cdef int rc
        cdef Segment seg = self.segment
        seg.waiting += 1
        try:
            while True:
                with nogil:
                    rc = frm_wait_from(&self.st, &fw, want, deadline)
                if rc != EINTR:
                    break
                PyErr_CheckSignals()
        finally:
            seg.waiting -= 1
            self._adopt(&fw)
        if rc == ETIMEDOUT:
            return False
        fail(rc, "wait for a frame of the stream")
        return True

    def end_stream(self, object timeout=None):
        """End the stream at the latest frame."""
        cdef frm_follow fw = self._spare()
        cdef int64_t deadline = deadline_of(timeout)
        cdef int rc
        while True:
            with nogil:
                rc = frm_end_stream(&self.st, &fw, deadline)
            if rc != EINTR:
                break
            PyErr_CheckSignals()
        self._adopt(&fw)
        fail(rc, "end the stream")

    def subscribe_lossless(self, uint64_t start, uint64_t token=0, object timeout=None):
        """Register this handle as a lossless subscriber from generation
        `start`: (store, entry, the generation it starts at, token), `store`
        being the live one the entry is in. With the `token` of an entry
        this subscription had in a replaced store, adopt the entry the
        rebuild carried over. OutOfResourcesError when FRM_MAX_SUBS are
        registered."""
        cdef frm_follow fw = self._spare()
        cdef int64_t deadline = deadline_of(timeout)
        cdef int rc, k = -1
        cdef frm_sub sub
        cdef int alive = 0
        while True:
            with nogil:
                rc = frm_resubscribe(&self.st, &fw, &start, token, deadline, &k)
            if rc != EINTR:
                break
            PyErr_CheckSignals()
        store = self._adopt(&fw)
        if rc == ENOSPC:
            raise OutOfResourcesError(
                f"{FRM_MAX_SUBS} lossless subscribers are registered already "
                f"(at most {FRM_MAX_SUBS})")
        fail(rc, "register a lossless subscriber")
        fail(frm_subscriber(&(<FrameStore>store).st, k, &sub, &alive), "read a subscriber")
        return store, k, start, sub.token

    def subscribe_lossy(self, uint64_t start, object timeout=0.1):
        """List this handle as a lossy subscriber at generation `start`:
        (store, entry, token), entry -1 when it goes unlisted (every entry
        taken, the segment's lock busy for `timeout`, or read-only)."""
        cdef frm_follow fw = self._spare()
        cdef int64_t deadline = deadline_of(timeout)
        cdef int rc, k = -1
        cdef uint64_t token = 0
        while True:
            with nogil:
                rc = frm_subscribe_lossy(&self.st, &fw, start, deadline, &k, &token)
            if rc != EINTR:
                break
            PyErr_CheckSignals()
        store = self._adopt(&fw)
        if rc in (ENOSPC, ETIMEDOUT, EACCES):  # full, busy, or a read-only mapping
            return store, -1, 0
        fail(rc, "list a lossy subscriber")
        return store, k, token

    def note_lossy(self, int k, uint64_t token, uint64_t next_generation):
        """Lossy entry `k`'s position; False once it is no longer its own."""
        return frm_sub_note(&self.st, k, token, next_generation) == 0

    def leave_lossy(self, int k, uint64_t token):
        """Give up lossy entry `k`."""
        if self.segment is not None and self.segment.attached:
            check(frm_sub_leave(&self.st, k, token), "unlist a subscriber")

    def advance(self, int k, uint64_t next_generation):
        """Entry `k` has taken every frame before `next_generation`."""
        check(frm_sub_advance(&self.st, k, next_generation), "record a subscriber's progress")

    def unsubscribe(self, int k, bint moved=False):
        """Free registry entry `k` (a waiting writer goes on). `moved`: the
        subscription goes on in the store that replaced this one, so what
        rebuilds carried of it stays registered."""
        if self.segment is not None and self.segment.attached:
            check(frm_sub_moved(&self.st, k) if moved else frm_unsubscribe(&self.st, k),
                  "unregister a subscriber")
