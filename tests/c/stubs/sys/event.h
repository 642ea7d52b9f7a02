/* Declarations only: the part of BSD/macOS <sys/event.h> that keywatch.c
 * uses, with macOS's values, so that its kqueue branch can be compiled
 * (type-checked) on Linux, where no kqueue exists. Nothing built with it
 * is run: on macOS the system header is used. */
#ifndef KW_STUB_SYS_EVENT_H
#define KW_STUB_SYS_EVENT_H

#include <stdint.h>
#include <time.h>

struct kevent {
    uintptr_t ident;
    int16_t filter;
    uint16_t flags;
    uint32_t fflags;
    intptr_t data;
    void *udata;
};

#define EVFILT_VNODE (-4)
#define EV_ADD 0x0001
#define EV_CLEAR 0x0020
#define NOTE_WRITE 0x00000002
#define NOTE_EXTEND 0x00000004

#define EV_SET(kevp, a, b, c, d, e, f)         \
    do {                                       \
        struct kevent *kev_ = (kevp);          \
        kev_->ident = (uintptr_t)(a);          \
        kev_->filter = (int16_t)(b);           \
        kev_->flags = (uint16_t)(c);           \
        kev_->fflags = (uint32_t)(d);          \
        kev_->data = (intptr_t)(e);            \
        kev_->udata = (f);                     \
    } while (0)

int kqueue(void);
int kevent(int kq, const struct kevent *changelist, int nchanges, struct kevent *eventlist,
           int nevents, const struct timespec *timeout);

#endif
