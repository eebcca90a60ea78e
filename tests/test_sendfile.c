/* SPDX-License-Identifier: MIT */
/*
 * Checks that file sends behave as DESIGN rule 14 says, a write in every
 * respect (rules 3, 4, 6 and 7):
 *   - a range of several MiB to a peer with small buffers completes only
 *     when every byte went out, and the peer gets exactly the file's bytes,
 *     between the writes queued before and after it, in order;
 *   - ranges at any offset, back to back, over TCP and Unix-domain sockets;
 *   - a range past the end of the file completes with ENODATA and the bytes
 *     sent; after a partial range later writes fail with EPIPE (a cut),
 *     after none the stream goes on;
 *   - a deadline that expires mid-range completes with ETIMEDOUT and leaves
 *     a cut; proact_free completes a pending send with ECANCELED;
 *   - a peer that went away fails the range with EPIPE or ECONNRESET, and no
 *     SIGPIPE is raised (sendfile(2) has no MSG_NOSIGNAL);
 *   - bad input gets the documented error from the call, a file that cannot
 *     be sent from an error in the completion.
 */
#include "common.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TIMEOUT_MS 20000
#define BIG        (8u << 20)

/* A temporary file holding len bytes of the seed stream; unlinked already. */
static int seed_file(uint32_t seed, size_t len)
{
	uint8_t *buf = malloc(len);
	assert_non_null(buf);
	t_fill(buf, len, seed, 0);
	int fd = t_temp_file(buf, len);
	free(buf);
	return fd;
}

/* The peer: reads exactly len bytes, bounded in time. */
struct reader {
	int fd;
	size_t len;
	uint8_t *got;
	size_t n;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	t_set_rcvtimeo(r->fd, TIMEOUT_MS / 1000);
	while (r->n < r->len) {
		ssize_t k = recv(r->fd, r->got + r->n, r->len - r->n, 0);
		if (k <= 0)
			break;
		r->n += (size_t)k;
	}
	return NULL;
}

static void collect_ok(proact_watcher *w, struct proact_completion *c, void *ctx, uint8_t op,
                       size_t size)
{
	assert_int_equal(t_collect(w, c, 1, TIMEOUT_MS), 1);
	assert_ptr_equal(c->ctx, ctx);
	assert_int_equal(c->op, op);
	assert_int_equal(c->error, 0);
	assert_int_equal(c->size, size);
}

/* A write, a whole big file, a write: the peer gets the three in order. */
static void test_sendfile_between_writes(void **state)
{
	(void)state;
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	t_tcp_pair(fds);
	t_small_bufs(fds[0], fds[1]);
	int file = seed_file(1, BIG);
	uint8_t head[1000], tail[3000];
	t_fill(head, sizeof(head), 2, 0);
	t_fill(tail, sizeof(tail), 3, 0);
	struct reader r = {.fd = fds[1], .len = sizeof(head) + BIG + sizeof(tail)};
	r.got = malloc(r.len);
	assert_non_null(r.got);
	t_thread *th = t_thread_start(reader_main, &r);
	assert_int_equal(proact_write(w, fds[0], head, sizeof(head), (void *)1), 0);
	assert_int_equal(proact_sendfile(w, fds[0], file, 0, BIG, (void *)2), 0);
	assert_int_equal(proact_write(w, fds[0], tail, sizeof(tail), (void *)3), 0);
	struct proact_completion c;
	collect_ok(w, &c, (void *)1, PROACT_OP_WRITE, sizeof(head));
	collect_ok(w, &c, (void *)2, PROACT_OP_SENDFILE, BIG);
	assert_null(c.buf);
	assert_int_equal(c.fd, fds[0]);
	collect_ok(w, &c, (void *)3, PROACT_OP_WRITE, sizeof(tail));
	assert_int_equal(t_thread_join_within(th, TIMEOUT_MS / 1000), 0);
	assert_int_equal(r.n, r.len);
	assert_int_equal(t_check(r.got, sizeof(head), 2, 0), -1);
	assert_int_equal(t_check(r.got + sizeof(head), BIG, 1, 0), -1);
	assert_int_equal(t_check(r.got + sizeof(head) + BIG, sizeof(tail), 3, 0), -1);
	free(r.got);
	close(file);
	close(fds[1]);
	proact_watcher_destroy(w);
}

/* Ranges at odd offsets, queued back to back, on TCP and Unix-domain sockets. */
static void ranges_on(int fds[2])
{
	static const struct {
		uint64_t off;
		size_t len;
	} ranges[] = {{1, 100}, {4096, 65536}, {BIG - 10, 10}, {0, 1}, {12345, 1000000}};
	enum { N = sizeof(ranges) / sizeof(ranges[0]) };
	proact_watcher *w = t_watcher(NULL);
	int file = seed_file(4, BIG);
	struct reader r = {.fd = fds[1]};
	for (int i = 0; i < N; i++)
		r.len += ranges[i].len;
	r.got = malloc(r.len);
	assert_non_null(r.got);
	t_thread *th = t_thread_start(reader_main, &r);
	for (int i = 0; i < N; i++)
		assert_int_equal(proact_sendfile(w, fds[0], file, ranges[i].off, ranges[i].len,
		                                 (void *)(intptr_t)i),
		                 0);
	struct proact_completion c;
	for (int i = 0; i < N; i++)
		collect_ok(w, &c, (void *)(intptr_t)i, PROACT_OP_SENDFILE, ranges[i].len);
	assert_int_equal(t_thread_join_within(th, TIMEOUT_MS / 1000), 0);
	assert_int_equal(r.n, r.len);
	size_t at = 0;
	for (int i = 0; i < N; i++) {
		assert_int_equal(t_check(r.got + at, ranges[i].len, 4, ranges[i].off), -1);
		at += ranges[i].len;
	}
	free(r.got);
	close(file);
	close(fds[1]);
	proact_watcher_destroy(w);
}

static void test_sendfile_ranges(void **state)
{
	(void)state;
	int fds[2];
	t_tcp_pair(fds);
	ranges_on(fds);
	t_unix_pair(fds);
	ranges_on(fds);
}

/* The file ends inside the range: ENODATA; a cut only if part of it went. */
static void test_sendfile_past_end(void **state)
{
	(void)state;
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	t_unix_pair(fds);
	int file = seed_file(5, 1000);
	struct proact_completion c;
	/* nothing of it exists: no byte sent, the stream goes on */
	assert_int_equal(proact_sendfile(w, fds[0], file, 2000, 10, NULL), 0);
	assert_int_equal(t_collect(w, &c, 1, TIMEOUT_MS), 1);
	assert_int_equal(c.error, ENODATA);
	assert_int_equal(c.size, 0);
	assert_int_equal(proact_write(w, fds[0], "ok", 2, NULL), 0);
	collect_ok(w, &c, NULL, PROACT_OP_WRITE, 2);
	char two[2];
	t_read_all(fds[1], two, 2);
	assert_memory_equal(two, "ok", 2);
	/* part of it exists: those bytes, then a cut */
	assert_int_equal(proact_sendfile(w, fds[0], file, 900, 500, NULL), 0);
	assert_int_equal(t_collect(w, &c, 1, TIMEOUT_MS), 1);
	assert_int_equal(c.error, ENODATA);
	assert_int_equal(c.size, 100);
	assert_int_equal(proact_write(w, fds[0], "no", 2, NULL), 0);
	assert_int_equal(t_collect(w, &c, 1, TIMEOUT_MS), 1);
	assert_int_equal(c.error, EPIPE);
	assert_int_equal(c.size, 0);
	uint8_t got[101];
	t_read_all(fds[1], got, 100);
	assert_int_equal(t_check(got, 100, 5, 900), -1);
	t_set_nonblock(fds[1], 1);
	assert_int_equal(recv(fds[1], got, sizeof(got), 0), -1); /* nothing after the gap */
	close(file);
	close(fds[1]);
	proact_watcher_destroy(w);
}

/* A peer that does not read: the deadline ends the range with a cut. */
static void test_sendfile_deadline_cut(void **state)
{
	(void)state;
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	t_tcp_pair(fds);
	t_small_bufs(fds[0], fds[1]);
	int file = seed_file(6, BIG);
	struct proact_completion c;
	uint64_t deadline = proact_deadline_in(200);
	assert_int_equal(proact_sendfile_deadline(w, fds[0], file, 0, BIG, deadline, NULL), 0);
	assert_int_equal(t_collect(w, &c, 1, TIMEOUT_MS), 1);
	assert_int_equal(c.op, PROACT_OP_SENDFILE);
	assert_int_equal(c.error, ETIMEDOUT);
	assert_true(c.size > 0 && c.size < BIG);
	assert_true(proact_now() >= deadline);
	assert_int_equal(proact_write(w, fds[0], "x", 1, NULL), 0);
	assert_int_equal(t_collect(w, &c, 1, TIMEOUT_MS), 1);
	assert_int_equal(c.error, EPIPE);
	close(file);
	close(fds[1]);
	proact_watcher_destroy(w);
}

/* proact_free while a range waits for room: ECANCELED, then the FREE. */
static void test_sendfile_free(void **state)
{
	(void)state;
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	t_tcp_pair(fds);
	t_small_bufs(fds[0], fds[1]);
	int file = seed_file(7, BIG);
	struct proact_completion c;
	assert_int_equal(proact_sendfile(w, fds[0], file, 0, BIG, (void *)1), 0);
	assert_int_equal(proact_wait(w, &c, 1, 50), 0); /* the socket fills up */
	assert_int_equal(proact_free(w, fds[0], (void *)2), 0);
	assert_int_equal(t_collect(w, &c, 1, TIMEOUT_MS), 1);
	assert_ptr_equal(c.ctx, (void *)1);
	assert_int_equal(c.error, ECANCELED);
	assert_true(c.size < BIG);
	assert_int_equal(t_collect(w, &c, 1, TIMEOUT_MS), 1);
	assert_int_equal(c.op, PROACT_OP_FREE);
	assert_true(t_fd_open(file)); /* the file stays the program's */
	close(file);
	close(fds[1]);
	proact_watcher_destroy(w);
}

/* The peer closed: EPIPE or ECONNRESET, never a SIGPIPE (it would kill us). */
static void test_sendfile_closed_peer(void **state)
{
	(void)state;
	void (*old)(int) = signal(SIGPIPE, SIG_DFL);
	proact_watcher *w = t_watcher(NULL);
	int file = seed_file(10, 1 << 20);
	struct proact_completion c;
#ifndef _WIN32 /* t_unix_pair is a TCP pair there: the TCP case below */
	int u[2];
	t_unix_pair(u);
	close(u[1]);
	assert_int_equal(proact_sendfile(w, u[0], file, 0, 1 << 20, NULL), 0);
	assert_int_equal(t_collect(w, &c, 1, TIMEOUT_MS), 1);
	assert_int_equal(c.error, EPIPE);
	assert_int_equal(c.size, 0);
#endif
	int t[2];
	t_tcp_pair(t);
	close(t[1]);
	int err = 0;
	for (int i = 0; i < 100 && err == 0; i++) { /* the first may go before the reset */
		assert_int_equal(proact_sendfile(w, t[0], file, 0, 1 << 20, NULL), 0);
		assert_int_equal(t_collect(w, &c, 1, TIMEOUT_MS), 1);
		err = c.error;
	}
	assert_true(err == EPIPE || err == ECONNRESET);
	sigset_t pending;
	sigemptyset(&pending);
	assert_int_equal(sigpending(&pending), 0);
	assert_false(sigismember(&pending, SIGPIPE));
	close(file);
	proact_watcher_destroy(w);
	signal(SIGPIPE, old);
}

/* Bad input: refused by the call; a file that cannot be sent from: in the completion. */
static void test_sendfile_bad_input(void **state)
{
	(void)state;
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	t_unix_pair(fds);
	int file = seed_file(8, 100);
	assert_int_equal(proact_sendfile(w, fds[0], file, 0, 0, NULL), -EINVAL);
	assert_int_equal(proact_sendfile(w, fds[0], -1, 0, 10, NULL), -EBADF);
	assert_int_equal(proact_sendfile(w, -1, file, 0, 10, NULL), -EBADF);
	assert_int_equal(proact_sendfile(w, fds[0], file, UINT64_MAX - 5, 10, NULL), -EINVAL);
	assert_int_equal(proact_sendfile(NULL, fds[0], file, 0, 10, NULL), -EINVAL);
	char b[4];
	struct proact_request q = {
	    .fd = fds[0], .op = PROACT_OP_SENDFILE, .file = file, .len = 10, .buf = b};
	assert_int_equal(proact_submit(w, &q, 1), -EINVAL); /* a buffer it does not use */
	q = (struct proact_request){.fd = fds[0], .op = PROACT_OP_WRITE, .buf = b, .len = 4};
	q.offset = 1;
	assert_int_equal(proact_submit(w, &q, 1), -EINVAL); /* an offset a write does not use */
	q.offset = 0;
	q.file = file;
	assert_int_equal(proact_submit(w, &q, 1), -EINVAL);
	struct proact_completion c;
	assert_int_equal(proact_wait(w, &c, 1, 0), 0); /* none of them queued anything */
	/* a socket is no file to send from */
	assert_int_equal(proact_sendfile(w, fds[0], fds[1], 0, 10, (void *)9), 0);
	assert_int_equal(t_collect(w, &c, 1, TIMEOUT_MS), 1);
	assert_ptr_equal(c.ctx, (void *)9);
	assert_true(c.error != 0);
	assert_int_equal(c.size, 0);
	close(file);
	close(fds[1]);
	proact_watcher_destroy(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sendfile_between_writes),
	    cmocka_unit_test(test_sendfile_ranges),
	    cmocka_unit_test(test_sendfile_past_end),
	    cmocka_unit_test(test_sendfile_deadline_cut),
	    cmocka_unit_test(test_sendfile_free),
	    cmocka_unit_test(test_sendfile_closed_peer),
	    cmocka_unit_test(test_sendfile_bad_input),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
