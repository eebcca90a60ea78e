/* SPDX-License-Identifier: MIT */
/*
 * Checks DESIGN rules 1 (delegation: free closes, detach hands the fd back,
 * a reused fd number is a new registration that no stale completion reaches)
 * and 7 (cancellation: free/detach complete every pending request with
 * ECANCELED, then one last FREE/DETACH completion carrying the ctx given;
 * free of an unregistered fd is -ENOENT, a second free or any submission after
 * it is -EALREADY).
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

static void assert_quiet(proact_watcher *w, int ms)
{
	struct proact_completion c[4];
	assert_int_equal(t_collect(w, c, 1, ms), 0);
}

/* Reads exactly len bytes from a socket that may be non-blocking (5 s bound). */
static void poll_read_all(int fd, void *buf, size_t len)
{
	char *p = buf;
	while (len > 0) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		assert_int_equal(poll(&pfd, 1, 5000), 1);
		ssize_t n = recv(fd, p, len, MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		assert_true(n > 0);
		p += n;
		len -= (size_t)n;
	}
}

/*
 * proact_free with two reads and two writes pending: each completes with
 * ECANCELED (reads in order, writes in order), then one FREE completion with
 * the ctx given, last of the fd. The fd is closed: the peer gets the bytes
 * the writes reported, then EOF.
 */
static void test_free_cancels_pending(void **state)
{
	(void)state;
	int base = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	t_tcp_pair(fds);
	t_set_bufs(fds[0], 4096, 0); /* the peer's receive buffer stays as is */
	t_set_rcvtimeo(fds[1], 10);

	char r1[64], r2[64];
	size_t len1 = 8u << 20, len2 = 1000;
	uint8_t *w1 = malloc(len1), *w2 = malloc(len2);
	assert_non_null(w1);
	assert_non_null(w2);
	t_fill(w1, len1, 5, 0);
	t_fill(w2, len2, 5, len1);
	assert_int_equal(proact_read(w, fds[0], r1, sizeof(r1), r1), 0);
	assert_int_equal(proact_write(w, fds[0], w1, len1, w1), 0);
	assert_int_equal(proact_read(w, fds[0], r2, sizeof(r2), r2), 0);
	assert_int_equal(proact_write(w, fds[0], w2, len2, w2), 0);
	/* let the watcher start the I/O; nothing can complete */
	assert_quiet(w, 100);

	int tag;
	assert_int_equal(proact_free(w, fds[0], &tag), 0);
	struct proact_completion out[8];
	assert_int_equal(t_collect(w, out, 5, WAIT_MS), 5);
	assert_quiet(w, 100); /* nothing of the fd after FREE */

	assert_int_equal(out[4].op, PROACT_OP_FREE);
	assert_ptr_equal(out[4].ctx, &tag);
	assert_int_equal(out[4].fd, fds[0]);
	assert_int_equal(out[4].error, 0);
	assert_null(out[4].buf);

	void *reads[2], *writes[2];
	size_t wsize[2];
	int nr = 0, nw = 0;
	for (int k = 0; k < 4; k++) {
		assert_int_equal(out[k].fd, fds[0]);
		assert_int_equal(out[k].error, ECANCELED);
		if (out[k].op == PROACT_OP_READ) {
			assert_true(nr < 2);
			assert_int_equal(out[k].size, 0); /* no data was sent */
			assert_ptr_equal(out[k].buf, out[k].ctx);
			reads[nr++] = out[k].ctx;
		} else {
			assert_int_equal(out[k].op, PROACT_OP_WRITE);
			assert_true(nw < 2);
			assert_ptr_equal(out[k].buf, out[k].ctx);
			wsize[nw] = out[k].size;
			writes[nw++] = out[k].ctx;
		}
	}
	assert_ptr_equal(reads[0], r1);
	assert_ptr_equal(reads[1], r2);
	assert_ptr_equal(writes[0], w1);
	assert_ptr_equal(writes[1], w2);
	assert_true(wsize[0] < len1);
	assert_int_equal(wsize[1], 0); /* queued behind an unfinished write */

	/* the fd really closed: the peer gets what was written, then EOF */
	assert_false(t_fd_open(fds[0]));
	if (wsize[0] > 0) {
		uint8_t *rx = malloc(wsize[0]);
		assert_non_null(rx);
		t_read_all(fds[1], rx, wsize[0]);
		assert_int_equal(t_check(rx, wsize[0], 5, 0), -1);
		free(rx);
	}
	char c;
	assert_int_equal(recv(fds[1], &c, 1, 0), 0);

	close(fds[1]);
	free(w1);
	free(w2);
	proact_watcher_destroy(w);
	assert_int_equal(t_fd_count(), base);
}

/* Detach of an fd with a pending read, for a socket that was blocking or not. */
static void detach_case(int nonblocking)
{
	int base = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	t_tcp_pair(fds);
	t_set_rcvtimeo(fds[0], 10);
	t_set_rcvtimeo(fds[1], 10);
	int fl = fcntl(fds[0], F_GETFL);
	assert_true(fl >= 0);
	if (nonblocking)
		assert_int_equal(fcntl(fds[0], F_SETFL, fl | O_NONBLOCK), 0);
	else
		assert_int_equal(fcntl(fds[0], F_SETFL, fl & ~O_NONBLOCK), 0);
	int before = fcntl(fds[0], F_GETFL);

	char rb[32];
	assert_int_equal(proact_read(w, fds[0], rb, sizeof(rb), rb), 0);
	assert_quiet(w, 50);
	assert_true(fcntl(fds[0], F_GETFL) & O_NONBLOCK); /* registration set it */
	int tag;
	assert_int_equal(proact_detach(w, fds[0], &tag), 0);
	struct proact_completion out[4];
	assert_int_equal(t_collect(w, out, 2, WAIT_MS), 2);
	assert_int_equal(out[0].op, PROACT_OP_READ);
	assert_ptr_equal(out[0].ctx, rb);
	assert_int_equal(out[0].error, ECANCELED);
	assert_int_equal(out[0].size, 0);
	assert_int_equal(out[1].op, PROACT_OP_DETACH);
	assert_int_equal(out[1].fd, fds[0]);
	assert_ptr_equal(out[1].ctx, &tag);
	assert_int_equal(out[1].error, 0);
	assert_null(out[1].buf);
	assert_quiet(w, 50);

	/* the fd is ours again, open, with its blocking mode restored */
	assert_true(t_fd_open(fds[0]));
	assert_int_equal(fcntl(fds[0], F_GETFL), before);
	t_write_all(fds[0], "ping", 4);
	char got[4];
	t_read_all(fds[1], got, 4);
	assert_memory_equal(got, "ping", 4);
	t_write_all(fds[1], "pong", 4);
	poll_read_all(fds[0], got, 4);
	assert_memory_equal(got, "pong", 4);

	/* a later request registers it afresh */
	assert_int_equal(proact_read(w, fds[0], rb, sizeof(rb), &got), 0);
	t_write_all(fds[1], "again", 5);
	assert_int_equal(t_collect(w, out, 1, WAIT_MS), 1);
	assert_ptr_equal(out[0].ctx, &got);
	assert_int_equal(out[0].error, 0);
	assert_true(out[0].size >= 1 && out[0].size <= 5);
	assert_memory_equal(rb, "again", out[0].size);
	assert_int_equal(proact_detach(w, fds[0], NULL), 0);
	assert_int_equal(t_collect(w, out, 1, WAIT_MS), 1);
	assert_int_equal(out[0].op, PROACT_OP_DETACH);
	assert_int_equal(fcntl(fds[0], F_GETFL), before);

	close(fds[0]);
	close(fds[1]);
	proact_watcher_destroy(w);
	assert_int_equal(t_fd_count(), base);
}

static void test_detach_blocking(void **state)
{
	(void)state;
#ifdef _WIN32
	/* Winsock cannot tell a socket's blocking mode: detach leaves it
	   non-blocking there (proact_detach in proact.h). */
	skip();
#endif
	detach_case(0);
}

static void test_detach_nonblocking(void **state)
{
	(void)state;
	detach_case(1);
}

/*
 * -ENOENT for an fd never registered; -EALREADY for a second free, a detach
 * after free and every submission after free; -ENOENT once FREE was delivered.
 */
static void test_free_errors(void **state)
{
	(void)state;
	int base = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	t_unix_pair(fds);
	assert_int_equal(proact_free(w, fds[0], NULL), -ENOENT);
	assert_int_equal(proact_detach(w, fds[0], NULL), -ENOENT);
	assert_quiet(w, 20);

	char rb[16];
	assert_int_equal(proact_read(w, fds[0], rb, sizeof(rb), rb), 0);
	assert_int_equal(proact_free(w, fds[0], rb), 0);
	assert_int_equal(proact_free(w, fds[0], NULL), -EALREADY);
	assert_int_equal(proact_detach(w, fds[0], NULL), -EALREADY);
	assert_int_equal(proact_read(w, fds[0], rb, sizeof(rb), NULL), -EALREADY);
	assert_int_equal(proact_read(w, fds[0], NULL, sizeof(rb), NULL), -EALREADY);
	assert_int_equal(proact_read_full(w, fds[0], rb, sizeof(rb), NULL), -EALREADY);
	assert_int_equal(
	    proact_read_deadline(w, fds[0], rb, sizeof(rb), 0, proact_deadline_in(10), NULL),
	    -EALREADY);
	assert_int_equal(proact_write(w, fds[0], "x", 1, NULL), -EALREADY);
	assert_int_equal(proact_write_deadline(w, fds[0], "x", 1, proact_deadline_in(10), NULL),
	                 -EALREADY);
	struct iovec iov = {"x", 1};
	assert_int_equal(proact_writev(w, fds[0], &iov, 1, NULL), -EALREADY);
	struct proact_request rq = {.fd = fds[0], .op = PROACT_OP_WRITE, .buf = "x", .len = 1};
	assert_int_equal(proact_submit(w, &rq, 1), -EALREADY);

	struct proact_completion out[4];
	assert_int_equal(t_collect(w, out, 2, WAIT_MS), 2);
	assert_int_equal(out[0].op, PROACT_OP_READ);
	assert_int_equal(out[0].error, ECANCELED);
	assert_int_equal(out[1].op, PROACT_OP_FREE);
	assert_ptr_equal(out[1].ctx, rb);
	assert_quiet(w, 50);
	assert_false(t_fd_open(fds[0]));

	/* a second pair: detach, then free is -EALREADY too */
	int q[2];
	t_unix_pair(q);
	assert_int_equal(proact_write(w, q[0], "y", 1, NULL), 0);
	assert_int_equal(t_collect(w, out, 1, WAIT_MS), 1);
	assert_int_equal(out[0].error, 0);
	assert_int_equal(proact_detach(w, q[0], NULL), 0);
	assert_int_equal(proact_free(w, q[0], NULL), -EALREADY);
	assert_int_equal(proact_detach(w, q[0], NULL), -EALREADY);
	assert_int_equal(proact_write(w, q[0], "z", 1, NULL), -EALREADY);
	assert_int_equal(t_collect(w, out, 1, WAIT_MS), 1);
	assert_int_equal(out[0].op, PROACT_OP_DETACH);
	assert_quiet(w, 50);
	/* after the DETACH was delivered the fd is not registered any more */
	assert_int_equal(proact_free(w, q[0], NULL), -ENOENT);

	close(q[0]);
	close(q[1]);
	close(fds[1]);
	proact_watcher_destroy(w);
	assert_int_equal(t_fd_count(), base);
}

/*
 * fd-number reuse: a registration with a pending read (and a deadline, and a
 * pending write) is freed; a new socket takes the same fd number. No
 * completion of the old registration ever reaches the new one, neither its
 * deadline nor data sent by the old peer, and the new registration works.
 */
static void test_fd_reuse_new_registration(void **state)
{
	(void)state;
	int base = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	int a[2];
	t_tcp_pair(a);
	t_set_bufs(a[0], 4096, 0);
	int num = a[0];
	char old1[32], old2[32];
	size_t blen = 4u << 20;
	uint8_t *big = malloc(blen);
	assert_non_null(big);
	memset(big, 'o', blen);
	assert_int_equal(
	    proact_read_deadline(w, num, old1, sizeof(old1), 0, proact_deadline_in(150), old1), 0);
	assert_int_equal(proact_read(w, num, old2, sizeof(old2), old2), 0);
	assert_int_equal(proact_write_deadline(w, num, big, blen, proact_deadline_in(300), big), 0);
	assert_quiet(w, 20);
	int oldtag;
	assert_int_equal(proact_free(w, num, &oldtag), 0);
	struct proact_completion out[8];
	assert_int_equal(t_collect(w, out, 4, WAIT_MS), 4);
	for (int k = 0; k < 3; k++) {
		assert_int_equal(out[k].error, ECANCELED);
		assert_true(out[k].ctx == old1 || out[k].ctx == old2 || out[k].ctx == big);
	}
	assert_int_equal(out[3].op, PROACT_OP_FREE);
	assert_ptr_equal(out[3].ctx, &oldtag);
	assert_false(t_fd_open(num));

	/* a new socket with the same number */
	int b[2];
	t_tcp_pair(b);
	if (b[0] != num) {
		assert_int_equal(dup2(b[0], num), num);
		close(b[0]);
		b[0] = num;
	}
	char nbuf[32];
	int newtag;
	assert_int_equal(proact_read(w, num, nbuf, sizeof(nbuf), &newtag), 0);
	/* the old peer talks into its dead connection */
	(void)send(a[1], "stale", 5, MSG_NOSIGNAL | MSG_DONTWAIT);
	/* past the old deadlines: nothing of the old registration shows up */
	assert_quiet(w, 500);

	t_write_all(b[1], "fresh", 5);
	assert_int_equal(t_collect(w, out, 1, WAIT_MS), 1);
	assert_int_equal(out[0].fd, num);
	assert_int_equal(out[0].op, PROACT_OP_READ);
	assert_ptr_equal(out[0].ctx, &newtag);
	assert_ptr_equal(out[0].buf, nbuf);
	assert_int_equal(out[0].error, 0);
	assert_true(out[0].size >= 1 && out[0].size <= 5);
	assert_memory_equal(nbuf, "fresh", out[0].size);
	assert_quiet(w, 100);

	assert_int_equal(proact_free(w, num, &newtag), 0);
	assert_int_equal(t_collect(w, out, 1, WAIT_MS), 1);
	assert_int_equal(out[0].op, PROACT_OP_FREE);
	assert_ptr_equal(out[0].ctx, &newtag);
	assert_quiet(w, 50);

	close(a[1]);
	close(b[1]);
	free(big);
	proact_watcher_destroy(w);
	assert_int_equal(t_fd_count(), base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_free_cancels_pending),
	    cmocka_unit_test(test_detach_blocking),
	    cmocka_unit_test(test_detach_nonblocking),
	    cmocka_unit_test(test_free_errors),
	    cmocka_unit_test(test_fd_reuse_new_registration),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
