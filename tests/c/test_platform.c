/* Unit tests of the POSIX platform layer (shm_platform.h), in C, so that they
 * can run under AddressSanitizer + UndefinedBehaviorSanitizer and under
 * ThreadSanitizer. Processes are real (fork), deaths are real (_exit or
 * SIGKILL while holding things).
 *
 * Usage: test_platform [substring]   runs the tests whose name contains it.
 * Under ThreadSanitizer run "threads" only: it cannot see other processes.
 * Exit status 0 when every selected test passed.
 */
#define _GNU_SOURCE
#define CHECK_NAME_PREFIX "/shmi_ctest_"
#include "check.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN 0
#endif

/* ---- helpers ---- */

static int64_t ms(int n) { return (int64_t)n * 1000000; }

/* A pipe-based handshake between parent and forked child. */
typedef struct {
    int fds[2];
} latch;

static void latch_init(latch *l) {
    if (pipe(l->fds) != 0) abort();
}
static void latch_open(latch *l) {
    char c = 1;
    if (write(l->fds[1], &c, 1) != 1) abort();
}
static int latch_wait(latch *l) {
    char c;
    return read(l->fds[0], &c, 1) == 1 ? 0 : -1;
}
static void latch_close(latch *l) {
    close(l->fds[0]);
    close(l->fds[1]);
}

/* ---- lifetime ---- */

static void test_build_link_attach_detach(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    shmp_seg a, b;
    CHECK_RC(make_segment(&a, name, 10000), 0);
    CHECK(name_exists(name));
    shmp_header *h = shmp_hdr(&a);
    CHECK(h->magic == SHMP_MAGIC && h->version == SHMP_VERSION);
    CHECK(h->data_size == 10000 && h->total_size == SHMP_HEADER_SIZE + 10000);
    CHECK(h->state == SHMP_STATE_READY);
    memcpy(shmp_data(&a), "hello", 5);
    CHECK_RC(shmp_attach(&b, name, 1), 0);
    CHECK(memcmp(shmp_data(&b), "hello", 5) == 0);
    shmp_data(&b)[9999] = 42;
    CHECK(shmp_data(&a)[9999] == 42);
    CHECK_RC(shmp_detach(&a), 0);
    CHECK(name_exists(name)); /* b still holds it */
    CHECK_RC(shmp_detach(&b), 0);
    CHECK(!name_exists(name));
}

static void test_link_refuses_live_name(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    shmp_seg a, b;
    CHECK_RC(make_segment(&a, name, 4096), 0);
    CHECK_RC(shmp_build(&b, 4096, 4096, 0, "x", 1), 0);
    CHECK_RC(shmp_link(&b, name), EEXIST);
    CHECK_RC(shmp_discard(&b), 0);
    CHECK_RC(shmp_detach(&a), 0);
    CHECK(!name_exists(name));
}

static void test_stale_segment_is_reclaimed(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    pid_t pid = fork();
    if (pid == 0) {
        shmp_seg s;
        _exit(make_segment(&s, name, 4096) == 0 ? 0 : 1); /* dies attached */
    }
    CHECK(reap(pid) == 0);
    CHECK(name_exists(name));
    shmp_seg s;
    CHECK_RC(shmp_attach(&s, name, 1), ENOENT); /* reclaimed, not joined */
    CHECK(!name_exists(name));
    pid = fork();
    if (pid == 0) {
        shmp_seg t;
        _exit(make_segment(&t, name, 4096) == 0 ? 0 : 1);
    }
    CHECK(reap(pid) == 0);
    CHECK_RC(make_segment(&s, name, 8192), 0); /* create over a stale one */
    CHECK(shmp_hdr(&s)->data_size == 8192);
    CHECK_RC(shmp_detach(&s), 0);
    CHECK(!name_exists(name));
}

static void test_persistent_survives_and_remove(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    shmp_seg s, t;
    CHECK_RC(shmp_build(&s, 4096, 4096, 1, "p", 1), 0);
    CHECK_RC(shmp_link(&s, name), 0);
    CHECK_RC(shmp_detach(&s), 0);
    CHECK(name_exists(name));
    shmp_probe_info info;
    CHECK_RC(shmp_probe(name, 1, &info), 0);
    CHECK(info.ours && info.persistent && info.stale && !info.reclaimed);
    CHECK_RC(shmp_attach(&t, name, 0), 0);
    CHECK_RC(shmp_remove(name), 0);
    CHECK(!name_exists(name));
    CHECK(shmp_hdr(&t)->data_size == 4096); /* mapping outlives the name */
    CHECK_RC(shmp_detach(&t), 0);
    CHECK_RC(shmp_remove(name), ENOENT);
}

static void write_file(const char *name, const void *bytes, size_t len, off_t size) {
    char path[128];
    snprintf(path, sizeof path, "/dev/shm%s", name);
    int fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0600);
    if (fd < 0) abort();
    if (len && write(fd, bytes, len) != (ssize_t)len) abort();
    if (ftruncate(fd, size) != 0) abort();
    close(fd);
}

static void unlink_name(const char *name) {
    char path[128];
    snprintf(path, sizeof path, "/dev/shm%s", name);
    unlink(path);
}

static void test_probe_live_and_foreign(void) {
    char name[64], foreign[64];
    unique_name(name, sizeof name, "");
    unique_name(foreign, sizeof foreign, "");
    shmp_seg s;
    shmp_probe_info info;
    CHECK_RC(make_segment(&s, name, 4096), 0);
    CHECK_RC(shmp_probe(name, 1, &info), 0);
    CHECK(info.ours && !info.stale && !info.reclaimed && !info.persistent);
    CHECK(info.data_size == 4096 && strcmp(info.key, "key") == 0);
    write_file(foreign, "not a segment", 13, 13);
    CHECK_RC(shmp_probe(foreign, 1, &info), 0);
    CHECK(!info.ours && !info.reclaimed); /* never reclaims what is not ours */
    CHECK(name_exists(foreign));
    unlink_name(foreign);
    CHECK_RC(shmp_probe(foreign, 1, &info), ENOENT);
    CHECK_RC(shmp_detach(&s), 0);
}

static void test_forked_child_only_closes(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    shmp_seg s;
    CHECK_RC(make_segment(&s, name, 4096), 0);
    pid_t pid = fork();
    if (pid == 0) {
        shmp_close(&s); /* the inherited segment: never removes the parent's */
        _exit(0);
    }
    CHECK(reap(pid) == 0);
    CHECK(name_exists(name));
    shmp_seg t;
    CHECK_RC(shmp_attach(&t, name, 1), 0); /* still live: the parent holds it */
    CHECK_RC(shmp_detach(&t), 0);
    CHECK_RC(shmp_detach(&s), 0);
    CHECK(!name_exists(name));
}

static void test_attach_refuses_bad_headers(void) {
    char name[64];
    shmp_header good;
    memset(&good, 0, sizeof good);
    good.magic = SHMP_MAGIC;
    good.version = SHMP_VERSION;
    good.header_size = SHMP_HEADER_SIZE;
    good.data_size = 4096;
    good.total_size = SHMP_HEADER_SIZE + 4096;
    good.state = SHMP_STATE_READY;
    for (int variant = 0; variant < 8; variant++) {
        shmp_header h = good;
        off_t size = SHMP_HEADER_SIZE + 4096;
        switch (variant) {
        case 0: h.state = SHMP_STATE_BUILDING; break;
        case 1: h.version = SHMP_VERSION + 1; break;
        case 2: h.magic ^= 1; break;
        case 3: h.data_size = 1u << 30; h.total_size = SHMP_HEADER_SIZE + (1u << 30); break;
        case 4: h.total_size = 1; break;
        case 5: h.key_len = 100000; break;
        case 6: size = 100; break; /* truncated */
        case 7: h.data_size = UINT64_MAX; h.total_size = UINT64_MAX; break;
        }
        unique_name(name, sizeof name, "");
        write_file(name, &h, size < (off_t)sizeof h ? (size_t)size : sizeof h, size);
        shmp_seg s;
        int rc = shmp_attach(&s, name, 1);
        unlink_name(name);
        if (rc != SHMP_EINCOMPAT) {
            check_fail(__FILE__, __LINE__, "variant %d gave %d", variant, rc);
            return;
        }
    }
    unique_name(name, sizeof name, "");
    shmp_seg s;
    CHECK_RC(shmp_attach(&s, name, 1), ENOENT);
    CHECK_RC(shmp_attach(&s, "no-slash", 1), EINVAL);
    CHECK_RC(shmp_attach(&s, "/a/b", 1), EINVAL);
}

static void test_read_only_attach(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    shmp_seg a, r;
    CHECK_RC(make_segment(&a, name, 4096), 0);
    CHECK_RC(shmp_attach(&r, name, 0), 0);
    CHECK(!r.writable);
    CHECK_RC(shmp_reserve(&r, 0, 10, 1), EACCES);
    CHECK_RC(shmp_reserve(&a, 0, a.map_size + 1, 1), EINVAL);
    CHECK_RC(shmp_reserve(&a, UINT64_MAX, 2, 1), EINVAL);
    CHECK_RC(shmp_detach(&r), 0);
    CHECK_RC(shmp_detach(&a), 0);
}

static void test_swap_supersedes(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    shmp_seg old, big, r;
    CHECK_RC(make_segment(&old, name, 4096), 0);
    CHECK_RC(shmp_build(&big, 1 << 20, 0, 0, "ctest", 5), 0);
    CHECK_RC(shmp_swap(&big, &old), 0);
    CHECK(shmp_hdr(&old)->flags & SHMP_FLAG_SUPERSEDED);
    CHECK_RC(shmp_attach(&r, name, 1), 0);
    CHECK(shmp_hdr(&r)->data_size == 1 << 20);
    CHECK_RC(shmp_detach(&old), 0);
    CHECK(name_exists(name));
    CHECK_RC(shmp_detach(&r), 0);
    CHECK_RC(shmp_detach(&big), 0);
    CHECK(!name_exists(name));
}

/* A file in the segment directory, empty, as a build's temporary name. */
static void touch_segment_file(const char *name) {
    char path[320];
    snprintf(path, sizeof path, "%s%s", shmp_dir(), name);
    int fd = open(path, O_CREAT | O_EXCL | O_RDWR, 0600);
    CHECK(fd >= 0);
    if (fd >= 0) close(fd);
}

static void remove_segment_file(const char *name) {
    char path[320];
    snprintf(path, sizeof path, "%s%s", shmp_dir(), name);
    unlink(path);
}

/* A grower killed between giving its new segment a name and renaming that
 * over the key leaves the name and the whole segment behind, as does a
 * process that died building under a temporary name: swept. Names a live
 * builder holds or may still be building under are not. */
static void test_sweep_removes_what_dead_builders_left(void) {
    char grow[64], mine[64], tmp_dead[64], tmp_live[64];
    pid_t pid = fork();
    if (pid == 0) {
        shmp_seg s;
        char n[64];
        snprintf(n, sizeof n, "/.shmimage-%ld-grow", (long)getpid());
        _exit(shmp_build(&s, 4096, 0, 0, "key", 3) == 0 && shmp_link(&s, n) == 0 ? 0 : 1);
    }
    CHECK(reap(pid) == 0);
    snprintf(grow, sizeof grow, "/.shmimage-%ld-grow", (long)pid);
    snprintf(tmp_dead, sizeof tmp_dead, "/.shmimage-%ld-0", (long)pid);
    snprintf(mine, sizeof mine, "/.shmimage-%ld-grow", (long)getpid());
    snprintf(tmp_live, sizeof tmp_live, "/.shmimage-%ld-7", (long)getpid());
    CHECK(name_exists(grow));
    shmp_seg held;
    CHECK_RC(make_segment(&held, mine, 4096), 0); /* a live grower's, flocked */
    touch_segment_file(tmp_dead);
    touch_segment_file(tmp_live); /* unlocked, but its process lives */
    shmp_sweep_builds();
    CHECK(!name_exists(grow) && !name_exists(tmp_dead));
    CHECK(name_exists(mine) && name_exists(tmp_live));
    CHECK_RC(shmp_detach(&held), 0);
    CHECK(!name_exists(mine));
    remove_segment_file(tmp_live);
}

/* ---- the robust mutex ---- */

static void test_lock_unlock_and_deadlock(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    shmp_seg s;
    int died = -1;
    CHECK_RC(make_segment(&s, name, 4096), 0);
    CHECK_RC(shmp_lock_try(&s, &died), 0);
    CHECK(died == 0);
    CHECK(shmp_hdr(&s)->lock_owner_pid == (uint32_t)getpid());
    int again = shmp_lock_try(&s, &died); /* glibc: EBUSY, or EDEADLK when robust */
    CHECK(again == EBUSY || again == EDEADLK);
    CHECK_RC(shmp_lock_wait(&s, ms(10), &died), EDEADLK);
    CHECK_RC(shmp_unlock(&s), 0);
    CHECK(shmp_hdr(&s)->lock_owner_pid == 0);
#if !UNDER_TSAN /* a deliberate misuse, which ThreadSanitizer reports as such */
    CHECK_RC(shmp_unlock(&s), EPERM);
#endif
    CHECK_RC(shmp_detach(&s), 0);
}

/* The child takes the lock and dies holding it, by _exit or SIGKILL. */
static void owner_died_case(int by_signal) {
    char name[64];
    unique_name(name, sizeof name, "");
    shmp_seg s;
    int died = -1;
    CHECK_RC(make_segment(&s, name, 4096), 0);
    latch ready, stop;
    latch_init(&ready);
    latch_init(&stop);
    pid_t pid = fork();
    if (pid == 0) {
        shmp_seg c;
        int d;
        close(stop.fds[1]);
        if (shmp_attach(&c, name, 1) || shmp_lock_wait(&c, -1, &d)) _exit(1);
        latch_open(&ready);
        latch_wait(&stop); /* EOF when the parent closes its end */
        _exit(0);
    }
    CHECK(latch_wait(&ready) == 0);
    CHECK_RC(shmp_lock_try(&s, &died), EBUSY);
    if (by_signal) kill(pid, SIGKILL);
    latch_close(&stop);
    CHECK(reap(pid) == (by_signal ? 128 + SIGKILL : 0));
    latch_close(&ready);
    CHECK_RC(shmp_lock_wait(&s, ms(1000), &died), 0);
    CHECK(died == 1);
    CHECK_RC(shmp_unlock(&s), 0);
    CHECK_RC(shmp_lock_try(&s, &died), 0);
    CHECK(died == 0); /* consistent again, not ENOTRECOVERABLE */
    CHECK_RC(shmp_unlock(&s), 0);
    CHECK_RC(shmp_detach(&s), 0);
    CHECK(!name_exists(name));
}

static void test_owner_died_exit(void) { owner_died_case(0); }
static void test_owner_died_sigkill(void) { owner_died_case(1); }

static void test_waiter_wakes_when_holder_dies(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    shmp_seg s;
    int died = -1;
    CHECK_RC(make_segment(&s, name, 4096), 0);
    latch held;
    latch_init(&held);
    pid_t holder = fork();
    if (holder == 0) {
        shmp_seg c;
        int d;
        if (shmp_attach(&c, name, 1) || shmp_lock_wait(&c, -1, &d)) _exit(1);
        latch_open(&held);
        pause();
        _exit(2);
    }
    CHECK(latch_wait(&held) == 0);
    latch_close(&held);
    pid_t waiter = fork();
    if (waiter == 0) {
        shmp_seg c;
        int d = 0;
        if (shmp_attach(&c, name, 1)) _exit(1);
        int rc = shmp_lock_wait(&c, ms(5000), &d); /* blocks until the holder dies */
        if (rc || !d) _exit(3);
        _exit(shmp_unlock(&c) ? 4 : 0);
    }
    kill(holder, SIGKILL);
    CHECK(reap(holder) == 128 + SIGKILL);
    CHECK(reap(waiter) == 0);
    CHECK_RC(shmp_lock_wait(&s, ms(1000), &died), 0);
    CHECK(died == 0);
    CHECK_RC(shmp_unlock(&s), 0);
    CHECK_RC(shmp_detach(&s), 0);
}

static void test_lock_timeout(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    shmp_seg s;
    int died;
    CHECK_RC(make_segment(&s, name, 4096), 0);
    latch ready, stop;
    latch_init(&ready);
    latch_init(&stop);
    pid_t pid = fork();
    if (pid == 0) {
        shmp_seg c;
        int d;
        if (shmp_attach(&c, name, 1) || shmp_lock_wait(&c, -1, &d)) _exit(1);
        latch_open(&ready);
        latch_wait(&stop);
        _exit(shmp_unlock(&c) || shmp_detach(&c) ? 2 : 0);
    }
    CHECK(latch_wait(&ready) == 0);
    CHECK_RC(shmp_lock_wait(&s, ms(30), &died), ETIMEDOUT);
    CHECK_RC(shmp_lock_wait(&s, 0, &died), ETIMEDOUT);
    latch_open(&stop);
    CHECK(reap(pid) == 0);
    latch_close(&ready);
    latch_close(&stop);
    CHECK_RC(shmp_lock_wait(&s, ms(1000), &died), 0);
    CHECK(died == 0);
    CHECK_RC(shmp_unlock(&s), 0);
    CHECK_RC(shmp_detach(&s), 0);
}

/* Threads of one process contend for the process-shared mutex. */
typedef struct {
    shmp_seg *seg;
    int rounds;
    int errors;
} counter_job;

static void *count_under_lock(void *arg) {
    counter_job *j = (counter_job *)arg;
    uint64_t *counter = (uint64_t *)shmp_data(j->seg);
    for (int i = 0; i < j->rounds; i++) {
        int d;
        if (shmp_lock_wait(j->seg, -1, &d)) {
            j->errors++;
            continue;
        }
        *counter += 1;
        if (shmp_unlock(j->seg)) j->errors++;
    }
    return NULL;
}

static void test_threads_count_under_lock(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    shmp_seg s;
    CHECK_RC(make_segment(&s, name, 4096), 0);
    enum { NT = 4, ROUNDS = 2000 };
    pthread_t t[NT];
    counter_job jobs[NT];
    for (int i = 0; i < NT; i++) {
        jobs[i] = (counter_job){&s, ROUNDS, 0};
        CHECK(pthread_create(&t[i], NULL, count_under_lock, &jobs[i]) == 0);
    }
    int errors = 0;
    for (int i = 0; i < NT; i++) {
        pthread_join(t[i], NULL);
        errors += jobs[i].errors;
    }
    CHECK(errors == 0);
    CHECK(*(uint64_t *)shmp_data(&s) == NT * ROUNDS);
    CHECK_RC(shmp_detach(&s), 0);
}

static void test_processes_count_under_lock(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    shmp_seg s;
    CHECK_RC(make_segment(&s, name, 4096), 0);
    enum { NP = 3, ROUNDS = 3000 };
    pid_t pids[NP];
    for (int i = 0; i < NP; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            shmp_seg c;
            if (shmp_attach(&c, name, 1)) _exit(1);
            counter_job j = {&c, ROUNDS, 0};
            count_under_lock(&j);
            _exit(j.errors || shmp_detach(&c) ? 2 : 0);
        }
    }
    for (int i = 0; i < NP; i++) CHECK(reap(pids[i]) == 0);
    CHECK(*(uint64_t *)shmp_data(&s) == NP * ROUNDS);
    CHECK_RC(shmp_detach(&s), 0);
    CHECK(!name_exists(name));
}

/* ---- wait and wake ---- */

static void test_wait_timeout_and_value_mismatch(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    shmp_seg s;
    CHECK_RC(make_segment(&s, name, 4096), 0);
    uint32_t *word = (uint32_t *)shmp_data(&s);
    *word = 5;
    CHECK_RC(shmp_wait(&s, word, 5, ms(20)), ETIMEDOUT);
    CHECK_RC(shmp_wait(&s, word, 4, ms(20)), 0); /* not equal: returns at once */
    CHECK_RC(shmp_wake(&s, word), 0);
    CHECK_RC(shmp_detach(&s), 0);
}

static void test_wake_across_processes(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    shmp_seg s;
    CHECK_RC(make_segment(&s, name, 4096), 0);
    uint32_t *word = (uint32_t *)shmp_data(&s);
    latch ready;
    latch_init(&ready);
    pid_t pid = fork();
    if (pid == 0) {
        shmp_seg c;
        if (shmp_attach(&c, name, 1)) _exit(1);
        uint32_t *w = (uint32_t *)shmp_data(&c);
        latch_open(&ready);
        for (int i = 0; i < 2000 && __atomic_load_n(w, __ATOMIC_ACQUIRE) == 0; i++) {
            int rc = shmp_wait(&c, w, 0, ms(10000));
            if (rc) _exit(3);
        }
        _exit(__atomic_load_n(w, __ATOMIC_ACQUIRE) == 7 && !shmp_detach(&c) ? 0 : 4);
    }
    CHECK(latch_wait(&ready) == 0);
    latch_close(&ready);
    __atomic_store_n(word, 7, __ATOMIC_RELEASE);
    CHECK_RC(shmp_wake(&s, word), 0);
    CHECK(reap(pid) == 0);
    CHECK_RC(shmp_detach(&s), 0);
}

typedef struct {
    shmp_seg *seg;
    int rc;
} waiter_job;

static void *wait_for_word(void *arg) {
    waiter_job *j = (waiter_job *)arg;
    uint32_t *w = (uint32_t *)shmp_data(j->seg);
    j->rc = 0;
    while (!j->rc && __atomic_load_n(w, __ATOMIC_ACQUIRE) == 0)
        j->rc = shmp_wait(j->seg, w, 0, ms(10000));
    return NULL;
}

static void test_threads_wait_wake(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    shmp_seg s;
    CHECK_RC(make_segment(&s, name, 4096), 0);
    enum { NT = 3 };
    pthread_t t[NT];
    waiter_job jobs[NT];
    for (int i = 0; i < NT; i++) {
        jobs[i] = (waiter_job){&s, -1};
        CHECK(pthread_create(&t[i], NULL, wait_for_word, &jobs[i]) == 0);
    }
    struct timespec nap = {0, 20000000};
    nanosleep(&nap, NULL); /* not required for correctness: the loop rechecks */
    __atomic_store_n((uint32_t *)shmp_data(&s), 1, __ATOMIC_RELEASE);
    CHECK_RC(shmp_wake(&s, (uint32_t *)shmp_data(&s)), 0);
    for (int i = 0; i < NT; i++) {
        pthread_join(t[i], NULL);
        CHECK(jobs[i].rc == 0);
    }
    CHECK_RC(shmp_detach(&s), 0);
}

/* ---- pins ---- */

static void test_pins_between_handles(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    shmp_seg w, r;
    int locked = -1;
    CHECK_RC(make_segment(&w, name, 4096), 0);
    CHECK_RC(shmp_attach(&r, name, 0), 0);
    CHECK_RC(shmp_range_lock(&r, 2, 0), 0);
    CHECK_RC(shmp_range_test(&w, 2, &locked), 0);
    CHECK(locked == 1);
    CHECK_RC(shmp_range_lock(&w, 2, 1), EAGAIN);
    CHECK_RC(shmp_range_lock(&w, 1, 1), 0); /* other slots are free */
    CHECK_RC(shmp_range_lock(&r, 1, 0), EAGAIN);
    CHECK_RC(shmp_range_unlock(&r, 2), 0);
    CHECK_RC(shmp_range_test(&w, 2, &locked), 0);
    CHECK(locked == 0);
    CHECK_RC(shmp_range_lock(&w, 2, 1), 0);
    CHECK_RC(shmp_range_unlock(&w, 2), 0);
    CHECK_RC(shmp_range_unlock(&w, 1), 0);
    CHECK_RC(shmp_detach(&r), 0);
    CHECK_RC(shmp_detach(&w), 0);
}

static void test_pin_dropped_when_reader_is_killed(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    shmp_seg w;
    int locked = -1;
    CHECK_RC(make_segment(&w, name, 4096), 0);
    latch ready;
    latch_init(&ready);
    pid_t pid = fork();
    if (pid == 0) {
        shmp_seg r;
        if (shmp_attach(&r, name, 0) || shmp_range_lock(&r, 0, 0)) _exit(1);
        latch_open(&ready);
        pause();
        _exit(2);
    }
    CHECK(latch_wait(&ready) == 0);
    latch_close(&ready);
    CHECK_RC(shmp_range_test(&w, 0, &locked), 0);
    CHECK(locked == 1);
    kill(pid, SIGKILL);
    CHECK(reap(pid) == 128 + SIGKILL);
    CHECK_RC(shmp_range_test(&w, 0, &locked), 0);
    CHECK(locked == 0);
    CHECK_RC(shmp_range_lock(&w, 0, 1), 0);
    CHECK_RC(shmp_detach(&w), 0);
    CHECK(!name_exists(name));
}

/* ---- copies and reservations ---- */

static void test_threads_parallel_copy_and_reserve(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    shmp_seg s;
    size_t len = (9u << 20) + 123; /* above the parallel threshold, not page-sized */
    CHECK_RC(shmp_build(&s, len, 0, 0, "c", 1), 0);
    CHECK_RC(shmp_link(&s, name), 0);
    CHECK_RC(shmp_reserve(&s, SHMP_HEADER_SIZE, len, 2), 0);
    unsigned char *src = malloc(len);
    CHECK(src != NULL);
    for (size_t i = 0; i < len; i++) src[i] = (unsigned char)(i * 31 + 7);
    shmp_copy(shmp_data(&s), src, len, 2);
    int same = memcmp(shmp_data(&s), src, len) == 0;
    free(src);
    CHECK(same);
    CHECK_RC(shmp_detach(&s), 0);
}

/* A fill above the parallel threshold: the caller's part written with
 * pwrite(), the other reserved and copied on a thread; every byte lands. */
static void test_threads_parallel_fill(void) {
    char name[64];
    unique_name(name, sizeof name, "");
    shmp_seg s;
    size_t len = (17u << 20) + 123; /* two parts, the last page partly filled */
    CHECK_RC(shmp_build(&s, len + 4096, 0, 0, "c", 1), 0);
    CHECK_RC(shmp_link(&s, name), 0);
    unsigned char *src = malloc(len);
    CHECK(src != NULL);
    for (size_t i = 0; i < len; i++) src[i] = (unsigned char)(i * 31 + 7);
    CHECK_RC(shmp_fill(&s, SHMP_HEADER_SIZE, src, len, 2), 0);
    int same = memcmp(shmp_data(&s), src, len) == 0;
    int zeros = 1;
    for (size_t i = len; i < len + 4096; i++) zeros &= shmp_data(&s)[i] == 0;
    free(src);
    CHECK(same);
    CHECK(zeros);
    CHECK_RC(shmp_detach(&s), 0);
}

static void test_build_rejects_bad_sizes(void) {
    shmp_seg s;
    CHECK_RC(shmp_build(&s, 0, 0, 0, "k", 1), EINVAL);
    CHECK_RC(shmp_build(&s, UINT64_MAX, 0, 0, "k", 1), ENOSPC);
    char key[SHMP_KEY_MAX + 2];
    memset(key, 'k', sizeof key);
    CHECK_RC(shmp_build(&s, 16, 16, 0, key, sizeof key), ENAMETOOLONG);
}

/* ---- runner ---- */

/* A test that a known core bug makes fail: CHECK_TEST_BUG(fn, "the bug"). */
static const check_test tests[] = {
    CHECK_TEST(test_build_link_attach_detach),
    CHECK_TEST(test_link_refuses_live_name),
    CHECK_TEST(test_stale_segment_is_reclaimed),
    CHECK_TEST(test_persistent_survives_and_remove),
    CHECK_TEST(test_probe_live_and_foreign),
    CHECK_TEST(test_forked_child_only_closes),
    CHECK_TEST(test_attach_refuses_bad_headers),
    CHECK_TEST(test_read_only_attach),
    CHECK_TEST(test_swap_supersedes),
    CHECK_TEST(test_sweep_removes_what_dead_builders_left),
    CHECK_TEST(test_lock_unlock_and_deadlock),
    CHECK_TEST(test_owner_died_exit),
    CHECK_TEST(test_owner_died_sigkill),
    CHECK_TEST(test_waiter_wakes_when_holder_dies),
    CHECK_TEST(test_lock_timeout),
    CHECK_TEST(test_threads_count_under_lock),
    CHECK_TEST(test_processes_count_under_lock),
    CHECK_TEST(test_wait_timeout_and_value_mismatch),
    CHECK_TEST(test_wake_across_processes),
    CHECK_TEST(test_threads_wait_wake),
    CHECK_TEST(test_pins_between_handles),
    CHECK_TEST(test_pin_dropped_when_reader_is_killed),
    CHECK_TEST(test_threads_parallel_copy_and_reserve),
    CHECK_TEST(test_threads_parallel_fill),
    CHECK_TEST(test_build_rejects_bad_sizes),
};

/* Removes what this process's tests left in /dev/shm; how many there were. */
static int sweep_leftovers(void) {
    char prefix[SHMP_NAME_MAX];
    check_name_stem(prefix, sizeof prefix);
    size_t n = strlen(prefix + 1); /* the names in the directory have no '/' */
    int found = 0;
    DIR *d = opendir("/dev/shm");
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix + 1, n) != 0) continue;
        char path[320];
        snprintf(path, sizeof path, "/dev/shm/%s", e->d_name);
        unlink(path);
        found++;
    }
    closedir(d);
    return found;
}

/* A test that leaves segments behind fails, and they are removed. */
static void sweep_after_test(void) {
    int left = sweep_leftovers();
    if (left) check_fail(__FILE__, __LINE__, "left %d segment(s) in /dev/shm", left);
}

int main(int argc, char **argv) {
    return check_main(argc, argv, tests, sizeof tests / sizeof tests[0], sweep_after_test);
}
