/* Unit tests of memory admission (admission.c) and of the reservations that
 * use it (shm_posix.c): the margin arithmetic, /proc/meminfo and cgroup
 * files read from a fake root directory, and reservations refused up front
 * or midway, releasing what they took.
 *
 * Usage: test_admission [substring]   runs the tests whose name contains it.
 */
#define _GNU_SOURCE
#define CHECK_NAME_PREFIX "/shmi_atest_"
#include "check.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define MIB ((uint64_t)1 << 20)
#define GIB ((uint64_t)1 << 30)

/* ---- a fake root: proc/meminfo, proc/self/cgroup, sys/fs/cgroup/... ---- */

static char root[256];

static void put(const char *rel, const char *text) {
    char path[512], dir[512];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    for (char *p = strchr(path + strlen(root) + 1, '/'); p; p = strchr(p + 1, '/')) {
        snprintf(dir, sizeof dir, "%.*s", (int)(p - path), path);
        mkdir(dir, 0700);
    }
    FILE *f = fopen(path, "w");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static void put_meminfo(uint64_t avail_kib, uint64_t swap_kib) {
    char text[256];
    snprintf(text, sizeof text,
             "MemTotal:       99999999 kB\nMemFree:          123456 kB\n"
             "MemAvailable:   %llu kB\nSwapTotal:      %llu kB\nSwapFree:       %llu kB\n",
             (unsigned long long)avail_kib, (unsigned long long)swap_kib,
             (unsigned long long)swap_kib);
    put("proc/meminfo", text);
}

static void put_u64(const char *rel, uint64_t v) {
    char text[32];
    snprintf(text, sizeof text, "%llu\n", (unsigned long long)v);
    put(rel, text);
}

static void fresh_root(void) {
    if (root[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
    }
    snprintf(root, sizeof root, "/tmp/shmi_admission_XXXXXX");
    if (!mkdtemp(root)) root[0] = '\0';
}

static void drop_root(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (root[0] && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
    root[0] = '\0';
    shmp_admission_root(NULL);
}

/* ---- arithmetic and parsing ---- */

static void test_margin_is_a_32nd_at_least_the_floor(void) {
    CHECK(shmp_less_margin(0, 64 * MIB) == 0);
    CHECK(shmp_less_margin(64 * MIB, 64 * MIB) == 0);
    CHECK(shmp_less_margin(100 * MIB, 64 * MIB) == 36 * MIB);
    CHECK(shmp_less_margin(32 * GIB, 64 * MIB) == 31 * GIB);
    CHECK(shmp_less_margin(64 * MIB, 0) == 62 * MIB);
    CHECK(shmp_less_margin(UINT64_MAX, 64 * MIB) == UINT64_MAX - UINT64_MAX / 32);
}

static void test_meminfo_parsing(void) {
    uint64_t avail = 0;
    int swap = -1;
    const char *plain = "MemTotal: 1000 kB\nMemFree: 10 kB\nMemAvailable:  2048 kB\n";
    CHECK_RC(shmp_parse_meminfo(plain, &avail, &swap), 0);
    CHECK(avail == 2048 * 1024 && swap == 0);
    const char *swapping = "MemAvailable: 1024 kB\nSwapTotal: 4096 kB\nSwapFree: 3072 kB\n";
    CHECK_RC(shmp_parse_meminfo(swapping, &avail, &swap), 0);
    CHECK(avail == 4096 * 1024 && swap == 1);
    /* A field whose name only starts like it is not it. */
    CHECK_RC(shmp_parse_meminfo("MemAvailableX: 5 kB\nMemFree: 1 kB\n", &avail, &swap), ENOENT);
    CHECK_RC(shmp_parse_meminfo("MemAvailable: lots\n", &avail, &swap), EINVAL);
    CHECK_RC(shmp_parse_meminfo("", &avail, &swap), ENOENT);
}

/* ---- the bounds, from a fake root ---- */

static void test_memavailable_bounds_without_cgroups(void) {
    fresh_root();
    put_meminfo(8 * 1024 * 1024, 0); /* 8 GiB */
    shmp_admission a;
    CHECK_RC(shmp_headroom_at(root, root, &a), 0);
    /* The root's own file system may be smaller than 8 GiB less its margin. */
    struct statvfs st;
    CHECK(statvfs(root, &st) == 0);
    uint64_t disk = shmp_less_margin((uint64_t)st.f_bavail * st.f_frsize, 0);
    if (disk >= 8 * GIB - 256 * MIB) {
        CHECK(a.bound == SHMP_BOUND_MEMORY);
        CHECK(a.available == 8 * GIB - 256 * MIB);
        CHECK(strcmp(a.what, "MemAvailable") == 0);
    } else {
        CHECK(a.bound == SHMP_BOUND_FREE_SPACE && a.available == disk);
    }
    put_meminfo(1024 * 1024, 1024 * 1024); /* 1 GiB + 1 GiB of swap */
    CHECK_RC(shmp_headroom_at(root, root, &a), 0);
    CHECK(a.bound == SHMP_BOUND_MEMORY && a.available == 2 * GIB - 64 * MIB);
    CHECK(strcmp(a.what, "MemAvailable + SwapFree") == 0);
    drop_root();
}

static void test_cgroup_v2_smallest_up_the_tree(void) {
    fresh_root();
    put_meminfo(64 * 1024 * 1024, 0);
    put("proc/self/cgroup", "0::/outer/inner\n");
    put("sys/fs/cgroup/cgroup.controllers", "cpu memory\n");
    put("sys/fs/cgroup/outer/inner/memory.max", "max\n");
    put_u64("sys/fs/cgroup/outer/inner/memory.current", 10 * MIB);
    put_u64("sys/fs/cgroup/outer/memory.max", GIB);
    put_u64("sys/fs/cgroup/outer/memory.current", 300 * MIB);
    shmp_admission a;
    CHECK_RC(shmp_headroom_at(root, NULL, &a), 0);
    CHECK(a.bound == SHMP_BOUND_CGROUP);
    CHECK(a.available == 724 * MIB - 64 * MIB);
    CHECK(strcmp(a.what, "memory.max of cgroup /outer") == 0);
    /* A tighter limit further down wins. */
    put_u64("sys/fs/cgroup/outer/inner/memory.max", 200 * MIB);
    CHECK_RC(shmp_headroom_at(root, NULL, &a), 0);
    CHECK(a.available == 190 * MIB - 64 * MIB);
    CHECK(strcmp(a.what, "memory.max of cgroup /outer/inner") == 0);
    /* Usage above the limit: no room at all. */
    put_u64("sys/fs/cgroup/outer/inner/memory.current", 300 * MIB);
    CHECK_RC(shmp_headroom_at(root, NULL, &a), 0);
    CHECK(a.available == 0 && a.bound == SHMP_BOUND_CGROUP);
    drop_root();
}

static void test_cgroup_v1_and_hybrid(void) {
    fresh_root();
    put_meminfo(64 * 1024 * 1024, 0);
    /* v1 memory controller beside an empty unified hierarchy. */
    put("proc/self/cgroup", "9:name=systemd:/\n4:cpu,memory:/job/step\n0::/\n");
    put("sys/fs/cgroup/unified/cgroup.controllers", "\n");
    put_u64("sys/fs/cgroup/memory/job/step/memory.limit_in_bytes", 9223372036854771712ULL);
    put_u64("sys/fs/cgroup/memory/job/step/memory.usage_in_bytes", 5 * MIB);
    put_u64("sys/fs/cgroup/memory/job/memory.limit_in_bytes", 512 * MIB);
    put_u64("sys/fs/cgroup/memory/job/memory.usage_in_bytes", 128 * MIB);
    shmp_admission a;
    CHECK_RC(shmp_headroom_at(root, NULL, &a), 0);
    CHECK(a.bound == SHMP_BOUND_CGROUP);
    CHECK(a.available == 384 * MIB - 64 * MIB);
    CHECK(strcmp(a.what, "memory.limit_in_bytes of cgroup /job") == 0);
    drop_root();
}

static void test_missing_files_bound_nothing(void) {
    fresh_root();
    shmp_admission a;
    CHECK_RC(shmp_headroom_at(root, NULL, &a), 0);
    CHECK(a.bound == SHMP_BOUND_NONE);
    CHECK_RC(shmp_admit_at(root, NULL, UINT64_MAX), 0);
    put("proc/self/cgroup", "0::/gone/away\n"); /* a cgroup whose files we cannot see */
    CHECK_RC(shmp_headroom_at(root, NULL, &a), 0);
    CHECK(a.bound == SHMP_BOUND_NONE);
    drop_root();
}

static void test_admit_refuses_and_says_why(void) {
    fresh_root();
    put_meminfo(1024 * 1024, 0); /* 1 GiB: 960 MiB of headroom */
    shmp_forget_admission();
    CHECK_RC(shmp_admit_at(root, NULL, 960 * MIB), 0);
    shmp_admission a;
    shmp_last_admission(&a);
    CHECK(a.bound == SHMP_BOUND_NONE);
    CHECK_RC(shmp_admit_at(root, NULL, 960 * MIB + 1), ENOMEM);
    shmp_last_admission(&a);
    CHECK(a.bound == SHMP_BOUND_MEMORY && a.asked == 960 * MIB + 1 && a.available == 960 * MIB);
    /* The segment directory's free space refuses with ENOSPC. */
    put_meminfo(UINT64_MAX / 2048, 0);
    struct statvfs st;
    CHECK(statvfs(root, &st) == 0);
    uint64_t free_bytes = (uint64_t)st.f_bavail * st.f_frsize;
    CHECK_RC(shmp_admit_at(root, root, free_bytes), ENOSPC);
    shmp_last_admission(&a);
    CHECK(a.bound == SHMP_BOUND_FREE_SPACE && strstr(a.what, root) != NULL);
    drop_root();
}

/* ---- reservations ---- */

static uint64_t blocks_of(const shmp_seg *s) {
    struct stat st;
    return fstat(s->fd, &st) == 0 ? (uint64_t)st.st_blocks * 512 : UINT64_MAX;
}

static void test_build_beyond_headroom_creates_nothing(void) {
    fresh_root();
    put_meminfo(512 * 1024, 0); /* 512 MiB: 448 MiB of headroom */
    shmp_admission_root(root);
    shmp_seg s;
    CHECK_RC(shmp_build(&s, 600 * MIB, 600 * MIB, 0, "k", 1), ENOMEM);
    CHECK(s.fd < 0 && s.base == NULL);
    shmp_admission a;
    shmp_last_admission(&a);
    CHECK(a.bound == SHMP_BOUND_MEMORY && a.asked == SHMP_HEADER_SIZE + 600 * MIB);
    /* Within it: built, reserved. */
    CHECK_RC(shmp_build(&s, 100 * MIB, 100 * MIB, 0, "k", 1), 0);
    CHECK(blocks_of(&s) >= 100 * MIB);
    shmp_discard(&s);
    drop_root();
}

static void test_reserve_beyond_headroom_takes_nothing(void) {
    fresh_root();
    put_meminfo(512 * 1024, 0);
    shmp_admission_root(root);
    shmp_seg s;
    CHECK_RC(shmp_build(&s, 4 * GIB, 0, 0, "k", 1), 0); /* sparse */
    uint64_t before = blocks_of(&s);
    CHECK_RC(shmp_reserve(&s, SHMP_HEADER_SIZE, 2 * GIB, 2), ENOMEM);
    CHECK(blocks_of(&s) == before);
    CHECK_RC(shmp_fill(&s, SHMP_HEADER_SIZE, s.base, GIB, 2), ENOMEM);
    CHECK(blocks_of(&s) == before);
    shmp_discard(&s);
    drop_root();
}

/* Shrinks the fake MemAvailable once the reservation has taken its first
 * step: the next recheck must refuse, and every step be given back. */
typedef struct squeeze {
    shmp_seg *s;
    uint64_t seen;
    int squeezed;
} squeeze;

static void *squeeze_main(void *arg) {
    squeeze *q = (squeeze *)arg;
    for (int i = 0; i < 200000 && !q->squeezed; i++) {
        uint64_t b = blocks_of(q->s);
        if (b != UINT64_MAX && b > SHMP_HEADER_SIZE + 8 * MIB) {
            q->seen = b;
            put_meminfo(1024, 0); /* 1 MiB */
            __atomic_store_n(&q->squeezed, 1, __ATOMIC_RELEASE);
            break;
        }
        struct timespec t = {0, 20000};
        nanosleep(&t, NULL);
    }
    return NULL;
}

static void test_limit_reached_midway_releases_everything(void) {
    fresh_root();
    put_meminfo(8 * 1024 * 1024, 0); /* 8 GiB */
    shmp_admission_root(root);
    shmp_seg s;
    CHECK_RC(shmp_build(&s, GIB, 0, 0, "k", 1), 0);
    uint64_t before = blocks_of(&s);
    squeeze q = {&s, 0, 0};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, squeeze_main, &q) == 0);
    int rc = shmp_reserve(&s, SHMP_HEADER_SIZE, GIB - 4096, 1);
    pthread_join(t, NULL);
    CHECK(__atomic_load_n(&q.squeezed, __ATOMIC_ACQUIRE));
    CHECK_RC(rc, ENOMEM);
    CHECK(q.seen > before); /* it had begun */
    CHECK(blocks_of(&s) == before);
    shmp_admission a;
    shmp_last_admission(&a);
    CHECK(a.bound == SHMP_BOUND_MEMORY && a.available == 0);
    CHECK(a.asked < GIB - 4096); /* refused with part of it done */
    shmp_discard(&s);
    drop_root();
}

static const check_test tests[] = {
    CHECK_TEST(test_margin_is_a_32nd_at_least_the_floor),
    CHECK_TEST(test_meminfo_parsing),
    CHECK_TEST(test_memavailable_bounds_without_cgroups),
    CHECK_TEST(test_cgroup_v2_smallest_up_the_tree),
    CHECK_TEST(test_cgroup_v1_and_hybrid),
    CHECK_TEST(test_missing_files_bound_nothing),
    CHECK_TEST(test_admit_refuses_and_says_why),
    CHECK_TEST(test_build_beyond_headroom_creates_nothing),
    CHECK_TEST(test_reserve_beyond_headroom_takes_nothing),
    CHECK_TEST(test_limit_reached_midway_releases_everything),
};

static void cleanup(void) {
    if (root[0]) drop_root();
}

int main(int argc, char **argv) {
    return check_main(argc, argv, tests, sizeof tests / sizeof tests[0], cleanup);
}
