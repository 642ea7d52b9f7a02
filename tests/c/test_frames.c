/* Unit tests of the frame protocol (frames.h, layout 3), in C, so that they
 * run under AddressSanitizer + UndefinedBehaviorSanitizer and under
 * ThreadSanitizer. Processes are real (fork), deaths are real (SIGKILL while
 * holding the mutex and a slot).
 *
 * Usage: test_frames [substring]   runs the tests whose name contains it.
 * Under ThreadSanitizer run "threads" only: a writer and readers as threads
 * over one store handle and one mapping, which is what it can see.
 */
#define _GNU_SOURCE
#define CHECK_NAME_PREFIX "/shmi_ftest_"
#include "check.h"
#include "frames.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- helpers ---- */

static const frm_options DEFAULTS = {4096, 2, 2, 1, FRM_META_MAX, 0};

static int64_t in_ms(int n) { return frm_now_ns() + (int64_t)n * 1000000; }

/* A store handle that follows replacements: two sets of storage, the
 * current one and the one a call may move into. */
typedef struct handle {
    frm_store st[2];
    shmp_seg seg[2];
    int cur;
} handle;

static frm_store *H(handle *h) { return &h->st[h->cur]; }

static frm_follow follow_of(handle *h) {
    frm_follow fw = {&h->st[1 - h->cur], &h->seg[1 - h->cur], 0};
    return fw;
}

static void adopt(handle *h, frm_follow *fw) {
    if (!fw->moved) return;
    frm_detach(&h->st[h->cur]);
    h->cur = 1 - h->cur;
}

static int open_store(handle *h, const char *name, int create, const frm_options *o) {
    int created;
    memset(h, 0, sizeof *h);
    return frm_attach(&h->st[0], &h->seg[0], name, 1, create, o, "key", 3, 0, &created);
}

static void close_store(handle *h) { frm_detach(H(h)); }

/* Publishes a rows x cols uint8 frame whose every byte is `value`. */
static int put(handle *h, uint64_t rows, uint64_t cols, uint8_t value, int64_t deadline,
               uint64_t *gen) {
    size_t n = (size_t)(rows * cols);
    unsigned char *buf = malloc(n);
    if (!buf) return ENOMEM;
    memset(buf, value, n);
    frm_spec spec = {2, {rows, cols, 0, 0}, FRM_UINT8, NULL, 0};
    frm_follow fw = follow_of(h);
    int rc;
    do {
        rc = frm_publish(H(h), &fw, buf, &spec, deadline, gen);
    } while (rc == EINTR);
    adopt(h, &fw);
    free(buf);
    return rc;
}

/* frm_wait through its slices, following a replacement: 0 or what ended
 * it; *moved says whether the handle moved to a successor. */
static int wait_following(handle *h, uint64_t after, int64_t deadline, uint64_t *gen,
                          int *moved) {
    frm_follow fw = follow_of(h);
    int rc;
    do {
        rc = frm_wait(H(h), &fw, after, deadline, 0, gen);
    } while (rc == EINTR);
    *moved = fw.moved;
    adopt(h, &fw);
    return rc;
}

/* Is every pixel of the pinned frame `value`? */
static int uniform(frm_store *st, const frm_frame *f, uint8_t value) {
    const unsigned char *p = st->data + f->offset;
    for (uint64_t i = 0; i < f->nbytes; i++)
        if (p[i] != value) return 0;
    return 1;
}

/* Pins the latest frame (following), checks it is uniform and carries its
 * generation; 0, or what went wrong. */
static int read_latest(handle *h, uint64_t *gen) {
    frm_frame f;
    frm_follow fw = follow_of(h);
    int rc = frm_pin(H(h), &fw, &f);
    adopt(h, &fw);
    if (rc) return rc;
    int ok = uniform(H(h), &f, (uint8_t)f.generation);
    frm_unpin(H(h), f.slot);
    if (gen) *gen = f.generation;
    return ok ? 0 : EBADMSG;
}

/* ---- layout ---- */

static void test_options_are_bounded(void) {
    frm_options o = DEFAULTS;
    uint64_t size = 0;
    CHECK_RC(frm_data_size(&o, &size), 0);
    CHECK(size == 8192 + 3 * (4096 + FRM_META_MAX));
    o.slots = 1;
    CHECK_RC(frm_check_options(&o), EINVAL);
    o = DEFAULTS;
    o.max_slots = FRM_MAX_SPARES + 1;
    CHECK_RC(frm_check_options(&o), EINVAL);
    o = DEFAULTS;
    o.slots = 3; /* above max_slots */
    CHECK_RC(frm_check_options(&o), EINVAL);
    o = DEFAULTS;
    o.history = 0;
    CHECK_RC(frm_check_options(&o), EINVAL);
    o.history = FRM_MAX_HISTORY + 1;
    CHECK_RC(frm_check_options(&o), EINVAL);
    o = DEFAULTS;
    o.meta_capacity = FRM_META_MAX + 1;
    CHECK_RC(frm_check_options(&o), EINVAL);
    o = DEFAULTS;
    o.capacity = FRM_MAX_FRAME_BYTES + 1;
    CHECK_RC(frm_check_options(&o), EFBIG);
    o = DEFAULTS;
    o.history = FRM_MAX_HISTORY;
    o.slots = o.max_slots = FRM_MAX_SPARES;
    CHECK_RC(frm_data_size(&o, &size), 0);
}

static void test_dtype_table(void) {
    static const uint32_t sizes[] = {0, 1, 1, 1, 2, 2, 4, 4, 8, 8, 2, 4, 8};
    for (uint32_t code = 0; code < FRM_DTYPE_END; code++) CHECK(frm_itemsize(code) == sizes[code]);
    CHECK(frm_itemsize(FRM_DTYPE_END) == 0);
    CHECK(frm_itemsize(UINT32_MAX) == 0);
}

static void test_build_attach_and_options(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    handle w, r;
    frm_options o = {10000, 3, 5, 4, 8192, 0};
    CHECK_RC(open_store(&w, name, 1, &o), 0);
    CHECK_RC(open_store(&r, name, 0, NULL), 0);
    frm_options got;
    frm_get_options(H(&r), &got);
    CHECK(got.capacity == 12288 && got.slots == 3 && got.max_slots == 5 && got.history == 4);
    CHECK(got.meta_capacity == 8192);
    CHECK(H(&r)->table_slots == 9);
    CHECK(H(&r)->ctrl->active_slots == 7);
    frm_frame f;
    CHECK_RC(frm_pin(H(&r), NULL, &f), FRM_ENOFRAME);
    CHECK_RC(frm_latest(H(&r), NULL, &f), FRM_ENOFRAME);
    close_store(&r);
    close_store(&w);
    CHECK(!name_exists(name));
    CHECK_RC(open_store(&r, name, 0, NULL), ENOENT);
}

/* ---- claim, commit, pin ---- */

static void test_commit_then_pin_reads_it(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    handle w;
    CHECK_RC(open_store(&w, name, 1, &DEFAULTS), 0);
    frm_claim_t c;
    CHECK_RC(frm_claim(H(&w), NULL, 3 * 5 * 4 * 2, 5, -1, &c), 0);
    for (int i = 0; i < 60; i++) ((uint16_t *)c.pixels)[i] = (uint16_t)(1000 + i);
    memcpy(c.meta, "hello", 5);
    frm_spec spec = {4, {1, 3, 5, 4}, FRM_UINT16, NULL, 5};
    uint64_t gen = 0;
    CHECK_RC(frm_commit(&c, &spec, &gen), 0);
    CHECK(gen == 1);
    frm_frame f;
    CHECK_RC(frm_pin(H(&w), NULL, &f), 0);
    CHECK(f.ndim == 4 && f.shape[0] == 1 && f.shape[1] == 3 && f.shape[2] == 5 && f.shape[3] == 4);
    CHECK(f.dtype == FRM_UINT16 && f.itemsize == 2 && f.nbytes == 120 && f.generation == 1);
    CHECK(f.writer_pid == (uint32_t)getpid() && f.meta_len == 5);
    CHECK(memcmp(H(&w)->data + f.meta_offset, "hello", 5) == 0);
    CHECK(((uint16_t *)(H(&w)->data + f.offset))[59] == 1059);
    CHECK_RC(frm_unpin(H(&w), f.slot), 0);
    /* A committed spec that does not fit is refused, nothing published. */
    CHECK_RC(frm_claim(H(&w), NULL, 16, 0, -1, &c), 0);
    frm_spec bad = {2, {4, 4, 0, 0}, 99, NULL, 0};
    CHECK_RC(frm_commit(&c, &bad, &gen), EINVAL);
    CHECK(frm_generation(H(&w)) == 1);
    close_store(&w);
}

static void test_writer_alternates_between_two_warm_slots(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    handle w;
    frm_options o = {4096, 4, 4, 1, 0, 0};
    CHECK_RC(open_store(&w, name, 1, &o), 0);
    int slots[8];
    for (int i = 0; i < 8; i++) {
        uint64_t gen;
        CHECK_RC(put(&w, 8, 8, (uint8_t)(i + 1), -1, &gen), 0);
        frm_frame f;
        CHECK_RC(frm_latest(H(&w), NULL, &f), 0);
        slots[i] = f.slot;
    }
    for (int i = 2; i < 8; i++) CHECK(slots[i] == slots[i - 2]);
    CHECK(slots[0] != slots[1]);
    close_store(&w);
}

static void test_pins_keep_slots_until_max_slots(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    handle w, r;
    frm_options o = {4096, 2, 3, 1, 0, 0};
    CHECK_RC(open_store(&w, name, 1, &o), 0);
    CHECK_RC(open_store(&r, name, 0, NULL), 0);
    uint64_t gen;
    frm_frame pinned[3];
    for (int i = 0; i < 3; i++) {
        CHECK_RC(put(&w, 8, 8, (uint8_t)(i + 1), in_ms(1000), &gen), 0);
        CHECK_RC(frm_pin(H(&r), NULL, &pinned[i]), 0); /* another handle pins it */
    }
    CHECK(H(&w)->ctrl->active_slots == 3);
    CHECK_RC(put(&w, 8, 8, 4, in_ms(1000), &gen), 0);
    CHECK(H(&w)->ctrl->active_slots == 4); /* a fourth slot was taken instead of waiting */
    /* every spare pinned, by this process: refused at once, no waiting */
    int64_t start = frm_now_ns();
    CHECK_RC(put(&w, 8, 8, 5, in_ms(5000), &gen), FRM_EOWNPINS);
    CHECK(frm_now_ns() - start < 1000000000LL);
    for (int i = 0; i < 3; i++)
        CHECK(uniform(H(&r), &pinned[i], (uint8_t)(i + 1)));
    CHECK_RC(frm_unpin(H(&r), pinned[0].slot), 0);
    CHECK_RC(put(&w, 8, 8, 5, in_ms(1000), &gen), 0);
    CHECK(gen == 5);
    close_store(&r);
    close_store(&w);
}

static void test_history_keeps_frames_from_writers(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    handle w;
    frm_options o = {4096, 2, 2, 3, 0, 0};
    CHECK_RC(open_store(&w, name, 1, &o), 0);
    uint64_t gen;
    for (int i = 1; i <= 10; i++) CHECK_RC(put(&w, 4, 4, (uint8_t)i, -1, &gen), 0);
    /* The ring names the last three, each still intact in its own slot. */
    int seen[FRM_MAX_TABLE] = {0};
    for (uint64_t g = 8; g <= 10; g++) {
        uint64_t word = H(&w)->ctrl->ring[g % 3];
        CHECK(word >> 8 == g);
        int slot = (int)(word & 0xff) - 1;
        CHECK(slot >= 0 && slot < 5 && !seen[slot]);
        seen[slot] = 1;
        frm_frame f;
        CHECK_RC(frm_decode(H(&w), slot, &f), 0);
        CHECK(f.generation == g && uniform(H(&w), &f, (uint8_t)g));
    }
    close_store(&w);
}

/* ---- hostile fields ---- */

/* A store whose head field at `off` (of `width` bytes) is set to `value`
 * must be refused by frm_open, the segment left as it was. */
static int open_with(shmp_seg *seg, size_t off, int width, uint64_t value) {
    unsigned char *head = shmp_data(seg);
    unsigned char saved[8];
    memcpy(saved, head + off, (size_t)width);
    if (width == 4) {
        uint32_t v = (uint32_t)value;
        memcpy(head + off, &v, 4);
    } else {
        memcpy(head + off, &value, 8);
    }
    frm_store st;
    int rc = frm_open(&st, seg);
    if (!rc) frm_close(&st);
    memcpy(head + off, saved, (size_t)width);
    return rc;
}

static void test_hostile_head_fields_are_refused(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    handle w;
    CHECK_RC(open_store(&w, name, 1, &DEFAULTS), 0);
    shmp_seg *seg = H(&w)->seg;
    static const struct {
        size_t off;
        int width;
        uint64_t value;
    } lies[] = {
        {offsetof(frm_ctrl, magic), 8, 0x314d5246494d4853ULL}, /* layout 1 */
        {offsetof(frm_ctrl, magic), 8, 0x324d5246494d4853ULL}, /* layout 2 */
        {offsetof(frm_ctrl, magic), 8, 0},
        {offsetof(frm_ctrl, version), 4, 1},
        {offsetof(frm_ctrl, version), 4, 4},
        {offsetof(frm_ctrl, ctrl_size), 4, 4096},
        {offsetof(frm_ctrl, ctrl_size), 4, UINT32_MAX},
        {offsetof(frm_ctrl, slot_capacity), 8, 0},
        {offsetof(frm_ctrl, slot_capacity), 8, 4095},
        {offsetof(frm_ctrl, slot_capacity), 8, 1ULL << 40},
        {offsetof(frm_ctrl, slot_capacity), 8, UINT64_MAX - 4095},
        {offsetof(frm_ctrl, meta_capacity), 4, 100},
        {offsetof(frm_ctrl, meta_capacity), 4, 1u << 20},
        {offsetof(frm_ctrl, table_slots), 4, 0},
        {offsetof(frm_ctrl, table_slots), 4, 200},
        {offsetof(frm_ctrl, slots), 4, 0},
        {offsetof(frm_ctrl, slots), 4, 3},
        {offsetof(frm_ctrl, max_slots), 4, 1000},
        {offsetof(frm_ctrl, history), 4, 0},
        {offsetof(frm_ctrl, history), 4, 65},
        {offsetof(frm_ctrl, slot_stride), 8, 0},
        {offsetof(frm_ctrl, slot_stride), 8, UINT64_MAX},
    };
    for (size_t i = 0; i < sizeof lies / sizeof lies[0]; i++) {
        if (open_with(seg, lies[i].off, lies[i].width, lies[i].value) != SHMP_EINCOMPAT) {
            check_fail(__FILE__, __LINE__, "lie %zu (offset %zu) was accepted", i, lies[i].off);
            return;
        }
    }
    frm_store st;
    CHECK_RC(frm_open(&st, seg), 0); /* the real one still opens */
    frm_close(&st);
    /* A mapping smaller than its slots. */
    shmp_seg small = *seg;
    small.map_size = SHMP_HEADER_SIZE + 8192 + 2 * (4096 + FRM_META_MAX);
    CHECK_RC(frm_open(&st, &small), SHMP_EINCOMPAT);
    small.map_size = SHMP_HEADER_SIZE + 100;
    CHECK_RC(frm_open(&st, &small), SHMP_EINCOMPAT);
    close_store(&w);
}

static void test_hostile_slot_fields_are_refused(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    handle w;
    CHECK_RC(open_store(&w, name, 1, &DEFAULTS), 0);
    uint64_t gen;
    CHECK_RC(put(&w, 16, 16, 1, -1, &gen), 0);
    frm_store *st = H(&w);
    frm_frame f;
    CHECK_RC(frm_latest(st, NULL, &f), 0);
    frm_slot *d = &st->table[f.slot];
    frm_slot good = *d;
    uint64_t latest = st->ctrl->latest;
    struct {
        int field;
        uint64_t value;
    } lies[] = {{0, 1}, {0, 5}, {1, 0}, {2, 0}, {2, 1ULL << 40}, {3, 200}, {3, 0},
                {4, FRM_META_MAX + 1}, {5, 1ULL << 63}, {6, 99}, {7, FRM_WRITING}};
    for (size_t i = 0; i < sizeof lies / sizeof lies[0]; i++) {
        *d = good;
        switch (lies[i].field) {
        case 0: d->ndim = (uint32_t)lies[i].value; break;
        case 1: d->shape[1] = 0; break;
        case 2: d->shape[0] = lies[i].value; break;
        case 3: d->dtype = (uint32_t)lies[i].value; break;
        case 4: d->meta_len = (uint32_t)lies[i].value; break;
        case 5: d->shape[0] = lies[i].value, d->shape[1] = 4; break;
        case 6: d->generation = lies[i].value; break; /* not the one latest names */
        default: d->state = (uint32_t)lies[i].value; break;
        }
        int a = frm_latest(st, NULL, &f), b = frm_pin(st, NULL, &f);
        if (a != SHMP_EINCOMPAT || b != SHMP_EINCOMPAT) {
            check_fail(__FILE__, __LINE__, "slot lie %zu gave %d/%d", i, a, b);
            return;
        }
    }
    *d = good;
    st->ctrl->latest = (1 << 8) | 200; /* names no slot */
    CHECK_RC(frm_pin(st, NULL, &f), SHMP_EINCOMPAT);
    st->ctrl->latest = 1 << 8;
    CHECK_RC(frm_latest(st, NULL, &f), SHMP_EINCOMPAT);
    st->ctrl->latest = latest;
    st->ctrl->active_slots = 1000; /* only a writer uses it */
    CHECK_RC(put(&w, 16, 16, 2, in_ms(500), &gen), SHMP_EINCOMPAT);
    CHECK_RC(read_latest(&w, &gen), 0);
    st->ctrl->active_slots = 3;
    CHECK_RC(put(&w, 16, 16, 2, in_ms(500), &gen), 0);
    CHECK(gen == 2);
    frm_sub sub;
    int alive = 1;
    CHECK_RC(frm_subscriber(st, 0, &sub, &alive), ENOENT);
    st->subs[0].state = 7;
    CHECK_RC(frm_subscriber(st, 0, &sub, &alive), SHMP_EINCOMPAT);
    st->subs[0].state = FRM_SUB_LIVE;
    st->subs[0].next_generation = 1000;
    CHECK_RC(frm_subscriber(st, 0, &sub, &alive), SHMP_EINCOMPAT);
    CHECK_RC(frm_subscriber(st, FRM_MAX_SUBS, &sub, &alive), EINVAL);
    close_store(&w);
}

/* ---- subscribers ---- */

static void test_subscriber_liveness_is_a_kernel_lock(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    handle w;
    CHECK_RC(open_store(&w, name, 1, &DEFAULTS), 0);
    frm_store *st = H(&w);
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        handle s;
        char c = 1;
        if (open_store(&s, name, 0, NULL)) _exit(1);
        frm_sub *e = &H(&s)->subs[3];
        e->pid = (uint32_t)getpid();
        e->flags = FRM_SUB_LOSSLESS;
        e->next_generation = 1;
        e->state = FRM_SUB_LIVE;
        if (shmp_range_lock(H(&s)->seg, FRM_SUB_LOCKS + 3, 1)) _exit(2);
        if (write(fds[1], &c, 1) != 1) _exit(3);
        pause();
        _exit(4);
    }
    char c;
    CHECK(read(fds[0], &c, 1) == 1);
    close(fds[0]);
    close(fds[1]);
    frm_sub sub;
    int alive = 0;
    CHECK_RC(frm_subscriber(st, 3, &sub, &alive), 0);
    CHECK(alive == 1 && sub.pid == (uint32_t)pid && sub.flags == FRM_SUB_LOSSLESS);
    kill(pid, SIGKILL);
    CHECK(reap(pid) == 128 + SIGKILL);
    CHECK_RC(frm_subscriber(st, 3, &sub, &alive), 0);
    CHECK(alive == 0);
    close_store(&w);
}

/* ---- crashes ---- */

/* A child that claims a slot of `name`'s store, writes half of it, tells
 * the parent through `fd` and waits to be killed. */
static void claim_and_hang(const char *name, int fd) {
    handle h;
    frm_claim_t c;
    char one = 1;
    if (open_store(&h, name, 0, NULL)) _exit(1);
    if (frm_claim(H(&h), NULL, 16 * 16, 0, -1, &c)) _exit(2);
    memset(c.pixels, 0xEE, 100);
    if (write(fd, &one, 1) != 1) _exit(3);
    pause();
    _exit(4);
}

static pid_t killed_mid_write(const char *name) {
    int fds[2];
    char c;
    if (pipe(fds) != 0) return -1;
    pid_t pid = fork();
    if (pid == 0) claim_and_hang(name, fds[1]);
    int ok = read(fds[0], &c, 1) == 1;
    close(fds[0]);
    close(fds[1]);
    kill(pid, SIGKILL);
    return (reap(pid) == 128 + SIGKILL && ok) ? pid : -1;
}

static void test_writer_killed_mid_commit_leaves_the_previous_frame(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    handle w;
    CHECK_RC(open_store(&w, name, 1, &DEFAULTS), 0);
    uint64_t gen;
    CHECK_RC(put(&w, 16, 16, 1, -1, &gen), 0);
    for (int round = 0; round < 3; round++) {
        CHECK(killed_mid_write(name) > 0);
        CHECK_RC(read_latest(&w, &gen), 0); /* never the half-written slot */
        CHECK(gen == (uint64_t)round + 1);
        /* The dead writer's mutex and slot come back: no slot leaks. */
        CHECK_RC(put(&w, 16, 16, (uint8_t)(round + 2), in_ms(2000), &gen), 0);
        CHECK(H(&w)->ctrl->active_slots == 3);
    }
    CHECK_RC(read_latest(&w, &gen), 0);
    CHECK(gen == 4);
    close_store(&w);
    CHECK(!name_exists(name));
}

static void test_writer_killed_before_any_frame_is_torn(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    handle w;
    CHECK_RC(open_store(&w, name, 1, &DEFAULTS), 0);
    frm_frame f;
    CHECK_RC(frm_pin(H(&w), NULL, &f), FRM_ENOFRAME);
    CHECK(killed_mid_write(name) > 0);
    CHECK_RC(frm_pin(H(&w), NULL, &f), FRM_ETORN);
    CHECK_RC(frm_latest(H(&w), NULL, &f), FRM_ETORN);
    uint64_t gen;
    CHECK_RC(put(&w, 16, 16, 1, in_ms(2000), &gen), 0);
    CHECK_RC(read_latest(&w, &gen), 0);
    CHECK(gen == 1);
    close_store(&w);
}

/* ---- growth ---- */

static void test_growth_carries_the_kept_frames(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    handle w, r;
    frm_options o = {4096, 2, 2, 2, FRM_META_MAX, 0};
    CHECK_RC(open_store(&w, name, 1, &o), 0);
    CHECK_RC(open_store(&r, name, 0, NULL), 0);
    uint64_t gen;
    CHECK_RC(put(&w, 16, 16, 1, -1, &gen), 0);
    CHECK_RC(put(&w, 16, 16, 2, -1, &gen), 0);
    frm_frame held;
    CHECK_RC(frm_pin(H(&r), NULL, &held), 0); /* a reader pins the old store's frame */
    frm_store *old = H(&w);
    uint64_t old_ino = (uint64_t)old->seg->ino;
    CHECK_RC(put(&w, 100, 100, 3, -1, &gen), 0);
    CHECK(gen == 3 && H(&w) != old && frm_superseded(H(&r)));
    CHECK(H(&w)->capacity >= 10000 && (uint64_t)H(&w)->seg->ino != old_ino);
    CHECK(uniform(H(&r), &held, 2)); /* the old mapping stays valid while pinned */
    frm_frame f;
    /* The carried frame (generation 2) is kept in the new store's ring. */
    uint64_t word = H(&w)->ctrl->ring[2 % 2];
    CHECK(word >> 8 == 2);
    CHECK_RC(frm_decode(H(&w), (int)(word & 0xff) - 1, &f), 0);
    CHECK(f.generation == 2 && uniform(H(&w), &f, 2));
    /* The reader follows, without help, to the successor. */
    frm_follow fw = follow_of(&r);
    frm_unpin(H(&r), held.slot);
    CHECK_RC(frm_latest(H(&r), &fw, &f), 0);
    CHECK(fw.moved == 1 && f.generation == 3);
    adopt(&r, &fw);
    CHECK_RC(read_latest(&r, &gen), 0);
    CHECK(gen == 3);
    close_store(&r);
    close_store(&w);
    CHECK(!name_exists(name));
}

static void test_wait_follows_growth_and_times_out(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    handle w, r;
    CHECK_RC(open_store(&w, name, 1, &DEFAULTS), 0);
    CHECK_RC(open_store(&r, name, 0, NULL), 0);
    uint64_t gen = 0;
    frm_follow fw = follow_of(&r);
    int64_t start = frm_now_ns();
    int rc;
    do {
        rc = frm_wait(H(&r), &fw, 0, in_ms(100), 10000, &gen);
    } while (rc == EINTR);
    CHECK_RC(rc, ETIMEDOUT);
    CHECK(frm_now_ns() - start >= 90000000LL);
    CHECK(H(&r)->ctrl->waiters == 0);
    CHECK_RC(put(&w, 200, 200, 1, -1, &gen), 0); /* grows */
    int moved = 0;
    CHECK_RC(wait_following(&r, 0, in_ms(1000), &gen, &moved), 0);
    CHECK(gen == 1 && moved);
    close_store(&r);
    close_store(&w);
}

/* Clears the superseded mark, as a writer killed between shmp_swap's
 * rename and its mark leaves the replaced store. */
static void unmark(frm_store *st) {
    __atomic_fetch_and(&shmp_hdr(st->seg)->flags, ~SHMP_FLAG_SUPERSEDED, __ATOMIC_SEQ_CST);
}

/* A child that takes the store's mutex through an inherited handle and dies
 * holding it. */
static void die_holding_the_mutex(frm_store *st) {
    pid_t pid = fork();
    if (pid == 0) {
        int died = 0;
        _exit(shmp_lock_wait(st->seg, -1, &died) == 0 ? 0 : 1);
    }
    CHECK(reap(pid) == 0);
}

/* A writer killed after naming the grown store but before marking the old
 * one: the old store's holders find the successor by themselves, a writer
 * when it takes over the dead writer's mutex, a waiting reader when its
 * slice ends, a read-only handle without writing to the mapping. */
static void test_a_replacement_left_unmarked_is_found(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    handle w, w2, r, ro, old; /* `old` stays on the first store, to unmark it */
    CHECK_RC(open_store(&w, name, 1, &DEFAULTS), 0);
    CHECK_RC(open_store(&old, name, 0, NULL), 0);
    CHECK_RC(open_store(&w2, name, 0, NULL), 0);
    CHECK_RC(open_store(&r, name, 0, NULL), 0);
    memset(&ro, 0, sizeof ro);
    int created;
    CHECK_RC(frm_attach(&ro.st[0], &ro.seg[0], name, 0, 0, NULL, "key", 3, 0, &created), 0);
    uint64_t gen;
    CHECK_RC(put(&w, 16, 16, 1, -1, &gen), 0);
    CHECK_RC(put(&w, 100, 100, 2, -1, &gen), 0); /* grows */
    CHECK(frm_superseded(H(&w2)));
    unmark(H(&old));
    CHECK(!frm_superseded(H(&w2)) && !frm_superseded(H(&r)) && !frm_superseded(H(&ro)));

    /* Readers that do not wait go on reading the old store. */
    frm_frame f;
    CHECK_RC(frm_pin(H(&r), NULL, &f), 0);
    CHECK(f.generation == 1);
    frm_unpin(H(&r), f.slot);
    CHECK(!frm_superseded(H(&r)));
    die_holding_the_mutex(H(&w2));
    CHECK_RC(put(&w2, 16, 16, 3, in_ms(2000), &gen), 0);
    CHECK(gen == 3 && H(&w2)->seg->ino == H(&w)->seg->ino); /* published in the successor */
    CHECK(frm_superseded(H(&r)));                         /* and marked the old store */

    unmark(H(&old));
    int moved = 0;
    CHECK_RC(wait_following(&r, 2, in_ms(2000), &gen, &moved), 0);
    CHECK(gen == 3 && moved && H(&r)->seg->ino == H(&w)->seg->ino);

    unmark(H(&old));
    CHECK(!frm_superseded(H(&ro)));
    CHECK(shmp_replaced(H(&ro)->seg) == 1 && frm_superseded(H(&ro)));
    CHECK((shmp_hdr(H(&ro)->seg)->flags & SHMP_FLAG_SUPERSEDED) == 0); /* not written */
    CHECK(shmp_replaced(H(&w)->seg) == 0); /* the successor is still under the name */
    close_store(&ro);
    close_store(&old);
    close_store(&r);
    close_store(&w2);
    close_store(&w);
    CHECK(!name_exists(name));
}

/* ---- processes ---- */

/* A reader process: pins, checks and unpins the latest frame (following
 * growth) until `stop_gen` is seen; exit 0 when every frame was whole and
 * generations never went back. */
static int reader_child(const char *name, uint64_t stop_gen) {
    handle r;
    int rc = 0;
    for (int i = 0; i < 2000 && (rc = open_store(&r, name, 0, NULL)) == ENOENT; i++) usleep(1000);
    if (rc) return 10;
    uint64_t last = 0, gen = 0;
    int64_t deadline = in_ms(20000);
    while (gen < stop_gen) {
        rc = read_latest(&r, &gen);
        if (rc == FRM_ENOFRAME) continue;
        if (rc) return 11;
        if (gen < last) return 12;
        last = gen;
        if (frm_now_ns() > deadline) return 13;
    }
    close_store(&r);
    return 0;
}

static void test_readers_pin_while_the_writer_grows(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    handle w;
    CHECK_RC(open_store(&w, name, 1, &DEFAULTS), 0);
    uint64_t gen;
    CHECK_RC(put(&w, 8, 8, 1, -1, &gen), 0);
    enum { READERS = 3, FRAMES = 60 };
    pid_t kids[READERS];
    for (int i = 0; i < READERS; i++) {
        kids[i] = fork();
        if (kids[i] == 0) _exit(reader_child(name, FRAMES));
    }
    uint64_t side = 8;
    for (uint64_t g = 2; g <= FRAMES; g++) {
        if (g % 8 == 0) side *= 2; /* 16 .. 1024: several growths */
        int rc = put(&w, side, side, (uint8_t)g, in_ms(5000), &gen);
        if (rc || gen != g) {
            check_fail(__FILE__, __LINE__, "publish %llu gave %d", (unsigned long long)g, rc);
            break;
        }
        usleep(2000);
    }
    int grew = H(&w)->capacity >= 1024 * 1024;
    for (int i = 0; i < READERS; i++) {
        int status = reap(kids[i]);
        if (status != 0) check_fail(__FILE__, __LINE__, "reader %d exited %d", i, status);
    }
    CHECK(grew);
    close_store(&w);
    CHECK(!name_exists(name));
}

static void test_wake_across_processes(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    handle w;
    CHECK_RC(open_store(&w, name, 1, &DEFAULTS), 0);
    pid_t pid = fork();
    if (pid == 0) {
        handle r;
        uint64_t gen = 0;
        int rc;
        if (open_store(&r, name, 0, NULL)) _exit(1);
        frm_follow fw = follow_of(&r);
        do {
            rc = frm_wait(H(&r), &fw, 0, in_ms(10000), 0, &gen);
        } while (rc == EINTR);
        _exit(rc == 0 && gen == 1 ? 0 : 2);
    }
    /* Publish once the child sleeps in the kernel: it announced itself. */
    int64_t deadline = in_ms(10000);
    while (__atomic_load_n(&H(&w)->ctrl->waiters, __ATOMIC_ACQUIRE) == 0 && frm_now_ns() < deadline)
        usleep(1000);
    uint64_t gen;
    CHECK_RC(put(&w, 4, 4, 1, -1, &gen), 0);
    CHECK(reap(pid) == 0);
    close_store(&w);
}

static void test_forked_child_holds_no_pins(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    handle w;
    frm_options o = {4096, 2, 2, 1, 0, 0};
    CHECK_RC(open_store(&w, name, 1, &o), 0);
    uint64_t gen;
    CHECK_RC(put(&w, 8, 8, 1, -1, &gen), 0);
    frm_frame held;
    CHECK_RC(frm_pin(H(&w), NULL, &held), 0);
    pid_t pid = fork();
    if (pid == 0) {
        /* The inherited pin is the parent's: unpinning it here releases
         * nothing, and this process's writes go around it. */
        frm_unpin(H(&w), held.slot);
        for (int g = 2; g <= 6; g++)
            if (put(&w, 8, 8, (uint8_t)g, in_ms(2000), &gen) || gen != (uint64_t)g) _exit(1);
        _exit(0);
    }
    CHECK(reap(pid) == 0);
    CHECK(uniform(H(&w), &held, 1));
    CHECK_RC(frm_unpin(H(&w), held.slot), 0);
    CHECK_RC(read_latest(&w, &gen), 0);
    CHECK(gen == 6);
    close_store(&w);
}

/* ---- threads over one handle and one mapping (what TSan sees) ---- */

enum { T_FRAMES = 1500, T_READERS = 2 };

typedef struct shared {
    handle *h;
    int failures;
} shared;

static void *writer_thread(void *arg) {
    shared *s = (shared *)arg;
    frm_store *st = H(s->h);
    unsigned char buf[32 * 32];
    for (int g = 1; g <= T_FRAMES; g++) {
        memset(buf, (uint8_t)g, sizeof buf);
        uint64_t rows = (uint64_t)(g % 3 ? 32 : 16), gen;
        frm_spec spec = {2, {rows, 32, 0, 0}, FRM_UINT8, NULL, 0};
        int rc;
        do {
            rc = frm_publish(st, NULL, buf, &spec, in_ms(10000), &gen);
        } while (rc == EINTR);
        if (rc || gen != (uint64_t)g) __atomic_add_fetch(&s->failures, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void *reader_thread(void *arg) {
    shared *s = (shared *)arg;
    frm_store *st = H(s->h);
    uint64_t last = 0;
    while (last < T_FRAMES) {
        frm_frame f;
        int rc = frm_pin(st, NULL, &f);
        if (rc == FRM_ENOFRAME) continue;
        if (rc || f.generation < last || !uniform(st, &f, (uint8_t)f.generation)) {
            __atomic_add_fetch(&s->failures, 1, __ATOMIC_RELAXED);
            if (!rc) frm_unpin(st, f.slot);
            return NULL;
        }
        last = f.generation;
        frm_unpin(st, f.slot);
    }
    return NULL;
}

static void *waiter_thread(void *arg) {
    shared *s = (shared *)arg;
    frm_store *st = H(s->h);
    uint64_t after = 0;
    while (after < T_FRAMES) {
        uint64_t gen = 0;
        int rc = frm_wait(st, NULL, after, in_ms(10000), 10000, &gen);
        if (rc == EINTR) continue;
        if (rc || gen <= after) {
            __atomic_add_fetch(&s->failures, 1, __ATOMIC_RELAXED);
            return NULL;
        }
        after = gen;
    }
    return NULL;
}

static void test_threads_writer_readers_waiter(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    handle h;
    CHECK_RC(open_store(&h, name, 1, &DEFAULTS), 0);
    shared s = {&h, 0};
    pthread_t w, r[T_READERS], wt;
    CHECK(pthread_create(&wt, NULL, waiter_thread, &s) == 0);
    for (int i = 0; i < T_READERS; i++) CHECK(pthread_create(&r[i], NULL, reader_thread, &s) == 0);
    CHECK(pthread_create(&w, NULL, writer_thread, &s) == 0);
    pthread_join(w, NULL);
    for (int i = 0; i < T_READERS; i++) pthread_join(r[i], NULL);
    pthread_join(wt, NULL);
    CHECK(s.failures == 0);
    CHECK(frm_generation(H(&h)) == T_FRAMES);
    close_store(&h);
}

static void *loaner_thread(void *arg) {
    shared *s = (shared *)arg;
    frm_store *st = H(s->h);
    for (int g = 0; g < 300; g++) {
        frm_claim_t c;
        int rc;
        do {
            rc = frm_claim(st, NULL, 64, 0, in_ms(10000), &c);
        } while (rc == EINTR);
        if (rc) {
            __atomic_add_fetch(&s->failures, 1, __ATOMIC_RELAXED);
            return NULL;
        }
        frm_spec spec = {2, {8, 8, 0, 0}, FRM_UINT8, NULL, 0};
        uint64_t gen;
        if (g % 5 == 0) {
            frm_abandon(&c);
            continue;
        }
        uint64_t next = st->ctrl->last_generation + 1; /* mutex held: stable */
        memset(c.pixels, (uint8_t)next, 64);
        if (frm_commit(&c, &spec, &gen) || gen != next)
            __atomic_add_fetch(&s->failures, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void test_threads_two_loaning_writers(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    handle h;
    CHECK_RC(open_store(&h, name, 1, &DEFAULTS), 0);
    shared s = {&h, 0};
    pthread_t a, b;
    CHECK(pthread_create(&a, NULL, loaner_thread, &s) == 0);
    CHECK(pthread_create(&b, NULL, loaner_thread, &s) == 0);
    uint64_t checked = 0;
    while (checked < 480) {
        uint64_t gen;
        int rc = read_latest(&h, &gen);
        if (rc == FRM_ENOFRAME) continue;
        if (rc) break;
        checked = gen;
    }
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    CHECK(s.failures == 0);
    CHECK(frm_generation(H(&h)) == 480);
    close_store(&h);
}

/* ---- runner ---- */

/* A child process that pins the latest frame `count` times (one slot each
 * time a frame is published in between), then waits to be killed. */
static pid_t pinning_child(const char *name, int frames, int ready_fd, int go_fd) {
    pid_t pid = fork();
    if (pid != 0) return pid;
    handle r;
    if (open_store(&r, name, 0, NULL)) _exit(2);
    for (int i = 0; i < frames; i++) {
        char c;
        frm_frame f;
        if (read(go_fd, &c, 1) != 1) _exit(3);
        if (frm_pin(H(&r), NULL, &f)) _exit(4);
        if (write(ready_fd, "p", 1) != 1) _exit(5);
    }
    pause();
    _exit(0);
}

typedef struct pin_holder {
    handle *h;
    int slot;        /* pinned by the thread; -1 on failure */
    int release_ms;  /* unpins after this long */
    int pinned;      /* set once it holds its pin */
} pin_holder;

static void *pin_holder_thread(void *arg) {
    pin_holder *p = (pin_holder *)arg;
    frm_frame f;
    p->slot = frm_pin(H(p->h), NULL, &f) == 0 ? f.slot : -1;
    __atomic_store_n(&p->pinned, 1, __ATOMIC_RELEASE);
    if (p->slot < 0) return NULL;
    struct timespec nap = {0, (long)p->release_ms * 1000000L};
    nanosleep(&nap, NULL);
    frm_unpin(H(p->h), p->slot);
    return NULL;
}

/* Every spare pinned by this process: a claim fails at its first look when
 * the calling thread took every pin, and waits when another thread holds
 * one (that thread may let go). */
static void test_threads_own_pins_fail_at_once_others_are_waited_for(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    handle w, r;
    frm_options o = {4096, 2, 2, 1, 0, 0};
    CHECK_RC(open_store(&w, name, 1, &o), 0);
    CHECK_RC(open_store(&r, name, 0, NULL), 0);
    uint64_t gen;
    frm_frame mine;
    CHECK_RC(put(&w, 8, 8, 1, in_ms(1000), &gen), 0);
    CHECK_RC(frm_pin(H(&r), NULL, &mine), 0);
    CHECK_RC(put(&w, 8, 8, 2, in_ms(1000), &gen), 0);
    pin_holder p = {&r, -1, 300, 0};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, pin_holder_thread, &p) == 0);
    while (!__atomic_load_n(&p.pinned, __ATOMIC_ACQUIRE)) sched_yield();
    CHECK(p.slot >= 0);
    CHECK_RC(put(&w, 8, 8, 3, in_ms(1000), &gen), 0); /* the latest is kept: all pinned */
    /* a deadline already past: another thread's pin makes it a timeout */
    CHECK_RC(put(&w, 8, 8, 4, frm_now_ns(), &gen), FRM_EPINNED);
    /* with time left it waits until that thread lets go */
    CHECK_RC(put(&w, 8, 8, 4, in_ms(20000), &gen), 0);
    CHECK(gen == 4);
    pthread_join(t, NULL);
    /* now this thread holds every pin: refused at the first look, even
     * with a deadline already past (no time to look twice) */
    frm_frame also;
    CHECK_RC(frm_pin(H(&r), NULL, &also), 0);
    CHECK_RC(put(&w, 8, 8, 5, in_ms(1000), &gen), 0);
    CHECK_RC(put(&w, 8, 8, 6, frm_now_ns(), &gen), FRM_EOWNPINS);
    CHECK_RC(put(&w, 8, 8, 6, -1, &gen), FRM_EOWNPINS); /* no deadline: still at once */
    CHECK(uniform(H(&r), &mine, 1) && uniform(H(&r), &also, 4));
    CHECK_RC(frm_unpin(H(&r), mine.slot), 0);
    CHECK_RC(frm_unpin(H(&r), also.slot), 0);
    CHECK_RC(put(&w, 8, 8, 6, in_ms(1000), &gen), 0);
    close_store(&r);
    close_store(&w);
}

static void *pin_and_end_thread(void *arg) {
    pin_holder *p = (pin_holder *)arg;
    frm_frame f;
    p->slot = frm_pin(H(p->h), NULL, &f) == 0 ? f.slot : -1;
    return NULL; /* ends holding the pin: its array was handed over */
}

/* A pin whose taking thread has ended is no other thread's to free: with
 * the rest the caller's own, the claim fails at once; dropped from here,
 * it is counted off. */
static void test_threads_an_ended_threads_pins_count_as_the_callers(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    handle w, r;
    frm_options o = {4096, 2, 2, 1, 0, 0};
    CHECK_RC(open_store(&w, name, 1, &o), 0);
    CHECK_RC(open_store(&r, name, 0, NULL), 0);
    uint64_t gen;
    CHECK_RC(put(&w, 8, 8, 1, in_ms(1000), &gen), 0);
    pin_holder p = {&r, -1, 0, 0};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, pin_and_end_thread, &p) == 0);
    pthread_join(t, NULL);
    CHECK(p.slot >= 0);
    frm_frame mine;
    CHECK_RC(put(&w, 8, 8, 2, in_ms(1000), &gen), 0);
    CHECK_RC(frm_pin(H(&r), NULL, &mine), 0);
    CHECK_RC(put(&w, 8, 8, 3, in_ms(1000), &gen), 0);
    CHECK_RC(put(&w, 8, 8, 4, -1, &gen), FRM_EOWNPINS);
    CHECK_RC(frm_unpin(H(&r), p.slot), 0); /* the orphan, dropped by this thread */
    CHECK_RC(put(&w, 8, 8, 4, in_ms(1000), &gen), 0);
    CHECK_RC(frm_unpin(H(&r), mine.slot), 0);
    close_store(&r);
    close_store(&w);
}

static void test_foreign_pins_time_out_naming_them_and_die_with_their_process(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    handle w;
    frm_options o = {4096, 2, 2, 1, 0, 0};
    CHECK_RC(open_store(&w, name, 1, &o), 0);
    int ready[2], go[2];
    CHECK(pipe(ready) == 0 && pipe(go) == 0);
    uint64_t gen;
    CHECK_RC(put(&w, 8, 8, 1, in_ms(1000), &gen), 0);
    pid_t child = pinning_child(name, 2, ready[1], go[0]);
    char c;
    for (int i = 0; i < 2; i++) {
        CHECK(write(go[1], "g", 1) == 1 && read(ready[0], &c, 1) == 1);
        CHECK_RC(put(&w, 8, 8, (uint8_t)(i + 2), in_ms(1000), &gen), 0);
    }
    frm_pin_info info[4];
    int n = 0;
    CHECK_RC(frm_pinners(H(&w), info, 4, &n), 0);
    CHECK(n == 1 && info[0].pid == (uint32_t)child && info[0].pins == 2);
    CHECK(__builtin_popcount(info[0].slots[0]) == 2);
    int64_t start = frm_now_ns();
    CHECK_RC(put(&w, 8, 8, 9, in_ms(150), &gen), FRM_EPINNED); /* another process pins */
    CHECK(frm_now_ns() - start >= 140000000LL);
    kill(child, SIGKILL);
    CHECK(reap(child) == 128 + SIGKILL);
    start = frm_now_ns();
    CHECK_RC(put(&w, 8, 8, 9, in_ms(1000), &gen), 0); /* the kernel dropped its pins */
    CHECK(frm_now_ns() - start < 50000000LL);
    CHECK_RC(frm_pinners(H(&w), info, 4, &n), 0);
    CHECK(n == 0);
    close(ready[0]), close(ready[1]), close(go[0]), close(go[1]);
    close_store(&w);
}

static void test_pins_per_handle_are_listed_and_counted(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    handle w;
    CHECK_RC(open_store(&w, name, 1, &DEFAULTS), 0);
    uint64_t gen;
    CHECK_RC(put(&w, 8, 8, 1, in_ms(1000), &gen), 0);
    frm_frame f[3];
    for (int i = 0; i < 3; i++) CHECK_RC(frm_pin(H(&w), NULL, &f[i]), 0);
    frm_pin_info info[4];
    int n = 0;
    CHECK_RC(frm_pinners(H(&w), info, 4, &n), 0);
    CHECK(n == 1 && info[0].pid == (uint32_t)getpid() && info[0].pins == 3);
    CHECK(info[0].slots[0] == 1u << f[0].slot);
    for (int i = 0; i < 3; i++) CHECK_RC(frm_unpin(H(&w), f[i].slot), 0);
    CHECK_RC(frm_pinners(H(&w), info, 4, &n), 0);
    CHECK(n == 0);
    close_store(&w);
}

static void test_commit_pinned_keeps_the_writers_frame(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    handle w;
    frm_options o = {4096, 2, 2, 1, FRM_META_MAX, 0};
    CHECK_RC(open_store(&w, name, 1, &o), 0);
    frm_claim_t c;
    CHECK_RC(frm_claim(H(&w), NULL, 64, 5, in_ms(1000), &c), 0);
    memset(c.pixels, 42, 64);
    memcpy(c.meta, "{\"a\"}", 5);
    frm_spec spec = {2, {8, 8, 0, 0}, FRM_UINT8, NULL, 5};
    uint64_t gen;
    CHECK_RC(frm_commit_pinned(&c, &spec, &gen), 0);
    int slot = c.slot;
    CHECK(H(&w)->pins[slot] == 1);
    uint64_t g2;
    for (int i = 0; i < 5; i++) CHECK_RC(put(&w, 8, 8, 7, in_ms(1000), &g2), 0);
    CHECK(c.pixels[0] == 42 && c.pixels[63] == 42); /* never rewritten while pinned */
    frm_frame f;
    CHECK_RC(frm_decode(H(&w), slot, &f), 0);
    CHECK(f.generation == gen && f.meta_len == 5);
    CHECK(memcmp(H(&w)->data + f.meta_offset, "{\"a\"}", 5) == 0);
    CHECK_RC(frm_unpin(H(&w), slot), 0);
    close_store(&w);
}

static void test_meta_is_bounded(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    handle w;
    frm_options o = {4096, 2, 2, 1, FRM_META_MAX, 0};
    CHECK_RC(open_store(&w, name, 1, &o), 0);
    frm_claim_t c;
    CHECK_RC(frm_claim(H(&w), NULL, 64, FRM_META_MAX + 1, in_ms(1000), &c), EINVAL);
    static char meta[FRM_META_MAX];
    memset(meta, 'x', sizeof meta);
    uint8_t px[64] = {0};
    frm_spec spec = {2, {8, 8, 0, 0}, FRM_UINT8, meta, FRM_META_MAX};
    uint64_t gen;
    CHECK_RC(frm_publish(H(&w), NULL, px, &spec, in_ms(1000), &gen), 0);
    frm_frame f;
    CHECK_RC(frm_pin(H(&w), NULL, &f), 0);
    CHECK(f.meta_len == FRM_META_MAX && H(&w)->data[f.meta_offset + FRM_META_MAX - 1] == 'x');
    frm_unpin(H(&w), f.slot);
    spec.meta_len = FRM_META_MAX + 1;
    CHECK_RC(frm_publish(H(&w), NULL, px, &spec, in_ms(1000), &gen), EINVAL);
    close_store(&w);
}

static void test_store_shrinks_after_small_frames_never_below_capacity(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    handle w;
    frm_options o = {8192, 2, 2, 1, 0, 8192};
    CHECK_RC(open_store(&w, name, 1, &o), 0);
    uint64_t gen;
    CHECK_RC(put(&w, 512, 1024, 1, in_ms(1000), &gen), 0); /* grows to 512 KiB */
    CHECK(H(&w)->capacity == 512 * 1024);
    for (int i = 0; i < (int)FRM_SHRINK_AFTER; i++) {
        CHECK_RC(put(&w, 8, 8, (uint8_t)(i + 2), in_ms(1000), &gen), 0);
        CHECK(H(&w)->capacity == 512 * 1024); /* not before 16 small frames */
    }
    CHECK_RC(put(&w, 8, 8, 99, in_ms(1000), &gen), 0);
    CHECK(H(&w)->capacity == 8192); /* the lower bound, not the frame's 64 bytes */
    uint64_t seen;
    CHECK_RC(read_latest(&w, &seen), EBADMSG); /* pixels 99, generation 18 */
    frm_frame f;
    CHECK_RC(frm_latest(H(&w), NULL, &f), 0);
    CHECK(f.generation == gen && H(&w)->data[f.offset] == 99);
    close_store(&w);
}

static void test_rebuild_changes_options_and_carries_frames(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    handle w;
    frm_options o = {4096, 2, 2, 3, 0, 0};
    CHECK_RC(open_store(&w, name, 1, &o), 0);
    uint64_t gen;
    for (int i = 1; i <= 5; i++) CHECK_RC(put(&w, 8, 8, (uint8_t)i, in_ms(1000), &gen), 0);
    frm_options want = {8192, 3, 6, 2, 0, 8192};
    frm_follow fw = follow_of(&w);
    CHECK_RC(frm_rebuild(H(&w), &fw, &want, in_ms(1000)), 0);
    CHECK(fw.moved);
    adopt(&w, &fw);
    frm_options got;
    frm_get_options(H(&w), &got);
    CHECK(got.slots == 3 && got.max_slots == 6 && got.history == 2 && got.capacity == 8192);
    CHECK(got.min_capacity == 8192);
    uint64_t seen;
    CHECK_RC(read_latest(&w, &seen), 0);
    CHECK(seen == 5);
    uint64_t word = H(&w)->ctrl->ring[4 % 2];
    CHECK(word >> 8 == 4); /* the frame before it is kept too */
    CHECK_RC(frm_rebuild(H(&w), NULL, &want, in_ms(1000)), EINVAL);
    close_store(&w);
}

/* ---- streams ---- */

static int pin_from(handle *h, uint64_t want, frm_frame *f) {
    frm_follow fw = follow_of(h);
    int rc = frm_pin_from(H(h), &fw, want, f);
    adopt(h, &fw);
    return rc;
}

static void test_pin_from_walks_the_history_and_the_end_of_stream(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    handle w;
    frm_options o = {4096, 2, 4, 3, 0, 0};
    CHECK_RC(open_store(&w, name, 1, &o), 0);
    frm_frame f;
    CHECK_RC(pin_from(&w, 1, &f), EAGAIN); /* nothing yet */
    uint64_t gen;
    for (int i = 1; i <= 10; i++) CHECK_RC(put(&w, 4, 4, (uint8_t)i, -1, &gen), 0);
    /* Wanted 1: gone; the oldest kept (8) comes instead. */
    CHECK_RC(pin_from(&w, 1, &f), 0);
    CHECK(f.generation == 8 && uniform(H(&w), &f, 8));
    CHECK_RC(frm_unpin(H(&w), f.slot), 0);
    for (uint64_t g = 9; g <= 10; g++) {
        CHECK_RC(pin_from(&w, g, &f), 0);
        CHECK(f.generation == g && uniform(H(&w), &f, (uint8_t)g));
        CHECK_RC(frm_unpin(H(&w), f.slot), 0);
    }
    CHECK_RC(pin_from(&w, 11, &f), EAGAIN);
    CHECK_RC(frm_wait_from(H(&w), NULL, 11, in_ms(20)), ETIMEDOUT);
    CHECK_RC(frm_wait_from(H(&w), NULL, 10, in_ms(20)), 0);
    /* The end: drained subscriptions see it, wait returns at once; the
     * next publish starts a new stream. */
    CHECK_RC(frm_end_stream(H(&w), NULL, -1), 0);
    CHECK_RC(pin_from(&w, 10, &f), 0);
    CHECK_RC(frm_unpin(H(&w), f.slot), 0);
    CHECK_RC(pin_from(&w, 11, &f), FRM_EEND);
    CHECK_RC(frm_wait_from(H(&w), NULL, 11, -1), 0);
    CHECK_RC(put(&w, 4, 4, 11, -1, &gen), 0);
    CHECK_RC(pin_from(&w, 11, &f), 0);
    CHECK(f.generation == 11);
    CHECK_RC(frm_unpin(H(&w), f.slot), 0);
    CHECK_RC(pin_from(&w, 12, &f), EAGAIN);
    close_store(&w);
}

static void test_a_lying_ring_is_refused(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    handle w;
    frm_options o = {4096, 2, 4, 3, 0, 0};
    CHECK_RC(open_store(&w, name, 1, &o), 0);
    uint64_t gen;
    for (int i = 1; i <= 3; i++) CHECK_RC(put(&w, 4, 4, (uint8_t)i, -1, &gen), 0);
    frm_ctrl *c = H(&w)->ctrl;
    uint64_t saved = c->ring[2 % 3];
    frm_frame f;
    c->ring[2 % 3] = 2ull << 8 | 200; /* no such slot */
    CHECK_RC(pin_from(&w, 2, &f), SHMP_EINCOMPAT);
    int other = (int)(c->ring[1 % 3] & 0xff); /* names generation 1's slot */
    c->ring[2 % 3] = 2ull << 8 | (uint64_t)other;
    CHECK_RC(pin_from(&w, 2, &f), SHMP_EINCOMPAT);
    c->ring[2 % 3] = saved;
    CHECK_RC(pin_from(&w, 2, &f), 0);
    CHECK(f.generation == 2);
    CHECK_RC(frm_unpin(H(&w), f.slot), 0);
    close_store(&w);
}

static void test_lossless_subscribers_hold_the_writer_back(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    handle w, s;
    frm_options o = {4096, 2, 4, 2, 0, 0};
    CHECK_RC(open_store(&w, name, 1, &o), 0);
    uint64_t gen, from = 1;
    CHECK_RC(put(&w, 4, 4, 1, -1, &gen), 0);
    CHECK_RC(open_store(&s, name, 0, NULL), 0);
    int k = -1;
    CHECK_RC(frm_subscribe(H(&s), NULL, &from, -1, &k), 0);
    CHECK(k >= 0 && from == 1);
    frm_sub sub;
    int alive = 0;
    CHECK_RC(frm_subscriber(H(&w), (uint32_t)k, &sub, &alive), 0);
    CHECK(alive && sub.flags == FRM_SUB_LOSSLESS && sub.next_generation == 1);
    CHECK_RC(put(&w, 4, 4, 2, -1, &gen), 0); /* history 2: 1 and 2 kept */
    CHECK_RC(put(&w, 4, 4, 3, in_ms(30), &gen), FRM_ESLOW); /* would drop 1 */
    CHECK(H(&w)->slow_pid == (uint32_t)getpid());
    CHECK_RC(frm_sub_advance(H(&s), k, 2), 0);
    CHECK_RC(put(&w, 4, 4, 3, in_ms(1000), &gen), 0);
    CHECK_RC(put(&w, 4, 4, 4, in_ms(30), &gen), FRM_ESLOW);
    CHECK_RC(frm_unsubscribe(H(&s), k), 0);
    for (int i = 4; i < 10; i++) CHECK_RC(put(&w, 4, 4, (uint8_t)i, in_ms(1000), &gen), 0);
    CHECK_RC(frm_subscriber(H(&w), (uint32_t)k, &sub, &alive), ENOENT);
    /* A late subscriber wanting what is gone starts at the oldest kept. */
    from = 1;
    CHECK_RC(frm_subscribe(H(&s), NULL, &from, -1, &k), 0);
    CHECK(from == gen - 1);
    CHECK_RC(frm_unsubscribe(H(&s), k), 0);
    close_store(&s);
    close_store(&w);
}

/* frm_publish_now of a rows x cols uint8 frame of `value`. */
static int put_now(handle *h, uint64_t rows, uint64_t cols, uint8_t value, uint64_t *gen) {
    unsigned char buf[128 * 1024];
    memset(buf, value, sizeof buf);
    frm_spec spec = {2, {rows, cols, 0, 0}, FRM_UINT8, NULL, 0};
    return frm_publish_now(H(h), buf, &spec, gen);
}

/* Publishing without waiting does what frm_publish does when nothing needs
 * waiting for, and otherwise nothing at all: the mutex busy, a lossless
 * subscriber behind, a frame that does not fit or is not small, a store
 * replaced. */
static void test_publish_now_publishes_or_leaves_everything_as_it_was(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    handle w, s;
    frm_options o = {4096, 2, 4, 2, 0, 0};
    CHECK_RC(open_store(&w, name, 1, &o), 0);
    uint64_t gen = 0;
    CHECK_RC(put_now(&w, 4, 4, 1, &gen), 0); /* the first frame: fresh pages */
    CHECK(gen == 1);
    CHECK_RC(read_latest(&w, &gen), 0);
    CHECK(gen == 1);
    CHECK_RC(put_now(&w, 100, 100, 9, &gen), EWOULDBLOCK); /* would grow */
    CHECK_RC(put_now(&w, 300, 300, 9, &gen), EWOULDBLOCK); /* not small */
    CHECK(frm_generation(H(&w)) == 1 && !frm_superseded(H(&w)));

    int fds[2];
    char c;
    CHECK(pipe(fds) == 0);
    pid_t pid = fork();
    if (pid == 0) claim_and_hang(name, fds[1]); /* holds the mutex */
    CHECK(read(fds[0], &c, 1) == 1);
    int64_t start = frm_now_ns();
    CHECK_RC(put_now(&w, 4, 4, 9, &gen), EWOULDBLOCK);
    CHECK(frm_now_ns() - start < 1000000000LL); /* at once, not after a wait */
    kill(pid, SIGKILL);
    CHECK(reap(pid) == 128 + SIGKILL);
    close(fds[0]);
    close(fds[1]);
    CHECK_RC(put_now(&w, 4, 4, 2, &gen), 0); /* the dead writer's mutex taken over */
    CHECK(gen == 2);

    CHECK_RC(open_store(&s, name, 0, NULL), 0);
    uint64_t from = 2;
    int k = -1;
    CHECK_RC(frm_subscribe(H(&s), NULL, &from, -1, &k), 0);
    CHECK_RC(put_now(&w, 4, 4, 3, &gen), 0);
    CHECK_RC(put_now(&w, 4, 4, 4, &gen), EWOULDBLOCK); /* would drop 2, not taken */
    CHECK(frm_generation(H(&w)) == 3);
    CHECK_RC(frm_sub_advance(H(&s), k, 3), 0);
    CHECK_RC(put_now(&w, 4, 4, 4, &gen), 0);
    CHECK_RC(frm_unsubscribe(H(&s), k), 0);

    CHECK_RC(put(&w, 100, 100, 5, -1, &gen), 0); /* grows: `s` is on the old store */
    CHECK_RC(put_now(&s, 4, 4, 6, &gen), EWOULDBLOCK);
    CHECK_RC(put_now(&w, 4, 4, 6, &gen), 0);
    CHECK(gen == 6);
    CHECK_RC(read_latest(&w, &gen), 0);
    CHECK(gen == 6);
    close_store(&s);
    close_store(&w);
}

/* A store replaced under its name (here: grown) carries each live lossless
 * entry: it holds the writer back before its subscriber calls again, the
 * subscriber adopts it, and one that leaves its old store gives it up. */
static void test_growth_carries_lossless_positions(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    handle w, s, t;
    frm_options o = {4096, 2, 4, 2, 0, 0};
    CHECK_RC(open_store(&w, name, 1, &o), 0);
    uint64_t gen, from = 1;
    CHECK_RC(put(&w, 4, 4, 1, -1, &gen), 0);
    CHECK_RC(open_store(&s, name, 0, NULL), 0);
    CHECK_RC(open_store(&t, name, 0, NULL), 0);
    int k = -1, kt = -1;
    CHECK_RC(frm_subscribe(H(&s), NULL, &from, -1, &k), 0);
    uint64_t tfrom = 2;
    CHECK_RC(frm_subscribe(H(&t), NULL, &tfrom, -1, &kt), 0);
    frm_sub sub;
    int alive = 0;
    CHECK_RC(frm_subscriber(H(&s), (uint32_t)k, &sub, &alive), 0);
    uint64_t token = sub.token;
    CHECK(token != 0);
    CHECK_RC(put(&w, 128, 128, 2, -1, &gen), 0); /* grows */
    CHECK(frm_superseded(H(&s)));
    CHECK_RC(frm_subscriber(H(&w), (uint32_t)k, &sub, &alive), 0);
    CHECK(alive && sub.flags == (FRM_SUB_LOSSLESS | FRM_SUB_CARRIED) && sub.next_generation == 1);
    CHECK(sub.token == token);
    CHECK_RC(put(&w, 4, 4, 3, in_ms(30), &gen), FRM_ESLOW); /* would drop 1 */
    /* t leaves from its old store: its carried entry is given up. */
    CHECK_RC(frm_unsubscribe(H(&t), kt), 0);
    CHECK_RC(frm_subscriber(H(&w), (uint32_t)kt, &sub, &alive), 0);
    CHECK(!alive);
    /* s adopts its entry where it stands (it took 1 meanwhile). */
    from = 2;
    int k2 = -1;
    frm_follow fw = follow_of(&s);
    CHECK_RC(frm_resubscribe(H(&s), &fw, &from, token, -1, &k2), 0);
    CHECK(fw.moved && k2 == k && from == 2);
    CHECK_RC(frm_subscriber(H(&w), (uint32_t)k2, &sub, &alive), 0);
    CHECK(alive && sub.flags == FRM_SUB_LOSSLESS && sub.next_generation == 2);
    CHECK_RC(frm_unsubscribe(H(&s), k), 0); /* its entry in the old store */
    adopt(&s, &fw);
    CHECK_RC(put(&w, 4, 4, 3, in_ms(1000), &gen), 0);
    CHECK_RC(put(&w, 4, 4, 4, in_ms(30), &gen), FRM_ESLOW); /* would drop 2 */
    CHECK_RC(frm_unsubscribe(H(&s), k2), 0);
    CHECK_RC(put(&w, 4, 4, 4, in_ms(1000), &gen), 0);
    close_store(&t);
    close_store(&s);
    close_store(&w);
}

/* A subscription adopts its entry in a grown store, which grows again
 * before the subscription leaves its first store: leaving that one as a
 * move keeps the entry carried into the newest store; leaving for good
 * gives it up. */
static void test_a_move_keeps_what_a_later_growth_carried(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    handle w, s;
    frm_options o = {4096, 2, 4, 2, 0, 0};
    CHECK_RC(open_store(&w, name, 1, &o), 0);
    uint64_t gen, from = 2;
    CHECK_RC(put(&w, 4, 4, 1, -1, &gen), 0);
    CHECK_RC(open_store(&s, name, 0, NULL), 0);
    int k = -1, k2 = -1;
    CHECK_RC(frm_subscribe(H(&s), NULL, &from, -1, &k), 0);
    frm_sub sub;
    int alive = 0;
    CHECK_RC(frm_subscriber(H(&s), (uint32_t)k, &sub, &alive), 0);
    uint64_t token = sub.token;
    CHECK_RC(put(&w, 128, 128, 2, -1, &gen), 0); /* grows: carried */
    frm_follow fw = follow_of(&s);
    CHECK_RC(frm_resubscribe(H(&s), &fw, &from, token, -1, &k2), 0); /* adopted */
    CHECK(fw.moved && from == 2);
    CHECK_RC(put(&w, 512, 512, 3, -1, &gen), 0); /* grows again: carried again */
    CHECK_RC(frm_sub_moved(H(&s), k), 0); /* leaves its first store */
    adopt(&s, &fw);
    CHECK_RC(frm_subscriber(H(&w), (uint32_t)k2, &sub, &alive), 0);
    CHECK(alive && sub.flags == (FRM_SUB_LOSSLESS | FRM_SUB_CARRIED) && sub.next_generation == 2);
    CHECK_RC(put(&w, 4, 4, 4, in_ms(30), &gen), FRM_ESLOW); /* would drop 2 */
    CHECK_RC(frm_unsubscribe(H(&s), k2), 0); /* closed: the carried entry goes too */
    CHECK_RC(put(&w, 4, 4, 4, in_ms(1000), &gen), 0);
    close_store(&s);
    close_store(&w);
}

static void test_registry_holds_64_lossless_subscribers(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    handle w;
    CHECK_RC(open_store(&w, name, 1, &DEFAULTS), 0);
    handle *subs = calloc(FRM_MAX_SUBS + 1, sizeof *subs);
    CHECK(subs != NULL);
    int k;
    for (uint32_t i = 0; i <= FRM_MAX_SUBS; i++) {
        uint64_t from = 1;
        CHECK_RC(open_store(&subs[i], name, 0, NULL), 0);
        CHECK_RC(frm_subscribe(H(&subs[i]), NULL, &from, -1, &k), i < FRM_MAX_SUBS ? 0 : ENOSPC);
    }
    /* One leaves (its handle closes: the kernel drops its lock): room again. */
    close_store(&subs[5]);
    uint64_t from = 1;
    CHECK_RC(frm_subscribe(H(&subs[FRM_MAX_SUBS]), NULL, &from, -1, &k), 0);
    CHECK(k == 5);
    for (uint32_t i = 0; i <= FRM_MAX_SUBS; i++)
        if (i != 5) close_store(&subs[i]);
    free(subs);
    close_store(&w);
}

/* Lossy entries are listed, never wait the writer, and give way to a
 * lossless subscriber that finds no free entry. */
static void test_lossy_entries_are_listed_and_give_way(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    handle w, l;
    frm_options o = {4096, 2, 4, 1, 0, 0};
    CHECK_RC(open_store(&w, name, 1, &o), 0);
    uint64_t gen, token = 0;
    CHECK_RC(put(&w, 4, 4, 1, -1, &gen), 0);
    CHECK_RC(open_store(&l, name, 0, NULL), 0);
    int k = -1;
    CHECK_RC(frm_subscribe_lossy(H(&l), NULL, 2, -1, &k, &token), 0);
    frm_sub sub;
    int alive = 0;
    CHECK_RC(frm_subscriber(H(&w), (uint32_t)k, &sub, &alive), 0);
    CHECK(alive && sub.flags == FRM_SUB_LOSSY && sub.next_generation == 2 && sub.token == token);
    for (int i = 2; i < 6; i++) CHECK_RC(put(&w, 4, 4, (uint8_t)i, in_ms(30), &gen), 0);
    CHECK_RC(frm_sub_note(H(&l), k, token, 5), 0);
    CHECK_RC(frm_subscriber(H(&w), (uint32_t)k, &sub, &alive), 0);
    CHECK(alive && sub.next_generation == 5);
    handle *subs = calloc(FRM_MAX_SUBS, sizeof *subs);
    CHECK(subs != NULL);
    int taken_over = -1;
    for (uint32_t i = 0; i < FRM_MAX_SUBS; i++) {
        uint64_t from = 1;
        int ks = -1;
        CHECK_RC(open_store(&subs[i], name, 0, NULL), 0);
        CHECK_RC(frm_subscribe(H(&subs[i]), NULL, &from, -1, &ks), 0);
        if (ks == k) taken_over = (int)i;
    }
    CHECK(taken_over == FRM_MAX_SUBS - 1); /* only when nothing else was free */
    CHECK_RC(frm_sub_note(H(&l), k, token, 6), ENOENT);
    CHECK_RC(frm_sub_leave(H(&l), k, token), 0); /* leaves the lossless entry alone */
    CHECK_RC(frm_subscriber(H(&w), (uint32_t)k, &sub, &alive), 0);
    CHECK(alive && sub.flags == FRM_SUB_LOSSLESS && sub.next_generation == gen);
    for (uint32_t i = 0; i < FRM_MAX_SUBS; i++) close_store(&subs[i]);
    free(subs);
    /* A lossy entry given up is free again, and its owner's death frees it too. */
    CHECK_RC(frm_subscribe_lossy(H(&l), NULL, gen, -1, &k, &token), 0);
    CHECK_RC(frm_sub_leave(H(&l), k, token), 0);
    CHECK_RC(frm_subscriber(H(&w), (uint32_t)k, &sub, &alive), 0);
    CHECK(!alive);
    CHECK_RC(frm_subscribe_lossy(H(&l), NULL, gen, -1, &k, &token), 0);
    close_store(&l);
    CHECK_RC(frm_subscriber(H(&w), (uint32_t)k, &sub, &alive), 0);
    CHECK(!alive);
    close_store(&w);
}

static const check_test tests[] = {
    CHECK_TEST(test_options_are_bounded),
    CHECK_TEST(test_dtype_table),
    CHECK_TEST(test_build_attach_and_options),
    CHECK_TEST(test_commit_then_pin_reads_it),
    CHECK_TEST(test_writer_alternates_between_two_warm_slots),
    CHECK_TEST(test_pins_keep_slots_until_max_slots),
    CHECK_TEST(test_history_keeps_frames_from_writers),
    CHECK_TEST(test_hostile_head_fields_are_refused),
    CHECK_TEST(test_hostile_slot_fields_are_refused),
    CHECK_TEST(test_subscriber_liveness_is_a_kernel_lock),
    CHECK_TEST(test_writer_killed_mid_commit_leaves_the_previous_frame),
    CHECK_TEST(test_writer_killed_before_any_frame_is_torn),
    CHECK_TEST(test_growth_carries_the_kept_frames),
    CHECK_TEST(test_wait_follows_growth_and_times_out),
    CHECK_TEST(test_a_replacement_left_unmarked_is_found),
    CHECK_TEST(test_readers_pin_while_the_writer_grows),
    CHECK_TEST(test_wake_across_processes),
    CHECK_TEST(test_forked_child_holds_no_pins),
    CHECK_TEST(test_threads_writer_readers_waiter),
    CHECK_TEST(test_threads_two_loaning_writers),
    CHECK_TEST(test_threads_own_pins_fail_at_once_others_are_waited_for),
    CHECK_TEST(test_threads_an_ended_threads_pins_count_as_the_callers),
    CHECK_TEST(test_foreign_pins_time_out_naming_them_and_die_with_their_process),
    CHECK_TEST(test_pins_per_handle_are_listed_and_counted),
    CHECK_TEST(test_commit_pinned_keeps_the_writers_frame),
    CHECK_TEST(test_meta_is_bounded),
    CHECK_TEST(test_store_shrinks_after_small_frames_never_below_capacity),
    CHECK_TEST(test_rebuild_changes_options_and_carries_frames),
    CHECK_TEST(test_pin_from_walks_the_history_and_the_end_of_stream),
    CHECK_TEST(test_a_lying_ring_is_refused),
    CHECK_TEST(test_lossless_subscribers_hold_the_writer_back),
    CHECK_TEST(test_publish_now_publishes_or_leaves_everything_as_it_was),
    CHECK_TEST(test_registry_holds_64_lossless_subscribers),
    CHECK_TEST(test_growth_carries_lossless_positions),
    CHECK_TEST(test_a_move_keeps_what_a_later_growth_carried),
    CHECK_TEST(test_lossy_entries_are_listed_and_give_way),
};

/* Removes what this process's tests left in /dev/shm; how many there were. */
static int sweep_leftovers(void) {
    char prefix[SHMP_NAME_MAX];
    check_name_stem(prefix, sizeof prefix);
    size_t n = strlen(prefix + 1);
    int found = 0;
    DIR *d = opendir(shmp_dir());
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix + 1, n) != 0) continue;
        char path[320];
        snprintf(path, sizeof path, "%s/%s", shmp_dir(), e->d_name);
        unlink(path);
        found++;
    }
    closedir(d);
    return found;
}

static void sweep_after_test(void) {
    int left = sweep_leftovers();
    if (left) check_fail(__FILE__, __LINE__, "left %d segment(s) in /dev/shm", left);
}

int main(int argc, char **argv) {
    return check_main(argc, argv, tests, sizeof tests / sizeof tests[0], sweep_after_test);
}
