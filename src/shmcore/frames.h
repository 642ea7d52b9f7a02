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
    uint32_t pad0;
    uint8_t pad[128 - 56];
    frm_slot slots[FRM_MAX_SLOTS];
} frm_ctrl;

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
    __atomic_fetch_add(&c->seq, 1u, __ATOMIC_ACQ_REL);
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

#endif
