/* shmimage's platform layer: one API over POSIX (Linux first, macOS) and
 * Windows. Every function returns 0 or an errno value (Windows errors are
 * mapped to errno values inside the layer), so callers never race on errno.
 *
 * A segment is a file-backed shared mapping: a fixed header (magic, layout
 * version, sizes, state, flags, key) followed by `data_size` usable bytes.
 */
#ifndef SHM_PLATFORM_H
#define SHM_PLATFORM_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#include <windows.h>
#else
#include <pthread.h>
#include <sys/types.h>
#endif

#define SHMP_MAGIC 0x31474d494d48535fULL /* "_SHMIMG1" little-endian */
#define SHMP_VERSION 1u
#define SHMP_HEADER_SIZE 4096u
#define SHMP_KEY_MAX 255u
#define SHMP_NAME_MAX 64u /* native names: the one definition */
#define SHMP_MAX_PRED 4

#define SHMP_STATE_BUILDING 0u
#define SHMP_STATE_READY 1u

#define SHMP_FLAG_PERSISTENT 1u
#define SHMP_FLAG_SUPERSEDED 2u /* replaced under its name by a larger one */

/* Layout of the first SHMP_HEADER_SIZE bytes of every segment. */
typedef struct shmp_header {
    uint64_t magic;
    uint32_t version;
    uint32_t header_size;
    uint64_t data_size;  /* usable bytes, as asked at create */
    uint64_t total_size; /* header_size + data_size */
    uint32_t state;
    uint32_t flags;
    uint32_t creator_pid;
    uint32_t lock_owner_pid; /* liveness fallback where mutexes are not robust */
    uint32_t key_len;
    uint32_t reserved0;
    char key[SHMP_KEY_MAX + 1];
    /* Segments this one replaced under its name (newest first): processes
     * still attached to them count as attached to this one. */
    uint64_t pred_dev[SHMP_MAX_PRED];
    uint64_t pred_ino[SHMP_MAX_PRED];
    /* Where mutexes are not robust: the lock holder's process start time
     * (+1), so that a dead holder's pid reused by another process does not
     * keep the lock; 0 while the holder changes. */
    uint64_t lock_owner_start;
    uint8_t pad[512 - 56 - (SHMP_KEY_MAX + 1) - 16 * SHMP_MAX_PRED - 8];
#if !defined(_WIN32)
    pthread_mutex_t mutex; /* at offset 512 */
#endif
} shmp_header;

typedef struct shmp_seg {
    unsigned char *base; /* whole mapping, header included */
    size_t map_size;
    int writable;
    char name[SHMP_NAME_MAX + 1];
    int replaced; /* shmp_replaced found a successor it could not mark */
#if defined(_WIN32)
    HANDLE map_handle;
    HANDLE mutex;
    HANDLE event; /* wait/wake */
#else
    int fd;
    dev_t dev;
    ino_t ino;
    char tmp[96]; /* the build's temporary name where O_TMPFILE is missing */
    /* Slot pins are locks of an open file description, which a forked child
     * shares with its parent: each process pins through its own. */
    int pin_fd;
    uint32_t pin_pid;
#endif
} shmp_seg;

typedef struct shmp_probe_info {
    int ours;       /* header is shmimage's and complete */
    int stale;      /* nobody holds it */
    int reclaimed;  /* it was stale and has just been removed */
    int persistent;
    uint64_t dev, ino;
    uint64_t data_size;
    char key[SHMP_KEY_MAX + 1];
} shmp_probe_info;

/* Where segments live: the directory of their files ("/dev/shm" on Linux,
 * a portable directory elsewhere), or NULL where they are not files. */
const char *shmp_dir(void);
/* 0 when `name` is a valid native name, else EINVAL or ENAMETOOLONG. */
int shmp_name_check(const char *name);

/* Segment lifetime. `name` is the native name ("/..." on POSIX,
 * "Local\..." on Windows). */
/* Errors that are not errno values. */
#define SHMP_EINCOMPAT 0x10001 /* not shmimage's, other version, half-built or lying */

/* A new segment is built unnamed (so nobody sees it half-built), filled by
 * the caller, then given its name. `reserve` data bytes (from the start of
 * the data) are reserved now; the rest must go through shmp_reserve before
 * it is first written. */
int shmp_build(shmp_seg *s, uint64_t data_size, uint64_t reserve, int persistent,
               const char *key, size_t key_len);
/* EEXIST when a live, persistent or foreign segment has the name; a stale
 * one is reclaimed first. */
int shmp_link(shmp_seg *s, const char *name);
/* Atomically puts `s` under `old`'s name and marks `old` superseded. */
int shmp_swap(shmp_seg *s, shmp_seg *old);
/* Is `s` replaced: marked superseded, or named over by a successor whose
 * builder died between shmp_swap's rename and its mark? The latter is
 * marked now (or, through a read-only mapping, remembered in this handle).
 * 1 or 0; a look at the name, for when a wait found nothing new or a dead
 * holder's mutex was taken over. */
int shmp_replaced(shmp_seg *s);
/* Removes what builders that died left in the segment directory: a grower
 * killed between naming its new segment and renaming it over the key leaves
 * that name (and the whole segment) behind. Called by the last holder of a
 * key leaving it and by a writer taking over a dead holder's mutex. */
void shmp_sweep_builds(void);
/* Undoes a build that was never named. */
int shmp_discard(shmp_seg *s);
int shmp_attach(shmp_seg *s, const char *name, int writable);
/* Unmap and close; the last process out removes the name (unless persistent). */
int shmp_detach(shmp_seg *s);
/* As detach, but the mapping stays valid (at process exit, where arrays
 * over it may still be touched by finalizers). */
int shmp_leave(shmp_seg *s);
/* Unmap and close only: for a forked child that inherited the segment. */
int shmp_close(shmp_seg *s);
int shmp_remove(const char *name);
/* Look at a name without attaching; reclaims it when stale and reclaim != 0.
 * ENOENT when there is no such name (or it was just reclaimed). */
int shmp_probe(const char *name, int reclaim, shmp_probe_info *info);
/* How many processes are attached to each of the n segments `infos`
 * describe, into counts (-1 where it cannot tell), from one read of the
 * kernel's lock table. 0 or ENOMEM. */
int shmp_attachments(const shmp_probe_info *infos, size_t n, int *counts);

static inline shmp_header *shmp_hdr(const shmp_seg *s) { return (shmp_header *)s->base; }
static inline unsigned char *shmp_data(const shmp_seg *s) { return s->base + SHMP_HEADER_SIZE; }

/* The process-shared, robust mutex. try: 0, EBUSY or an error; wait blocks
 * (timeout_ns < 0: forever) and gives ETIMEDOUT; EDEADLK when the calling
 * thread already holds it. *owner_died is set when the previous holder died
 * holding it. */
int shmp_lock_try(shmp_seg *s, int *owner_died);
int shmp_lock_wait(shmp_seg *s, int64_t timeout_ns, int *owner_died);
int shmp_unlock(shmp_seg *s);

/* Wait while *word == expected (futex on Linux), woken by shmp_wake. */
int shmp_wait(shmp_seg *s, uint32_t *word, uint32_t expected, int64_t timeout_ns);
int shmp_wake(shmp_seg *s, uint32_t *word);

/* Per-slot pins: byte-range locks owned by this open handle, dropped by the
 * kernel when the process dies and given up when the handle closes (where
 * the kernel's locks belong to the process, the layer keeps them apart per
 * handle). exclusive=1 for a writer. EAGAIN when held. */
int shmp_range_lock(shmp_seg *s, uint64_t index, int exclusive);
int shmp_range_unlock(shmp_seg *s, uint64_t index);
/* *locked = 1 when another handle holds a lock conflicting with a writer. */
int shmp_range_test(shmp_seg *s, uint64_t index, int *locked);

/* Large copies and page reservation, split over threads when worth it.
 * shmp_reserve faults in and reserves mapping bytes [offset, offset+len) for
 * writing: ENOSPC where a later write would SIGBUS. */
int shmp_reserve(shmp_seg *s, uint64_t offset, uint64_t len, int nthreads);
/* Reserve mapping bytes [offset, offset+len) and copy `src` into them in
 * one pass (offset page-aligned): the first write into fresh pages. */
int shmp_fill(shmp_seg *s, uint64_t offset, const void *src, uint64_t len, int nthreads);

/* Memory admission (admission.c). Before reserving, the bytes asked for
 * are compared with the headroom: the smallest of the segment directory's
 * free space, every enclosing cgroup's limit less its usage, and
 * MemAvailable + SwapFree (Windows: the available commit charge), each less
 * its margin. Reservations go in steps of at most SHMP_ADMIT_STEP, admitted
 * before each for what is still missing. */
#define SHMP_ADMIT_STEP ((uint64_t)64 << 20)

#define SHMP_BOUND_NONE 0
#define SHMP_BOUND_FREE_SPACE 1 /* refused with ENOSPC */
#define SHMP_BOUND_CGROUP 2     /* refused with ENOMEM */
#define SHMP_BOUND_MEMORY 3     /* refused with ENOMEM */

typedef struct shmp_admission {
    uint64_t asked;     /* bytes still to reserve when refused */
    uint64_t available; /* the headroom, margin taken off */
    int bound;          /* SHMP_BOUND_*: which limit it is */
    char what[192];     /* that limit in words: "MemAvailable" */
} shmp_admission;

/* 0, or ENOSPC/ENOMEM when `bytes` exceed the headroom for segments in
 * `dir`; the refusal is kept for shmp_last_admission (per thread). */
int shmp_admit(const char *dir, uint64_t bytes);
/* The calling thread's last refusal (bound SHMP_BOUND_NONE when none). */
void shmp_last_admission(shmp_admission *out);
void shmp_forget_admission(void);
/* The parts, for tests: `root` prefixes /proc and /sys ("" for the real
 * ones). */
int shmp_headroom_at(const char *root, const char *dir, shmp_admission *out);
int shmp_admit_at(const char *root, const char *dir, uint64_t bytes);
/* Makes shmp_admit read /proc and /sys under `root` (tests only; NULL or ""
 * for the real ones). Not thread-safe against running admissions. */
void shmp_admission_root(const char *root);
/* `value` less max(value / 32, margin_min), at least 0. */
uint64_t shmp_less_margin(uint64_t value, uint64_t margin_min);
/* MemAvailable + SwapFree in bytes from /proc/meminfo's text. */
int shmp_parse_meminfo(const char *text, uint64_t *available, int *with_swap);

/* A short sleep (about half a millisecond) for bounded retry loops. */
void shmp_nap(void);
void shmp_copy(void *dst, const void *src, size_t len, int nthreads);

#endif
