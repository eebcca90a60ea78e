/* SPDX-License-Identifier: MIT */
/*
 * sys/event.h - FreeBSD's kevent(2) API for the kqueue test double.
 *
 * On Linux there is no kqueue; tests/kqueue/kqueue.c emulates it over epoll
 * and eventfd so the kqueue backend builds and runs its tests here. The
 * layout, constants and macro are FreeBSD's; the double implements the part
 * the backend uses, with the semantics of FreeBSD's kevent(2) man page:
 *
 * Filters: EVFILT_READ and EVFILT_WRITE on any pollable fd (sockets, pipes,
 * FIFOs, eventfds; epoll refuses regular files: EPERM), each filter of an fd
 * its own knote with its own udata; EVFILT_USER with NOTE_TRIGGER and the
 * NOTE_FF* fflags operations. Any other filter: EINVAL.
 *
 * Flags: EV_ADD, EV_DELETE, EV_ENABLE, EV_DISABLE, EV_CLEAR, EV_ONESHOT,
 * EV_DISPATCH, EV_RECEIPT and EV_KEEPUDATA are supported; level-triggered
 * knotes (no EV_CLEAR) too. EV_FORCEONESHOT and unknown bits: EINVAL.
 * As on FreeBSD, a change to an existing knote replaces udata (unless
 * EV_KEEPUDATA) and re-checks its condition, while the EV_CLEAR, EV_ONESHOT
 * and EV_DISPATCH a knote was created with stay; EV_ADD also clears a sticky
 * EV_EOF. A queued knote's condition is checked again when it is delivered,
 * so an event whose data was consumed meanwhile is dropped, not reported.
 * Both filters of an fd share one epoll registration, which EV_ADD re-arms:
 * adding one filter may report the other (EV_CLEAR too) again if its
 * condition holds, as a new edge would.
 *
 * Returned data: EVFILT_READ gives the bytes readable (FIONREAD), for a
 * listening TCP socket the accept queue length (1 for other listeners);
 * EVFILT_WRITE the room in the send buffer (SO_SNDBUF - SIOCOUTQ), for a
 * pipe its free space, else 1. EV_EOF: on EVFILT_READ when the peer closed
 * or reset, on EVFILT_WRITE when the fd can take no more data; it stays on
 * the knote until EV_ADD or EV_DELETE. fflags is always 0 with EV_EOF:
 * Linux has no way to read SO_ERROR without clearing it.
 *
 * Errors in the changelist, EV_RECEIPT and their effect on the return value
 * are FreeBSD's: an EV_ERROR entry (data = errno, or 0 for a receipt) when
 * there is room, else -1/errno and the rest of the changes are not applied;
 * a call that returned any EV_ERROR entry returns no events. The errors:
 * EBADF (fd not open), ENOENT (no such knote), EINVAL (filter or flags).
 *
 * close(): programs linked with the double get -Wl,--wrap=close (the CMake
 * target's INTERFACE link option); the wrapper drops the fd's knotes from
 * every kqueue, and closing a kqueue frees it. An fd closed another way
 * (a raw syscall, a close inside a shared library, dup2() onto it) leaves
 * stale knotes; a later EV_ADD of the same number still works. As on FreeBSD
 * a fork()ed child has no kqueues: the double closes the child's copies.
 * A kqueue is an epoll fd: do not dup() it, nor close it while another
 * thread waits in kevent(). What a kernel keeps lives here in the process's
 * heap: about 200 bytes per fd with knotes, which heap-measuring tests see.
 */
#ifndef PROACT_KQUEUE_DOUBLE_SYS_EVENT_H
#define PROACT_KQUEUE_DOUBLE_SYS_EVENT_H

#include <stdint.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Lets code tell the double from a real kernel. */
#define PROACT_KQUEUE_DOUBLE 1

struct kevent {
	uintptr_t ident;      /* identifier for this event */
	short filter;         /* filter for event */
	unsigned short flags; /* action flags for kqueue */
	unsigned int fflags;  /* filter flag value */
	int64_t data;         /* filter data value */
	void *udata;          /* opaque user data identifier */
	uint64_t ext[4];      /* extensions */
};

#define EV_SET(kevp, a, b, c, d, e, f)                                                             \
	do {                                                                                       \
		struct kevent *ev_set_kevp_ = (kevp);                                              \
		ev_set_kevp_->ident = (a);                                                         \
		ev_set_kevp_->filter = (b);                                                        \
		ev_set_kevp_->flags = (c);                                                         \
		ev_set_kevp_->fflags = (d);                                                        \
		ev_set_kevp_->data = (e);                                                          \
		ev_set_kevp_->udata = (f);                                                         \
		ev_set_kevp_->ext[0] = 0;                                                          \
		ev_set_kevp_->ext[1] = 0;                                                          \
		ev_set_kevp_->ext[2] = 0;                                                          \
		ev_set_kevp_->ext[3] = 0;                                                          \
	} while (0)

/* Filters (FreeBSD's numbers; the double supports READ, WRITE and USER). */
#define EVFILT_READ     (-1)
#define EVFILT_WRITE    (-2)
#define EVFILT_AIO      (-3)
#define EVFILT_VNODE    (-4)
#define EVFILT_PROC     (-5)
#define EVFILT_SIGNAL   (-6)
#define EVFILT_TIMER    (-7)
#define EVFILT_PROCDESC (-8)
#define EVFILT_FS       (-9)
#define EVFILT_LIO      (-10)
#define EVFILT_USER     (-11)
#define EVFILT_SENDFILE (-12)
#define EVFILT_EMPTY    (-13)
#define EVFILT_SYSCOUNT 13

/* Actions */
#define EV_ADD          0x0001 /* add event to kq (implies enable) */
#define EV_DELETE       0x0002 /* delete event from kq */
#define EV_ENABLE       0x0004 /* enable event */
#define EV_DISABLE      0x0008 /* disable event (not reported) */
#define EV_FORCEONESHOT 0x0100 /* enable _ONESHOT and force trigger */
#define EV_KEEPUDATA    0x0200 /* do not update the udata field */

/* Flags */
#define EV_ONESHOT  0x0010 /* only report one occurrence */
#define EV_CLEAR    0x0020 /* clear event state after reporting */
#define EV_RECEIPT  0x0040 /* force EV_ERROR on success, data=0 */
#define EV_DISPATCH 0x0080 /* disable event after reporting */

#define EV_SYSFLAGS 0xF000 /* reserved by system */
#define EV_DROP     0x1000 /* note should be dropped */
#define EV_FLAG1    0x2000 /* filter-specific flag */
#define EV_FLAG2    0x4000 /* filter-specific flag */

/* Returned values */
#define EV_EOF   0x8000 /* EOF detected */
#define EV_ERROR 0x4000 /* error, data contains errno */

/* EVFILT_USER: fflags operations on input, and the trigger. */
#define NOTE_FFNOP      0x00000000 /* ignore input fflags */
#define NOTE_FFAND      0x40000000 /* AND fflags */
#define NOTE_FFOR       0x80000000 /* OR fflags */
#define NOTE_FFCOPY     0xc0000000 /* copy fflags */
#define NOTE_FFCTRLMASK 0xc0000000 /* masks for operations */
#define NOTE_FFLAGSMASK 0x00ffffff
#define NOTE_TRIGGER    0x01000000 /* Cause the event to be triggered for output. */

/* EVFILT_READ, EVFILT_WRITE: accepted and ignored by the double. */
#define NOTE_LOWAT 0x0001 /* low water mark */

int kqueue(void);
int kevent(int kq, const struct kevent *changelist, int nchanges, struct kevent *eventlist,
           int nevents, const struct timespec *timeout);

#ifdef __cplusplus
}
#endif

#endif
