/* Qt's IPC mechanisms, called the way QSharedMemory and QSystemSemaphore
 * call them (see qt_ipc.h). Every function returns 0 or an errno value. */
#if !defined(_WIN32) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* semtimedop */
#endif

#include "compat.h"
#include "qt_ipc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#if defined(_WIN32)
#include <windows.h>
#else
#include <fcntl.h>
#include <semaphore.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#endif

#if !defined(_WIN32)

/* ---- time ------------------------------------------------------------- */

/* A span of nanoseconds as a timespec (at least 0). */
static struct timespec span(int64_t ns)
{
    struct timespec ts;
    if (ns < 0)
        ns = 0;
    ts.tv_sec = (time_t)(ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    return ts;
}

#if !defined(__linux__)
static void sleep_briefly(void)
{
    struct timespec ts = {0, 1000000L}; /* 1 ms: only where no timed wait exists */
    nanosleep(&ts, NULL);
}
#endif

/* ---- key files -------------------------------------------------------- */

int qtipc_key_file(const char *path, int *created)
{
    int fd;
    *created = 0;
    do {
        fd = open(path, O_EXCL | O_CREAT | O_RDWR | O_CLOEXEC, 0640);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return errno == EEXIST ? 0 : errno;
    close(fd);
    *created = 1;
    return 0;
}

int qtipc_ftok(const char *path, int proj, long *key)
{
    key_t k = ftok(path, proj);
    if (k == (key_t)-1)
        return errno;
    *key = (long)k;
    return 0;
}

int qtipc_unlink(const char *path)
{
    return unlink(path) == 0 ? 0 : errno;
}

/* ---- System V shared memory ------------------------------------------- */

int qtipc_sysv_shm_get(long key, size_t size, int create, int *id)
{
    int flags = create ? (0600 | IPC_CREAT | IPC_EXCL) : 0;
    int r = shmget((key_t)key, create ? size : 0, flags);
    if (r < 0)
        return errno;
    *id = r;
    return 0;
}

int qtipc_sysv_shm_attach(int id, int readonly, void **addr, size_t *size)
{
    struct shmid_ds ds;
    void *p = shmat(id, NULL, readonly ? SHM_RDONLY : 0);
    if (p == (void *)-1)
        return errno;
    if (shmctl(id, IPC_STAT, &ds) != 0) {
        int err = errno;
        shmdt(p);
        return err;
    }
    *addr = p;
    *size = (size_t)ds.shm_segsz;
    return 0;
}

int qtipc_sysv_shm_detach(const void *addr)
{
    return shmdt(addr) == 0 ? 0 : errno;
}

int qtipc_sysv_shm_nattch(int id, unsigned long *nattch)
{
    struct shmid_ds ds;
    if (shmctl(id, IPC_STAT, &ds) != 0)
        return errno;
    *nattch = (unsigned long)ds.shm_nattch;
    return 0;
}

int qtipc_sysv_shm_remove(int id)
{
    return shmctl(id, IPC_RMID, NULL) == 0 ? 0 : errno;
}

/* ---- System V semaphore ----------------------------------------------- */

union qtipc_semun {
    int val;
    struct semid_ds *buf;
    unsigned short *array;
};

int qtipc_sysv_sem_get(long key, int *id, int *created)
{
    int attempt;
    *created = 0;
    for (attempt = 0; attempt < 8; ++attempt) {
        int r = semget((key_t)key, 1, 0600 | IPC_CREAT | IPC_EXCL);
        if (r >= 0) {
            union qtipc_semun arg;
            arg.val = 1;
            if (semctl(r, 0, SETVAL, arg) != 0) {
                int err = errno;
                semctl(r, 0, IPC_RMID);
                return err;
            }
            *id = r;
            *created = 1;
            return 0;
        }
        if (errno != EEXIST)
            return errno;
        r = semget((key_t)key, 1, 0);
        if (r >= 0) {
            *id = r;
            return 0;
        }
        if (errno != ENOENT)
            return errno;
        /* removed between the two calls: try again */
    }
    return EAGAIN;
}

int qtipc_sysv_sem_find(long key, int *id)
{
    int r = semget((key_t)key, 1, 0);
    if (r < 0)
        return errno;
    *id = r;
    return 0;
}

int qtipc_sysv_sem_op(int id, int delta, int64_t timeout_ns)
{
    struct sembuf op;
    int64_t deadline = shmc_monotonic_ns() + timeout_ns;
    int r;
    op.sem_num = 0;
    op.sem_op = (short)delta;
    op.sem_flg = SEM_UNDO;
    if (timeout_ns < 0 || delta >= 0) {
        do {
            r = semop(id, &op, 1);
        } while (r != 0 && errno == EINTR);
        return r == 0 ? 0 : errno;
    }
    for (;;) {
        int64_t left = deadline - shmc_monotonic_ns();
#if defined(__linux__)
        struct timespec ts = span(left);
        r = semtimedop(id, &op, 1, &ts);
#else
        op.sem_flg = SEM_UNDO | IPC_NOWAIT;
        r = semop(id, &op, 1);
#endif
        if (r == 0)
            return 0;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return errno;
        if (left <= 0)
            return ETIMEDOUT;
#if !defined(__linux__)
        sleep_briefly();
#endif
    }
}

int qtipc_sysv_sem_remove(int id)
{
    return semctl(id, 0, IPC_RMID) == 0 ? 0 : errno;
}

/* ---- POSIX shared memory ---------------------------------------------- */

int qtipc_posix_shm_create(const char *name, size_t size, int *fd)
{
    int err, f;
    do {
        f = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    } while (f < 0 && errno == EINTR);
    if (f < 0)
        return errno;
    if (ftruncate(f, (off_t)size) != 0) {
        err = errno;
        goto fail;
    }
#if defined(__linux__)
    /* Reserve the pages now: a full /dev/shm is an error here, not a SIGBUS
     * at the first write. */
    err = posix_fallocate(f, 0, (off_t)size);
    if (err != 0 && err != EOPNOTSUPP && err != ENOSYS)
        goto fail;
#endif
    *fd = f;
    return 0;
fail:
    close(f);
    shm_unlink(name);
    return err;
}

int qtipc_posix_shm_open(const char *name, int readonly, int *fd)
{
    int f;
    do {
        f = shm_open(name, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC, 0);
    } while (f < 0 && errno == EINTR);
    if (f < 0)
        return errno;
    *fd = f;
    return 0;
}

int qtipc_posix_shm_unlink(const char *name)
{
    return shm_unlink(name) == 0 ? 0 : errno;
}

int qtipc_fd_size(int fd, size_t *size)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return errno;
    *size = (size_t)st.st_size;
    return 0;
}

int qtipc_fd_map(int fd, size_t size, int readonly, void **addr)
{
    int prot = readonly ? PROT_READ : (PROT_READ | PROT_WRITE);
    void *p;
    if (size == 0)
        return EINVAL;
    p = mmap(NULL, size, prot, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return errno;
    *addr = p;
    return 0;
}

int qtipc_unmap(void *addr, size_t size)
{
    return munmap(addr, size) == 0 ? 0 : errno;
}

int qtipc_fd_close(int fd)
{
    return close(fd) == 0 ? 0 : errno;
}

/* ---- POSIX named semaphore -------------------------------------------- */

int qtipc_psem_open(const char *name, int create, void **sem, int *created)
{
    int attempt;
    *created = 0;
    for (attempt = 0; attempt < 8; ++attempt) {
        sem_t *s = sem_open(name, O_CREAT | O_EXCL, 0600, 1u);
        if (s != SEM_FAILED) {
            *sem = s;
            *created = 1;
            return 0;
        }
        if (errno == EINTR)
            continue;
        if (errno != EEXIST)
            return errno;
        if (create) {
            if (sem_unlink(name) != 0 && errno != ENOENT)
                return errno;
            continue;
        }
        s = sem_open(name, 0);
        if (s != SEM_FAILED) {
            *sem = s;
            return 0;
        }
        if (errno != ENOENT && errno != EINTR)
            return errno;
    }
    return EAGAIN;
}

int qtipc_psem_wait(void *sem, int64_t timeout_ns)
{
    sem_t *s = (sem_t *)sem;
    int r;
    if (timeout_ns < 0) {
        do {
            r = sem_wait(s);
        } while (r != 0 && errno == EINTR);
        return r == 0 ? 0 : errno;
    }
#if defined(__APPLE__)
    {
        int64_t deadline = shmc_monotonic_ns() + timeout_ns;
        for (;;) {
            if (sem_trywait(s) == 0)
                return 0;
            if (errno != EAGAIN && errno != EINTR)
                return errno;
            if (shmc_monotonic_ns() >= deadline)
                return ETIMEDOUT;
            sleep_briefly();
        }
    }
#else
    {
        struct timespec deadline = shmc_deadline_after(timeout_ns);
        do {
#if defined(SHMC_HAVE_CLOCKWAIT)
            r = sem_clockwait(s, SHMC_WAIT_CLOCK, &deadline);
#else
            r = sem_timedwait(s, &deadline);
#endif
        } while (r != 0 && errno == EINTR);
        return r == 0 ? 0 : errno;
    }
#endif
}

int qtipc_psem_post(void *sem)
{
    return sem_post((sem_t *)sem) == 0 ? 0 : errno;
}

int qtipc_psem_close(void *sem)
{
    return sem_close((sem_t *)sem) == 0 ? 0 : errno;
}

int qtipc_psem_unlink(const char *name)
{
    return sem_unlink(name) == 0 ? 0 : errno;
}

#else /* _WIN32 */

/* ---- Windows ---------------------------------------------------------- */

static int widen(const char *utf8, wchar_t **out)
{
    int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, utf8, -1, NULL, 0);
    wchar_t *w;
    if (n <= 0)
        return EINVAL;
    w = (wchar_t *)malloc((size_t)n * sizeof(wchar_t));
    if (w == NULL)
        return ENOMEM;
    MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, utf8, -1, w, n);
    *out = w;
    return 0;
}

int qtipc_win_shm_create(const char *name, size_t size, void **handle)
{
    wchar_t *w;
    DWORD high = (DWORD)(((unsigned long long)size) >> 32);
    DWORD low = (DWORD)(((unsigned long long)size) & 0xffffffffULL);
    HANDLE h;
    DWORD error;
    int err = widen(name, &w);
    if (err)
        return err;
    h = CreateFileMappingW(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE, high, low, w);
    error = GetLastError();
    free(w);
    if (h == NULL)
        return shmc_errno_of(error);
    if (error == ERROR_ALREADY_EXISTS) {
        CloseHandle(h);
        return EEXIST;
    }
    *handle = h;
    return 0;
}

int qtipc_win_shm_open(const char *name, int readonly, void **handle)
{
    wchar_t *w;
    HANDLE h;
    DWORD error;
    int err = widen(name, &w);
    if (err)
        return err;
    h = OpenFileMappingW(readonly ? FILE_MAP_READ : FILE_MAP_ALL_ACCESS, FALSE, w);
    error = GetLastError();
    free(w);
    if (h == NULL)
        return shmc_errno_of(error);
    *handle = h;
    return 0;
}

int qtipc_win_map(void *handle, int readonly, void **addr, size_t *size)
{
    MEMORY_BASIC_INFORMATION info;
    void *p = MapViewOfFile((HANDLE)handle, readonly ? FILE_MAP_READ : FILE_MAP_ALL_ACCESS,
                            0, 0, 0);
    if (p == NULL)
        return shmc_errno_of(GetLastError());
    if (VirtualQuery(p, &info, sizeof(info)) == 0) {
        UnmapViewOfFile(p);
        return EIO;
    }
    *addr = p;
    *size = (size_t)info.RegionSize;
    return 0;
}

int qtipc_win_unmap(void *addr)
{
    return UnmapViewOfFile(addr) ? 0 : shmc_errno_of(GetLastError());
}

int qtipc_win_sem_open(const char *name, void **handle)
{
    wchar_t *w;
    HANDLE h;
    DWORD error;
    int err = widen(name, &w);
    if (err)
        return err;
    h = CreateSemaphoreW(NULL, 1, MAXLONG, w);
    error = GetLastError();
    free(w);
    if (h == NULL)
        return shmc_errno_of(error);
    *handle = h;
    return 0;
}

int qtipc_win_sem_wait(void *handle, int64_t timeout_ns)
{
    DWORD ms = INFINITE;
    DWORD r;
    if (timeout_ns >= 0) {
        int64_t rounded = (timeout_ns + 500000) / 1000000;
        ms = rounded >= (int64_t)(INFINITE - 1) ? INFINITE - 1 : (DWORD)rounded;
    }
    r = WaitForSingleObjectEx((HANDLE)handle, ms, FALSE);
    if (r == WAIT_OBJECT_0)
        return 0;
    if (r == WAIT_TIMEOUT)
        return ETIMEDOUT;
    return shmc_errno_of(GetLastError());
}

int qtipc_win_sem_post(void *handle)
{
    return ReleaseSemaphore((HANDLE)handle, 1, NULL) ? 0 : shmc_errno_of(GetLastError());
}

int qtipc_win_close(void *handle)
{
    return CloseHandle((HANDLE)handle) ? 0 : shmc_errno_of(GetLastError());
}

#endif /* _WIN32 */
