/* Tests of keywatch.c: a wait for a segment name that does not exist yet is
 * woken by its creator (through frames.c, as SharedImage creates a store),
 * not by a poll, and kw_cancel from another thread ends it.
 *
 * One source for every backend: inotify on Linux (under ASan+UBSan), the
 * per-key named event on Windows (mingw-w64, run under wine), kqueue where
 * <sys/event.h> exists (macOS; Linux with libkqueue and -DKW_FORCE_KQUEUE).
 *
 * Usage: test_keywatch [substring]   runs the tests whose name contains it.
 */
#if !defined(_WIN32)
#define _GNU_SOURCE
#define CHECK_NAME_PREFIX "/shmi_kwtest_"
#else
#define CHECK_NAME_PREFIX "Local\\shmimage_kwtest_"
#endif
#include "check.h"
#include "frames.h"
#include "keywatch.h"

#include <errno.h>
#include <string.h>

#if defined(_WIN32)
typedef HANDLE thread_t;
static void nap_ms(int ms) { Sleep((DWORD)ms); }
static int start(thread_t *t, DWORD(WINAPI *fn)(void *), void *arg) {
    *t = CreateThread(NULL, 0, fn, arg, 0, NULL);
    return *t ? 0 : -1;
}
static void join(thread_t t) {
    WaitForSingleObject(t, INFINITE);
    CloseHandle(t);
}
#define THREAD_FN(name) static DWORD WINAPI name(void *arg)
#define THREAD_END return 0
#else
#include <pthread.h>
#include <time.h>
typedef pthread_t thread_t;
static void nap_ms(int ms) {
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}
static int start(thread_t *t, void *(*fn)(void *), void *arg) {
    return pthread_create(t, NULL, fn, arg);
}
static void join(thread_t t) { pthread_join(t, NULL); }
#define THREAD_FN(name) static void *name(void *arg)
#define THREAD_END return NULL
#endif

#define LONG_NS 20000000000LL /* a bound no correct wake comes near */

static const frm_options OPTIONS = {4096, 2, 2, 1, FRM_META_MAX, 0};

typedef struct store {
    frm_store st;
    shmp_seg seg;
} store;

static int open_store(store *s, const char *name, int create) {
    int created;
    memset(s, 0, sizeof *s);
    return frm_attach(&s->st, &s->seg, name, 1, create, &OPTIONS, "key", 3, 0, &created);
}

static int exists(const char *name) {
    store s;
    int rc = open_store(&s, name, 0);
    if (rc == 0) frm_detach(&s.st);
    return rc == 0;
}

static int publish_one(store *s, uint8_t value) {
    unsigned char px[64];
    memset(px, value, sizeof px);
    frm_spec spec = {2, {8, 8, 0, 0}, FRM_UINT8, NULL, 0};
    uint64_t gen;
    int rc;
    do {
        rc = frm_publish(&s->st, NULL, px, &spec, -1, &gen);
    } while (rc == EINTR);
    return rc;
}

typedef struct creator {
    const char *name;
    int delay_ms;
    int publish_after_ms; /* >= 0: publish the first frame then */
    int rc;
    store s;
} creator;

static void creator_init(creator *c, const char *name, int delay_ms, int publish_after_ms) {
    memset(c, 0, sizeof *c);
    c->name = name;
    c->delay_ms = delay_ms;
    c->publish_after_ms = publish_after_ms;
    c->rc = -1;
}

THREAD_FN(creator_thread) {
    creator *c = (creator *)arg;
    nap_ms(c->delay_ms);
    c->rc = open_store(&c->s, c->name, 1);
    if (c->rc == 0 && c->publish_after_ms >= 0) {
        nap_ms(c->publish_after_ms);
        c->rc = publish_one(&c->s, 7);
    }
    THREAD_END;
}

typedef struct canceller {
    kw_watch *w;
    int delay_ms;
} canceller;

THREAD_FN(cancel_thread) {
    canceller *c = (canceller *)arg;
    nap_ms(c->delay_ms);
    kw_cancel(c->w);
    THREAD_END;
}

/* Nothing appears: the wait ends at its timeout, with no sign. */
static void test_a_missing_name_gives_no_sign(void) {
    char name[64];
    unique_name(name, sizeof name, "none");
    kw_watch w;
    CHECK_RC(kw_open(&w, name), 0);
    CHECK(!exists(name));
    CHECK_RC(kw_wait(&w, 150000000LL), ETIMEDOUT);
    CHECK(!exists(name));
    kw_close(&w);
}

/* One long wait is woken by the creator, and the name then exists: a poll
 * that merely ended its interval would find nothing there. */
static void test_the_creator_wakes_a_waiter(void) {
    char name[64];
    unique_name(name, sizeof name, "made");
    kw_watch w;
    CHECK_RC(kw_open(&w, name), 0);
    CHECK(!exists(name));
    creator c;
    creator_init(&c, name, 100, -1);
    thread_t t;
    CHECK(start(&t, creator_thread, &c) == 0);
    CHECK_RC(kw_wait(&w, LONG_NS), 0);
    CHECK(exists(name)); /* before the creator is joined: it was the creator's sign */
    join(t);
    CHECK_RC(c.rc, 0);
    kw_close(&w);
    frm_detach(&c.s.st);
}

#if defined(_WIN32)
/* Windows: the first frame is a second sign, for a waiter that missed the
 * first to another waiter's reset; later frames are not (wait() has the
 * store's own wake-up by then). */
static void test_the_first_frame_signals_again(void) {
    char name[64];
    unique_name(name, sizeof name, "frame");
    kw_watch w;
    CHECK_RC(kw_open(&w, name), 0);
    creator c;
    creator_init(&c, name, 50, 300);
    thread_t t;
    CHECK(start(&t, creator_thread, &c) == 0);
    CHECK_RC(kw_wait(&w, LONG_NS), 0); /* created */
    CHECK_RC(kw_wait(&w, LONG_NS), 0); /* its first frame */
    join(t);
    CHECK_RC(c.rc, 0);
    CHECK(frm_generation(&c.s.st) == 1);
    CHECK_RC(publish_one(&c.s, 8), 0);
    CHECK_RC(kw_wait(&w, 150000000LL), ETIMEDOUT);
    kw_close(&w);
    frm_detach(&c.s.st);
}

/* Two waiters of one key each get the creator's sign. */
static void test_two_waiters_are_both_woken(void) {
    char name[64];
    unique_name(name, sizeof name, "two");
    kw_watch a, b;
    CHECK_RC(kw_open(&a, name), 0);
    CHECK_RC(kw_open(&b, name), 0);
    creator c;
    creator_init(&c, name, 100, -1);
    thread_t t;
    CHECK(start(&t, creator_thread, &c) == 0);
    join(t);
    CHECK_RC(kw_wait(&a, LONG_NS), 0);
    CHECK(exists(name));
    /* a reset the sign before b waited: b's next look finds the name,
     * which is what the caller's slicing is for */
    int rc = kw_wait(&b, 100000000LL);
    CHECK(rc == 0 || rc == ETIMEDOUT);
    CHECK(exists(name));
    kw_close(&a);
    kw_close(&b);
    frm_detach(&c.s.st);
}

/* The event's name taken by another kind of object: the watch polls. */
static void test_a_taken_event_name_falls_back_to_polling(void) {
    char name[64];
    wchar_t taken[128];
    unique_name(name, sizeof name, "taken");
    char buf[128];
    snprintf(buf, sizeof buf, "%s_appear", name);
    MultiByteToWideChar(CP_UTF8, 0, buf, -1, taken, 128);
    HANDLE squatter = CreateMutexW(NULL, FALSE, taken);
    CHECK(squatter != NULL);
    kw_watch w;
    CHECK_RC(kw_open(&w, name), 0);
    CHECK_RC(kw_wait(&w, LONG_NS), 0); /* one poll interval, then look */
    creator c;
    creator_init(&c, name, 0, -1);
    thread_t t;
    CHECK(start(&t, creator_thread, &c) == 0);
    join(t);
    CHECK_RC(c.rc, 0);
    CHECK_RC(kw_wait(&w, LONG_NS), 0);
    CHECK(exists(name));
    CHECK_RC(kw_cancel(&w), 0);
    CHECK_RC(kw_wait(&w, -1), ECANCELED);
    kw_close(&w);
    frm_detach(&c.s.st);
    CloseHandle(squatter);
}
#endif

/* kw_cancel from another thread ends a wait with no timeout, for good. */
static void test_cancel_from_another_thread_ends_the_wait(void) {
    char name[64];
    unique_name(name, sizeof name, "cancel");
    kw_watch w;
    CHECK_RC(kw_open(&w, name), 0);
    canceller c = {&w, 100};
    thread_t t;
    CHECK(start(&t, cancel_thread, &c) == 0);
    CHECK_RC(kw_wait(&w, -1), ECANCELED);
    join(t);
    CHECK_RC(kw_wait(&w, LONG_NS), ECANCELED);
    CHECK(!exists(name));
    kw_close(&w);
}

/* A name announced with no waiter, and a waiter that outlives its key. */
static void test_announce_without_waiters_is_harmless(void) {
    char name[64];
    unique_name(name, sizeof name, "quiet");
    CHECK_RC(kw_announce(name), 0);
    kw_watch w;
    CHECK_RC(kw_open(&w, name), 0);
    CHECK_RC(kw_wait(&w, 100000000LL), ETIMEDOUT);
    kw_close(&w);
}

static const check_test tests[] = {
    CHECK_TEST(test_a_missing_name_gives_no_sign),
    CHECK_TEST(test_the_creator_wakes_a_waiter),
#if defined(_WIN32)
    CHECK_TEST(test_the_first_frame_signals_again),
    CHECK_TEST(test_two_waiters_are_both_woken),
    CHECK_TEST(test_a_taken_event_name_falls_back_to_polling),
#endif
    CHECK_TEST(test_cancel_from_another_thread_ends_the_wait),
    CHECK_TEST(test_announce_without_waiters_is_harmless),
};

int main(int argc, char **argv) {
    return check_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL);
}
