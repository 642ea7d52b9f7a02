from libc.stdint cimport int64_t, uint32_t, uint64_t, uintptr_t

from shm_platform cimport shmp_seg


cdef extern from "frames.h" nogil:
    enum:
        FRM_PAGE
        FRM_MIN_SPARES
        FRM_MAX_SPARES
        FRM_MAX_HISTORY
        FRM_MAX_TABLE
        FRM_MAX_SUBS
        FRM_META_MAX
        FRM_MAX_DIMS
        FRM_ENOFRAME
        FRM_ETORN
        FRM_EPINNED
        FRM_EOWNPINS
        FRM_EEND
        FRM_ESLOW
        FRM_MAX_PINNERS
        FRM_DTYPE_END

    uint64_t FRM_MAX_FRAME_BYTES
    int ESTALE

    ctypedef struct frm_store:
        shmp_seg *seg
        uint64_t capacity
        uint64_t stride
        uint64_t ctrl_size
        uint64_t min_capacity
        uint32_t meta_capacity
        uint32_t table_slots
        uint32_t history
        uint32_t slots
        uint32_t max_slots
        uint32_t slow_pid

    ctypedef struct frm_pin_info:
        uint32_t pid
        uint32_t pins
        uint32_t slots[4]

    ctypedef struct frm_sub:
        uint32_t state
        uint32_t pid
        uint64_t next_generation
        uint32_t flags
        uint64_t token

    ctypedef struct frm_options:
        uint64_t capacity
        uint32_t slots
        uint32_t max_slots
        uint32_t history
        uint32_t meta_capacity
        uint64_t min_capacity

    ctypedef struct frm_frame:
        int slot
        uint32_t ndim
        uint64_t shape[4]
        uint32_t dtype
        uint32_t itemsize
        uint64_t nbytes
        uint64_t generation
        uint64_t timestamp_ns
        uint32_t writer_pid
        uint32_t meta_len
        uint64_t offset
        uint64_t meta_offset

    ctypedef struct frm_spec:
        uint32_t ndim
        uint64_t shape[4]
        uint32_t dtype
        const void *meta
        uint32_t meta_len

    ctypedef struct frm_follow:
        frm_store *store
        shmp_seg *seg
        int moved

    ctypedef struct frm_claim_t:
        frm_store *store
        int slot
        unsigned char *pixels
        unsigned char *meta

    int frm_check_options(const frm_options *o)
    int frm_data_size(const frm_options *o, uint64_t *size)
    uint32_t frm_itemsize(uint32_t dtype)
    int frm_open(frm_store *st, shmp_seg *seg)
    void frm_close(frm_store *st)
    int frm_attach(frm_store *st, shmp_seg *seg, const char *name, int writable, int create,
                   const frm_options *o, const char *key, size_t key_len, int persistent,
                   int *created)
    int frm_superseded(const frm_store *st)
    uint64_t frm_generation(const frm_store *st)
    void frm_get_options(const frm_store *st, frm_options *o)
    int frm_claim(frm_store *st, frm_follow *fw, uint64_t nbytes, uint32_t meta_len,
                  int64_t deadline, frm_claim_t *out)
    int frm_commit(frm_claim_t *c, const frm_spec *spec, uint64_t *generation)
    int frm_commit_pinned(frm_claim_t *c, const frm_spec *spec, uint64_t *generation)
    int frm_abandon(frm_claim_t *c)
    int frm_publish(frm_store *st, frm_follow *fw, const void *src, const frm_spec *spec,
                    int64_t deadline, uint64_t *generation)
    int frm_publish_now(frm_store *st, const void *src, const frm_spec *spec,
                        uint64_t *generation)
    uint64_t FRM_NOW_MAX_BYTES
    int frm_latest(frm_store *st, frm_follow *fw, frm_frame *f)
    int frm_pin(frm_store *st, frm_follow *fw, frm_frame *f)
    int frm_unpin(frm_store *st, int slot)
    int frm_unpin_taken(frm_store *st, int slot, uintptr_t taker)
    uintptr_t frm_thread()
    int frm_wait(frm_store *st, frm_follow *fw, uint64_t after, int64_t deadline,
                 int64_t spin_ns, uint64_t *generation)
    int64_t frm_now_ns()
    int frm_pinners(frm_store *st, frm_pin_info *out, int max, int *n)
    int frm_cancel(frm_store *st)
    int frm_rebuild(frm_store *st, frm_follow *fw, const frm_options *o, int64_t deadline)
    int frm_set_persistent(frm_store *st)
    uint32_t frm_pid()
    uint32_t frm_active_slots(frm_store *st)
    int frm_subscriber(frm_store *st, uint32_t k, frm_sub *out, int *alive)
    int frm_pin_from(frm_store *st, frm_follow *fw, uint64_t want, frm_frame *f)
    int frm_wait_from(frm_store *st, frm_follow *fw, uint64_t want, int64_t deadline)
    int frm_end_stream(frm_store *st, frm_follow *fw, int64_t deadline)
    int frm_subscribe(frm_store *st, frm_follow *fw, uint64_t *start, int64_t deadline, int *k)
    int frm_resubscribe(frm_store *st, frm_follow *fw, uint64_t *start, uint64_t token,
                        int64_t deadline, int *k)
    int frm_subscribe_lossy(frm_store *st, frm_follow *fw, uint64_t start, int64_t deadline,
                            int *k, uint64_t *token)
    int frm_sub_note(frm_store *st, int k, uint64_t token, uint64_t next)
    int frm_sub_leave(frm_store *st, int k, uint64_t token)
    int frm_sub_advance(frm_store *st, int k, uint64_t next)
    int frm_unsubscribe(frm_store *st, int k)
    int frm_sub_moved(frm_store *st, int k)


cdef extern from "keywatch.h" nogil:
    ctypedef struct kw_watch:
        pass

    int kw_open(kw_watch *w, const char *name)
    int kw_wait(kw_watch *w, int64_t timeout_ns)
    int kw_cancel(kw_watch *w)
    void kw_close(kw_watch *w)
