/* The frame protocol (layout version 2): see frames.h. */
#include "frames.h"
#include "compat.h"
#include "keywatch.h"

#include <errno.h>
#include <string.h>

#if defined(_WIN32)
#include <windows.h>
#else
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#endif

/* The layout's sizes, checked at compile time (an array of size -1 when
 * not: every compiler this builds with, MSVC's C mode included). */
typedef char frm_head_is_1k[sizeof(frm_ctrl) == FRM_HEAD_SIZE ? 1 : -1];
typedef char frm_slot_is_128[sizeof(frm_slot) == 128 ? 1 : -1];
typedef char frm_sub_is_64[sizeof(frm_sub) == 64 ? 1 : -1];
typedef char frm_pinner_is_32[sizeof(frm_pinner) == 32 ? 1 : -1];
typedef char frm_slot_bits_fit[FRM_MAX_TABLE <= 128 ? 1 : -1]; /* frm_pinner.slots */
typedef char frm_slot_fits_8_bits[FRM_MAX_TABLE < 255 ? 1 : -1]; /* latest: slot + 1 */

#define FOLLOW_MAX 64   /* replacements followed in one call before refusing */
#define PIN_TRIES 10000 /* races with writers lost in a row before giving up */
#define OWN_LOOK_NS 10000000LL /* see claim_locked */

/* ---- atomics (clocks and the pid cache are compat.h's) ----
 * Wider and more strongly ordered than compat.h's 32-bit words: 64-bit
 * `latest`, and sequentially consistent bumps ordered before reading the
 * count of sleepers, which the futex hand-off needs. */

#if (defined(_MSC_VER) && !defined(__clang__)) || defined(FRM_FORCE_INTERLOCKED)
/* MSVC has no __atomic builtins: aligned 32/64-bit volatile accesses are
 * single-copy atomic on x64 and arm64, full barriers order them. */
static uint64_t load64(uint64_t *p) {
    uint64_t v = *(volatile uint64_t *)p;
    MemoryBarrier();
    return v;
}
static void store64(uint64_t *p, uint64_t v) {
    MemoryBarrier();
    *(volatile uint64_t *)p = v;
}
static uint32_t load32(uint32_t *p) {
    uint32_t v = *(volatile uint32_t *)p;
    MemoryBarrier();
    return v;
}
static void store32(uint32_t *p, uint32_t v) {
    MemoryBarrier();
    *(volatile uint32_t *)p = v;
}
static void add32(uint32_t *p, int32_t d) { InterlockedExchangeAdd((volatile LONG *)p, (LONG)d); }
static uint32_t load32_seq(uint32_t *p) { return load32(p); }
static void or32(uint32_t *p, uint32_t v) { InterlockedOr((volatile LONG *)p, (LONG)v); }
static int cas32(uint32_t *p, uint32_t expected, uint32_t desired) {
    return (uint32_t)InterlockedCompareExchange((volatile LONG *)p, (LONG)desired,
                                                (LONG)expected) == expected;
}
static void full_fence(void) { MemoryBarrier(); }
#else
static uint64_t load64(uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static void store64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static uint32_t load32(uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static void store32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
/* Sequentially consistent: a bump is ordered before reading `waiters`. */
static void add32(uint32_t *p, int32_t d) { __atomic_fetch_add(p, (uint32_t)d, __ATOMIC_SEQ_CST); }
static uint32_t load32_seq(uint32_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static void or32(uint32_t *p, uint32_t v) { __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); }
static int cas32(uint32_t *p, uint32_t expected, uint32_t desired) {
    return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_SEQ_CST,
                                       __ATOMIC_SEQ_CST);
}
static void full_fence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
#endif

/* Descriptor fields other than `state` are plain data guarded by the slot's
 * byte-range lock and published by the release store of `state`/`latest`;
 * a reader snapshots them with relaxed atomic loads, so a hostile or racing
 * writer gives it stale values (which it validates), never a data race. */
static void snapshot(void *dst, const void *src, size_t n) {
#if (defined(_MSC_VER) && !defined(__clang__)) || defined(FRM_FORCE_INTERLOCKED)
    memcpy(dst, src, n);
    MemoryBarrier();
#else
    const uint64_t *s = (const uint64_t *)src;
    for (size_t i = 0; i < n / 8; i++) {
        uint64_t v = __atomic_load_n(&s[i], __ATOMIC_RELAXED);
        memcpy((char *)dst + 8 * i, &v, 8);
    }
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
#endif
}

static void publish_bytes(void *dst, const void *src, size_t n) {
#if (defined(_MSC_VER) && !defined(__clang__)) || defined(FRM_FORCE_INTERLOCKED)
    memcpy(dst, src, n);
#else
    uint64_t *d = (uint64_t *)dst;
    for (size_t i = 0; i < n / 8; i++) {
        uint64_t v;
        memcpy(&v, (const char *)src + 8 * i, 8);
        __atomic_store_n(&d[i], v, __ATOMIC_RELAXED);
    }
#endif
}

int64_t frm_now_ns(void) { return shmc_monotonic_ns(); }
uint64_t frm_wall_ns(void) { return shmc_wall_ns(); }
static uint32_t my_pid(void) { return shmc_pid(); }

#if defined(_WIN32)
static void relax(void) { YieldProcessor(); }
static void yield_cpu(void) { SwitchToThread(); }
static void mu_init(frm_mutex *m) { InitializeSRWLock(m); }
static void mu_destroy(frm_mutex *m) { (void)m; }
static void mu_lock(frm_mutex *m) { AcquireSRWLockExclusive(m); }
static void mu_unlock(frm_mutex *m) { ReleaseSRWLockExclusive(m); }
#define MU_STATIC SRWLOCK_INIT
#else
static void relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}
static void yield_cpu(void) { sched_yield(); }
static void mu_init(frm_mutex *m) { pthread_mutex_init(m, NULL); }
static void mu_destroy(frm_mutex *m) { pthread_mutex_destroy(m); }
static void mu_lock(frm_mutex *m) { pthread_mutex_lock(m); }
static void mu_unlock(frm_mutex *m) { pthread_mutex_unlock(m); }
#define MU_STATIC PTHREAD_MUTEX_INITIALIZER
#endif

/* ---- which thread took this process's pins ----
 * A claim blocked by this process's own pins may fail at once only when the
 * calling thread took every pin the process holds in that store: then no
 * other thread can free one. Pins are tallied per taking thread and store
 * (its name's hash: a collision, or a store replaced under its name, only
 * makes a claim wait). Pins past TALLY_ENTRIES pairs count as others'. */
#define TALLY_ENTRIES 256
static struct {
    uintptr_t thread;
    uint32_t store;
    uint32_t pins;
} tally[TALLY_ENTRIES];
static uint32_t tally_lost, tally_pid;
static int tally_top; /* entries from here on are all free */
static frm_mutex tally_mu = MU_STATIC;

static uint32_t tally_threads;          /* serials handed out */
static SHMC_THREAD_LOCAL uintptr_t tally_me; /* this thread's serial, 0: none yet */
static SHMC_THREAD_LOCAL int tally_hooked;   /* its exit is watched */

/* Threads are told apart by a serial, never reused (an address would be). */
uintptr_t frm_thread(void) {
    if (!tally_me) tally_me = shmc_add_u32(&tally_threads, 1);
    return tally_me;
}

/* A thread that ends leaves its pins to whoever holds its arrays now: they
 * become orphans, counted as no other thread's (a dead thread frees none). */
static void tally_orphan(uintptr_t thread) {
    mu_lock(&tally_mu);
    for (int i = 0; i < tally_top; i++)
        if (tally[i].pins && tally[i].thread == thread) tally[i].thread = 0;
    mu_unlock(&tally_mu);
}

#if defined(_WIN32)
static DWORD tally_fls = FLS_OUT_OF_INDEXES;
static INIT_ONCE tally_once = INIT_ONCE_STATIC_INIT;
static void WINAPI tally_exit(void *thread) {
    if (thread) tally_orphan((uintptr_t)thread);
}
static BOOL CALLBACK tally_init(INIT_ONCE *once, void *arg, void **ctx) {
    (void)once, (void)arg, (void)ctx;
    tally_fls = FlsAlloc(tally_exit);
    return TRUE;
}
static void tally_watch_exit(void) {
    InitOnceExecuteOnce(&tally_once, tally_init, NULL, NULL);
    if (tally_fls != FLS_OUT_OF_INDEXES) FlsSetValue(tally_fls, (void *)frm_thread());
}
#else
static pthread_key_t tally_key;
static pthread_once_t tally_once = PTHREAD_ONCE_INIT;
static int tally_key_ok;
static void tally_exit(void *thread) { tally_orphan((uintptr_t)thread); }
static void tally_init(void) { tally_key_ok = pthread_key_create(&tally_key, tally_exit) == 0; }
static void tally_watch_exit(void) {
    pthread_once(&tally_once, tally_init);
    if (tally_key_ok) pthread_setspecific(tally_key, (void *)frm_thread());
}
#endif

/* tally_mu held (it guards name_hash). */
static uint32_t store_hash(frm_store *st) {
    if (st->name_hash) return st->name_hash;
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *c = st->seg->name; *c; c++) h = (h ^ (uint8_t)*c) * 16777619u;
    return st->name_hash = h | 1u; /* never 0, which means "not yet" */
}

/* Mutex held. A forked child starts with no pins: forget the parent's. */
static void tally_own_process(void) {
    if (tally_pid == my_pid()) return;
    memset(tally, 0, sizeof tally);
    tally_lost = 0;
    tally_top = 0;
    tally_pid = my_pid();
}

static void tally_add(frm_store *st, uintptr_t thread, int delta) {
    if (delta > 0 && !tally_hooked) {
        tally_watch_exit();
        tally_hooked = 1;
    }
    mu_lock(&tally_mu);
    tally_own_process();
    uint32_t store = store_hash(st);
    int at = -1;
    for (int i = 0; i < tally_top && at < 0; i++)
        if (tally[i].pins && tally[i].thread == thread && tally[i].store == store) at = i;
    for (int i = 0; i < tally_top && at < 0 && delta < 0; i++)
        if (tally[i].pins && tally[i].thread == 0 && tally[i].store == store) at = i; /* orphaned */
    for (int i = 0; i < TALLY_ENTRIES && at < 0 && delta > 0; i++)
        if (tally[i].pins == 0) at = i;
    if (at >= 0) {
        tally[at].thread = thread;
        tally[at].store = store;
        tally[at].pins += (uint32_t)delta;
        if (at >= tally_top) tally_top = at + 1;
        while (tally_top > 0 && tally[tally_top - 1].pins == 0) tally_top--;
    } else if (delta > 0 || tally_lost) {
        tally_lost += (uint32_t)delta;
    }
    mu_unlock(&tally_mu);
}

/* Does no live thread but the calling one hold pins this process took in
 * `st`? (Pins of ended threads are the caller's for all anyone can tell.) */
static int tally_all_mine(frm_store *st) {
    uintptr_t me = frm_thread();
    uint32_t others = 0, any = 0;
    mu_lock(&tally_mu);
    tally_own_process();
    uint32_t store = store_hash(st);
    for (int i = 0; i < tally_top; i++) {
        if (!tally[i].pins || tally[i].store != store) continue;
        any += tally[i].pins;
        if (tally[i].thread != me && tally[i].thread != 0) others += tally[i].pins;
    }
    int lost = tally_lost != 0;
    mu_unlock(&tally_mu);
    return !lost && any > 0 && others == 0;
}

static int past(int64_t deadline) { return deadline >= 0 && frm_now_ns() >= deadline; }

/* Nanoseconds to wait now: up to the deadline, at most one slice. */
static int64_t slice_left(int64_t deadline) {
    if (deadline < 0) return FRM_SLICE_NS;
    int64_t left = deadline - frm_now_ns();
    if (left < 0) left = 0;
    return left < FRM_SLICE_NS ? left : FRM_SLICE_NS;
}

/* ---- layout ---- */

static const uint8_t ITEMSIZE[FRM_DTYPE_END] = {0, 1, 1, 1, 2, 2, 4, 4, 8, 8, 2, 4, 8};

uint32_t frm_itemsize(uint32_t dtype) { return dtype < FRM_DTYPE_END ? ITEMSIZE[dtype] : 0; }

static uint64_t round_page(uint64_t n) { return (n + FRM_PAGE - 1) & ~(uint64_t)(FRM_PAGE - 1); }

static uint64_t ctrl_size_for(uint32_t table_slots) {
    return round_page(FRM_TABLE_AT + (uint64_t)table_slots * sizeof(frm_slot));
}

int frm_check_options(const frm_options *o) {
    if (o->capacity > FRM_MAX_FRAME_BYTES) return EFBIG;
    if (o->slots < FRM_MIN_SPARES || o->slots > o->max_slots || o->max_slots > FRM_MAX_SPARES)
        return EINVAL;
    if (o->history < 1 || o->history > FRM_MAX_HISTORY) return EINVAL;
    if (o->meta_capacity > FRM_META_MAX) return EINVAL;
    return 0;
}

int frm_data_size(const frm_options *o, uint64_t *size) {
    int rc = frm_check_options(o);
    if (rc) return rc;
    uint32_t table = o->history + o->max_slots;
    uint64_t cap = round_page(o->capacity ? o->capacity : 1);
    uint64_t stride = round_page(o->meta_capacity) + cap;
    *size = ctrl_size_for(table) + table * stride;
    return 0;
}

static frm_slot *slot_at(const frm_store *st, int i) { return &st->table[i]; }
static uint64_t slot_offset(const frm_store *st, int i) {
    return st->ctrl_size + (uint64_t)i * st->stride;
}

static void handle_init(frm_store *st, shmp_seg *seg) {
    unsigned char *data = shmp_data(seg);
    st->seg = seg;
    st->data = data;
    st->ctrl = (frm_ctrl *)data;
    st->subs = (frm_sub *)(data + FRM_SUBS_AT);
    st->pinners = (frm_pinner *)(data + FRM_PINNERS_AT);
    st->pinner = -1;
    st->table = (frm_slot *)(data + FRM_TABLE_AT);
    st->copy_threads = 2;
    st->pid = my_pid();
    memset(st->pins, 0, sizeof st->pins);
    memset(st->claimed, 0, sizeof st->claimed);
    mu_init(&st->mu);
}

/* The header's immutable fields, checked against the real data size. */
static int validate_head(const frm_ctrl *c, uint64_t size) {
    if (size < FRM_HEAD_SIZE) return SHMP_EINCOMPAT;
    if (c->magic != FRM_MAGIC || c->version != FRM_VERSION) return SHMP_EINCOMPAT;
    if (c->history < 1 || c->history > FRM_MAX_HISTORY) return SHMP_EINCOMPAT;
    if (c->slots < FRM_MIN_SPARES || c->slots > c->max_slots || c->max_slots > FRM_MAX_SPARES)
        return SHMP_EINCOMPAT;
    if (c->table_slots != c->history + c->max_slots) return SHMP_EINCOMPAT;
    if (c->ctrl_size != ctrl_size_for(c->table_slots)) return SHMP_EINCOMPAT;
    if (c->slot_capacity == 0 || c->slot_capacity % FRM_PAGE ||
        c->slot_capacity > FRM_MAX_FRAME_BYTES)
        return SHMP_EINCOMPAT;
    if (c->meta_capacity % FRM_PAGE || c->meta_capacity > FRM_META_MAX) return SHMP_EINCOMPAT;
    if (c->slot_stride != c->meta_capacity + c->slot_capacity) return SHMP_EINCOMPAT;
    if (size < c->ctrl_size || (size - c->ctrl_size) / c->table_slots < c->slot_stride)
        return SHMP_EINCOMPAT;
    return 0;
}

int frm_open(frm_store *st, shmp_seg *seg) {
    memset(st, 0, sizeof *st);
    if (seg->map_size < SHMP_HEADER_SIZE) return SHMP_EINCOMPAT;
    uint64_t size = seg->map_size - SHMP_HEADER_SIZE;
    if (size < FRM_HEAD_SIZE) return SHMP_EINCOMPAT;
    frm_ctrl c;
    snapshot(&c, shmp_data(seg), sizeof c);
    int rc = validate_head(&c, size);
    if (rc) return rc;
    handle_init(st, seg);
    st->capacity = c.slot_capacity;
    st->stride = c.slot_stride;
    st->ctrl_size = c.ctrl_size;
    st->meta_capacity = c.meta_capacity;
    st->table_slots = c.table_slots;
    st->history = c.history;
    st->slots = c.slots;
    st->max_slots = c.max_slots;
    st->min_capacity = c.min_capacity < c.slot_capacity ? c.min_capacity : c.slot_capacity;
    return 0;
}

void frm_close(frm_store *st) {
    if (st->seg) mu_destroy(&st->mu);
    st->seg = NULL;
}

static void write_head(frm_ctrl *c, const frm_options *o, uint64_t last_generation) {
    uint32_t table = o->history + o->max_slots;
    c->version = FRM_VERSION;
    c->ctrl_size = (uint32_t)ctrl_size_for(table);
    c->slot_capacity = round_page(o->capacity ? o->capacity : 1);
    c->meta_capacity = (uint32_t)round_page(o->meta_capacity);
    c->table_slots = table;
    c->slots = o->slots;
    c->max_slots = o->max_slots;
    c->history = o->history;
    c->active_slots = o->history + o->slots;
    c->slot_stride = c->meta_capacity + c->slot_capacity;
    c->last_generation = last_generation;
    c->min_capacity = o->min_capacity < o->capacity ? o->min_capacity : o->capacity;
    c->magic = FRM_MAGIC;
}

int frm_build(frm_store *st, shmp_seg *seg, const frm_options *o, const char *key,
              size_t key_len, int persistent, uint64_t last_generation) {
    uint64_t size;
    memset(st, 0, sizeof *st);
    int rc = frm_data_size(o, &size);
    if (rc) return rc;
    uint64_t ctrl = ctrl_size_for(o->history + o->max_slots);
    rc = shmp_build(seg, size, ctrl, persistent, key, key_len);
    if (rc) return rc;
    write_head((frm_ctrl *)shmp_data(seg), o, last_generation);
    rc = frm_open(st, seg);
    if (rc) shmp_discard(seg);
    return rc;
}

void frm_get_options(const frm_store *st, frm_options *o) {
    o->capacity = st->capacity;
    o->min_capacity = st->min_capacity;
    o->slots = st->slots;
    o->max_slots = st->max_slots;
    o->history = st->history;
    o->meta_capacity = st->meta_capacity;
}

int frm_superseded(const frm_store *st) {
    return st->seg->replaced ||
           (shmp_load_flags(&shmp_hdr(st->seg)->flags) & SHMP_FLAG_SUPERSEDED) != 0;
}

uint64_t frm_generation(const frm_store *st) { return load64(&st->ctrl->latest) >> 8; }

/* Takes the handle's local mutex. A forked child holds none of its
 * parent's pins or claims, and gets a fresh mutex: another thread of the
 * parent may have held it at fork time, and that thread is not here. */
static void enter(frm_store *st) {
    uint32_t pid = my_pid();
    if (st->pid != pid) {
        mu_init(&st->mu);
        st->pid = pid;
        memset(st->pins, 0, sizeof st->pins);
        memset(st->claimed, 0, sizeof st->claimed);
        st->pinner = -1; /* the parent's entry and its lock are not ours */
        st->total_pins = 0;
    }
    mu_lock(&st->mu);
}

uint32_t frm_pid(void) { return my_pid(); }

uint32_t frm_active_slots(frm_store *st) { return load32(&st->ctrl->active_slots); }

/* ---- attaching and following ---- */

static int attach_live(frm_store *st, shmp_seg *seg, const char *name, int writable) {
    for (int i = 0; i < FOLLOW_MAX; i++) {
        int rc = shmp_attach(seg, name, writable);
        if (rc) return rc;
        rc = frm_open(st, seg);
        if (rc) {
            shmp_detach(seg);
            return rc;
        }
        if (!frm_superseded(st)) return 0;
        frm_close(st);
        shmp_detach(seg); /* replaced just now: the name holds its successor */
    }
    return SHMP_EINCOMPAT; /* stays marked as replaced: not a segment to trust */
}

int frm_attach(frm_store *st, shmp_seg *seg, const char *name, int writable, int create,
               const frm_options *o, const char *key, size_t key_len, int persistent,
               int *created) {
    *created = 0;
    for (int i = 0; i < FOLLOW_MAX; i++) {
        int rc = attach_live(st, seg, name, writable);
        if (rc != ENOENT || !create) return rc;
        rc = frm_build(st, seg, o, key, key_len, persistent, 0);
        if (rc) return rc;
        rc = shmp_link(seg, name);
        if (rc == 0) {
            *created = 1;
            kw_announce(name); /* wakes wait() calls made before it existed */
            return 0;
        }
        frm_close(st);
        shmp_discard(seg);
        if (rc != EEXIST) return rc;
        /* somebody else created it meanwhile: attach to theirs */
    }
    return EAGAIN;
}

int frm_detach(frm_store *st) {
    shmp_seg *seg = st->seg;
    frm_close(st);
    return seg ? shmp_detach(seg) : 0;
}

/* The live store to work on: `st`, or its successor in `fw`. */
static int live(frm_store *st, frm_follow *fw, frm_store **out) {
    frm_store *cur = (fw && fw->moved) ? fw->store : st;
    if (!frm_superseded(cur)) {
        *out = cur;
        return 0;
    }
    if (!fw) return ESTALE;
    char name[SHMP_NAME_MAX + 1];
    memcpy(name, cur->seg->name, sizeof name);
    int writable = cur->seg->writable;
    if (fw->moved) {
        frm_detach(fw->store); /* nobody but this call has seen it yet */
        fw->moved = 0;
    }
    int rc = attach_live(fw->store, fw->seg, name, writable);
    if (rc) return rc;
    fw->moved = 1;
    *out = fw->store;
    return 0;
}

/* ---- reading ---- */

/* The slot a `latest` or ring word names, or -1. */
static int slot_of(const frm_store *st, uint64_t word) {
    uint64_t s = word & 0xff;
    return (s == 0 || s > st->table_slots) ? -1 : (int)(s - 1);
}

static int decode_desc(const frm_store *st, const frm_slot *d, int slot, frm_frame *f) {
    if (d->ndim < 2 || d->ndim > FRM_MAX_DIMS) return SHMP_EINCOMPAT;
    uint32_t item = frm_itemsize(d->dtype);
    if (!item) return SHMP_EINCOMPAT;
    uint64_t n = item;
    for (uint32_t i = 0; i < d->ndim; i++) {
        if (d->shape[i] == 0 || d->shape[i] > st->capacity / n) return SHMP_EINCOMPAT;
        n *= d->shape[i];
    }
    if (d->meta_len > st->meta_capacity) return SHMP_EINCOMPAT;
    memset(f, 0, sizeof *f);
    f->slot = slot;
    f->ndim = d->ndim;
    memcpy(f->shape, d->shape, sizeof f->shape);
    for (uint32_t i = d->ndim; i < FRM_MAX_DIMS; i++) f->shape[i] = 0;
    f->dtype = d->dtype;
    f->itemsize = item;
    f->nbytes = n;
    f->generation = d->generation;
    f->timestamp_ns = d->timestamp_ns;
    f->writer_pid = d->writer_pid;
    f->meta_len = d->meta_len;
    f->meta_offset = slot_offset(st, slot);
    f->offset = f->meta_offset + st->meta_capacity;
    return 0;
}

int frm_decode(frm_store *st, int slot, frm_frame *f) {
    if (slot < 0 || (uint32_t)slot >= st->table_slots) return EINVAL;
    frm_slot d;
    snapshot(&d, slot_at(st, slot), sizeof d);
    return decode_desc(st, &d, slot, f);
}

/* Is slot i left WRITING by a writer that died: no claim of this handle, no
 * lock on it, and still WRITING after that look (a writer that has just
 * finished stored COMPLETE before letting go of the slot), with still
 * nothing published? */
static int abandoned(frm_store *st, uint32_t i) {
    int locked = 1;
    enter(st);
    int mine = st->claimed[i];
    mu_unlock(&st->mu);
    if (mine || shmp_range_test(st->seg, i, &locked) != 0 || locked) return 0;
    return load32(&slot_at(st, (int)i)->state) == FRM_WRITING && load64(&st->ctrl->latest) == 0;
}

/* Nothing published: ETORN when a writer died mid-publish (a slot left
 * WRITING with no writer's lock on it), else ENOFRAME. */
static int no_frame(frm_store *st) {
    for (uint32_t i = 0; i < st->table_slots; i++) {
        if (load32(&slot_at(st, (int)i)->state) != FRM_WRITING) continue;
        if (abandoned(st, i)) return FRM_ETORN;
    }
    return FRM_ENOFRAME;
}

int frm_latest(frm_store *st, frm_follow *fw, frm_frame *f) {
    frm_store *cur;
    int rc = live(st, fw, &cur);
    if (rc) return rc;
    for (int i = 0; i < 1000; i++) {
        uint64_t latest = load64(&cur->ctrl->latest);
        if (latest == 0) return no_frame(cur);
        int slot = slot_of(cur, latest);
        if (slot < 0) return SHMP_EINCOMPAT;
        rc = frm_decode(cur, slot, f);
        if (!rc && load32(&slot_at(cur, slot)->state) != FRM_COMPLETE) rc = SHMP_EINCOMPAT;
        if (load64(&cur->ctrl->latest) != latest) continue; /* changed meanwhile */
        if (rc) return rc;
        /* A kept slot is never rewritten: one that disagrees with `latest`
         * while `latest` stays is a lie. */
        return f->generation == latest >> 8 ? 0 : SHMP_EINCOMPAT;
    }
    return ETIMEDOUT; /* frames change too fast to read their facts */
}

/* ---- the pinner registry ---- */

/* Takes a registry entry for this handle on its first pin: one whose
 * kernel lock nobody holds (free, or its owner died). A full registry or a
 * read-only mapping leaves the handle unlisted; its pins still count.
 * Local mutex held. */
static void register_pinner(frm_store *st) {
    if (st->pinner != -1) return;
    st->pinner = -2;
    if (!st->seg->writable) return;
    for (uint32_t k = 0; k < FRM_MAX_PINNERS; k++) {
        if (shmp_range_lock(st->seg, FRM_PIN_LOCKS + k, 1) != 0) continue;
        frm_pinner *e = &st->pinners[k];
        for (int w = 0; w < 4; w++) store32(&e->slots[w], 0);
        store32(&e->pins, 0);
        store32(&e->pid, my_pid());
        st->pinner = (int)k;
        return;
    }
}

/* Mirrors a change of this handle's pins into its entry. Mutex held. */
static void note_pins(frm_store *st, int slot, int pinned_now) {
    if (st->pinner < 0) return;
    frm_pinner *e = &st->pinners[st->pinner];
    uint32_t *w = &e->slots[slot / 32], bit = 1u << (slot % 32);
    store32(w, pinned_now ? (load32(w) | bit) : (load32(w) & ~bit));
    store32(&e->pins, st->total_pins);
}

/* Counts one more pin of `slot`, whose lock this handle holds. Mutex held. */
static void add_pin(frm_store *st, int slot) {
    tally_add(st, frm_thread(), 1);
    register_pinner(st);
    st->total_pins++;
    note_pins(st, slot, ++st->pins[slot] > 0);
}

int frm_pinners(frm_store *st, frm_pin_info *out, int max, int *n) {
    *n = 0;
    for (uint32_t k = 0; k < FRM_MAX_PINNERS && *n < max; k++) {
        frm_pinner e;
        snapshot(&e, &st->pinners[k], sizeof e);
        if (e.pid == 0 || e.pins == 0) continue;
        enter(st);
        int mine = st->pinner == (int)k;
        mu_unlock(&st->mu);
        int locked = 0;
        if (!mine) {
            int rc = shmp_range_test(st->seg, FRM_PIN_LOCKS + k, &locked);
            if (rc) return rc;
            if (!locked) continue; /* its owner is gone: so are its pins */
        }
        out[*n].pid = e.pid;
        out[*n].pins = e.pins;
        memcpy(out[*n].slots, e.slots, sizeof e.slots);
        (*n)++;
    }
    return 0;
}

/* Pins `slot` for a reader: 0, or EAGAIN when a writer has it. */
static int pin_slot(frm_store *st, int slot) {
    int rc = 0;
    enter(st);
    if (st->claimed[slot]) rc = EAGAIN; /* this handle's own writer: no lock conversion */
    else if (st->pins[slot] == 0) rc = shmp_range_lock(st->seg, (uint64_t)slot, 0);
    if (!rc) add_pin(st, slot);
    mu_unlock(&st->mu);
    return rc;
}

int frm_unpin(frm_store *st, int slot) { return frm_unpin_taken(st, slot, frm_thread()); }

int frm_unpin_taken(frm_store *st, int slot, uintptr_t taker) {
    if (slot < 0 || (uint32_t)slot >= st->table_slots) return EINVAL;
    int rc = 0;
    enter(st);
    if (st->pins[slot]) {
        tally_add(st, taker, -1);
        st->total_pins--;
        if (--st->pins[slot] == 0) rc = shmp_range_unlock(st->seg, (uint64_t)slot);
        note_pins(st, slot, st->pins[slot] > 0);
    }
    mu_unlock(&st->mu);
    return rc;
}

int frm_pin(frm_store *st, frm_follow *fw, frm_frame *f) {
    frm_store *cur;
    int rc = live(st, fw, &cur);
    if (rc) return rc;
    for (int attempt = 0; attempt < PIN_TRIES; attempt++) {
        uint64_t latest = load64(&cur->ctrl->latest);
        if (latest == 0) return no_frame(cur);
        int slot = slot_of(cur, latest);
        if (slot < 0) return SHMP_EINCOMPAT;
        rc = pin_slot(cur, slot);
        if (rc == EAGAIN) {
            yield_cpu();
            continue;
        }
        if (rc) return rc;
        frm_slot *d = slot_at(cur, slot);
        if (load32(&d->state) == FRM_COMPLETE && load64(&d->generation) == latest >> 8) {
            rc = frm_decode(cur, slot, f);
            if (rc == 0 && f->generation == latest >> 8) return 0;
        }
        frm_unpin(cur, slot);
        if (rc) return rc;
        /* Pinned, a kept slot cannot change: if `latest` still names it,
         * its descriptor lies. Else a writer moved on: again. */
        if (load64(&cur->ctrl->latest) == latest) return SHMP_EINCOMPAT;
    }
    return ETIMEDOUT; /* could not pin the latest frame */
}

/* ---- wait and wake ---- */

static void bump_and_wake(frm_store *st) {
    /* seq_cst: the bump is ordered before reading `waiters`. */
    add32(&st->ctrl->seq, 1);
    if (load32_seq(&st->ctrl->waiters)) shmp_wake(st->seg, &st->ctrl->seq);
}

/* A short, bounded spin before sleeping in the kernel: when the other side
 * answers within a few microseconds, the futex round trip is saved. */
static int spin_for_seq(frm_ctrl *c, uint32_t seq, int64_t spin_ns) {
    int64_t end = frm_now_ns() + spin_ns;
    for (;;) {
        for (int i = 0; i < 32; i++) {
            if (load32(&c->seq) != seq) return 1;
            relax();
        }
        if (frm_now_ns() >= end) return 0;
    }
}

/* When a blocking call returns EINTR so the caller can check for signals:
 * one slice from now, or the deadline when that comes first. */
static int64_t slice_end_for(int64_t deadline) {
    int64_t end = frm_now_ns() + FRM_SLICE_NS;
    return deadline >= 0 && deadline < end ? deadline : end;
}

/* When a wait's slice ends with nothing new: was the store replaced by a
 * writer that died before marking it? Then the wait goes on in the
 * successor. A look at the name, once a slice. */
static int found_replaced(frm_store *cur) {
    return !frm_superseded(cur) && shmp_replaced(cur->seg);
}

int frm_wait(frm_store *st, frm_follow *fw, uint64_t after, int64_t deadline, int64_t spin_ns,
             uint64_t *generation) {
    int64_t slice_end = slice_end_for(deadline);
    for (;;) {
        if (load32(&st->cancel)) return ECANCELED;
        frm_store *cur;
        int rc = live(st, fw, &cur);
        if (rc) return rc;
        uint32_t seq = load32(&cur->ctrl->seq);
        uint64_t gen = load64(&cur->ctrl->latest) >> 8;
        if (gen > after) {
            *generation = gen;
            return 0;
        }
        int64_t left = slice_end - frm_now_ns();
        if (left <= 0) {
            if (found_replaced(cur)) continue;
            return past(deadline) ? ETIMEDOUT : EINTR;
        }
        /* frm_cancel wakes the store it was called on; in a successor, look
         * again every 10 ms. */
        if (cur != st && left > 10000000) left = 10000000;
        if (frm_superseded(cur)) continue; /* followed on the next turn */
        if (spin_ns > 0) {
            int moved = spin_for_seq(cur->ctrl, seq, spin_ns < left ? spin_ns : left);
            spin_ns = 0;
            if (moved) continue;
        }
        /* Sleepers announce themselves, so a publish with none skips the
         * wake call. A sleeper that dies leaves the count high: only extra
         * wakes. */
        add32(&cur->ctrl->waiters, 1);
        rc = shmp_wait(cur->seg, &cur->ctrl->seq, seq, left);
        add32(&cur->ctrl->waiters, -1);
        if (rc && rc != ETIMEDOUT) return rc;
    }
}

int frm_cancel(frm_store *st) {
    store32(&st->cancel, 1);
    add32(&st->ctrl->seq, 1); /* a waiter about to sleep sees the word move */
    return shmp_wake(st->seg, &st->ctrl->seq);
}

int frm_set_persistent(frm_store *st) {
    if (!st->seg->writable) return EACCES;
    or32(&shmp_hdr(st->seg)->flags, SHMP_FLAG_PERSISTENT);
    return 0;
}

/* ---- writing ---- */

/* The store's mutex was taken from a holder that died: it may have left a
 * replacement half done, the successor named but this store not yet
 * marked (shmp_replaced marks it, for the caller's superseded check). */
static void took_from_the_dead(frm_store *st) {
    shmp_sweep_builds(); /* it may have died growing the store */
    if (!frm_superseded(st) && shmp_replaced(st->seg)) {
        bump_and_wake(st); /* its waiters move on to the successor */
        shmp_wake(st->seg, &st->ctrl->seq);
    }
}

/* Takes the store's mutex, waiting up to `deadline`. */
static int lock_segment(frm_store *st, int64_t deadline) {
    int died = 0;
    int rc = shmp_lock_try(st->seg, &died);
    if (rc == EBUSY) {
        int64_t left = slice_left(deadline);
        if (left == 0) return ETIMEDOUT;
        rc = shmp_lock_wait(st->seg, left, &died);
        if (rc == ETIMEDOUT && !past(deadline)) return EINTR;
    }
    if (!rc && died) took_from_the_dead(st);
    return rc;
}

/* Is `slot` one of the `history` frames the store keeps? */
static int kept(const frm_store *st, int slot) {
    for (uint32_t i = 0; i < st->history; i++)
        if (slot_of(st, load64(&st->ctrl->ring[i])) == slot) return 1;
    return slot_of(st, load64(&st->ctrl->latest)) == slot;
}

/* Slots to try, most recently written first (never a kept one): a writer
 * alternates between two slots while readers keep up, so the frames it
 * writes stay warm in the cache. The count. */
static int claim_order(const frm_store *st, uint32_t active, int *order) {
    int n = 0;
    for (uint32_t i = 0; i < active; i++) {
        if (kept(st, (int)i)) continue;
        uint64_t g = slot_at(st, (int)i)->generation;
        int j = n++;
        while (j > 0 && slot_at(st, order[j - 1])->generation < g) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = (int)i;
    }
    return n;
}

/* An exclusive lock on `slot` unless this handle pins it: 0 or EAGAIN. */
static int take_slot(frm_store *st, int slot) {
    int rc;
    enter(st);
    if (st->pins[slot] || st->claimed[slot]) {
        rc = EAGAIN;
    } else {
        rc = shmp_range_lock(st->seg, (uint64_t)slot, 1);
        if (!rc) st->claimed[slot] = 1;
    }
    mu_unlock(&st->mu);
    return rc;
}

static void release_slot(frm_store *st, int slot) {
    enter(st);
    st->claimed[slot] = 0;
    shmp_range_unlock(st->seg, (uint64_t)slot);
    mu_unlock(&st->mu);
}

/* One pass over the slots in use, then a new spare up to max_slots: the
 * slot, or -1 when every one is kept or pinned. Mutex held. */
static int find_slot(frm_store *st, int *err) {
    int order[FRM_MAX_TABLE];
    uint32_t active = load32(&st->ctrl->active_slots);
    *err = 0;
    if (active < st->history + st->slots || active > st->table_slots) {
        *err = SHMP_EINCOMPAT;
        return -1;
    }
    int n = claim_order(st, active, order);
    for (int i = 0; i < n; i++) {
        int rc = take_slot(st, order[i]);
        if (rc == 0) return order[i];
        if (rc != EAGAIN) {
            *err = rc;
            return -1;
        }
    }
    if (active < st->table_slots && take_slot(st, (int)active) == 0) {
        store32(&st->ctrl->active_slots, active + 1);
        return (int)active;
    }
    return -1;
}

/* Reserves a slot's pages, but for the first `filled` pixel bytes, which
 * shmp_fill reserved while copying. */
static int reserve_slot(frm_store *st, int slot, uint64_t filled) {
    frm_slot *d = slot_at(st, slot);
    if (load32(&d->flags) & FRM_SLOT_RESERVED) return 0;
    uint64_t off = SHMP_HEADER_SIZE + slot_offset(st, slot);
    uint64_t skip = filled ? st->meta_capacity + round_page(filled) : 0;
    int rc = 0;
    if (filled && st->meta_capacity)
        rc = shmp_reserve(st->seg, off, st->meta_capacity, st->copy_threads);
    if (!rc && skip < st->stride)
        rc = shmp_reserve(st->seg, off + skip, st->stride - skip, st->copy_threads);
    if (!rc) store32(&d->flags, load32(&d->flags) | FRM_SLOT_RESERVED);
    return rc;
}

/* Copies the kept frames of `old` into the empty store `st`, oldest first,
 * into slots 0, 1, ...: readers that follow never find it empty. */
static int carry_kept(frm_store *st, frm_store *old) {
    uint64_t last = load64(&old->ctrl->last_generation);
    uint64_t first = last >= old->history ? last - old->history + 1 : 1;
    if (last >= st->history && first < last - st->history + 1) first = last - st->history + 1;
    int to = 0;
    for (uint64_t g = first; g <= last && g; g++) {
        uint64_t word = load64(&old->ctrl->ring[g % old->history]);
        int from = slot_of(old, word);
        frm_frame f;
        if (word >> 8 != g || from < 0 || frm_decode(old, from, &f) != 0) continue;
        if (f.nbytes > st->capacity || f.meta_len > st->meta_capacity) continue;
        if (to >= (int)(st->history + st->slots)) break;
        int rc = reserve_slot(st, to, 0);
        if (rc) return rc;
        unsigned char *dst = st->data + slot_offset(st, to);
        memcpy(dst, old->data + f.meta_offset, f.meta_len);
        shmp_copy(dst + st->meta_capacity, old->data + f.offset, (size_t)f.nbytes,
                  st->copy_threads);
        frm_slot d;
        snapshot(&d, slot_at(old, from), sizeof d);
        d.flags = FRM_SLOT_RESERVED;
        d.state = FRM_COMPLETE;
        memcpy(slot_at(st, to), &d, sizeof d);
        uint64_t mine = g << 8 | (uint64_t)(to + 1);
        st->ctrl->ring[g % st->history] = mine;
        st->ctrl->latest = mine;
        to++;
    }
    return 0;
}

/* The largest kept frame of a store, in pixel bytes. */
static uint64_t largest_kept(frm_store *st) {
    uint64_t most = 0;
    for (uint32_t i = 0; i < st->history; i++) {
        frm_frame f;
        int slot = slot_of(st, load64(&st->ctrl->ring[i]));
        if (slot >= 0 && frm_decode(st, slot, &f) == 0 && f.nbytes > most) most = f.nbytes;
    }
    return most;
}

static void carry_subs(frm_store *st, frm_store *old);
static void recheck_carried(frm_store *st, frm_store *old);

/* Builds a store with options `o` into *seg, carries the kept frames and
 * the live lossless subscribers' positions, puts it under the name and
 * marks `old` superseded. Mutex of `old` held. */
static int rebuild_into(frm_store *old, shmp_seg *seg, const frm_options *o) {
    shmp_header *h = shmp_hdr(old->seg);
    uint32_t key_len = h->key_len < SHMP_KEY_MAX ? h->key_len : SHMP_KEY_MAX;
    frm_store st;
    int rc = frm_build(&st, seg, o, h->key, key_len,
                       (shmp_load_flags(&h->flags) & SHMP_FLAG_PERSISTENT) != 0,
                       load64(&old->ctrl->last_generation));
    if (rc) return rc;
    rc = carry_kept(&st, old);
    if (!rc) carry_subs(&st, old);
    if (!rc) rc = shmp_swap(seg, old->seg);
    if (!rc) recheck_carried(&st, old);
    frm_close(&st);
    if (rc) {
        shmp_discard(seg);
        return rc;
    }
    bump_and_wake(old); /* waiters move on to the successor */
    shmp_wake(old->seg, &old->ctrl->seq);
    return 0;
}

static int grow(frm_store *old, shmp_seg *seg, uint64_t nbytes, uint32_t meta_len) {
    frm_options o;
    frm_get_options(old, &o);
    /* At least double, so a stream of slowly growing frames grows rarely. */
    o.capacity = nbytes > old->capacity * 2 ? nbytes : old->capacity * 2;
    if (o.capacity > FRM_MAX_FRAME_BYTES) o.capacity = nbytes;
    if (meta_len > o.meta_capacity) o.meta_capacity = FRM_META_MAX;
    return rebuild_into(old, seg, &o);
}

/* After FRM_SHRINK_AFTER frames under a quarter of a slot: the capacity to
 * shrink to (never below the `capacity` option nor a kept frame), or 0. */
static uint64_t shrink_to(frm_store *st, uint64_t nbytes) {
    if (load32(&st->ctrl->small_run) < FRM_SHRINK_AFTER) return 0;
    uint64_t cap = st->min_capacity, kept_max = largest_kept(st);
    if (nbytes > cap) cap = nbytes;
    if (kept_max > cap) cap = kept_max;
    cap = round_page(cap ? cap : 1);
    if (cap * 2 > st->capacity) {
        store32(&st->ctrl->small_run, 0); /* not worth it */
        return 0;
    }
    return cap;
}

/* Makes `seg` (attached, named) the store in `fw`. */
static int install(frm_follow *fw, shmp_seg *seg) {
    if (fw->moved) frm_detach(fw->store);
    fw->moved = 0;
    memcpy(fw->seg, seg, sizeof *seg);
    int rc = frm_open(fw->store, fw->seg);
    if (rc) {
        shmp_detach(fw->seg);
        return rc;
    }
    fw->moved = 1;
    return 0;
}

/* Locks the live store's mutex, growing it when the frame does not fit. */
static int lock_fitting(frm_store *st, frm_follow *fw, uint64_t nbytes, uint32_t meta_len,
                        int64_t deadline, frm_store **out) {
    for (int i = 0; i < FOLLOW_MAX; i++) {
        frm_store *cur;
        int rc = live(st, fw, &cur);
        if (rc) return rc;
        rc = lock_segment(cur, deadline);
        if (rc) return rc;
        if (frm_superseded(cur)) { /* replaced while we waited for the lock */
            shmp_unlock(cur->seg);
            continue;
        }
        int fits = nbytes <= cur->capacity && meta_len <= cur->meta_capacity;
        uint64_t smaller = fits && fw ? shrink_to(cur, nbytes) : 0;
        if (fits && !smaller) {
            *out = cur;
            return 0;
        }
        if (!fw) {
            shmp_unlock(cur->seg);
            return ESTALE;
        }
        shmp_seg seg;
        if (smaller) {
            frm_options o;
            frm_get_options(cur, &o);
            o.capacity = smaller;
            rc = rebuild_into(cur, &seg, &o);
        } else {
            rc = grow(cur, &seg, nbytes, meta_len);
        }
        shmp_unlock(cur->seg);
        if (!rc) rc = install(fw, &seg);
        if (rc) return rc;
    }
    return SHMP_EINCOMPAT; /* keeps being replaced */
}

/* Is every slot that blocks a claim pinned by this process (any of its
 * handles)? Then waiting cannot help. */
static int only_own_pins(frm_store *st) {
    uint32_t active = load32(&st->ctrl->active_slots);
    if (active < st->table_slots) return 0;
    frm_pin_info info[FRM_MAX_PINNERS];
    int n = 0;
    if (frm_pinners(st, info, FRM_MAX_PINNERS, &n)) return 0;
    uint32_t me = my_pid();
    for (uint32_t i = 0; i < active; i++) {
        if (kept(st, (int)i)) continue;
        enter(st);
        int mine = st->pins[i] > 0;
        mu_unlock(&st->mu);
        for (int j = 0; j < n && !mine; j++)
            mine = info[j].pid == me && (info[j].slots[i / 32] >> (i % 32) & 1u);
        if (!mine) return 0;
    }
    return 1;
}

static int wait_for_subscribers(frm_store *st, uint32_t keep, int64_t deadline);
static uint32_t slow_subscriber(frm_store *st, uint32_t keep);

int frm_rebuild(frm_store *st, frm_follow *fw, const frm_options *o, int64_t deadline) {
    if (!fw) return EINVAL;
    int rc = frm_check_options(o);
    if (rc) return rc;
    for (int i = 0; i < FOLLOW_MAX; i++) {
        frm_store *cur;
        rc = live(st, fw, &cur);
        if (rc) return rc;
        rc = lock_segment(cur, deadline);
        if (rc) return rc;
        if (frm_superseded(cur)) {
            shmp_unlock(cur->seg);
            continue;
        }
        /* A smaller history keeps fewer frames: lossless subscribers take
         * the ones it would not carry first. */
        rc = wait_for_subscribers(cur, o->history, deadline);
        if (rc) {
            if (cur != st) st->slow_pid = cur->slow_pid;
            shmp_unlock(cur->seg);
            return rc;
        }
        frm_options want = *o;
        uint64_t most = largest_kept(cur);
        if (most > want.capacity) want.capacity = most;
        if (want.meta_capacity < cur->meta_capacity) want.meta_capacity = cur->meta_capacity;
        shmp_seg seg;
        rc = rebuild_into(cur, &seg, &want);
        shmp_unlock(cur->seg);
        return rc ? rc : install(fw, &seg);
    }
    return SHMP_EINCOMPAT;
}

/* The claim of `slot`, found free with the mutex held: being written now. */
static void claimed(frm_store *st, int slot, frm_claim_t *out) {
    store32(&slot_at(st, slot)->state, FRM_WRITING);
    out->store = st;
    out->slot = slot;
    out->meta = st->data + slot_offset(st, slot);
    out->pixels = out->meta + st->meta_capacity;
}

static int claim_locked(frm_store *st, frm_follow *fw, uint64_t nbytes, uint32_t meta_len,
                        int64_t deadline, frm_claim_t *out) {
    if (nbytes > FRM_MAX_FRAME_BYTES) return EFBIG;
    if (meta_len > FRM_META_MAX) return EINVAL;
    frm_store *cur = st;
    int rc = lock_fitting(st, fw, nbytes, meta_len, deadline, &cur);
    if (rc) return rc;
    rc = wait_for_subscribers(cur, cur->history - 1, deadline);
    if (rc) {
        if (cur != st) st->slow_pid = cur->slow_pid;
        shmp_unlock(cur->seg);
        return rc;
    }
    int64_t start = frm_now_ns(), looked = -1;
    for (;;) {
        int err;
        int slot = find_slot(cur, &err);
        if (slot >= 0) {
            claimed(cur, slot, out);
            return 0;
        }
        /* Waiting cannot end when the calling thread took every pin of
         * this process and those are all that block: at the first look.
         * Other threads' pins come and go: look again every 10 ms. */
        int64_t now = frm_now_ns();
        int own = 0;
        if (!err && (looked < 0 || now - looked >= OWN_LOOK_NS)) {
            looked = now;
            own = tally_all_mine(cur) && only_own_pins(cur);
        }
        if (err) rc = err;
        else if (own) rc = FRM_EOWNPINS;
        else if (past(deadline)) rc = FRM_EPINNED;
        else if (frm_now_ns() - start >= FRM_SLICE_NS) rc = EINTR;
        if (rc) {
            shmp_unlock(cur->seg);
            return rc;
        }
        shmp_nap();
    }
}

int frm_claim(frm_store *st, frm_follow *fw, uint64_t nbytes, uint32_t meta_len,
              int64_t deadline, frm_claim_t *out) {
    int rc = claim_locked(st, fw, nbytes, meta_len, deadline, out);
    if (rc) return rc;
    rc = reserve_slot(out->store, out->slot, 0);
    if (rc) frm_abandon(out);
    return rc;
}

int frm_abandon(frm_claim_t *c) {
    frm_store *st = c->store;
    store32(&slot_at(st, c->slot)->state, FRM_FREE);
    release_slot(st, c->slot);
    return shmp_unlock(st->seg);
}

static int check_spec(const frm_store *st, const frm_spec *spec, uint64_t *nbytes) {
    uint32_t item = frm_itemsize(spec->dtype);
    if (!item || spec->ndim < 2 || spec->ndim > FRM_MAX_DIMS) return EINVAL;
    if (spec->meta_len > st->meta_capacity) return EINVAL;
    uint64_t n = item;
    for (uint32_t i = 0; i < spec->ndim; i++) {
        if (spec->shape[i] == 0 || spec->shape[i] > st->capacity / n) return EINVAL;
        n *= spec->shape[i];
    }
    *nbytes = n;
    return 0;
}

/* Turns this handle's claim of `slot` into a pin: the exclusive lock
 * becomes a shared one in one step (no moment without a lock). */
static void keep_pinned(frm_store *st, int slot) {
    enter(st);
    st->claimed[slot] = 0;
    if (st->pins[slot] == 0) shmp_range_lock(st->seg, (uint64_t)slot, 0);
    add_pin(st, slot);
    mu_unlock(&st->mu);
}

/* Counts frames much smaller than a slot, for shrinking. Mutex held. */
static void note_size(frm_store *st, uint64_t nbytes) {
    uint32_t run = load32(&st->ctrl->small_run);
    store32(&st->ctrl->small_run, nbytes < st->capacity / 4 ? run + 1 : 0);
}

static int commit(frm_claim_t *c, const frm_spec *spec, uint64_t *generation, int keep) {
    frm_store *st = c->store;
    uint64_t nbytes;
    int rc = check_spec(st, spec, &nbytes);
    if (rc) {
        frm_abandon(c);
        return rc;
    }
    frm_ctrl *ctrl = st->ctrl;
    frm_slot d;
    memset(&d, 0, sizeof d);
    uint64_t gen = ctrl->last_generation + 1;
    d.state = FRM_WRITING;
    d.ndim = spec->ndim;
    memcpy(d.shape, spec->shape, spec->ndim * sizeof(uint64_t));
    d.dtype = spec->dtype;
    d.flags = FRM_SLOT_RESERVED;
    d.nbytes = nbytes;
    d.generation = gen;
    d.timestamp_ns = frm_wall_ns();
    d.writer_pid = my_pid();
    d.meta_len = spec->meta_len;
    if (spec->meta_len && spec->meta && spec->meta != c->meta)
        memcpy(c->meta, spec->meta, spec->meta_len);
    publish_bytes(slot_at(st, c->slot), &d, sizeof d);
    store32(&slot_at(st, c->slot)->state, FRM_COMPLETE);
    uint64_t word = gen << 8 | (uint64_t)(c->slot + 1);
    /* The slot's exclusive lock goes before `latest` names it (the mutex
     * keeps other writers out): a reader that finds it latest can pin it
     * at once instead of losing races until this writer runs again. */
    if (keep) keep_pinned(st, c->slot);
    else release_slot(st, c->slot);
    /* The ring first: a writer killed in between leaves `gen` unused (the
     * next commit takes it), never a generation spent with no frame. */
    store64(&ctrl->ring[gen % st->history], word);
    store64(&ctrl->last_generation, gen);
    store64(&ctrl->latest, word);
    note_size(st, nbytes);
    bump_and_wake(st);
    *generation = gen;
    rc = shmp_unlock(st->seg);
    if (gen == 1) kw_announce(st->seg->name); /* a waiter may have missed the creation */
    return rc;
}

int frm_commit(frm_claim_t *c, const frm_spec *spec, uint64_t *generation) {
    return commit(c, spec, generation, 0);
}

int frm_commit_pinned(frm_claim_t *c, const frm_spec *spec, uint64_t *generation) {
    return commit(c, spec, generation, 1);
}

/* The byte size of the frame `spec` describes, or EINVAL/EFBIG. */
static int spec_bytes(const frm_spec *spec, uint64_t *nbytes) {
    uint32_t item = frm_itemsize(spec->dtype);
    if (!item || spec->ndim < 2 || spec->ndim > FRM_MAX_DIMS) return EINVAL;
    uint64_t n = item;
    for (uint32_t i = 0; i < spec->ndim; i++) {
        if (spec->shape[i] == 0 || spec->shape[i] > FRM_MAX_FRAME_BYTES / n) return EFBIG;
        n *= spec->shape[i];
    }
    *nbytes = n;
    return 0;
}

/* Copies `src` into a claimed slot and commits it (unlocks either way). */
static int fill_and_commit(frm_claim_t *c, const void *src, uint64_t nbytes,
                           const frm_spec *spec, uint64_t *generation) {
    frm_store *cur = c->store;
    frm_slot *d = slot_at(cur, c->slot);
    if (d->flags & FRM_SLOT_RESERVED) {
        shmp_copy(c->pixels, src, (size_t)nbytes, cur->copy_threads);
    } else {
        uint64_t off = SHMP_HEADER_SIZE + slot_offset(cur, c->slot) + cur->meta_capacity;
        int rc = shmp_fill(cur->seg, off, src, nbytes, cur->copy_threads);
        if (!rc) rc = reserve_slot(cur, c->slot, nbytes); /* meta pages, and the rest */
        if (rc) {
            frm_abandon(c);
            return rc;
        }
    }
    return frm_commit(c, spec, generation);
}

int frm_publish(frm_store *st, frm_follow *fw, const void *src, const frm_spec *spec,
                int64_t deadline, uint64_t *generation) {
    uint64_t nbytes;
    int rc = spec_bytes(spec, &nbytes);
    if (rc) return rc;
    frm_claim_t c;
    rc = claim_locked(st, fw, nbytes, spec->meta_len, deadline, &c);
    if (rc) return rc;
    return fill_and_commit(&c, src, nbytes, spec, generation);
}

int frm_publish_now(frm_store *st, const void *src, const frm_spec *spec,
                    uint64_t *generation) {
    uint64_t nbytes;
    int rc = spec_bytes(spec, &nbytes);
    if (rc) return rc;
    if (nbytes > FRM_NOW_MAX_BYTES || spec->meta_len > st->meta_capacity) return EWOULDBLOCK;
    int died = 0;
    rc = shmp_lock_try(st->seg, &died);
    if (rc) return rc == EBUSY ? EWOULDBLOCK : rc;
    if (died) took_from_the_dead(st);
    int slot = -1, err = 0;
    /* Anything that would move, rebuild or wait is left to frm_publish. */
    if (!frm_superseded(st) && nbytes <= st->capacity && !shrink_to(st, nbytes) &&
        !slow_subscriber(st, st->history - 1))
        slot = find_slot(st, &err);
    if (slot < 0) {
        shmp_unlock(st->seg);
        return err ? err : EWOULDBLOCK;
    }
    frm_claim_t c;
    claimed(st, slot, &c);
    return fill_and_commit(&c, src, nbytes, spec, generation);
}

/* ---- subscribers ---- */

/* Process liveness, for entries a rebuild carried into a store: their
 * subscriber holds its kernel lock in the store it registered in, not in
 * this one, until it adopts the entry. 0 and the process's start time
 * (0 where unknown) while it runs; ESRCH once it is gone or a zombie. */
#if defined(__linux__)
static int proc_start(uint32_t pid, uint64_t *start) {
    char path[32], buf[512];
    snprintf(path, sizeof path, "/proc/%u/stat", (unsigned)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? ESRCH : 0; /* can't tell: alive */
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    *start = 0;
    if (n <= 0) return ESRCH;
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold anything */
    if (!p || p[1] != ' ') return 0;
    p += 2;
    if (*p == 'Z' || *p == 'X') return ESRCH;
    for (int field = 3; field < 22 && p; field++) { /* starttime is field 22 */
        p = strchr(p, ' ');
        if (p) p++;
    }
    if (p) *start = strtoull(p, NULL, 10);
    return 0;
}
#elif defined(_WIN32)
static int proc_start(uint32_t pid, uint64_t *start) {
    *start = 0;
    HANDLE h = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, pid);
    if (!h) return GetLastError() == ERROR_ACCESS_DENIED ? 0 : ESRCH;
    DWORD code = 0;
    FILETIME created, exited, kernel, user;
    int rc = ESRCH;
    if (GetExitCodeProcess(h, &code) && code == STILL_ACTIVE) {
        rc = 0;
        if (GetProcessTimes(h, &created, &exited, &kernel, &user))
            *start = (uint64_t)created.dwHighDateTime << 32 | created.dwLowDateTime;
    }
    CloseHandle(h);
    return rc;
}
#else
static int proc_start(uint32_t pid, uint64_t *start) {
    *start = 0;
    return kill((pid_t)pid, 0) == 0 || errno == EPERM ? 0 : ESRCH;
}
#endif

static int proc_alive(uint32_t pid, uint64_t start) {
    uint64_t now = 0;
    if (pid == 0 || proc_start(pid, &now)) return 0;
    return start == 0 || now == 0 || now == start;
}

static int carried_pending(uint32_t flags) {
    return flags == (FRM_SUB_LOSSLESS | FRM_SUB_CARRIED);
}

/* Is entry k live: its kernel lock held, or carried here by a rebuild and
 * its process alive? */
static int sub_live(frm_store *st, uint32_t k) {
    frm_sub *e = &st->subs[k];
    if (load32(&e->state) != FRM_SUB_LIVE) return 0;
    int locked = 0;
    if (load32(&e->flags) == FRM_SUB_LOSSY)
        return shmp_range_test(st->seg, FRM_LOSSY_LOCKS + k, &locked) == 0 && locked;
    if (shmp_range_test(st->seg, FRM_SUB_LOCKS + k, &locked) == 0 && locked) return 1;
    return carried_pending(load32(&e->flags)) && proc_alive(load32(&e->pid), load64(&e->start_time));
}

/* Is entry k a lossy subscription's, live? */
static int lossy_live(frm_store *st, uint32_t k) {
    return load32(&st->subs[k].state) == FRM_SUB_LIVE &&
           load32(&st->subs[k].flags) == FRM_SUB_LOSSY && sub_live(st, k);
}

int frm_subscriber(frm_store *st, uint32_t k, frm_sub *out, int *alive) {
    if (k >= FRM_MAX_SUBS) return EINVAL;
    snapshot(out, &st->subs[k], sizeof *out);
    *alive = 0;
    if (out->state == FRM_SUB_FREE) return ENOENT;
    if (out->state != FRM_SUB_LIVE ||
        out->flags & ~(uint32_t)(FRM_SUB_LOSSLESS | FRM_SUB_CARRIED | FRM_SUB_LOSSY))
        return SHMP_EINCOMPAT;
    if (out->flags == FRM_SUB_LOSSY) out->next_generation = out->lossy_next;
    if (out->next_generation > load64(&st->ctrl->last_generation) + 1) return SHMP_EINCOMPAT;
    *alive = sub_live(st, k);
    return 0;
}

/* ---- streams ---- */

/* The newest generation and the oldest one the ring can still hold. */
static void kept_range(frm_store *st, uint64_t *oldest, uint64_t *newest) {
    uint64_t n = load64(&st->ctrl->latest) >> 8;
    *newest = n;
    *oldest = n > st->history ? n - st->history + 1 : 1;
}

/* Has the writer ended the stream before generation `want`? */
static int ended(frm_store *st, uint64_t want) {
    uint64_t end = load64(&st->ctrl->end_generation);
    return end != 0 && end < want && end == load64(&st->ctrl->latest) >> 8;
}

/* Pins kept generation g into *f: 0, EAGAIN when the ring moved past it. */
static int pin_generation(frm_store *st, uint64_t g, frm_frame *f) {
    for (int attempt = 0; attempt < PIN_TRIES; attempt++) {
        uint64_t word = load64(&st->ctrl->ring[g % st->history]);
        if (word >> 8 > g) {
            /* A commit writes the ring just before `latest`: at most one ahead. */
            uint64_t newest = load64(&st->ctrl->latest) >> 8;
            return word >> 8 > newest + 1 ? SHMP_EINCOMPAT : EAGAIN;
        }
        if (word >> 8 != g) return ENOENT;
        int slot = slot_of(st, word);
        if (slot < 0) return SHMP_EINCOMPAT;
        int rc = pin_slot(st, slot);
        if (rc == EAGAIN) {
            yield_cpu();
            continue;
        }
        if (rc) return rc;
        frm_slot *d = slot_at(st, slot);
        if (load32(&d->state) == FRM_COMPLETE && load64(&d->generation) == g) {
            rc = frm_decode(st, slot, f);
            if (rc == 0 && f->generation == g) return 0;
        }
        frm_unpin(st, slot);
        if (rc) return rc;
        /* Pinned, a kept slot cannot change: if the ring still names it,
         * its descriptor lies. */
        if (load64(&st->ctrl->ring[g % st->history]) == word) return SHMP_EINCOMPAT;
    }
    return ETIMEDOUT;
}

int frm_pin_from(frm_store *st, frm_follow *fw, uint64_t want, frm_frame *f) {
    frm_store *cur;
    int rc = live(st, fw, &cur);
    if (rc) return rc;
    if (want == 0) want = 1;
    for (int attempt = 0; attempt < PIN_TRIES; attempt++) {
        uint64_t oldest, newest;
        kept_range(cur, &oldest, &newest);
        if (newest < want) return ended(cur, want) ? FRM_EEND : EAGAIN;
        uint64_t g = want > oldest ? want : oldest;
        for (; g <= newest; g++) {
            rc = pin_generation(cur, g, f);
            if (rc != ENOENT) break; /* ENOENT: a hole (a rebuilt store), the next one */
        }
        if (rc == ENOENT) return EAGAIN;
        if (rc != EAGAIN) return rc;
    }
    return ETIMEDOUT; /* the writer laps the ring faster than a pin */
}

int frm_wait_from(frm_store *st, frm_follow *fw, uint64_t want, int64_t deadline) {
    int64_t slice_end = slice_end_for(deadline);
    for (;;) {
        if (load32(&st->cancel)) return ECANCELED;
        frm_store *cur;
        int rc = live(st, fw, &cur);
        if (rc) return rc;
        uint32_t seq = load32(&cur->ctrl->seq);
        if (load64(&cur->ctrl->latest) >> 8 >= want || ended(cur, want)) return 0;
        int64_t left = slice_end - frm_now_ns();
        if (left <= 0) {
            if (found_replaced(cur)) continue;
            return past(deadline) ? ETIMEDOUT : EINTR;
        }
        if (cur != st && left > 10000000) left = 10000000;
        if (frm_superseded(cur)) continue;
        add32(&cur->ctrl->waiters, 1);
        rc = shmp_wait(cur->seg, &cur->ctrl->seq, seq, left);
        add32(&cur->ctrl->waiters, -1);
        if (rc && rc != ETIMEDOUT) return rc;
    }
}

int frm_end_stream(frm_store *st, frm_follow *fw, int64_t deadline) {
    frm_store *cur;
    int rc = live(st, fw, &cur);
    if (rc) return rc;
    if (!cur->seg->writable) return EACCES;
    rc = lock_segment(cur, deadline);
    if (rc) return rc;
    store64(&cur->ctrl->end_generation, cur->ctrl->last_generation);
    bump_and_wake(cur);
    return shmp_unlock(cur->seg);
}

/* ---- lossless subscribers ---- */

/* A live lossless subscriber that has not taken a frame the store stops
 * keeping when only the newest `keep` stay (a publish keeps history - 1 of
 * them, a rebuild its new history): its pid (1 when it has none), or 0.
 * Mutex held. */
static uint32_t slow_subscriber(frm_store *st, uint32_t keep) {
    uint64_t last = st->ctrl->last_generation;
    if (last <= keep) return 0;
    uint64_t first_kept = last - keep + 1;
    for (uint32_t k = 0; k < FRM_MAX_SUBS; k++) {
        frm_sub *e = &st->subs[k];
        if (load32(&e->state) != FRM_SUB_LIVE || !(load32(&e->flags) & FRM_SUB_LOSSLESS)) continue;
        if (load64(&e->next_generation) >= first_kept) continue;
        if (!sub_live(st, k)) continue;
        uint32_t pid = load32(&e->pid);
        return pid ? pid : 1;
    }
    return 0;
}

/* Waits (futex on sub_seq) until no live lossless subscriber holds back a
 * change that keeps only the newest `keep` frames. A subscriber's death moves no futex word: look again every
 * 20 ms. FRM_ESLOW at the deadline (st->slow_pid names it), EINTR per
 * slice. Mutex held throughout. */
#define SUB_RECHECK_NS 20000000LL
static int wait_for_subscribers(frm_store *st, uint32_t keep, int64_t deadline) {
    int64_t slice_end = frm_now_ns() + FRM_SLICE_NS;
    for (;;) {
        uint32_t seq = load32_seq(&st->ctrl->sub_seq);
        uint32_t pid = slow_subscriber(st, keep);
        if (!pid) return 0;
        int64_t now = frm_now_ns();
        if (past(deadline) || now >= slice_end) {
            st->slow_pid = pid;
            return past(deadline) ? FRM_ESLOW : EINTR;
        }
        int64_t left = slice_end - now;
        if (deadline >= 0 && deadline - now < left) left = deadline - now;
        if (left > SUB_RECHECK_NS) left = SUB_RECHECK_NS;
        add32(&st->ctrl->sub_waiters, 1);
        int rc = shmp_wait(st->seg, &st->ctrl->sub_seq, seq, left);
        add32(&st->ctrl->sub_waiters, -1);
        if (rc && rc != ETIMEDOUT && rc != EINTR) return rc;
    }
}

static void sub_progress(frm_store *st) {
    add32(&st->ctrl->sub_seq, 1);
    if (load32_seq(&st->ctrl->sub_waiters)) shmp_wake(st->seg, &st->ctrl->sub_seq);
}

static uint64_t new_token(void) {
    static uint32_t counter;
    return (uint64_t)my_pid() << 32 | shmc_add_u32(&counter, 1);
}

/* Moves *from into what the history holds (and no further than the next frame). */
static void clamp_position(frm_store *st, uint64_t *from) {
    uint64_t oldest, newest;
    kept_range(st, &oldest, &newest);
    if (*from < oldest) *from = oldest;
    if (*from > newest + 1) *from = newest + 1;
}

/* Entry i for a new registration, its lock taken: 0, or EBUSY when it is
 * held, or carried here for a subscriber whose process lives, or (unless
 * `over_lossy`) listing a live lossy subscription. Mutex held. */
static int take_entry(frm_store *st, uint32_t i, int over_lossy) {
    if (shmp_range_lock(st->seg, FRM_SUB_LOCKS + i, 1) != 0) return EBUSY;
    frm_sub *e = &st->subs[i];
    int busy = load32(&e->state) == FRM_SUB_LIVE && carried_pending(load32(&e->flags)) &&
               proc_alive(load32(&e->pid), load64(&e->start_time));
    if (!busy && !over_lossy) busy = lossy_live(st, i);
    if (busy) {
        shmp_range_unlock(st->seg, FRM_SUB_LOCKS + i);
        return EBUSY;
    }
    return 0;
}

/* A new entry for this process at *from. Mutex held. */
static int register_entry(frm_store *st, uint64_t *from, uint64_t token, int *k) {
    for (uint32_t n = 0; n < 2 * FRM_MAX_SUBS; n++) {
        uint32_t i = n % FRM_MAX_SUBS; /* a second pass takes lossy entries over */
        if (take_entry(st, i, n >= FRM_MAX_SUBS)) continue;
        clamp_position(st, from);
        uint64_t start = 0;
        proc_start(my_pid(), &start);
        frm_sub *e = &st->subs[i];
        store32(&e->state, FRM_SUB_FREE);
        store32(&e->pid, my_pid());
        store64(&e->start_time, start);
        store64(&e->next_generation, *from);
        store64(&e->token, token ? token : new_token());
        store32(&e->flags, FRM_SUB_LOSSLESS);
        store32(&e->incarnation, load32(&e->incarnation) + 1);
        store32(&e->state, FRM_SUB_LIVE);
        *k = (int)i;
        return 0;
    }
    return ENOSPC;
}

/* Takes entry i's lock; a registrant looking at it holds it for a moment. */
static int lock_entry_soon(frm_store *st, uint32_t i) {
    for (int tries = 0; tries < PIN_TRIES; tries++) {
        if (shmp_range_lock(st->seg, FRM_SUB_LOCKS + i, 1) == 0) return 0;
        yield_cpu();
    }
    return EBUSY;
}

/* Adopts the entry a rebuild carried here for subscription `token`: its
 * lock taken, its position *from (which is never behind the carried one).
 * ENOENT when there is none (given up, or never carried). Without the
 * mutex: a writer may hold it while it waits for this very entry. A
 * registrant skips a carried entry whose process lives, a rebuild copies
 * it carried or adopted (live either way), and the CAS settles a race
 * with giving it up. */
static int adopt_entry(frm_store *st, uint64_t *from, uint64_t token, int *k) {
    for (uint32_t i = 0; i < FRM_MAX_SUBS; i++) {
        frm_sub *e = &st->subs[i];
        if (load32(&e->state) != FRM_SUB_LIVE || load64(&e->token) != token ||
            load32(&e->pid) != my_pid() || !carried_pending(load32(&e->flags)))
            continue;
        if (lock_entry_soon(st, i) != 0) return ENOENT;
        uint64_t carried = load64(&e->next_generation);
        if (*from < carried) *from = carried;
        clamp_position(st, from);
        store64(&e->next_generation, *from);
        if (!cas32(&e->flags, FRM_SUB_LOSSLESS | FRM_SUB_CARRIED, FRM_SUB_LOSSLESS)) {
            shmp_range_unlock(st->seg, FRM_SUB_LOCKS + i); /* given up meanwhile */
            return ENOENT;
        }
        sub_progress(st);
        *k = (int)i;
        return 0;
    }
    return ENOENT;
}

/* Locks the mutex of the live store (not one replaced while waiting for it). */
static int lock_live(frm_store *st, frm_follow *fw, int64_t deadline, frm_store **out) {
    for (int i = 0; i < FOLLOW_MAX; i++) {
        int rc = live(st, fw, out);
        if (rc) return rc;
        if (!(*out)->seg->writable) return EACCES;
        rc = lock_segment(*out, deadline);
        if (rc) return rc;
        if (!frm_superseded(*out)) return 0;
        shmp_unlock((*out)->seg);
    }
    return SHMP_EINCOMPAT;
}

int frm_resubscribe(frm_store *st, frm_follow *fw, uint64_t *from, uint64_t token,
                    int64_t deadline, int *k) {
    frm_store *cur;
    int rc;
    if (token) {
        rc = live(st, fw, &cur);
        if (rc) return rc;
        if (!cur->seg->writable) return EACCES;
        rc = adopt_entry(cur, from, token, k);
        if (rc != ENOENT) return rc;
    }
    rc = lock_live(st, fw, deadline, &cur);
    if (rc) return rc;
    rc = register_entry(cur, from, token, k);
    int urc = shmp_unlock(cur->seg);
    return rc ? rc : urc;
}

int frm_subscribe(frm_store *st, frm_follow *fw, uint64_t *from, int64_t deadline, int *k) {
    return frm_resubscribe(st, fw, from, 0, deadline, k);
}

int frm_subscribe_lossy(frm_store *st, frm_follow *fw, uint64_t from, int64_t deadline, int *k,
                        uint64_t *token) {
    frm_store *cur;
    int rc = lock_live(st, fw, deadline, &cur);
    if (rc) return rc;
    rc = ENOSPC;
    for (uint32_t i = 0; i < FRM_MAX_SUBS && rc; i++) {
        if (take_entry(cur, i, 0)) continue; /* a lossless one's, or a live lossy one */
        if (shmp_range_lock(cur->seg, FRM_LOSSY_LOCKS + i, 1) == 0) {
            uint64_t start = 0;
            proc_start(my_pid(), &start);
            frm_sub *e = &cur->subs[i];
            store32(&e->state, FRM_SUB_FREE);
            store32(&e->pid, my_pid());
            store64(&e->start_time, start);
            store64(&e->next_generation, 0);
            store64(&e->lossy_next, from);
            store64(&e->token, *token = new_token());
            store32(&e->flags, FRM_SUB_LOSSY);
            store32(&e->incarnation, load32(&e->incarnation) + 1);
            store32(&e->state, FRM_SUB_LIVE);
            *k = (int)i;
            rc = 0;
        }
        shmp_range_unlock(cur->seg, FRM_SUB_LOCKS + i);
    }
    int urc = shmp_unlock(cur->seg);
    return rc ? rc : urc;
}

/* A lossy subscription's own entry is one with its token and flags (a
 * lossless registration may have taken it over). */
static int own_lossy(frm_store *st, int k, uint64_t token) {
    if (k < 0 || (uint32_t)k >= FRM_MAX_SUBS) return 0;
    frm_sub *e = &st->subs[k];
    return load64(&e->token) == token && load32(&e->flags) == FRM_SUB_LOSSY;
}

int frm_sub_note(frm_store *st, int k, uint64_t token, uint64_t next) {
    if (!own_lossy(st, k, token)) return ENOENT;
    /* Taken over meanwhile, this lands in a field lossless entries never read. */
    store64(&st->subs[k].lossy_next, next);
    return 0;
}

int frm_sub_leave(frm_store *st, int k, uint64_t token) {
    if (k < 0 || (uint32_t)k >= FRM_MAX_SUBS) return EINVAL;
    /* While this handle holds the lossy lock no other lossy subscription
     * can take the entry, so the flags still say whose it is. */
    if (own_lossy(st, k, token)) cas32(&st->subs[k].flags, FRM_SUB_LOSSY, FRM_SUB_CARRIED);
    return shmp_range_unlock(st->seg, FRM_LOSSY_LOCKS + (uint32_t)k);
}

int frm_sub_advance(frm_store *st, int k, uint64_t next) {
    if (k < 0 || (uint32_t)k >= FRM_MAX_SUBS) return EINVAL;
    store64(&st->subs[k].next_generation, next);
    sub_progress(st);
    return 0;
}

/* Gives up entries of subscription `token` still waiting to be adopted. */
static void give_up_carried(frm_store *st, uint64_t token) {
    for (uint32_t i = 0; i < FRM_MAX_SUBS; i++)
        if (load64(&st->subs[i].token) == token)
            cas32(&st->subs[i].flags, FRM_SUB_LOSSLESS | FRM_SUB_CARRIED, FRM_SUB_CARRIED);
}

/* After a subscription left store `st`: gives up what rebuilds carried of
 * it into the stores that replaced it. Either this sees `st` replaced, or
 * the rebuild's recheck sees the entry gone (both fence in between). */
static void release_carried(frm_store *st, uint64_t token) {
    full_fence();
    if (!token || !frm_superseded(st)) return;
    char name[SHMP_NAME_MAX + 1];
    memcpy(name, st->seg->name, sizeof name);
    for (int i = 0; i < FOLLOW_MAX; i++) {
        frm_store next;
        shmp_seg seg;
        if (attach_live(&next, &seg, name, 1) != 0) return;
        give_up_carried(&next, token);
        full_fence();
        int again = frm_superseded(&next);
        frm_detach(&next);
        if (!again) return;
    }
}

/* Frees entry k and its lock: the token it held. */
static uint64_t free_entry(frm_store *st, int k, int *rc) {
    uint64_t token = load64(&st->subs[k].token);
    store32(&st->subs[k].state, FRM_SUB_FREE);
    *rc = shmp_range_unlock(st->seg, FRM_SUB_LOCKS + (uint32_t)k);
    sub_progress(st);
    return token;
}

int frm_unsubscribe(frm_store *st, int k) {
    if (k < 0 || (uint32_t)k >= FRM_MAX_SUBS) return EINVAL;
    int rc;
    release_carried(st, free_entry(st, k, &rc));
    return rc;
}

int frm_sub_moved(frm_store *st, int k) {
    if (k < 0 || (uint32_t)k >= FRM_MAX_SUBS) return EINVAL;
    int rc;
    free_entry(st, k, &rc);
    return rc;
}

/* Copies the live lossless entries of `old` into the new store `st` (not
 * yet named), each to be adopted by its subscriber. Mutex of `old` held. */
static void carry_subs(frm_store *st, frm_store *old) {
    for (uint32_t k = 0; k < FRM_MAX_SUBS; k++) {
        frm_sub e;
        snapshot(&e, &old->subs[k], sizeof e);
        if (e.state != FRM_SUB_LIVE || !(e.flags & FRM_SUB_LOSSLESS) || !e.token) continue;
        if (!sub_live(old, k)) continue;
        e.flags = FRM_SUB_LOSSLESS | FRM_SUB_CARRIED;
        memcpy(&st->subs[k], &e, sizeof e);
    }
}

/* After the swap: gives up carried entries whose subscription left `old`
 * meanwhile (see release_carried). */
static void recheck_carried(frm_store *st, frm_store *old) {
    full_fence();
    for (uint32_t k = 0; k < FRM_MAX_SUBS; k++) {
        frm_sub *e = &st->subs[k], *was = &old->subs[k];
        if (!carried_pending(load32(&e->flags))) continue;
        if (load32(&was->state) == FRM_SUB_LIVE && load32(&was->flags) & FRM_SUB_LOSSLESS &&
            load64(&was->token) == load64(&e->token))
            continue;
        cas32(&e->flags, FRM_SUB_LOSSLESS | FRM_SUB_CARRIED, FRM_SUB_CARRIED);
    }
}
