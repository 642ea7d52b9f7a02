/* Windows implementation of shm_platform.h.
 *
 * A segment is a pagefile-backed section (CreateFileMapping on
 * INVALID_HANDLE_VALUE, SEC_COMMIT: the whole size is charged against the
 * commit limit at creation, so "no room" is an error then, never later).
 * Its name lives in the session's `Local\` namespace and the kernel frees it
 * with its last handle, whatever way the holders went: there are no stale
 * segments to reclaim, and nothing can outlive every holder (persistent
 * segments are refused with ENOTSUP).
 *
 * Beside the section, each segment has kernel objects named after it:
 *   <name>_lock   the mutex; WAIT_ABANDONED is "the owner died";
 *   <name>_wake   a manual-reset event for shmp_wait/shmp_wake;
 *   <name>_w<i>   an exclusive pin on slot i (held while its handle is open);
 *   <name>_r<i>_<k>  shared pin "seat" k on slot i.
 * Byte-range locks do not exist on sections, so pins are named objects whose
 * mere existence is the lock: a handle is closed by the kernel when its
 * process dies, so a dead pin holder releases its pins like a dead flock
 * holder does on POSIX. A taker announces itself first (creates its object)
 * and then looks for conflicting ones, so of two racing takers at least one
 * sees the other (both may back off; callers retry).
 *
 * A section cannot be renamed, so a build is an unnamed section that
 * shmp_link copies into the named one (the header last, so attach never sees
 * it half-built) and then maps at the same address, keeping the caller's
 * pointers valid. For the same reason shmp_swap (grow under the same name)
 * and unlinking a name are impossible: shmp_swap gives ENOTSUP and
 * shmp_remove marks the segment removed, so new attaches get ENOENT while
 * the name stays taken until its last holder is gone.
 */
#if defined(_WIN32)
#include "compat.h"
#include "shm_platform.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WIN_FLAG_REMOVED 4u /* shmp_remove ran: no new attaches */
#define PIN_SEATS 64u       /* shared pins per slot, across all handles */
#define WAIT_SLICE_MS 50u   /* bounds the cost of a wake lost to a reset race */
#define READY_WAIT_MS 2000u /* how long attach waits for a header being copied */
#define WNAME_MAX 128

/* Compile-time checks that MSVC's C mode accepts without /std:c11. */
typedef char shmp_header_fits[sizeof(shmp_header) <= SHMP_HEADER_SIZE ? 1 : -1];
typedef char shmp_header_layout[offsetof(shmp_header, key) == 56 ? 1 : -1];

/* ---- errors and names ---- */



/* `name` (UTF-8) followed by the formatted suffix, as a wide string. */
static int wide_name(wchar_t *out, const char *name, const char *suffix) {
    char buf[WNAME_MAX];
    int rc = shmp_name_check(name);
    if (rc) return rc;
    if (snprintf(buf, sizeof buf, "%s%s", name, suffix) >= (int)sizeof buf) return ENAMETOOLONG;
    if (MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, buf, -1, out, WNAME_MAX) == 0)
        return EINVAL;
    return 0;
}

const char *shmp_dir(void) { return NULL; }

int shmp_name_check(const char *name) {
    size_t n = strlen(name);
    if (n == 0) return EINVAL;
    return n > SHMP_NAME_MAX ? ENAMETOOLONG : 0;
}

static void close_handle(HANDLE *h) {
    if (*h) CloseHandle(*h);
    *h = NULL;
}

/* ---- the header ---- */

static int header_valid(const shmp_header *h, uint64_t mapped) {
    if (h->magic != SHMP_MAGIC || h->version != SHMP_VERSION) return 0;
    if (h->header_size != SHMP_HEADER_SIZE || h->state != SHMP_STATE_READY) return 0;
    if (h->data_size == 0 || h->data_size > UINT64_MAX - SHMP_HEADER_SIZE) return 0;
    if (h->total_size != SHMP_HEADER_SIZE + h->data_size) return 0;
    return h->total_size <= mapped && h->key_len <= SHMP_KEY_MAX;
}

/* A section whose creator is still copying: its header is all zeros, or
 * has the magic but is not ready yet (copy_build writes them in that order). */
static int header_pending(const shmp_header *h) {
    if (shmc_load_u32(&h->state) != SHMP_STATE_BUILDING) return 0;
    uint64_t magic = *(volatile const uint64_t *)&h->magic;
    return magic == 0 || magic == SHMP_MAGIC;
}

/* Bytes really mapped at `p` (the section's size, rounded up to a page). */
static uint64_t mapped_size(const void *p) {
    MEMORY_BASIC_INFORMATION mbi;
    if (VirtualQuery(p, &mbi, sizeof mbi) == 0) return 0;
    return (uint64_t)mbi.RegionSize;
}

static int section_new(HANDLE *out, const wchar_t *wname, uint64_t total) {
    *out = CreateFileMappingW(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE | SEC_COMMIT,
                              (DWORD)(total >> 32), (DWORD)(total & 0xffffffffu), wname);
    if (!*out) return shmc_last_errno();
    if (wname && GetLastError() == ERROR_ALREADY_EXISTS) {
        close_handle(out);
        return EEXIST;
    }
    return 0;
}

/* ---- the per-segment kernel objects ---- */

static int open_sync(shmp_seg *s, const char *name) {
    wchar_t w[WNAME_MAX];
    int rc = wide_name(w, name, "_lock");
    if (rc) return rc;
    s->mutex = CreateMutexW(NULL, FALSE, w);
    if (!s->mutex) return shmc_last_errno();
    rc = wide_name(w, name, "_wake");
    if (rc) return rc;
    s->event = CreateEventW(NULL, TRUE, FALSE, w);
    return s->event ? 0 : shmc_last_errno();
}

static void pins_drop_all(const shmp_seg *s);

static void unmap_close(shmp_seg *s) {
    pins_drop_all(s);
    if (s->base) UnmapViewOfFile(s->base);
    close_handle(&s->map_handle);
    close_handle(&s->mutex);
    close_handle(&s->event);
    s->base = NULL;
    s->map_size = 0;
}

/* ---- building and naming ---- */

int shmp_build(shmp_seg *s, uint64_t data_size, uint64_t reserve, int persistent,
               const char *key, size_t key_len) {
    memset(s, 0, sizeof(*s));
    if (data_size == 0) return EINVAL;
    if (persistent) return ENOTSUP;
    if (key_len > SHMP_KEY_MAX) return ENAMETOOLONG;
    if (data_size > (uint64_t)SIZE_MAX - SHMP_HEADER_SIZE) return ENOSPC;
    uint64_t total = SHMP_HEADER_SIZE + data_size;
    /* The section is committed whole, here and again when named. */
    shmp_forget_admission();
    int rc = shmp_admit(NULL, total);
    if (!rc) rc = section_new(&s->map_handle, NULL, total);
    if (rc) return rc;
    s->base = (unsigned char *)MapViewOfFile(s->map_handle, FILE_MAP_ALL_ACCESS, 0, 0, (SIZE_T)total);
    if (!s->base) {
        rc = shmc_last_errno();
        unmap_close(s);
        return rc;
    }
    s->map_size = (size_t)total;
    s->writable = 1;
    shmp_header *h = shmp_hdr(s);
    h->magic = SHMP_MAGIC;
    h->version = SHMP_VERSION;
    h->header_size = SHMP_HEADER_SIZE;
    h->data_size = data_size;
    h->total_size = total;
    h->state = SHMP_STATE_BUILDING;
    h->creator_pid = (uint32_t)shmc_pid();
    h->key_len = (uint32_t)key_len;
    memcpy(h->key, key, key_len);
    /* Until it is named, reserved0 counts the data pages the caller may have
     * written (the reserved ones): shmp_link copies those. */
    if (reserve > data_size) reserve = data_size;
    h->reserved0 = (uint32_t)((reserve + 4095) / 4096);
    return 0;
}

int shmp_discard(shmp_seg *s) {
    unmap_close(s);
    return 0;
}

static int page_is_zero(const unsigned char *p, size_t len) {
    const uint64_t *w = (const uint64_t *)p;
    for (size_t i = 0; i < len / 8; i++)
        if (w[i]) return 0;
    return 1;
}

/* Copies the written pages of the build into `dst`, the header last. */
static void copy_build(unsigned char *dst, const shmp_seg *s) {
    const shmp_header *h = shmp_hdr(s);
    uint64_t end = SHMP_HEADER_SIZE + (uint64_t)h->reserved0 * 4096;
    if (end > s->map_size) end = s->map_size;
    for (uint64_t off = SHMP_HEADER_SIZE; off < end; off += 4096) {
        size_t len = (size_t)(end - off < 4096 ? end - off : 4096);
        if (!page_is_zero(s->base + off, len)) memcpy(dst + off, s->base + off, len);
    }
    shmp_header *d = (shmp_header *)dst;
    memcpy(dst + sizeof(uint64_t), s->base + sizeof(uint64_t),
           SHMP_HEADER_SIZE - sizeof(uint64_t));
    d->reserved0 = 0;
    d->state = SHMP_STATE_BUILDING;
    shmc_fence();
    d->magic = SHMP_MAGIC;
    shmc_store_u32(&d->state, SHMP_STATE_READY);
}

int shmp_link(shmp_seg *s, const char *name) {
    wchar_t w[WNAME_MAX];
    int rc = wide_name(w, name, "");
    if (rc) return rc;
    if (!s->base || shmp_hdr(s)->state != SHMP_STATE_BUILDING) return EINVAL;
    shmp_seg n;
    memset(&n, 0, sizeof n);
    rc = section_new(&n.map_handle, w, s->map_size);
    if (!rc) rc = open_sync(&n, name);
    unsigned char *view = NULL;
    if (!rc) {
        view = (unsigned char *)MapViewOfFile(n.map_handle, FILE_MAP_ALL_ACCESS, 0, 0, s->map_size);
        if (!view) rc = shmc_last_errno();
    }
    if (rc) {
        unmap_close(&n);
        return rc;
    }
    copy_build(view, s);
    UnmapViewOfFile(view);
    /* Map the named section where the build was, so pointers into it stay valid. */
    unsigned char *at = s->base;
    UnmapViewOfFile(at);
    close_handle(&s->map_handle);
    s->base = (unsigned char *)MapViewOfFileEx(n.map_handle, FILE_MAP_ALL_ACCESS, 0, 0,
                                               s->map_size, at);
    if (!s->base) {
        rc = shmc_last_errno();
        unmap_close(&n);
        s->map_size = 0;
        return rc == EINVAL ? ENOMEM : rc;
    }
    s->map_handle = n.map_handle;
    s->mutex = n.mutex;
    s->event = n.event;
    snprintf(s->name, sizeof s->name, "%s", name);
    return 0;
}

int shmp_swap(shmp_seg *s, shmp_seg *old) {
    (void)s;
    (void)old;
    return ENOTSUP;
}

int shmp_replaced(shmp_seg *s) { /* no swap, so only the removal mark */
    return (shmc_load_u32(&shmp_hdr(s)->flags) & SHMP_FLAG_SUPERSEDED) != 0;
}

void shmp_sweep_builds(void) {} /* a section has no name until it is whole */

/* ---- attaching and leaving ---- */

static int map_named(shmp_seg *s, const char *name, int writable) {
    wchar_t w[WNAME_MAX];
    int rc = wide_name(w, name, "");
    if (rc) return rc;
    DWORD access = FILE_MAP_READ | (writable ? FILE_MAP_WRITE : 0);
    s->map_handle = OpenFileMappingW(access, FALSE, w);
    if (!s->map_handle) return shmc_last_errno();
    s->base = (unsigned char *)MapViewOfFile(s->map_handle, access, 0, 0, 0);
    if (!s->base) return shmc_last_errno();
    uint64_t mapped = mapped_size(s->base);
    if (mapped < SHMP_HEADER_SIZE) return SHMP_EINCOMPAT;
    s->map_size = (size_t)mapped;
    ULONGLONG start = GetTickCount64();
    while (header_pending(shmp_hdr(s)) && GetTickCount64() - start < READY_WAIT_MS) Sleep(1);
    shmp_header *h = shmp_hdr(s);
    shmc_fence();
    if (!header_valid(h, mapped)) return SHMP_EINCOMPAT;
    if (shmc_load_u32(&h->flags) & WIN_FLAG_REMOVED) return ENOENT;
    s->map_size = (size_t)h->total_size;
    return 0;
}

int shmp_attach(shmp_seg *s, const char *name, int writable) {
    memset(s, 0, sizeof(*s));
    int rc = map_named(s, name, writable);
    if (!rc) rc = open_sync(s, name);
    if (rc) {
        unmap_close(s);
        return rc;
    }
    s->writable = writable;
    snprintf(s->name, sizeof s->name, "%s", name);
    return 0;
}

/* The view alone keeps the section (and its name) alive until the process
 * ends; everything else goes now. */
int shmp_leave(shmp_seg *s) {
    pins_drop_all(s);
    close_handle(&s->map_handle);
    close_handle(&s->mutex);
    close_handle(&s->event);
    return 0;
}

int shmp_detach(shmp_seg *s) {
    unmap_close(s);
    return 0;
}

int shmp_close(shmp_seg *s) {
    unmap_close(s);
    return 0;
}

int shmp_remove(const char *name) {
    shmp_seg s;
    memset(&s, 0, sizeof s);
    int rc = map_named(&s, name, 1);
    if (rc == EACCES) rc = EPERM;
    if (!rc) {
        shmp_header *h = shmp_hdr(&s);
        shmc_fetch_or_u32(&h->flags, WIN_FLAG_REMOVED | SHMP_FLAG_SUPERSEDED);
    }
    unmap_close(&s);
    return rc;
}

int shmp_attachments(const shmp_probe_info *infos, size_t n, int *counts) {
    (void)infos;
    for (size_t i = 0; i < n; i++) counts[i] = -1; /* sections have no holder count */
    return 0;
}

int shmp_probe(const char *name, int reclaim, shmp_probe_info *info) {
    (void)reclaim; /* nothing to reclaim: the kernel frees unheld sections */
    memset(info, 0, sizeof(*info));
    shmp_seg s;
    memset(&s, 0, sizeof s);
    int rc = map_named(&s, name, 0);
    if (!rc) {
        const shmp_header *h = shmp_hdr(&s);
        info->ours = 1;
        info->persistent = (h->flags & SHMP_FLAG_PERSISTENT) != 0;
        info->data_size = h->data_size;
        memcpy(info->key, h->key, h->key_len);
    }
    unmap_close(&s);
    return rc == SHMP_EINCOMPAT ? 0 : rc;
}

/* ---- the mutex ---- */

/* The header records the holder (pid, and thread id in reserved0) so a
 * second lock from the holding thread, which a Windows mutex would grant
 * recursively, is refused with EDEADLK like an error-checking pthread mutex. */
static int took_lock(shmp_seg *s, DWORD r, int *owner_died) {
    *owner_died = 0;
    if (r == WAIT_TIMEOUT) return ETIMEDOUT;
    if (r == WAIT_FAILED) return shmc_last_errno();
    shmp_header *h = shmp_hdr(s);
    DWORD pid = shmc_pid(), tid = GetCurrentThreadId();
    if (r == WAIT_ABANDONED) {
        *owner_died = 1;
    } else if (h->lock_owner_pid == pid && h->reserved0 == tid) {
        ReleaseMutex(s->mutex);
        return EDEADLK;
    }
    h->lock_owner_pid = (uint32_t)pid;
    h->reserved0 = (uint32_t)tid;
    return 0;
}

int shmp_lock_try(shmp_seg *s, int *owner_died) {
    *owner_died = 0;
    if (!s->writable) return EACCES;
    int rc = took_lock(s, WaitForSingleObject(s->mutex, 0), owner_died);
    return rc == ETIMEDOUT ? EBUSY : rc;
}

int shmp_lock_wait(shmp_seg *s, int64_t timeout_ns, int *owner_died) {
    *owner_died = 0;
    if (!s->writable) return EACCES;
    DWORD ms = INFINITE;
    if (timeout_ns >= 0) {
        int64_t m = (timeout_ns + 999999) / 1000000;
        ms = m >= (int64_t)INFINITE ? INFINITE - 1 : (DWORD)m;
    }
    return took_lock(s, WaitForSingleObject(s->mutex, ms), owner_died);
}

int shmp_unlock(shmp_seg *s) {
    shmp_header *h = shmp_hdr(s);
    if (h->lock_owner_pid != shmc_pid() || h->reserved0 != GetCurrentThreadId())
        return EPERM;
    uint32_t pid = h->lock_owner_pid, tid = h->reserved0;
    h->lock_owner_pid = 0;
    h->reserved0 = 0;
    if (ReleaseMutex(s->mutex)) return 0;
    h->lock_owner_pid = pid;
    h->reserved0 = tid;
    return shmc_last_errno();
}

/* ---- wait and wake ---- */

/* The event is manual-reset; each waiter resets it before looking at the
 * word. A waker's SetEvent can be undone by another waiter's reset just
 * before a third one sleeps, so sleeps are sliced and the word rechecked. */
int shmp_wait(shmp_seg *s, uint32_t *word, uint32_t expected, int64_t timeout_ns) {
    ULONGLONG start = GetTickCount64();
    ULONGLONG limit = timeout_ns < 0 ? 0 : (ULONGLONG)((timeout_ns + 999999) / 1000000);
    for (;;) {
        ResetEvent(s->event);
        if (shmc_load_u32(word) != expected) return 0;
        DWORD slice = WAIT_SLICE_MS;
        if (timeout_ns >= 0) {
            ULONGLONG spent = GetTickCount64() - start;
            if (spent >= limit) return ETIMEDOUT;
            if (limit - spent < slice) slice = (DWORD)(limit - spent);
        }
        DWORD r = WaitForSingleObject(s->event, slice);
        if (r == WAIT_FAILED) return shmc_last_errno();
        if (r == WAIT_OBJECT_0) return 0; /* woken: the caller rechecks its word */
    }
}

int shmp_wake(shmp_seg *s, uint32_t *word) {
    (void)word;
    return SetEvent(s->event) ? 0 : shmc_last_errno();
}

/* ---- per-slot pins ---- */

typedef struct pin {
    const shmp_seg *seg;
    uint64_t index;
    HANDLE h;
    unsigned seat; /* PIN_SEATS for the exclusive pin */
} pin;

static SRWLOCK pins_lock = SRWLOCK_INIT;
static pin *pins;
static size_t npins, cap_pins;

static int pin_name(wchar_t *w, const shmp_seg *s, uint64_t index, unsigned seat) {
    char suffix[48];
    if (seat == PIN_SEATS)
        snprintf(suffix, sizeof suffix, "_w%llu", (unsigned long long)index);
    else
        snprintf(suffix, sizeof suffix, "_r%llu_%u", (unsigned long long)index, seat);
    return wide_name(w, s->name, suffix);
}

/* 1 when someone holds the pin object (seat, or PIN_SEATS for the writer's). */
static int pin_exists(const shmp_seg *s, uint64_t index, unsigned seat) {
    wchar_t w[WNAME_MAX];
    if (pin_name(w, s, index, seat)) return 0;
    HANDLE h = OpenEventW(SYNCHRONIZE, FALSE, w);
    if (!h) return 0;
    CloseHandle(h);
    return 1;
}

/* Creates the pin object: 0 (handle in *out), EAGAIN when it exists. */
static int pin_create(const shmp_seg *s, uint64_t index, unsigned seat, HANDLE *out) {
    wchar_t w[WNAME_MAX];
    int rc = pin_name(w, s, index, seat);
    if (rc) return rc;
    *out = CreateEventW(NULL, TRUE, FALSE, w);
    if (!*out) return shmc_last_errno();
    if (GetLastError() == ERROR_ALREADY_EXISTS) {
        close_handle(out);
        return EAGAIN;
    }
    return 0;
}

static pin *pin_find(const shmp_seg *s, uint64_t index) {
    for (size_t i = 0; i < npins; i++)
        if (pins[i].seg == s && pins[i].index == index) return &pins[i];
    return NULL;
}

static int pin_record(const shmp_seg *s, uint64_t index, HANDLE h, unsigned seat) {
    if (npins == cap_pins) {
        size_t cap = cap_pins ? cap_pins * 2 : 16;
        pin *p = (pin *)realloc(pins, cap * sizeof(pin));
        if (!p) return ENOMEM;
        pins = p;
        cap_pins = cap;
    }
    pins[npins++] = (pin){s, index, h, seat};
    return 0;
}

static int take_exclusive(const shmp_seg *s, uint64_t index, HANDLE *h) {
    int rc = pin_create(s, index, PIN_SEATS, h);
    if (rc) return rc;
    for (unsigned k = 0; k < PIN_SEATS; k++) {
        if (pin_exists(s, index, k)) {
            close_handle(h);
            return EAGAIN;
        }
    }
    return 0;
}

static int take_shared(const shmp_seg *s, uint64_t index, HANDLE *h, unsigned *seat) {
    if (pin_exists(s, index, PIN_SEATS)) return EAGAIN;
    int rc = EAGAIN;
    for (*seat = 0; *seat < PIN_SEATS && rc == EAGAIN; (*seat)++)
        rc = pin_create(s, index, *seat, h);
    if (rc) return rc;
    (*seat)--;
    if (pin_exists(s, index, PIN_SEATS)) {
        close_handle(h);
        return EAGAIN;
    }
    return 0;
}

int shmp_range_lock(shmp_seg *s, uint64_t index, int exclusive) {
    AcquireSRWLockExclusive(&pins_lock);
    int rc = pin_find(s, index) ? EAGAIN : 0;
    HANDLE h = NULL;
    unsigned seat = PIN_SEATS;
    if (!rc) rc = exclusive ? take_exclusive(s, index, &h) : take_shared(s, index, &h, &seat);
    if (!rc) {
        rc = pin_record(s, index, h, seat);
        if (rc) CloseHandle(h);
    }
    ReleaseSRWLockExclusive(&pins_lock);
    return rc;
}

int shmp_range_unlock(shmp_seg *s, uint64_t index) {
    AcquireSRWLockExclusive(&pins_lock);
    pin *p = pin_find(s, index);
    if (p) {
        CloseHandle(p->h);
        *p = pins[--npins];
    }
    ReleaseSRWLockExclusive(&pins_lock);
    return 0;
}

int shmp_range_test(shmp_seg *s, uint64_t index, int *locked) {
    AcquireSRWLockShared(&pins_lock);
    const pin *mine = pin_find(s, index);
    unsigned own = mine ? mine->seat : PIN_SEATS + 1;
    *locked = 0;
    for (unsigned k = 0; k <= PIN_SEATS && !*locked; k++)
        if (k != own) *locked = pin_exists(s, index, k);
    ReleaseSRWLockShared(&pins_lock);
    return 0;
}

static void pins_drop_all(const shmp_seg *s) {
    AcquireSRWLockExclusive(&pins_lock);
    for (size_t i = 0; i < npins;) {
        if (pins[i].seg == s) {
            CloseHandle(pins[i].h);
            pins[i] = pins[--npins];
        } else {
            i++;
        }
    }
    ReleaseSRWLockExclusive(&pins_lock);
}

/* ---- copies and reservation ---- */

/* Sections are SEC_COMMIT: their memory was charged at creation, so there is
 * nothing to reserve later. During a build the range joins what shmp_link
 * copies. */
int shmp_reserve(shmp_seg *s, uint64_t offset, uint64_t len, int nthreads) {
    (void)nthreads;
    if (offset > s->map_size || len > s->map_size - offset) return EINVAL;
    if (!s->writable) return EACCES;
    shmp_header *h = shmp_hdr(s);
    if (h->state == SHMP_STATE_BUILDING && offset + len > SHMP_HEADER_SIZE) {
        uint64_t pages = (offset + len - SHMP_HEADER_SIZE + 4095) / 4096;
        if (pages > h->reserved0) h->reserved0 = (uint32_t)pages;
    }
    return 0;
}

/* Sleep's granularity is the system timer's (1 to 15.6 ms): the shortest
 * real sleep there is without spinning. */
void shmp_nap(void) { Sleep(1); }

void shmp_copy(void *dst, const void *src, size_t len, int nthreads) {
    (void)nthreads;
    memcpy(dst, src, len);
}

/* A pagefile-backed section is committed at creation: nothing to reserve. */
int shmp_fill(shmp_seg *s, uint64_t offset, const void *src, uint64_t len, int nthreads) {
    int rc = shmp_reserve(s, offset, len, nthreads);
    if (!rc) memcpy(s->base + offset, src, (size_t)len);
    return rc;
}

#endif /* _WIN32 */
