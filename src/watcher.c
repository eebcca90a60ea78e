/* SPDX-License-Identifier: MIT */
/*
 * watcher.c - the public API: watcher lifecycle, submission entry points and
 * proact_wait, the loop in which the waiting thread drives all I/O.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define DEFAULT_POOL_SIZE      16384u
#define DEFAULT_POOL_COUNT     256u
#define DEFAULT_MAX_PENDING_FD 4096u
#define DEFAULT_MAX_PENDING    (1u << 20)
#define MAX_POOL_BYTES         ((uint64_t)1 << 34) /* and what the address space allows */
/* Ready completions may skip the kernel poll this many rounds in a row; then
   one non-blocking poll keeps other fds from starving behind a busy one. */
#define MAX_POLL_SKIPS 8
/* The longest single kernel wait; a longer one simply loops. */
#define MAX_POLL_NS ((int64_t)INT32_MAX * 1000000)

/* ---- backend choice ---- */

static const struct proact__backend *backend_named(const char *name)
{
#ifdef PROACT_HAVE_EPOLL
	if (strcmp(name, "epoll") == 0)
		return &proact__backend_epoll;
#endif
#ifdef PROACT_HAVE_URING
	if (strcmp(name, "io_uring") == 0)
		return &proact__backend_uring;
#endif
#ifdef PROACT_HAVE_KQUEUE
	if (strcmp(name, "kqueue") == 0)
		return &proact__backend_kqueue;
#endif
#ifdef PROACT_HAVE_IOCP
	if (strcmp(name, "iocp") == 0)
		return &proact__backend_iocp;
#endif
	return NULL;
}

static int backend_known(const char *name)
{
	return strcmp(name, "epoll") == 0 || strcmp(name, "io_uring") == 0 ||
	       strcmp(name, "kqueue") == 0 || strcmp(name, "iocp") == 0;
}

/* The automatic choice, best first: io_uring, then epoll on Linux; kqueue
   where there is no epoll. A build for Linux with the kqueue test double
   still prefers the Linux backends. */
static const struct proact__backend *const auto_order[] = {
#ifdef PROACT_HAVE_URING
    &proact__backend_uring,
#endif
#ifdef PROACT_HAVE_EPOLL
    &proact__backend_epoll,
#endif
#ifdef PROACT_HAVE_KQUEUE
    &proact__backend_kqueue,
#endif
#ifdef PROACT_HAVE_IOCP
    &proact__backend_iocp,
#endif
};

/* Tries the backends in order of preference; returns 0 or the last error. */
static int backend_start(struct proact_watcher *w, const char *name)
{
	if (name) {
		if (!backend_known(name))
			return -EINVAL;
		w->be = backend_named(name);
		if (!w->be)
			return -ENOSYS;
		return w->be->init(w);
	}
	int rc = -ENOSYS;
	for (size_t i = 0; i < sizeof(auto_order) / sizeof(auto_order[0]); i++) {
		w->be = auto_order[i];
		if ((rc = w->be->init(w)) == 0)
			return 0;
	}
	return rc;
}

static int options_apply(struct proact_watcher *w, const struct proact_options *o,
                         uint32_t *pool_count, uint32_t *pool_size)
{
	static const struct proact_options defaults;
	if (!o)
		o = &defaults;
	for (size_t i = 0; i < sizeof(o->reserved) / sizeof(o->reserved[0]); i++)
		if (o->reserved[i])
			return -EINVAL;
	*pool_size = o->pool_buffer_size ? o->pool_buffer_size : DEFAULT_POOL_SIZE;
	*pool_count = o->pool_buffer_count ? o->pool_buffer_count : DEFAULT_POOL_COUNT;
	if (o->pool_buffer_count == PROACT_POOL_NONE)
		*pool_count = 0;
	uint64_t bytes = (uint64_t)*pool_count * *pool_size;
	if (*pool_count > (1u << 15) || bytes > MAX_POOL_BYTES || bytes > SIZE_MAX / 2)
		return -EINVAL;
	w->max_pending_fd = o->max_pending_per_fd ? o->max_pending_per_fd : DEFAULT_MAX_PENDING_FD;
	w->max_pending = o->max_pending ? o->max_pending : DEFAULT_MAX_PENDING;
	return 0;
}

int proact_watcher_new(proact_watcher **out, const struct proact_options *opts)
{
	if (!out)
		return -EINVAL;
	*out = NULL;
	struct proact_watcher *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	uint32_t pool_count, pool_size;
	int rc = proact__mutex_init(&w->lock);
	if (rc) {
		free(w);
		return rc;
	}
	rc = options_apply(w, opts, &pool_count, &pool_size);
	if (rc == 0)
		rc = proact__pool_init(&w->pool, pool_count, pool_size);
	if (rc) {
		proact__mutex_destroy(&w->lock);
		free(w);
		return rc;
	}
	const char *name = opts && opts->backend ? opts->backend : proact__env("PROACT_BACKEND");
	if (name && !*name)
		name = NULL;
	rc = backend_start(w, name);
	if (rc) {
		proact__pool_destroy(&w->pool);
		proact__mutex_destroy(&w->lock);
		free(w);
		return rc;
	}
	*out = w;
	return 0;
}

const char *proact_backend(const proact_watcher *w)
{
	return w ? w->be->name : NULL;
}

int proact_watcher_shutdown(proact_watcher *w)
{
	if (!w)
		return -EINVAL;
	proact__lock(w);
	if (w->closed) {
		proact__unlock(w);
		return -ESHUTDOWN;
	}
	w->closed = true;
	if (w->be->quiesce)
		w->be->quiesce(w); /* the kernel lets go of every buffer */
	proact__close_all(w);
	proact__drop_all(w);
	if (w->sleeping && !w->wake_sent) {
		w->wake_sent = true;
		w->be->wakeup(w);
	}
	proact__unlock(w);
	return 0;
}

void proact_watcher_destroy(proact_watcher *w)
{
	if (!w)
		return;
	proact_watcher_shutdown(w);
	w->be->destroy(w);
	proact__pool_destroy(&w->pool);
	proact__heap_destroy(&w->heap);
	proact__timers_destroy(&w->timers);
	proact__refs_destroy(w);
	for (uint32_t c = 0; c < w->fdtab_chunks; c++)
		free(w->fdtab[c]);
	free(w->fdtab);
	proact__mutex_destroy(&w->lock);
	free(w);
}

const char *proact__env(const char *name)
{
#ifdef PROACT_HAVE_SECURE_GETENV
	return secure_getenv(name); /* not in a set-user-ID program */
#else
	return getenv(name);
#endif
}

/* ---- submission ---- */

/* After queueing: a waiter asleep in the kernel must come and do the work,
   deliver a completion (a cancelled timer), or sleep less long. */
static void kick(struct proact_watcher *w)
{
	bool sooner = w->sooner;
	w->sooner = false;
	if (w->sleeping && !w->wake_sent && (w->dirty_head || w->done_head || w->woken || sooner)) {
		w->wake_sent = true;
		w->be->wakeup(w);
	}
}

int proact_submit(proact_watcher *w, const struct proact_request *reqs, int n)
{
	if (!w)
		return -EINVAL;
	int i, rc = 0;
	proact__lock(w);
	if (w->closed || !reqs || n < 0) { /* a closed watcher answers that first */
		rc = w->closed ? -ESHUTDOWN : -EINVAL;
		proact__unlock(w);
		return rc;
	}
	/* The thread that runs the I/O starts its own requests at once; other
	   threads hand theirs to it (io_uring: only it enters the ring, so no
	   completion waits for another thread's task work). */
	bool on_waiter = w->has_waiter && proact__thread_equal(w->waiter, proact__thread_self());
	for (i = 0; i < n; i++) {
		rc = proact__validate(w, &reqs[i]);
		if (rc == 0)
			rc = proact__submit_locked(w, &reqs[i], on_waiter);
		if (rc)
			break;
		w->stats.submitted[reqs[i].op]++; /* validated: a known op */
	}
	kick(w);
	proact__unlock(w);
	return i > 0 || n == 0 ? i : rc;
}

static int submit_one(proact_watcher *w, const struct proact_request *q)
{
	int rc = proact_submit(w, q, 1);
	return rc == 1 ? 0 : rc;
}

int proact_read(proact_watcher *w, proact_socket fd, void *buf, size_t len, void *ctx)
{
	return proact_read_deadline(w, fd, buf, len, 0, 0, ctx);
}

int proact_read_full(proact_watcher *w, proact_socket fd, void *buf, size_t len, void *ctx)
{
	return proact_read_deadline(w, fd, buf, len, PROACT_FULL, 0, ctx);
}

int proact_read_deadline(proact_watcher *w, proact_socket fd, void *buf, size_t len, uint32_t flags,
                         uint64_t deadline, void *ctx)
{
	struct proact_request q = {.fd = fd,
	                           .op = PROACT_OP_READ,
	                           .flags = flags,
	                           .buf = buf,
	                           .len = len,
	                           .deadline = deadline,
	                           .ctx = ctx};
	return submit_one(w, &q);
}

int proact_write(proact_watcher *w, proact_socket fd, const void *buf, size_t len, void *ctx)
{
	return proact_write_deadline(w, fd, buf, len, 0, ctx);
}

int proact_write_deadline(proact_watcher *w, proact_socket fd, const void *buf, size_t len,
                          uint64_t deadline, void *ctx)
{
	struct proact_request q = {.fd = fd,
	                           .op = PROACT_OP_WRITE,
	                           .buf = (void *)buf,
	                           .len = len,
	                           .deadline = deadline,
	                           .ctx = ctx};
	return submit_one(w, &q);
}

int proact_sendfile(proact_watcher *w, proact_socket fd, int file, uint64_t offset, size_t len,
                    void *ctx)
{
	return proact_sendfile_deadline(w, fd, file, offset, len, 0, ctx);
}

int proact_sendfile_deadline(proact_watcher *w, proact_socket fd, int file, uint64_t offset,
                             size_t len, uint64_t deadline, void *ctx)
{
	struct proact_request q = {.fd = fd,
	                           .op = PROACT_OP_SENDFILE,
	                           .len = len,
	                           .deadline = deadline,
	                           .ctx = ctx,
	                           .file = file,
	                           .offset = offset};
	return submit_one(w, &q);
}

int proact_writev(proact_watcher *w, proact_socket fd, const struct iovec *iov, int iovcnt,
                  void *ctx)
{
	struct proact_request q = {
	    .fd = fd, .op = PROACT_OP_WRITEV, .iov = iov, .iovcnt = iovcnt, .ctx = ctx};
	return submit_one(w, &q);
}

static int close_common(proact_watcher *w, proact_socket fd, void *ctx, bool detach)
{
	if (!w)
		return -EINVAL;
	proact__lock(w);
	int n = proact__fdnum(fd);
	int rc = w->closed ? -ESHUTDOWN : n < 0 ? -EBADF : proact__close_fd(w, n, ctx, detach);
	if (rc == 0)
		w->stats.submitted[detach ? PROACT_OP_DETACH : PROACT_OP_FREE]++;
	kick(w);
	proact__unlock(w);
	return rc;
}

int proact_accept(proact_watcher *w, proact_socket fd, struct sockaddr *addr, uint32_t addrlen,
                  void *ctx)
{
	struct proact_request q = {
	    .fd = fd, .op = PROACT_OP_ACCEPT, .addr = addr, .addrlen = addrlen, .ctx = ctx};
	return submit_one(w, &q);
}

int proact_connect(proact_watcher *w, proact_socket fd, const struct sockaddr *addr,
                   uint32_t addrlen, uint64_t deadline, void *ctx)
{
	struct proact_request q = {.fd = fd,
	                           .op = PROACT_OP_CONNECT,
	                           .addr = (struct sockaddr *)addr,
	                           .addrlen = addrlen,
	                           .deadline = deadline,
	                           .ctx = ctx};
	return submit_one(w, &q);
}

int proact_shutdown_write(proact_watcher *w, proact_socket fd, void *ctx)
{
	struct proact_request q = {.fd = fd, .op = PROACT_OP_SHUTDOWN, .ctx = ctx};
	return submit_one(w, &q);
}

int proact_recvfrom(proact_watcher *w, proact_socket fd, void *buf, size_t len,
                    struct sockaddr *addr, uint32_t addrlen, void *ctx)
{
	struct proact_request q = {.fd = fd,
	                           .op = PROACT_OP_RECVFROM,
	                           .buf = buf,
	                           .len = len,
	                           .addr = addr,
	                           .addrlen = addrlen,
	                           .ctx = ctx};
	return submit_one(w, &q);
}

int proact_sendto(proact_watcher *w, proact_socket fd, const void *buf, size_t len,
                  const struct sockaddr *addr, uint32_t addrlen, void *ctx)
{
	struct proact_request q = {.fd = fd,
	                           .op = PROACT_OP_SENDTO,
	                           .buf = (void *)buf,
	                           .len = len,
	                           .addr = (struct sockaddr *)addr,
	                           .addrlen = addrlen,
	                           .ctx = ctx};
	return submit_one(w, &q);
}

int proact_free(proact_watcher *w, proact_socket fd, void *ctx)
{
	return close_common(w, fd, ctx, false);
}

int proact_detach(proact_watcher *w, proact_socket fd, void *ctx)
{
	return close_common(w, fd, ctx, true);
}

int proact_timer(proact_watcher *w, uint64_t deadline, void *ctx, uint64_t *id)
{
	if (!w)
		return -EINVAL;
	proact__lock(w);
	int rc = w->closed ? -ESHUTDOWN : proact__timer_add(w, deadline, ctx, id);
	if (rc == 0)
		w->stats.submitted[PROACT_OP_TIMER]++;
	kick(w);
	proact__unlock(w);
	return rc;
}

int proact_timer_cancel(proact_watcher *w, uint64_t id)
{
	if (!w)
		return -EINVAL;
	proact__lock(w);
	int rc = w->closed ? -ESHUTDOWN : proact__timer_cancel(w, id);
	kick(w);
	proact__unlock(w);
	return rc;
}

int proact_wakeup(proact_watcher *w)
{
	if (!w)
		return -EINVAL;
	proact__lock(w);
	int rc = w->closed ? -ESHUTDOWN : 0;
	if (rc == 0) {
		w->woken = true;
		kick(w);
	}
	proact__unlock(w);
	return rc;
}

int proact_stats(proact_watcher *w, struct proact_stats *out)
{
	if (!w || !out)
		return -EINVAL;
	proact__lock(w);
	int rc = w->closed ? -ESHUTDOWN : 0;
	if (rc == 0) {
		*out = w->stats;
		for (struct proact__fd *f = w->paused_head; f;
		     f = proact__fd_at(w, f->next_starved))
			out->paused++;
		out->fds = w->nfds;
		out->pending = w->pending;
		out->pool_buffers = w->pool.count;
		out->pool_in_use = w->pool.count - w->pool.navail;
		out->pool_high = w->pool.high;
	}
	proact__unlock(w);
	return rc;
}

/* ---- the wait loop ---- */

static int64_t poll_timeout(struct proact_watcher *w, uint64_t now, uint64_t end, bool forever)
{
	int64_t t = forever ? -1 : (int64_t)(end > now ? end - now : 0);
	struct proact__req *next = proact__heap_min(&w->heap);
	uint64_t wake = next ? next->deadline : 0;
	if (w->paused_until && (!wake || w->paused_until < wake))
		wake = w->paused_until;
	if (w->pool.trim_at && (!wake || w->pool.trim_at < wake))
		wake = w->pool.trim_at;
	if (wake) {
		/* Clamped: a gap beyond INT64_MAX (a deadline near the clock's end)
		   must not turn negative, which means "no limit". */
		uint64_t gap = wake > now ? wake - now : 0;
		int64_t d = gap > MAX_POLL_NS ? MAX_POLL_NS : (int64_t)gap;
		if (t < 0 || d < t)
			t = d;
	}
	return t;
}

/* What is due by the clock: deadlines, the pool's trim, paused fds.
   Returns the time it read. */
static uint64_t run_due(struct proact_watcher *w)
{
	uint64_t now = proact_now();
	if (w->heap.n)
		proact__expire(w, now);
	if (w->pool.trim_at && now >= w->pool.trim_at)
		proact__pool_trim(w, now);
	if (w->paused_until && now >= w->paused_until) {
		proact__resume_paused(w);
		proact__process_dirty(w);
	}
	return now;
}

/*
 * Runs I/O until a completion is ready, the time is up, or a wakeup. The
 * clock is read only when something depends on it (deadlines, a paused
 * listener, a pool to trim, a bounded wait that may block): a busy loop
 * with completions ready and no deadlines never reads it, and pays one
 * test for all three.
 */
static int run(struct proact_watcher *w, int timeout_ms)
{
	bool forever = timeout_ms < 0, polled = false;
	uint64_t end = 0;
	for (;;) {
		if (w->dirty_head)
			proact__process_dirty(w);
		uint64_t now = 0;
		if (w->heap.n | w->paused_until | w->pool.trim_at)
			now = run_due(w);
		if (w->closed)
			return -ESHUTDOWN;
		int64_t t;
		if (w->done_head || w->woken) {
			if (polled || ++w->poll_skips < MAX_POLL_SKIPS)
				return 0;
			t = 0;
		} else {
			if (!forever) {
				now = now ? now : proact_now();
				end = end ? end : now + (uint64_t)timeout_ms * 1000000u;
				if (polled && now >= end)
					return 0;
			}
			t = poll_timeout(w, now, end, forever);
		}
		w->poll_skips = 0;
		int rc = w->be->poll(w, t);
		polled = true;
		if (rc < 0 && rc != -EINTR)
			return rc;
	}
}

int proact_wait(proact_watcher *w, struct proact_completion *out, int max, int timeout_ms)
{
	if (!w)
		return -EINVAL;
	proact__lock(w);
	if (w->closed || w->waiting || !out || max < 1) {
		int rc = w->closed ? -ESHUTDOWN : !out || max < 1 ? -EINVAL : -EBUSY;
		proact__unlock(w);
		return rc;
	}
	w->waiting = true;
	w->waiter = proact__thread_self();
	w->has_waiter = true;
	if (w->held)
		proact__release_held(w);
	int rc = run(w, timeout_ms);
	if (rc == 0) {
		w->woken = false;
		rc = proact__deliver(w, out, max);
	}
	w->waiting = false;
	proact__unlock(w);
	return rc;
}
