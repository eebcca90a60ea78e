/* SPDX-License-Identifier: MIT */
/*
 * kqueue.c - the readiness backend of the BSDs and macOS: kqueue.
 *
 * Each fd gets an EVFILT_READ and an EVFILT_WRITE knote, both EV_CLEAR
 * (edge-triggered, as on epoll), added once at registration. The changes of
 * a round are not a system call each: they wait in a changelist that goes to
 * the kernel with the kevent() call that also waits for events. The bytes
 * move in ready.c exactly as on epoll.
 *
 * A knote carries the registration's generation in udata; its ident is the
 * fd number. close() drops an fd's knotes by itself, and an event that was
 * already queued for a number since reused is recognized by the generation.
 * A change the kernel refused (an EV_ERROR entry) fails the fd's waiting
 * requests with that errno; the next request that must wait adds the knotes
 * again.
 *
 * Wake-ups: EVFILT_USER where the headers have it, else a self-pipe.
 */
#include <sys/types.h> /* before sys/event.h, which older BSDs need */

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/event.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "../internal.h"

#define EVENTS_PER_POLL 512
#define CHANGES_INITIAL 64

#if defined(EVFILT_USER) && !defined(PROACT_KQUEUE_WAKE_PIPE)
#define WAKE_BY_USER_EVENT 1
#define WAKE_IDENT         1
#endif

/* The registration was refused by the kernel: add it again before waiting. */
#define F_UNWATCHED PROACT__F_BACKEND

struct changelist {
	struct kevent *v;
	int n, cap;
};

struct kq_state {
	int kq;
	int wake_rd, wake_wr; /* the self-pipe, where there is no EVFILT_USER */
	/* Changes made since the last kevent() call. The waiting thread swaps it
	   with `sent` and gives that to the kernel without the lock, while other
	   threads go on adding to this one. */
	struct changelist pending, sent;
	struct kevent events[EVENTS_PER_POLL];
};

static struct kq_state *state(struct proact_watcher *w)
{
	return w->bstate;
}

static void *udata_of(uint32_t gen)
{
	return (void *)(uintptr_t)gen;
}

static uint32_t gen_of(const struct kevent *ev)
{
	return (uint32_t)(uintptr_t)ev->udata;
}

static int wake_setup(struct kq_state *s)
{
	struct kevent ev;
#ifdef WAKE_BY_USER_EVENT
	EV_SET(&ev, WAKE_IDENT, EVFILT_USER, EV_ADD | EV_CLEAR, 0, 0, NULL);
#else
	int p[2];
	if (pipe(p) != 0)
		return -errno;
	s->wake_rd = p[0];
	s->wake_wr = p[1];
	if (proact__nonblock_cloexec(p[0]) != 0 || proact__nonblock_cloexec(p[1]) != 0)
		return -errno;
	EV_SET(&ev, (uintptr_t)s->wake_rd, EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, NULL);
#endif
	return kevent(s->kq, &ev, 1, NULL, 0, NULL) == 0 ? 0 : -errno;
}

static void state_free(struct kq_state *s)
{
	if (s->kq >= 0)
		close(s->kq);
	if (s->wake_rd >= 0)
		close(s->wake_rd);
	if (s->wake_wr >= 0)
		close(s->wake_wr);
	free(s->pending.v);
	free(s->sent.v);
	free(s);
}

static int kq_init(struct proact_watcher *w)
{
	struct kq_state *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->wake_rd = s->wake_wr = -1;
	s->kq = kqueue();
	int rc = s->kq < 0 || fcntl(s->kq, F_SETFD, FD_CLOEXEC) != 0 ? -errno : wake_setup(s);
	if (rc) {
		state_free(s);
		return rc;
	}
	w->park_reads = true;
	w->bstate = s;
	return 0;
}

static void kq_destroy(struct proact_watcher *w)
{
	state_free(state(w));
	w->bstate = NULL;
}

/* Room for n more changes; the list grows with the registrations of a round. */
static int changes_reserve(struct changelist *c, int n)
{
	if (c->n + n <= c->cap)
		return 0;
	int cap = c->cap ? c->cap * 2 : CHANGES_INITIAL;
	if (cap < c->n + n)
		cap = c->n + n;
	struct kevent *v = realloc(c->v, (size_t)cap * sizeof(*v));
	if (!v)
		return -ENOMEM;
	c->v = v;
	c->cap = cap;
	return 0;
}

static int watch(struct kq_state *s, struct proact__fd *f)
{
	if (changes_reserve(&s->pending, 2) != 0)
		return -ENOMEM;
	struct kevent *k = &s->pending.v[s->pending.n];
	EV_SET(&k[0], (uintptr_t)f->fd, EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, udata_of(f->gen));
	EV_SET(&k[1], (uintptr_t)f->fd, EVFILT_WRITE, EV_ADD | EV_CLEAR, 0, 0, udata_of(f->gen));
	s->pending.n += 2;
	return 0;
}

static int kq_fd_add(struct proact_watcher *w, struct proact__fd *f)
{
	return watch(state(w), f);
}

/* Drops the changes of fd that have not reached the kernel yet. */
static void changes_forget(struct changelist *c, int fd)
{
	int k = 0;
	for (int i = 0; i < c->n; i++)
		if (c->v[i].ident != (uintptr_t)fd)
			c->v[k++] = c->v[i];
	c->n = k;
}

static void kq_fd_remove(struct proact_watcher *w, struct proact__fd *f)
{
	struct kq_state *s = state(w);
	changes_forget(&s->pending, f->fd);
	if (!(f->flags & PROACT__F_DETACH))
		return; /* close() drops the knotes */
	/* The fd goes back to the program open: take the knotes out now. With
	   EV_RECEIPT the answers (ENOENT if the add never reached the kernel)
	   come back here and no pending event is taken from the queue. */
	struct kevent del[2], ans[2];
	EV_SET(&del[0], (uintptr_t)f->fd, EVFILT_READ, EV_DELETE | EV_RECEIPT, 0, 0, NULL);
	EV_SET(&del[1], (uintptr_t)f->fd, EVFILT_WRITE, EV_DELETE | EV_RECEIPT, 0, 0, NULL);
	struct timespec zero = {0, 0};
	(void)kevent(s->kq, del, 2, ans, 2, &zero);
}

/* After a refused registration, a request that must wait adds it again. */
static ssize_t rewatch(struct proact_watcher *w, struct proact__fd *f, ssize_t n)
{
	if (n == PROACT__WAIT && (f->flags & F_UNWATCHED)) {
		if (watch(state(w), f) != 0)
			return -ENOMEM;
		f->flags &= (uint16_t)~F_UNWATCHED;
	}
	return n;
}

static ssize_t kq_io(struct proact_watcher *w, struct proact__fd *f, int dir, struct proact__req *r)
{
	return rewatch(w, f, proact__ready_io(w, f, dir, r));
}

static ssize_t kq_arm_read(struct proact_watcher *w, struct proact__fd *f)
{
	return rewatch(w, f, PROACT__WAIT); /* the knote reports the next edge */
}

static void wake_drained(struct proact_watcher *w)
{
#ifndef WAKE_BY_USER_EVENT
	char buf[64];
	while (read(state(w)->wake_rd, buf, sizeof(buf)) > 0)
		;
#endif
	w->wake_sent = false;
}

static bool is_wakeup(const struct kq_state *s, const struct kevent *ev)
{
#ifdef WAKE_BY_USER_EVENT
	(void)s;
	return ev->filter == EVFILT_USER;
#else
	return ev->filter == EVFILT_READ && ev->ident == (uintptr_t)s->wake_rd;
#endif
}

/* The kernel refused a knote of f. Some refuse EVFILT_WRITE on a pipe whose
   reader is gone (EPIPE, or EBADF on NetBSD): a write then tells its own
   error, and the reads still get their data and the EOF. Otherwise what
   waits on that side would wait forever: it fails with the errno, and the
   next request that must wait adds the knotes again. */
static void refused(struct proact_watcher *w, struct proact__fd *f, int dir, int err)
{
	if (dir == PROACT__WR && (err == EPIPE || err == EBADF) && !(f->flags & F_UNWATCHED)) {
		f->ready[PROACT__WR] = 1;
		if (f->head[PROACT__WR])
			proact__progress(w, f, PROACT__WR);
		return;
	}
	f->flags |= F_UNWATCHED;
	proact__fd_fail(w, f, dir, err);
}

static void dispatch(struct proact_watcher *w, const struct kevent *ev)
{
	if (is_wakeup(state(w), ev)) {
		if (!(ev->flags & EV_ERROR))
			wake_drained(w);
		return;
	}
	if (ev->ident > (uintptr_t)INT32_MAX)
		return;
	struct proact__fd *f = proact__fd_lookup(w, (int)ev->ident);
	if (!f || f->state != PROACT__FD_ACTIVE || f->gen != gen_of(ev))
		return; /* an event of a registration that is gone */
	if (ev->filter != EVFILT_READ && ev->filter != EVFILT_WRITE)
		return;
	int dir = ev->filter == EVFILT_READ ? PROACT__RD : PROACT__WR;
	if (ev->flags & EV_ERROR) {
		if (ev->data != 0) /* 0: a receipt, not a failure */
			refused(w, f, dir, (int)ev->data);
		return;
	}
	/* EV_EOF: the peer closed or the socket failed. Reads go on until they
	   see the EOF or the error themselves; a write learns it from send(). */
	if (dir == PROACT__RD && (ev->flags & EV_EOF))
		f->flags |= PROACT__F_RDHUP;
	f->ready[dir] = 1;
	if (f->head[dir] || (dir == PROACT__RD && (f->flags & PROACT__F_PARKED)))
		proact__progress(w, f, dir);
}

static struct timespec *timeout_of(int64_t timeout_ns, struct timespec *ts)
{
	if (timeout_ns < 0)
		return NULL;
	ts->tv_sec = (time_t)(timeout_ns / 1000000000);
	ts->tv_nsec = (long)(timeout_ns % 1000000000);
	return ts;
}

/* One kevent() call: the changes in `sent`, then events. The lock is let go
   only for a call that may block. */
static int kq_call(struct proact_watcher *w, const struct kevent *changes, int n,
                   int64_t timeout_ns)
{
	struct kq_state *s = state(w);
	struct timespec ts;
	bool sleeps = timeout_ns != 0;
	w->stats.kernel_waits++; /* under the lock, which a sleeper lets go */
	if (sleeps) {
		w->sleeping = true;
		proact__unlock(w);
	}
	int got =
	    kevent(s->kq, changes, n, s->events, EVENTS_PER_POLL, timeout_of(timeout_ns, &ts));
	int err = errno;
	if (sleeps) {
		proact__lock(w);
		w->sleeping = false;
	}
	if (got < 0)
		return -err;
	for (int i = 0; i < got && !w->closed; i++)
		dispatch(w, &s->events[i]);
	return got;
}

/* A kevent() call failed as a whole (not EINTR, after which every change
   was applied): its changes and the rest go again, before newer ones.
   Adding a knote twice is harmless. */
static void changes_requeue(struct kq_state *s, const struct kevent *v, int n)
{
	if (changes_reserve(&s->pending, n) != 0)
		return; /* no memory: the fds' next requests add them again */
	memmove(s->pending.v + n, s->pending.v, (size_t)s->pending.n * sizeof(*v));
	memcpy(s->pending.v, v, (size_t)n * sizeof(*v));
	s->pending.n += n;
}

static int kq_poll(struct proact_watcher *w, int64_t timeout_ns)
{
	struct kq_state *s = state(w);
	struct changelist batch = s->pending;
	s->pending = s->sent;
	s->pending.n = 0;
	s->sent = batch;
	/* A refused change needs a slot in the event list to be told: a long
	   changelist goes in slices no longer than that list, without waiting. */
	int off = 0, n, rc = 0;
	for (;;) {
		bool last = batch.n - off <= EVENTS_PER_POLL;
		n = last ? batch.n - off : EVENTS_PER_POLL;
		const struct kevent *changes = n ? batch.v + off : NULL; /* v is NULL until used */
		rc = kq_call(w, changes, n, last && !w->closed ? timeout_ns : 0);
		if (rc < 0 || last)
			break;
		off += n;
	}
	if (rc < 0 && rc != -EINTR && !w->closed && off < batch.n)
		changes_requeue(s, batch.v + off, batch.n - off);
	return rc;
}

static void kq_wakeup(struct proact_watcher *w)
{
	struct kq_state *s = state(w);
#ifdef WAKE_BY_USER_EVENT
	struct kevent ev;
	EV_SET(&ev, WAKE_IDENT, EVFILT_USER, 0, NOTE_TRIGGER, 0, NULL);
	(void)kevent(s->kq, &ev, 1, NULL, 0, NULL);
#else
	char one = 1;
	ssize_t rc = write(s->wake_wr, &one, 1);
	(void)rc; /* a full pipe still wakes the poll */
#endif
}

const struct proact__backend proact__backend_kqueue = {
    .name = "kqueue",
    .init = kq_init,
    .destroy = kq_destroy,
    .fd_add = kq_fd_add,
    .fd_remove = kq_fd_remove,
    .io = kq_io,
    .send_now = proact__ready_send, /* WAIT: the queued write rewatches if it must */
    .arm_read = kq_arm_read,
    .cancel = NULL, /* nothing of a request is ever in the kernel */
    .poll = kq_poll,
    .wakeup = kq_wakeup,
    .quiesce = NULL,
    .pool_recycle = NULL,
};
