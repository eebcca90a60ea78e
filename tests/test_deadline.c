/* SPDX-License-Identifier: MIT */
/*
 * Checks that deadlines follow DESIGN rule 6: they are absolute CLOCK_MONOTONIC
 * times; an expired request completes with ETIMEDOUT and the bytes it moved
 * (never before its deadline); a write that expires after sending part of its
 * bytes cuts the stream (later writes fail with EPIPE, size 0, and the peer got
 * exactly the bytes reported); a write that expires having sent nothing leaves
 * the stream intact; one expiry leaves alone the requests without a deadline or
 * with a later one, also on the same fd; a deadline already in the past
 * expires at once; a thousand deadlines expiring together all complete.
 */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define WAIT_MS 10000

/* Asserts that nothing is delivered within ms milliseconds. */
static void assert_quiet(proact_watcher *w, int ms)
{
	struct proact_completion c[4];
	assert_int_equal(t_collect(w, c, 1, ms), 0);
}

/* Frees every fd (no request pending) and collects the n FREE completions. */
static void free_all(proact_watcher *w, const int *fds, int n)
{
	struct proact_completion *c = calloc((size_t)n, sizeof(*c));
	assert_non_null(c);
	for (int i = 0; i < n; i++)
		assert_int_equal(proact_free(w, fds[i], (void *)(uintptr_t)(i + 1)), 0);
	assert_int_equal(t_collect(w, c, n, WAIT_MS), n);
	for (int i = 0; i < n; i++) {
		assert_int_equal(c[i].op, PROACT_OP_FREE);
		uintptr_t k = (uintptr_t)c[i].ctx;
		assert_true(k >= 1 && k <= (uintptr_t)n);
		assert_int_equal(c[i].fd, fds[k - 1]);
	}
	free(c);
}

/* Collects exactly one completion, asserting it arrived. */
static struct proact_completion collect_one(proact_watcher *w)
{
	struct proact_completion c;
	memset(&c, 0, sizeof(c));
	assert_int_equal(t_collect(w, &c, 1, WAIT_MS), 1);
	return c;
}

#define NCONN 1000

struct conn {
	int srv, cli;
	uint64_t deadline;
	int seen;
	char buf[16];
};

/* 1,000 reads with a deadline ~200 ms ahead, no data: all complete ETIMEDOUT, size 0. */
static void test_thousand_read_deadlines(void **state)
{
	(void)state;
	int base = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	struct conn *cs = calloc(NCONN, sizeof(*cs));
	assert_non_null(cs);
	int port;
	int lfd = t_listener(&port);
	for (int i = 0; i < NCONN; i++) {
		cs[i].cli = t_connect(port);
		cs[i].srv = t_accept(lfd);
		assert_true(cs[i].srv >= 0);
	}
	close(lfd);

	uint64_t dl = proact_deadline_in(200);
	for (int i = 0; i < NCONN; i++) {
		cs[i].deadline = dl;
		assert_int_equal(
		    proact_read_deadline(w, cs[i].srv, cs[i].buf, sizeof(cs[i].buf), 0, dl, &cs[i]),
		    0);
	}

	struct proact_completion out[256];
	int got = 0;
	uint64_t end = proact_deadline_in(30000);
	while (got < NCONN && proact_now() < end) {
		int n = proact_wait(w, out, 256, 100);
		assert_true(n >= 0);
		uint64_t now = proact_now();
		for (int k = 0; k < n; k++) {
			struct conn *c = out[k].ctx;
			assert_true(c >= cs && c < cs + NCONN);
			assert_int_equal(c->seen, 0);
			c->seen = 1;
			assert_int_equal(out[k].op, PROACT_OP_READ);
			assert_int_equal(out[k].fd, c->srv);
			assert_int_equal(out[k].error, ETIMEDOUT);
			assert_int_equal(out[k].size, 0);
			assert_ptr_equal(out[k].buf, c->buf);
			/* never before the deadline */
			assert_true(now >= c->deadline);
		}
		got += n;
	}
	assert_int_equal(got, NCONN);
	assert_quiet(w, 50);

	int *fds = malloc(NCONN * sizeof(int));
	assert_non_null(fds);
	for (int i = 0; i < NCONN; i++)
		fds[i] = cs[i].srv;
	free_all(w, fds, NCONN);
	free(fds);
	for (int i = 0; i < NCONN; i++)
		close(cs[i].cli);
	free(cs);
	proact_watcher_destroy(w);
	assert_int_equal(t_fd_count(), base);
}

#define BIG (64u << 20)

/*
 * A 64 MiB write to a peer that never reads, deadline 300 ms: ETIMEDOUT with
 * 0 < size < len; the stream is cut, so later writes complete EPIPE, size 0;
 * the peer receives exactly `size` bytes, the start of the buffer, then EOF.
 */
static void test_partial_write_cuts_stream(void **state)
{
	(void)state;
	int base = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	t_tcp_pair(fds);
	/* small send buffer; the peer's receive buffer stays as is, since a tiny
	   one can stall the flush after close for seconds (zero-window probes) */
	t_set_bufs(fds[0], 4096, 0);
	t_set_rcvtimeo(fds[1], 10);

	uint8_t *big = malloc(BIG);
	assert_non_null(big);
	t_fill(big, BIG, 61, 0);
	uint8_t small[1000];
	t_fill(small, sizeof(small), 62, 0);

	uint64_t dl = proact_deadline_in(300);
	assert_int_equal(proact_write_deadline(w, fds[0], big, BIG, dl, big), 0);
	struct proact_completion c = collect_one(w);
	assert_true(proact_now() >= dl);
	assert_int_equal(c.op, PROACT_OP_WRITE);
	assert_int_equal(c.fd, fds[0]);
	assert_ptr_equal(c.ctx, big);
	assert_ptr_equal(c.buf, big);
	assert_int_equal(c.error, ETIMEDOUT);
	assert_true(c.size > 0);
	assert_true(c.size < BIG);
	size_t sent = c.size;

	/* every later write fails with EPIPE and sends nothing */
	assert_int_equal(proact_write(w, fds[0], small, sizeof(small), small), 0);
	c = collect_one(w);
	assert_int_equal(c.op, PROACT_OP_WRITE);
	assert_ptr_equal(c.ctx, small);
	assert_int_equal(c.error, EPIPE);
	assert_int_equal(c.size, 0);

	struct iovec iov[2] = {{small, 10}, {small + 10, 20}};
	assert_int_equal(proact_writev(w, fds[0], iov, 2, iov), 0);
	c = collect_one(w);
	assert_int_equal(c.op, PROACT_OP_WRITEV);
	assert_ptr_equal(c.ctx, iov);
	assert_int_equal(c.error, EPIPE);
	assert_int_equal(c.size, 0);

	/* closing the fd flushes what the kernel accepted, then FIN */
	free_all(w, &fds[0], 1);
	uint8_t *rx = malloc(sent + 1);
	assert_non_null(rx);
	t_read_all(fds[1], rx, sent);
	assert_int_equal(t_check(rx, sent, 61, 0), -1);
	ssize_t extra = recv(fds[1], rx, 1, 0);
	assert_int_equal(extra, 0); /* EOF: not one byte after the cut */

	free(rx);
	free(big);
	close(fds[1]);
	proact_watcher_destroy(w);
	assert_int_equal(t_fd_count(), base);
}

/*
 * An expiry leaves alone requests with no deadline or a later one: on other
 * fds and on the same fd, in both orders. They complete normally when data
 * comes later.
 */
static void test_expiry_leaves_others_alone(void **state)
{
	(void)state;
	int base = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	enum { A, B, C, D, N };
	int p[N][2];
	for (int i = 0; i < N; i++)
		t_tcp_pair(p[i]);
	static char buf[6][128];
	/* A: short deadline, then none; B: none; C: far; D: none, then short */
	uint64_t dl = proact_deadline_in(100);
	uint64_t far = proact_deadline_in(60000);
	assert_int_equal(proact_read_deadline(w, p[A][0], buf[0], 128, 0, dl, buf[0]), 0);
	assert_int_equal(proact_read(w, p[A][0], buf[1], 128, buf[1]), 0);
	assert_int_equal(proact_read(w, p[B][0], buf[2], 128, buf[2]), 0);
	assert_int_equal(proact_read_deadline(w, p[C][0], buf[3], 128, 0, far, buf[3]), 0);
	assert_int_equal(proact_read(w, p[D][0], buf[4], 128, buf[4]), 0);
	assert_int_equal(proact_read_deadline(w, p[D][0], buf[5], 128, 0, dl, buf[5]), 0);

	struct proact_completion out[8];
	assert_int_equal(t_collect(w, out, 2, WAIT_MS), 2);
	assert_true(proact_now() >= dl);
	int seen0 = 0, seen5 = 0;
	for (int k = 0; k < 2; k++) {
		assert_int_equal(out[k].op, PROACT_OP_READ);
		assert_int_equal(out[k].error, ETIMEDOUT);
		assert_int_equal(out[k].size, 0);
		if (out[k].ctx == buf[0]) {
			assert_int_equal(out[k].fd, p[A][0]);
			seen0++;
		} else {
			assert_ptr_equal(out[k].ctx, buf[5]);
			assert_int_equal(out[k].fd, p[D][0]);
			seen5++;
		}
	}
	assert_int_equal(seen0, 1);
	assert_int_equal(seen5, 1);
	assert_quiet(w, 300);

	uint8_t msg[100];
	for (int i = 0; i < N; i++) {
		t_fill(msg, sizeof(msg), 70 + (uint32_t)i, 0);
		t_write_all(p[i][1], msg, sizeof(msg));
	}
	assert_int_equal(t_collect(w, out, 4, WAIT_MS), 4);
	int seen[N] = {0};
	for (int k = 0; k < 4; k++) {
		int i = -1;
		if (out[k].ctx == buf[1])
			i = A;
		else if (out[k].ctx == buf[2])
			i = B;
		else if (out[k].ctx == buf[3])
			i = C;
		else if (out[k].ctx == buf[4])
			i = D;
		else
			fail_msg("unexpected ctx %p", out[k].ctx);
		seen[i]++;
		assert_int_equal(out[k].fd, p[i][0]);
		assert_int_equal(out[k].op, PROACT_OP_READ);
		assert_int_equal(out[k].error, 0);
		assert_true(out[k].size >= 1 && out[k].size <= 100);
		assert_ptr_equal(out[k].buf, out[k].ctx);
		assert_int_equal(t_check(out[k].buf, out[k].size, 70 + (uint32_t)i, 0), -1);
	}
	for (int i = 0; i < N; i++)
		assert_int_equal(seen[i], 1);

	int mine[N];
	for (int i = 0; i < N; i++)
		mine[i] = p[i][0];
	free_all(w, mine, N);
	for (int i = 0; i < N; i++)
		close(p[i][1]);
	proact_watcher_destroy(w);
	assert_int_equal(t_fd_count(), base);
}

/*
 * Drives the watcher and reads the peer until `want` bytes came; completions
 * delivered meanwhile go to out[*nout...]. Returns the bytes read.
 */
static size_t pump_peer(proact_watcher *w, int peer, uint8_t *rx, size_t want,
                        struct proact_completion *out, int *nout, int maxout)
{
	size_t got = 0;
	uint64_t end = proact_deadline_in(WAIT_MS);
	while (got < want && proact_now() < end) {
		struct proact_completion scratch;
		int room = maxout - *nout;
		int n = proact_wait(w, room > 0 ? out + *nout : &scratch, room > 0 ? room : 1, 5);
		assert_true(n >= 0);
		if (room <= 0)
			assert_int_equal(n, 0);
		*nout += n;
		ssize_t r = recv(peer, rx + got, want - got, MSG_DONTWAIT);
		if (r > 0)
			got += (size_t)r;
		else if (r == 0)
			break;
		else
			assert_true(errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
	}
	return got;
}

/*
 * A write that expires having sent nothing does not cut the stream: at the
 * head of the queue with a full send buffer, and queued behind another write.
 */
static void test_write_expired_unsent_keeps_stream(void **state)
{
	(void)state;
	int base = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	t_unix_pair(fds);
	t_set_bufs(fds[0], 8192, 0);
	t_set_bufs(fds[1], 0, 8192);

	/* fill the send buffer by hand before the fd is registered */
	size_t cap = 4u << 20;
	uint8_t *pre = malloc(cap);
	assert_non_null(pre);
	t_fill(pre, cap, 80, 0);
	size_t prefill = 0, before;
	do { /* again after a pause: ACKs still on their way may make room */
		before = prefill;
		poll(NULL, 0, prefill ? 100 : 0);
		for (;;) {
			assert_true(prefill < cap);
			ssize_t n =
			    send(fds[0], pre + prefill, cap - prefill, MSG_DONTWAIT | MSG_NOSIGNAL);
			if (n < 0) {
				assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
				break;
			}
			prefill += (size_t)n;
		}
	} while (prefill > before);
	assert_true(prefill > 0);

	uint8_t lost[4096];
	t_fill(lost, sizeof(lost), 81, 0); /* other stream: must never reach the peer */
	uint64_t dl = proact_deadline_in(200);
	assert_int_equal(proact_write_deadline(w, fds[0], lost, sizeof(lost), dl, lost), 0);
	struct proact_completion c = collect_one(w);
	assert_true(proact_now() >= dl);
	assert_int_equal(c.op, PROACT_OP_WRITE);
	assert_ptr_equal(c.ctx, lost);
	assert_int_equal(c.error, ETIMEDOUT);
	assert_int_equal(c.size, 0);

	/* The stream is intact: a long write (no deadline), then one queued behind
	   it that expires unsent, then a third that must go out after the first. */
	size_t len1 = 1u << 20, len3 = 5000;
	uint8_t *w1 = malloc(len1), *w3 = malloc(len3);
	assert_non_null(w1);
	assert_non_null(w3);
	t_fill(w1, len1, 80, prefill);
	t_fill(w3, len3, 80, prefill + len1);
	uint64_t dl2 = proact_deadline_in(200);
	assert_int_equal(proact_write(w, fds[0], w1, len1, w1), 0);
	assert_int_equal(proact_write_deadline(w, fds[0], lost, sizeof(lost), dl2, lost), 0);
	c = collect_one(w); /* the peer still does not read: only the expiry comes */
	assert_true(proact_now() >= dl2);
	assert_ptr_equal(c.ctx, lost);
	assert_int_equal(c.error, ETIMEDOUT);
	assert_int_equal(c.size, 0);
	assert_int_equal(proact_write(w, fds[0], w3, len3, w3), 0);

	size_t total = prefill + len1 + len3;
	uint8_t *rx = malloc(total);
	assert_non_null(rx);
	struct proact_completion out[4];
	int nout = 0;
	assert_int_equal(pump_peer(w, fds[1], rx, total, out, &nout, 4), total);
	assert_int_equal(t_check(rx, total, 80, 0), -1);
	nout += t_collect(w, out + nout, 2 - nout, WAIT_MS);
	assert_int_equal(nout, 2);
	assert_ptr_equal(out[0].ctx, w1);
	assert_int_equal(out[0].error, 0);
	assert_int_equal(out[0].size, len1);
	assert_ptr_equal(out[1].ctx, w3);
	assert_int_equal(out[1].error, 0);
	assert_int_equal(out[1].size, len3);

	free_all(w, &fds[0], 1);
	assert_int_equal(recv(fds[1], rx, 1, MSG_DONTWAIT), 0); /* EOF, nothing more */
	close(fds[1]);
	free(rx);
	free(w1);
	free(w3);
	free(pre);
	proact_watcher_destroy(w);
	assert_int_equal(t_fd_count(), base);
}

/* A read whose deadline is already past completes with ETIMEDOUT, size 0. */
static void test_deadline_in_past(void **state)
{
	(void)state;
	int base = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	t_tcp_pair(fds);
	char b1[32], b2[32], b3[32];
	assert_int_equal(proact_read_deadline(w, fds[0], b1, sizeof(b1), 0, 1, b1), 0);
	assert_int_equal(
	    proact_read_deadline(w, fds[0], b2, sizeof(b2), PROACT_FULL, proact_now() - 1, b2), 0);
	struct proact_completion out[4];
	assert_int_equal(t_collect(w, out, 2, WAIT_MS), 2);
	/* either order: the second expires while the first is still ahead of it */
	if (out[0].ctx != b1) {
		struct proact_completion t = out[0];
		out[0] = out[1];
		out[1] = t;
	}
	assert_ptr_equal(out[0].ctx, b1);
	assert_ptr_equal(out[1].ctx, b2);
	for (int k = 0; k < 2; k++) {
		assert_int_equal(out[k].op, PROACT_OP_READ);
		assert_int_equal(out[k].fd, fds[0]);
		assert_int_equal(out[k].error, ETIMEDOUT);
		assert_int_equal(out[k].size, 0);
	}
	assert_true(out[1].flags & PROACT_COMP_FULL);
	assert_false(out[0].flags & PROACT_COMP_FULL);

	/* the fd still works afterwards */
	assert_int_equal(proact_read(w, fds[0], b3, sizeof(b3), b3), 0);
	t_write_all(fds[1], "hello", 5);
	struct proact_completion c = collect_one(w);
	assert_ptr_equal(c.ctx, b3);
	assert_int_equal(c.error, 0);
	assert_true(c.size >= 1 && c.size <= 5);
	assert_memory_equal(b3, "hello", c.size);

	free_all(w, &fds[0], 1);
	close(fds[1]);
	proact_watcher_destroy(w);
	assert_int_equal(t_fd_count(), base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_thousand_read_deadlines),
	    cmocka_unit_test(test_partial_write_cuts_stream),
	    cmocka_unit_test(test_expiry_leaves_others_alone),
	    cmocka_unit_test(test_write_expired_unsent_keeps_stream),
	    cmocka_unit_test(test_deadline_in_past),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
