/* The harness the C tests of the platform layer share: CHECK and CHECK_RC,
 * unique segment names, a named segment in one call, and the runner.
 * Static (inline) functions only: each test program includes it once.
 *
 * Before including it, a test file defines CHECK_NAME_PREFIX, how its
 * segment names begin (the process id, a tag and a counter follow).
 *
 * A test is a void function that returns at its first failed check. The
 * runner prints "ok   NAME" or "FAIL  NAME" for each test (xfail/XPASS for a
 * test listed with a known bug), then "N passed, N failed"; CI greps that
 * last line.
 */
#ifndef CHECK_H
#define CHECK_H

#include "shm_platform.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#if defined(_WIN32)
#include <windows.h>
#else
#include <errno.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#endif

#ifndef CHECK_NAME_PREFIX
#error "define CHECK_NAME_PREFIX (how this program's segment names begin) before check.h"
#endif

#if defined(__GNUC__) && !defined(_WIN32)
#define CHECK_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define CHECK_PRINTF(fmt, args)
#endif

static int check_failures;     /* failed checks so far, in the running test */
static char check_current[64]; /* the running test's name, for messages */

/* Records a failure of the running test and says where; the caller returns. */
CHECK_PRINTF(3, 4)
static inline void check_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "FAIL %s (%s:%d): ", check_current, file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    check_failures++;
}

static inline void check_fail_rc(const char *file, int line, const char *expr, int rc,
                                 int want) {
#if defined(_WIN32)
    /* The C runtime's strerror names only its own few codes, not the POSIX
     * ones the layer also returns (ETIMEDOUT, ENOTSUP, EOWNERDEAD...). */
    check_fail(file, line, "%s gave %d, wanted %d", expr, rc, want);
#else
    check_fail(file, line, "%s gave %d (%s), wanted %d", expr, rc, strerror(rc), want);
#endif
}

#define CHECK(cond)                                      \
    do {                                                 \
        if (!(cond)) {                                   \
            check_fail(__FILE__, __LINE__, "%s", #cond); \
            return;                                      \
        }                                                \
    } while (0)

#define CHECK_RC(expr, want)                                       \
    do {                                                           \
        int rc_ = (expr);                                          \
        if (rc_ != (want)) {                                       \
            check_fail_rc(__FILE__, __LINE__, #expr, rc_, (want)); \
            return;                                                \
        }                                                          \
    } while (0)

/* ---- segment names and segments ---- */

static inline unsigned long check_pid(void) {
#if defined(_WIN32)
    return (unsigned long)GetCurrentProcessId();
#else
    return (unsigned long)getpid();
#endif
}

/* How every segment name of this process begins: CHECK_NAME_PREFIX, pid, "_". */
static inline void check_name_stem(char *out, size_t cap) {
    snprintf(out, cap, "%s%lu_", CHECK_NAME_PREFIX, check_pid());
}

/* A name no other call in this process gives: the stem, the tag, a counter. */
static inline void unique_name(char *out, size_t cap, const char *tag) {
    static unsigned counter;
    snprintf(out, cap, "%s%lu_%s%u", CHECK_NAME_PREFIX, check_pid(), tag, counter++);
}

/* Builds and names a segment of `size` data bytes, its key "key". */
static inline int make_segment(shmp_seg *s, const char *name, uint64_t size) {
    int rc = shmp_build(s, size, size, 0, "key", 3);
    if (rc) return rc;
    rc = shmp_link(s, name);
    if (rc) shmp_discard(s);
    return rc;
}

#if !defined(_WIN32)
/* Does a segment file of that name exist in the directory the layer uses? */
static inline int name_exists(const char *name) {
    char path[320];
    struct stat st;
    snprintf(path, sizeof path, "%s%s", shmp_dir(), name);
    return stat(path, &st) == 0;
}

/* ---- child processes ---- */

/* Waits for a child; its exit status, or 128 + signal (-1: no such child). */
static inline int reap(pid_t pid) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) return -1;
    }
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}
#endif

/* ---- the runner ---- */

/* A test listed with a known core bug must fail (strict expected failure);
 * once the bug is fixed it passes, which fails the run until the entry goes. */
typedef struct check_test {
    const char *name;
    void (*fn)(void);
    const char *bug; /* NULL, or the known bug that makes it fail */
} check_test;

#define CHECK_TEST(fn) {#fn, fn, NULL}
#define CHECK_TEST_BUG(fn, bug) {#fn, fn, bug}

/* Runs one test, then `after` (when given) under its name; 1 when it failed. */
static inline int check_run_one(const check_test *t, void (*after)(void)) {
    snprintf(check_current, sizeof check_current, "%s", t->name);
    check_failures = 0;
    t->fn();
    if (after) after();
    int failed = check_failures != 0;
    if (t->bug) {
        printf("%s %s (%s)\n", failed ? "xfail" : "XPASS", t->name, t->bug);
        failed = !failed;
    } else {
        printf("%s %s\n", failed ? "FAIL " : "ok   ", t->name);
    }
    fflush(stdout); /* before any fork, and in order with stderr */
    return failed;
}

/* Runs the tests whose name contains argv[1] (every test without it).
 * Exit status 0 when at least one ran and none failed. */
static inline int check_main(int argc, char **argv, const check_test *tests, size_t count,
                             void (*after)(void)) {
    const char *only = argc > 1 ? argv[1] : "";
    int ran = 0, failed = 0;
    for (size_t i = 0; i < count; i++) {
        if (!strstr(tests[i].name, only)) continue;
        failed += check_run_one(&tests[i], after);
        ran++;
    }
    printf("%d passed, %d failed\n", ran - failed, failed);
    return failed || !ran ? 1 : 0;
}

#endif /* CHECK_H */
