/* SPDX-License-Identifier: MIT */
/*
 * epoll.c - the readiness backend: edge-triggered epoll.
 *
 * Each fd is added once, for both directions, edge-triggered. The backend
 * remembers per direction whether the last attempt could go on (f->ready) and
 * performs the read or write itself when the core hands it a head request, so
 * its completions look exactly like a completion backend's. A ready socket
 * costs no epoll round trip: a new request is tried at once.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../internal.h"

#define EVENTS_PER_POLL 512
#define WAKE_TOKEN      UINT64_MAX

struct epoll_state {
	int epfd;
	int evfd; /* other threads write it to end a blocked epoll_wait */
	struct epoll_event events[EVENTS_PER_POLL];
};

static struct epoll_state *state(struct proact_watcher *w)
{
	return w->bstate;
}

static int ep_init(struct proact_watcher *w)
{
	struct epoll_state *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	s->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = WAKE_TOKEN};
	if (s->epfd < 0 || s->evfd < 0 || epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->evfd, &ev) != 0) {
		int rc = -errno;
		if (s->epfd >= 0)
			close(s->epfd);
		if (s->evfd >= 0)
			close(s->evfd);
		free(s);
		return rc;
	}
	w->park_reads = true;
	w->bstate = s;
	return 0;
}

static void ep_destroy(struct proact_watcher *w)
{
	struct epoll_state *s = state(w);
	close(s->epfd);
	close(s->evfd);
	free(s);
	w->bstate = NULL;
}

static uint64_t token(const struct proact__fd *f)
{
	return (uint64_t)f->gen << 32 | (uint32_t)f->fd;
}

static int ep_fd_add(struct proact_watcher *w, struct proact__fd *f)
{
	struct epoll_event ev = {
	    .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
	    .data.u64 = token(f),
	};
	if (epoll_ctl(state(w)->epfd, EPOLL_CTL_ADD, f->fd, &ev) == 0)
		return 0;
	return errno == EPERM ? -ENOTSUP : -errno;
}

static void ep_fd_remove(struct proact_watcher *w, struct proact__fd *f)
{
	epoll_ctl(state(w)->epfd, EPOLL_CTL_DEL, f->fd, NULL);
}

static PROACT__NOINLINE void drain_wakeups(struct proact_watcher *w)
{
	uint64_t v;
	while (read(state(w)->evfd, &v, sizeof(v)) > 0)
		;
	w->wake_sent = false;
}

static void dispatch(struct proact_watcher *w, const struct epoll_event *ev)
{
	if (ev->data.u64 == WAKE_TOKEN) {
		drain_wakeups(w);
		return;
	}
	struct proact__fd *f = proact__fd_lookup(w, (int)(uint32_t)ev->data.u64);
	if (!f || f->state != PROACT__FD_ACTIVE || token(f) != ev->data.u64)
		return; /* an event of a registration that is gone */
	uint32_t e = ev->events;
	if (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		f->flags |= PROACT__F_RDHUP;
	/* An edge with nothing queued on its side only marks the side ready. */
	if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
		f->ready[PROACT__RD] = 1;
		if (f->head[PROACT__RD] || (f->flags & PROACT__F_PARKED))
			proact__progress(w, f, PROACT__RD);
	}
	if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
		f->ready[PROACT__WR] = 1;
		if (f->head[PROACT__WR])
			proact__progress(w, f, PROACT__WR);
	}
}

static int ep_poll(struct proact_watcher *w, int64_t timeout_ns)
{
	struct epoll_state *s = state(w);
	/* Round up: waking before a deadline would only spin. */
	int ms = timeout_ns < 0 ? -1 : (int)((timeout_ns + 999999) / 1000000);
	if (timeout_ns > (int64_t)INT32_MAX * 1000000)
		ms = INT32_MAX;
	w->stats.kernel_waits++; /* under the lock, which a sleeper lets go */
	if (ms != 0) {
		w->sleeping = true;
		proact__unlock(w);
	}
	int n = epoll_wait(s->epfd, s->events, EVENTS_PER_POLL, ms);
	int err = errno;
	if (ms != 0) {
		proact__lock(w);
		w->sleeping = false;
	}
	if (n < 0)
		return -err;
	for (int i = 0; i < n && !w->closed; i++)
		dispatch(w, &s->events[i]);
	return n;
}

static void ep_wakeup(struct proact_watcher *w)
{
	uint64_t one = 1;
	ssize_t rc = write(state(w)->evfd, &one, sizeof(one));
	(void)rc; /* a full counter still wakes the poll */
}

const struct proact__backend proact__backend_epoll = {
    .name = "epoll",
    .init = ep_init,
    .destroy = ep_destroy,
    .fd_add = ep_fd_add,
    .fd_remove = ep_fd_remove,
    .io = proact__ready_io,
    .send_now = proact__ready_send,
    .arm_read = NULL, /* the registration reports the next edge */
    .cancel = NULL,   /* nothing of a request is ever in the kernel */
    .poll = ep_poll,
    .wakeup = ep_wakeup,
    .quiesce = NULL,
    .pool_recycle = NULL,
};
