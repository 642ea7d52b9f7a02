/* POSIX implementation of shm_platform.h.
 *
 * Lifetime on Linux: every attached process holds a shared flock() on its
 * descriptor; the kernel drops it when the process dies. Whoever can take an
 * exclusive flock (through a second descriptor, never by converting a held
 * lock, which drops it first) is alone and may unlink, after checking that the
 * name still names the inode it locked. New segments are built on an unnamed
 * O_TMPFILE in the shm directory and link()ed into place complete, so a
 * half-built segment is never visible and EEXIST is the atomic "exists".
 */
#if !defined(_WIN32)
#define _GNU_SOURCE
#include "compat.h"
#include "shm_platform.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if defined(__linux__)
#include <sys/sysmacros.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#endif

/* PTHREAD_MUTEX_ROBUST is an enum, not a macro: say where it exists. */
#if defined(__linux__) || defined(__FreeBSD__)
#define SHMP_HAVE_ROBUST 1
#endif

/* ---- portability (macOS first): no /dev/shm, no robust mutex, no
 * pthread_mutex_timedlock, no posix_fallocate. SHMP_FORCE_PORTABLE builds
 * these paths on Linux, as far as they can run there, for
 * tests/c/test_portable.c. ---- */
#if !defined(__linux__) || defined(SHMP_FORCE_PORTABLE)
#define SHMP_PORTABLE 1
#undef SHMP_HAVE_ROBUST
#include <signal.h>
#if defined(__APPLE__)
#include <sys/sysctl.h>
#endif
#if defined(SHMP_FORCE_PORTABLE)
#undef O_TMPFILE
#endif
/* Pins are taken through the descriptor a forked child shares: they must be
 * the process's record locks, never that description's (see range_holds). */
#undef F_OFD_SETLK

/* Segments are files in one directory on a regular file system, created
 * sticky and world-writable like /dev/shm (each file is still 0600). */
static const char *portable_dir(void) {
    static const char dir[] = "/tmp/shmimage";
    struct stat st;
    if (lstat(dir, &st) != 0 && mkdir(dir, 01777) == 0) chmod(dir, 01777);
    return dir;
}

#endif

/* Sleeping until a word in shared memory changes, as futex does on Linux:
 * 0 (changed, woken or spurious: callers recheck), ETIMEDOUT or an errno. */
#if defined(__APPLE__)
/* libSystem has exported these since macOS 10.12, without a public header
 * (libc++'s std::atomic wait uses them); the SHARED operation works across
 * processes on a shared mapping. */
extern int __ulock_wait(uint32_t op, void *addr, uint64_t value, uint32_t timeout_us);
extern int __ulock_wake(uint32_t op, void *addr, uint64_t wake_value);
#define SHMP_UL_COMPARE_AND_WAIT_SHARED 3u
#define SHMP_ULF_WAKE_ALL 0x100u
#define SHMP_ULF_NO_ERRNO 0x1000000u

static int word_wait(uint32_t *word, uint32_t expected, int64_t timeout_ns) {
    uint32_t us = 0; /* no timeout */
    if (timeout_ns >= 0) {
        int64_t u = timeout_ns / 1000 + 1;
        us = u > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)u;
    }
    int rc = __ulock_wait(SHMP_UL_COMPARE_AND_WAIT_SHARED | SHMP_ULF_NO_ERRNO, word, expected, us);
    return (rc >= 0 || rc == -EINTR) ? 0 : -rc;
}

static int word_wake(uint32_t *word) {
    __ulock_wake(SHMP_UL_COMPARE_AND_WAIT_SHARED | SHMP_ULF_WAKE_ALL | SHMP_ULF_NO_ERRNO, word, 0);
    return 0;
}
#elif defined(__linux__)
static int word_wait(uint32_t *word, uint32_t expected, int64_t timeout_ns) {
    struct timespec ts = {(time_t)(timeout_ns / 1000000000), (long)(timeout_ns % 1000000000)};
    if (syscall(SYS_futex, word, FUTEX_WAIT, expected, timeout_ns >= 0 ? &ts : NULL, NULL, 0) == 0)
        return 0;
    return (errno == EAGAIN || errno == EINTR) ? 0 : errno;
}

static int word_wake(uint32_t *word) {
    return syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0) < 0 ? errno : 0;
}
#else
/* No kernel wait on a word: short naps until it changes. */
static int word_wait(uint32_t *word, uint32_t expected, int64_t timeout_ns) {
    int64_t waited = 0;
    while (shmc_load_u32(word) == expected) {
        if (timeout_ns >= 0 && waited >= timeout_ns) return ETIMEDOUT;
        struct timespec nap = {0, 200000};
        nanosleep(&nap, NULL);
        waited += 200000;
    }
    return 0;
}

static int word_wake(uint32_t *word) {
    (void)word;
    return 0;
}
#endif

#if defined(__APPLE__)
/* Reserves disk blocks for [0, off + len), so that writing through the
 * mapping never meets a full disk (which would be SIGBUS). */
static int apple_fallocate(int fd, off_t off, off_t len) {
    struct stat st;
    if (fstat(fd, &st) != 0) return errno;
    off_t missing = off + len - (off_t)st.st_blocks * 512;
    if (missing <= 0) return 0;
    fstore_t fs = {F_ALLOCATECONTIG | F_ALLOCATEALL, F_PEOFPOSMODE, 0, missing, 0};
    if (fcntl(fd, F_PREALLOCATE, &fs) == 0) return 0;
    fs.fst_flags = F_ALLOCATEALL;
    if (fcntl(fd, F_PREALLOCATE, &fs) == 0) return 0;
    return errno == ENOSPC ? ENOSPC : EOPNOTSUPP;
}
#define posix_fallocate apple_fallocate
#endif

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

_Static_assert(sizeof(shmp_header) <= SHMP_HEADER_SIZE, "header too large");
_Static_assert(offsetof(shmp_header, key) == 56, "header layout");

#if defined(SHMP_PORTABLE)
#define SHM_DIR portable_dir()
#else
#define SHM_DIR "/dev/shm"
#endif
#define TMP_PREFIX ".shmimage-" /* a build's names before it goes under a key */
#define PIN_BASE 0x40000000LL
/* Below this a second thread costs more to start than it saves. */
#define PARALLEL_MIN (16u << 20)

#define my_pid shmc_pid

/* ---- descriptors of files this process holds record locks on ---- */

#if defined(SHMP_PORTABLE)
/* Without OFD locks (macOS), a process's POSIX record locks on a file (slot
 * pins, the subscriber registry) all drop when it closes ANY descriptor of
 * that file. So while a segment of a file is open here, no descriptor of
 * that file is closed: closes wait, per inode, until its last user leaves,
 * and a probe of such a file borrows an open descriptor instead of opening
 * (and closing) its own. */
typedef struct held_file {
    dev_t dev;
    ino_t ino;
    int users; /* open segments and borrowers */
    int nfds;
    int *fds; /* every descriptor of it kept here, closed together at the end */
    struct held_file *next;
} held_file;

static pthread_mutex_t held_mu = PTHREAD_MUTEX_INITIALIZER;
static held_file *held_files;
static uint32_t held_pid;

/* The entry of (dev, ino) or where it would go. held_mu held. A forked
 * child starts with an empty list: its locks are its own. */
static held_file **held_find(dev_t dev, ino_t ino) {
    if (held_pid != my_pid()) {
        held_files = NULL; /* the parent's entries stay the parent's */
        held_pid = my_pid();
    }
    held_file **p = &held_files;
    while (*p && ((*p)->dev != dev || (*p)->ino != ino)) p = &(*p)->next;
    return p;
}

static int held_keep(held_file *f, int fd) {
    for (int i = 0; i < f->nfds; i++)
        if (f->fds[i] == fd) return 0;
    int *more = realloc(f->fds, (size_t)(f->nfds + 1) * sizeof *more);
    if (!more) return ENOMEM;
    f->fds = more;
    f->fds[f->nfds++] = fd;
    return 0;
}

static int held_member(const held_file *f, int fd) {
    for (int i = 0; i < f->nfds; i++)
        if (f->fds[i] == fd) return 1;
    return 0;
}

/* Counts `fd`, a new descriptor of a segment file, as one more user. */
static int held_add(int fd) {
    struct stat st;
    if (fstat(fd, &st) != 0) return errno;
    pthread_mutex_lock(&held_mu);
    held_file **p = held_find(st.st_dev, st.st_ino);
    int fresh = *p == NULL, rc = 0;
    if (fresh && (*p = calloc(1, sizeof **p)) == NULL) rc = ENOMEM;
    if (!rc) {
        (*p)->dev = st.st_dev;
        (*p)->ino = st.st_ino;
        rc = held_keep(*p, fd);
        if (!rc) (*p)->users++;
        else if (fresh) {
            free(*p);
            *p = NULL;
        }
    }
    pthread_mutex_unlock(&held_mu);
    return rc;
}

/* Closes `fd` unless this process still uses its file: then it waits for
 * the last user. One user fewer when `fd` was one. */
static void held_close(int fd) {
    struct stat st;
    held_file *done = NULL;
    int now = 1;
    if (fstat(fd, &st) == 0) {
        pthread_mutex_lock(&held_mu);
        held_file **p = held_find(st.st_dev, st.st_ino);
        held_file *f = *p;
        if (f && held_member(f, fd) && --f->users == 0) {
            *p = f->next;
            done = f;
        } else if (f) {
            now = held_keep(f, fd) != 0; /* out of memory: close, as before */
        }
        pthread_mutex_unlock(&held_mu);
    }
    if (done) {
        for (int i = 0; i < done->nfds; i++) close(done->fds[i]);
        free(done->fds);
        free(done);
    } else if (now) {
        close(fd);
    }
}

/* An open descriptor of the file `path` names, when this process uses that
 * file (a user until held_close), else -1. */
static int held_borrow(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode)) return -1;
    pthread_mutex_lock(&held_mu);
    held_file *f = *held_find(st.st_dev, st.st_ino);
    int fd = f && f->nfds ? f->fds[0] : -1;
    if (fd >= 0) f->users++;
    pthread_mutex_unlock(&held_mu);
    return fd;
}
#else
/* OFD locks belong to their open file description: closing another one
 * drops none of them. */
static int held_add(int fd) { return (void)fd, 0; }
static void held_close(int fd) { close(fd); }
static int held_borrow(const char *path) { return (void)path, -1; }
#endif

const char *shmp_dir(void) { return SHM_DIR; }

int shmp_name_check(const char *name) {
    size_t n = strlen(name);
    if (n > SHMP_NAME_MAX) return ENAMETOOLONG;
    if (n < 2 || name[0] != '/' || strchr(name + 1, '/')) return EINVAL;
    if (strcmp(name, "/.") == 0 || strcmp(name, "/..") == 0) return EINVAL;
    return 0;
}

static int shm_path(char *out, size_t cap, const char *name) {
    int rc = shmp_name_check(name);
    if (rc) return rc;
    snprintf(out, cap, "%s%s", SHM_DIR, name);
    return 0;
}

/* Does `path` still name the inode open as `fd`? 0, ESTALE or an errno. */
static int same_inode(int fd, const char *path) {
    struct stat a, b;
    if (fstat(fd, &a) != 0) return errno;
    if (stat(path, &b) != 0) return errno == ENOENT ? ESTALE : errno;
    return (a.st_dev == b.st_dev && a.st_ino == b.st_ino) ? 0 : ESTALE;
}

static int header_ours(const shmp_header *h) {
    return h->magic == SHMP_MAGIC && h->version == SHMP_VERSION &&
           h->header_size == SHMP_HEADER_SIZE && h->state == SHMP_STATE_READY;
}

/* Read the fixed prefix of the header without mapping anything. */
static int read_header(int fd, shmp_header *h, off_t *file_size) {
    struct stat st;
    if (fstat(fd, &st) != 0) return errno;
    *file_size = st.st_size;
    memset(h, 0, sizeof(*h));
    if (st.st_size < (off_t)SHMP_HEADER_SIZE) return SHMP_EINCOMPAT;
    ssize_t got = pread(fd, h, offsetof(shmp_header, pad), 0);
    if (got < 0) return errno;
    if ((size_t)got < offsetof(shmp_header, pad)) return SHMP_EINCOMPAT;
    return 0;
}

/* Checks every field a reader relies on against the real file size. */
static int validate_header(const shmp_header *h, off_t file_size) {
    if (!header_ours(h)) return SHMP_EINCOMPAT;
    if (h->data_size == 0 || h->data_size > UINT64_MAX - SHMP_HEADER_SIZE)
        return SHMP_EINCOMPAT;
    if (h->total_size != SHMP_HEADER_SIZE + h->data_size) return SHMP_EINCOMPAT;
    if (h->total_size > (uint64_t)file_size || h->total_size > SIZE_MAX) return SHMP_EINCOMPAT;
    if (h->key_len > SHMP_KEY_MAX) return SHMP_EINCOMPAT;
    return 0;
}

/* ---- threads for large copies and reservations ---- */

typedef struct job {
    int (*fn)(struct job *);
    unsigned char *dst;
    const unsigned char *src;
    size_t len;
    int fd;
    off_t off;
    int rc;
    int index; /* which part of a split: 0 runs on the caller's thread */
} job;

static void *job_main(void *arg) {
    job *j = (job *)arg;
    j->rc = j->fn(j);
    return NULL;
}

/* Splits [0, len) into page-aligned parts, runs them on nthreads threads
 * (the caller's included) and returns the first error. */
static int run_split(job *proto, size_t len, int nthreads) {
    enum { MAXT = 8 };
    job jobs[MAXT];
    pthread_t tids[MAXT];
    int started[MAXT] = {0};
    if (nthreads < 1 || len < PARALLEL_MIN) nthreads = 1;
    if (nthreads > MAXT) nthreads = MAXT;
    size_t part = (len / (size_t)nthreads + 4095) & ~(size_t)4095;
    size_t at = 0;
    int n = 0;
    for (; n < nthreads && at < len; n++) {
        jobs[n] = *proto;
        jobs[n].index = n;
        jobs[n].len = (len - at < part || n == nthreads - 1) ? len - at : part;
        if (jobs[n].dst) jobs[n].dst += at;
        if (jobs[n].src) jobs[n].src += at;
        jobs[n].off += (off_t)at;
        at += jobs[n].len;
    }
    for (int i = 1; i < n; i++)
        started[i] = pthread_create(&tids[i], NULL, job_main, &jobs[i]) == 0;
    int rc = 0;
    for (int i = 0; i < n; i++) {
        if (i == 0 || !started[i]) job_main(&jobs[i]);
        else pthread_join(tids[i], NULL);
        if (!rc) rc = jobs[i].rc;
    }
    return rc;
}

static int copy_part(job *j) {
    memcpy(j->dst, j->src, j->len);
    return 0;
}

static int populate_part(job *j) {
#if defined(__linux__)
    if (madvise(j->dst, j->len, MADV_POPULATE_WRITE) == 0) return 0;
    int e = errno;
    if (e == EFAULT || e == ENOMEM || e == EIO) return ENOSPC;
    if (e != EINVAL) return e;
#endif
    int rc = posix_fallocate(j->fd, j->off, (off_t)j->len);
    if (rc == EINVAL || rc == EOPNOTSUPP) return 0;
    return rc == ENOMEM ? ENOSPC : rc;
}

/* Linux tmpfs does not zero a new page that a write() fills, where a page
 * reserved through the mapping is zeroed first and then copied over: the
 * first part of a fill is written, the others (writes to one file take its
 * inode lock in turn) are reserved and copied on their own threads. */
#if defined(__linux__) && !defined(SHMP_PORTABLE)
#define SHMP_FILL_BY_WRITE 1
static int write_part(job *j) {
    size_t done = 0;
    while (done < j->len) {
        ssize_t n = pwrite(j->fd, j->src + done, j->len - done, j->off + (off_t)done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return (errno == ENOMEM || errno == EFBIG) ? ENOSPC : errno;
        if (n == 0) return ENOSPC;
        done += (size_t)n;
    }
    return 0;
}
#endif

/* Reserve and copy a chunk at a time, so the pages the kernel has just
 * zeroed are overwritten while they are still in cache. */
#define FILL_CHUNK (1u << 20)
static int fill_part(job *j) {
#if defined(SHMP_FILL_BY_WRITE)
    if (j->index == 0) return write_part(j);
#endif
    for (size_t at = 0; at < j->len; at += FILL_CHUNK) {
        job part = *j;
        part.dst += at;
        part.off += (off_t)at;
        part.len = j->len - at < FILL_CHUNK ? j->len - at : FILL_CHUNK;
        int rc = populate_part(&part);
        if (rc) return rc;
        memcpy(part.dst, j->src + at, part.len);
    }
    return 0;
}

/* Gives back the pages of [off, off + len) (what a failed reservation of
 * this call took): the file keeps its size, the range reads as zeros. */
static void release_pages(shmp_seg *s, off_t off, size_t len) {
#if defined(__linux__) && defined(FALLOC_FL_PUNCH_HOLE)
    if (len && fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, (off_t)len) == 0)
        return;
    if (len) madvise(s->base + off, len, MADV_REMOVE);
#else
    (void)s, (void)off, (void)len; /* a disk file's blocks go with the file */
#endif
}

/* Runs `proto` (a reservation, or a reservation and copy) over `len` bytes
 * in steps of at most SHMP_ADMIT_STEP, admitting what is still missing
 * before each step; a failure midway releases every step taken. */
static int reserve_in_steps(shmp_seg *s, const job *proto, size_t len, int nthreads,
                            int admitted) {
    size_t done = 0;
    int rc = 0;
    if (!admitted) shmp_forget_admission();
    while (done < len) {
        size_t step = len - done < SHMP_ADMIT_STEP ? len - done : (size_t)SHMP_ADMIT_STEP;
        /* The first step of a build was admitted with the build itself. */
        if (!admitted || done) rc = shmp_admit(SHM_DIR, (uint64_t)(len - done));
        if (rc) break;
        job part = *proto;
        part.dst += done;
        if (part.src) part.src += done;
        part.off += (off_t)done;
        rc = run_split(&part, step, nthreads);
        if (rc) {
            size_t missing = len - done;
            release_pages(s, proto->off, done + step);
            /* The room ran out within the step: say how much is left. */
            if (rc == ENOSPC || rc == ENOMEM) shmp_admit(SHM_DIR, (uint64_t)missing);
            return rc;
        }
        done += step;
    }
    if (rc) release_pages(s, proto->off, done);
    return rc;
}

int shmp_fill(shmp_seg *s, uint64_t offset, const void *src, uint64_t len, int nthreads) {
    if (offset > s->map_size || len > s->map_size - offset) return EINVAL;
    if (!s->writable) return EACCES;
    if (offset % 4096) return EINVAL;
    job proto = {fill_part, s->base + offset, (const unsigned char *)src, 0, s->fd,
                 (off_t)offset, 0, 0};
    return reserve_in_steps(s, &proto, (size_t)len, nthreads, 0);
}

void shmp_copy(void *dst, const void *src, size_t len, int nthreads) {
    job proto = {copy_part, (unsigned char *)dst, (const unsigned char *)src, 0, -1, 0, 0, 0};
    run_split(&proto, len, nthreads);
}

/* `admitted`: the caller has just admitted the whole, as shmp_build does. */
static int reserve(shmp_seg *s, uint64_t offset, uint64_t len, int nthreads, int admitted) {
    if (offset > s->map_size || len > s->map_size - offset) return EINVAL;
    if (!s->writable) return EACCES;
    uint64_t start = offset & ~(uint64_t)4095;
    len += offset - start;
    job proto = {populate_part, s->base + start, NULL, 0, s->fd, (off_t)start, 0, 0};
    return reserve_in_steps(s, &proto, (size_t)len, nthreads, admitted);
}

int shmp_reserve(shmp_seg *s, uint64_t offset, uint64_t len, int nthreads) {
    return reserve(s, offset, len, nthreads, 0);
}

/* ---- building and publishing a segment ---- */

static int init_mutex(pthread_mutex_t *m) {
    pthread_mutexattr_t a;
    int rc = pthread_mutexattr_init(&a);
    if (rc) return rc;
    rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (!rc) rc = pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
#if defined(SHMP_HAVE_ROBUST)
    if (!rc) rc = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
#endif
    if (!rc) rc = pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
    return rc;
}

static void pins_here(shmp_seg *s) {
    s->pin_fd = s->fd;
    s->pin_pid = my_pid();
}

static void held_range_forget(shmp_seg *s);

/* Closes the segment's descriptors (the pin one only where this process
 * opened it), never one twice: a number closed once may already name
 * another thread's file. Its range locks go with them. */
static void close_fds(shmp_seg *s) {
    held_range_forget(s);
    if (s->pin_fd > 0 && s->pin_fd != s->fd && s->pin_pid == my_pid()) close(s->pin_fd);
    s->pin_fd = -1;
    if (s->fd >= 0) held_close(s->fd);
    s->fd = -1;
}

static void unmap_close(shmp_seg *s) {
    if (s->base) munmap(s->base, s->map_size);
    s->base = NULL;
    s->map_size = 0;
    close_fds(s);
}

/* An unnamed file in the shm directory (a temporary name where O_TMPFILE is
 * not supported; `tmp` receives it, empty otherwise). */
static int open_unnamed(char *tmp, size_t cap) {
    tmp[0] = '\0';
#if defined(O_TMPFILE)
    int fd = open(SHM_DIR, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)) return fd;
#endif
    for (unsigned i = 0; i < 100; i++) {
        snprintf(tmp, cap, "%s/" TMP_PREFIX "%ld-%u", SHM_DIR, (long)getpid(), i);
        int fd2 = open(tmp, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd2 >= 0 || errno != EEXIST) return fd2;
    }
    errno = EEXIST;
    return -1;
}

int shmp_discard(shmp_seg *s) {
    unmap_close(s);
    if (s->tmp[0]) unlink(s->tmp);
    s->tmp[0] = '\0';
    return 0;
}

int shmp_build(shmp_seg *s, uint64_t data_size, uint64_t reserve_bytes, int persistent,
               const char *key, size_t key_len) {
    memset(s, 0, sizeof(*s));
    s->fd = -1;
    if (data_size == 0) return EINVAL;
    if (data_size > (uint64_t)SSIZE_MAX - SHMP_HEADER_SIZE) return ENOSPC;
    if (key_len > SHMP_KEY_MAX) return ENAMETOOLONG;
    uint64_t total = SHMP_HEADER_SIZE + data_size;
    if (reserve_bytes > data_size) reserve_bytes = data_size;
    /* Refused before anything exists; shmp_reserve rechecks at each step. */
    shmp_forget_admission();
    int rc = shmp_admit(SHM_DIR, SHMP_HEADER_SIZE + reserve_bytes);
    if (rc) return rc;
    s->fd = open_unnamed(s->tmp, sizeof s->tmp);
    if (s->fd < 0) return errno;
    rc = held_add(s->fd);
    if (rc) {
        close(s->fd);
        s->fd = -1;
        shmp_discard(s);
        return rc;
    }
    if (fchmod(s->fd, 0600) != 0 || ftruncate(s->fd, (off_t)total) != 0) rc = errno;
    if (!rc) {
        void *p = mmap(NULL, (size_t)total, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
        if (p == MAP_FAILED) rc = errno;
        else s->base = (unsigned char *)p;
    }
    if (!rc) {
        s->map_size = (size_t)total;
        s->writable = 1;
        rc = reserve(s, 0, SHMP_HEADER_SIZE + reserve_bytes, 2, 1);
    }
    if (!rc) {
        shmp_header *h = shmp_hdr(s);
        h->magic = SHMP_MAGIC;
        h->version = SHMP_VERSION;
        h->header_size = SHMP_HEADER_SIZE;
        h->data_size = data_size;
        h->total_size = total;
        h->flags = persistent ? SHMP_FLAG_PERSISTENT : 0;
        h->creator_pid = (uint32_t)getpid();
        h->key_len = (uint32_t)key_len;
        memcpy(h->key, key, key_len);
        rc = init_mutex(&h->mutex);
        if (!rc && flock(s->fd, LOCK_SH) != 0) rc = errno;
        if (!rc) h->state = SHMP_STATE_READY;
    }
    if (rc) {
        shmp_discard(s);
        return (rc == EFBIG || rc == ENOMEM) ? ENOSPC : rc;
    }
    pins_here(s);
    return 0;
}

static void named(shmp_seg *s, const char *name) {
    pins_here(s);
    struct stat st;
    if (fstat(s->fd, &st) == 0) {
        s->dev = st.st_dev;
        s->ino = st.st_ino;
    }
    snprintf(s->name, sizeof s->name, "%s", name);
}

/* Gives the built segment the name `path`: EEXIST when the name is taken. */
static int link_into_place(shmp_seg *s, const char *path) {
    if (s->tmp[0]) return link(s->tmp, path) == 0 ? 0 : errno;
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", s->fd);
    if (linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW) == 0) return 0;
    int e = errno;
#if defined(AT_EMPTY_PATH)
    if (e == ENOENT && linkat(s->fd, "", AT_FDCWD, path, AT_EMPTY_PATH) == 0) return 0;
    if (e == ENOENT) e = errno;
#endif
    return e;
}

/* Opens an existing segment file by name without following a symlink or
 * blocking on a FIFO planted under the name: anything but a regular file is
 * SHMP_EINCOMPAT. (O_NONBLOCK changes nothing for regular files.) */
static int open_segment_file(const char *path, int flags, int *out) {
    int fd = open(path, flags | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) return errno == ELOOP ? SHMP_EINCOMPAT : errno;
    struct stat st;
    int rc = fstat(fd, &st) != 0 ? errno : S_ISREG(st.st_mode) ? 0 : SHMP_EINCOMPAT;
    if (rc) {
        close(fd);
        return rc;
    }
    *out = fd;
    return 0;
}

/* A second descriptor on `path`, exclusively flocked: proves nobody holds
 * the segment. 0 (fd in *out), EWOULDBLOCK when held, ESTALE when the name
 * moved meanwhile, or an errno (ENOENT). */
static int lock_alone(const char *path, int *out) {
    int fd = held_borrow(path);
    if (fd >= 0) { /* this process holds it: not alone, and nothing to close */
        held_close(fd);
        return EWOULDBLOCK;
    }
    int rc = open_segment_file(path, O_RDONLY, &fd);
    if (rc) return rc;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) rc = errno == EWOULDBLOCK ? EWOULDBLOCK : errno;
    if (!rc) rc = same_inode(fd, path);
    if (rc) {
        held_close(fd);
        return rc;
    }
    *out = fd;
    return 0;
}

/* Is the builder that named a temporary ".shmimage-PID-..." file gone? */
static int builder_gone(const char *entry) {
    char *end;
    long pid = strtol(entry + sizeof TMP_PREFIX - 1, &end, 10);
    if (end == entry + sizeof TMP_PREFIX - 1 || *end != '-' || pid <= 0) return 0;
    return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

void shmp_sweep_builds(void) {
    DIR *dir = opendir(SHM_DIR);
    if (!dir) return;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (strncmp(e->d_name, TMP_PREFIX, sizeof TMP_PREFIX - 1) != 0) continue;
        /* "-grow" is linked with the builder's flock held: unheld, it is
         * left over. A temporary build name is unlocked until its build
         * is done: only once its process is gone too. */
        size_t n = strlen(e->d_name);
        int grow = n > 5 && strcmp(e->d_name + n - 5, "-grow") == 0;
        if (!grow && !builder_gone(e->d_name)) continue;
        char path[128];
        int fd = -1;
        snprintf(path, sizeof path, "%s/%s", SHM_DIR, e->d_name);
        if (lock_alone(path, &fd) != 0) continue;
        unlink(path);
        held_close(fd);
    }
    closedir(dir);
}

/* One (dev, ino) among many, for counting in one pass over the table. */
typedef struct lock_key {
    uint64_t dev, ino;
    size_t index;
} lock_key;

static int by_inode(const void *a, const void *b) {
    const lock_key *x = a, *y = b;
    if (x->ino != y->ino) return x->ino < y->ino ? -1 : 1;
    return x->dev < y->dev ? -1 : x->dev > y->dev;
}

/* Adds to counts[k->index] the flock()s the kernel's lock table holds on each
 * of the n sorted keys, in one read of the table. 0, or ENOSYS where there is
 * no table to read. */
static int count_flocks(const lock_key *keys, size_t n, int *counts) {
#if defined(__linux__)
    FILE *f = fopen("/proc/locks", "re");
    if (!f) return ENOSYS;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        char kind[16];
        unsigned maj, min;
        unsigned long long i;
        /* "1: FLOCK  ADVISORY  READ  1234 00:1a:5678 0 EOF" ("->" for waiters) */
        const char *p = strchr(line, ':');
        if (!p || strstr(line, "->")) continue;
        if (sscanf(p + 1, " %15s %*s %*s %*d %x:%x:%llu", kind, &maj, &min, &i) != 4) continue;
        if (strcmp(kind, "FLOCK") != 0) continue;
        lock_key probe = {(uint64_t)makedev(maj, min), (uint64_t)i, 0};
        const lock_key *hit = bsearch(&probe, keys, n, sizeof *keys, by_inode);
        if (hit) counts[hit->index]++;
    }
    fclose(f);
    return 0;
#else
    (void)keys, (void)n, (void)counts;
    return ENOSYS;
#endif
}

/* How many flock()s the kernel's lock table holds on (dev, ino): -1 where
 * there is no such table to read. */
static int flocks_on(uint64_t dev, uint64_t ino) {
    lock_key key = {dev, ino, 0};
    int held = 0;
    return count_flocks(&key, 1, &held) ? -1 : held;
}

int shmp_attachments(const shmp_probe_info *infos, size_t n, int *counts) {
    lock_key *keys = malloc((n ? n : 1) * sizeof *keys);
    if (!keys) return ENOMEM;
    size_t live = 0;
    for (size_t i = 0; i < n; i++) {
        counts[i] = 0;
        if (!infos[i].stale) keys[live++] = (lock_key){infos[i].dev, infos[i].ino, i};
    }
    qsort(keys, live, sizeof *keys, by_inode);
    if (live && count_flocks(keys, live, counts) == ENOSYS)
        for (size_t k = 0; k < live; k++) counts[keys[k].index] = -1;
    free(keys);
    return 0;
}

/* Does any process hold a flock on a segment this one replaced? Those
 * inodes have no name left, so ask the kernel's lock table. A file system
 * that reuses inode numbers (ext4, for the portable directory) may give a
 * predecessor's number to the segment itself (dev, ino): that one is not a
 * predecessor, and its own flock is the caller's. */
static int predecessors_held(const shmp_header *h, uint64_t dev, uint64_t ino) {
    for (int i = 0; i < SHMP_MAX_PRED && h->pred_ino[i]; i++) {
        if (h->pred_dev[i] == dev && h->pred_ino[i] == ino) continue;
        int n = flocks_on(h->pred_dev[i], h->pred_ino[i]);
#if defined(__linux__)
        if (n != 0) return 1; /* held, or the table unreadable: keep it */
#else
        if (n > 0) return 1;
#endif
    }
    return 0;
}

int shmp_probe(const char *name, int reclaim, shmp_probe_info *info) {
    char path[128];
    int rc = shm_path(path, sizeof path, name);
    if (rc) return rc;
    memset(info, 0, sizeof(*info));
    int fd = -1;
    rc = lock_alone(path, &fd);
    int stale = rc == 0;
    if (rc == EWOULDBLOCK) {
        fd = held_borrow(path);
        rc = fd >= 0 ? 0 : open_segment_file(path, O_RDONLY, &fd);
    }
    if (rc) return rc == ESTALE ? EAGAIN : rc;
    shmp_header h;
    off_t size;
    struct stat st;
    if (fstat(fd, &st) == 0) {
        info->dev = (uint64_t)st.st_dev;
        info->ino = (uint64_t)st.st_ino;
    }
    rc = read_header(fd, &h, &size);
    if (!rc && validate_header(&h, size) == 0) {
        info->ours = 1;
        info->persistent = (h.flags & SHMP_FLAG_PERSISTENT) != 0;
        info->data_size = h.data_size;
        memcpy(info->key, h.key, h.key_len);
        if (stale && predecessors_held(&h, info->dev, info->ino)) stale = 0;
    }
    info->stale = stale;
    if (stale && reclaim && info->ours && !info->persistent) {
        if (unlink(path) == 0) info->reclaimed = 1;
    }
    held_close(fd);
    return rc == SHMP_EINCOMPAT ? 0 : rc;
}

/* EEXIST taken by a live (or persistent, or foreign) segment; 0 when the
 * name is free again (it was stale and is removed, or it just went away). */
static int free_if_stale(const char *name) {
    shmp_probe_info info;
    int rc = shmp_probe(name, 1, &info);
    if (rc == ENOENT || rc == EAGAIN) return 0;
    if (rc) return rc;
    return info.reclaimed ? 0 : EEXIST;
}

int shmp_link(shmp_seg *s, const char *name) {
    char path[128];
    int rc = shm_path(path, sizeof path, name);
    if (rc) return rc;
    for (int attempt = 0; attempt < 32; attempt++) {
        rc = link_into_place(s, path);
        if (rc != EEXIST) break;
        rc = free_if_stale(name);
        if (rc) break;
        rc = EEXIST;
    }
    if (rc) return rc;
    if (s->tmp[0]) unlink(s->tmp);
    s->tmp[0] = '\0';
    named(s, name);
    return 0;
}

int shmp_swap(shmp_seg *s, shmp_seg *old) {
    char path[128], from[128];
    int rc = shm_path(path, sizeof path, old->name);
    if (rc) return rc;
    rc = same_inode(old->fd, path);
    if (rc) return rc == ESTALE ? ENOENT : rc;
    shmp_header *h = shmp_hdr(s), *oh = shmp_hdr(old);
    h->pred_dev[0] = (uint64_t)old->dev;
    h->pred_ino[0] = (uint64_t)old->ino;
    for (int i = 1; i < SHMP_MAX_PRED; i++) {
        h->pred_dev[i] = oh->pred_dev[i - 1];
        h->pred_ino[i] = oh->pred_ino[i - 1];
    }
    /* rename() replaces atomically but needs a name to move from. */
    if (s->tmp[0]) {
        snprintf(from, sizeof from, "%s", s->tmp);
    } else {
        snprintf(from, sizeof from, "%s/" TMP_PREFIX "%ld-grow", SHM_DIR, (long)getpid());
        unlink(from);
        rc = link_into_place(s, from);
    }
    if (!rc && rename(from, path) != 0) rc = errno;
    if (rc) {
        unlink(from);
        return rc;
    }
    s->tmp[0] = '\0';
    shmc_fetch_or_u32(&shmp_hdr(old)->flags, SHMP_FLAG_SUPERSEDED);
    named(s, old->name);
    return 0;
}

/* ---- attaching and leaving ---- */

/* Only segments of our own user, that no other user could have written:
 * one squatted under our name by someone else is refused. */
static int owned_privately(int fd) {
    struct stat st;
    if (fstat(fd, &st) != 0) return errno;
    return (st.st_uid == geteuid() && (st.st_mode & 077) == 0) ? 0 : EACCES;
}

/* Does the header list (dev, ino) among the segments it replaced? */
static int lists_predecessor(const shmp_header *h, uint64_t dev, uint64_t ino) {
    for (int i = 0; i < SHMP_MAX_PRED; i++)
        if (h->pred_ino[i] == ino && h->pred_dev[i] == dev && ino) return 1;
    return 0;
}

int shmp_replaced(shmp_seg *s) {
    if (s->replaced || (shmc_load_u32(&shmp_hdr(s)->flags) & SHMP_FLAG_SUPERSEDED)) return 1;
    char path[128];
    struct stat st;
    if (shm_path(path, sizeof path, s->name) != 0 || stat(path, &st) != 0) return 0;
    if (st.st_dev == s->dev && st.st_ino == s->ino) return 0; /* still under the name */
    /* Through the process's own descriptor where it has one: closing another
     * would drop its record locks where they belong to the process. */
    int fd = held_borrow(path);
    if (fd < 0) {
        if (open_segment_file(path, O_RDONLY, &fd) != 0) return 0;
        if (held_add(fd) != 0) {
            close(fd);
            return 0;
        }
    }
    shmp_header h;
    off_t size;
    int found = read_header(fd, &h, &size) == 0 && header_ours(&h) &&
                owned_privately(fd) == 0 &&
                lists_predecessor(&h, (uint64_t)s->dev, (uint64_t)s->ino);
    held_close(fd);
    if (!found) return 0; /* removed, then made anew: not a successor */
    if (s->writable) shmc_fetch_or_u32(&shmp_hdr(s)->flags, SHMP_FLAG_SUPERSEDED);
    else s->replaced = 1;
    return 1;
}

static int attach_once(shmp_seg *s, const char *path, int writable) {
    int rc = open_segment_file(path, writable ? O_RDWR : O_RDONLY, &s->fd);
    if (!rc && (rc = held_add(s->fd)) != 0) close(s->fd);
    if (rc) {
        s->fd = -1;
        return rc;
    }
    while (flock(s->fd, LOCK_SH) != 0) {
        if (errno != EINTR) {
            rc = errno;
            break;
        }
    }
    if (!rc) rc = same_inode(s->fd, path);
    if (!rc) rc = owned_privately(s->fd);
    shmp_header h;
    off_t size = 0;
    if (!rc) rc = read_header(s->fd, &h, &size);
    if (!rc) rc = validate_header(&h, size);
    if (!rc) {
        int prot = PROT_READ | (writable ? PROT_WRITE : 0);
        void *p = mmap(NULL, (size_t)h.total_size, prot, MAP_SHARED, s->fd, 0);
        if (p == MAP_FAILED) rc = errno;
        else {
            s->base = (unsigned char *)p;
            s->map_size = (size_t)h.total_size;
        }
    }
    if (!rc) {
        /* The mapped header must agree with what was validated. */
        shmp_header *m = shmp_hdr(s);
        if (m->total_size != h.total_size || m->data_size != h.data_size) rc = SHMP_EINCOMPAT;
    }
    if (rc) unmap_close(s);
    return rc;
}

int shmp_attach(shmp_seg *s, const char *name, int writable) {
    char path[128];
    int rc = shm_path(path, sizeof path, name);
    if (rc) return rc;
    memset(s, 0, sizeof(*s));
    s->fd = -1;
    /* A segment every holder of which is gone is reclaimed, not joined. */
    shmp_probe_info info;
    for (int attempt = 0; attempt < 64; attempt++) {
        rc = shmp_probe(name, 1, &info);
        if (rc == EAGAIN) continue;
        if (rc) return rc;
        if (info.reclaimed) return ENOENT;
        rc = attach_once(s, path, writable);
        if (rc != ESTALE) break;
    }
    if (rc) return rc == ESTALE ? ENOENT : rc;
    s->writable = writable;
    named(s, name);
    return 0;
}

int shmp_close(shmp_seg *s) {
    unmap_close(s);
    return 0;
}

int shmp_leave(shmp_seg *s) {
    char path[128];
    int keep = shm_path(path, sizeof path, s->name) != 0 ||
               (shmp_hdr(s)->flags & SHMP_FLAG_PERSISTENT) != 0;
    dev_t dev = s->dev;
    ino_t ino = s->ino;
    /* A mapping keeps the open file description, and so its flock, alive
     * after close(): drop the lock explicitly. */
    if (s->fd >= 0) flock(s->fd, LOCK_UN);
    close_fds(s);
    if (keep) return 0;
    if (shmc_load_u32(&shmp_hdr(s)->flags) & SHMP_FLAG_SUPERSEDED) {
        /* A larger segment replaced ours under the name; with us gone it
         * may be stale now. */
        shmp_probe_info info;
        if (shmp_probe(s->name, 1, &info) == 0 && info.reclaimed) shmp_sweep_builds();
        return 0;
    }
    int fd = -1;
    if (lock_alone(path, &fd) != 0) return 0; /* others still hold it, or it is gone */
    struct stat st;
    int last = fstat(fd, &st) == 0 && st.st_dev == dev && st.st_ino == ino &&
               !predecessors_held(shmp_hdr(s), (uint64_t)dev, (uint64_t)ino);
    if (last) unlink(path);
    held_close(fd);
    if (last) shmp_sweep_builds(); /* the last holder of a key: what its growers left */
    return 0;
}

int shmp_detach(shmp_seg *s) {
    shmp_leave(s);
    unmap_close(s);
    return 0;
}

int shmp_remove(const char *name) {
    char path[128];
    int rc = shm_path(path, sizeof path, name);
    if (rc) return rc;
    return unlink(path) == 0 ? 0 : errno;
}

/* ---- the mutex ---- */

#if !defined(SHMP_PORTABLE)
static int took_lock(shmp_seg *s, int rc, int *owner_died) {
    *owner_died = 0;
#if defined(SHMP_HAVE_ROBUST)
    if (rc == EOWNERDEAD) {
        *owner_died = 1;
        rc = pthread_mutex_consistent(&shmp_hdr(s)->mutex);
    }
#endif
    if (!rc) shmp_hdr(s)->lock_owner_pid = my_pid();
    return rc;
}

int shmp_lock_try(shmp_seg *s, int *owner_died) {
    return took_lock(s, pthread_mutex_trylock(&shmp_hdr(s)->mutex), owner_died);
}

int shmp_lock_wait(shmp_seg *s, int64_t timeout_ns, int *owner_died) {
    pthread_mutex_t *m = &shmp_hdr(s)->mutex;
    if (timeout_ns < 0) return took_lock(s, pthread_mutex_lock(m), owner_died);
    struct timespec ts = shmc_deadline_after(timeout_ns);
#if defined(SHMC_HAVE_CLOCKWAIT)
    return took_lock(s, pthread_mutex_clocklock(m, SHMC_WAIT_CLOCK, &ts), owner_died);
#else
    return took_lock(s, pthread_mutex_timedlock(m, &ts), owner_died);
#endif
}

int shmp_unlock(shmp_seg *s) {
    shmp_header *h = shmp_hdr(s);
    uint32_t pid = h->lock_owner_pid;
    h->lock_owner_pid = 0;
    int rc = pthread_mutex_unlock(&h->mutex);
    if (rc) h->lock_owner_pid = pid;
    return rc;
}
#else /* SHMP_PORTABLE */
/* No robust mutex here: lock_owner_pid itself is the lock, taken by CAS from
 * 0 to the taker's pid. A holder found dead is replaced by CAS too, and the
 * taker is told owner_died. Dead means gone (kill(pid, 0) gives ESRCH), a
 * zombie, or a pid now naming another process: lock_owner_start holds the
 * holder's start time, and a live process under that pid that started at
 * another time is not the holder. reserved0 names the holding thread, for
 * EDEADLK. Waiters sleep on the word (word_wait) in slices, rechecking the
 * holder's liveness after each. */
#define LIVENESS_SLICE_NS 100000000
static uint32_t thread_token(void) {
    static _Thread_local uint32_t token;
    static uint32_t next;
    if (!token) token = shmc_add_u32(&next, 1);
    return token;
}

static uint64_t load_u64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static void store_u64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
static int cas_u64(uint64_t *p, uint64_t *expected, uint64_t desired) {
    return __atomic_compare_exchange_n(p, expected, desired, 0, __ATOMIC_SEQ_CST,
                                       __ATOMIC_SEQ_CST);
}

/* What the system says of a pid: *zombie, and *start, its start time + 1
 * (0 where unknown). ESRCH when there is no such process. */
static int proc_facts(uint32_t pid, int *zombie, uint64_t *start) {
    *zombie = 0;
    *start = 0;
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH) return ESRCH;
#if defined(__APPLE__)
    int mib[4] = {CTL_KERN, KERN_PROC, KERN_PROC_PID, (int)pid};
    struct kinfo_proc kp;
    size_t len = sizeof kp;
    if (sysctl(mib, 4, &kp, &len, NULL, 0) != 0 || len != sizeof kp) return 0;
    *zombie = kp.kp_proc.p_stat == SZOMB;
    const struct timeval *t = &kp.kp_proc.p_starttime;
    *start = (uint64_t)t->tv_sec * 1000000u + (uint64_t)t->tv_usec + 1;
#elif defined(__linux__)
    char path[32], buf[1024];
    snprintf(path, sizeof path, "/proc/%u/stat", (unsigned)pid);
    FILE *f = fopen(path, "re");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *end = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!end || end[1] != ' ') return 0;
    *zombie = end[2] == 'Z';
    /* Field 22, starttime, in clock ticks since boot; the state is field 3. */
    unsigned long long ticks;
    const char *p = end + 2;
    for (int field = 3; field < 22 && p; field++) {
        p = strchr(p, ' ');
        if (p) p++;
    }
    if (p && sscanf(p, "%llu", &ticks) == 1) *start = (uint64_t)ticks + 1;
#endif
    return 0;
}

/* This process's start time + 1 (0 where unknown); a forked child asks again. */
static uint64_t my_start(void) {
    static uint64_t start;
    static uint32_t of;
    if (of != my_pid()) {
        int zombie;
        proc_facts(my_pid(), &zombie, &start);
        of = my_pid();
    }
    return start;
}

/* Is the holder recorded as (pid, start) gone? start 0: not known (a taker
 * between its CAS and storing it, or an older segment): the pid alone says. */
static int holder_dead(uint32_t pid, uint64_t start) {
    if (pid == 0) return 0;
    int zombie;
    uint64_t now;
    if (proc_facts(pid, &zombie, &now) == ESRCH || zombie) return 1;
    return start != 0 && now != 0 && now != start;
}

int shmp_lock_try(shmp_seg *s, int *owner_died) {
    shmp_header *h = shmp_hdr(s);
    uint32_t me = my_pid(), seen = 0;
    *owner_died = 0;
    if (!shmc_cas_u32(&h->lock_owner_pid, &seen, me)) {
        uint64_t start = load_u64(&h->lock_owner_start);
        /* Our pid, but another start time: a dead process that had it. */
        int ours = seen == me && (start == 0 || start == my_start());
        if (ours && shmc_load_relaxed_u32(&h->reserved0) == thread_token()) return EDEADLK;
        if (ours || shmc_load_u32(&h->lock_owner_pid) != seen || !holder_dead(seen, start))
            return EBUSY;
        /* Clear the dead holder's start time before taking its place, so
         * that nobody judges the new holder by it. */
        if (start && !cas_u64(&h->lock_owner_start, &start, 0)) return EBUSY;
        if (!shmc_cas_u32(&h->lock_owner_pid, &seen, me)) return EBUSY;
        *owner_died = 1;
    }
    store_u64(&h->lock_owner_start, my_start());
    shmc_store_relaxed_u32(&h->reserved0, thread_token());
    return 0;
}

int shmp_lock_wait(shmp_seg *s, int64_t timeout_ns, int *owner_died) {
    uint32_t *word = &shmp_hdr(s)->lock_owner_pid;
    int64_t t0 = shmc_monotonic_ns();
    for (;;) {
        int rc = shmp_lock_try(s, owner_died);
        if (rc != EBUSY) return rc;
        int64_t spent = shmc_monotonic_ns() - t0;
        int64_t slice = LIVENESS_SLICE_NS;
        if (timeout_ns >= 0) {
            if (spent >= timeout_ns) return ETIMEDOUT;
            if (timeout_ns - spent < slice) slice = timeout_ns - spent;
        }
        uint32_t holder = shmc_load_u32(word);
        if (holder) {
            rc = word_wait(word, holder, slice);
            if (rc && rc != ETIMEDOUT) return rc;
        }
    }
}

int shmp_unlock(shmp_seg *s) {
    shmp_header *h = shmp_hdr(s);
    if (shmc_load_relaxed_u32(&h->lock_owner_pid) != my_pid() ||
        shmc_load_relaxed_u32(&h->reserved0) != thread_token())
        return EPERM;
    shmc_store_relaxed_u32(&h->reserved0, 0);
    store_u64(&h->lock_owner_start, 0); /* before the pid: see shmp_lock_try */
    shmc_store_u32(&h->lock_owner_pid, 0);
    word_wake(&h->lock_owner_pid);
    return 0;
}
#endif /* SHMP_PORTABLE */

void shmp_nap(void) {
    struct timespec t = {0, 500000};
    nanosleep(&t, NULL);
}

/* ---- wait and wake ---- */

int shmp_wait(shmp_seg *s, uint32_t *word, uint32_t expected, int64_t timeout_ns) {
    (void)s;
    return word_wait(word, expected, timeout_ns);
}

int shmp_wake(shmp_seg *s, uint32_t *word) {
    (void)s;
    return word_wake(word);
}

/* ---- per-slot pins ---- */

#if defined(F_OFD_SETLK)
#define SETLK F_OFD_SETLK
#define GETLK F_OFD_GETLK
#else
#define SETLK F_SETLK /* per process, not per handle: the Python layer counts */
#define GETLK F_GETLK
#endif

/* This process's own descriptor for pins: a forked child reopens the file
 * once, so its pins and its parent's never merge or release each other. */
static int pin_fd_of(shmp_seg *s) {
#if defined(SHMP_PORTABLE)
    /* Record locks belong to the process: a child's never merge with its
     * parent's, and a second descriptor would only risk dropping them. */
    return s->fd;
#else
    if (s->pin_pid != my_pid()) {
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", s->fd);
        int fd = open(proc, (s->writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
        if (fd < 0) return -1;
        s->pin_fd = fd;
        s->pin_pid = my_pid();
    }
    return s->pin_fd;
#endif
}

static int range_op(shmp_seg *s, uint64_t index, short type, int cmd, struct flock *out) {
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = (off_t)(PIN_BASE + (long long)index);
    fl.l_len = 1;
    int fd = pin_fd_of(s);
    if (fd < 0 || fcntl(fd, cmd, &fl) != 0) return (errno == EACCES) ? EAGAIN : errno;
    if (out) *out = fl;
    return 0;
}

static int range_kernel_test(shmp_seg *s, uint64_t index, int *locked) {
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    int rc = range_op(s, index, F_WRLCK, GETLK, &fl);
    if (!rc) *locked = fl.l_type != F_UNLCK;
    return rc;
}

#if defined(SHMP_PORTABLE)
/* ---- range locks per handle, where the kernel's belong to the process ----
 * POSIX record locks belong to the process: F_GETLK does not report its own
 * locks to it and F_SETLK never refuses it, so two handles of one process (a
 * writer and a reader of one store, a subscription) would neither see nor
 * exclude each other's pins and registry entries. Here each handle gets
 * its own locks, as Linux's OFD locks give them: this table holds which
 * handle of this process holds what on each byte (per file), decides
 * conflicts between them, and the kernel holds the process's lock on a
 * byte while any handle does, for other processes to see. A handle is its
 * shmp_seg (by address: segments are not moved while they hold locks).
 * A forked child holds none of its parent's locks: it starts empty. */
typedef struct range_hold {
    dev_t dev;
    ino_t ino;
    uint64_t index;
    const shmp_seg *owner;
    int exclusive;
    struct range_hold *next;
} range_hold;

#define RANGE_BUCKETS 256
static range_hold *range_holds[RANGE_BUCKETS];
static pthread_mutex_t range_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t range_once = PTHREAD_ONCE_INIT;

static void range_fork_prepare(void) { pthread_mutex_lock(&range_mu); }
static void range_fork_parent(void) { pthread_mutex_unlock(&range_mu); }

static void range_fork_child(void) {
    for (int b = 0; b < RANGE_BUCKETS; b++) {
        while (range_holds[b]) {
            range_hold *h = range_holds[b];
            range_holds[b] = h->next;
            free(h);
        }
    }
    pthread_mutex_unlock(&range_mu);
}

static void range_init(void) {
    pthread_atfork(range_fork_prepare, range_fork_parent, range_fork_child);
}

/* Takes the table's mutex; fills in the file a handle built but not yet
 * named holds. */
static void range_enter(shmp_seg *s) {
    pthread_once(&range_once, range_init);
    pthread_mutex_lock(&range_mu);
    struct stat st;
    if (s->ino == 0 && s->fd >= 0 && fstat(s->fd, &st) == 0) {
        s->dev = st.st_dev;
        s->ino = st.st_ino;
    }
}

static range_hold **range_bucket(const shmp_seg *s, uint64_t index) {
    uint64_t h = ((uint64_t)s->ino * 0x9e3779b97f4a7c15ULL) ^ (uint64_t)s->dev ^ index;
    return &range_holds[(h ^ h >> 29) % RANGE_BUCKETS];
}

static int range_same(const range_hold *h, const shmp_seg *s, uint64_t index) {
    return h->index == index && h->ino == s->ino && h->dev == s->dev;
}

/* Who holds `index` of s's file here: *mine (s's own hold, or NULL), and
 * how many other handles hold it, exclusively or at all. Mutex held. */
static range_hold **range_look(const shmp_seg *s, uint64_t index, int *others, int *others_excl) {
    range_hold **mine = NULL;
    *others = *others_excl = 0;
    for (range_hold **p = range_bucket(s, index); *p; p = &(*p)->next) {
        if (!range_same(*p, s, index)) continue;
        if ((*p)->owner == s) {
            mine = p;
        } else {
            (*others)++;
            *others_excl += (*p)->exclusive;
        }
    }
    return mine;
}

static int held_range_lock(shmp_seg *s, uint64_t index, int exclusive) {
    int others, others_excl, rc = 0;
    range_enter(s);
    range_hold **mine = range_look(s, index, &others, &others_excl);
    range_hold *fresh = NULL;
    if (others_excl || (exclusive && others)) rc = EAGAIN;
    else if (!mine && (fresh = calloc(1, sizeof *fresh)) == NULL) rc = ENOMEM;
    /* Other handles' shared holds keep the kernel's shared lock. */
    else if (exclusive || !others)
        rc = range_op(s, index, exclusive ? F_WRLCK : F_RDLCK, SETLK, NULL);
    if (!rc && mine) {
        (*mine)->exclusive = exclusive;
    } else if (!rc) {
        range_hold **b = range_bucket(s, index);
        *fresh = (range_hold){s->dev, s->ino, index, s, exclusive, *b};
        *b = fresh;
    } else {
        free(fresh);
    }
    pthread_mutex_unlock(&range_mu);
    return rc;
}

/* Drops s's hold of `index` (*mine, when it has one); the kernel's lock
 * goes with the last hold of this process. Mutex held. */
static int range_drop(shmp_seg *s, uint64_t index, range_hold **mine, int others) {
    if (mine) {
        range_hold *h = *mine;
        *mine = h->next;
        free(h);
    }
    return others ? 0 : range_op(s, index, F_UNLCK, SETLK, NULL);
}

static int held_range_unlock(shmp_seg *s, uint64_t index) {
    int others, others_excl;
    range_enter(s);
    range_hold **mine = range_look(s, index, &others, &others_excl);
    int rc = range_drop(s, index, mine, others);
    pthread_mutex_unlock(&range_mu);
    return rc;
}

/* Held by another handle: of this process (the table), or of another one
 * (the kernel, which does not report this process's own locks). */
static int held_range_test(shmp_seg *s, uint64_t index, int *locked) {
    int others, others_excl, rc = 0;
    range_enter(s);
    range_look(s, index, &others, &others_excl);
    if (others) *locked = 1;
    else rc = range_kernel_test(s, index, locked);
    pthread_mutex_unlock(&range_mu);
    return rc;
}

/* A handle that closes gives up its holds, as closing an OFD does. */
static void held_range_forget(shmp_seg *s) {
    if (s->fd < 0 || s->ino == 0) return;
    range_enter(s);
    for (int b = 0; b < RANGE_BUCKETS; b++) {
        range_hold **p = &range_holds[b];
        while (*p) {
            if ((*p)->owner != s) {
                p = &(*p)->next;
            } else if (!range_same(*p, s, (*p)->index)) {
                range_hold *stale = *p; /* of a file s left without closing */
                *p = stale->next;
                free(stale);
            } else {
                uint64_t index = (*p)->index;
                int others, others_excl;
                range_hold **mine = range_look(s, index, &others, &others_excl);
                range_drop(s, index, mine, others); /* *p is the next hold now */
            }
        }
    }
    pthread_mutex_unlock(&range_mu);
}
#else
static void held_range_forget(shmp_seg *s) { (void)s; }
#endif

int shmp_range_lock(shmp_seg *s, uint64_t index, int exclusive) {
#if defined(SHMP_PORTABLE)
    return held_range_lock(s, index, exclusive);
#else
    return range_op(s, index, exclusive ? F_WRLCK : F_RDLCK, SETLK, NULL);
#endif
}

int shmp_range_unlock(shmp_seg *s, uint64_t index) {
#if defined(SHMP_PORTABLE)
    return held_range_unlock(s, index);
#else
    return range_op(s, index, F_UNLCK, SETLK, NULL);
#endif
}

int shmp_range_test(shmp_seg *s, uint64_t index, int *locked) {
#if defined(SHMP_PORTABLE)
    return held_range_test(s, index, locked);
#else
    return range_kernel_test(s, index, locked);
#endif
}

#endif /* !_WIN32 */
