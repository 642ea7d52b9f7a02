/* libFuzzer harness for segment header validation.
 *
 * Each input is the whole content of a segment file. It goes through the
 * platform layer's own header reader and validator (the file is included so
 * that its static functions are reachable), and then through shmp_attach on
 * a real /dev/shm name held alive by this process. Whatever the bytes, a
 * header that validates must describe a mapping that lies inside the file,
 * and an attach must either fail with an error code or give a mapping whose
 * every page can be read.
 *
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc/shmcore \
 *        tests/fuzz/fuzz_header.c -o fuzz_header -lpthread
 */
#include "../../src/shmcore/shm_posix.c"

#include <sys/mman.h>

static void check_validator(const uint8_t *data, size_t size) {
    int fd = memfd_create("fuzz-header", MFD_CLOEXEC);
    if (fd < 0) abort();
    if (size && write(fd, data, size) != (ssize_t)size) abort();
    shmp_header h;
    off_t file_size = 0;
    if (read_header(fd, &h, &file_size) == 0 && validate_header(&h, file_size) == 0) {
        if (h.total_size > (uint64_t)file_size || h.total_size < SHMP_HEADER_SIZE) abort();
        if (h.key_len > SHMP_KEY_MAX) abort();
        void *p = mmap(NULL, (size_t)h.total_size, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) abort();
        volatile const unsigned char *last = (const unsigned char *)p + h.total_size - 1;
        (void)*last; /* inside the file: no SIGBUS */
        munmap(p, (size_t)h.total_size);
    }
    close(fd);
}

static void touch_pages(const shmp_seg *s) {
    volatile unsigned char sum = 0;
    for (size_t off = 0; off < s->map_size; off += 4096) sum ^= s->base[off];
    sum ^= s->base[s->map_size - 1];
    (void)sum;
}

static void check_attach(const uint8_t *data, size_t size) {
    static char name[64];
    if (!name[0]) snprintf(name, sizeof name, "/shmi_fuzz_%ld", (long)getpid());
    char path[128];
    snprintf(path, sizeof path, "/dev/shm%s", name);
    unlink(path);
    int fd = open(path, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) return; /* no /dev/shm here: the validator check still ran */
    if (size && write(fd, data, size) != (ssize_t)size) abort();
    flock(fd, LOCK_SH); /* a live holder, so it is not reclaimed as stale */
    shmp_seg s;
    int rc = shmp_attach(&s, name, 0);
    if (rc == 0) {
        if (s.map_size < SHMP_HEADER_SIZE || s.map_size > size) abort();
        touch_pages(&s);
        shmp_detach(&s);
    }
    close(fd);
    unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    check_validator(data, size);
    check_attach(data, size);
    return 0;
}
