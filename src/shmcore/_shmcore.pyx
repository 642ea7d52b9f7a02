# cython: language_level=3
# cython: boundscheck=False, wraparound=False, binding=False
# cython: embedsignature.format=clinic
"""Low-level shared memory segments: names mirror shm_platform.h's calls."""
cimport cython
from cpython.buffer cimport (PyBUF_C_CONTIGUOUS, PyBUF_WRITABLE, PyBuffer_FillInfo,
                             PyBuffer_Release, PyObject_GetBuffer)
from cpython.exc cimport PyErr_CheckSignals
from cpython.mem cimport PyMem_Calloc, PyMem_Free
from libc.errno cimport EBUSY, EINVAL, ENOMEM, ENOSPC, EPERM, ETIMEDOUT
from libc.stdint cimport int64_t, uint32_t, uint64_t, uintptr_t
from libc.string cimport memset, strlen

from _errors cimport check_rc, subject_of, timeout_ns
from shm_platform cimport *
from frames cimport *

import atexit
import hashlib
import os
import re
import sys
import time
import weakref

from shmimage.errors import (IncompatibleSegmentError, InvalidKeyError, InvalidSizeError,
                             LockError, NotAttachedError, SharedMemoryError)

cdef extern from "pythread.h":
    unsigned long PyThread_get_thread_ident()

cdef extern from "compat.h":
    uint32_t shmc_pid()
    int EDEADLK
    int ENOTRECOVERABLE
    int EOWNERDEAD

HEADER_SIZE = SHMP_HEADER_SIZE
KEY_MAX = SHMP_KEY_MAX
NAME_MAX = SHMP_NAME_MAX
ADMIT_STEP = SHMP_ADMIT_STEP
cdef int64_t LOCK_SLICE_NS = 100000000

# Every attached Segment of this process, so a normal exit leaves as detach
# would, even while arrays still reference the mappings.
_live = weakref.WeakSet()


@atexit.register
def _leave_all():
    for seg in list(_live):
        seg._leave_at_exit()


def _thread_alive(unsigned long ident):
    import threading
    return any(t.ident == ident for t in threading.enumerate())


cdef str size_text(uint64_t n):
    if n >= 1 << 30:
        return f"{n / (1 << 30):.1f} GiB"
    if n >= 1 << 20:
        return f"{n / (1 << 20):.1f} MiB"
    return f"{n / 1024:.1f} KiB"


def last_admission():
    """This thread's last refusal by memory admission, or None."""
    cdef shmp_admission a
    shmp_last_admission(&a)
    if a.bound == SHMP_BOUND_NONE:
        return None
    return {"asked": a.asked, "available": a.available,
            "what": a.what[:strlen(a.what)].decode("utf-8", "replace")}


cdef str admission_reason():
    """ "asked for 25.0 GiB; 23.4 GiB available (MemAvailable)", when memory
    admission refused the last reservation of this thread."""
    facts = last_admission()
    if facts is None:
        return None
    return (f"asked for {size_text(facts['asked'])}; {size_text(facts['available'])} "
            f"available ({facts['what']})")


cdef int check(int rc, str what, str subject=None) except -1:
    """Turn a status from the platform layer into the typed exception."""
    if rc == 0:
        return 0
    reason = admission_reason() if rc == ENOSPC or rc == ENOMEM else None
    return check_rc(rc, what, subject, reason)


cdef int check_lock(int rc, str what, str subject) except -1:
    if rc == EDEADLK:
        raise LockError(f"this thread already holds the lock of {subject} (it is not recursive)")
    if rc in (EPERM, ENOTRECOVERABLE, EOWNERDEAD, EBUSY):
        raise LockError(f"{what} {subject}: {os.strerror(rc)}")
    return check(rc, what, subject)


def segment_dir():
    """The directory segments live in, as files (None where they are not)."""
    cdef const char *d = shmp_dir()
    return None if d == NULL else d.decode()


NAME_PREFIX = "shmi_"


def native_name(str key):
    """The OS name for a user key: deterministic across processes and
    versions, at most 30 characters ("/shmi_<up to 8 of its letters and
    digits>_<15 hex digits of its SHA-1>"); Windows: "Local\\shmimage_<SHA-1>"."""
    try:
        digest = hashlib.sha1(key.encode("utf-8")).hexdigest()
    except UnicodeEncodeError as exc:
        raise InvalidKeyError(f"key {key!r} cannot be encoded as UTF-8") from exc
    if sys.platform == "win32":
        return f"Local\\shmimage_{digest}"
    readable = re.sub(r"[^A-Za-z0-9]", "", key)[:8]
    return f"/{NAME_PREFIX}{readable}_{digest[:15]}"


def segment_names(bint temporary=False):
    """The native names in the segment directory (none where segments are
    not files); `temporary` adds the names a grower that died between link()
    and rename() can leave behind."""
    where = segment_dir()
    if where is None:
        return []
    try:
        entries = os.listdir(where)
    except OSError:
        return []
    return sorted("/" + n for n in entries
                  if not n.startswith(".") or (temporary and n.startswith(".shmimage-")))


def check_name(str name):
    """InvalidKeyError unless `name` is a valid native name."""
    cdef bytes bname = name.encode("utf-8", "surrogateescape")
    if b"\0" in bname:
        check_rc(EINVAL, "invalid native key", repr(name))
    check_rc(shmp_name_check(bname), "invalid native key", repr(name))


cdef class Segment:
    """One mapping of a named segment, owned by this process.

    The usable bytes are exported through the buffer protocol; exports are
    counted and `detach` refuses while any is alive. Errors name the user's
    key first and the native name second (`subject`).
    """

    cdef shmp_seg seg
    cdef bint attached
    cdef bint unnamed
    cdef uint32_t pid
    cdef Py_ssize_t exports
    cdef unsigned long lock_thread
    cdef public bint owner_died
    cdef readonly str subject
    cdef public ErrorRecord errors  # where lock/unlock failures are noted, if anywhere
    cdef int waiting
    cdef object __weakref__

    def __cinit__(self):
        memset(&self.seg, 0, sizeof(self.seg))
        self.attached = False
        self.exports = 0
        self.lock_thread = 0
        self.owner_died = False
        self.subject = "''"

    @staticmethod
    def build(uint64_t size, bytes key=b"", bint persistent=False, reserve=None, str name=None):
        """shmp_build: a new segment, mapped but not yet named (see `link`;
        `name`, the one it will get, is only for messages)."""
        cdef Segment self = Segment.__new__(Segment)
        cdef const char *ckey = key
        cdef size_t klen = min(len(key), SHMP_KEY_MAX)
        cdef uint64_t res = size if reserve is None else min(<uint64_t>reserve, size)
        cdef int rc
        self.subject = subject_of(key.decode("utf-8", "replace"), name)
        if size == 0:
            raise InvalidSizeError(f"create {self.subject}: size must be > 0")
        with nogil:
            rc = shmp_build(&self.seg, size, res, persistent, ckey, klen)
        check(rc, "create", self.subject)
        self._attached()
        self.unnamed = True
        return self

    def link(self, str name):
        """shmp_link: give a built segment its name; it is discarded on failure."""
        cdef bytes bname = name.encode()
        cdef const char *cname = bname
        cdef int rc
        self.subject = subject_of(self.key, name)
        with nogil:
            rc = shmp_link(&self.seg, cname)
        if rc:
            self.discard()
            check(rc, "create", self.subject)
        self.unnamed = False

    def swap(self, Segment old):
        """shmp_swap: put this built segment under `old`'s name."""
        cdef int rc = shmp_swap(&self.seg, &old.seg)
        self.subject = old.subject
        if rc:
            self.discard()
            check(rc, "grow", self.subject)
        self.unnamed = False

    def discard(self):
        """shmp_discard: undo a build that was never named."""
        if self.attached and self.unnamed:
            self.attached = False
            shmp_discard(&self.seg)

    @staticmethod
    def attach(str name, bint writable=True, str key=None):
        """shmp_attach: map an existing segment after validating its header.
        `key`, the user's key for `name`, is only for messages."""
        cdef Segment self = Segment.__new__(Segment)
        cdef bytes bname = name.encode()
        cdef const char *cname = bname
        cdef int rc
        self.subject = subject_of(key, name)
        with nogil:
            rc = shmp_attach(&self.seg, cname, writable)
        check(rc, "attach", self.subject)
        self._attached()
        return self

    cdef _attached(self):
        self.attached = True
        self.pid = shmc_pid()
        _live.add(self)

    def _leave_at_exit(self):
        """Give up the segment at interpreter exit, keeping the mapping."""
        if not self.attached or self.pid != shmc_pid():
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
            raise NotAttachedError(f"{self.subject} is not attached")
        return 0

    def detach(self):
        """shmp_detach, or shmp_close in a forked child: True when it was attached."""
        if not self.attached:
            return False
        if self.exports:
            raise BufferError(f"{self.exports} buffer(s) of {self.subject} are still alive")
        if self.waiting:
            raise LockError(f"another thread is waiting on {self.subject}")
        if self.pid != shmc_pid():
            self.lock_thread = 0  # a forked child only closes what it inherited
        if self.lock_thread:
            if self.lock_thread == PyThread_get_thread_ident():
                self._unlock()
            elif _thread_alive(self.lock_thread):
                raise LockError(f"the lock of {self.subject} is held by another thread")
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
        if self.pid == shmc_pid():
            with nogil:
                shmp_detach(&self.seg)
        else:
            shmp_close(&self.seg)

    def __dealloc__(self):
        if self.attached:
            if self.lock_thread and self.pid == shmc_pid():
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
            return self._fail(NotAttachedError(f"{self.subject} is not attached"))
        if not self.seg.writable:
            return self._fail(
                LockError(f"{self.subject} is mapped read-only: it cannot take the lock"))
        rc = shmp_lock_try(&self.seg, &died)
        if rc == EBUSY:
            if self.lock_thread == PyThread_get_thread_ident() and self.pid == shmc_pid():
                return self._fail(LockError(
                    f"this thread already holds the lock of {self.subject} (it is not recursive)"))
            if ns == 0:
                return 0
            rc = self._wait_for_lock(ns, &died)
            if rc == ETIMEDOUT:
                return 0
        if rc:
            self._fail_rc(rc, "lock")
        self.lock_thread = PyThread_get_thread_ident()
        self.owner_died = died != 0
        return 1

    cdef int _fail(self, exc) except -1:
        """Raise `exc`, noting it first where the owner reads its last error
        (Qt-style error state)."""
        if self.errors is not None:
            self.errors.last = exc
        raise exc

    cdef int _fail_rc(self, int rc, str what) except -1:
        try:
            check_lock(rc, what, self.subject)
        except SharedMemoryError as exc:
            return self._fail(exc)
        return 0

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

    cdef int _unlock(self) except -1:
        cdef int rc
        if not self.attached:
            return self._fail(NotAttachedError(f"{self.subject} is not attached"))
        # The error-checking mutex itself refuses (EPERM) a thread that does
        # not hold it.
        if not self.lock_thread:
            return self._fail(LockError(f"the lock of {self.subject} is not held by this thread"))
        rc = shmp_unlock(&self.seg)
        if rc == EPERM:
            return self._fail(LockError(f"the lock of {self.subject} is not held by this thread"))
        if rc:
            self._fail_rc(rc, "unlock")
        self.lock_thread = 0
        return 0

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
        return bool(self.seg.replaced or
                    shmp_load_flags(&shmp_hdr(&self.seg).flags) & SHMP_FLAG_SUPERSEDED)

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
            raise BufferError(f"{self.subject} is mapped read-only")
        PyBuffer_FillInfo(view, self, shmp_data(&self.seg), shmp_hdr(&self.seg).data_size,
                          not self.seg.writable, flags)
        self.exports += 1

    def __releasebuffer__(self, Py_buffer *view):
        self.exports -= 1


cdef class ErrorRecord:
    """The last error an owner's segment met, for Qt-style `error` state:
    the owner hands it down, the segment notes into it (never calls up)."""

    cdef public object last


cdef class SegmentHolder:
    """Base of `shmimage.SharedMemory`: its Segment, its error record, and
    lock/unlock with no Python frame between the caller and the mutex."""

    cdef public Segment _seg
    cdef public ErrorRecord _errors
    cdef public object _key
    cdef public object _native_key
    cdef object __weakref__

    def __cinit__(self):
        self._errors = ErrorRecord()

    @cython.embedsignature(True)
    def lock(self, timeout=None):
        """Take the segment's process-shared mutex.

        Robust: when the previous holder died holding it, the lock is still
        acquired and `owner_died` is True until the next `lock()`. Ownership
        is per thread and not recursive. A blocking wait releases the GIL.

        Parameters
        ----------
        timeout : float or None
            Seconds to wait; None waits as long as it takes, 0 only tries.

        Returns
        -------
        bool
            True when acquired, False when `timeout` passed first.

        Raises
        ------
        LockError
            This thread already holds the lock, or the segment is mapped
            read-only (a read-only mapping cannot take a mutex).
        NotAttachedError
            The object is not attached.

        Examples
        --------
        >>> import shmimage
        >>> with shmimage.SharedMemory("docs-lock") as shm:
        ...     shm.create(8)
        ...     shm.lock(timeout=1.0)
        ...     shm.data[0] = 42
        ...     shm.unlock()
        True
        """
        if self._seg is None:
            return self._refuse()
        return self._seg._lock(timeout) == 1

    @cython.embedsignature(True)
    def unlock(self):
        """Release the mutex taken by `lock()` in this thread.

        Raises
        ------
        LockError
            The calling thread does not hold the lock.
        NotAttachedError
            The object is not attached.

        Examples
        --------
        >>> import shmimage
        >>> with shmimage.SharedMemory("docs-unlock") as shm:
        ...     shm.create(8)
        ...     shm.lock()
        ...     shm.unlock()
        ...     try:
        ...         shm.unlock()
        ...     except shmimage.LockError:
        ...         print("not held")
        True
        not held
        """
        if self._seg is None:
            return self._refuse()
        self._seg._unlock()

    cdef _refuse(self):
        exc = LockError(f"{subject_of(self._key, self._native_key)} is not attached: "
                        f"attach() or create() first")
        self._errors.last = exc
        raise exc


def remove(str name, str key=None):
    """shmp_remove: unlink a segment's name (`key`, the user's, for messages)."""
    cdef bytes bname = name.encode()
    check(shmp_remove(bname), "remove", subject_of(key, name))


def probe(str name, bint reclaim=True):
    """shmp_probe: facts about a name without attaching (reclaims it when stale)."""
    cdef shmp_probe_info info
    cdef bytes bname = name.encode()
    cdef const char *cname = bname
    cdef int rc
    with nogil:
        rc = shmp_probe(cname, reclaim, &info)
    check(rc, "probe", repr(name))
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


def attachments(list facts):
    """How many processes are attached to each segment `probe` described (0
    where the platform cannot tell), from one read of the lock table."""
    cdef Py_ssize_t i, n = len(facts)
    cdef shmp_probe_info *infos = <shmp_probe_info *>PyMem_Calloc(
        max(n, 1), sizeof(shmp_probe_info))
    cdef int *counts = <int *>PyMem_Calloc(max(n, 1), sizeof(int))
    try:
        if infos == NULL or counts == NULL:
            raise MemoryError()
        for i in range(n):
            infos[i].stale = facts[i]["stale"]
            infos[i].dev = facts[i]["dev"]
            infos[i].ino = facts[i]["ino"]
        check(shmp_attachments(infos, n, counts), "count the attachments of segments")
        return [max(counts[i], 0) for i in range(n)]
    finally:
        PyMem_Free(infos)
        PyMem_Free(counts)


include "_frames.pxi"
