/* SPDX-License-Identifier: MIT */
/*
 * kqueue.c - a kqueue/kevent test double for Linux, over epoll and eventfd.
 *
 * What it emulates is listed in sys/event.h beside it. How:
 *
 * A kqueue is an epoll fd (its number is the kqueue descriptor) plus an
 * eventfd, the "kick", registered in it. Each fd with knotes has one
 * edge-triggered epoll registration carrying the interest of its filters,
 * tagged with the fd number and a generation, never a pointer: after
 * epoll_wait the tag is looked up again under the lock, so an event of an fd
 * whose knotes were removed meanwhile is dropped.
 *
 * As in FreeBSD's kernel, a knote that may fire goes on the kqueue's active
 * queue: an epoll edge, a change (EV_ADD, EV_ENABLE, NOTE_TRIGGER) or its own
 * delivery when it is level-triggered puts it there. Delivery checks the
 * condition again (poll() with no wait, or the user knote's trigger) and
 * drops the knote from the queue when it no longer holds. A change that
 * queues a knote writes the kick, so a thread blocked in kevent() looks.
 *
 * One global mutex guards every kqueue (this stands in for the kernel), and
 * is never held across epoll_wait. close() is wrapped at link time
 * (-Wl,--wrap=close): it drops the fd's knotes in every kqueue, or frees the
 * kqueue being closed, before the real close. A fork()ed child drops its
 * copies of every kqueue, as a BSD child has none.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sys/event.h>

#define KICK       UINT64_MAX /* epoll tag of the kick eventfd */
#define WAIT_BATCH 64         /* epoll events taken per wait; the rest stay in epoll */

enum { RD, WR };

struct knote {
	struct knote *prev, *next; /* the active queue, while queued */
	struct knote *unext;       /* the kqueue's EVFILT_USER knotes */
	uintptr_t ident;
	short filter;
	unsigned short flags; /* EV_CLEAR, EV_ONESHOT, EV_DISPATCH, EV_RECEIPT at creation */
	bool queued, disabled, eof, triggered;
	unsigned int sfflags; /* EVFILT_USER state */
	int64_t sdata;
	void *udata;
};

struct fdent {
	uint32_t gen; /* tag of the epoll registration; 0: none */
	struct knote *kn[2];
};

struct kq {
	struct kq *next;
	int epfd, evfd;
	uint32_t gen;
	int nfds;
	struct fdent *fds; /* indexed by fd number */
	struct knote *users;
	struct knote queue; /* sentinel of the circular active queue */
};

int __real_close(int fd);
int __wrap_close(int fd);

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct kq *kqs; /* every live kqueue */

static int fail(int err)
{
	errno = err;
	return -1;
}

static struct kq *kq_find(int fd)
{
	for (struct kq *kq = kqs; kq; kq = kq->next)
		if (kq->epfd == fd)
			return kq;
	return NULL;
}

static void kick(struct kq *kq)
{
	uint64_t one = 1;
	ssize_t rc = write(kq->evfd, &one, sizeof(one));
	(void)rc; /* a full counter is readable all the same */
}

static void enqueue(struct kq *kq, struct knote *kn)
{
	if (kn->queued || kn->disabled)
		return;
	kn->prev = kq->queue.prev;
	kn->next = &kq->queue;
	kq->queue.prev->next = kn;
	kq->queue.prev = kn;
	kn->queued = true;
}

static void dequeue(struct knote *kn)
{
	if (!kn->queued)
		return;
	kn->prev->next = kn->next;
	kn->next->prev = kn->prev;
	kn->queued = false;
}

static uint64_t tag(int fd, uint32_t gen)
{
	return (uint64_t)gen << 32 | (uint32_t)fd;
}

/* Registers fd in epoll with its knotes' interest (again, on every EV_ADD). */
static int fd_arm(struct kq *kq, int fd)
{
	struct fdent *f = &kq->fds[fd];
	struct epoll_event ev = {.events = EPOLLET};
	if (f->kn[RD])
		ev.events |= EPOLLIN | EPOLLRDHUP;
	if (f->kn[WR])
		ev.events |= EPOLLOUT;
	if (f->gen) {
		ev.data.u64 = tag(fd, f->gen);
		if (epoll_ctl(kq->epfd, EPOLL_CTL_MOD, fd, &ev) == 0)
			return 0;
		if (errno != ENOENT)
			return errno;
		/* The fd was closed behind our back; this number is a new file. */
	}
	uint32_t gen = ++kq->gen ? kq->gen : ++kq->gen;
	ev.data.u64 = tag(fd, gen);
	/* EEXIST: registered under a tag we lost track of; take it over. */
	if (epoll_ctl(kq->epfd, EPOLL_CTL_ADD, fd, &ev) != 0 &&
	    (errno != EEXIST || epoll_ctl(kq->epfd, EPOLL_CTL_MOD, fd, &ev) != 0))
		return errno;
	f->gen = gen;
	return 0;
}

static void kn_drop(struct kq *kq, struct knote *kn)
{
	dequeue(kn);
	if (kn->filter == EVFILT_USER) {
		struct knote **pp = &kq->users;
		while (*pp != kn)
			pp = &(*pp)->unext;
		*pp = kn->unext;
	} else {
		int fd = (int)kn->ident;
		struct fdent *f = &kq->fds[fd];
		f->kn[kn->filter == EVFILT_READ ? RD : WR] = NULL;
		/* A remaining sibling keeps the registration; its stale interest
		   only costs an ignored wake-up. */
		if (!f->kn[RD] && !f->kn[WR] && f->gen) {
			(void)epoll_ctl(kq->epfd, EPOLL_CTL_DEL, fd, NULL);
			f->gen = 0;
		}
	}
	free(kn);
}

static int fds_grow(struct kq *kq, int fd)
{
	if (fd < kq->nfds)
		return 0;
	int n = kq->nfds ? kq->nfds : 64;
	while (n <= fd)
		n = n > INT_MAX / 2 ? INT_MAX : n * 2;
	struct fdent *v = realloc(kq->fds, (size_t)n * sizeof(*v));
	if (!v)
		return ENOMEM;
	memset(v + kq->nfds, 0, (size_t)(n - kq->nfds) * sizeof(*v));
	kq->fds = v;
	kq->nfds = n;
	return 0;
}

static void user_touch(struct knote *kn, const struct kevent *c)
{
	unsigned int ff = c->fflags & NOTE_FFLAGSMASK;
	switch (c->fflags & NOTE_FFCTRLMASK) {
	case NOTE_FFAND:
		kn->sfflags &= ff;
		break;
	case NOTE_FFOR:
		kn->sfflags |= ff;
		break;
	case NOTE_FFCOPY:
		kn->sfflags = ff;
		break;
	default:
		break;
	}
	if (c->fflags & NOTE_TRIGGER)
		kn->triggered = true;
	kn->sdata = c->data;
}

/* Applies one change (FreeBSD's kqueue_register); returns 0 or an errno. */
static int kn_change(struct kq *kq, const struct kevent *c)
{
	const unsigned short known = EV_ADD | EV_DELETE | EV_ENABLE | EV_DISABLE | EV_ONESHOT |
	                             EV_CLEAR | EV_RECEIPT | EV_DISPATCH | EV_KEEPUDATA;
	if (c->flags & ~known)
		return EINVAL;
	struct knote *kn = NULL;
	int fd = -1, dir = c->filter == EVFILT_READ ? RD : WR;
	if (c->filter == EVFILT_READ || c->filter == EVFILT_WRITE) {
		if (c->ident > INT_MAX || fcntl((int)c->ident, F_GETFD) < 0)
			return EBADF;
		fd = (int)c->ident;
		if (fd < kq->nfds)
			kn = kq->fds[fd].kn[dir];
	} else if (c->filter == EVFILT_USER) {
		for (kn = kq->users; kn && kn->ident != c->ident; kn = kn->unext)
			;
	} else {
		return EINVAL;
	}

	if (c->flags & EV_DELETE) {
		if (!kn)
			return ENOENT;
		kn_drop(kq, kn);
		return 0;
	}
	bool created = !kn;
	if (created) {
		if (!(c->flags & EV_ADD))
			return ENOENT;
		if (fd >= 0 && fds_grow(kq, fd) != 0)
			return ENOMEM;
		kn = calloc(1, sizeof(*kn));
		if (!kn)
			return ENOMEM;
		kn->ident = c->ident;
		kn->filter = c->filter;
		kn->flags = c->flags & (EV_CLEAR | EV_ONESHOT | EV_DISPATCH | EV_RECEIPT);
		if (fd >= 0) {
			kq->fds[fd].kn[dir] = kn;
		} else {
			kn->unext = kq->users;
			kq->users = kn;
		}
	}
	if (fd >= 0 && (c->flags & EV_ADD)) {
		int err = fd_arm(kq, fd);
		if (err) {
			if (created)
				kn_drop(kq, kn);
			return err;
		}
		kn->eof = false;
	}
	if (!(c->flags & EV_KEEPUDATA))
		kn->udata = c->udata;
	if (fd < 0)
		user_touch(kn, c);
	if (c->flags & EV_DISABLE)
		kn->disabled = true;
	if (c->flags & EV_ENABLE)
		kn->disabled = false;
	if (kn->disabled) {
		dequeue(kn);
	} else if (fd >= 0 || kn->triggered) {
		enqueue(kq, kn); /* the condition is checked at delivery */
		kick(kq);
	}
	return 0;
}

/* Room in fd's send buffer: what FreeBSD's sbspace() tells. */
static int64_t write_room(int fd, const struct stat *st)
{
	int size = 0, used = 0;
	socklen_t len = sizeof(size);
	if (S_ISSOCK(st->st_mode)) {
		/* TIOCOUTQ is SIOCOUTQ: bytes not yet sent or acknowledged. */
		if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, &len) != 0 ||
		    ioctl(fd, TIOCOUTQ, &used) != 0)
			return 1;
	} else if (S_ISFIFO(st->st_mode)) {
		size = fcntl(fd, F_GETPIPE_SZ);
		if (size < 0 || ioctl(fd, FIONREAD, &used) != 0)
			return 1;
	} else {
		return 1;
	}
	return size > used ? size - used : 1; /* writable: never 0 */
}

static int64_t read_avail(int fd, const struct stat *st)
{
	int v = 0;
	socklen_t len = sizeof(v);
	if (S_ISSOCK(st->st_mode) && getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) == 0 &&
	    v) {
		/* A TCP listener tells its accept queue length in tcpi_unacked. */
		struct tcp_info ti;
		len = sizeof(ti);
		if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 && ti.tcpi_unacked > 0)
			return ti.tcpi_unacked;
		return 1;
	}
	return ioctl(fd, FIONREAD, &v) == 0 ? v : 0;
}

/* Whether a queued knote fires now (FreeBSD's f_event at scan); fills ev. */
static bool kn_fire(struct knote *kn, struct kevent *ev)
{
	EV_SET(ev, kn->ident, kn->filter, kn->flags, 0, 0, kn->udata);
	if (kn->filter == EVFILT_USER) {
		ev->fflags = kn->sfflags;
		ev->data = kn->sdata;
		return kn->triggered;
	}
	int fd = (int)kn->ident;
	bool rd = kn->filter == EVFILT_READ;
	struct pollfd p = {.fd = fd, .events = rd ? POLLIN | POLLRDHUP : POLLOUT};
	struct stat st;
	if (poll(&p, 1, 0) != 1 || (p.revents & POLLNVAL) || fstat(fd, &st) != 0)
		return false;
	if (p.revents & (rd ? POLLRDHUP | POLLHUP | POLLERR : POLLHUP | POLLERR))
		kn->eof = true;
	if (kn->eof)
		ev->flags |= EV_EOF;
	ev->data = rd ? read_avail(fd, &st) : write_room(fd, &st);
	return true;
}

/* Puts the knotes an epoll event speaks for on the active queue. */
static void ep_mark(struct kq *kq, const struct epoll_event *e)
{
	if (e->data.u64 == KICK) {
		uint64_t v;
		ssize_t rc = read(kq->evfd, &v, sizeof(v));
		(void)rc; /* the queue, not the counter, holds what is pending */
		return;
	}
	int fd = (int)(uint32_t)e->data.u64;
	uint32_t gen = (uint32_t)(e->data.u64 >> 32);
	if (fd >= kq->nfds || kq->fds[fd].gen != gen)
		return; /* the knotes were removed since */
	struct fdent *f = &kq->fds[fd];
	if (f->kn[RD] && (e->events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
		enqueue(kq, f->kn[RD]);
	if (f->kn[WR] && (e->events & (EPOLLOUT | EPOLLHUP | EPOLLERR)))
		enqueue(kq, f->kn[WR]);
}

/* Delivers up to max active knotes into out (FreeBSD's kqueue_scan). */
static int collect(struct kq *kq, struct kevent *out, int max)
{
	struct knote again = {.prev = &again, .next = &again}; /* level-triggered, delivered */
	int n = 0;
	while (n < max && kq->queue.next != &kq->queue) {
		struct knote *kn = kq->queue.next;
		dequeue(kn);
		if (!kn_fire(kn, &out[n]))
			continue;
		n++;
		if (kn->flags & EV_CLEAR) {
			kn->triggered = false;
			kn->sfflags = 0;
			kn->sdata = 0;
		}
		if (kn->flags & EV_ONESHOT) {
			kn_drop(kq, kn);
		} else if (kn->flags & EV_DISPATCH) {
			kn->disabled = true;
		} else if (!(kn->flags & EV_CLEAR)) {
			kn->prev = again.prev;
			kn->next = &again;
			again.prev->next = kn;
			again.prev = kn;
			kn->queued = true;
		}
	}
	if (kq->queue.next != &kq->queue)
		kick(kq); /* no room for all: another waiting thread may take the rest */
	if (again.next != &again) {
		again.next->prev = kq->queue.prev;
		kq->queue.prev->next = again.next;
		again.prev->next = &kq->queue;
		kq->queue.prev = again.prev;
	}
	return n;
}

static int64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* epoll_wait with ns precision where the kernel has epoll_pwait2; left < 0: forever. */
static int ep_wait(int epfd, struct epoll_event *evs, int max, int64_t left)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35))
	static atomic_bool no_pwait2;
	if (!atomic_load_explicit(&no_pwait2, memory_order_relaxed)) {
		struct timespec ts = {(time_t)(left / 1000000000), (long)(left % 1000000000)};
		int r = epoll_pwait2(epfd, evs, max, left < 0 ? NULL : &ts, NULL);
		if (r >= 0 || errno != ENOSYS)
			return r;
		atomic_store_explicit(&no_pwait2, true, memory_order_relaxed);
	}
#endif
	int ms = -1; /* rounded up: never wake before the deadline */
	if (left >= 0)
		ms = left / 1000000 >= INT_MAX ? INT_MAX : (int)((left + 999999) / 1000000);
	return epoll_wait(epfd, evs, max, ms);
}

/* The waiting half of kevent(): never holds the lock across the wait. */
static int scan(int kqfd, struct kevent *out, int max, const struct timespec *timeout)
{
	int64_t end = 0;
	if (timeout) {
		if (timeout->tv_sec < 0 || timeout->tv_nsec < 0 || timeout->tv_nsec >= 1000000000)
			return fail(EINVAL);
		int64_t ns = timeout->tv_sec > INT64_MAX / 2000000000
		                 ? INT64_MAX / 2
		                 : (int64_t)timeout->tv_sec * 1000000000 + timeout->tv_nsec;
		end = now_ns() + ns;
	}
	struct epoll_event evs[WAIT_BATCH];
	for (;;) {
		pthread_mutex_lock(&lock);
		struct kq *kq = kq_find(kqfd);
		bool queued = kq && kq->queue.next != &kq->queue;
		pthread_mutex_unlock(&lock);
		if (!kq)
			return fail(EBADF);
		int64_t left = -1, now = timeout ? now_ns() : 0;
		if (queued)
			left = 0;
		else if (timeout)
			left = end > now ? end - now : 0;
		int r = ep_wait(kqfd, evs, WAIT_BATCH, left);
		if (r < 0)
			return -1; /* EINTR included, as on FreeBSD */

		pthread_mutex_lock(&lock);
		kq = kq_find(kqfd);
		int n = 0;
		if (kq) {
			for (int i = 0; i < r; i++)
				ep_mark(kq, &evs[i]);
			n = collect(kq, out, max);
		}
		pthread_mutex_unlock(&lock);
		if (!kq)
			return fail(EBADF);
		if (n > 0)
			return n;
		if (timeout && now_ns() >= end)
			return 0;
	}
}

static void kq_free(struct kq *kq)
{
	for (int fd = 0; fd < kq->nfds; fd++) {
		free(kq->fds[fd].kn[RD]);
		free(kq->fds[fd].kn[WR]);
	}
	while (kq->users) {
		struct knote *kn = kq->users;
		kq->users = kn->unext;
		free(kn);
	}
	free(kq->fds);
	__real_close(kq->evfd);
	free(kq);
}

/* Frees the kqueue whose descriptor is fd, if there is one. */
static bool kq_forget(int fd)
{
	for (struct kq **pp = &kqs; *pp; pp = &(*pp)->next) {
		if ((*pp)->epfd == fd) {
			struct kq *kq = *pp;
			*pp = kq->next;
			kq_free(kq);
			return true;
		}
	}
	return false;
}

static void fork_prepare(void)
{
	pthread_mutex_lock(&lock);
}

static void fork_parent(void)
{
	pthread_mutex_unlock(&lock);
}

/* A child has no kqueues (FreeBSD's kqueue(2)). Its copies of the epoll fds
   share the parent's epoll sets, so its closes must not touch them. */
static void fork_child(void)
{
	while (kqs) {
		struct kq *kq = kqs;
		kqs = kq->next;
		__real_close(kq->epfd);
		kq_free(kq);
	}
	pthread_mutex_unlock(&lock);
}

static void at_fork(void)
{
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}

int kqueue(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, at_fork);
	struct kq *kq = calloc(1, sizeof(*kq));
	if (!kq)
		return fail(ENOMEM);
	kq->epfd = epoll_create1(EPOLL_CLOEXEC);
	kq->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = KICK};
	if (kq->epfd < 0 || kq->evfd < 0 ||
	    epoll_ctl(kq->epfd, EPOLL_CTL_ADD, kq->evfd, &ev) != 0) {
		int err = errno;
		if (kq->epfd >= 0)
			__real_close(kq->epfd);
		if (kq->evfd >= 0)
			__real_close(kq->evfd);
		free(kq);
		return fail(err);
	}
	kq->queue.prev = kq->queue.next = &kq->queue;
	pthread_mutex_lock(&lock);
	kq_forget(kq->epfd); /* one closed without the wrapper had this number */
	kq->next = kqs;
	kqs = kq;
	pthread_mutex_unlock(&lock);
	return kq->epfd;
}

int kevent(int kqfd, const struct kevent *changelist, int nchanges, struct kevent *eventlist,
           int nevents, const struct timespec *timeout)
{
	if (nchanges < 0 || nevents < 0)
		return fail(EINVAL);
	pthread_mutex_lock(&lock);
	struct kq *kq = kq_find(kqfd);
	if (!kq) {
		pthread_mutex_unlock(&lock);
		return fail(EBADF);
	}
	int n = 0;
	for (int i = 0; i < nchanges; i++) {
		struct kevent c = changelist[i];
		if (c.filter == 0)
			continue; /* FreeBSD skips these */
		c.flags &= (unsigned short)~EV_SYSFLAGS;
		int err = kn_change(kq, &c);
		if (!err && !(c.flags & EV_RECEIPT))
			continue;
		if (n == nevents) {
			/* No room to tell: the remaining changes are not applied. */
			pthread_mutex_unlock(&lock);
			return err ? fail(err) : n;
		}
		c.flags = EV_ERROR;
		c.data = err;
		eventlist[n++] = c;
	}
	pthread_mutex_unlock(&lock);
	/* A call that returned EV_ERROR entries returns no events. */
	if (n > 0 || nevents == 0)
		return n;
	return scan(kqfd, eventlist, nevents, timeout);
}

int __wrap_close(int fd)
{
	pthread_mutex_lock(&lock);
	if (!kq_forget(fd)) {
		for (struct kq *kq = kqs; kq; kq = kq->next) {
			if (fd < 0 || fd >= kq->nfds)
				continue;
			struct fdent *f = &kq->fds[fd];
			if (f->kn[RD])
				kn_drop(kq, f->kn[RD]);
			if (f->kn[WR])
				kn_drop(kq, f->kn[WR]);
		}
	}
	pthread_mutex_unlock(&lock);
	return __real_close(fd);
}
