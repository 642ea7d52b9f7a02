# cython: language_level=3
# cython: boundscheck=False, wraparound=False, binding=False
"""Low-level shared memory segments: names mirror shm_platform.h's calls."""
from cpython.buffer cimport (PyBUF_C_CONTIGUOUS, PyBUF_WRITABLE, PyBuffer_FillInfo,
                             PyBuffer_Release, PyObject_GetBuffer)
from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport (EACCES, EBUSY, EEXIST, EFBIG, EINVAL, EMFILE, ENAMETOOLONG,
                         ENFILE, ENOENT, ENOMEM, ENOSPC, EPERM, ETIMEDOUT)
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.string cimport memset, strlen

from shm_platform cimport *
from frames cimport *

import atexit
import os
import time
import weakref

from shmimage.errors import (AlreadyExistsError, IncompatibleSegmentError, InvalidKeyError,
                             InvalidSizeError, LockError, NotAttachedError, NotFoundError,
                             OutOfResourcesError, PermissionDeniedError, SharedMemoryError)

cdef extern from "pythread.h":
    unsigned long PyThread_get_thread_ident()

cdef extern from *:
    """
    #ifndef ENOTRECOVERABLE
    #define ENOTRECOVERABLE 131
    #endif
    #ifndef EOWNERDEAD
    #define EOWNERDEAD 130
    #endif
    #include <errno.h>
    """
    int EDEADLK
    int ENOTRECOVERABLE
    int EOWNERDEAD

HEADER_SIZE = SHMP_HEADER_SIZE
cdef int64_t LOCK_SLICE_NS = 100000000

# Every attached Segment of this process, so a normal exit leaves as detach
# would, even while arrays still reference the mappings.
_live = weakref.WeakSet()


@atexit.register
def _leave_all():
    for seg in list(_live):
        seg._leave_at_exit()


KEY_MAX = SHMP_KEY_MAX

cdef dict _ERRORS = {
    ENOENT: NotFoundError,
    EEXIST: AlreadyExistsError,
    EACCES: PermissionDeniedError,
    EPERM: PermissionDeniedError,
    ENOSPC: OutOfResourcesError,
    ENOMEM: OutOfResourcesError,
    EFBIG: OutOfResourcesError,
    EMFILE: OutOfResourcesError,
    ENFILE: OutOfResourcesError,
    ENAMETOOLONG: InvalidKeyError,
    EINVAL: InvalidKeyError,
    SHMP_EINCOMPAT: IncompatibleSegmentError,
}


def _thread_alive(unsigned long ident):
    import threading
    return any(t.ident == ident for t in threading.enumerate())


cdef int check(int rc, str what) except -1:
    """Turn a status from the platform layer into the typed exception."""
    if rc == 0:
        return 0
    if rc == SHMP_EINCOMPAT:
        raise IncompatibleSegmentError(
            f"{what}: not a shmimage segment of this layout version, half-built, or its "
            f"header disagrees with its size")
    cls = _ERRORS.get(rc, SharedMemoryError)
    raise cls(f"{what}: {os.strerror(rc)}")


cdef int check_lock(int rc, str what) except -1:
    if rc in (EDEADLK, EPERM, ENOTRECOVERABLE, EOWNERDEAD, EBUSY):
        raise LockError(f"{what}: {os.strerror(rc)}")
    return check(rc, what)


cdef int64_t timeout_ns(object timeout) except? -2:
    if timeout is None:
        return -1
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds or None, not {timeout!r}")
    t = float(timeout)
    if t != t or t < 0:
        raise ValueError(f"timeout must be None or >= 0, not {timeout!r}")
    if t > 1e9:
        return -1
    return <int64_t>(t * 1e9)


cdef class Segment:
    """One mapping of a named segment, owned by this process.

    The usable bytes are exported through the buffer protocol; exports are
    counted and `detach` refuses while any is alive.
    """

    cdef shmp_seg seg
    cdef bint attached
    cdef bint unnamed
    cdef long pid
    cdef Py_ssize_t exports
    cdef unsigned long lock_thread
    cdef public bint owner_died
    cdef public object on_error
    cdef int waiting
    cdef object __weakref__

    def __cinit__(self):
        memset(&self.seg, 0, sizeof(self.seg))
        self.attached = False
        self.exports = 0
        self.lock_thread = 0
        self.owner_died = False

    @staticmethod
    def build(uint64_t size, bytes key=b"", bint persistent=False, reserve=None):
        """shmp_build: a new segment, mapped but not yet named (see `link`)."""
        cdef Segment self = Segment.__new__(Segment)
        cdef const char *ckey = key
        cdef size_t klen = min(len(key), SHMP_KEY_MAX)
        cdef uint64_t res = size if reserve is None else min(<uint64_t>reserve, size)
        cdef int rc
        if size == 0:
            raise InvalidSizeError("size must be > 0")
        with nogil:
            rc = shmp_build(&self.seg, size, res, persistent, ckey, klen)
        check(rc, "create")
        self._attached()
        self.unnamed = True
        return self

    def link(self, str name):
        """shmp_link: give a built segment its name; it is discarded on failure."""
        cdef bytes bname = name.encode()
        cdef const char *cname = bname
        cdef int rc
        with nogil:
            rc = shmp_link(&self.seg, cname)
        if rc:
            self.discard()
            check(rc, f"create {name!r}")
        self.unnamed = False

    def swap(self, Segment old):
        """shmp_swap: put this built segment under `old`'s name."""
        cdef int rc = shmp_swap(&self.seg, &old.seg)
        if rc:
            self.discard()
            check(rc, f"grow {old.name!r}")
        self.unnamed = False

    def discard(self):
        """shmp_discard: undo a build that was never named."""
        if self.attached and self.unnamed:
            self.attached = False
            shmp_discard(&self.seg)

    @staticmethod
    def attach(str name, bint writable=True):
        """shmp_attach: map an existing segment after validating its header."""
        cdef Segment self = Segment.__new__(Segment)
        cdef bytes bname = name.encode()
        cdef const char *cname = bname
        cdef int rc
        with nogil:
            rc = shmp_attach(&self.seg, cname, writable)
        check(rc, f"attach {name!r}")
        self._attached()
        return self

    cdef _attached(self):
        self.attached = True
        self.pid = os.getpid()
        _live.add(self)

    def _leave_at_exit(self):
        """Give up the segment at interpreter exit, keeping the mapping."""
        if not self.attached or self.pid != os.getpid():
            return
        if self.lock_thread:
            shmp_unlock(&self.seg)
            self.lock_thread = 0
        if self.unnamed:
            self.discard()
            return
        self.attached = False
        shmp_leave(&self.seg)

    cdef int _check(self) except -1:
        if not self.attached:
            raise NotAttachedError("not attached")
        return 0

    def detach(self):
        """shmp_detach, or shmp_close in a forked child: True when it was attached."""
        if not self.attached:
            return False
        if self.exports:
            raise BufferError(f"{self.exports} buffer(s) of this segment are still alive")
        if self.waiting:
            raise LockError("another thread is waiting on this segment")
        if self.pid != os.getpid():
            self.lock_thread = 0  # a forked child only closes what it inherited
        if self.lock_thread:
            if self.lock_thread == PyThread_get_thread_ident():
                self._unlock()
            elif _thread_alive(self.lock_thread):
                raise LockError("the lock is held by another thread of this process")
            else:
                self._recover_from_ended_thread()
        self._release()
        return True

    cdef _recover_from_ended_thread(self):
        """The holding thread has ended, but its C-level exit (which marks
        the robust mutex owner-died) may still be under way: unmapping before
        that would leave the mutex locked for good. Wait for it, then take
        and release the lock."""
        cdef int rc, died = 0, _tries
        self.lock_thread = 0
        for _tries in range(500):
            rc = shmp_lock_try(&self.seg, &died)
            if rc == 0:
                shmp_unlock(&self.seg)
                return
            if rc != EBUSY:
                return
            with nogil:
                shmp_nap()

    cdef _release(self):
        if self.unnamed:
            self.discard()
            return
        self.attached = False
        if self.pid == os.getpid():
            with nogil:
                shmp_detach(&self.seg)
        else:
            shmp_close(&self.seg)

    def __dealloc__(self):
        if self.attached:
            if self.lock_thread and self.pid == os.getpid():
                shmp_unlock(&self.seg)
            self._release()

    # -- the mutex --

    def lock(self, timeout=None):
        """True when acquired, False on timeout; LockError when this thread holds it."""
        return self._lock(timeout) == 1

    cdef int _lock(self, object timeout) except -1:
        cdef int died = 0
        cdef int rc
        cdef int64_t ns = -1
        if timeout is not None:
            ns = timeout_ns(timeout)
        if not self.attached:
            return self._fail(NotAttachedError("not attached"))
        if not self.seg.writable:
            return self._fail(LockError("a read-only mapping cannot take the lock"))
        rc = shmp_lock_try(&self.seg, &died)
        if rc == EBUSY:
            if self.lock_thread == PyThread_get_thread_ident() and self.pid == os.getpid():
                return self._fail(
                    LockError("this thread already holds the lock (it is not recursive)"))
            if ns == 0:
                return 0
            rc = self._wait_for_lock(ns, &died)
            if rc == ETIMEDOUT:
                return 0
        if rc:
            self._check_lock(rc, "lock")
        self.lock_thread = PyThread_get_thread_ident()
        self.owner_died = died != 0
        return 1

    cdef int _wait_for_lock(self, int64_t ns, int *died) except -1:
        """Block in slices with the GIL released, so Ctrl+C gets through; the
        count of waiters keeps `detach` from unmapping under them."""
        cdef int rc
        cdef int64_t part
        cdef double deadline = time.monotonic() + ns / 1e9 if ns >= 0 else 0
        self.waiting += 1
        try:
            while True:
                part = LOCK_SLICE_NS
                if ns >= 0:
                    part = min(part, max(<int64_t>((deadline - time.monotonic()) * 1e9), 0))
                with nogil:
                    rc = shmp_lock_wait(&self.seg, part, died)
                if rc != ETIMEDOUT or (ns >= 0 and time.monotonic() >= deadline):
                    return rc
                PyErr_CheckSignals()
        finally:
            self.waiting -= 1

    def unlock(self):
        self._unlock()

    cdef int _fail(self, exc) except -1:
        """Raise `exc`, telling the owner first (Qt-style error state).
        `on_error` is a weak reference to a callable, so no cycle keeps the
        owner, and with it this segment, alive."""
        if self.on_error is not None:
            report = self.on_error()
            if report is not None:
                report(exc)
        raise exc

    cdef int _unlock(self) except -1:
        cdef int rc
        if not self.attached:
            return self._fail(NotAttachedError("not attached"))
        # The error-checking mutex itself refuses (EPERM) a thread that does
        # not hold it.
        if not self.lock_thread:
            return self._fail(LockError("the lock is not held by this thread"))
        rc = shmp_unlock(&self.seg)
        if rc == EPERM:
            return self._fail(LockError("the lock is not held by this thread"))
        if rc:
            self._check_lock(rc, "unlock")
        self.lock_thread = 0
        return 0

    cdef int _check_lock(self, int rc, str what) except -1:
        try:
            check_lock(rc, what)
        except SharedMemoryError as exc:
            return self._fail(exc)
        return 0

    @property
    def lock_held(self):
        return self.lock_thread != 0

    # -- facts --

    @property
    def is_attached(self):
        return self.attached

    @property
    def size(self):
        return shmp_hdr(&self.seg).data_size if self.attached else 0

    @property
    def writable(self):
        return bool(self.seg.writable)

    @property
    def name(self):
        return self.seg.name.decode()

    @property
    def persistent(self):
        self._check()
        return bool(shmp_load_flags(&shmp_hdr(&self.seg).flags) & SHMP_FLAG_PERSISTENT)

    @property
    def superseded(self):
        if not self.attached:
            return False
        return bool(shmp_load_flags(&shmp_hdr(&self.seg).flags) & SHMP_FLAG_SUPERSEDED)

    @property
    def key(self):
        self._check()
        cdef shmp_header *h = shmp_hdr(&self.seg)
        return h.key[:h.key_len].decode("utf-8", "replace")

    @property
    def export_count(self):
        return self.exports

    @property
    def waiting_count(self):
        """Threads of this process blocked on this mapping (lock or wait)."""
        return self.waiting

    # -- the usable bytes --

    def __getbuffer__(self, Py_buffer *view, int flags):
        self._check()
        if (flags & PyBUF_WRITABLE) and not self.seg.writable:
            raise BufferError("the segment is mapped read-only")
        PyBuffer_FillInfo(view, self, shmp_data(&self.seg), shmp_hdr(&self.seg).data_size,
                          not self.seg.writable, flags)
        self.exports += 1

    def __releasebuffer__(self, Py_buffer *view):
        self.exports -= 1


def remove(str name):
    """shmp_remove: unlink a segment's name."""
    cdef bytes bname = name.encode()
    check(shmp_remove(bname), f"remove {name!r}")


def probe(str name, bint reclaim=True):
    """shmp_probe: facts about a name without attaching (reclaims it when stale)."""
    cdef shmp_probe_info info
    cdef bytes bname = name.encode()
    cdef const char *cname = bname
    cdef int rc
    with nogil:
        rc = shmp_probe(cname, reclaim, &info)
    check(rc, f"probe {name!r}")
    return {
        "ours": bool(info.ours),
        "stale": bool(info.stale),
        "reclaimed": bool(info.reclaimed),
        "persistent": bool(info.persistent),
        "size": info.data_size,
        "key": info.key[:strlen(info.key)].decode("utf-8", "replace"),
        "dev": info.dev,
        "ino": info.ino,
    }


include "_frames.pxi"
