from libc.stdint cimport int64_t, uint32_t, uint64_t


cdef extern from "shm_platform.h" nogil:
    enum:
        SHMP_HEADER_SIZE
        SHMP_KEY_MAX
        SHMP_NAME_MAX
        SHMP_BOUND_NONE
        SHMP_EINCOMPAT
        SHMP_FLAG_PERSISTENT
        SHMP_FLAG_SUPERSEDED

    ctypedef struct shmp_header:
        uint64_t data_size
        uint32_t flags
        uint32_t creator_pid
        uint32_t lock_owner_pid
        uint32_t key_len
        char key[256]

    ctypedef struct shmp_seg:
        unsigned char *base
        size_t map_size
        int writable
        char name[65]
        int replaced

    ctypedef struct shmp_probe_info:
        int ours
        int stale
        int reclaimed
        int persistent
        uint64_t dev
        uint64_t ino
        uint64_t data_size
        char key[256]

    ctypedef struct shmp_admission:
        uint64_t asked
        uint64_t available
        int bound
        char what[192]

    const uint64_t SHMP_ADMIT_STEP

    const char *shmp_dir()
    int shmp_name_check(const char *name)
    void shmp_last_admission(shmp_admission *out)
    int shmp_build(shmp_seg *s, uint64_t data_size, uint64_t reserve, int persistent,
                   const char *key, size_t key_len)
    int shmp_link(shmp_seg *s, const char *name)
    int shmp_swap(shmp_seg *s, shmp_seg *old)
    int shmp_discard(shmp_seg *s)
    int shmp_attach(shmp_seg *s, const char *name, int writable)
    int shmp_detach(shmp_seg *s)
    int shmp_leave(shmp_seg *s)
    int shmp_close(shmp_seg *s)
    int shmp_remove(const char *name)
    int shmp_probe(const char *name, int reclaim, shmp_probe_info *info)
    int shmp_attachments(const shmp_probe_info *infos, size_t n, int *counts)
    shmp_header *shmp_hdr(const shmp_seg *s)
    unsigned char *shmp_data(const shmp_seg *s)
    int shmp_lock_try(shmp_seg *s, int *owner_died)
    int shmp_lock_wait(shmp_seg *s, int64_t timeout_ns, int *owner_died)
    int shmp_unlock(shmp_seg *s)
    int shmp_wait(shmp_seg *s, uint32_t *word, uint32_t expected, int64_t timeout_ns)
    int shmp_wake(shmp_seg *s, uint32_t *word)
    int shmp_range_lock(shmp_seg *s, uint64_t index, int exclusive)
    int shmp_range_unlock(shmp_seg *s, uint64_t index)
    int shmp_range_test(shmp_seg *s, uint64_t index, int *locked)
    int shmp_reserve(shmp_seg *s, uint64_t offset, uint64_t length, int nthreads)
    int shmp_fill(shmp_seg *s, uint64_t offset, const void *src, uint64_t length, int nthreads)
    void shmp_copy(void *dst, const void *src, size_t length, int nthreads)
    void shmp_nap()
    uint32_t shmp_load_flags(uint32_t *f)
