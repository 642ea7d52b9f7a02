/* Memory admission: how many bytes may still be reserved without running the
 * machine, the container or the segment directory out of room, so that an
 * oversized request ends in ENOMEM/ENOSPC and never in the OOM killer.
 *
 * The headroom is the smallest of: the segment directory's free space; for
 * every cgroup from the process's own up to the root, its limit less its
 * usage (v2 memory.max - memory.current, v1 memory.limit_in_bytes -
 * memory.usage_in_bytes); MemAvailable plus SwapFree. Each is first cut by
 * its margin (1/32 of itself; at least 64 MiB for the memory bounds).
 */
#if !defined(_WIN32) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE
#endif
#include "compat.h"
#include "shm_platform.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(_WIN32)
#include <windows.h>
#else
#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>
#endif

#define MEMORY_MARGIN_MIN ((uint64_t)64 << 20)
/* cgroup v1 writes "no limit" as a huge page-rounded number. */
#define NO_LIMIT ((uint64_t)1 << 62)

static SHMC_THREAD_LOCAL shmp_admission last_refusal;

uint64_t shmp_less_margin(uint64_t value, uint64_t margin_min) {
    uint64_t margin = value / 32;
    if (margin < margin_min) margin = margin_min;
    return value > margin ? value - margin : 0;
}

/* Keeps the smaller headroom, and says what it is. */
static void bound_by(shmp_admission *a, uint64_t headroom, int bound, const char *what) {
    if (a->bound != SHMP_BOUND_NONE && headroom >= a->available) return;
    a->available = headroom;
    a->bound = bound;
    snprintf(a->what, sizeof a->what, "%s", what);
}

/* ---- /proc/meminfo ---- */

static int meminfo_field(const char *text, const char *field, uint64_t *out) {
    size_t n = strlen(field);
    for (const char *line = text; line && *line; line = strchr(line, '\n')) {
        if (*line == '\n') line++;
        if (strncmp(line, field, n) != 0 || line[n] != ':') continue;
        char *end;
        unsigned long long kib = strtoull(line + n + 1, &end, 10);
        if (end == line + n + 1) return EINVAL;
        if (kib > UINT64_MAX / 1024) return ERANGE;
        *out = (uint64_t)kib * 1024;
        return 0;
    }
    return ENOENT;
}

int shmp_parse_meminfo(const char *text, uint64_t *available, int *with_swap) {
    uint64_t avail = 0, swap = 0;
    int rc = meminfo_field(text, "MemAvailable", &avail);
    if (rc) return rc;
    if (meminfo_field(text, "SwapFree", &swap) != 0) swap = 0;
    *available = avail + swap;
    *with_swap = swap != 0;
    return 0;
}

#if !defined(_WIN32)
/* The whole of a small file, NUL-terminated: 0 or an errno. */
static int read_small(const char *path, char *buf, size_t cap) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    size_t n = 0;
    while (n < cap - 1) {
        ssize_t got = read(fd, buf + n, cap - 1 - n);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        n += (size_t)got;
    }
    close(fd);
    buf[n] = '\0';
    return 0;
}
#endif

#if defined(__linux__)
static int read_u64(const char *path, uint64_t *out, int *unlimited) {
    char buf[64];
    int rc = read_small(path, buf, sizeof buf);
    if (rc) return rc;
    *unlimited = strncmp(buf, "max", 3) == 0;
    if (*unlimited) return 0;
    char *end;
    unsigned long long v = strtoull(buf, &end, 10);
    if (end == buf) return EINVAL;
    *out = (uint64_t)v;
    *unlimited = *out >= NO_LIMIT;
    return 0;
}

/* ---- cgroups (Linux) ---- */

/* This process's cgroup paths, from root/proc/self/cgroup in one read: in
 * v2's unified hierarchy (`v2`) and in v1's memory one (`v1`); "" where it
 * has none. Lines are "hierarchy-id:controller,controller:/path". */
static void cgroup_paths(const char *root, char *v2, char *v1, size_t cap) {
    char path[4096], buf[4096];
    v2[0] = v1[0] = '\0';
    snprintf(path, sizeof path, "%s/proc/self/cgroup", root);
    if (read_small(path, buf, sizeof buf) != 0) return;
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *c = strchr(line, ':'), *p = c ? strchr(c + 1, ':') : NULL;
        if (!p) continue;
        *p = '\0';
        if (c[1] == '\0') snprintf(v2, cap, "%s", p + 1);
        for (char *tok = c + 1; *tok;) {
            size_t n = strcspn(tok, ",");
            if (n == 6 && strncmp(tok, "memory", 6) == 0) snprintf(v1, cap, "%s", p + 1);
            tok += n + (tok[n] == ',');
        }
    }
}

/* Walks from the process's cgroup up to the mount point, keeping the
 * smallest limit - usage. */
static void cgroup_walk(shmp_admission *a, const char *mount, const char *cg,
                        const char *max_file, const char *cur_file) {
    char dir[4096], file[4200], what[sizeof a->what];
    size_t base = strlen(mount);
    snprintf(dir, sizeof dir, "%s%s", mount, cg);
    for (;;) {
        size_t n = strlen(dir);
        while (n > base && dir[n - 1] == '/') dir[--n] = '\0';
        uint64_t max = 0, cur = 0;
        int unlimited = 1, ignored;
        snprintf(file, sizeof file, "%s/%s", dir, max_file);
        if (read_u64(file, &max, &unlimited) == 0 && !unlimited) {
            snprintf(file, sizeof file, "%s/%s", dir, cur_file);
            if (read_u64(file, &cur, &ignored) == 0) {
                uint64_t room = max > cur ? max - cur : 0;
                snprintf(what, sizeof what, "%s of cgroup %s", max_file,
                         n > base ? dir + base : "/");
                bound_by(a, shmp_less_margin(room, MEMORY_MARGIN_MIN), SHMP_BOUND_CGROUP, what);
            }
        }
        if (n <= base) break;
        char *slash = strrchr(dir + base, '/');
        if (!slash) break;
        *slash = '\0';
    }
}

static int is_dir_with(const char *dir, const char *file) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    return access(path, F_OK) == 0;
}

static void cgroup_bounds(shmp_admission *a, const char *root) {
    char v2[2048], v1[2048], mount[4096];
    cgroup_paths(root, v2, v1, sizeof v2);
    if (v2[0]) {
        /* v2 alone, or beside v1 ("hybrid": mounted at unified/) */
        snprintf(mount, sizeof mount, "%s/sys/fs/cgroup", root);
        if (!is_dir_with(mount, "cgroup.controllers"))
            snprintf(mount, sizeof mount, "%s/sys/fs/cgroup/unified", root);
        cgroup_walk(a, mount, v2, "memory.max", "memory.current");
    }
    if (v1[0]) {
        snprintf(mount, sizeof mount, "%s/sys/fs/cgroup/memory", root);
        cgroup_walk(a, mount, v1, "memory.limit_in_bytes", "memory.usage_in_bytes");
    }
}
#endif

/* ---- the headroom ---- */

static void free_space_bound(shmp_admission *a, const char *dir) {
#if !defined(_WIN32)
    struct statvfs st;
    if (!dir || statvfs(dir, &st) != 0) return;
    char what[sizeof a->what];
    snprintf(what, sizeof what, "free space of %s", dir);
    /* A small tmpfs (a container's 64 MiB /dev/shm) must stay usable: only
     * the proportional margin here, since running out of it is a clean
     * ENOSPC; the 64 MiB floor guards the memory bounds, whose end is the
     * OOM killer. */
    uint64_t free_bytes = (uint64_t)st.f_bavail * (uint64_t)st.f_frsize;
    bound_by(a, shmp_less_margin(free_bytes, 0), SHMP_BOUND_FREE_SPACE, what);
#else
    (void)a;
    (void)dir;
#endif
}

static void memory_bound(shmp_admission *a, const char *root) {
#if defined(_WIN32)
    (void)root;
    MEMORYSTATUSEX ms;
    ms.dwLength = sizeof ms;
    if (!GlobalMemoryStatusEx(&ms)) return;
    /* Sections are charged against the commit limit (RAM + page file). */
    bound_by(a, shmp_less_margin(ms.ullAvailPageFile, MEMORY_MARGIN_MIN), SHMP_BOUND_MEMORY,
             "available commit charge");
#else
    char path[4096], buf[8192];
    uint64_t avail;
    int with_swap;
    snprintf(path, sizeof path, "%s/proc/meminfo", root);
    if (read_small(path, buf, sizeof buf) != 0) return;
    if (shmp_parse_meminfo(buf, &avail, &with_swap) != 0) return;
    bound_by(a, shmp_less_margin(avail, MEMORY_MARGIN_MIN), SHMP_BOUND_MEMORY,
             with_swap ? "MemAvailable + SwapFree" : "MemAvailable");
#endif
}

int shmp_headroom_at(const char *root, const char *dir, shmp_admission *out) {
    memset(out, 0, sizeof *out);
    out->available = UINT64_MAX;
    free_space_bound(out, dir);
    memory_bound(out, root);
#if defined(__linux__)
    cgroup_bounds(out, root);
#endif
    return 0;
}

int shmp_admit_at(const char *root, const char *dir, uint64_t bytes) {
    shmp_admission a;
    shmp_headroom_at(root, dir, &a);
    a.asked = bytes;
    if (a.bound == SHMP_BOUND_NONE || bytes <= a.available) return 0;
    last_refusal = a;
    return a.bound == SHMP_BOUND_FREE_SPACE ? ENOSPC : ENOMEM;
}

/* Where /proc and /sys are read from: "" but in tests. */
static char admission_root[256];

void shmp_admission_root(const char *root) {
    snprintf(admission_root, sizeof admission_root, "%s", root ? root : "");
}

int shmp_admit(const char *dir, uint64_t bytes) { return shmp_admit_at(admission_root, dir, bytes); }

void shmp_last_admission(shmp_admission *out) { *out = last_refusal; }

void shmp_forget_admission(void) { memset(&last_refusal, 0, sizeof last_refusal); }
