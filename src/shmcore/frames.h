/* Layout of a SharedImage segment's data area: a control block, then
 * `nslots` page-aligned frame slots of `slot_capacity` bytes each. Fields
 * that cross processes without the mutex are accessed with atomics. */
#ifndef SHM_FRAMES_H
#define SHM_FRAMES_H

#include <stdint.h>

#define FRM_MAGIC 0x314d5246494d4853ULL /* "SHMIFRM1" */
#define FRM_VERSION 1u
#define FRM_MIN_SLOTS 3u
#define FRM_MAX_SLOTS 8u
#define FRM_CTRL_SIZE 4096u

#define FRM_FREE 0u
#define FRM_WRITING 1u
#define FRM_COMPLETE 2u

typedef struct frm_slot {
    uint32_t state;
    uint32_t ndim;
    uint64_t shape[3];
    char dtype[8]; /* numpy's dtype.str: "|u1", "<u2", "<f4" */
    uint64_t itemsize;
    uint64_t nbytes;
    uint64_t generation;
    uint64_t timestamp_ns;
    uint32_t writer_pid;
    uint32_t reserved; /* the slot's pages are reserved */
    uint8_t pad[128 - 96];
} frm_slot;

typedef struct frm_ctrl {
    uint64_t magic;
    uint32_t version;
    uint32_t nslots;
    uint64_t slot_capacity;
    uint64_t slots_offset; /* from the start of the data area */
    uint64_t latest;       /* generation << 8 | (slot + 1); 0: none yet */
    uint64_t last_generation;
    uint32_t seq; /* futex word: bumped by every publish and supersede */
    uint32_t waiters;
    uint8_t pad[128 - 56];
    frm_slot slots[FRM_MAX_SLOTS];
} frm_ctrl;

#if (defined(_MSC_VER) && !defined(__clang__)) || defined(FRM_FORCE_INTERLOCKED)
/* MSVC has no __atomic builtins: aligned 32/64-bit volatile accesses are
 * single-copy atomic on x64 and arm64, and full barriers give them acquire
 * and release order; read-modify-write goes through Interlocked*.
 * FRM_FORCE_INTERLOCKED builds this branch with mingw, for its tests. */
#include <windows.h>

static inline uint64_t frm_load_latest(frm_ctrl *c) {
    uint64_t v = *(volatile uint64_t *)&c->latest;
    MemoryBarrier();
    return v;
}
static inline void frm_store_latest(frm_ctrl *c, uint64_t v) {
    MemoryBarrier();
    *(volatile uint64_t *)&c->latest = v;
}
static inline uint32_t frm_load_seq(frm_ctrl *c) {
    uint32_t v = *(volatile uint32_t *)&c->seq;
    MemoryBarrier();
    return v;
}
static inline void frm_bump_seq(frm_ctrl *c) {
    InterlockedIncrement((volatile LONG *)&c->seq);
}
static inline uint32_t frm_load_state(frm_slot *s) {
    uint32_t v = *(volatile uint32_t *)&s->state;
    MemoryBarrier();
    return v;
}
static inline void frm_store_state(frm_slot *s, uint32_t v) {
    MemoryBarrier();
    *(volatile uint32_t *)&s->state = v;
}
static inline uint32_t shmp_load_flags(uint32_t *f) {
    uint32_t v = *(volatile uint32_t *)f;
    MemoryBarrier();
    return v;
}
#else
static inline uint64_t frm_load_latest(frm_ctrl *c) {
    return __atomic_load_n(&c->latest, __ATOMIC_ACQUIRE);
}
static inline void frm_store_latest(frm_ctrl *c, uint64_t v) {
    __atomic_store_n(&c->latest, v, __ATOMIC_RELEASE);
}
static inline uint32_t frm_load_seq(frm_ctrl *c) {
    return __atomic_load_n(&c->seq, __ATOMIC_ACQUIRE);
}
static inline void frm_bump_seq(frm_ctrl *c) {
    __atomic_fetch_add(&c->seq, 1u, __ATOMIC_SEQ_CST); /* ordered before reading waiters */
}
static inline uint32_t frm_load_state(frm_slot *s) {
    return __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
}
static inline void frm_store_state(frm_slot *s, uint32_t v) {
    __atomic_store_n(&s->state, v, __ATOMIC_RELEASE);
}
static inline uint32_t shmp_load_flags(uint32_t *f) {
    return __atomic_load_n(f, __ATOMIC_ACQUIRE);
}

#endif /* _MSC_VER */

/* ---- waiting for the next publish ---- */

#if defined(_WIN32)
static inline int64_t frm_now_ns(void) {
    LARGE_INTEGER f, c;
    QueryPerformanceFrequency(&f);
    QueryPerformanceCounter(&c);
    return (int64_t)((double)c.QuadPart * 1e9 / (double)f.QuadPart);
}
static inline void frm_relax(void) { YieldProcessor(); }
static inline void frm_yield(void) { SwitchToThread(); }
#else
#include <sched.h>
#include <time.h>
static inline int64_t frm_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}
static inline void frm_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}
static inline void frm_yield(void) { sched_yield(); }
#endif

/* A short, bounded spin before sleeping in the kernel: when the other side
 * answers within a few microseconds, the futex round trip is saved. 1 when
 * `seq` moved on within `spin_ns`. */
static inline int frm_spin_for_seq(frm_ctrl *c, uint32_t seq, int64_t spin_ns) {
    int64_t end = frm_now_ns() + spin_ns;
    for (;;) {
        for (int i = 0; i < 32; i++) {
            if (frm_load_seq(c) != seq) return 1;
            frm_relax();
        }
        if (frm_now_ns() >= end) return 0;
    }
}

/* Sleepers announce themselves, so a publish with none skips the wake call.
 * A sleeper that dies leaves the count high: only extra wake calls. */
static inline void frm_add_waiter(frm_ctrl *c, int delta) {
#if defined(_MSC_VER)
    InterlockedExchangeAdd((volatile LONG *)&c->waiters, (LONG)delta);
#else
    __atomic_fetch_add(&c->waiters, (uint32_t)delta, __ATOMIC_SEQ_CST);
#endif
}
static inline uint32_t frm_waiters(frm_ctrl *c) {
#if defined(_MSC_VER)
    MemoryBarrier();
    return *(volatile uint32_t *)&c->waiters;
#else
    return __atomic_load_n(&c->waiters, __ATOMIC_SEQ_CST);
#endif
}

static inline uint64_t frm_wall_ns(void) {
#if defined(_WIN32)
    FILETIME ft;
    GetSystemTimePreciseAsFileTime(&ft);
    uint64_t t = ((uint64_t)ft.dwHighDateTime << 32) | ft.dwLowDateTime;
    return (t - 116444736000000000ULL) * 100; /* 1601 -> 1970, 100 ns units */
#else
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (uint64_t)t.tv_sec * 1000000000 + (uint64_t)t.tv_nsec;
#endif
}

#endif
