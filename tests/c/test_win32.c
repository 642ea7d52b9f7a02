/* Unit tests of the Windows platform layer (shm_win32.c), built with
 * mingw-w64 and run under wine on Linux CI (natively on Windows too).
 * Other processes are real: this program starts itself with a role
 * ("child ROLE NAME"), and deaths are real (a child exits holding the lock,
 * or is terminated holding a pin).
 *
 * Usage: test_win32.exe [substring]   runs the tests whose name contains it.
 * Prints "N passed, N failed"; exit status 0 when every test passed.
 */
#define CHECK_NAME_PREFIX "Local\\shmimage_test_"
#include "check.h"
#include "compat.h"

#include "frames.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHILD_TIMEOUT_MS 60000u

/* ---- helpers ---- */

/* Starts this program as "child ROLE NAME"; the process handle. */
static HANDLE spawn(const char *role, const char *name) {
    char exe[MAX_PATH], cmd[2 * MAX_PATH];
    GetModuleFileNameA(NULL, exe, sizeof exe);
    snprintf(cmd, sizeof cmd, "\"%s\" child %s %s", exe, role, name);
    STARTUPINFOA si;
    PROCESS_INFORMATION pi;
    memset(&si, 0, sizeof si);
    si.cb = sizeof si;
    if (!CreateProcessA(NULL, cmd, NULL, NULL, FALSE, 0, NULL, NULL, &si, &pi)) return NULL;
    CloseHandle(pi.hThread);
    return pi.hProcess;
}

/* Waits for a child; its exit code, or -1 when it did not end in time. */
static int reap(HANDLE p) {
    DWORD code = (DWORD)-1;
    if (WaitForSingleObject(p, CHILD_TIMEOUT_MS) != WAIT_OBJECT_0) {
        TerminateProcess(p, 99);
        WaitForSingleObject(p, CHILD_TIMEOUT_MS);
    } else {
        GetExitCodeProcess(p, &code);
    }
    CloseHandle(p);
    return (int)code;
}

/* A child's "I am ready" signal: a named event it sets. */
static HANDLE ready_event(const char *name) {
    char ev[SHMP_NAME_MAX + 16];
    snprintf(ev, sizeof ev, "%s_ready", name);
    return CreateEventA(NULL, TRUE, FALSE, ev);
}

/* ---- child roles ---- */

/* Attaches, checks the parent's bytes, writes its own, detaches. */
static int child_reader(const char *name) {
    shmp_seg s;
    if (shmp_attach(&s, name, 1)) return 2;
    int ok = memcmp(shmp_data(&s), "from parent", 12) == 0;
    memcpy(shmp_data(&s) + 100, "from child", 11);
    shmp_detach(&s);
    return ok ? 0 : 3;
}

/* Takes the lock and exits holding it. */
static int child_lock_and_die(const char *name) {
    shmp_seg s;
    int died = 0;
    if (shmp_attach(&s, name, 1) || shmp_lock_try(&s, &died)) return 2;
    ExitProcess(0);
}

/* Holds the segment (and a shared pin on slot 1) until it is killed. */
static int child_hold(const char *name) {
    shmp_seg s;
    if (shmp_attach(&s, name, 1) || shmp_range_lock(&s, 1, 0)) return 2;
    HANDLE ready = ready_event(name);
    SetEvent(ready);
    Sleep(CHILD_TIMEOUT_MS);
    return 4;
}

/* Waits for the word at offset 0 to leave 0, then acks it at offset 4. */
static int child_waiter(const char *name) {
    shmp_seg s;
    if (shmp_attach(&s, name, 1)) return 2;
    uint32_t *word = (uint32_t *)shmp_data(&s);
    HANDLE ready = ready_event(name);
    SetEvent(ready);
    int rc = 0;
    while (*(volatile uint32_t *)word == 0 && rc == 0)
        rc = shmp_wait(&s, word, 0, 30000000000LL);
    if (rc) return 5;
    ((volatile uint32_t *)word)[1] = 1;
    shmp_wake(&s, word);
    shmp_detach(&s);
    return 0;
}

/* Increments the counter at offset 0 under the lock, non-atomically. */
#define INCREMENTS 20000

/* Where the counting children wait until all of them have started. */
static HANDLE go_event(const char *name) {
    char ev[SHMP_NAME_MAX + 16];
    snprintf(ev, sizeof ev, "%s_go", name);
    return CreateEventA(NULL, TRUE, FALSE, ev);
}

static int child_counter(const char *name) {
    shmp_seg s;
    int died = 0;
    if (shmp_attach(&s, name, 1)) return 2;
    volatile uint32_t *counter = (volatile uint32_t *)shmp_data(&s);
    HANDLE go = go_event(name);
    if (WaitForSingleObject(go, CHILD_TIMEOUT_MS) != WAIT_OBJECT_0) return 5;
    for (int i = 0; i < INCREMENTS; i++) {
        if (shmp_lock_wait(&s, -1, &died)) return 3;
        uint32_t v = *counter;
        if (i % 16 == 0) Sleep(0); /* invite the others in */
        *counter = v + 1;
        if (shmp_unlock(&s)) return 4;
    }
    shmp_detach(&s);
    return 0;
}

static int run_child(const char *role, const char *name) {
    if (!strcmp(role, "counter")) return child_counter(name);
    if (!strcmp(role, "reader")) return child_reader(name);
    if (!strcmp(role, "lockdie")) return child_lock_and_die(name);
    if (!strcmp(role, "hold")) return child_hold(name);
    if (!strcmp(role, "waiter")) return child_waiter(name);
    return 64;
}

/* ---- tests ---- */

static void test_create_attach(void) {
    char name[SHMP_NAME_MAX];
    unique_name(name, sizeof name, "ca");
    shmp_seg a, b, c;
    CHECK_RC(make_segment(&a, name, 1000), 0);
    CHECK(shmp_hdr(&a)->data_size == 1000); /* as asked, not page-rounded */
    CHECK(shmp_hdr(&a)->total_size == SHMP_HEADER_SIZE + 1000);
    memcpy(shmp_data(&a), "hello", 6);
    CHECK_RC(shmp_attach(&b, name, 1), 0);
    CHECK(memcmp(shmp_data(&b), "hello", 6) == 0);
    CHECK(shmp_hdr(&b)->data_size == 1000);
    CHECK(shmp_hdr(&b)->key_len == 3 && memcmp(shmp_hdr(&b)->key, "key", 3) == 0);
    CHECK_RC(make_segment(&c, name, 10), EEXIST);
    CHECK_RC(shmp_attach(&c, name, 0), 0);
    CHECK(!c.writable && memcmp(shmp_data(&c), "hello", 6) == 0);
    shmp_detach(&c);
    shmp_detach(&b);
    shmp_detach(&a);
}

static void test_bad_input(void) {
    char name[SHMP_NAME_MAX];
    unique_name(name, sizeof name, "bad");
    shmp_seg s;
    CHECK_RC(shmp_build(&s, 0, 0, 0, "", 0), EINVAL);
    CHECK_RC(shmp_build(&s, 10, 10, 1, "", 0), ENOTSUP); /* nothing outlives its holders */
    CHECK_RC(shmp_attach(&s, name, 1), ENOENT);
    CHECK_RC(shmp_attach(&s, "", 1), EINVAL);
    CHECK_RC(shmp_remove(name), ENOENT);
    CHECK_RC(shmp_build(&s, 10, 10, 0, "", 0), 0);
    CHECK_RC(shmp_link(&s, "Local\\a\\b"), ENOENT);
    shmp_discard(&s);
}

static void test_foreign_sections(void) {
    char name[SHMP_NAME_MAX];
    wchar_t w[SHMP_NAME_MAX];
    unique_name(name, sizeof name, "foreign");
    MultiByteToWideChar(CP_UTF8, 0, name, -1, w, SHMP_NAME_MAX);
    HANDLE small = CreateFileMappingW(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE, 0, 100, w);
    CHECK(small != NULL);
    void *bytes = MapViewOfFile(small, FILE_MAP_ALL_ACCESS, 0, 0, 0);
    CHECK(bytes != NULL);
    memcpy(bytes, "not shmimage's", 15);
    UnmapViewOfFile(bytes);
    shmp_seg s;
    shmp_probe_info info;
    CHECK_RC(shmp_attach(&s, name, 1), SHMP_EINCOMPAT);
    CHECK_RC(shmp_probe(name, 1, &info), 0);
    CHECK(!info.ours && !info.stale);
    CloseHandle(small);
    /* A header claiming more than the section holds is never trusted. */
    HANDLE liar = CreateFileMappingW(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE, 0, 8192, w);
    CHECK(liar != NULL);
    shmp_header *h = (shmp_header *)MapViewOfFile(liar, FILE_MAP_ALL_ACCESS, 0, 0, 0);
    CHECK(h != NULL);
    h->magic = SHMP_MAGIC;
    h->version = SHMP_VERSION;
    h->header_size = SHMP_HEADER_SIZE;
    h->data_size = 1u << 20;
    h->total_size = SHMP_HEADER_SIZE + h->data_size;
    h->state = SHMP_STATE_READY;
    CHECK_RC(shmp_attach(&s, name, 0), SHMP_EINCOMPAT);
    h->data_size = 4096;
    h->total_size = SHMP_HEADER_SIZE + 4096;
    CHECK_RC(shmp_attach(&s, name, 0), 0);
    shmp_detach(&s);
    UnmapViewOfFile(h);
    CloseHandle(liar);
}

static void test_lifetime(void) {
    char name[SHMP_NAME_MAX];
    unique_name(name, sizeof name, "life");
    shmp_seg a, b;
    CHECK_RC(make_segment(&a, name, 4096), 0);
    memcpy(shmp_data(&a), "from parent", 12);
    CHECK_RC(reap(spawn("reader", name)), 0);
    CHECK(memcmp(shmp_data(&a) + 100, "from child", 11) == 0);
    shmp_detach(&a);
    CHECK_RC(shmp_attach(&b, name, 1), ENOENT); /* freed with the last handle */
    CHECK_RC(make_segment(&a, name, 4096), 0);        /* and the name is free again */
    shmp_detach(&a);
}

static void test_lifetime_killed_holder(void) {
    char name[SHMP_NAME_MAX];
    unique_name(name, sizeof name, "kill");
    shmp_seg a, b;
    CHECK_RC(make_segment(&a, name, 4096), 0);
    HANDLE ready = ready_event(name);
    HANDLE child = spawn("hold", name);
    CHECK(child != NULL);
    CHECK(WaitForSingleObject(ready, CHILD_TIMEOUT_MS) == WAIT_OBJECT_0);
    shmp_detach(&a);
    CHECK_RC(shmp_attach(&b, name, 1), 0); /* the child still holds it */
    int locked = 0;
    CHECK_RC(shmp_range_test(&b, 1, &locked), 0);
    CHECK(locked); /* its pin */
    shmp_detach(&b);
    TerminateProcess(child, 9);
    CHECK(reap(child) == 9);
    CloseHandle(ready);
    CHECK_RC(shmp_attach(&b, name, 1), ENOENT);
}

static void test_leave_keeps_mapping(void) {
    char name[SHMP_NAME_MAX];
    unique_name(name, sizeof name, "leave");
    shmp_seg a, b;
    CHECK_RC(make_segment(&a, name, 64), 0);
    CHECK_RC(shmp_attach(&b, name, 1), 0);
    CHECK_RC(shmp_range_lock(&a, 0, 0), 0);
    CHECK_RC(shmp_leave(&a), 0);
    memcpy(shmp_data(&a), "still mapped", 13); /* the view stays valid and shared */
    CHECK(memcmp(shmp_data(&b), "still mapped", 13) == 0);
    CHECK_RC(shmp_range_lock(&b, 0, 1), 0); /* but its pins are gone */
    shmp_close(&a);
    shmp_detach(&b);
    /* The name goes with the last handle, even while a left view remains. */
    CHECK_RC(make_segment(&a, name, 64), 0);
    CHECK_RC(shmp_leave(&a), 0);
    CHECK_RC(shmp_attach(&b, name, 1), ENOENT);
    shmp_close(&a);
}

static void test_lock(void) {
    char name[SHMP_NAME_MAX];
    unique_name(name, sizeof name, "lock");
    shmp_seg a, b, ro;
    int died = 0;
    CHECK_RC(make_segment(&a, name, 64), 0);
    CHECK_RC(shmp_attach(&b, name, 1), 0);
    CHECK_RC(shmp_attach(&ro, name, 0), 0);
    CHECK_RC(shmp_lock_try(&a, &died), 0);
    CHECK(!died && shmp_hdr(&a)->lock_owner_pid == GetCurrentProcessId());
    CHECK_RC(shmp_lock_try(&a, &died), EDEADLK); /* not recursive */
    CHECK_RC(shmp_lock_wait(&b, 50000000, &died), EDEADLK); /* per thread, any handle */
    CHECK_RC(shmp_lock_try(&ro, &died), EACCES);
    CHECK_RC(shmp_unlock(&a), 0);
    CHECK(shmp_hdr(&a)->lock_owner_pid == 0);
    CHECK_RC(shmp_unlock(&a), EPERM);
    CHECK_RC(shmp_lock_wait(&b, -1, &died), 0);
    CHECK_RC(shmp_unlock(&b), 0);
    shmp_detach(&ro);
    shmp_detach(&b);
    shmp_detach(&a);
}

typedef struct lock_arg {
    shmp_seg *s;
    int rc;
} lock_arg;

static DWORD WINAPI try_from_thread(LPVOID p) {
    lock_arg *a = (lock_arg *)p;
    int died = 0;
    a->rc = shmp_lock_try(a->s, &died);
    if (a->rc == EBUSY) a->rc = shmp_lock_wait(a->s, 30000000, &died);
    if (a->rc == 0) shmp_unlock(a->s);
    return 0;
}

static void test_lock_other_thread(void) {
    char name[SHMP_NAME_MAX];
    unique_name(name, sizeof name, "thr");
    shmp_seg a;
    int died = 0;
    CHECK_RC(make_segment(&a, name, 64), 0);
    CHECK_RC(shmp_lock_try(&a, &died), 0);
    lock_arg arg = {&a, -1};
    HANDLE t = CreateThread(NULL, 0, try_from_thread, &arg, 0, NULL);
    CHECK(t != NULL);
    WaitForSingleObject(t, CHILD_TIMEOUT_MS);
    CloseHandle(t);
    CHECK_RC(arg.rc, ETIMEDOUT);
    CHECK_RC(shmp_unlock(&a), 0);
    t = CreateThread(NULL, 0, try_from_thread, &arg, 0, NULL);
    CHECK(t != NULL);
    WaitForSingleObject(t, CHILD_TIMEOUT_MS);
    CloseHandle(t);
    CHECK_RC(arg.rc, 0);
    shmp_detach(&a);
}

static void test_lock_excludes_across_processes(void) {
    char name[SHMP_NAME_MAX];
    unique_name(name, sizeof name, "excl");
    shmp_seg a;
    CHECK_RC(make_segment(&a, name, 64), 0);
    HANDLE go = go_event(name);
    HANDLE kids[3];
    for (int i = 0; i < 3; i++) {
        kids[i] = spawn("counter", name);
        CHECK(kids[i] != NULL);
    }
    Sleep(500); /* let them reach the start line: only makes a race likelier */
    SetEvent(go);
    for (int i = 0; i < 3; i++) CHECK_RC(reap(kids[i]), 0);
    CloseHandle(go);
    CHECK(*(volatile uint32_t *)shmp_data(&a) == 3 * INCREMENTS); /* no update lost */
    shmp_detach(&a);
}

static void test_abandoned_lock(void) {
    char name[SHMP_NAME_MAX];
    unique_name(name, sizeof name, "abandon");
    shmp_seg a;
    int died = 0;
    CHECK_RC(make_segment(&a, name, 64), 0);
    CHECK_RC(reap(spawn("lockdie", name)), 0);
    CHECK_RC(shmp_lock_wait(&a, 10000000000LL, &died), 0);
    CHECK(died);
    CHECK(shmp_hdr(&a)->lock_owner_pid == GetCurrentProcessId());
    CHECK_RC(shmp_unlock(&a), 0);
    CHECK_RC(shmp_lock_try(&a, &died), 0);
    CHECK(!died); /* only the first lock after the death says so */
    CHECK_RC(shmp_unlock(&a), 0);
    shmp_detach(&a);
}

static void test_wait_wake(void) {
    char name[SHMP_NAME_MAX];
    unique_name(name, sizeof name, "wake");
    shmp_seg a;
    CHECK_RC(make_segment(&a, name, 64), 0);
    uint32_t *word = (uint32_t *)shmp_data(&a);
    CHECK_RC(shmp_wait(&a, word, 0, 20000000), ETIMEDOUT);
    CHECK_RC(shmp_wait(&a, word, 7, -1), 0); /* the word differs: no wait */
    HANDLE ready = ready_event(name);
    HANDLE child = spawn("waiter", name);
    CHECK(child != NULL);
    CHECK(WaitForSingleObject(ready, CHILD_TIMEOUT_MS) == WAIT_OBJECT_0);
    InterlockedExchange((LONG volatile *)word, 1);
    CHECK_RC(shmp_wake(&a, word), 0);
    CHECK_RC(reap(child), 0);
    CHECK(((volatile uint32_t *)word)[1] == 1);
    CloseHandle(ready);
    shmp_detach(&a);
}

static void test_pins(void) {
    char name[SHMP_NAME_MAX];
    unique_name(name, sizeof name, "pin");
    shmp_seg w, r1, r2;
    int locked = -1;
    CHECK_RC(make_segment(&w, name, 64), 0);
    CHECK_RC(shmp_attach(&r1, name, 1), 0);
    CHECK_RC(shmp_attach(&r2, name, 0), 0);
    CHECK_RC(shmp_range_test(&w, 0, &locked), 0);
    CHECK(!locked);
    CHECK_RC(shmp_range_lock(&r1, 0, 0), 0);
    CHECK_RC(shmp_range_lock(&r2, 0, 0), 0); /* shared pins coexist */
    CHECK_RC(shmp_range_lock(&w, 0, 1), EAGAIN);
    CHECK_RC(shmp_range_lock(&w, 1, 1), 0); /* other slots are free */
    CHECK_RC(shmp_range_lock(&r1, 1, 0), EAGAIN);
    CHECK_RC(shmp_range_test(&r1, 1, &locked), 0);
    CHECK(locked);
    CHECK_RC(shmp_range_test(&w, 1, &locked), 0);
    CHECK(!locked); /* its own pin does not count */
    CHECK_RC(shmp_range_unlock(&r1, 0), 0);
    CHECK_RC(shmp_range_lock(&w, 0, 1), EAGAIN);
    shmp_detach(&r2); /* detaching drops its pins */
    CHECK_RC(shmp_range_lock(&w, 0, 1), 0);
    CHECK_RC(shmp_range_unlock(&w, 0), 0);
    CHECK_RC(shmp_range_unlock(&w, 1), 0);
    CHECK_RC(shmp_range_lock(&r1, 1, 0), 0);
    shmp_detach(&r1);
    shmp_detach(&w);
}

/* Native names: the core's one rule (at most SHMP_NAME_MAX bytes), and the
 * Windows error table in compat.h. */
static void test_names_and_errors(void) {
    char name[SHMP_NAME_MAX + 8];
    CHECK(shmp_dir() == NULL); /* sections are not files */
    CHECK_RC(shmp_name_check("Local\\shmimage_0123"), 0);
    CHECK_RC(shmp_name_check(""), EINVAL);
    memset(name, 'x', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    CHECK_RC(shmp_name_check(name), ENAMETOOLONG);
    shmp_seg s;
    CHECK_RC(shmp_attach(&s, name, 1), ENAMETOOLONG);
    CHECK(shmc_errno_of(ERROR_COMMITMENT_LIMIT) == ENOMEM);
    CHECK(shmc_errno_of(ERROR_NOT_ENOUGH_MEMORY) == ENOMEM);
    CHECK(shmc_errno_of(ERROR_DISK_FULL) == ENOSPC);
    CHECK(shmc_errno_of(ERROR_FILE_NOT_FOUND) == ENOENT);
    CHECK(shmc_errno_of(WAIT_TIMEOUT) == ETIMEDOUT);
}

/* A section larger than the commit charge left is refused before it is
 * made, saying why. */
static void test_admission_refuses_beyond_commit(void) {
    shmp_admission a;
    CHECK_RC(shmp_headroom_at("", NULL, &a), 0);
    CHECK(a.bound == SHMP_BOUND_MEMORY);
    CHECK(strcmp(a.what, "available commit charge") == 0);
    shmp_seg s;
    CHECK_RC(shmp_build(&s, a.available + ((uint64_t)1 << 30), 0, 0, "k", 1), ENOMEM);
    CHECK(s.map_handle == NULL && s.base == NULL);
    shmp_admission last;
    shmp_last_admission(&last);
    CHECK(last.bound == SHMP_BOUND_MEMORY && last.asked > last.available);
    CHECK_RC(shmp_build(&s, 1 << 20, 0, 0, "k", 1), 0);
    shmp_discard(&s);
}

static void test_remove(void) {
    char name[SHMP_NAME_MAX];
    unique_name(name, sizeof name, "rm");
    shmp_seg a, b;
    shmp_probe_info info;
    CHECK_RC(make_segment(&a, name, 64), 0);
    CHECK_RC(shmp_probe(name, 1, &info), 0);
    CHECK(info.ours && !info.stale && !info.reclaimed && info.data_size == 64);
    CHECK(strcmp(info.key, "key") == 0);
    memcpy(shmp_data(&a), "kept", 5);
    CHECK_RC(shmp_remove(name), 0);
    CHECK_RC(shmp_attach(&b, name, 1), ENOENT);
    CHECK_RC(shmp_probe(name, 1, &info), ENOENT);
    CHECK_RC(shmp_remove(name), ENOENT);
    CHECK(memcmp(shmp_data(&a), "kept", 5) == 0); /* holders keep their mapping */
    CHECK(shmp_hdr(&a)->flags & SHMP_FLAG_SUPERSEDED);
    shmp_detach(&a);
    CHECK_RC(make_segment(&a, name, 64), 0);
    shmp_detach(&a);
}

static void test_build_keeps_address(void) {
    char name[SHMP_NAME_MAX];
    unique_name(name, sizeof name, "addr");
    shmp_seg s, b;
    CHECK_RC(shmp_build(&s, 3 * 4096 + 10, 4096, 0, "k", 1), 0);
    unsigned char *before = s.base;
    memcpy(shmp_data(&s), "control", 8);
    CHECK_RC(shmp_reserve(&s, SHMP_HEADER_SIZE + 2 * 4096, 4096, 2), 0);
    memcpy(shmp_data(&s) + 2 * 4096, "slot", 5);
    CHECK_RC(shmp_attach(&b, name, 1), ENOENT); /* not visible before link */
    CHECK_RC(shmp_link(&s, name), 0);
    CHECK(s.base == before);
    CHECK_RC(shmp_attach(&b, name, 1), 0);
    CHECK(memcmp(shmp_data(&b), "control", 8) == 0);
    CHECK(memcmp(shmp_data(&b) + 2 * 4096, "slot", 5) == 0);
    CHECK(shmp_hdr(&b)->reserved0 == 0 && shmp_hdr(&b)->state == SHMP_STATE_READY);
    memcpy(shmp_data(&s) + 4096, "shared", 7);
    CHECK(memcmp(shmp_data(&b) + 4096, "shared", 7) == 0);
    CHECK_RC(shmp_swap(&b, &s), ENOTSUP);
    shmp_nap();
    char copied[8] = {0};
    shmp_copy(copied, shmp_data(&b), 8, 2);
    CHECK(memcmp(copied, "control", 8) == 0);
    CHECK_RC(shmp_reserve(&b, 0, b.map_size + 1, 1), EINVAL);
    shmp_detach(&b);
    shmp_detach(&s);
}

#define BUMPS 100000

static DWORD WINAPI bump_word(LPVOID p) {
    for (int i = 0; i < BUMPS; i++) shmc_add_u32((volatile uint32_t *)p, 1);
    return 0;
}

/* compat.h's atomics on a shared word, from two threads, and the header
 * flags read without the mutex. (frames.c's Interlocked branch is compiled
 * by the portability check with FRM_FORCE_INTERLOCKED.) */
static void test_atomics(void) {
    static volatile uint32_t word;
    shmc_store_u32(&word, 0);
    CHECK(shmc_load_u32(&word) == 0);
    uint32_t flags = 6;
    CHECK(shmp_load_flags(&flags) == 6);
    HANDLE t[2];
    for (int i = 0; i < 2; i++) t[i] = CreateThread(NULL, 0, bump_word, (LPVOID)&word, 0, NULL);
    CHECK(t[0] != NULL && t[1] != NULL);
    WaitForMultipleObjects(2, t, TRUE, CHILD_TIMEOUT_MS);
    CloseHandle(t[0]);
    CloseHandle(t[1]);
    CHECK(shmc_load_u32(&word) == 2u * BUMPS); /* no increment lost */
}

static const check_test tests[] = {
    CHECK_TEST(test_create_attach),
    CHECK_TEST(test_bad_input),
    CHECK_TEST(test_foreign_sections),
    CHECK_TEST(test_lifetime),
    CHECK_TEST(test_lifetime_killed_holder),
    CHECK_TEST(test_leave_keeps_mapping),
    CHECK_TEST(test_lock),
    CHECK_TEST(test_lock_other_thread),
    CHECK_TEST(test_lock_excludes_across_processes),
    CHECK_TEST(test_abandoned_lock),
    CHECK_TEST(test_wait_wake),
    CHECK_TEST(test_pins),
    CHECK_TEST(test_names_and_errors),
    CHECK_TEST(test_admission_refuses_beyond_commit),
    CHECK_TEST(test_remove),
    CHECK_TEST(test_build_keeps_address),
    CHECK_TEST(test_atomics),
};

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "child")) return run_child(argv[2], argv[3]);
    return check_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL);
}
