/* Waiting for a segment name to appear: see keywatch.h. */
#if !defined(_WIN32) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* pipe2 */
#endif
#include "keywatch.h"

#include <errno.h>
#include <string.h>

#if defined(_WIN32)
#include <windows.h>

int kw_open(kw_watch *w, const char *name) {
    memset(w, 0, sizeof *w);
    strncpy(w->name, name[0] == '/' ? name + 1 : name, sizeof w->name - 1);
    w->cancel_event = CreateEventW(NULL, TRUE, FALSE, NULL);
    return w->cancel_event ? 0 : ENOMEM;
}

int kw_wait(kw_watch *w, int64_t timeout_ns) {
    int64_t ns = (timeout_ns < 0 || timeout_ns > KW_POLL_NS) ? KW_POLL_NS : timeout_ns;
    DWORD rc = WaitForSingleObject((HANDLE)w->cancel_event, (DWORD)(ns / 1000000));
    if (rc == WAIT_OBJECT_0) return ECANCELED;
    return 0; /* look again: no per-name event is created by the writer yet */
}

int kw_cancel(kw_watch *w) { return SetEvent((HANDLE)w->cancel_event) ? 0 : EINVAL; }

void kw_close(kw_watch *w) {
    if (w->cancel_event) CloseHandle((HANDLE)w->cancel_event);
    w->cancel_event = NULL;
}

#else
#include <fcntl.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/inotify.h>
#endif

/* The platform layer's segment directory (shm_posix.c: SHM_DIR). Under
 * SHMP_PORTABLE segments live elsewhere and this falls back to polling. */
#if defined(__linux__) && !defined(SHMP_PORTABLE)
#define KW_DIR "/dev/shm"
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

int kw_open(kw_watch *w, const char *name) {
    int fds[2];
    memset(w, 0, sizeof *w);
    w->watch_fd = w->cancel_rd = w->cancel_wr = -1;
    strncpy(w->name, name[0] == '/' ? name + 1 : name, sizeof w->name - 1);
    if (pipe_cloexec(fds) != 0) return errno;
    w->cancel_rd = fds[0];
    w->cancel_wr = fds[1];
#if defined(KW_DIR)
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd >= 0 && inotify_add_watch(fd, KW_DIR, IN_CREATE | IN_MOVED_TO) < 0) {
        close(fd);
        fd = -1;
    }
    w->watch_fd = fd; /* none (limits reached): poll */
#endif
    return 0;
}

#if defined(KW_DIR)
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
#endif

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
#if defined(KW_DIR)
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
    if (w->cancel_rd >= 0) close(w->cancel_rd);
    if (w->cancel_wr >= 0) close(w->cancel_wr);
    w->watch_fd = w->cancel_rd = w->cancel_wr = -1;
}
#endif
