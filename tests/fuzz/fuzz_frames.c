/* libFuzzer harness for the frame-store layout (frames.h, layout 3).
 *
 * Each input is the whole data area of a segment: the store's head, its
 * subscriber and pinner registries, its slot table and slots (meta bytes
 * and their length fields included), every field hostile. It is
 * copied into a real (unnamed) segment of exactly that size, and then goes
 * through what readers and writers do: frm_open's validation, latest, pin,
 * decode of every slot, the subscriber registry, claim + commit, publish,
 * wait, the stream calls (pin from a generation, wait for one, end of
 * stream, lossless registration), and growth into a new segment carrying the kept frames. Whatever the bytes, every call must return a code, never read or
 * write outside the mapping (ASan sees the mapping's end as unmapped: the
 * harness also checks each frame it is given against the mapping's size),
 * and never hang (deadlines are immediate).
 *
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc/shmcore \
 *        tests/fuzz/fuzz_frames.c src/shmcore/frames.c src/shmcore/shm_posix.c \
 *        -o fuzz_frames -lpthread
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frames.h"

static uint64_t data_size;

static void check_frame(const frm_store *st, const frm_frame *f) {
    if (f->slot < 0 || (uint32_t)f->slot >= st->table_slots) abort();
    if (f->ndim < 2 || f->ndim > FRM_MAX_DIMS || !frm_itemsize(f->dtype)) abort();
    if (f->offset > data_size || f->nbytes > data_size - f->offset) abort();
    if (f->nbytes > st->capacity) abort();
    if (f->meta_offset > data_size || f->meta_len > data_size - f->meta_offset) abort();
    if (f->meta_len > st->meta_capacity) abort();
    volatile unsigned char sum = 0;
    if (f->nbytes) sum ^= st->data[f->offset] ^ st->data[f->offset + f->nbytes - 1];
    if (f->meta_len) sum ^= st->data[f->meta_offset + f->meta_len - 1];
    (void)sum;
}

static void readers(frm_store *st) {
    frm_frame f;
    if (frm_latest(st, NULL, &f) == 0) check_frame(st, &f);
    if (frm_pin(st, NULL, &f) == 0) {
        check_frame(st, &f);
        frm_unpin(st, f.slot);
    }
    for (uint32_t i = 0; i < st->table_slots; i++)
        if (frm_decode(st, (int)i, &f) == 0) check_frame(st, &f);
    for (uint32_t k = 0; k < FRM_MAX_SUBS; k++) {
        frm_sub sub;
        int alive;
        frm_subscriber(st, k, &sub, &alive);
    }
    frm_pin_info info[FRM_MAX_PINNERS];
    int n = 0;
    if (frm_pinners(st, info, FRM_MAX_PINNERS, &n) == 0 && (n < 0 || n > (int)FRM_MAX_PINNERS))
        abort();
    uint64_t gen;
    frm_wait(st, NULL, frm_generation(st), frm_now_ns(), 0, &gen);
    /* Streams: the history ring and the end-of-stream mark, hostile too. */
    uint64_t wants[3] = {1, frm_generation(st), frm_generation(st) + 1};
    for (int i = 0; i < 3; i++) {
        if (frm_pin_from(st, NULL, wants[i], &f) == 0) {
            check_frame(st, &f);
            if (f.generation < wants[i]) abort();
            frm_unpin(st, f.slot);
        }
        frm_wait_from(st, NULL, wants[i], frm_now_ns());
    }
}

/* A lossy subscriber is listed, moves, leaves; a subscription adopts the
 * entry of any token the (hostile) registry holds, as after a rebuild. */
static void lossy_and_carried(frm_store *st, uint64_t from) {
    uint64_t token = 0;
    int k = -1;
    if (frm_subscribe_lossy(st, NULL, from, frm_now_ns(), &k, &token) == 0) {
        if (k < 0 || (uint32_t)k >= FRM_MAX_SUBS) abort();
        frm_sub_note(st, k, token, from + 1);
        frm_sub_leave(st, k, token);
    }
    for (uint32_t i = 0; i < FRM_MAX_SUBS; i++) {
        frm_sub e;
        int alive;
        if (frm_subscriber(st, i, &e, &alive) != 0 || !e.token) continue;
        uint64_t at = 1;
        if (frm_resubscribe(st, NULL, &at, e.token, frm_now_ns(), &k) == 0) {
            if (k < 0 || (uint32_t)k >= FRM_MAX_SUBS) abort();
            frm_unsubscribe(st, k);
        }
        break;
    }
}

/* A lossless subscriber registers (its own lock makes it live: the claims
 * below wait for it until their immediate deadline), moves, leaves. */
static void subscriber(frm_store *st) {
    uint64_t from = 1;
    int k = -1;
    if (frm_subscribe(st, NULL, &from, frm_now_ns(), &k) != 0) return;
    if (k < 0 || (uint32_t)k >= FRM_MAX_SUBS) abort();
    frm_sub_advance(st, k, from + 1);
    static const uint8_t pixels[16];
    frm_spec spec = {2, {4, 4, 0, 0}, FRM_UINT8, NULL, 0};
    uint64_t gen;
    frm_publish(st, NULL, pixels, &spec, frm_now_ns(), &gen);
    frm_unsubscribe(st, k);
    lossy_and_carried(st, from);
    frm_end_stream(st, NULL, frm_now_ns());
}

static void writers(frm_store *st) {
    frm_claim_t c;
    uint64_t gen;
    if (frm_claim(st, NULL, 64, 8, frm_now_ns(), &c) == 0) {
        unsigned char *end = st->data + data_size;
        if (c.pixels < st->data || c.pixels + 64 > end || c.meta + 8 > end) abort();
        memset(c.pixels, 7, 64);
        memcpy(c.meta, "fuzzmeta", 8);
        frm_spec spec = {3, {4, 4, 4, 0}, FRM_UINT8, NULL, 8};
        int slot = c.slot;
        if (frm_commit_pinned(&c, &spec, &gen) == 0) {
            frm_frame f;
            if (frm_pin(st, NULL, &f) == 0) {
                check_frame(st, &f);
                frm_unpin(st, f.slot);
            }
            frm_unpin(st, slot); /* the writer's own pin */
        }
    }
    static const uint16_t pixels[4 * 8];
    frm_spec spec = {2, {4, 8, 0, 0}, FRM_UINT16, NULL, 0};
    frm_publish(st, NULL, pixels, &spec, frm_now_ns(), &gen);
    /* Larger than any fuzzed slot: growth needs somewhere to follow into. */
    frm_spec big = {2, {1 << 20, 1 << 10, 0, 0}, FRM_UINT8, NULL, 0};
    frm_publish(st, NULL, pixels, &big, frm_now_ns(), &gen);
}

/* A frame that does not fit: the store grows into a new segment under the
 * same name, carrying the kept frames it can decode; readers follow. */
static void growth(frm_store *st) {
    frm_store next;
    shmp_seg next_seg;
    frm_follow fw = {&next, &next_seg, 0};
    static const uint8_t pixels[300 * 300];
    frm_spec spec = {2, {300, 300, 0, 0}, FRM_UINT8, NULL, 0};
    uint64_t gen;
    if (frm_publish(st, &fw, pixels, &spec, frm_now_ns(), &gen) == 0 && !fw.moved) abort();
    if (!fw.moved) {
        /* A rebuild with other options carries what it can decode too. */
        frm_options o = {4096, 2, 3, 2, 0, 4096};
        if (frm_rebuild(st, &fw, &o, frm_now_ns()) == 0 && !fw.moved) abort();
    }
    if (!fw.moved) return;
    frm_frame f;
    if (frm_pin(&next, NULL, &f) == 0) {
        if (f.offset + f.nbytes > next_seg.map_size - SHMP_HEADER_SIZE) abort();
        frm_unpin(&next, f.slot);
    }
    frm_detach(&next);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char name[64];
    if (!name[0]) snprintf(name, sizeof name, "/shmi_fuzzf_%ld", (long)getpid());
    if (size == 0) return 0;
    shmp_seg seg;
    if (shmp_build(&seg, size, 0, 0, "fuzz", 4) != 0) return 0;
    memcpy(shmp_data(&seg), data, size);
    data_size = size;
    frm_store st;
    if (frm_open(&st, &seg) == 0) {
        if (st.ctrl_size > size || st.table_slots * st.stride > size - st.ctrl_size) abort();
        readers(&st);
        writers(&st);
        subscriber(&st);
        readers(&st);
        int named = shmp_link(&seg, name) == 0; /* growth swaps under a name */
        if (named) growth(&st);
        frm_close(&st);
        if (named) {
            shmp_detach(&seg);
            return 0;
        }
    }
    shmp_discard(&seg);
    return 0;
}
