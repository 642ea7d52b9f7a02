/* Waiting for a segment name to appear, without polling where the OS can
 * tell: inotify on the segment directory on Linux, kqueue (EVFILT_VNODE) on
 * it on macOS, a per-key named event on Windows (set by the creator, see
 * kw_announce); elsewhere a sleep of at most KW_POLL_NS between looks. A
 * waiter can be woken from another thread (kw_cancel), for good.
 *
 * Callers look for the name after kw_open, then after every kw_wait,
 * whatever it returned: a sign can be spurious, and on Windows another
 * waiter of the same key can reset the event between a creator's signal
 * and this waiter's wake, so slice long waits (the Cython caller looks
 * every 100 ms).
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
    void *appear_event; /* "<name>_appear": see kw_announce */
#else
    int watch_fd;  /* inotify or kqueue descriptor, -1 where there is none */
    int dir_fd;    /* the directory kqueue watches, -1 elsewhere */
    int cancel_rd; /* a pipe written by kw_cancel */
    int cancel_wr;
#endif
    char name[72]; /* the native name without its leading '/' */
} kw_watch;

/* Starts watching for `name` (a native segment name). Open the watch
 * before the first look, so a name created in between is not missed. */
int kw_open(kw_watch *w, const char *name);
/* Sleeps until `name` may have appeared (0: look again), at most
 * timeout_ns (-1: no limit where there is a watch, one poll interval where
 * there is none; ETIMEDOUT when it passed with no sign), or ECANCELED after
 * kw_cancel. */
int kw_wait(kw_watch *w, int64_t timeout_ns);
int kw_cancel(kw_watch *w);
void kw_close(kw_watch *w);

/* The creator's side: `name` (a native segment name) has appeared or has
 * its first frame. Windows sets the key's named event when a waiter holds
 * it open; elsewhere the directory watch sees the name, so it does nothing. */
#if defined(_WIN32)
int kw_announce(const char *name);
#else
static inline int kw_announce(const char *name) {
    (void)name;
    return 0;
}
#endif

#endif
