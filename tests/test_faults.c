/* SPDX-License-Identifier: MIT */
/*
 * Checks that failures injected on purpose leave the contract intact: no
 * byte lost, duplicated, reordered or corrupted, every request completed
 * exactly once with its documented result, no hang, crash or leak.
 *
 * Which injector runs depends on the backend under test:
 *   epoll     the LD_PRELOAD shim (fault/shim.c; ctest preloads it): EINTR,
 *             EAGAIN, short reads and writes, short and spurious epoll
 *             events, epoll_ctl ENOMEM/ENOSPC, accept4 EMFILE;
 *   io_uring  the backend's hook (src/backend/io_uring_fault.c, PROACT_URING_FAULTS set
 *             before the watcher starts): short transfers, -EAGAIN, -EINTR,
 *             -ENOBUFS, accept -EMFILE, a full SQ, spurious polls;
 *   both      allocation failures (fault/alloc.c, link-time wrapping) and a
 *             real EMFILE from a lowered RLIMIT_NOFILE.
 * PROACT_FAULT_SEED picks the schedule (default 7). Without the shim the
 * epoll tests that need it are skipped.
 */
#include "common.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fault/fault.h"

#define BOUND_MS    15000 /* a hang fails the test after this long */
#define MAXQ        8     /* requests of each kind kept pending */
#define MAXSEG      16
#define CHUNK       16384 /* most bytes one request moves: many calls, many faults */
#define ECHO_WRITES 64    /* echo writes the relay may have pending */
#define MIB         (1024u * 1024u)

/* The io_uring hook's count; absent in a build without io_uring. */
extern unsigned long proact__ufault_hits(void) __attribute__((weak));

/* A schedule for each injector: the shim's and the io_uring hook's. */
struct profile {
	const char *shim;
	const char *uring;
};

static const struct profile stream_faults = {
    "eintr=10,eagain=10,short=30,events=20,spurious=5",
    "short=30,eagain=10,eintr=5,nobufs=10,sqfull=5,spurious=20",
};
static const struct profile accept_faults = {"eintr=10,eagain=10,emfile=30",
                                             "eagain=10,eintr=10,emfile=30"};

static struct fault_shim shim;
static bool on_uring;
static char backend_name[16]; /* the backend under test, named in options */

/* ---- injectors ---- */

static unsigned long seed(void)
{
	const char *s = getenv("PROACT_FAULT_SEED");
	return s && *s ? strtoul(s, NULL, 10) : 7;
}

static unsigned long hits(void)
{
	if (on_uring)
		return proact__ufault_hits ? proact__ufault_hits() : 0;
	static const char *const kinds[] = {"eintr",    "eagain", "short",  "events",
	                                    "spurious", "enomem", "enospc", "emfile"};
	unsigned long n = 0;
	for (size_t i = 0; shim.hits && i < sizeof(kinds) / sizeof(kinds[0]); i++)
		n += shim.hits(kinds[i]);
	return n;
}

/* Turns faults on for watchers made from now on (io_uring) or at once (shim). */
static void faults_on(const struct profile *p)
{
	char spec[256];
	if (on_uring) {
		if (!proact__ufault_hits)
			skip();
		snprintf(spec, sizeof(spec), "seed=%lu,%s", seed(), p->uring);
		setenv("PROACT_URING_FAULTS", spec, 1);
		return;
	}
	if (!shim.set)
		skip(); /* not preloaded: nothing would fail */
	snprintf(spec, sizeof(spec), "seed=%lu,%s", seed(), p->shim);
	assert_int_equal(shim.set(spec), 0);
}

/* A watcher with faults on: the hook reads its schedule as the watcher
   starts; the shim's starts after, so that setup itself does not fail. */
static proact_watcher *faulty_watcher(const struct profile *p, const struct proact_options *o)
{
	if (on_uring) {
		faults_on(p);
		return t_watcher(o);
	}
	if (!shim.set)
		skip(); /* before the watcher: a skip would leak it */
	proact_watcher *w = t_watcher(o);
	faults_on(p);
	return w;
}

static void faults_off(void)
{
	unsetenv("PROACT_URING_FAULTS");
	if (shim.set)
		shim.set("");
}

static int group_setup(void **state)
{
	(void)state;
	shim.set = (int (*)(const char *))dlsym(RTLD_DEFAULT, "proact_fault_shim_set");
	shim.hits = (unsigned long (*)(const char *))dlsym(RTLD_DEFAULT, "proact_fault_shim_hits");
	proact_watcher *w = t_watcher(NULL);
	on_uring = strcmp(proact_backend(w), "io_uring") == 0;
	snprintf(backend_name, sizeof(backend_name), "%s", proact_backend(w));
	proact_watcher_destroy(w);
	faults_off();
	return 0;
}

static int test_teardown(void **state)
{
	(void)state;
	faults_off();
	fault_alloc_fail_at(-1);
	return 0;
}

/* A ctx is the kind in the pointer's top byte, the sequence number below
   (24 bits where pointers have 32). */
#define KIND_SHIFT (sizeof(uintptr_t) * 8 - 8)

static void *ctx_of(int kind, uint64_t seq)
{
	assert_true(seq < (uint64_t)1 << KIND_SHIFT);
	return (void *)((uintptr_t)kind << KIND_SHIFT | (uintptr_t)seq);
}

static int kind_of(const void *ctx)
{
	return (int)((uintptr_t)ctx >> KIND_SHIFT);
}

static uint64_t seq_of(const void *ctx)
{
	return (uintptr_t)ctx & (((uintptr_t)1 << KIND_SHIFT) - 1);
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* ---- the pump: a source, an optional echo relay, a sink ---- */

enum { K_SRC = 1, K_SINK, K_RELAY_RD, K_RELAY_WR };
enum { W_WRITE, W_WRITEV, W_MIXED };
enum { R_USER, R_POOL, R_FULL };

/*
 * The source writes the seeded byte stream on src_fd; the sink reads it back
 * on sink_fd and checks every byte and the order of completions. With a relay,
 * relay_fd reads into pool buffers and writes each one back (zero-copy echo):
 * then the source and the sink share one fd and the relay is its peer.
 */
struct pump {
	proact_watcher *w;
	uint32_t seed;
	uint8_t *data; /* the whole stream */
	size_t total;
	int wmode, rmode;
	uint64_t deadline; /* given to every request: exercises the heap */
	uint64_t rng;

	int src_fd;
	size_t queued, sent;
	uint64_t wsub, wdone;
	struct iovec iov[MAXQ][MAXSEG];
	size_t wlen[MAXQ];

	int sink_fd;
	size_t asked, got; /* FULL reads: bytes asked for so far */
	uint64_t rsub, rdone;
	uint8_t *rbuf[MAXQ];

	bool closing; /* the fds are being freed: submit nothing more */
	int relay_fd; /* -1: none */
	size_t relay_in, relay_out;
	uint64_t esub, edone, ewsub, ewdone;
	size_t ewlen[ECHO_WRITES];
};

static void submit(struct pump *p, const struct proact_request *q)
{
	struct proact_request r = *q;
	r.deadline = p->deadline;
	int rc = proact_submit(p->w, &r, 1);
	if (rc != 1)
		fail_msg("submit op %d on fd %d: %s", r.op, r.fd, proact_strerror(rc));
}

static void src_more(struct pump *p)
{
	while (p->wsub - p->wdone < MAXQ && p->queued < p->total) {
		size_t left = p->total - p->queued;
		size_t len = 1 + rnd(&p->rng) % (left < CHUNK ? left : CHUNK);
		bool vec = p->wmode == W_WRITEV || (p->wmode == W_MIXED && rnd(&p->rng) % 2);
		struct proact_request q = {.fd = p->src_fd, .ctx = ctx_of(K_SRC, p->wsub)};
		if (vec && len >= 2) {
			struct iovec *iov = p->iov[p->wsub % MAXQ];
			int cnt = 2 + (int)(rnd(&p->rng) % (MAXSEG - 1));
			if ((size_t)cnt > len)
				cnt = (int)len;
			size_t off = p->queued;
			for (int i = 0; i < cnt; i++) {
				size_t seg = i == cnt - 1 ? len - (off - p->queued)
				                          : 1 + rnd(&p->rng) % (len / cnt);
				iov[i] = (struct iovec){.iov_base = p->data + off, .iov_len = seg};
				off += seg;
			}
			q.op = PROACT_OP_WRITEV;
			q.iov = iov;
			q.iovcnt = cnt;
		} else {
			q.op = PROACT_OP_WRITE;
			q.buf = p->data + p->queued;
			q.len = len;
		}
		submit(p, &q);
		p->wlen[p->wsub % MAXQ] = len;
		p->queued += len;
		p->wsub++;
	}
}

static void sink_more(struct pump *p)
{
	while (p->rsub - p->rdone < MAXQ) {
		struct proact_request q = {
		    .fd = p->sink_fd, .op = PROACT_OP_READ, .ctx = ctx_of(K_SINK, p->rsub)};
		if (p->rmode == R_FULL) {
			if (p->asked == p->total)
				return; /* a FULL read past the end would wait for ever */
			size_t left = p->total - p->asked;
			q.len = 1 + rnd(&p->rng) % (left < 4 * CHUNK ? left : 4 * CHUNK);
			q.flags = PROACT_FULL;
			p->asked += q.len;
		} else {
			q.len = p->rmode == R_POOL ? 0 : 1 + rnd(&p->rng) % CHUNK;
		}
		if (p->rmode != R_POOL)
			q.buf = p->rbuf[p->rsub % MAXQ];
		submit(p, &q);
		p->rsub++;
	}
}

static void relay_more(struct pump *p)
{
	/* each read's echo is a write the relay keeps until it is done */
	while (p->relay_fd >= 0 && p->esub - p->edone < MAXQ / 2 &&
	       p->ewsub - p->ewdone < ECHO_WRITES - MAXQ) {
		struct proact_request q = {
		    .fd = p->relay_fd, .op = PROACT_OP_READ, .ctx = ctx_of(K_RELAY_RD, p->esub++)};
		submit(p, &q);
	}
}

/* Bytes of a read completion: the next ones of the stream, in order. */
static void check_bytes(struct pump *p, const struct proact_completion *c, size_t *at)
{
	long bad = t_check(c->buf, c->size, p->seed, *at);
	if (bad >= 0)
		fail_msg("fd %d: byte %zu of the stream is wrong", c->fd, *at + (size_t)bad);
	*at += c->size;
}

static void on_src(struct pump *p, const struct proact_completion *c)
{
	assert_int_equal(seq_of(c->ctx), p->wdone); /* writes complete in order */
	assert_int_equal(c->error, 0);
	assert_int_equal(c->size, p->wlen[p->wdone % MAXQ]); /* whole */
	p->wdone++;
	p->sent += c->size;
}

static void on_sink(struct pump *p, const struct proact_completion *c)
{
	assert_int_equal(seq_of(c->ctx), p->rdone);
	p->rdone++;
	if (c->error)
		fail_msg("read on fd %d: %s", c->fd, strerror(c->error));
	assert_true(c->size > 0); /* no EOF: the stream is not over */
	if (p->rmode == R_POOL)
		assert_true(c->flags & PROACT_COMP_POOL);
	check_bytes(p, c, &p->got);
}

static void on_relay(struct pump *p, const struct proact_completion *c)
{
	if (kind_of(c->ctx) == K_RELAY_WR) {
		assert_int_equal(seq_of(c->ctx), p->ewdone);
		assert_int_equal(c->error, 0);
		assert_int_equal(c->size, p->ewlen[p->ewdone % ECHO_WRITES]);
		p->ewdone++;
		p->relay_out += c->size;
		return;
	}
	assert_int_equal(seq_of(c->ctx), p->edone);
	p->edone++;
	assert_int_equal(c->error, 0);
	assert_true(c->size > 0);
	check_bytes(p, c, &p->relay_in);
	if (p->closing)
		return;
	/* zero-copy echo: the pool buffer stays the watcher's until this write is done */
	assert_true(p->ewsub - p->ewdone < ECHO_WRITES);
	p->ewlen[p->ewsub % ECHO_WRITES] = c->size;
	struct proact_request q = {.fd = p->relay_fd,
	                           .op = PROACT_OP_WRITE,
	                           .buf = c->buf,
	                           .len = c->size,
	                           .ctx = ctx_of(K_RELAY_WR, p->ewsub++)};
	submit(p, &q);
}

static void dispatch(struct pump *p, const struct proact_completion *c)
{
	switch (kind_of(c->ctx)) {
	case K_SRC:
		on_src(p, c);
		break;
	case K_SINK:
		on_sink(p, c);
		break;
	default:
		on_relay(p, c);
	}
}

static void pump_init(struct pump *p, proact_watcher *w, size_t total, uint32_t seed_)
{
	*p = (struct pump){.w = w, .seed = seed_, .total = total, .relay_fd = -1};
	p->rng = seed_ * 2654435761u + 1;
	p->data = malloc(total);
	assert_non_null(p->data);
	t_fill(p->data, total, seed_, 0);
	for (int i = 0; i < MAXQ; i++) {
		p->rbuf[i] = malloc(4 * CHUNK);
		assert_non_null(p->rbuf[i]);
	}
}

static void pump_fini(struct pump *p)
{
	free(p->data);
	for (int i = 0; i < MAXQ; i++)
		free(p->rbuf[i]);
}

/* Runs until the sink got `until` bytes (and the relay passed them on). */
static void pump_run(struct pump *p, size_t until)
{
	uint64_t end = proact_deadline_in(BOUND_MS);
	struct proact_completion comp[64];
	while (p->got < until) {
		src_more(p);
		sink_more(p);
		relay_more(p);
		int n = proact_wait(p->w, comp, 64, 100);
		assert_true(n >= 0);
		for (int i = 0; i < n; i++)
			dispatch(p, &comp[i]);
		if (proact_now() > end)
			fail_msg("stuck: sent %zu, relayed %zu, got %zu of %zu", p->sent,
			         p->relay_in, p->got, p->total);
	}
}

/* The count of completed requests of ctx's kind: the next one's number. */
static uint64_t *done_count(struct pump *p, const void *ctx)
{
	switch (kind_of(ctx)) {
	case K_SRC:
		return &p->wdone;
	case K_SINK:
		return &p->rdone;
	case K_RELAY_RD:
		return &p->edone;
	default:
		return &p->ewdone;
	}
}

/*
 * Frees each fd and collects the rest: each pending request completes once,
 * with its result or ECANCELED, and the FREE completion of an fd comes last.
 * Bytes of reads that still complete are checked too.
 */
static void pump_free(struct pump *p, const int *fds, int nfd)
{
	p->closing = true;
	for (int i = 0; i < nfd; i++)
		assert_int_equal(proact_free(p->w, fds[i], ctx_of(0, (uint64_t)i)), 0);
	int freed = 0;
	uint64_t end = proact_deadline_in(BOUND_MS);
	struct proact_completion comp[64];
	while (freed < nfd) {
		int n = proact_wait(p->w, comp, 64, 100);
		assert_true(n >= 0);
		for (int i = 0; i < n; i++) {
			const struct proact_completion *c = &comp[i];
			if (c->op == PROACT_OP_FREE) {
				freed++;
				assert_int_equal(fcntl(c->fd, F_GETFD), -1); /* closed */
				continue;
			}
			if (c->error == ECANCELED || (c->error == 0 && c->size == 0) ||
			    c->error == ECONNRESET || c->error == EPIPE) {
				uint64_t *done = done_count(p, c->ctx);
				assert_int_equal(seq_of(c->ctx), *done);
				(*done)++;
				if (c->op == PROACT_OP_READ && c->size > 0 &&
				    kind_of(c->ctx) == K_SINK)
					check_bytes(p, c, &p->got);
				continue;
			}
			dispatch(p, c);
		}
		assert_true(proact_now() < end);
	}
	/* nothing of a freed fd is left, and nothing twice */
	assert_int_equal(p->wdone, p->wsub);
	assert_int_equal(p->rdone, p->rsub);
	assert_int_equal(p->edone, p->esub);
	assert_int_equal(p->ewdone, p->ewsub);
	assert_int_equal(proact_wait(p->w, comp, 64, 0), 0);
}

/* One whole stream over a connected pair, with faults on; checks they fired. */
static void stream(bool tcp, int wmode, int rmode, size_t total, bool deadlines)
{
	unsigned long before = hits();
	proact_watcher *w = faulty_watcher(&stream_faults, NULL);
	int fds[2];
	if (tcp)
		t_tcp_pair(fds);
	else
		t_unix_pair(fds);
	struct pump p;
	pump_init(&p, w, total, (uint32_t)(seed() + (unsigned)wmode * 3 + (unsigned)rmode));
	p.src_fd = fds[0];
	p.sink_fd = fds[1];
	p.wmode = wmode;
	p.rmode = rmode;
	p.deadline = deadlines ? proact_deadline_in(60000) : 0;
	pump_run(&p, total);
	assert_int_equal(p.sent, total);
	assert_int_equal(p.got, total);
	pump_free(&p, fds, 2);
	pump_fini(&p);
	proact_watcher_destroy(w);
	print_message("%zu bytes, %lu faults injected\n", total, hits() - before);
	assert_true(hits() > before); /* the faults did fire */
}

static void test_tcp_user_buffers(void **state)
{
	(void)state;
	stream(true, W_WRITE, R_USER, 16 * MIB, false);
}

static void test_unix_pool_buffers(void **state)
{
	(void)state;
	stream(false, W_MIXED, R_POOL, 8 * MIB, false);
}

static void test_tcp_full_writev(void **state)
{
	(void)state;
	stream(true, W_WRITEV, R_FULL, 16 * MIB, false);
}

static void test_unix_full_deadlines(void **state)
{
	(void)state;
	stream(false, W_MIXED, R_FULL, 8 * MIB, true);
}

/* Echo through pool buffers: client writes, the relay writes each read back.
   The pool is tiny, so reads often wait for a buffer an echo write holds. */
static void test_tcp_echo(void **state)
{
	(void)state;
	unsigned long before = hits();
	struct proact_options o = {.pool_buffer_count = 4, .pool_buffer_size = 4096};
	proact_watcher *w = faulty_watcher(&stream_faults, &o);
	int fds[2];
	t_tcp_pair(fds);
	struct pump p;
	pump_init(&p, w, 8 * MIB, (uint32_t)seed() + 100);
	p.src_fd = p.sink_fd = fds[0];
	p.relay_fd = fds[1];
	p.wmode = W_MIXED;
	p.rmode = R_USER;
	pump_run(&p, p.total);
	assert_int_equal(p.relay_in, p.total);
	pump_free(&p, fds, 2);
	pump_fini(&p);
	proact_watcher_destroy(w);
	assert_true(hits() > before);
}

/* proact_free in the middle of a stream: everything pending completes once. */
static void test_free_midstream(void **state)
{
	(void)state;
	proact_watcher *w = faulty_watcher(&stream_faults, NULL);
	int fds[2];
	t_tcp_pair(fds);
	struct pump p;
	pump_init(&p, w, 8 * MIB, (uint32_t)seed() + 200);
	p.src_fd = fds[0];
	p.sink_fd = fds[1];
	p.wmode = W_MIXED;
	p.rmode = R_USER;
	pump_run(&p, p.total / 3);
	pump_free(&p, fds, 2);
	assert_true(p.got < p.total);
	pump_fini(&p);
	proact_watcher_destroy(w);
}

struct reader {
	int fd;
	uint32_t seed;
	size_t at, total;
};

static void *read_rest(void *arg)
{
	struct reader *r = arg;
	uint8_t buf[65536];
	while (r->at < r->total) {
		ssize_t n = recv(r->fd, buf, sizeof(buf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || t_check(buf, (size_t)n, r->seed, r->at) >= 0)
			break;
		r->at += (size_t)n;
	}
	return NULL;
}

/* proact_detach mid-stream: the fd comes back blocking, the stream goes on
   in it exactly where the watcher's last read ended. */
static void test_detach_midstream(void **state)
{
	(void)state;
	proact_watcher *w = faulty_watcher(&stream_faults, NULL);
	int fds[2];
	t_tcp_pair(fds);
	struct pump p;
	pump_init(&p, w, 8 * MIB, (uint32_t)seed() + 300);
	p.src_fd = fds[0];
	p.sink_fd = fds[1];
	p.rmode = R_USER;
	pump_run(&p, p.total / 3);
	assert_int_equal(proact_detach(w, fds[1], NULL), 0);
	struct proact_completion comp[64];
	uint64_t end = proact_deadline_in(BOUND_MS);
	bool detached = false;
	while (!detached) {
		src_more(&p);
		int n = proact_wait(w, comp, 64, 100);
		for (int i = 0; i < n; i++) {
			if (comp[i].op == PROACT_OP_DETACH) {
				detached = true;
			} else if (kind_of(comp[i].ctx) == K_SINK && comp[i].error == ECANCELED) {
				assert_int_equal(seq_of(comp[i].ctx), p.rdone++);
				check_bytes(&p, &comp[i], &p.got); /* may hold bytes */
			} else {
				dispatch(&p, &comp[i]);
			}
		}
		assert_true(proact_now() < end);
	}
	assert_int_equal(p.rdone, p.rsub);
	assert_false(fcntl(fds[1], F_GETFL) & O_NONBLOCK);
	struct reader r = {.fd = fds[1], .seed = p.seed, .at = p.got, .total = p.total};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, read_rest, &r), 0);
	while (p.sent < p.total) {
		src_more(&p);
		int n = proact_wait(w, comp, 64, 100);
		for (int i = 0; i < n; i++)
			dispatch(&p, &comp[i]);
		assert_true(proact_now() < end);
	}
	pthread_join(t, NULL);
	assert_int_equal(r.at, p.total); /* every byte once, in order */
	assert_int_equal(proact_free(w, fds[0], NULL), 0);
	assert_int_equal(t_collect(w, comp, 1, BOUND_MS), 1);
	assert_int_equal(comp[0].op, PROACT_OP_FREE);
	close(fds[1]);
	pump_fini(&p);
	proact_watcher_destroy(w);
}

/* Deadlines under faults: an idle read times out and the stream stays
   whole; a write cut by its deadline sends exactly what it reports. */
static void test_deadline_cut(void **state)
{
	(void)state;
	proact_watcher *w = faulty_watcher(&stream_faults, NULL);
	int fds[2];
	t_tcp_pair(fds);
	int small = 16384;
	setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	uint8_t idle[16];
	assert_int_equal(
	    proact_read_deadline(w, fds[0], idle, sizeof(idle), 0, proact_deadline_in(50), NULL),
	    0);
	size_t len = 4 * MIB;
	uint8_t *data = malloc(len);
	assert_non_null(data);
	t_fill(data, len, 9, 0);
	assert_int_equal(proact_write_deadline(w, fds[0], data, len, proact_deadline_in(200), NULL),
	                 0);
	assert_int_equal(proact_write(w, fds[0], data, 1, NULL), 0);
	struct proact_completion c[3];
	assert_int_equal(t_collect(w, c, 3, BOUND_MS), 3);
	assert_int_equal(c[0].error, ETIMEDOUT); /* the idle read */
	assert_int_equal(c[0].size, 0);
	assert_int_equal(c[1].error, ETIMEDOUT); /* the big write, cut */
	size_t cut = c[1].size;
	assert_true(cut < len);
	if (cut > 0) { /* after a cut nothing more goes out */
		assert_int_equal(c[2].error, EPIPE);
		assert_int_equal(c[2].size, 0);
	} else {
		assert_int_equal(c[2].error, 0);
		cut = 1; /* nothing was cut: the 1-byte write went */
	}
	assert_int_equal(proact_free(w, fds[0], NULL), 0);
	assert_int_equal(t_collect(w, c, 1, BOUND_MS), 1);
	/* the peer gets exactly those bytes, then the end of the stream */
	uint8_t *got = malloc(len);
	assert_non_null(got);
	size_t at = 0;
	for (;;) {
		ssize_t n = recv(fds[1], got + at, len - at, 0);
		if (n < 0 && errno == EINTR)
			continue;
		assert_true(n >= 0);
		if (n == 0)
			break;
		at += (size_t)n;
	}
	assert_int_equal(at, cut);
	assert_int_equal(t_check(got, at, 9, 0), -1);
	close(fds[1]);
	free(got);
	free(data);
	proact_watcher_destroy(w);
}

/* Accepts under EINTR, EAGAIN and EMFILE: each connection accepted once. */
static void test_accept_emfile(void **state)
{
	(void)state;
	unsigned long before = hits();
	proact_watcher *w = faulty_watcher(&accept_faults, NULL);
	int port, lfd = t_listener(&port);
	enum { N = 32 }; /* each EMFILE pauses the listener up to 100 ms */
	int cli[N];
	for (int i = 0; i < N; i++) {
		cli[i] = t_connect(port);
		uint8_t b = (uint8_t)i;
		t_write_all(cli[i], &b, 1);
	}
	bool seen[N] = {false};
	int accepted = 0, emfile = 0;
	uint64_t end = proact_deadline_in(BOUND_MS);
	assert_int_equal(proact_accept(w, lfd, NULL, 0, NULL), 0);
	while (accepted < N) {
		struct proact_completion c;
		assert_int_equal(t_collect(w, &c, 1, BOUND_MS), 1);
		if (c.error == EMFILE) {
			emfile++; /* the connection waits in the queue */
		} else {
			assert_int_equal(c.error, 0);
			uint8_t b;
			fcntl(c.newfd, F_SETFL, 0); /* accepted non-blocking: wait for the byte */
			t_read_all(c.newfd, &b, 1);
			assert_true(b < N && !seen[b]);
			seen[b] = true;
			accepted++;
			close(c.newfd);
		}
		if (accepted < N)
			assert_int_equal(proact_accept(w, lfd, NULL, 0, NULL), 0);
		assert_true(proact_now() < end);
	}
	/* io_uring arms one multishot accept for a whole burst: few SQEs for the
	   hook to fail, so an injected fault is likely but not certain there. */
	if (strcmp(proact_backend(w), "io_uring") != 0) {
		assert_true(emfile > 0);
		assert_true(hits() > before);
	}
	for (int i = 0; i < N; i++)
		close(cli[i]);
	proact_watcher_destroy(w); /* closes the listener */
}

/* ---- allocation failures (both backends) ---- */

/* Every allocation of proact_watcher_new, one at a time: -ENOMEM, no leak. */
static void test_enomem_watcher_new(void **state)
{
	(void)state;
	struct proact_options o = {.backend = backend_name};
	int fds = t_fd_count();
	for (long k = 0;; k++) {
		proact_watcher *w = NULL;
		fault_alloc_fail_at(k);
		int rc = proact_watcher_new(&w, &o);
		fault_alloc_fail_at(-1);
		if (!fault_alloc_fired()) {
			assert_int_equal(rc, 0);
			proact_watcher_destroy(w);
			break;
		}
		assert_int_equal(rc, -ENOMEM);
		assert_null(w);
		assert_int_equal(t_fd_count(), fds);
	}
}

/*
 * Every allocation of a first request on a new fd (registration, request
 * node, deadline heap), then of a request when the free nodes ran out, then
 * of proact_free: each failure is -ENOMEM and queues nothing, the next call
 * works, and every request queued completes exactly once.
 */
static void test_enomem_submit(void **state)
{
	(void)state;
	int fds[2];
	t_unix_pair(fds);
	uint8_t buf[64], out[64];
	t_fill(out, sizeof(out), 5, 0);
	struct proact_completion c;
	proact_watcher *w;
	int rc;
	for (long k = 0;; k++) { /* a new watcher each time: nothing allocated yet */
		w = t_watcher(NULL);
		fault_alloc_fail_at(k);
		rc = proact_read_deadline(w, fds[0], buf, sizeof(buf), 0, proact_deadline_in(60000),
		                          NULL);
		fault_alloc_fail_at(-1);
		if (!fault_alloc_fired())
			break;
		assert_int_equal(rc, -ENOMEM);
		assert_int_equal(proact_wait(w, &c, 1, 0), 0); /* nothing queued */
		/* registered before the failure? then hand it back, as open as it came */
		if (proact_detach(w, fds[0], NULL) == 0) {
			assert_int_equal(t_collect(w, &c, 1, BOUND_MS), 1);
			assert_int_equal(c.op, PROACT_OP_DETACH);
		}
		proact_watcher_destroy(w);
		assert_int_equal(fcntl(fds[0], F_GETFL) & O_NONBLOCK, 0);
	}
	assert_int_equal(rc, 0);
	t_write_all(fds[1], out, sizeof(out));
	assert_int_equal(t_collect(w, &c, 1, BOUND_MS), 1);
	assert_int_equal(c.error, 0);
	assert_int_equal(c.size, sizeof(out));
	assert_int_equal(t_check(buf, c.size, 5, 0), -1);
	/* queue reads until one needs memory the watcher does not have */
	int queued = 0;
	for (;;) {
		fault_alloc_fail_at(0);
		rc = proact_read(w, fds[0], buf, sizeof(buf), NULL);
		fault_alloc_fail_at(-1);
		if (fault_alloc_fired())
			break;
		assert_int_equal(rc, 0);
		assert_true(++queued < 100000);
	}
	assert_int_equal(rc, -ENOMEM);
	fault_alloc_fail_at(0);
	rc = proact_free(w, fds[0], NULL);
	fault_alloc_fail_at(-1);
	if (fault_alloc_fired())
		assert_int_equal(rc, -ENOMEM);
	else
		assert_int_equal(rc, 0); /* free needed no new memory */
	if (rc != 0)
		assert_int_equal(proact_free(w, fds[0], NULL), 0);
	int cancelled = 0;
	uint64_t end = proact_deadline_in(BOUND_MS);
	for (bool freed = false; !freed;) {
		int n = proact_wait(w, &c, 1, 100);
		assert_true(n >= 0 && proact_now() < end);
		if (n == 0)
			continue;
		if (c.op == PROACT_OP_FREE)
			freed = true;
		else if (c.op == PROACT_OP_READ)
			cancelled += c.error == ECANCELED;
	}
	assert_int_equal(cancelled, queued);
	close(fds[1]);
	proact_watcher_destroy(w);
}

/*
 * A parked pool read (no node while idle) whose data comes when no memory is
 * left for its node waits, the data kept in the kernel, and is served once
 * memory is back (at the latest after the 100 ms pause): nothing is lost.
 */
static void test_enomem_parked_read(void **state)
{
	(void)state;
	proact_watcher *w = t_watcher(NULL);
	int a[2], b[2];
	t_unix_pair(a);
	t_unix_pair(b);
	struct proact_completion c;
	assert_int_equal(proact_read(w, a[0], NULL, 0, (void *)1), 0);
	assert_int_equal(proact_wait(w, &c, 1, 0), 0); /* parked */
	/* every free node in use: user-buffer reads until one needs memory */
	uint8_t buf[16];
	int queued = 1, rc;
	assert_int_equal(proact_read(w, b[0], buf, sizeof(buf), NULL), 0);
	/* a round now: a kernel that takes registrations at the next wait
	   (kqueue, emulated in this process) has its memory before the faults */
	assert_int_equal(proact_wait(w, &c, 1, 0), 0);
	for (;;) {
		fault_alloc_fail_at(0);
		rc = proact_read(w, b[0], buf, sizeof(buf), NULL);
		fault_alloc_fail_at(-1);
		if (fault_alloc_fired())
			break;
		assert_int_equal(rc, 0);
		assert_true(++queued < 100000);
	}
	t_write_all(a[1], "xyz", 3);
	uint64_t end = proact_deadline_in(BOUND_MS);
	bool fired = false;
	while (!fired) { /* io_uring: the poll's completion may take a moment */
		assert_true(proact_now() < end);
		fault_alloc_fail_at(0);
		assert_int_equal(proact_wait(w, &c, 1, 10), 0);
		fault_alloc_fail_at(-1);
		fired = fault_alloc_fired();
	}
	assert_int_equal(t_collect(w, &c, 1, BOUND_MS), 1);
	assert_ptr_equal(c.ctx, (void *)1);
	assert_int_equal(c.error, 0);
	assert_int_equal(c.size, 3);
	assert_memory_equal(c.buf, "xyz", 3);
	assert_int_equal(proact_free(w, b[0], NULL), 0);
	int cancelled = 0;
	for (bool freed = false; !freed;) {
		assert_int_equal(t_collect(w, &c, 1, BOUND_MS), 1);
		freed = c.op == PROACT_OP_FREE;
		cancelled += c.op == PROACT_OP_READ && c.error == ECANCELED;
	}
	assert_int_equal(cancelled, queued);
	close(a[1]);
	close(b[1]);
	proact_watcher_destroy(w);
}

/* ---- descriptor exhaustion ---- */

/* A real EMFILE: the watcher's setup fails with it and leaves no fd behind. */
static void test_emfile_watcher_new(void **state)
{
	(void)state;
	struct rlimit old;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	int fd = dup(0); /* the lowest free number: nothing above it is needed */
	assert_true(fd >= 0);
	close(fd);
	int before = t_fd_count();
	struct rlimit low = {.rlim_cur = (rlim_t)fd, .rlim_max = old.rlim_max};
	struct proact_options o = {.backend = backend_name};
	proact_watcher *w = NULL;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	int rc = proact_watcher_new(&w, &o);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
	assert_int_equal(rc, -EMFILE);
	assert_null(w);
	assert_int_equal(t_fd_count(), before);
}

/* epoll: registration refused by the kernel (ENOMEM, or ENOSPC when
   max_user_watches is reached) fails the call, leaves the fd as it was. */
static void test_epoll_register_refused(void **state)
{
	(void)state;
	if (on_uring || !shim.set)
		skip();
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	t_unix_pair(fds);
	static const char *const specs[] = {"enomem=100", "enospc=100"};
	static const int errs[] = {-ENOMEM, -ENOSPC};
	uint8_t buf[8];
	for (int i = 0; i < 2; i++) {
		assert_int_equal(shim.set(specs[i]), 0);
		assert_int_equal(proact_read(w, fds[0], buf, sizeof(buf), NULL), errs[i]);
		assert_false(fcntl(fds[0], F_GETFL) & O_NONBLOCK); /* as it was */
	}
	faults_off();
	assert_int_equal(proact_read(w, fds[0], buf, sizeof(buf), NULL), 0);
	t_write_all(fds[1], "abcdefgh", 8);
	struct proact_completion c;
	assert_int_equal(t_collect(w, &c, 1, BOUND_MS), 1);
	assert_int_equal(c.size, 8);
	assert_memory_equal(buf, "abcdefgh", 8);
	close(fds[1]);
	proact_watcher_destroy(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_tcp_user_buffers, test_teardown),
	    cmocka_unit_test_teardown(test_unix_pool_buffers, test_teardown),
	    cmocka_unit_test_teardown(test_tcp_full_writev, test_teardown),
	    cmocka_unit_test_teardown(test_unix_full_deadlines, test_teardown),
	    cmocka_unit_test_teardown(test_tcp_echo, test_teardown),
	    cmocka_unit_test_teardown(test_free_midstream, test_teardown),
	    cmocka_unit_test_teardown(test_detach_midstream, test_teardown),
	    cmocka_unit_test_teardown(test_deadline_cut, test_teardown),
	    cmocka_unit_test_teardown(test_accept_emfile, test_teardown),
	    cmocka_unit_test_teardown(test_enomem_watcher_new, test_teardown),
	    cmocka_unit_test_teardown(test_enomem_submit, test_teardown),
	    cmocka_unit_test_teardown(test_enomem_parked_read, test_teardown),
	    cmocka_unit_test_teardown(test_emfile_watcher_new, test_teardown),
	    cmocka_unit_test_teardown(test_epoll_register_refused, test_teardown),
	};
	return cmocka_run_group_tests_name(t_backend(), tests, group_setup, NULL);
}
