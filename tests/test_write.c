/* SPDX-License-Identifier: MIT */
/*
 * Checks that writes behave as DESIGN rule 3 says (with the bad-input side of
 * rule 12):
 *   - a write completes only when every byte went out: an 8 MiB write to a
 *     peer that reads slowly, and pauses, does not complete early, and the
 *     peer gets exactly the bytes;
 *   - a writev of many segments of different sizes delivers exactly their
 *     concatenation, also when it needs many partial continuations
 *     (several MiB over 80 segments, and over IOV_MAX segments, with small
 *     socket buffers);
 *   - a zero-length write or writev (and the other malformed writes) returns
 *     -EINVAL and produces no completion, never a spurious EOF;
 *   - a write to a peer that closed completes with EPIPE/ECONNRESET and does
 *     not kill the process with SIGPIPE;
 *   - writes the socket takes whole when they are submitted (by the waiting
 *     thread, nothing queued before them) complete once each, in order, with
 *     no deadline firing after, and a pool buffer echoed that way stays
 *     held until its write's completion was delivered; a write the socket
 *     takes only part of goes on from the queue, and one behind it waits.
 */
#include "common.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define TIMEOUT_MS 20000

/* ---- a peer reader thread: reads `want` bytes of a seed stream --------- */

struct reader {
	int fd;
	uint32_t seed;
	size_t want;
	size_t chunk;      /* bytes per recv */
	unsigned delay_us; /* sleep after each recv: a slow reader */
	size_t pause_at;   /* stop here until `go` is set (0: never) */
	atomic_int go;     /* set by the main thread */
	atomic_size_t got; /* bytes received so far */
	long bad;          /* stream offset of the first wrong byte, or -1 */
	int err;           /* errno of a failed recv, or -1 for early EOF */
	pthread_t th;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	uint8_t *buf = malloc(r->chunk);
	size_t got = 0;
	uint64_t end = proact_deadline_in(TIMEOUT_MS);
	r->bad = -1;
	r->err = 0;
	while (buf && got < r->want && proact_now() < end) {
		if (r->pause_at && got >= r->pause_at && !atomic_load(&r->go)) {
			usleep(1000);
			continue;
		}
		size_t n = r->want - got;
		if (n > r->chunk)
			n = r->chunk;
		if (r->pause_at && got < r->pause_at && n > r->pause_at - got)
			n = r->pause_at - got;
		ssize_t k = recv(r->fd, buf, n, 0);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			r->err = k == 0 ? -1 : errno;
			break;
		}
		long b = t_check(buf, (size_t)k, r->seed, got);
		if (b >= 0 && r->bad < 0)
			r->bad = (long)got + b;
		got += (size_t)k;
		atomic_store(&r->got, got);
		if (r->delay_us)
			usleep(r->delay_us);
	}
	free(buf);
	return NULL;
}

static void reader_start(struct reader *r)
{
	atomic_store(&r->got, 0);
	assert_int_equal(pthread_create(&r->th, NULL, reader_main, r), 0);
}

/* Nothing more than what was read is waiting on @peer. */
static void assert_no_more(int peer)
{
	char x;
	ssize_t k = recv(peer, &x, 1, MSG_DONTWAIT);
	assert_int_equal(k, -1);
	assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
}

/* ---------------------------------------------------------------------- */

static void test_write_big_slow_peer(void **state)
{
	(void)state;
	int fd0 = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	t_tcp_pair(fds);
	int s = fds[0], peer = fds[1];
	t_small_bufs(s, peer);
	t_set_timeouts(peer, TIMEOUT_MS / 1000);
	enum { BIG = 8 << 20, PAUSE = 1 << 20 };
	uint8_t *buf = malloc(BIG);
	assert_non_null(buf);
	t_fill(buf, BIG, 41, 0);

	struct reader r = {.fd = peer,
	                   .seed = 41,
	                   .want = BIG,
	                   .chunk = 16384,
	                   .delay_us = 200,
	                   .pause_at = PAUSE};
	reader_start(&r);
	struct proact_completion c[4];
	int early = 0, wait_rc = 0;
	assert_int_equal(proact_write(w, s, buf, BIG, (void *)1), 0);

	/* Drive the write while the peer reads its first MiB, then pauses:
	   7 MiB cannot be in flight, so no completion may come. */
	uint64_t end = proact_deadline_in(TIMEOUT_MS);
	while (atomic_load(&r.got) < PAUSE && proact_now() < end) {
		int n = proact_wait(w, c, 4, 10);
		if (n < 0) {
			wait_rc = n;
			break;
		}
		early += n;
	}
	size_t at_pause = atomic_load(&r.got);
	early += t_collect(w, c, 1, 100);
	int early_c = early;
	atomic_store(&r.go, 1);

	int done = early || wait_rc ? 1 : t_collect(w, c, 1, TIMEOUT_MS);
	if (done != 1 || wait_rc)
		shutdown(peer, SHUT_RDWR); /* unblock the reader */
	pthread_join(r.th, NULL);
	assert_int_equal(wait_rc, 0);
	assert_int_equal(at_pause, PAUSE);
	assert_int_equal(early_c, 0);
	assert_int_equal(done, 1);
	assert_int_equal(c[0].fd, s);
	assert_int_equal(c[0].op, PROACT_OP_WRITE);
	assert_ptr_equal(c[0].ctx, (void *)1);
	assert_ptr_equal(c[0].buf, buf);
	assert_int_equal(c[0].error, 0);
	assert_int_equal(c[0].size, BIG);
	assert_int_equal(r.err, 0);
	assert_int_equal(r.bad, -1);
	assert_int_equal(atomic_load(&r.got), BIG);
	assert_no_more(peer);

	proact_watcher_destroy(w);
	close(peer);
	free(buf);
	assert_int_equal(t_fd_count(), fd0);
}

/* One writev: segment i is a separate allocation holding stream bytes. */
struct segs {
	struct iovec iov[IOV_MAX];
	int n;
	size_t total;
};

static void segs_build(struct segs *g, const size_t *sizes, int n, uint32_t seed)
{
	g->n = n;
	g->total = 0;
	for (int i = 0; i < n; i++) {
		if (sizes[i] == 0) {
			g->iov[i].iov_base = NULL;
			g->iov[i].iov_len = 0;
			continue;
		}
		uint8_t *p = malloc(sizes[i]);
		assert_non_null(p);
		t_fill(p, sizes[i], seed, g->total);
		g->iov[i].iov_base = p;
		g->iov[i].iov_len = sizes[i];
		g->total += sizes[i];
	}
}

static void segs_free(struct segs *g)
{
	for (int i = 0; i < g->n; i++)
		free(g->iov[i].iov_base);
}

static void writev_and_check(proact_watcher *w, int s, int peer, struct segs *g, uint32_t seed)
{
	struct reader r = {
	    .fd = peer, .seed = seed, .want = g->total, .chunk = 65536, .delay_us = 0};
	reader_start(&r);
	struct proact_completion c[4];
	assert_int_equal(proact_writev(w, s, g->iov, g->n, g), 0);
	int n = t_collect(w, c, 1, TIMEOUT_MS);
	if (n != 1)
		shutdown(peer, SHUT_RDWR); /* unblock the reader */
	pthread_join(r.th, NULL);
	assert_int_equal(n, 1);
	assert_int_equal(c[0].fd, s);
	assert_int_equal(c[0].op, PROACT_OP_WRITEV);
	assert_ptr_equal(c[0].ctx, g);
	assert_ptr_equal(c[0].buf, g->iov);
	assert_int_equal(c[0].error, 0);
	assert_int_equal(c[0].size, g->total);
	assert_int_equal(r.err, 0);
	if (r.bad >= 0)
		fail_msg("writev: byte %ld of %zu differs", r.bad, g->total);
	assert_int_equal(atomic_load(&r.got), g->total);
	assert_no_more(peer);
}

static void test_writev_big(void **state)
{
	(void)state;
	int fd0 = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	t_tcp_pair(fds);
	int s = fds[0], peer = fds[1];
	t_small_bufs(s, peer);
	t_set_timeouts(peer, TIMEOUT_MS / 1000);

	static const size_t pattern[] = {1, 7, 4096, 131072, 13, 200003, 512, 65537, 3, 99999};
	enum { NSEG = 80 };
	size_t sizes[NSEG];
	for (int i = 0; i < NSEG; i++)
		sizes[i] = pattern[i % 10];
	struct segs *g = calloc(1, sizeof(*g));
	assert_non_null(g);
	segs_build(g, sizes, NSEG, 51);
	assert_true(g->total > (3u << 20));
	writev_and_check(w, s, peer, g, 51);
	segs_free(g);

	/* The same fd again, with IOV_MAX small segments (some empty). */
	size_t small[IOV_MAX];
	for (int i = 0; i < IOV_MAX; i++)
		small[i] = (i % 97 == 5) ? 0 : 1 + (size_t)(t_byte(52, (uint64_t)i) % 16);
	segs_build(g, small, IOV_MAX, 53);
	writev_and_check(w, s, peer, g, 53);
	segs_free(g);

	/* IOV_MAX segments of 0..8 KiB: resumes land inside segments, on their
	   boundaries and next to empty ones. */
	for (int i = 0; i < IOV_MAX; i++)
		small[i] = (i % 61 == 7) ? 0 : (size_t)(t_byte(54, (uint64_t)i) * 32 + i % 32);
	segs_build(g, small, IOV_MAX, 55);
	assert_true(g->total > (3u << 20));
	writev_and_check(w, s, peer, g, 55);
	segs_free(g);
	free(g);

	proact_watcher_destroy(w);
	close(peer);
	assert_int_equal(t_fd_count(), fd0);
}

static void test_write_zero_length(void **state)
{
	(void)state;
	int fd0 = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	t_unix_pair(fds);
	int s = fds[0], peer = fds[1];
	char buf[16] = "0123456789";
	struct iovec zero[3] = {{buf, 0}, {NULL, 0}, {buf + 1, 0}};
	struct iovec one[2] = {{buf, 3}, {NULL, 2}};
	struct iovec many[IOV_MAX + 1];
	for (int i = 0; i <= IOV_MAX; i++) {
		many[i].iov_base = buf;
		many[i].iov_len = 1;
	}
	struct proact_completion c[4];

	assert_int_equal(proact_write(w, s, buf, 0, (void *)1), -EINVAL);
	assert_int_equal(proact_write_deadline(w, s, buf, 0, proact_deadline_in(1000), NULL),
	                 -EINVAL);
	assert_int_equal(proact_writev(w, s, zero, 3, (void *)2), -EINVAL);
	assert_int_equal(proact_writev(w, s, zero, 0, (void *)3), -EINVAL);
	assert_int_equal(proact_writev(w, s, NULL, 1, (void *)4), -EINVAL);
	assert_int_equal(proact_writev(w, s, one, 2, (void *)5), -EINVAL); /* NULL base, len 2 */
	assert_int_equal(proact_writev(w, s, many, IOV_MAX + 1, (void *)6), -EINVAL);
	assert_true(proact_write(w, s, NULL, 5, (void *)7) < 0); /* NULL buffer */
	assert_int_equal(proact_read(w, s, buf, 0, (void *)8), -EINVAL);
	struct proact_request q = {.fd = s, .op = PROACT_OP_WRITE, .buf = buf, .len = 0};
	assert_int_equal(proact_submit(w, &q, 1), -EINVAL);
	struct proact_request qv = {.fd = s, .op = PROACT_OP_WRITEV, .iov = zero, .iovcnt = 3};
	assert_int_equal(proact_submit(w, &qv, 1), -EINVAL);

	/* No completion for any of them. */
	assert_int_equal(t_collect(w, c, 1, 50), 0);

	/* The fd still works: one real write, one completion, five bytes. */
	assert_int_equal(proact_write(w, s, buf, 5, (void *)9), 0);
	assert_int_equal(t_collect(w, c, 4, 200), 1);
	assert_ptr_equal(c[0].ctx, (void *)9);
	assert_int_equal(c[0].error, 0);
	assert_int_equal(c[0].size, 5);
	char in[5];
	t_read_all(peer, in, 5);
	assert_memory_equal(in, "01234", 5);
	assert_no_more(peer);

	proact_watcher_destroy(w);
	close(peer);
	assert_int_equal(t_fd_count(), fd0);
}

static int is_pipe_error(int e)
{
	return e == EPIPE || e == ECONNRESET;
}

static void test_write_closed_peer(void **state)
{
	(void)state;
	int fd0 = t_fd_count();
	void (*old)(int) = signal(SIGPIPE, SIG_DFL); /* SIGPIPE would kill us */
	sigset_t blocked;
	sigemptyset(&blocked);
	pthread_sigmask(SIG_BLOCK, NULL, &blocked);
	proact_watcher *w = t_watcher(NULL);
	struct proact_completion c[4];
	static uint8_t buf[65536];
	t_fill(buf, sizeof(buf), 61, 0);

#ifndef _WIN32 /* t_unix_pair is a TCP pair there: the TCP case below */
	/* AF_UNIX: the peer is gone, every write fails with EPIPE. */
	int u[2];
	t_unix_pair(u);
	close(u[1]);
	for (int i = 0; i < 3; i++)
		assert_int_equal(proact_write(w, u[0], buf, 1000, (void *)(intptr_t)(i + 1)), 0);
	assert_int_equal(t_collect(w, c, 3, TIMEOUT_MS), 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(c[i].fd, u[0]);
		assert_ptr_equal(c[i].ctx, (void *)(intptr_t)(i + 1));
		assert_int_equal(c[i].size, 0);
		if (!is_pipe_error(c[i].error))
			fail_msg("write %d to closed unix peer: error %d", i, c[i].error);
	}

#endif

	/* TCP: the first writes may still be accepted (the peer answers with
	   RST), a later one must fail. */
	int t[2];
	t_tcp_pair(t);
	close(t[1]);
	int err = 0;
	for (int i = 0; i < 100 && err == 0; i++) {
		assert_int_equal(proact_write(w, t[0], buf, sizeof(buf), NULL), 0);
		assert_int_equal(t_collect(w, c, 1, TIMEOUT_MS), 1);
		err = c[0].error;
		if (err == 0)
			assert_int_equal(c[0].size, sizeof(buf));
		else
			assert_true(c[0].size <= sizeof(buf));
	}
	if (!is_pipe_error(err))
		fail_msg("write to closed TCP peer: error %d", err);

	/* No SIGPIPE was raised, not even a blocked, pending one. */
	sigset_t pending;
	sigemptyset(&pending);
	assert_int_equal(sigpending(&pending), 0);
	assert_false(sigismember(&pending, SIGPIPE));
	sigset_t now;
	pthread_sigmask(SIG_BLOCK, NULL, &now);
	assert_int_equal(sigismember(&now, SIGPIPE), sigismember(&blocked, SIGPIPE));

	proact_watcher_destroy(w);
	signal(SIGPIPE, old);
	assert_int_equal(t_fd_count(), fd0);
}

static size_t pool_in_use(proact_watcher *w)
{
	struct proact_stats st;
	assert_int_equal(proact_stats(w, &st), 0);
	return st.pool_in_use;
}

static void test_write_at_once(void **state)
{
	(void)state;
	int fd0 = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	struct proact_completion c[8];
	int t[2];
	t_tcp_pair(t);
	t_set_timeouts(t[1], 20);
	assert_int_equal(proact_wait(w, c, 8, 0), 0); /* this thread is the waiter now */

	static uint8_t buf[3000], got[3000];
	t_fill(buf, sizeof(buf), 71, 0);
	uint64_t deadline = proact_deadline_in(30);
	struct iovec iov[2] = {{buf + 1000, 400}, {buf + 1400, 600}};
	struct proact_request q[3] = {
	    {.fd = t[0],
	     .op = PROACT_OP_WRITE,
	     .buf = buf,
	     .len = 1000,
	     .deadline = deadline,
	     .ctx = (void *)1},
	    {.fd = t[0], .op = PROACT_OP_WRITEV, .iov = iov, .iovcnt = 2, .ctx = (void *)2},
	    {.fd = t[0],
	     .op = PROACT_OP_WRITE,
	     .buf = buf + 2000,
	     .len = 1000,
	     .deadline = deadline,
	     .ctx = (void *)3},
	};
	assert_int_equal(proact_submit(w, q, 3), 3);
	assert_int_equal(t_collect(w, c, 3, TIMEOUT_MS), 3);
	for (int i = 0; i < 3; i++) {
		assert_ptr_equal(c[i].ctx, (void *)(intptr_t)(i + 1));
		assert_int_equal(c[i].error, 0);
		assert_int_equal(c[i].size, 1000);
	}
	usleep(60000); /* past the deadlines: nothing more comes */
	assert_int_equal(proact_wait(w, c, 8, 20), 0);
	t_read_all(t[1], got, sizeof(got));
	assert_int_equal(t_check(got, sizeof(got), 71, 0), -1);
	assert_no_more(t[1]);

	/* A pool buffer echoed at once. */
	t_write_all(t[1], buf, 100);
	assert_int_equal(proact_read(w, t[0], NULL, 0, NULL), 0);
	assert_int_equal(t_collect(w, c, 1, TIMEOUT_MS), 1);
	assert_true(c[0].flags & PROACT_COMP_POOL);
	assert_int_equal(c[0].size, 100);
	void *p = c[0].buf;
	assert_int_equal(proact_write(w, t[0], p, 100, (void *)4), 0);
	assert_int_equal(t_collect(w, c, 1, TIMEOUT_MS), 1);
	assert_ptr_equal(c[0].ctx, (void *)4);
	assert_ptr_equal(c[0].buf, p);
	assert_int_equal(c[0].size, 100);
	assert_int_equal(pool_in_use(w), 1); /* until the next wait */
	assert_int_equal(proact_wait(w, c, 8, 0), 0);
	assert_int_equal(pool_in_use(w), 0);
	t_read_all(t[1], got, 100);
	assert_int_equal(t_check(got, 100, 71, 0), -1);

	/* Part at once, the rest from the queue; the next write waits its turn. */
	t_small_bufs(t[0], t[1]);
	size_t big_len = 4u << 20;
	uint8_t *big = malloc(big_len);
	assert_non_null(big);
	t_fill(big, big_len, 72, 0);
	t_fill(buf, 1000, 72, big_len);
	struct reader r = {.fd = t[1], .seed = 72, .want = big_len + 1000, .chunk = 65536};
	assert_int_equal(proact_write(w, t[0], big, big_len, (void *)5), 0);
	assert_int_equal(proact_write(w, t[0], buf, 1000, (void *)6), 0);
	reader_start(&r);
	assert_int_equal(t_collect(w, c, 2, TIMEOUT_MS), 2);
	pthread_join(r.th, NULL);
	assert_ptr_equal(c[0].ctx, (void *)5);
	assert_int_equal(c[0].size, big_len);
	assert_ptr_equal(c[1].ctx, (void *)6);
	assert_int_equal(c[1].size, 1000);
	assert_int_equal(c[0].error | c[1].error, 0);
	assert_int_equal(r.bad, -1);
	assert_int_equal(atomic_load(&r.got), big_len + 1000);
	free(big);

	proact_watcher_destroy(w);
	close(t[1]);
	assert_int_equal(t_fd_count(), fd0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_write_big_slow_peer), cmocka_unit_test(test_writev_big),
	    cmocka_unit_test(test_write_zero_length),   cmocka_unit_test(test_write_closed_peer),
	    cmocka_unit_test(test_write_at_once),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
