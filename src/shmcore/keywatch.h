/* Waiting for a segment name to appear, without polling where the OS can
 * tell: inotify on the segment directory on Linux; elsewhere a sleep of at
 * most KW_POLL_NS between looks. A waiter can be woken from another thread
 * (kw_cancel), for good.
 *
 * Every function returns 0 or an errno value.
 */
#ifndef SHM_KEYWATCH_H
#define SHM_KEYWATCH_H

#include <stdint.h>

#define KW_POLL_NS 20000000LL /* where there is no watcher: look every 20 ms */

typedef struct kw_watch {
#if defined(_WIN32)
    void *cancel_event;
#else
    int watch_fd;  /* inotify descriptor, -1 where there is none */
    int cancel_rd; /* a pipe written by kw_cancel */
    int cancel_wr;
#endif
    char name[72]; /* the native name without its leading '/' */
} kw_watch;

/* Starts watching for `name` (a native segment name). Open the watch
 * before the first look, so a name created in between is not missed. */
int kw_open(kw_watch *w, const char *name);
/* Sleeps until `name` may have appeared (0: look again), at most
 * timeout_ns (-1: one poll interval; ETIMEDOUT when it passed with no
 * sign), or ECANCELED after kw_cancel. */
int kw_wait(kw_watch *w, int64_t timeout_ns);
int kw_cancel(kw_watch *w);
void kw_close(kw_watch *w);

#endif
