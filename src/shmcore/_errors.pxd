# cython: language_level=3
"""C status -> exception, and timeouts, for every Cython module of the core.

The C layers return 0 or an errno value (Windows errors are mapped to errno
values in compat.h); this is the one place those become shmimage's typed
exceptions. Cimported, so each module compiles its own copy of these inline
functions and the Python-level error classes are looked up only on failure.
"""
from libc.errno cimport (EACCES, EEXIST, EFBIG, EIDRM, EINVAL, EMFILE, ENAMETOOLONG, ENFILE,
                         ENOENT, ENOMEM, ENOSPC, EPERM, ETIMEDOUT)
from libc.stdint cimport int64_t


cdef extern from "shm_platform.h":
    enum:
        SHMP_EINCOMPAT  # the one status that is not an errno value


cdef inline object error_class(int rc, object einval=None):
    """The exception class for status `rc` (`einval` overrides EINVAL's)."""
    from shmimage import errors
    if rc == EINVAL:
        return errors.InvalidKeyError if einval is None else einval
    if rc == ENOENT or rc == EIDRM:
        return errors.NotFoundError
    if rc == EEXIST:
        return errors.AlreadyExistsError
    if rc == EACCES or rc == EPERM:
        return errors.PermissionDeniedError
    if rc == ENOSPC or rc == ENOMEM or rc == EFBIG or rc == EMFILE or rc == ENFILE:
        return errors.OutOfResourcesError
    if rc == ENAMETOOLONG:
        return errors.InvalidKeyError
    if rc == SHMP_EINCOMPAT:
        return errors.IncompatibleSegmentError
    if rc == ETIMEDOUT:
        return TimeoutError
    return errors.SharedMemoryError


cdef inline str reason_for(int rc):
    import os
    if rc == SHMP_EINCOMPAT:
        return ("not a shmimage segment of this layout version, half-built, or its header "
                "disagrees with its size")
    return os.strerror(rc)


cdef inline str subject_of(object key, object name):
    """How errors name a segment: the user's key first, the native name second."""
    if key and name and key != name:
        return f"{key!r} ({name})"
    return repr(name or key or "")


cdef inline int check_rc(int rc, str what, str subject=None, str reason=None,
                         object einval=None) except -1:
    """Raise the typed exception for a nonzero status: "what subject: reason",
    or "no segment subject" for a missing one."""
    if rc == 0:
        return 0
    cls = error_class(rc, einval)
    if reason is None:
        reason = reason_for(rc)
    if subject is not None and (rc == ENOENT or rc == EIDRM):
        message = f"no segment {subject}"
    elif subject is not None:
        message = f"{what} {subject}: {reason}"
    else:
        message = f"{what}: {reason}"
    exc = cls(message)
    exc.errno = rc
    raise exc


cdef inline int64_t timeout_ns(object timeout) except? -2:
    """Seconds (None: forever) as nanoseconds, -1 for forever."""
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
