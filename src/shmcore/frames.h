/* The frame protocol over one segment's data area (layout version 3).
 *
 * Data area:  [control: head | subscribers | pinners | slot table] [slots...]
 *   head        frm_ctrl: store options, `latest`, the history ring, futex words
 *   subscribers FRM_MAX_SUBS frm_sub entries (lossless subscribers)
 *   pinners     FRM_MAX_PINNERS frm_pinner entries: which process pins what,
 *               each live while its owner holds the entry's kernel lock
 *   slot table  table_slots frm_slot descriptors (history + max_slots)
 *   slots       table_slots regions of slot_stride bytes, page-aligned:
 *               meta_capacity bytes of per-frame metadata, then slot_capacity
 *               bytes of pixels. Sparse: a slot's pages are reserved when it
 *               is first written.
 *
 * A writer holds the segment's mutex for a whole publish and an exclusive
 * byte-range lock on the slot it fills; readers pin a slot with a shared
 * byte-range lock (no mutex). The kernel drops both when a process dies, so
 * a slot abandoned mid-write is free again and `latest` only ever names
 * complete slots. Fields that cross processes without the mutex go through
 * the atomics below.
 *
 * Every function returns 0 or an errno value (or one of the codes below).
 * Fields read from the segment are validated where they are used: another
 * process can rewrite them at any time.
 */
#ifndef SHM_FRAMES_H
#define SHM_FRAMES_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "shm_platform.h"

#define FRM_MAGIC 0x334d5246494d4853ULL /* "SHMIFRM3" */
#define FRM_VERSION 3u
#define FRM_PAGE 4096u

#define FRM_MIN_SPARES 2u   /* `slots`: spare slots at first, at least */
#define FRM_MAX_SPARES 64u  /* `max_slots`: at most */
#define FRM_MAX_HISTORY 64u /* `history`: complete frames kept */
#define FRM_MAX_TABLE (FRM_MAX_HISTORY + FRM_MAX_SPARES)
#define FRM_MAX_SUBS 64u
#define FRM_META_MAX 65536u       /* metadata bytes per frame */
#define FRM_MAX_DIMS 4u
#define FRM_MAX_FRAME_BYTES (1ULL << 46)

#define FRM_HEAD_SIZE 1024u
#define FRM_SUBS_AT FRM_HEAD_SIZE
#define FRM_MAX_PINNERS 64u
#define FRM_PINNERS_AT (FRM_SUBS_AT + FRM_MAX_SUBS * 64u)
#define FRM_TABLE_AT (FRM_PINNERS_AT + FRM_MAX_PINNERS * 32u)
#define FRM_SHRINK_AFTER 16u /* frames under a quarter of a slot before shrinking */

/* Range-lock indexes: slot i is i, subscriber k is FRM_SUB_LOCKS + k,
 * pinner entry k is FRM_PIN_LOCKS + k. */
#define FRM_SUB_LOCKS 1024u
#define FRM_LOSSY_LOCKS (FRM_SUB_LOCKS + FRM_MAX_SUBS) /* a lossy entry k's liveness */
#define FRM_PIN_LOCKS 2048u

/* Slot states. */
#define FRM_FREE 0u
#define FRM_WRITING 1u
#define FRM_COMPLETE 2u

/* frm_slot.flags */
#define FRM_SLOT_RESERVED 1u /* the slot's pages are reserved */

/* frm_sub.state and flags */
#define FRM_SUB_FREE 0u
#define FRM_SUB_LIVE 1u
#define FRM_SUB_LOSSLESS 1u
#define FRM_SUB_CARRIED 2u /* put here by a rebuild; live while its process is:
                            * its subscriber adopts it (lock and all) on its
                            * next call. CARRIED alone: given up, free. */
#define FRM_SUB_LOSSY 4u   /* listed only: the writer never waits for it, and a
                            * lossless subscriber that finds no free entry
                            * takes its place */

/* Errors that are not errno values (beside SHMP_EINCOMPAT). */
#define FRM_ENOFRAME 0x10101 /* nothing published yet */
#define FRM_ETORN 0x10102    /* the writer died mid-publish, no complete frame */
#define FRM_EPINNED 0x10103  /* timed out: every slot up to max_slots is kept or pinned */
#define FRM_EOWNPINS 0x10104 /* every pin that blocks a claim is the calling thread's */
#define FRM_ESLOW 0x10106    /* timed out: a live lossless subscriber (slow_pid) holds
                              * back the frame the next publish drops */
#define FRM_EEND 0x10105     /* the writer ended the stream before this generation */
#ifndef ESTALE
#define ESTALE 116 /* the store was replaced and the call may not follow */
#endif

/* Element types, stored native-endian. 0 is no type. */
enum {
    FRM_BOOL = 1,
    FRM_INT8,
    FRM_UINT8,
    FRM_INT16,
    FRM_UINT16,
    FRM_INT32,
    FRM_UINT32,
    FRM_INT64,
    FRM_UINT64,
    FRM_FLOAT16,
    FRM_FLOAT32,
    FRM_FLOAT64,
    FRM_DTYPE_END
};

typedef struct frm_slot {
    uint32_t state;
    uint32_t ndim;
    uint64_t shape[FRM_MAX_DIMS];
    uint32_t dtype; /* FRM_BOOL .. FRM_FLOAT64 */
    uint32_t flags;
    uint64_t nbytes;
    uint64_t generation;
    uint64_t timestamp_ns;
    uint32_t writer_pid;
    uint32_t meta_len;
    uint8_t pad[128 - 80];
} frm_slot;

typedef struct frm_sub {
    uint32_t state;
    uint32_t pid;
    uint64_t start_time; /* the process's start time, where pids are reused fast */
    uint64_t next_generation;
    uint32_t flags;
    uint32_t incarnation;
    uint64_t token; /* the subscription's identity, kept across rebuilds */
    uint64_t lossy_next; /* a lossy entry's position (never read for a lossless one) */
    uint8_t pad[64 - 48];
} frm_sub;

/* One process handle's pins: written by its owner only. */
typedef struct frm_pinner {
    uint32_t pid;
    uint32_t pins;     /* references this handle holds, over all slots */
    uint32_t slots[4]; /* bit i: slot i is pinned (FRM_MAX_TABLE <= 128) */
    uint8_t pad[32 - 24];
} frm_pinner;

typedef struct frm_ctrl {
    uint64_t magic;
    uint32_t version;
    uint32_t ctrl_size; /* bytes before the first slot: head, registry, table */
    uint64_t slot_capacity;
    uint32_t meta_capacity;
    uint32_t table_slots; /* history + max_slots */
    uint32_t slots;       /* spare slots at first */
    uint32_t max_slots;
    uint32_t history;
    uint32_t active_slots; /* slots [0, active) in use; grows up to table_slots */
    uint64_t slot_stride;  /* meta_capacity + slot_capacity */
    uint64_t latest;       /* generation << 8 | (slot + 1); 0: none yet */
    uint64_t last_generation;
    uint32_t seq; /* futex word: bumped by every publish and supersede */
    uint32_t waiters;
    uint32_t sub_seq; /* futex word for subscribers' progress */
    uint32_t sub_waiters;
    uint64_t end_generation; /* end of stream at this generation; 0: none */
    uint64_t min_capacity;   /* the `capacity` option: never shrink below it */
    uint32_t small_run;      /* consecutive frames under a quarter of a slot */
    uint32_t reserved;
    uint8_t pad[512 - 112];
    uint64_t ring[FRM_MAX_HISTORY]; /* ring[g % history] = g << 8 | (slot + 1) */
} frm_ctrl;

/* Store options, as SharedImage takes them. */
typedef struct frm_options {
    uint64_t capacity; /* pixel bytes per slot (rounded up to pages) */
    uint32_t slots;
    uint32_t max_slots;
    uint32_t history;
    uint32_t meta_capacity;
    uint64_t min_capacity; /* never shrink slots below this (the user's `capacity`) */
} frm_options;

/* Decoded, validated facts of one complete frame. */
typedef struct frm_frame {
    int slot;
    uint32_t ndim;
    uint64_t shape[FRM_MAX_DIMS];
    uint32_t dtype;
    uint32_t itemsize;
    uint64_t nbytes;
    uint64_t generation;
    uint64_t timestamp_ns;
    uint32_t writer_pid;
    uint32_t meta_len;
    uint64_t offset;      /* of the pixels, from the start of the data area */
    uint64_t meta_offset; /* of the metadata */
} frm_frame;

/* What a writer commits. */
typedef struct frm_spec {
    uint32_t ndim;
    uint64_t shape[FRM_MAX_DIMS];
    uint32_t dtype;
    const void *meta; /* copied in; NULL when written in place (frm_claim_t.meta) */
    uint32_t meta_len;
} frm_spec;

#if defined(_WIN32)
typedef SRWLOCK frm_mutex;
#else
typedef pthread_mutex_t frm_mutex;
#endif

/* This process's handle on the store of one attached segment. The local
 * mutex makes its pins and claims consistent between threads (byte-range
 * locks belong to the handle, not to a thread). */
typedef struct frm_store {
    shmp_seg *seg;
    frm_ctrl *ctrl;
    frm_sub *subs;
    frm_pinner *pinners;
    frm_slot *table;
    unsigned char *data; /* the data area */
    /* validated copies of the immutable header fields */
    uint64_t capacity, stride, ctrl_size, min_capacity;
    uint32_t meta_capacity, table_slots, history, slots, max_slots;
    int copy_threads;
    uint32_t name_hash; /* of the segment's name, for the pin tally; 0: not yet */
    frm_mutex mu;
    uint32_t pid; /* the process whose pins these are */
    uint32_t pins[FRM_MAX_TABLE];
    uint8_t claimed[FRM_MAX_TABLE];
    int pinner;          /* this handle's pinner entry, -1: none yet */
    uint32_t total_pins; /* sum of pins[] */
    uint32_t cancel;     /* set by frm_cancel: waits return ECANCELED */
    uint32_t slow_pid;   /* the subscriber that made the last claim time out */
} frm_store;

/* One live pinner entry, as frm_pinners reports it. */
typedef struct frm_pin_info {
    uint32_t pid;
    uint32_t pins;
    uint32_t slots[4];
} frm_pin_info;

/* Where a call puts the store that replaced this one under its name:
 * caller-provided, unattached storage. After the call, moved == 1 says that
 * `store`/`seg` now hold the live successor (the result is there). */
typedef struct frm_follow {
    frm_store *store;
    shmp_seg *seg;
    int moved;
} frm_follow;

/* A claimed slot: the mutex is held until commit or abandon. */
typedef struct frm_claim_t {
    frm_store *store; /* the store claimed in (the caller's, or follow->store) */
    int slot;
    unsigned char *pixels;
    unsigned char *meta;
} frm_claim_t;

/* ---- layout ---- */

/* EINVAL for options out of bounds, EFBIG for a capacity no store can hold. */
int frm_check_options(const frm_options *o);
/* Data bytes of a store with these options (checked first). */
int frm_data_size(const frm_options *o, uint64_t *size);
uint32_t frm_itemsize(uint32_t dtype); /* 0 for no type */

/* Builds an unnamed segment holding an empty store (name it with shmp_link
 * or shmp_swap). Only the control block is reserved. */
int frm_build(frm_store *st, shmp_seg *seg, const frm_options *o, const char *key,
              size_t key_len, int persistent, uint64_t last_generation);
/* Validates an attached segment's store header against its real size. */
int frm_open(frm_store *st, shmp_seg *seg);
void frm_close(frm_store *st);
/* Attaches `name` (following replacements) or, when create != 0 and there
 * is none, builds and names a new store; *created says which. */
int frm_attach(frm_store *st, shmp_seg *seg, const char *name, int writable, int create,
               const frm_options *o, const char *key, size_t key_len, int persistent,
               int *created);
/* Detaches the store's segment and closes the handle. */
int frm_detach(frm_store *st);

int frm_superseded(const frm_store *st);
uint64_t frm_generation(const frm_store *st);
/* The options this store was built with. */
void frm_get_options(const frm_store *st, frm_options *o);

/* ---- writing ---- */

/* Deadlines are CLOCK_MONOTONIC nanoseconds (frm_now_ns), -1 for none.
 * Blocking calls return EINTR after at most FRM_SLICE_NS without finishing,
 * having undone what they did: check for signals and call again with the
 * same deadline. */
#define FRM_SLICE_NS 100000000LL

/* Takes the mutex and an exclusive free slot for a frame of `nbytes` pixels
 * and `meta_len` metadata bytes; grows the store first when it does not
 * fit (shrinks it after FRM_SHRINK_AFTER small frames), follows a replaced
 * store. The slot's pages are reserved. When every slot up to max_slots is
 * kept or pinned it waits: FRM_EPINNED at the deadline, FRM_EOWNPINS at
 * once when the calling thread took every pin this process holds and no
 * other process pins a blocking slot (waiting cannot end). Pins of other
 * live threads of this process may go: it waits for them (looking every
 * 10 ms); those of ended threads count as the caller's. */
int frm_claim(frm_store *st, frm_follow *fw, uint64_t nbytes, uint32_t meta_len,
              int64_t deadline, frm_claim_t *out);
/* Publishes a claimed slot; *generation is its generation. Unlocks. */
int frm_commit(frm_claim_t *c, const frm_spec *spec, uint64_t *generation);
/* As frm_commit, and the slot stays pinned by this handle (frm_unpin it):
 * the writer's own array of the frame stays true. */
int frm_commit_pinned(frm_claim_t *c, const frm_spec *spec, uint64_t *generation);
/* Drops a claimed slot (nothing published). Unlocks. */
int frm_abandon(frm_claim_t *c);
/* claim + copy `src` in (first writes reserve and copy in one pass) +
 * commit, with no caller code in between. */
int frm_publish(frm_store *st, frm_follow *fw, const void *src, const frm_spec *spec,
                int64_t deadline, uint64_t *generation);
/* frm_publish of a small frame (at most FRM_NOW_MAX_BYTES) without waiting,
 * moving to a successor or rebuilding, for a caller that holds an
 * interpreter lock it would rather not release for so little: EWOULDBLOCK
 * when any of that would be needed (the mutex busy, a slow lossless
 * subscriber, every slot pinned, the store replaced, the frame not fitting
 * or the store due to shrink); the caller then calls frm_publish. */
#define FRM_NOW_MAX_BYTES ((uint64_t)64 << 10)
int frm_publish_now(frm_store *st, const void *src, const frm_spec *spec, uint64_t *generation);

/* ---- reading ---- */

/* Facts of the latest complete frame without pinning it. */
int frm_latest(frm_store *st, frm_follow *fw, frm_frame *f);
/* Pins the latest complete frame's slot (in follow->store when moved). */
int frm_pin(frm_store *st, frm_follow *fw, frm_frame *f);
int frm_unpin(frm_store *st, int slot); /* a pin the calling thread took */
/* Drops a pin that thread `taker` (its frm_thread()) took. */
int frm_unpin_taken(frm_store *st, int slot, uintptr_t taker);
/* The calling thread, as pins are told apart (see frm_claim). */
uintptr_t frm_thread(void);
/* Validates slot `slot`'s descriptor into *f (the caller pins it). */
int frm_decode(frm_store *st, int slot, frm_frame *f);

/* Blocks until a generation newer than `after` is published: *generation.
 * Spins for up to spin_ns before sleeping in the kernel. ETIMEDOUT at the
 * deadline, ECANCELED once frm_cancel was called on this handle. */
int frm_wait(frm_store *st, frm_follow *fw, uint64_t after, int64_t deadline, int64_t spin_ns,
             uint64_t *generation);

/* Live pinner entries (pins > 0) into out[0 .. *n), at most max. */
int frm_pinners(frm_store *st, frm_pin_info *out, int max, int *n);
/* Wakes every frm_wait on this handle with ECANCELED, now and later. */
int frm_cancel(frm_store *st);
/* Rebuilds the store under its name with options `o` (capacity: the
 * lower bound), carrying the kept frames; follows into fw. */
int frm_rebuild(frm_store *st, frm_follow *fw, const frm_options *o, int64_t deadline);
/* Marks the segment persistent: it outlives its last process. */
int frm_set_persistent(frm_store *st);
/* Slots of the table in use so far (history + spares taken). */
uint32_t frm_active_slots(frm_store *st);
/* The calling process's id (cached per fork). */
uint32_t frm_pid(void);

/* Subscriber registry entry k, validated into *out; ENOENT when free. */
int frm_subscriber(frm_store *st, uint32_t k, frm_sub *out, int *alive);

/* ---- streams ---- */

/* Pins the kept frame of the lowest generation >= want into *f (an older
 * wanted one the ring no longer holds is skipped: f->generation says how
 * far). EAGAIN: none that new yet; FRM_EEND: the stream ended before it. */
int frm_pin_from(frm_store *st, frm_follow *fw, uint64_t want, frm_frame *f);
/* Blocks (futex) until generation `want` is published or the stream ends
 * before it. ETIMEDOUT at the deadline, EINTR per slice, ECANCELED. */
int frm_wait_from(frm_store *st, frm_follow *fw, uint64_t want, int64_t deadline);
/* Ends the stream at the latest generation: subscriptions drain what is
 * kept, then see FRM_EEND until the next publish. Wakes waiters. */
int frm_end_stream(frm_store *st, frm_follow *fw, int64_t deadline);

/* Registers this handle as a lossless subscriber (segment mutex held for
 * the moment, so no publish drops its position meanwhile): entry *k, live
 * while this handle holds its kernel lock, positioned at *from (moved into
 * what the history holds). ENOSPC: FRM_MAX_SUBS are registered. */
int frm_subscribe(frm_store *st, frm_follow *fw, uint64_t *from, int64_t deadline, int *k);
/* As frm_subscribe, for the subscription `token` (an entry's token) that
 * was registered in a store this one replaced: it adopts the entry the
 * rebuild carried here, position and all, or registers anew. */
int frm_resubscribe(frm_store *st, frm_follow *fw, uint64_t *from, uint64_t token,
                    int64_t deadline, int *k);
/* Lists a lossy subscription at `from` (for status only: no writer waits
 * for it): entry *k, token *token. It waits for the segment's mutex only
 * until the deadline. ENOSPC: every entry is taken (then it goes unlisted). */
int frm_subscribe_lossy(frm_store *st, frm_follow *fw, uint64_t from, int64_t deadline, int *k,
                        uint64_t *token);
/* A lossy entry's position, while it is still the subscription's own. */
int frm_sub_note(frm_store *st, int k, uint64_t token, uint64_t next);
/* Gives up lossy entry k (unless a lossless subscriber took it over). */
int frm_sub_leave(frm_store *st, int k, uint64_t token);
/* Entry k has taken every frame before `next`: a waiting writer goes on. */
int frm_sub_advance(frm_store *st, int k, uint64_t next);
/* Frees entry k and its lock, and the entries rebuilds carried it into
 * since; wakes a waiting writer. */
int frm_unsubscribe(frm_store *st, int k);
/* Frees entry k and its lock in a store the subscription has moved out of
 * (it adopted or took an entry in the live store first): what rebuilds
 * carried of it stays its own. */
int frm_sub_moved(frm_store *st, int k);

int64_t frm_now_ns(void);
uint64_t frm_wall_ns(void);

/* The segment header's flags, read without the mutex. */
static inline uint32_t shmp_load_flags(uint32_t *f) {
#if defined(_MSC_VER) && !defined(__clang__)
    uint32_t v = *(volatile uint32_t *)f;
    MemoryBarrier();
    return v;
#else
    return __atomic_load_n(f, __ATOMIC_ACQUIRE);
#endif
}

#endif
