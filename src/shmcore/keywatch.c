/* Waiting for a segment name to appear: see keywatch.h. */
#if !defined(_WIN32) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* pipe2 */
#endif
#include "keywatch.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#if defined(_WIN32)
#include <windows.h>

#define KW_WNAME_MAX 160

/* Beside a segment's own objects (shm_win32.c): "<name>_appear", a
 * manual-reset event. A waiter opens it (creating it) before its first
 * look; the creator sets it, when a waiter holds it open, as the segment
 * appears and as its first frame is published. A woken waiter resets it
 * before it looks again. */
static int appear_name(wchar_t *out, const char *name) {
    char buf[KW_WNAME_MAX];
    if (snprintf(buf, sizeof buf, "%s_appear", name) >= (int)sizeof buf) return ENAMETOOLONG;
    return MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, buf, -1, out, KW_WNAME_MAX) ? 0
                                                                                         : EINVAL;
}

int kw_open(kw_watch *w, const char *name) {
    wchar_t wname[KW_WNAME_MAX];
    memset(w, 0, sizeof *w);
    strncpy(w->name, name, sizeof w->name - 1);
    w->cancel_event = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (!w->cancel_event) return ENOMEM;
    /* No event (a name too long, or taken by another kind of object): poll. */
    if (appear_name(wname, w->name) == 0)
        w->appear_event = CreateEventW(NULL, TRUE, FALSE, wname);
    return 0;
}

int kw_wait(kw_watch *w, int64_t timeout_ns) {
    HANDLE both[2] = {(HANDLE)w->cancel_event, (HANDLE)w->appear_event};
    if (!both[1]) {
        int64_t ns = (timeout_ns < 0 || timeout_ns > KW_POLL_NS) ? KW_POLL_NS : timeout_ns;
        DWORD rc = WaitForSingleObject(both[0], (DWORD)(ns / 1000000));
        return rc == WAIT_OBJECT_0 ? ECANCELED : 0; /* the poll interval passed: look */
    }
    DWORD ms = INFINITE;
    if (timeout_ns >= 0) {
        int64_t m = (timeout_ns + 999999) / 1000000;
        ms = m >= (int64_t)INFINITE ? INFINITE - 1 : (DWORD)m;
    }
    DWORD rc = WaitForMultipleObjects(2, both, FALSE, ms); /* the lowest index wins */
    if (rc == WAIT_OBJECT_0) return ECANCELED;
    if (rc == WAIT_OBJECT_0 + 1) {
        ResetEvent(both[1]); /* before the caller looks: a later sign is kept */
        return 0;
    }
    return rc == WAIT_TIMEOUT ? ETIMEDOUT : EINVAL;
}

int kw_cancel(kw_watch *w) { return SetEvent((HANDLE)w->cancel_event) ? 0 : EINVAL; }

void kw_close(kw_watch *w) {
    if (w->cancel_event) CloseHandle((HANDLE)w->cancel_event);
    if (w->appear_event) CloseHandle((HANDLE)w->appear_event);
    w->cancel_event = w->appear_event = NULL;
}

int kw_announce(const char *name) {
    wchar_t wname[KW_WNAME_MAX];
    if (appear_name(wname, name)) return 0;
    HANDLE h = OpenEventW(EVENT_MODIFY_STATE, FALSE, wname);
    if (!h) return 0; /* nobody waits for this key */
    SetEvent(h);
    CloseHandle(h);
    return 0;
}

#else
#include <fcntl.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>
#if defined(__APPLE__) || defined(KW_FORCE_KQUEUE)
/* macOS (KW_FORCE_KQUEUE: a Linux build against libkqueue's <sys/event.h>) */
#include <sys/event.h>
#define KW_KQUEUE 1
#elif defined(__linux__)
#include <sys/inotify.h>
#define KW_INOTIFY 1
#endif
#if defined(KW_INOTIFY) || defined(KW_KQUEUE)
#include "shm_platform.h" /* shmp_dir: where the platform layer keeps segments */
#endif

static int pipe_cloexec(int fds[2]) {
#if defined(__linux__)
    return pipe2(fds, O_CLOEXEC | O_NONBLOCK);
#else
    if (pipe(fds) != 0) return -1;
    for (int i = 0; i < 2; i++) {
        fcntl(fds[i], F_SETFD, FD_CLOEXEC);
        fcntl(fds[i], F_SETFL, O_NONBLOCK);
    }
    return 0;
#endif
}

#if defined(KW_INOTIFY)
/* A watch of the segment directory's new names; -1 when the limits say no. */
static void watch_dir(kw_watch *w) {
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd >= 0 && inotify_add_watch(fd, shmp_dir(), IN_CREATE | IN_MOVED_TO) < 0) {
        close(fd);
        fd = -1;
    }
    w->watch_fd = fd;
}

/* Drains the watch: 1 when one of the events names our segment. */
static int drain_names(kw_watch *w) {
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    int hit = 0;
    for (;;) {
        ssize_t n = read(w->watch_fd, buf, sizeof buf);
        if (n <= 0) return n < 0 && errno != EAGAIN ? 1 : hit; /* broken: look */
        for (char *p = buf; p < buf + n;) {
            struct inotify_event *e = (struct inotify_event *)p;
            if (e->len && strcmp(e->name, w->name) == 0) hit = 1;
            if (e->mask & IN_Q_OVERFLOW) hit = 1;
            p += sizeof *e + e->len;
        }
    }
}
#elif defined(KW_KQUEUE)
/* Segments are files in one directory (shm_posix.c's portable paths): a
 * name added to it is a write to the directory (EVFILT_VNODE NOTE_WRITE).
 * kqueue does not say which name, so every change is a sign to look. */
#if !defined(O_EVTONLY)
#define O_EVTONLY O_RDONLY /* macOS: a descriptor for events only */
#endif
static void watch_dir(kw_watch *w) {
    int dir = open(shmp_dir(), O_EVTONLY | O_CLOEXEC | O_DIRECTORY);
    int kq = dir >= 0 ? kqueue() : -1;
    struct kevent ev;
    EV_SET(&ev, dir, EVFILT_VNODE, EV_ADD | EV_CLEAR, NOTE_WRITE | NOTE_EXTEND, 0, NULL);
    if (kq >= 0 && kevent(kq, &ev, 1, NULL, 0, NULL) == 0) {
        fcntl(kq, F_SETFD, FD_CLOEXEC);
        w->watch_fd = kq;
        w->dir_fd = dir;
        return;
    }
    if (kq >= 0) close(kq);
    if (dir >= 0) close(dir);
}

static int drain_names(kw_watch *w) {
    struct kevent ev[8];
    struct timespec none = {0, 0};
    int n = kevent(w->watch_fd, NULL, 0, ev, 8, &none);
    return n != 0; /* a change, or a broken watch: look */
}
#endif

int kw_open(kw_watch *w, const char *name) {
    int fds[2];
    memset(w, 0, sizeof *w);
    w->watch_fd = w->dir_fd = w->cancel_rd = w->cancel_wr = -1;
    strncpy(w->name, name[0] == '/' ? name + 1 : name, sizeof w->name - 1);
    if (pipe_cloexec(fds) != 0) return errno;
    w->cancel_rd = fds[0];
    w->cancel_wr = fds[1];
#if defined(KW_INOTIFY) || defined(KW_KQUEUE)
    watch_dir(w); /* none (limits reached): poll */
#endif
    return 0;
}

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

int kw_wait(kw_watch *w, int64_t timeout_ns) {
    int watching = w->watch_fd >= 0;
    int64_t span = timeout_ns;
    if (!watching && (span < 0 || span > KW_POLL_NS)) span = KW_POLL_NS;
    int64_t end = span < 0 ? -1 : now_ns() + span;
    for (;;) {
        struct pollfd p[2] = {{w->cancel_rd, POLLIN, 0}, {w->watch_fd, POLLIN, 0}};
        int64_t left = end < 0 ? -1 : end - now_ns();
        if (left < 0 && end >= 0) left = 0;
        int ms = left < 0 ? -1 : (int)((left + 999999) / 1000000);
        int n = poll(p, watching ? 2 : 1, ms);
        if (n < 0) return errno;
        if (p[0].revents) return ECANCELED;
        if (!watching) return 0; /* the poll interval passed: look again */
#if defined(KW_INOTIFY) || defined(KW_KQUEUE)
        if (p[1].revents && drain_names(w)) return 0;
#endif
        if (n == 0 || (end >= 0 && now_ns() >= end)) return ETIMEDOUT;
    }
}

int kw_cancel(kw_watch *w) {
    char b = 1;
    return write(w->cancel_wr, &b, 1) == 1 || errno == EAGAIN ? 0 : errno;
}

void kw_close(kw_watch *w) {
    if (w->watch_fd >= 0) close(w->watch_fd);
    if (w->dir_fd >= 0) close(w->dir_fd);
    if (w->cancel_rd >= 0) close(w->cancel_rd);
    if (w->cancel_wr >= 0) close(w->cancel_wr);
    w->watch_fd = w->dir_fd = w->cancel_rd = w->cancel_wr = -1;
}
#endif
