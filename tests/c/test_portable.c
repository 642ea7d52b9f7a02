/* Unit tests of the POSIX layer's portable paths (what macOS builds: no
 * /dev/shm, no robust mutex, no pthread_mutex_timedlock, no O_TMPFILE, no
 * open-file-description locks), run on Linux by building shm_posix.c with
 * -DSHMP_FORCE_PORTABLE (waits use futex as macOS uses __ulock_wait), or
 * with __linux__ undefined too (no futex at all: waits nap, as on the BSDs).
 * Deaths are real (a child _exits holding the lock).
 *
 * Usage: test_portable [substring]. Prints "N passed, N failed".
 */
#define _GNU_SOURCE
#define CHECK_NAME_PREFIX "/shmi_port_"
#include "check.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define DIR_PATH "/tmp/shmimage"

/* A 30-character name (the macOS shm_open limit) is a valid segment name. */
static void test_segment_in_portable_dir(void) {
    char name[SHMP_NAME_MAX];
    unique_name(name, sizeof name, "d");
    shmp_seg a, b;
    CHECK(strcmp(shmp_dir(), DIR_PATH) == 0); /* what ls and gc are told to list */
    CHECK_RC(make_segment(&a, name, 1000), 0);
    CHECK(name_exists(name));
    shmp_probe_info info;
    CHECK_RC(shmp_probe(name, 0, &info), 0);
    CHECK(info.ours && !info.stale && info.data_size == 1000);
    int count = 0;
    CHECK_RC(shmp_attachments(&info, 1, &count), 0);
#if defined(__linux__)
    CHECK(count == 1); /* from the kernel's lock table */
#else
    CHECK(count == -1); /* no lock table to read */
#endif
    struct stat st;
    CHECK(stat(DIR_PATH, &st) == 0 && (st.st_mode & 01777) == 01777);
    memcpy(shmp_data(&a), "hello", 6);
    CHECK_RC(shmp_attach(&b, name, 1), 0);
    CHECK(memcmp(shmp_data(&b), "hello", 6) == 0 && shmp_hdr(&b)->data_size == 1000);
    shmp_detach(&b);
    shmp_detach(&a);
    CHECK(!name_exists(name)); /* the last one out removed it */
    char longest[] = "/shmi_abcdefgh_0123456789abcde";
    CHECK(strlen(longest) == 30);
    CHECK_RC(make_segment(&a, longest, 10), 0);
    shmp_detach(&a);
}

static void test_lock_basics(void) {
    char name[SHMP_NAME_MAX];
    unique_name(name, sizeof name, "l");
    shmp_seg a, b;
    int died = 1;
    CHECK_RC(make_segment(&a, name, 64), 0);
    CHECK_RC(shmp_attach(&b, name, 1), 0);
    CHECK_RC(shmp_lock_try(&a, &died), 0);
    CHECK(!died && shmp_hdr(&a)->lock_owner_pid == (uint32_t)getpid());
    CHECK_RC(shmp_lock_try(&b, &died), EDEADLK); /* per thread, any handle */
    CHECK_RC(shmp_lock_wait(&b, 1000000, &died), EDEADLK);
    CHECK_RC(shmp_unlock(&a), 0);
    CHECK_RC(shmp_unlock(&a), EPERM);
    CHECK_RC(shmp_lock_wait(&b, -1, &died), 0);
    CHECK_RC(shmp_unlock(&b), 0);
    shmp_detach(&b);
    shmp_detach(&a);
}

static void *lock_from_thread(void *arg) {
    shmp_seg *s = (shmp_seg *)arg;
    int died = 0;
    intptr_t rc = shmp_lock_try(s, &died);
    if (rc == EBUSY) rc = shmp_lock_wait(s, 20000000, &died);
    if (rc == 0) shmp_unlock(s);
    return (void *)rc;
}

static void test_lock_other_thread(void) {
    char name[SHMP_NAME_MAX];
    unique_name(name, sizeof name, "t");
    shmp_seg a;
    int died = 0;
    void *res = NULL;
    pthread_t t;
    CHECK_RC(make_segment(&a, name, 64), 0);
    CHECK_RC(shmp_lock_try(&a, &died), 0);
    CHECK(pthread_create(&t, NULL, lock_from_thread, &a) == 0);
    pthread_join(t, &res);
    CHECK((intptr_t)res == ETIMEDOUT);
    CHECK_RC(shmp_unlock(&a), 0);
    CHECK(pthread_create(&t, NULL, lock_from_thread, &a) == 0);
    pthread_join(t, &res);
    CHECK((intptr_t)res == 0);
    shmp_detach(&a);
}

static void test_dead_holder(void) {
    char name[SHMP_NAME_MAX];
    unique_name(name, sizeof name, "x");
    shmp_seg a;
    int died = 0;
    CHECK_RC(make_segment(&a, name, 64), 0);
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        shmp_seg c;
        int d = 0;
        if (shmp_attach(&c, name, 1) || shmp_lock_try(&c, &d)) _exit(2);
        _exit(0); /* dies holding the lock */
    }
    CHECK(reap(child) == 0);
    CHECK(shmp_hdr(&a)->lock_owner_pid == (uint32_t)child);
    CHECK_RC(shmp_lock_wait(&a, 5000000000LL, &died), 0);
    CHECK(died);
    CHECK_RC(shmp_unlock(&a), 0);
    CHECK_RC(shmp_lock_try(&a, &died), 0);
    CHECK(!died);
    CHECK_RC(shmp_unlock(&a), 0);
    shmp_detach(&a);
}

static void test_live_holder_blocks(void) {
    char name[SHMP_NAME_MAX];
    unique_name(name, sizeof name, "h");
    shmp_seg a;
    int died = 0, go[2], done[2];
    char c = 0;
    CHECK_RC(make_segment(&a, name, 64), 0);
    CHECK(pipe(go) == 0 && pipe(done) == 0);
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        shmp_seg s;
        int d = 0;
        if (shmp_attach(&s, name, 1) || shmp_lock_try(&s, &d)) _exit(2);
        if (write(go[1], "l", 1) != 1 || read(done[0], &c, 1) != 1) _exit(3);
        _exit(shmp_unlock(&s) ? 4 : 0);
    }
    CHECK(read(go[0], &c, 1) == 1);
    CHECK_RC(shmp_lock_try(&a, &died), EBUSY);
    CHECK_RC(shmp_lock_wait(&a, 20000000, &died), ETIMEDOUT);
    CHECK(write(done[1], "u", 1) == 1);
    CHECK(reap(child) == 0);
    CHECK_RC(shmp_lock_wait(&a, 5000000000LL, &died), 0);
    CHECK(!died); /* released properly, not abandoned */
    CHECK_RC(shmp_unlock(&a), 0);
    close(go[0]), close(go[1]), close(done[0]), close(done[1]);
    shmp_detach(&a);
}

/* The holder dies while we wait: the next liveness check finds it. It is a
 * grandchild, reaped by its own parent, so it is really gone. */
static void test_holder_dies_while_waited_for(void) {
    char name[SHMP_NAME_MAX];
    unique_name(name, sizeof name, "w");
    shmp_seg a;
    int died = 0, go[2];
    char c = 0;
    CHECK_RC(make_segment(&a, name, 64), 0);
    CHECK(pipe(go) == 0);
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        pid_t holder = fork();
        if (holder == 0) {
            shmp_seg s;
            int d = 0;
            if (shmp_attach(&s, name, 1) || shmp_lock_try(&s, &d)) _exit(2);
            if (write(go[1], "l", 1) != 1) _exit(3);
            struct timespec t = {0, 50000000};
            nanosleep(&t, NULL);
            _exit(0); /* dies holding the lock */
        }
        int st = 0;
        _exit(holder > 0 && waitpid(holder, &st, 0) == holder && WIFEXITED(st) ? WEXITSTATUS(st)
                                                                               : 5);
    }
    CHECK(read(go[0], &c, 1) == 1);
    CHECK_RC(shmp_lock_wait(&a, 10000000000LL, &died), 0);
    CHECK(died);
    CHECK_RC(shmp_unlock(&a), 0);
    CHECK(reap(child) == 0);
    close(go[0]), close(go[1]);
    shmp_detach(&a);
}

#if defined(__linux__) || defined(__APPLE__)
/* A holder that died but is not reaped yet (a zombie) is dead too. */
static void test_zombie_holder(void) {
    char name[SHMP_NAME_MAX];
    unique_name(name, sizeof name, "z");
    shmp_seg a;
    int died = 0, go[2];
    char c = 0;
    CHECK_RC(make_segment(&a, name, 64), 0);
    CHECK(pipe(go) == 0);
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        shmp_seg s;
        int d = 0;
        if (shmp_attach(&s, name, 1) || shmp_lock_try(&s, &d)) _exit(2);
        if (write(go[1], "l", 1) != 1) _exit(3);
        _exit(0);
    }
    CHECK(read(go[0], &c, 1) == 1);
    CHECK_RC(shmp_lock_wait(&a, 10000000000LL, &died), 0);
    CHECK(died);
    CHECK_RC(shmp_unlock(&a), 0);
    CHECK(reap(child) == 0);
    close(go[0]), close(go[1]);
    shmp_detach(&a);
}

/* A dead holder's pid taken by another process: the lock records the
 * holder's start time too, so a live process under that pid that started
 * at another time does not keep the lock. Reuse is simulated by changing
 * the recorded start time of a live holder (a child that keeps running). */
static void test_reused_pid_does_not_keep_the_lock(void) {
    char name[SHMP_NAME_MAX];
    unique_name(name, sizeof name, "r");
    shmp_seg a;
    int died = 0, go[2], done[2];
    char c = 0;
    CHECK_RC(make_segment(&a, name, 64), 0);
    CHECK(pipe(go) == 0 && pipe(done) == 0);
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        shmp_seg s;
        int d = 0;
        close(done[1]);
        if (shmp_attach(&s, name, 1) || shmp_lock_try(&s, &d)) _exit(2);
        if (write(go[1], "l", 1) != 1) _exit(3);
        _exit(read(done[0], &c, 1) == 0 ? 0 : 4); /* alive, holding it, until we end */
    }
    close(done[0]);
    CHECK(read(go[0], &c, 1) == 1);
    shmp_header *h = shmp_hdr(&a);
    uint64_t start = __atomic_load_n(&h->lock_owner_start, __ATOMIC_SEQ_CST);
    CHECK(h->lock_owner_pid == (uint32_t)child && start != 0);
    /* The real holder, pid and start time: held. */
    CHECK_RC(shmp_lock_try(&a, &died), EBUSY);
    CHECK_RC(shmp_lock_wait(&a, 20000000, &died), ETIMEDOUT);
    /* An older segment's record, pid alone: still held, the pid is alive. */
    __atomic_store_n(&h->lock_owner_start, 0, __ATOMIC_SEQ_CST);
    CHECK_RC(shmp_lock_try(&a, &died), EBUSY);
    /* The pid now names a process that started at another time. */
    __atomic_store_n(&h->lock_owner_start, start + 1, __ATOMIC_SEQ_CST);
    CHECK_RC(shmp_lock_wait(&a, 5000000000LL, &died), 0);
    CHECK(died && h->lock_owner_pid == (uint32_t)getpid());
    uint64_t mine = __atomic_load_n(&h->lock_owner_start, __ATOMIC_SEQ_CST);
    CHECK(mine != 0 && mine != start + 1);
    CHECK_RC(shmp_unlock(&a), 0);
    CHECK(h->lock_owner_pid == 0 && h->lock_owner_start == 0);
    /* Our own pid, recorded by a process that had it before us: dead too,
     * not EDEADLK. */
    h->reserved0 = 0;
    __atomic_store_n(&h->lock_owner_start, mine + 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&h->lock_owner_pid, (uint32_t)getpid(), __ATOMIC_SEQ_CST);
    CHECK_RC(shmp_lock_try(&a, &died), 0);
    CHECK(died);
    CHECK_RC(shmp_lock_try(&a, &died), EDEADLK); /* and now it is really ours */
    CHECK_RC(shmp_unlock(&a), 0);
    close(done[1]);
    CHECK(reap(child) == 0);
    close(go[0]), close(go[1]);
    shmp_detach(&a);
}
#endif

#define INCREMENTS 20000

/* Children increment a counter under the lock, non-atomically, all at once. */
static void test_lock_excludes_across_processes(void) {
    char name[SHMP_NAME_MAX];
    unique_name(name, sizeof name, "e");
    shmp_seg a;
    int go[2];
    CHECK_RC(make_segment(&a, name, 64), 0);
    CHECK(pipe(go) == 0);
    pid_t kids[3];
    for (int k = 0; k < 3; k++) {
        kids[k] = fork();
        CHECK(kids[k] >= 0);
        if (kids[k] == 0) {
            shmp_seg s;
            int died = 0;
            char c;
            close(go[1]);
            if (shmp_attach(&s, name, 1) || read(go[0], &c, 1) != 0) _exit(2);
            volatile uint32_t *counter = (volatile uint32_t *)shmp_data(&s);
            for (int i = 0; i < INCREMENTS; i++) {
                if (shmp_lock_wait(&s, -1, &died)) _exit(3);
                uint32_t v = *counter;
                if (i % 16 == 0) sched_yield(); /* invite the others in */
                *counter = v + 1;
                if (shmp_unlock(&s)) _exit(4);
            }
            _exit(0);
        }
    }
    close(go[1]); /* EOF: everyone starts */
    for (int k = 0; k < 3; k++)
        CHECK(reap(kids[k]) == 0);
    close(go[0]);
    CHECK(*(volatile uint32_t *)shmp_data(&a) == 3 * INCREMENTS); /* no update lost */
    shmp_detach(&a);
}

/* wait/wake on a word of the segment, across processes. */
static void test_wait_wake(void) {
    char name[SHMP_NAME_MAX];
    unique_name(name, sizeof name, "k");
    shmp_seg a;
    int go[2];
    char c = 0;
    CHECK_RC(make_segment(&a, name, 64), 0);
    uint32_t *word = (uint32_t *)shmp_data(&a);
    CHECK_RC(shmp_wait(&a, word, 1, -1), 0); /* differs: returns at once */
    int rc = 0;
    while (rc == 0) rc = shmp_wait(&a, word, 0, 10000000);
    CHECK_RC(rc, ETIMEDOUT);
    CHECK(pipe(go) == 0);
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        shmp_seg s;
        if (shmp_attach(&s, name, 1)) _exit(2);
        uint32_t *w = (uint32_t *)shmp_data(&s);
        if (write(go[1], "r", 1) != 1) _exit(3);
        int r = 0;
        while (__atomic_load_n(w, __ATOMIC_ACQUIRE) == 0 && (r == 0 || r == ETIMEDOUT))
            r = shmp_wait(&s, w, 0, 30000000000LL);
        _exit(__atomic_load_n(w, __ATOMIC_ACQUIRE) == 1 ? 0 : 4);
    }
    CHECK(read(go[0], &c, 1) == 1);
    __atomic_store_n(word, 1, __ATOMIC_RELEASE);
    CHECK_RC(shmp_wake(&a, word), 0);
    CHECK(reap(child) == 0);
    close(go[0]), close(go[1]);
    shmp_detach(&a);
}

/* Record locks belong to the process: the layer gives each handle its own
 * range locks, so two handles of one process see and exclude each other's
 * as two processes do. A forked child holds none of them but sees them all,
 * and a handle that closes gives its up. */
static void test_range_locks_are_per_handle(void) {
    char name[SHMP_NAME_MAX];
    unique_name(name, sizeof name, "r");
    shmp_seg w, r, r2;
    int locked = 0;
    CHECK_RC(make_segment(&w, name, 64), 0);
    CHECK_RC(shmp_attach(&r, name, 1), 0);
    CHECK_RC(shmp_attach(&r2, name, 0), 0);
    CHECK_RC(shmp_range_lock(&r, 2, 0), 0);
    CHECK_RC(shmp_range_test(&w, 2, &locked), 0);
    CHECK(locked);
    CHECK_RC(shmp_range_test(&r, 2, &locked), 0);
    CHECK(!locked); /* its own lock is no conflict */
    CHECK_RC(shmp_range_lock(&w, 2, 1), EAGAIN);
    CHECK_RC(shmp_range_lock(&r2, 2, 0), 0); /* shared with shared */
    CHECK_RC(shmp_range_unlock(&r, 2), 0);
    CHECK_RC(shmp_range_test(&w, 2, &locked), 0);
    CHECK(locked); /* r2 still holds it */
    CHECK_RC(shmp_range_unlock(&r2, 2), 0);
    CHECK_RC(shmp_range_test(&w, 2, &locked), 0);
    CHECK(!locked);
    CHECK_RC(shmp_range_lock(&w, 2, 1), 0);
    CHECK_RC(shmp_range_lock(&r, 2, 0), EAGAIN);
    CHECK_RC(shmp_range_lock(&r2, 3, 0), 0);
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) { /* none of the parent's, each seen through the kernel */
        int a = 0, b = 0;
        if (shmp_range_test(&w, 2, &a) || shmp_range_test(&r2, 3, &b) || !a || !b) _exit(2);
        if (shmp_range_lock(&w, 2, 0) != EAGAIN || shmp_range_lock(&w, 3, 1) != EAGAIN) _exit(3);
        if (shmp_range_lock(&w, 4, 1) != 0) _exit(4); /* its own lock, in the kernel */
        if (shmp_range_unlock(&w, 4) || shmp_range_unlock(&r2, 3)) _exit(5);
        _exit(0);
    }
    CHECK(reap(child) == 0);
    CHECK_RC(shmp_range_lock(&r, 3, 1), EAGAIN); /* the child's unlock freed nothing here */
    shmp_detach(&w); /* closing a handle gives up its locks */
    CHECK_RC(shmp_range_test(&r, 2, &locked), 0);
    CHECK(!locked);
    CHECK_RC(shmp_range_lock(&r, 2, 1), 0);
    shmp_detach(&r2); /* read-only: its shared lock goes too */
    CHECK_RC(shmp_range_lock(&r, 3, 1), 0);
    CHECK_RC(shmp_range_unlock(&r, 3), 0);
    CHECK_RC(shmp_range_unlock(&r, 2), 0);
    shmp_detach(&r);
    CHECK(!name_exists(name));
}

static const check_test tests[] = {
    CHECK_TEST(test_segment_in_portable_dir),
    CHECK_TEST(test_lock_basics),
    CHECK_TEST(test_lock_other_thread),
    CHECK_TEST(test_dead_holder),
    CHECK_TEST(test_live_holder_blocks),
    CHECK_TEST(test_holder_dies_while_waited_for),
#if defined(__linux__) || defined(__APPLE__)
    CHECK_TEST(test_zombie_holder),
    CHECK_TEST(test_reused_pid_does_not_keep_the_lock),
#endif
    CHECK_TEST(test_lock_excludes_across_processes),
    CHECK_TEST(test_wait_wake),
    CHECK_TEST(test_range_locks_are_per_handle),
};

int main(int argc, char **argv) {
    return check_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL);
}
