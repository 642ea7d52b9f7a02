/* What differs between compilers and platforms, in one place: atomics on
 * 32-bit words in shared memory, clocks, the process id cache, thread-local
 * storage, and the calls that exist on one platform only. Everything is
 * static inline and named shmc_*, so this header can be included by every
 * C file of the core, beside frames.h (whose names are frm_*). */
#ifndef SHM_COMPAT_H
#define SHM_COMPAT_H

#include <errno.h>
#include <stdint.h>

#if defined(_WIN32)
#include <windows.h>
#else
#include <pthread.h>
#include <time.h>
#include <unistd.h>
#endif

/* ---- thread-local storage ---- */
#if defined(_MSC_VER) && !defined(__clang__)
#define SHMC_THREAD_LOCAL __declspec(thread)
#else
#define SHMC_THREAD_LOCAL _Thread_local
#endif

/* ---- atomics on 32-bit words (shared between processes) ----
 * MSVC has no __atomic builtins: aligned 32-bit volatile accesses are
 * single-copy atomic on x64 and arm64, and full barriers give them acquire
 * and release order; read-modify-write goes through Interlocked*. */
#if defined(_MSC_VER) && !defined(__clang__)
static inline uint32_t shmc_load_u32(const volatile uint32_t *p) {
    uint32_t v = *p;
    MemoryBarrier();
    return v;
}
static inline uint32_t shmc_load_relaxed_u32(const volatile uint32_t *p) { return *p; }
static inline void shmc_store_u32(volatile uint32_t *p, uint32_t v) {
    MemoryBarrier();
    *p = v;
}
static inline void shmc_store_relaxed_u32(volatile uint32_t *p, uint32_t v) { *p = v; }
static inline int shmc_cas_u32(volatile uint32_t *p, uint32_t *expected, uint32_t desired) {
    LONG seen = InterlockedCompareExchange((volatile LONG *)p, (LONG)desired, (LONG)*expected);
    if ((uint32_t)seen == *expected) return 1;
    *expected = (uint32_t)seen;
    return 0;
}
static inline uint32_t shmc_fetch_or_u32(volatile uint32_t *p, uint32_t bits) {
    return (uint32_t)InterlockedOr((volatile LONG *)p, (LONG)bits);
}
static inline uint32_t shmc_add_u32(volatile uint32_t *p, uint32_t delta) {
    return (uint32_t)InterlockedAdd((volatile LONG *)p, (LONG)delta);
}
static inline void shmc_fence(void) { MemoryBarrier(); }
#else
static inline uint32_t shmc_load_u32(const volatile uint32_t *p) {
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}
static inline uint32_t shmc_load_relaxed_u32(const volatile uint32_t *p) {
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}
static inline void shmc_store_u32(volatile uint32_t *p, uint32_t v) {
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}
static inline void shmc_store_relaxed_u32(volatile uint32_t *p, uint32_t v) {
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}
/* Acquire on success; *expected receives the value seen on failure. */
static inline int shmc_cas_u32(volatile uint32_t *p, uint32_t *expected, uint32_t desired) {
    return __atomic_compare_exchange_n(p, expected, desired, 0, __ATOMIC_ACQUIRE,
                                       __ATOMIC_RELAXED);
}
static inline uint32_t shmc_fetch_or_u32(volatile uint32_t *p, uint32_t bits) {
    return __atomic_fetch_or(p, bits, __ATOMIC_RELEASE);
}
/* The new value. */
static inline uint32_t shmc_add_u32(volatile uint32_t *p, uint32_t delta) {
    return __atomic_add_fetch(p, delta, __ATOMIC_RELAXED);
}
/* A full barrier: every access before it is seen before any after it. */
static inline void shmc_fence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
#endif

/* ---- clocks, in nanoseconds ---- */
#if defined(_WIN32)
static inline int64_t shmc_monotonic_ns(void) {
    static LARGE_INTEGER freq;
    LARGE_INTEGER now;
    if (!freq.QuadPart) QueryPerformanceFrequency(&freq);
    QueryPerformanceCounter(&now);
    return (int64_t)((double)now.QuadPart * 1e9 / (double)freq.QuadPart);
}
static inline uint64_t shmc_wall_ns(void) {
    FILETIME ft; /* 100 ns ticks since 1601 */
    GetSystemTimePreciseAsFileTime(&ft);
    uint64_t t = ((uint64_t)ft.dwHighDateTime << 32) | ft.dwLowDateTime;
    return (t - 116444736000000000ULL) * 100;
}
#else
static inline int64_t shmc_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
static inline uint64_t shmc_wall_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
/* glibc 2.30 added waits on a chosen clock; with them, timed waits follow
 * CLOCK_MONOTONIC and a wall-clock jump neither shortens nor extends them. */
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SHMC_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define SHMC_TSAN 1
#endif
/* ThreadSanitizer's runtime does not see pthread_mutex_clocklock take the
 * mutex, and would report what it guards as racing: its builds keep the
 * wall-clock calls. */
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 30)) && \
    !defined(SHMC_TSAN)
#define SHMC_HAVE_CLOCKWAIT 1
#define SHMC_WAIT_CLOCK CLOCK_MONOTONIC
#else
#define SHMC_WAIT_CLOCK CLOCK_REALTIME
#endif

/* An absolute deadline on SHMC_WAIT_CLOCK `timeout_ns` from now (for
 * pthread_mutex_clocklock/timedlock and sem_clockwait/timedwait). */
static inline struct timespec shmc_deadline_after(int64_t timeout_ns) {
    struct timespec ts;
    clock_gettime(SHMC_WAIT_CLOCK, &ts);
    ts.tv_sec += (time_t)(timeout_ns / 1000000000);
    ts.tv_nsec += (long)(timeout_ns % 1000000000);
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    return ts;
}
#endif

/* ---- this process's id, cached: getpid() is a system call in current
 * glibc. The one cache of the core: forgotten in a forked child. ---- */
#if defined(_WIN32)
static inline uint32_t shmc_pid(void) { return (uint32_t)GetCurrentProcessId(); }
#else
static uint32_t shmc_cached_pid;
static inline void shmc_forget_pid(void) { shmc_cached_pid = 0; }
static inline uint32_t shmc_pid(void) {
    uint32_t pid = __atomic_load_n(&shmc_cached_pid, __ATOMIC_RELAXED);
    if (!pid) {
        static int registered;
        if (!__atomic_exchange_n(&registered, 1, __ATOMIC_RELAXED))
            pthread_atfork(NULL, NULL, shmc_forget_pid);
        pid = (uint32_t)getpid();
        __atomic_store_n(&shmc_cached_pid, pid, __ATOMIC_RELAXED);
    }
    return pid;
}
#endif

/* ---- errno values some platforms lack ---- */
#ifndef EOWNERDEAD
#define EOWNERDEAD 130
#endif
#ifndef ENOTRECOVERABLE
#define ENOTRECOVERABLE 131
#endif

/* ---- Windows errors as errno values: the one table ---- */
#if defined(_WIN32)
static inline int shmc_errno_of(DWORD e) {
    switch (e) {
    case ERROR_SUCCESS: return 0;
    case ERROR_FILE_NOT_FOUND:
    case ERROR_PATH_NOT_FOUND: return ENOENT;
    case ERROR_ALREADY_EXISTS:
    case ERROR_FILE_EXISTS: return EEXIST;
    case ERROR_ACCESS_DENIED: return EACCES;
    case ERROR_DISK_FULL: return ENOSPC;
    case ERROR_COMMITMENT_LIMIT: /* RAM + page file: memory, as on POSIX */
    case ERROR_NO_SYSTEM_RESOURCES:
    case ERROR_NOT_ENOUGH_MEMORY:
    case ERROR_OUTOFMEMORY: return ENOMEM;
    case ERROR_TOO_MANY_OPEN_FILES: return EMFILE;
    case ERROR_INVALID_NAME:
    case ERROR_BAD_PATHNAME:
    case ERROR_INVALID_PARAMETER: return EINVAL;
    case ERROR_FILENAME_EXCED_RANGE: return ENAMETOOLONG;
    case ERROR_NOT_OWNER: return EPERM;
    case ERROR_INVALID_HANDLE: return EBADF;
    case WAIT_TIMEOUT: return ETIMEDOUT;
    default: return EIO;
    }
}
static inline int shmc_last_errno(void) { return shmc_errno_of(GetLastError()); }
#endif

#endif /* SHM_COMPAT_H */

/* ---- calls that exist on one platform only: on the other they answer
 * ENOSYS (outputs cleared), so one module builds everywhere. Defined once
 * qt_ipc.h, which declares the real ones, has been read. ---- */
#if defined(QT_IPC_H) && !defined(SHMC_PLATFORM_STUBS)
#define SHMC_PLATFORM_STUBS
static inline int shmc_enosys(int unused, ...) {
    (void)unused;
    return ENOSYS;
}
#define SHMC_ENOSYS(...) shmc_enosys(0, __VA_ARGS__)
#if defined(_WIN32)
#define qtipc_key_file(path, created) (*(created) = 0, SHMC_ENOSYS(path))
#define qtipc_ftok(path, proj, key) SHMC_ENOSYS(path, proj, key)
#define qtipc_unlink(path) SHMC_ENOSYS(path)
#define qtipc_sysv_shm_get(key, size, create, id) SHMC_ENOSYS(key, size, create, id)
#define qtipc_sysv_shm_attach(id, ro, addr, size) SHMC_ENOSYS(id, ro, addr, size)
#define qtipc_sysv_shm_detach(addr) SHMC_ENOSYS(addr)
#define qtipc_sysv_shm_nattch(id, nattch) SHMC_ENOSYS(id, nattch)
#define qtipc_sysv_shm_remove(id) SHMC_ENOSYS(id)
#define qtipc_sysv_sem_get(key, id, created) (*(created) = 0, SHMC_ENOSYS(key, id))
#define qtipc_sysv_sem_find(key, id) SHMC_ENOSYS(key, id)
#define qtipc_sysv_sem_op(id, delta, timeout_ns) SHMC_ENOSYS(id, delta, timeout_ns)
#define qtipc_sysv_sem_remove(id) SHMC_ENOSYS(id)
#define qtipc_posix_shm_create(name, size, fd) SHMC_ENOSYS(name, size, fd)
#define qtipc_posix_shm_open(name, ro, fd) SHMC_ENOSYS(name, ro, fd)
#define qtipc_posix_shm_unlink(name) SHMC_ENOSYS(name)
#define qtipc_fd_size(fd, size) SHMC_ENOSYS(fd, size)
#define qtipc_fd_map(fd, size, ro, addr) SHMC_ENOSYS(fd, size, ro, addr)
#define qtipc_unmap(addr, size) SHMC_ENOSYS(addr, size)
#define qtipc_fd_close(fd) SHMC_ENOSYS(fd)
#define qtipc_psem_open(name, create, sem, created) (*(created) = 0, SHMC_ENOSYS(name, create, sem))
#define qtipc_psem_wait(sem, timeout_ns) SHMC_ENOSYS(sem, timeout_ns)
#define qtipc_psem_post(sem) SHMC_ENOSYS(sem)
#define qtipc_psem_close(sem) SHMC_ENOSYS(sem)
#define qtipc_psem_unlink(name) SHMC_ENOSYS(name)
#else
#define qtipc_win_shm_create(name, size, handle) SHMC_ENOSYS(name, size, handle)
#define qtipc_win_shm_open(name, ro, handle) SHMC_ENOSYS(name, ro, handle)
#define qtipc_win_map(handle, ro, addr, size) SHMC_ENOSYS(handle, ro, addr, size)
#define qtipc_win_unmap(addr) SHMC_ENOSYS(addr)
#define qtipc_win_sem_open(name, handle) SHMC_ENOSYS(name, handle)
#define qtipc_win_sem_wait(handle, timeout_ns) SHMC_ENOSYS(handle, timeout_ns)
#define qtipc_win_sem_post(handle) SHMC_ENOSYS(handle)
#define qtipc_win_close(handle) SHMC_ENOSYS(handle)
#endif
#endif
