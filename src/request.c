/* SPDX-License-Identifier: MIT */
/*
 * request.c - registrations, per-fd queues and the completion engine.
 *
 * Each registered fd has one queue per direction. Only the head of a queue is
 * ever handed to the backend, so two reads or two writes of one fd never race
 * in the kernel (rule 4). When the head completes it moves to the watcher's
 * completion list, and the next request becomes the head.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

#include "internal.h"

/* ---- request nodes: a free list refilled a chunk at a time ---- */

#define REQS_PER_CHUNK 256

struct proact__req_chunk {
	struct proact__req_chunk *next;
	struct proact__req reqs[REQS_PER_CHUNK];
};

struct proact__req *proact__req_alloc(struct proact_watcher *w)
{
	if (!w->spare) {
		struct proact__req_chunk *c = malloc(sizeof(*c));
		if (!c)
			return NULL;
		c->next = w->chunks;
		w->chunks = c;
		for (int i = 0; i < REQS_PER_CHUNK; i++) {
			c->reqs[i].next = w->spare;
			w->spare = &c->reqs[i];
		}
	}
	struct proact__req *r = w->spare;
	w->spare = r->next;
	return r; /* the caller sets every field */
}

void proact__req_release(struct proact_watcher *w, struct proact__req *r)
{
	r->next = w->spare;
	w->spare = r;
}

void proact__reqs_destroy(struct proact_watcher *w)
{
	while (w->chunks) {
		struct proact__req_chunk *c = w->chunks;
		w->chunks = c->next;
		free(c);
	}
	w->spare = NULL;
}

/* ---- the fd table: chunks that never move, indexed by fd number ---- */

static struct proact__fd *fd_slot(struct proact_watcher *w, int fd)
{
	uint32_t chunk = (uint32_t)fd >> PROACT__FDTAB_SHIFT;
	if (chunk >= w->fdtab_chunks) {
		uint32_t n = chunk + 1 > w->fdtab_chunks * 2 ? chunk + 1 : w->fdtab_chunks * 2;
		struct proact__fd **t = realloc(w->fdtab, n * sizeof(*t));
		if (!t)
			return NULL;
		memset(t + w->fdtab_chunks, 0, (n - w->fdtab_chunks) * sizeof(*t));
		w->fdtab = t;
		w->fdtab_chunks = n;
	}
	if (!w->fdtab[chunk]) {
		w->fdtab[chunk] = calloc(PROACT__FDTAB_CHUNK, sizeof(struct proact__fd));
		if (!w->fdtab[chunk])
			return NULL;
	}
	return proact__fd_lookup(w, fd);
}

#ifdef _WIN32

/* Sockets only; Windows cannot tell whether one was non-blocking. */
static int fd_open_flags(int fd)
{
	return proact__os_fd_check(fd);
}

static int fd_prepare(struct proact__fd *f, int fd, int fl)
{
	(void)fl;
	return proact__win_fd_prepare(f, fd);
}

static void fd_restore_blocking(struct proact__fd *f)
{
	(void)f;
}

#else

static int fd_open_flags(int fd)
{
	return fcntl(fd, F_GETFL);
}

/* A 32-bit ino_t makes fstat fail with EOVERFLOW where inode numbers are
   larger (32-bit glibc without _FILE_OFFSET_BITS=64, set by CMake). */
_Static_assert(sizeof(ino_t) >= 8, "fstat needs 64-bit inode numbers");

/* Learns what kind of descriptor fd (status flags fl) is and makes it non-blocking. */
static PROACT__NOINLINE int fd_prepare(struct proact__fd *f, int fd, int fl)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		return -errno;
	if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) || S_ISBLK(st.st_mode))
		return -ENOTSUP;
	uint16_t flags = 0;
	if (S_ISSOCK(st.st_mode)) {
		int type = 0;
		socklen_t len = sizeof(type);
		flags |= PROACT__F_SOCKET;
		if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM)
			flags |= PROACT__F_STREAM;
#if !defined(MSG_NOSIGNAL) && defined(SO_NOSIGPIPE)
		int one = 1; /* no MSG_NOSIGNAL: the socket itself must not raise SIGPIPE */
		if (setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof(one)) != 0)
			return -errno;
#endif
	}
	if (!(fl & O_NONBLOCK)) {
		if (fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0)
			return -errno;
		flags |= PROACT__F_BLOCKING;
	}
	f->flags = (uint16_t)((f->flags & PROACT__F_LISTS) | flags);
	return 0;
}

static void fd_restore_blocking(struct proact__fd *f)
{
	if (f->flags & PROACT__F_BLOCKING) {
		int fl = fcntl(f->fd, F_GETFL);
		if (fl >= 0)
			fcntl(f->fd, F_SETFL, fl & ~O_NONBLOCK);
	}
}

#endif

/* Returns the registration of fd, registering it on first use. */
static int fd_register(struct proact_watcher *w, int fd, struct proact__fd **out)
{
	struct proact__fd *f = proact__fd_lookup(w, fd);
	int fl = 0;
	if (!f || f->state == PROACT__FD_UNUSED) {
		/* Only an open fd may grow the table: its number is below the fd limit. */
		if ((fl = fd_open_flags(fd)) < 0)
			return -EBADF;
		f = fd_slot(w, fd);
		if (!f)
			return -ENOMEM;
	}
	if (f->state == PROACT__FD_CLOSING)
		return -EALREADY;
	if (f->state == PROACT__FD_UNUSED) {
		f->fd = fd;
		int rc = fd_prepare(f, fd, fl);
		if (rc == 0) {
			f->ready[0] = f->ready[1] = 1; /* try at once: no poll round trip */
			rc = w->be->fd_add(w, f);
			if (rc != 0)
				fd_restore_blocking(f);
		}
		if (rc != 0) {
			f->flags &= PROACT__F_LISTS;
			return rc;
		}
		f->state = PROACT__FD_ACTIVE;
		if (++w->nfds > w->stats.fds_high)
			w->stats.fds_high = w->nfds;
	}
	*out = f;
	return 0;
}

/* Forgets a registration; the entry may be reused by a new socket. */
static void fd_reset(struct proact__fd *f)
{
	f->state = PROACT__FD_UNUSED;
	f->gen++;
	/* Still linked on a list: keep the link bits, the lists skip unused fds. */
	f->flags &= PROACT__F_LISTS;
	f->head[0] = f->head[1] = NULL;
	f->inflight[0] = f->inflight[1] = f->cancel[0] = f->cancel[1] = 0;
	f->ready[0] = f->ready[1] = 0;
	f->pool_try = 0;
	f->pending = 0;
	f->close_req = NULL;
	f->parked_ctx = NULL;
}

static void mark_dirty(struct proact_watcher *w, struct proact__fd *f)
{
	if (f->flags & PROACT__F_DIRTY)
		return;
	f->flags |= PROACT__F_DIRTY;
	f->next_dirty = PROACT__NO_FD;
	if (w->dirty_tail)
		w->dirty_tail->next_dirty = f->fd;
	else
		w->dirty_head = f;
	w->dirty_tail = f;
}

/* Reads wait for a pool buffer in arrival order; one that was woken and
   lost the buffer to a faster read keeps its place at the front. */
static void mark_starved(struct proact_watcher *w, struct proact__fd *f, bool front)
{
	if (f->flags & PROACT__F_STARVED)
		return;
	f->flags |= PROACT__F_STARVED;
	if (front && w->starved_head) {
		f->next_starved = w->starved_head->fd;
		w->starved_head = f;
		return;
	}
	f->next_starved = PROACT__NO_FD;
	if (w->starved_tail)
		w->starved_tail->next_starved = f->fd;
	else
		w->starved_head = f;
	w->starved_tail = f;
}

/* ---- queues and completion ---- */

/* Reads, accepts and datagram receives queue on one side, the rest on the other. */
#define READ_SIDE_OPS (1u << PROACT_OP_READ | 1u << PROACT_OP_ACCEPT | 1u << PROACT_OP_RECVFROM)

static int dir_of_op(unsigned op)
{
	return (READ_SIDE_OPS >> op) & 1u ? PROACT__RD : PROACT__WR;
}

static int dir_of(const struct proact__req *r)
{
	return dir_of_op(r->op);
}

static void queue_push(struct proact__fd *f, int dir, struct proact__req *r)
{
	struct proact__req *h = f->head[dir];
	r->next = NULL;
	if (!h) {
		f->head[dir] = r;
		r->prev = r;
		return;
	}
	r->prev = h->prev;
	h->prev->next = r;
	h->prev = r;
}

static void queue_unlink(struct proact__fd *f, int dir, struct proact__req *r)
{
	struct proact__req *h = f->head[dir];
	if (r == h)
		f->head[dir] = r->next;
	else
		r->prev->next = r->next;
	if (r->next)
		r->next->prev = r->prev;
	else if (r != h)
		h->prev = r->prev; /* r was the tail */
	r->next = r->prev = NULL;
}

void proact__done_push(struct proact_watcher *w, struct proact__req *r)
{
	r->next = NULL;
	if (w->done_tail)
		w->done_tail->next = r;
	else
		w->done_head = r;
	w->done_tail = r;
}

static void finish(struct proact_watcher *w, struct proact__req *r, int error);

/* Fails the requests of a direction that have not reached the kernel. */
static void fail_waiting(struct proact_watcher *w, struct proact__fd *f, int dir, int error)
{
	struct proact__req *r = f->head[dir];
	if (r && f->inflight[dir])
		r = r->next;
	while (r) {
		struct proact__req *next = r->next;
		finish(w, r, error);
		r = next;
	}
}

/* Requests queued behind a failed connect fail with its error, not with
   whatever an unconnected socket happens to answer. */
static void connect_done(struct proact_watcher *w, struct proact__fd *f, int error)
{
	f->flags &= (uint16_t)~PROACT__F_CONNECT;
	if (error) {
		fail_waiting(w, f, PROACT__RD, error);
		fail_waiting(w, f, PROACT__WR, error);
	}
	mark_dirty(w, f); /* reads held back by the connect may go now */
}

/* r ends with the given errno: its deadline leaves the heap, and it goes
   to the completion list. */
static void complete(struct proact_watcher *w, struct proact__req *r, int error)
{
	if (r->heap_idx != PROACT__NO_HEAP)
		proact__heap_remove(&w->heap, r);
	r->error = error;
	r->f = NULL;
	proact__done_push(w, r);
}

/* Moves r from its fd queue to the completion list with the given errno. */
static void finish(struct proact_watcher *w, struct proact__req *r, int error)
{
	struct proact__fd *f = r->f;
	queue_unlink(f, dir_of(r), r);
	f->pending--;
	w->pending--;
	complete(w, r, error);
	if (r->op == PROACT_OP_CONNECT)
		connect_done(w, f, error);
}

/* Out of fds or memory: a listener (or a parked read that found no memory
   for its node) waits for a free fd or a short pause. */
#define PAUSE_NS (100 * 1000000ull)

static bool accept_starved(int err)
{
	return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

static PROACT__NOINLINE void pause_fd(struct proact_watcher *w, struct proact__fd *f)
{
	if (f->flags & (PROACT__F_PAUSED | PROACT__F_STARVED))
		return;
	f->flags |= PROACT__F_PAUSED;
	w->stats.pauses++;
	f->next_starved = w->paused_head ? w->paused_head->fd : PROACT__NO_FD;
	w->paused_head = f;
	if (!w->paused_until)
		w->paused_until = proact_now() + PAUSE_NS;
}

void proact__resume_paused(struct proact_watcher *w)
{
	struct proact__fd *f;
	while ((f = w->paused_head)) {
		w->paused_head = proact__fd_at(w, f->next_starved);
		f->next_starved = PROACT__NO_FD;
		f->flags &= (uint16_t)~PROACT__F_PAUSED;
		if (f->state == PROACT__FD_ACTIVE)
			mark_dirty(w, f);
	}
	w->paused_until = 0;
}

/* Accounts a result of n bytes (or -errno) for the head r; true if r finished. */
static bool account(struct proact_watcher *w, struct proact__req *r, ssize_t n)
{
	if (n < 0) {
		if (r->op == PROACT_OP_ACCEPT && accept_starved((int)-n))
			pause_fd(w, r->f);
		if (r->op == PROACT_OP_SENDFILE && n == -ENODATA && r->done > 0)
			r->f->flags |= PROACT__F_CUT; /* the peer got part of a range: a gap */
		finish(w, r, (int)-n);
		return true;
	}
	bool complete = true;
	switch (r->op) {
	case PROACT_OP_READ:
		r->done += (size_t)n;
		complete = n == 0 || !(r->flags & PROACT_FULL) || r->done == r->len;
		break;
	case PROACT_OP_RECVFROM: /* n is the datagram's length, even when it did not fit */
		r->done = (size_t)n < r->len ? (size_t)n : r->len;
		if ((size_t)n > r->len) {
			r->flags |= PROACT__R_TRUNC;
			finish(w, r, EMSGSIZE);
			return true;
		}
		break;
	case PROACT_OP_ACCEPT:
		r->done = (size_t)n; /* the new fd */
		break;
	case PROACT_OP_CONNECT:
		break;
	default: /* WRITE, WRITEV, SENDTO */
		r->done += (size_t)n;
		complete = r->done == r->len;
	}
	if (complete)
		finish(w, r, 0);
	return complete;
}

/* Whether head r must wait for something else first. */
static bool held_back(const struct proact__fd *f, int dir, const struct proact__req *r)
{
	if (dir != PROACT__RD)
		return false;
	if (r->op == PROACT_OP_ACCEPT)
		return f->flags & PROACT__F_PAUSED;
	return f->flags & PROACT__F_CONNECT;
}

/*
 * Parking: a pool read alone in its queue, with no deadline, that waits for
 * data (readiness not there, or a poll armed in the kernel) gives its node
 * back and leaves only its ctx in the fd entry; every other field of such a
 * read is known. An idle connection then costs its fd entry alone.
 */
static bool parkable(const struct proact_watcher *w, uint8_t op, const void *buf, uint32_t flags,
                     uint64_t deadline, size_t len)
{
	return op == PROACT_OP_READ && !buf && !flags && !deadline &&
	       (len == 0 || len >= w->pool.size);
}

static void park(struct proact_watcher *w, struct proact__fd *f, struct proact__req *r)
{
	if (r->next || r->done || !parkable(w, r->op, r->buf, r->flags, r->deadline, r->len))
		return;
	f->head[PROACT__RD] = NULL;
	f->parked_ctx = r->ctx;
	f->flags |= PROACT__F_PARKED;
	proact__req_release(w, r);
}

/* The request a parked read stands for, field by field as in fill_req
   (every message to an idle connection comes this way); queue_push sets
   the links. */
static void parked_req(struct proact_watcher *w, struct proact__fd *f, struct proact__req *r)
{
	r->f = f;
	r->ctx = f->parked_ctx;
	r->buf = NULL;
	r->len = w->pool.size;
	r->done = 0;
	r->addr = NULL;
	r->deadline = 0;
	r->heap_idx = PROACT__NO_HEAP;
	r->fdnum = f->fd;
	r->addrlen = 0;
	r->error = 0;
	r->pool = -1;
	r->op = PROACT_OP_READ;
	r->flags = 0;
	r->expired = 0;
	r->holds_pool = 0;
}

/* The read is no longer parked: its node is queued, or it completed. */
static void unparked(struct proact__fd *f)
{
	f->flags &= (uint16_t)~PROACT__F_PARKED;
	f->parked_ctx = NULL;
}

/* Gives a parked read its node back, as it was; false when out of memory. */
static bool unpark(struct proact_watcher *w, struct proact__fd *f)
{
	if (!(f->flags & PROACT__F_PARKED))
		return true;
	struct proact__req *r = proact__req_alloc(w);
	if (!r)
		return false;
	parked_req(w, f, r);
	unparked(f);
	queue_push(f, PROACT__RD, r);
	return true;
}

bool proact__unpark_for_result(struct proact_watcher *w, struct proact__fd *f)
{
	if (unpark(w, f))
		return true;
	pause_fd(w, f);
	return false;
}

/* A parked read with no data known: the backend arms what tells it of data
   (epoll's registration already does; io_uring adds a poll). */
static void arm_parked(struct proact_watcher *w, struct proact__fd *f)
{
	ssize_t n = w->be->arm_read ? w->be->arm_read(w, f) : PROACT__WAIT;
	if (n == PROACT__WAIT || n == PROACT__ARMED) {
		f->inflight[PROACT__RD] = n == PROACT__ARMED;
		return;
	}
	/* The backend answered at once (an error): that needs the node. */
	if (!unpark(w, f)) {
		pause_fd(w, f);
		return;
	}
	account(w, f->head[PROACT__RD], n);
}

/* A parked read's result, n bytes or -errno, completes it from node r,
   which was never queued. */
static void parked_end(struct proact_watcher *w, struct proact__fd *f, struct proact__req *r,
                       ssize_t n)
{
	r->done = n > 0 ? (size_t)n : 0;
	f->pending--;
	w->pending--;
	complete(w, r, n < 0 ? (int)-n : 0);
}

/*
 * A parked read when data may be there: it runs from a node that joins the
 * queue only if it must wait for the kernel or a buffer. Data there
 * completes it at once (a parked read is never FULL: any result ends it);
 * none leaves it parked.
 */
static void read_parked(struct proact_watcher *w, struct proact__fd *f)
{
	if (!f->ready[PROACT__RD]) {
		if (!f->inflight[PROACT__RD])
			arm_parked(w, f);
		return;
	}
	struct proact__req *r = proact__req_alloc(w);
	if (!r) {
		pause_fd(w, f); /* retried when memory may be there again */
		return;
	}
	parked_req(w, f, r);
	ssize_t n = w->be->io(w, f, PROACT__RD, r);
	if (n == PROACT__WAIT || n == PROACT__ARMED) {
		f->inflight[PROACT__RD] = n == PROACT__ARMED;
		proact__req_release(w, r);
		return;
	}
	unparked(f);
	if (n == PROACT__INFLIGHT || n == PROACT__NOPOOL) {
		queue_push(f, PROACT__RD, r);
		if (n == PROACT__INFLIGHT)
			f->inflight[PROACT__RD] = 1;
		else
			mark_starved(w, f, false);
		return;
	}
	parked_end(w, f, r, n);
}

bool proact__parked_done(struct proact_watcher *w, struct proact__fd *f, ssize_t res, int32_t idx)
{
	struct proact__req *r = proact__req_alloc(w);
	if (!r) {
		pause_fd(w, f);
		return false;
	}
	parked_req(w, f, r);
	if (idx >= 0) {
		r->buf = proact__pool_addr(&w->pool, idx);
		r->pool = idx;
	}
	unparked(f);
	parked_end(w, f, r, res);
	return true;
}

void proact__fd_fail(struct proact_watcher *w, struct proact__fd *f, int dir, int error)
{
	if (dir == PROACT__RD && !unpark(w, f))
		pause_fd(w, f); /* no memory to fail it: it waits, and is armed again */
	fail_waiting(w, f, dir, error);
}

void proact__progress(struct proact_watcher *w, struct proact__fd *f, int dir)
{
	if (dir == PROACT__RD && (f->flags & PROACT__F_PARKED) && f->state == PROACT__FD_ACTIVE &&
	    !f->inflight[PROACT__RD]) {
		read_parked(w, f); /* alone in its queue: nothing follows it */
		return;
	}
	while (f->state == PROACT__FD_ACTIVE && !f->inflight[dir]) {
		struct proact__req *r = f->head[dir];
		if (!r || held_back(f, dir, r))
			return;
		if (r->op == PROACT_OP_SHUTDOWN) { /* every earlier write is out: no kernel wait */
			finish(w, r, proact__os_shutdown_wr(f->fd));
			continue;
		}
		if (dir == PROACT__WR && (f->flags & PROACT__F_CUT)) {
			finish(w, r, EPIPE);
			continue;
		}
		ssize_t n = w->be->io(w, f, dir, r);
		if (n == PROACT__WAIT || n == PROACT__ARMED) {
			f->inflight[dir] = n == PROACT__ARMED;
			if (dir == PROACT__RD)
				park(w, f, r);
			return;
		}
		if (n == PROACT__INFLIGHT) {
			f->inflight[dir] = 1;
			return;
		}
		if (n == PROACT__NOPOOL) {
			mark_starved(w, f, false);
			return;
		}
		account(w, r, n);
	}
}

static void finish_close(struct proact_watcher *w, struct proact__fd *f);

/*
 * The result of an in-flight head. A head whose deadline passed or whose fd
 * is closing was asked back from the kernel; whatever it moved still counts.
 */
static void io_settle(struct proact_watcher *w, struct proact__fd *f, int dir, ssize_t n,
                      bool woken)
{
	struct proact__req *r = f->head[dir];
	f->inflight[dir] = 0;
	if (n == PROACT__NOPOOL && !r->expired && f->state == PROACT__FD_ACTIVE) {
		mark_starved(w, f, woken);
		return;
	}
	if (f->cancel[dir] && r->op == PROACT_OP_ACCEPT && n >= 0) {
		f->cancel[dir] = 0;
		account(w, r, n); /* accepted all the same: the new fd must not be lost */
	} else if (f->cancel[dir]) {
		f->cancel[dir] = 0;
		if (n > 0)
			r->done += (size_t)n;
		if (r->expired && r->op != PROACT_OP_READ && r->done > 0)
			f->flags |= PROACT__F_CUT;
		finish(w, r, r->expired ? ETIMEDOUT : ECANCELED);
	} else if (n != PROACT__NOPOOL) {
		account(w, r, n);
	}
	if (f->state == PROACT__FD_CLOSING) {
		if (!f->inflight[PROACT__RD] && !f->inflight[PROACT__WR])
			finish_close(w, f);
		return;
	}
	proact__progress(w, f, dir);
}

void proact__io_done(struct proact_watcher *w, struct proact__fd *f, int dir, ssize_t n)
{
	bool woken = dir == PROACT__RD && f->pool_try;
	bool pool_changed = woken || (dir == PROACT__RD && n == PROACT__NOPOOL);
	if (dir == PROACT__RD)
		proact__pool_tried(w, f);
	io_settle(w, f, dir, n, woken);
	/* A reservation ended, or buffers came back while this read was failing
	   for want of one: another starved read may go now. */
	if (pool_changed)
		proact__pool_wake(w);
}

/* ---- deadlines ---- */

static void expire_one(struct proact_watcher *w, struct proact__req *r)
{
	struct proact__fd *f = r->f;
	int dir = dir_of(r);
	proact__heap_remove(&w->heap, r);
	w->stats.deadlines_fired++;
	if (f->head[dir] == r && f->inflight[dir]) {
		/* The kernel holds it: ask for it back, the result says how much moved. */
		r->expired = 1;
		if (!f->cancel[dir]) {
			f->cancel[dir] = 1;
			w->be->cancel(w, f, dir);
		}
		return;
	}
	bool was_head = f->head[dir] == r;
	if (dir == PROACT__WR && r->done > 0)
		f->flags |= PROACT__F_CUT;
	finish(w, r, ETIMEDOUT);
	if (was_head)
		proact__progress(w, f, dir);
}

void proact__expire(struct proact_watcher *w, uint64_t now)
{
	struct proact__req *r;
	while ((r = proact__heap_min(&w->heap)) && r->deadline <= now) {
		if (r->op == PROACT_OP_TIMER) {
			w->stats.timers_fired++;
			proact__timer_finish(w, r, 0);
			continue;
		}
		if (r->f->state != PROACT__FD_ACTIVE) {
			proact__heap_remove(&w->heap, r); /* closing: ECANCELED soon */
			continue;
		}
		expire_one(w, r);
	}
}

/* ---- free and detach ---- */

static void cancel_queue(struct proact_watcher *w, struct proact__fd *f, int dir)
{
	while (f->head[dir])
		finish(w, f->head[dir], ECANCELED);
}

/* Everything of f is out of the kernel: complete the rest, close, announce. */
static void finish_close(struct proact_watcher *w, struct proact__fd *f)
{
	cancel_queue(w, f, PROACT__RD);
	cancel_queue(w, f, PROACT__WR);
	w->be->fd_remove(w, f);
	struct proact__req *c = f->close_req;
	if (f->flags & PROACT__F_DETACH) {
		fd_restore_blocking(f);
	} else {
		proact__os_close(f->fd);
		proact__resume_paused(w); /* a descriptor is free: paused accepts may go on */
	}
	fd_reset(f);
	w->nfds--;
	proact__done_push(w, c);
}

static void start_close(struct proact_watcher *w, struct proact__fd *f)
{
	for (int dir = 0; dir < 2; dir++) {
		if (f->inflight[dir] && !f->cancel[dir]) {
			f->cancel[dir] = 1;
			w->be->cancel(w, f, dir);
		}
	}
	if (!f->inflight[PROACT__RD] && !f->inflight[PROACT__WR])
		finish_close(w, f);
}

void proact__process_dirty(struct proact_watcher *w)
{
	struct proact__fd *f;
	while ((f = w->dirty_head)) {
		w->dirty_head = proact__fd_at(w, f->next_dirty);
		if (!w->dirty_head)
			w->dirty_tail = NULL;
		f->next_dirty = PROACT__NO_FD;
		f->flags &= (uint16_t)~PROACT__F_DIRTY;
		if (f->state == PROACT__FD_CLOSING) {
			start_close(w, f);
		} else if (f->state == PROACT__FD_ACTIVE) {
			proact__progress(w, f, PROACT__RD);
			proact__progress(w, f, PROACT__WR);
		}
	}
}

int proact__close_fd(struct proact_watcher *w, int fd, void *ctx, bool detach)
{
	struct proact__fd *f = proact__fd_lookup(w, fd);
	if (!f || f->state == PROACT__FD_UNUSED)
		return -ENOENT;
	if (f->state == PROACT__FD_CLOSING)
		return -EALREADY;
	struct proact__req *c = unpark(w, f) ? proact__req_alloc(w) : NULL;
	if (!c)
		return -ENOMEM; /* a read unparked before stays queued: nothing changed */
	*c = (struct proact__req){.ctx = ctx,
	                          .heap_idx = PROACT__NO_HEAP,
	                          .fdnum = fd,
	                          .pool = -1,
	                          .op = detach ? PROACT_OP_DETACH : PROACT_OP_FREE};
	f->close_req = c;
	f->state = PROACT__FD_CLOSING;
	if (detach)
		f->flags |= PROACT__F_DETACH;
	mark_dirty(w, f);
	return 0;
}

/* Shutdown: every registered fd is closed, nothing is delivered any more. */
void proact__close_all(struct proact_watcher *w)
{
	for (uint32_t c = 0; c < w->fdtab_chunks; c++) {
		if (!w->fdtab[c])
			continue;
		for (uint32_t i = 0; i < PROACT__FDTAB_CHUNK; i++) {
			struct proact__fd *f = &w->fdtab[c][i];
			if (f->state == PROACT__FD_UNUSED)
				continue;
			w->be->fd_remove(w, f);
			proact__os_close(f->fd);
			fd_reset(f);
		}
	}
	w->nfds = 0;
}

/* ---- submission ---- */

static int validate_iov(const struct proact_request *q, size_t *total)
{
	if (!q->iov || q->iovcnt < 1 || q->iovcnt > IOV_MAX)
		return -EINVAL;
	size_t sum = 0;
	for (int i = 0; i < q->iovcnt; i++) {
		if (!q->iov[i].iov_base && q->iov[i].iov_len)
			return -EINVAL;
		if (q->iov[i].iov_len > (size_t)SSIZE_MAX - sum)
			return -EINVAL;
		sum += q->iov[i].iov_len;
	}
	*total = sum;
	return sum ? 0 : -EINVAL;
}

/* An address is either absent (NULL, 0) or present with a length. */
static bool addr_ok(const struct proact_request *q, bool required)
{
	if (!q->addr)
		return !required && q->addrlen == 0;
	return q->addrlen > 0;
}

static int validate_lifecycle(const struct proact_request *q)
{
	if (q->flags)
		return -EINVAL;
	bool no_buf = !q->buf && q->len == 0;
	switch (q->op) {
	case PROACT_OP_ACCEPT:
		return no_buf && addr_ok(q, false) ? 0 : -EINVAL;
	case PROACT_OP_CONNECT:
		return no_buf && addr_ok(q, true) ? 0 : -EINVAL;
	case PROACT_OP_SHUTDOWN:
		return no_buf && !q->addr && !q->addrlen ? 0 : -EINVAL;
	case PROACT_OP_RECVFROM:
		if (q->buf && (q->len == 0 || q->len > SSIZE_MAX))
			return -EINVAL;
		return addr_ok(q, false) ? 0 : -EINVAL;
	case PROACT_OP_SENDTO:
		if (!q->buf || q->len == 0 || q->len > SSIZE_MAX)
			return -EINVAL;
		return addr_ok(q, false) ? 0 : -EINVAL;
	default:
		return -EINVAL;
	}
}

/* A timer has its deadline and ctx alone; fd -1 says it has no fd. */
static int validate_timer(const struct proact_request *q)
{
	bool unused = !q->flags && !q->buf && !q->len && !q->iov && !q->iovcnt && !q->addr &&
	              !q->addrlen && !q->file && !q->offset;
	return proact__fdnum(q->fd) == -1 && unused ? 0 : -EINVAL;
}

/* The fields only WRITEV, the address ops and SENDFILE use are all zero:
   one test for the reads and writes of every round trip. */
static bool no_extras(const struct proact_request *q)
{
	return ((uintptr_t)q->iov | (unsigned)q->iovcnt | (uintptr_t)q->addr | q->addrlen |
	        (unsigned)q->file | q->offset) == 0;
}

/* Checks what needs no lock: the request's own fields. */
int proact__validate(const struct proact_watcher *w, const struct proact_request *q)
{
	(void)w;
	if (q->reserved[0] | q->reserved[1] | q->reserved[2])
		return -EINVAL;
	switch (q->op) {
	case PROACT_OP_READ:
		if ((q->flags & ~PROACT_FULL) || !no_extras(q))
			return -EINVAL;
		if (q->buf ? q->len == 0 || q->len > SSIZE_MAX : (q->flags & PROACT_FULL) != 0)
			return -EINVAL;
		return proact__fdnum(q->fd) < 0 ? -EBADF : 0;
	case PROACT_OP_WRITE:
		if (q->flags || !q->buf || q->len == 0 || q->len > SSIZE_MAX || !no_extras(q))
			return -EINVAL;
		return proact__fdnum(q->fd) < 0 ? -EBADF : 0;
	case PROACT_OP_WRITEV: {
		size_t total;
		if (q->flags)
			return -EINVAL;
		int rc = validate_iov(q, &total);
		if (rc)
			return rc;
		break;
	}
	case PROACT_OP_TIMER:
		return validate_timer(q);
	case PROACT_OP_SENDFILE:
		if (q->flags || q->buf || q->len == 0 || q->len > SSIZE_MAX ||
		    q->offset > UINT64_MAX - q->len)
			return -EINVAL;
		if (q->file < 0)
			return -EBADF;
		break;
	default: {
		int rc = validate_lifecycle(q);
		if (rc)
			return rc;
	}
	}
	if (q->op != PROACT_OP_WRITEV && (q->iov || q->iovcnt))
		return -EINVAL;
	if ((q->op <= PROACT_OP_WRITEV || q->op == PROACT_OP_SENDFILE) && (q->addr || q->addrlen))
		return -EINVAL;
	if (q->op != PROACT_OP_SENDFILE && (q->file || q->offset))
		return -EINVAL;
	if (proact__fdnum(q->fd) < 0)
		return -EBADF;
	return 0;
}

/* Where a WRITEV goes on: the first segment not fully sent, and how much of it was. */
int proact__iov_resume(const struct proact__req *r, size_t *offset)
{
	const struct iovec *iov = r->buf;
	size_t done = r->done;
	int k = 0;
	while (done >= iov[k].iov_len) {
		done -= iov[k].iov_len;
		k++;
	}
	*offset = done;
	return k;
}

/* A block for pool indices: from the free list, else a new one (kept until destroy). */
static struct proact__refs *refs_block(struct proact_watcher *w)
{
	struct proact__refs *b = w->refs_spare;
	if (b) {
		w->refs_spare = b->next;
	} else {
		b = malloc(sizeof(*b));
		if (!b)
			return NULL;
		b->all = w->refs_all;
		w->refs_all = b;
	}
	b->next = NULL;
	b->n = 0;
	return b;
}

/* Notes pool buffer idx in r's chain of blocks; -ENOMEM if no block. */
static int refs_note(struct proact_watcher *w, struct proact__req *r, int32_t idx)
{
	struct proact__refs *b = r->refs;
	if (!b || b->n == PROACT__REFS_PER_BLOCK) {
		struct proact__refs *nb = refs_block(w);
		if (!nb)
			return -ENOMEM;
		nb->next = b;
		r->refs = b = nb;
	}
	b->idx[b->n++] = idx;
	return 0;
}

/* Drops the references noted for a WRITEV and gives its blocks back. */
static void refs_drop(struct proact_watcher *w, struct proact__req *r)
{
	while (r->refs) {
		struct proact__refs *b = r->refs;
		r->refs = b->next;
		for (uint32_t i = 0; i < b->n; i++)
			proact__pool_unref(w, b->idx[i]);
		b->next = w->refs_spare;
		w->refs_spare = b;
	}
}

void proact__refs_destroy(struct proact_watcher *w)
{
	while (w->refs_all) {
		struct proact__refs *b = w->refs_all;
		w->refs_all = b->all;
		free(b);
	}
	w->refs_spare = NULL;
}

/* A WRITE or SENDTO: its one buffer, found again from r->buf when the
   reference is dropped. -EINVAL if it is a pool buffer already released. */
static int hold_one(struct proact_watcher *w, struct proact__req *r)
{
	int32_t idx = proact__pool_index(&w->pool, r->buf);
	if (idx < 0)
		return 0;
	if (w->pool.refs[idx] == 0)
		return -EINVAL;
	w->pool.refs[idx]++;
	r->holds_pool = 1;
	return 0;
}

/* A WRITEV: its pool buffers are noted, since its iov array is the
   program's again when the references are dropped. -EINVAL, -ENOMEM; on
   failure nothing is held. */
static PROACT__NOINLINE int hold_vec(struct proact_watcher *w, struct proact__req *r)
{
	const struct iovec *iov = r->buf;
	int rc = 0;
	r->refs = NULL;
	for (int i = 0; i < r->iovcnt && rc == 0; i++) {
		int32_t idx = proact__pool_index(&w->pool, iov[i].iov_base);
		if (idx < 0 || iov[i].iov_len == 0)
			continue;
		if (w->pool.refs[idx] == 0) {
			rc = -EINVAL;
		} else if ((rc = refs_note(w, r, idx)) == 0) {
			w->pool.refs[idx]++;
			r->holds_pool = 1;
		}
	}
	if (rc) { /* the submission fails whole */
		refs_drop(w, r);
		r->holds_pool = 0;
	}
	return rc;
}

/* Takes a reference on each pool buffer a write sends (rule 5). */
static int hold_pool(struct proact_watcher *w, struct proact__req *r)
{
	return r->op == PROACT_OP_WRITEV ? hold_vec(w, r) : hold_one(w, r);
}

static void drop_pool(struct proact_watcher *w, struct proact__req *r)
{
	if (r->pool >= 0)
		proact__pool_unref(w, r->pool);
	if (!r->holds_pool)
		return;
	if (r->op == PROACT_OP_WRITEV)
		refs_drop(w, r);
	else
		proact__pool_unref(w, proact__pool_index(&w->pool, r->buf));
	r->holds_pool = 0;
}

/* Drops the pool references of the completions delivered by the last wait. */
void proact__release_held(struct proact_watcher *w)
{
	while (w->held) {
		struct proact__req *r = w->held;
		w->held = r->next;
		drop_pool(w, r);
		proact__req_release(w, r);
	}
}

/* Every field by name (no zeroing of the whole node first): this runs for
   each submission. The links and r->f are set when it is queued. */
static void fill_req(struct proact__req *r, const struct proact_request *q)
{
	r->ctx = q->ctx;
	r->buf = q->buf;
	r->len = q->len;
	r->done = 0;
	r->addr = q->addr;
	r->deadline = q->deadline;
	r->heap_idx = PROACT__NO_HEAP;
	r->fdnum = proact__fdnum(q->fd);
	r->addrlen = q->addrlen;
	r->error = 0;
	r->pool = -1;
	r->op = q->op;
	r->flags = (uint8_t)q->flags;
	r->expired = 0;
	r->holds_pool = 0;
	if (q->op == PROACT_OP_SENDFILE) {
		r->file = q->file;
		r->offset = q->offset;
	} else if (q->op == PROACT_OP_WRITEV) {
		size_t total = 0;
		for (int i = 0; i < q->iovcnt; i++)
			total += q->iov[i].iov_len;
		r->buf = (void *)q->iov;
		r->iovcnt = q->iovcnt;
		r->len = total;
	}
}

/* A read that can wait parked from the start: alone, nothing in the kernel, no data known. */
static bool park_at_once(const struct proact_watcher *w, const struct proact__fd *f,
                         const struct proact_request *q)
{
	return w->park_reads && parkable(w, q->op, q->buf, q->flags, q->deadline, q->len) &&
	       !f->head[PROACT__RD] && !f->inflight[PROACT__RD] && !f->ready[PROACT__RD] &&
	       !(f->flags & (PROACT__F_PARKED | PROACT__F_CONNECT));
}

/* A send that nothing queues behind, on the waiting thread (which does the
   I/O): tried before it joins its queue (never a file's range: its
   backends wait in their own ways). */
static bool send_at_once(const struct proact_watcher *w, const struct proact__fd *f,
                         const struct proact__req *r, bool on_waiter)
{
	return on_waiter && w->be->send_now && !f->head[PROACT__WR] &&
	       (r->op == PROACT_OP_WRITE || r->op == PROACT_OP_WRITEV ||
	        r->op == PROACT_OP_SENDTO) &&
	       !(f->flags & (PROACT__F_CUT | PROACT__F_CONNECT));
}

/* A request is first in its queue: the waiting thread starts it at once,
   another thread leaves it to the waiter. */
static void start(struct proact_watcher *w, struct proact__fd *f, int dir, bool on_waiter)
{
	if (on_waiter)
		proact__progress(w, f, dir);
	else
		mark_dirty(w, f);
}

int proact__submit_locked(struct proact_watcher *w, const struct proact_request *q, bool on_waiter)
{
	if (q->op == PROACT_OP_TIMER) /* no fd: no registration, no queue */
		return proact__timer_add(w, q->deadline, q->ctx, NULL);
	if ((w->be->unsupported >> q->op) & 1u)
		return -ENOTSUP;
	bool pool_read = (q->op == PROACT_OP_READ || q->op == PROACT_OP_RECVFROM) && !q->buf;
	if (pool_read && w->pool.count == 0)
		return -ENOBUFS;
	struct proact__fd *f;
	int rc = fd_register(w, proact__fdnum(q->fd), &f);
	if (rc)
		return rc;
	if (f->pending >= w->max_pending_fd)
		return -EAGAIN;
	if (w->pending >= w->max_pending)
		return -ENOBUFS;
	if (pool_read && park_at_once(w, f, q)) {
		f->parked_ctx = q->ctx;
		f->flags |= PROACT__F_PARKED;
		f->pending++;
		w->pending++;
		if (w->be->arm_read) /* else the registration reports data by itself */
			start(w, f, PROACT__RD, on_waiter);
		return 0;
	}
	/* A parked read keeps its place: back in the queue before anything joins it. */
	bool behind_read = dir_of_op(q->op) == PROACT__RD || q->op == PROACT_OP_CONNECT;
	if (behind_read && !unpark(w, f))
		return -ENOMEM;
	struct proact__req *r = proact__req_alloc(w);
	if (!r)
		return -ENOMEM;
	fill_req(r, q);
	if (pool_read && (r->len == 0 || r->len > w->pool.size))
		r->len = w->pool.size;
	bool sends =
	    r->op == PROACT_OP_WRITE || r->op == PROACT_OP_WRITEV || r->op == PROACT_OP_SENDTO;
	if (sends && (rc = hold_pool(w, r)) != 0) {
		proact__req_release(w, r);
		return rc;
	}
	if (r->deadline && (rc = proact__deadline_add(w, r)) != 0) {
		drop_pool(w, r);
		proact__req_release(w, r);
		return rc;
	}
	int dir = dir_of(r);
	r->f = f;
	if (send_at_once(w, f, r, on_waiter)) {
		ssize_t n = w->be->send_now(w, f, r);
		if (n == (ssize_t)r->len || (n < 0 && n != PROACT__WAIT)) {
			/* taken whole, or refused: never queued, never counted pending */
			r->done = n > 0 ? (size_t)n : 0;
			complete(w, r, n < 0 ? (int)-n : 0);
			return 0;
		}
		if (n > 0)
			r->done = (size_t)n;
	}
	queue_push(f, dir, r);
	if (r->op == PROACT_OP_CONNECT)
		f->flags |= PROACT__F_CONNECT;
	f->pending++;
	w->pending++;
	if (f->head[dir] == r)
		start(w, f, dir, on_waiter);
	return 0;
}

/* ---- delivery ---- */

/* What only accepts, datagrams and full reads have. */
static void fill_rare(struct proact_completion *c, const struct proact__req *r)
{
	if (r->op == PROACT_OP_ACCEPT) {
		c->newfd = proact__sock(r->error ? -1 : (int)r->done);
		c->size = 0;
	}
	if ((r->op == PROACT_OP_ACCEPT || r->op == PROACT_OP_RECVFROM) && r->addr && !r->error)
		c->addrlen = r->addrlen;
	if (r->flags & PROACT__R_TRUNC) {
		c->flags |= PROACT_COMP_TRUNC;
		c->addrlen = r->addr ? r->addrlen : 0;
	}
	if ((r->flags & PROACT_FULL) && r->op == PROACT_OP_READ)
		c->flags |= PROACT_COMP_FULL;
}

int proact__deliver(struct proact_watcher *w, struct proact_completion *out, int max)
{
	int n = 0;
	while (n < max && w->done_head) {
		struct proact__req *r = w->done_head;
		w->done_head = r->next;
		if (!w->done_head)
			w->done_tail = NULL;
		struct proact_completion *c = &out[n++];
		w->stats.completed[r->op]++;
		w->stats.failed += r->error != 0;
		*c = (struct proact_completion){
		    .fd = proact__sock(r->fdnum),
		    .op = r->op,
		    .error = r->error,
		    .ctx = r->ctx,
		    .buf = r->buf,
		    .size = r->done,
		    .newfd = proact__sock(-1),
		};
		if (r->flags || r->op == PROACT_OP_ACCEPT || r->op == PROACT_OP_RECVFROM)
			fill_rare(c, r);
		if (r->pool >= 0)
			c->flags |= PROACT_COMP_POOL;
		if (r->pool >= 0 || r->holds_pool) {
			r->next = w->held;
			w->held = r;
		} else {
			proact__req_release(w, r);
		}
	}
	return n;
}

/* Shutdown: every request and undelivered completion is forgotten. */
void proact__drop_all(struct proact_watcher *w)
{
	proact__reqs_destroy(w);
	w->done_head = w->done_tail = NULL;
	w->held = NULL;
	w->dirty_head = w->dirty_tail = NULL;
	w->starved_head = w->starved_tail = NULL;
	w->paused_head = NULL;
	w->paused_until = 0;
	w->heap.n = 0;
	w->pending = 0;
}
