# cython: language_level=3
"""Qt's IPC objects, opened the way QSharedMemory and QSystemSemaphore do.

One class per Qt backend, all with the same methods. A segment object holds
at most one mapping and one semaphore handle; `shmimage.qt` drives them in
Qt's order (semaphore, lock, map, copy, unmap, unlock). Blocking waits and
copies release the GIL.
"""
import errno
import os

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int64_t
from libc.string cimport memcpy, memset

from _errors cimport check_rc, timeout_ns

from shmimage.errors import (
    AlreadyExistsError,
    InvalidSizeError,
    LockError,
    NotAttachedError,
    NotFoundError,
    SharedMemoryError,
)

cdef extern from "qt_ipc.h" nogil:
    int qtipc_key_file(const char *path, int *created)
    int qtipc_ftok(const char *path, int proj, long *key)
    int qtipc_unlink(const char *path)
    int qtipc_sysv_shm_get(long key, size_t size, int create, int *id)
    int qtipc_sysv_shm_attach(int id, int readonly, void **addr, size_t *size)
    int qtipc_sysv_shm_detach(const void *addr)
    int qtipc_sysv_shm_nattch(int id, unsigned long *nattch)
    int qtipc_sysv_shm_remove(int id)
    int qtipc_sysv_sem_get(long key, int *id, int *created)
    int qtipc_sysv_sem_find(long key, int *id)
    int qtipc_sysv_sem_op(int id, int delta, int64_t timeout_ns)
    int qtipc_sysv_sem_remove(int id)
    int qtipc_posix_shm_create(const char *name, size_t size, int *fd)
    int qtipc_posix_shm_open(const char *name, int readonly, int *fd)
    int qtipc_posix_shm_unlink(const char *name)
    int qtipc_fd_size(int fd, size_t *size)
    int qtipc_fd_map(int fd, size_t size, int readonly, void **addr)
    int qtipc_unmap(void *addr, size_t size)
    int qtipc_fd_close(int fd)
    int qtipc_psem_open(const char *name, int create, void **sem, int *created)
    int qtipc_psem_wait(void *sem, int64_t timeout_ns)
    int qtipc_psem_post(void *sem)
    int qtipc_psem_close(void *sem)
    int qtipc_psem_unlink(const char *name)
    int qtipc_win_shm_create(const char *name, size_t size, void **handle)
    int qtipc_win_shm_open(const char *name, int readonly, void **handle)
    int qtipc_win_map(void *handle, int readonly, void **addr, size_t *size)
    int qtipc_win_unmap(void *addr)
    int qtipc_win_sem_open(const char *name, void **handle)
    int qtipc_win_sem_wait(void *handle, int64_t timeout_ns)
    int qtipc_win_sem_post(void *handle)
    int qtipc_win_close(void *handle)

# Qt's QNativeIpcKey::Type::SystemV, the project id Qt passes to ftok().
QT_FTOK_PROJECT = ord("Q")

cdef str seconds(int64_t ns):
    return f"{ns / 1e9:g} s"


cdef class QtSegment:
    """What every backend shares: the mapping's bytes and the lock flag."""

    cdef void *addr
    cdef size_t nbytes
    cdef bint mapped
    cdef bint writable
    cdef bint locked

    @property
    def size(self) -> int:
        return self.nbytes if self.mapped else 0

    @property
    def is_attached(self) -> bool:
        return self.mapped

    @property
    def is_locked(self) -> bool:
        return self.locked

    def read(self) -> bytes:
        """A copy of every byte of the segment."""
        if not self.mapped:
            raise NotAttachedError("not attached to a Qt segment")
        out = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>self.nbytes)
        cdef char *dst = PyBytes_AS_STRING(out)
        with nogil:
            if self.nbytes:
                memcpy(dst, self.addr, self.nbytes)
        return out

    def write(self, const unsigned char[::1] data not None) -> None:
        """Copy `data` to the start of the segment and zero the rest."""
        if not self.mapped or not self.writable:
            raise NotAttachedError("not attached to a Qt segment for writing")
        cdef size_t n = <size_t>data.shape[0]
        if n > self.nbytes:
            raise InvalidSizeError(f"{n} bytes do not fit in a {self.nbytes}-byte segment")
        cdef const unsigned char *src = &data[0] if n else NULL
        cdef unsigned char *dst = <unsigned char *>self.addr
        with nogil:
            if n:
                memcpy(dst, src, n)
            memset(dst + n, 0, self.nbytes - n)

    cdef int _acquire(self, int64_t timeout) except -1:
        raise NotImplementedError

    cdef int _release_lock(self) except -1:
        raise NotImplementedError

    cdef int _close_sem(self):
        return 0

    def close_lock(self) -> None:
        """Drop the semaphore; remove it when this object made it (Qt's own rule)."""
        if self.locked:
            self.unlock()
        self._close_sem()

    def lock(self, timeout=None) -> None:
        """Take Qt's semaphore; TimeoutError when `timeout` seconds pass."""
        if self.locked:
            raise LockError("the Qt lock is already held by this object")
        self._acquire(timeout_ns(timeout))
        self.locked = True

    def unlock(self) -> None:
        if not self.locked:
            raise LockError("the Qt lock is not held by this object")
        self.locked = False
        self._release_lock()


cdef class SysVSegment(QtSegment):
    """Qt's legacy keys: System V memory and semaphore keyed by ftok files."""

    cdef bytes shm_file
    cdef bytes sem_file
    cdef int shm_id
    cdef int sem_id
    cdef bint made_shm_file
    cdef bint made_sem_file
    cdef bint made_sem

    def __cinit__(self, shm_file, sem_file):
        self.shm_file = os.fsencode(shm_file)
        self.sem_file = os.fsencode(sem_file)
        self.shm_id = -1
        self.sem_id = -1

    def __dealloc__(self):
        if self.locked:
            qtipc_sysv_sem_op(self.sem_id, 1, -1)
        self._unmap()
        self._close_sem()

    cdef long _key(self, bytes path) except? -1:
        cdef long key = 0
        check_rc(qtipc_ftok(path, QT_FTOK_PROJECT, &key), f"ftok({os.fsdecode(path)!r})")
        return key

    def find(self) -> None:
        """Look the segment up; NotFoundError when there is none."""
        cdef long key = self._key(self.shm_file)
        check_rc(qtipc_sysv_shm_get(key, 0, 0, &self.shm_id), "shmget")

    def create(self, size_t size) -> None:
        """Make the key file and a new segment of `size` bytes, mapped writable."""
        cdef int made = 0
        cdef long key
        check_rc(qtipc_key_file(self.shm_file, &made), f"creating {os.fsdecode(self.shm_file)!r}")
        self.made_shm_file = made
        try:
            key = self._key(self.shm_file)
            err = qtipc_sysv_shm_get(key, size, 1, &self.shm_id)
            if err == errno.EEXIST and self._reclaim(key):
                err = qtipc_sysv_shm_get(key, size, 1, &self.shm_id)
            check_rc(err, "shmget", None, None, InvalidSizeError)
        except BaseException:
            if self.made_shm_file:
                qtipc_unlink(self.shm_file)
            raise
        self.map(readonly=False)

    cdef bint _reclaim(self, long key):
        """Remove a segment nobody is attached to (its Qt creator died)."""
        cdef int sid = -1
        cdef unsigned long nattch = 1
        if qtipc_sysv_shm_get(key, 0, 0, &sid) or qtipc_sysv_shm_nattch(sid, &nattch):
            return False
        return nattch == 0 and qtipc_sysv_shm_remove(sid) == 0

    def map(self, bint readonly=True) -> None:
        """Attach, looking the key up again: under the lock it names the current segment."""
        if self.mapped:
            return
        self.find()
        err = qtipc_sysv_shm_attach(self.shm_id, readonly, &self.addr, &self.nbytes)
        if err in (errno.EIDRM, errno.EINVAL):
            raise NotFoundError("the Qt segment was removed while attaching")
        check_rc(err, "shmat")
        self.mapped = True
        self.writable = not readonly

    cdef int _unmap(self):
        """Detach; the last one out removes the segment and its key file, as Qt does."""
        cdef unsigned long nattch = 1
        if not self.mapped:
            return 0
        err = qtipc_sysv_shm_detach(self.addr)
        self.mapped = False
        self.addr = NULL
        if qtipc_sysv_shm_nattch(self.shm_id, &nattch) == 0 and nattch == 0:
            if qtipc_sysv_shm_remove(self.shm_id) == 0:
                qtipc_unlink(self.shm_file)
        self.shm_id = -1
        return err

    def release(self) -> None:
        """Unmap (removing the segment when this was the last attachment)."""
        check_rc(self._unmap(), "shmdt")

    def open_lock(self, bint create=False) -> None:
        """Open (or make) Qt's semaphore for this segment."""
        cdef int made_file = 0
        cdef int made_sem = 0
        cdef long key
        if self.sem_id >= 0:
            return
        check_rc(qtipc_key_file(self.sem_file, &made_file),
                 f"creating {os.fsdecode(self.sem_file)!r}")
        self.made_sem_file = self.made_sem_file or made_file
        key = self._key(self.sem_file)
        check_rc(qtipc_sysv_sem_get(key, &self.sem_id, &made_sem), "semget")
        if made_sem:
            # Qt: a new semaphore means any key file there is a leftover; remove it later.
            self.made_sem = True
            self.made_sem_file = True

    cdef int _acquire(self, int64_t timeout) except -1:
        cdef int err
        cdef int _attempt
        for _attempt in range(8):
            if self.sem_id < 0:
                self.open_lock()
            with nogil:
                err = qtipc_sysv_sem_op(self.sem_id, -1, timeout)
            if err not in (errno.EIDRM, errno.EINVAL):
                break
            # Removed under us (Qt's create() may remake it): reopen, as Qt does.
            self.sem_id = -1
        if err == errno.ETIMEDOUT:
            raise TimeoutError(
                f"Qt's semaphore for {os.fsdecode(self.sem_file)!r} was not released "
                f"within {seconds(timeout)}")
        return check_rc(err, "semop", None, None, SharedMemoryError)

    cdef int _release_lock(self) except -1:
        err = qtipc_sysv_sem_op(self.sem_id, 1, -1)
        if err in (errno.EIDRM, errno.EINVAL):
            return 0  # removed meanwhile: a new one starts unlocked
        return check_rc(err, "semop", None, None, SharedMemoryError)

    cdef int _close_sem(self):
        if self.made_sem and self.sem_id >= 0:
            qtipc_sysv_sem_remove(self.sem_id)
        if self.made_sem_file:
            qtipc_unlink(self.sem_file)
        self.sem_id = -1
        self.made_sem = False
        self.made_sem_file = False
        return 0


cdef class PosixSegment(QtSegment):
    """Qt 6.6+ native keys on Unix: shm_open() memory and a named semaphore."""

    cdef bytes shm_name
    cdef bytes sem_name
    cdef int fd
    cdef void *sem
    cdef bint made_shm
    cdef bint made_sem
    cdef object sem_file_id

    def __cinit__(self, shm_name, sem_name):
        self.shm_name = os.fsencode(shm_name)
        self.sem_name = os.fsencode(sem_name)
        self.fd = -1
        self.sem = NULL
        self.sem_file_id = None

    def __dealloc__(self):
        if self.locked:
            qtipc_psem_post(self.sem)
        self._unmap()
        self._close_sem()

    def find(self) -> None:
        """Open the segment read-only; NotFoundError when there is none."""
        if self.fd < 0:
            check_rc(qtipc_posix_shm_open(self.shm_name, 1, &self.fd), "shm_open")

    def create(self, size_t size) -> None:
        """Make a new segment of `size` bytes (reserved now), mapped writable."""
        if size == 0:
            raise InvalidSizeError("a Qt segment needs at least one byte")
        check_rc(qtipc_posix_shm_create(self.shm_name, size, &self.fd), "shm_open")
        self.made_shm = True
        try:
            self.map(readonly=False)
        except BaseException:
            self._unmap()
            raise

    def map(self, bint readonly=True) -> None:
        """Map the whole segment, at the size it has now."""
        if self.mapped:
            return
        if self.fd < 0:
            raise NotAttachedError("find() or create() the segment first")
        check_rc(qtipc_fd_size(self.fd, &self.nbytes), "fstat")
        if self.nbytes:
            check_rc(qtipc_fd_map(self.fd, self.nbytes, readonly, &self.addr), "mmap",
                     None, None, SharedMemoryError)
        self.mapped = True
        self.writable = not readonly

    cdef int _unmap(self):
        cdef int err = 0
        if self.mapped and self.addr != NULL:
            err = qtipc_unmap(self.addr, self.nbytes)
        self.addr = NULL
        self.mapped = False
        if self.fd >= 0:
            qtipc_fd_close(self.fd)
            self.fd = -1
        if self.made_shm:
            # Qt never unlinks POSIX segments; shmimage removes what it made.
            qtipc_posix_shm_unlink(self.shm_name)
            self.made_shm = False
        return err

    def release(self) -> None:
        check_rc(self._unmap(), "munmap", None, None, SharedMemoryError)

    def open_lock(self, bint create=False) -> None:
        """Open Qt's named semaphore; `create` remakes it as Qt's create() does."""
        cdef int made = 0
        if self.sem != NULL:
            return
        check_rc(qtipc_psem_open(self.sem_name, create, &self.sem, &made), "sem_open")
        self.made_sem = made
        self.sem_file_id = self._sem_file_id()

    def _sem_file_id(self):
        """Where the name's semaphore lives on Linux (glibc keeps it in
        /dev/shm/sem.NAME), or None where that cannot be seen."""
        try:
            st = os.stat(b"/dev/shm/sem." + self.sem_name.lstrip(b"/"))
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    cdef int _follow_name(self) except -1:
        """Qt's create() unlinks and remakes the named semaphore: a handle to
        the old one no longer excludes anyone, so reopen the name."""
        if self.sem == NULL or self.sem_file_id is None:
            return 0
        if self._sem_file_id() != self.sem_file_id:
            self._close_sem()
            self.open_lock()
        return 0

    cdef int _acquire(self, int64_t timeout) except -1:
        cdef int err
        self._follow_name()
        if self.sem == NULL:
            self.open_lock()
        with nogil:
            err = qtipc_psem_wait(self.sem, timeout)
        if err == errno.ETIMEDOUT:
            raise TimeoutError(
                f"Qt's semaphore {os.fsdecode(self.sem_name)!r} was not released within "
                f"{seconds(timeout)} (POSIX semaphores stay taken when their holder dies)")
        return check_rc(err, "sem_wait", None, None, SharedMemoryError)

    cdef int _release_lock(self) except -1:
        return check_rc(qtipc_psem_post(self.sem), "sem_post", None, None, SharedMemoryError)

    cdef int _close_sem(self):
        if self.sem != NULL:
            qtipc_psem_close(self.sem)
            self.sem = NULL
        if self.made_sem and self._sem_file_id() == self.sem_file_id:
            qtipc_psem_unlink(self.sem_name)  # only the one this object made
        self.made_sem = False
        self.sem_file_id = None
        return 0


cdef class WindowsSegment(QtSegment):
    """Qt on Windows: a named file mapping and a named semaphore."""

    cdef bytes shm_name
    cdef bytes sem_name
    cdef void *handle
    cdef void *sem

    def __cinit__(self, shm_name, sem_name):
        self.shm_name = shm_name.encode("utf-8")
        self.sem_name = sem_name.encode("utf-8")
        self.handle = NULL
        self.sem = NULL

    def __dealloc__(self):
        if self.locked:
            qtipc_win_sem_post(self.sem)
        self._unmap()
        self._close_sem()

    def find(self) -> None:
        if self.handle == NULL:
            check_rc(qtipc_win_shm_open(self.shm_name, 1, &self.handle), "OpenFileMapping")

    def create(self, size_t size) -> None:
        if size == 0:
            raise InvalidSizeError("a Qt segment needs at least one byte")
        check_rc(qtipc_win_shm_create(self.shm_name, size, &self.handle), "CreateFileMapping",
                 None, None, InvalidSizeError)
        try:
            self.map(readonly=False)
        except BaseException:
            self._unmap()
            raise

    def map(self, bint readonly=True) -> None:
        if self.mapped:
            return
        if self.handle == NULL:
            raise NotAttachedError("find() or create() the segment first")
        check_rc(qtipc_win_map(self.handle, readonly, &self.addr, &self.nbytes), "MapViewOfFile",
                 None, None, SharedMemoryError)
        self.mapped = True
        self.writable = not readonly

    cdef int _unmap(self):
        cdef int err = 0
        if self.mapped:
            err = qtipc_win_unmap(self.addr)
        self.addr = NULL
        self.mapped = False
        if self.handle != NULL:
            qtipc_win_close(self.handle)  # the last handle closed removes it
            self.handle = NULL
        return err

    def release(self) -> None:
        check_rc(self._unmap(), "UnmapViewOfFile", None, None, SharedMemoryError)

    def open_lock(self, bint create=False) -> None:
        if self.sem == NULL:
            check_rc(qtipc_win_sem_open(self.sem_name, &self.sem), "CreateSemaphore")

    cdef int _acquire(self, int64_t timeout) except -1:
        cdef int err
        if self.sem == NULL:
            self.open_lock()
        with nogil:
            err = qtipc_win_sem_wait(self.sem, timeout)
        return check_rc(err, "WaitForSingleObject", None, None, SharedMemoryError)

    cdef int _release_lock(self) except -1:
        return check_rc(qtipc_win_sem_post(self.sem), "ReleaseSemaphore",
                        None, None, SharedMemoryError)

    cdef int _close_sem(self):
        if self.sem != NULL:
            qtipc_win_close(self.sem)
            self.sem = NULL
        return 0


def remove_posix(shm_name: str, sem_name: str) -> bool:
    """Unlink a POSIX segment and semaphore left behind (Qt never unlinks its
    segments). True when there was a segment."""
    qtipc_psem_unlink(os.fsencode(sem_name))
    err = qtipc_posix_shm_unlink(os.fsencode(shm_name))
    if err == errno.ENOENT:
        return False
    check_rc(err, "shm_unlink")
    return True


def remove_sysv(shm_file: str, sem_file: str) -> bool:
    """Remove a System V segment nobody is attached to, Qt's semaphore for it and
    both key files (what a killed Qt process leaves). True when there was a
    segment; AlreadyExistsError while a process is attached to it."""
    cdef long key = 0
    cdef int sid = -1
    cdef unsigned long nattch = 0
    cdef bint removed = False
    path = os.fsencode(shm_file)
    if qtipc_ftok(path, QT_FTOK_PROJECT, &key) == 0:
        if qtipc_sysv_shm_get(key, 0, 0, &sid) == 0:
            check_rc(qtipc_sysv_shm_nattch(sid, &nattch), "shmctl")
            if nattch:
                raise AlreadyExistsError(
                    f"{nattch} process(es) are attached to the Qt segment")
            check_rc(qtipc_sysv_shm_remove(sid), "shmctl", None, None, SharedMemoryError)
            removed = True
        qtipc_unlink(path)
    path = os.fsencode(sem_file)
    if qtipc_ftok(path, QT_FTOK_PROJECT, &key) == 0:
        if qtipc_sysv_sem_find(key, &sid) == 0:
            qtipc_sysv_sem_remove(sid)
        qtipc_unlink(path)
    return removed
