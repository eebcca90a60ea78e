/* SPDX-License-Identifier: MIT */
/*
 * Checks that reads behave as DESIGN rule 2 says (with the pool side of rule 5
 * for a NULL-buffer read and the bad-input side of rule 12):
 *   - a read completes after one read of at least one byte, with exactly the
 *     bytes that arrived, and never waits to fill its buffer;
 *   - at end of stream it completes with size 0 and error 0;
 *   - on a connection reset it completes with a positive errno (ECONNRESET);
 *   - a FULL read fed in many small segments completes once, with every byte;
 *   - a FULL read that ends at EOF or at its deadline reports the true total
 *     read so far (error 0, resp. ETIMEDOUT), not the size of the last chunk;
 *   - a NULL-buffer read gets a pool buffer (PROACT_COMP_POOL) and the bytes,
 *     at most len of them (len 0: a whole pool buffer).
 */
#include "common.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define TIMEOUT_MS 5000

/* Bytes waiting in the kernel's receive queue of @fd (does not consume them). */
static int inq(int fd)
{
	int n = 0;
	assert_int_equal(ioctl(fd, FIONREAD, &n), 0);
	return n;
}

/*
 * Drives the watcher without blocking until the kernel holds no unread byte
 * of @fd any more (the watcher read them), bounded in time. Completions that
 * arrive meanwhile go to out[*got...max). Returns the bytes still queued.
 */
static int drain(proact_watcher *w, int fd, struct proact_completion *out, int max, int *got)
{
	uint64_t end = proact_deadline_in(TIMEOUT_MS);
	int left = inq(fd);
	while (left > 0 && proact_now() < end) {
		int n = proact_wait(w, out + *got, max - *got, 0);
		if (n < 0)
			fail_msg("proact_wait: %s", proact_strerror(n));
		*got += n;
		if (*got >= max)
			break;
		left = inq(fd);
		if (left > 0)
			poll(NULL, 0, 0);
	}
	return left;
}

static void pair(int fds[2], int unix_sock)
{
	if (unix_sock)
		t_unix_pair(fds);
	else
		t_tcp_pair(fds);
}

static void check_one_read(int unix_sock)
{
	int fd0 = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	pair(fds, unix_sock);
	int s = fds[0], peer = fds[1];
	struct proact_completion c[4];
	char buf[64], ctx;

	/* Submitted before any data: no completion until data comes. */
	memset(buf, 0xAA, sizeof(buf));
	assert_int_equal(proact_read(w, s, buf, sizeof(buf), &ctx), 0);
	assert_int_equal(proact_wait(w, c, 4, 0), 0);
	assert_int_equal(t_collect(w, c, 1, 50), 0);

	/* 11 bytes arrive: the read completes with exactly them (one read of
	   >= 1 byte; it does not wait for the other 53 bytes of room). */
	t_write_all(peer, "hello world", 11);
	assert_int_equal(t_collect(w, c, 1, TIMEOUT_MS), 1);
	assert_int_equal(c[0].fd, s);
	assert_int_equal(c[0].op, PROACT_OP_READ);
	assert_ptr_equal(c[0].ctx, &ctx);
	assert_ptr_equal(c[0].buf, buf);
	assert_int_equal(c[0].error, 0);
	assert_int_equal(c[0].size, 11);
	assert_int_equal(c[0].flags & PROACT_COMP_POOL, 0);
	assert_int_equal(c[0].flags & PROACT_COMP_FULL, 0);
	assert_memory_equal(buf, "hello world", 11);
	assert_int_equal((unsigned char)buf[11], 0xAA); /* nothing beyond size */

	/* More data than the buffer: a read takes at most len bytes, the rest
	   stays for the next read, in order. */
	uint8_t data[100], got[100];
	t_fill(data, sizeof(data), 7, 0);
	t_write_all(peer, data, sizeof(data));
	size_t total = 0;
	for (int i = 0; i < 100 && total < sizeof(data); i++) {
		assert_int_equal(proact_read(w, s, got + total, 10, NULL), 0);
		assert_int_equal(t_collect(w, c, 1, TIMEOUT_MS), 1);
		assert_int_equal(c[0].error, 0);
		assert_true(c[0].size >= 1 && c[0].size <= 10);
		assert_ptr_equal(c[0].buf, got + total);
		total += c[0].size;
	}
	assert_int_equal(total, sizeof(data));
	assert_memory_equal(got, data, sizeof(data));

	proact_watcher_destroy(w);
	close(peer);
	assert_int_equal(t_fd_count(), fd0);
}

static void test_read_one_tcp(void **state)
{
	(void)state;
	check_one_read(0);
}

static void test_read_one_unix(void **state)
{
	(void)state;
	check_one_read(1);
}

static void test_read_eof(void **state)
{
	(void)state;
	int fd0 = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	t_tcp_pair(fds);
	int s = fds[0], peer = fds[1];
	struct proact_completion c[4];
	char buf[32];

	/* Data then EOF: the data first, then size 0 error 0. */
	t_write_all(peer, "abc", 3);
	assert_int_equal(shutdown(peer, SHUT_WR), 0);
	assert_int_equal(proact_read(w, s, buf, sizeof(buf), (void *)1), 0);
	assert_int_equal(t_collect(w, c, 1, TIMEOUT_MS), 1);
	assert_int_equal(c[0].error, 0);
	assert_int_equal(c[0].size, 3);
	assert_memory_equal(buf, "abc", 3);

	assert_int_equal(proact_read(w, s, buf, sizeof(buf), (void *)2), 0);
	assert_int_equal(t_collect(w, c, 1, TIMEOUT_MS), 1);
	assert_ptr_equal(c[0].ctx, (void *)2);
	assert_int_equal(c[0].op, PROACT_OP_READ);
	assert_int_equal(c[0].error, 0);
	assert_int_equal(c[0].size, 0);

	/* EOF stays EOF. */
	assert_int_equal(proact_read(w, s, buf, sizeof(buf), (void *)3), 0);
	assert_int_equal(t_collect(w, c, 1, TIMEOUT_MS), 1);
	assert_ptr_equal(c[0].ctx, (void *)3);
	assert_int_equal(c[0].error, 0);
	assert_int_equal(c[0].size, 0);

	/* A read pending when EOF arrives (unix pair: peer closes). */
	int u[2];
	t_unix_pair(u);
	assert_int_equal(proact_read(w, u[0], buf, sizeof(buf), (void *)4), 0);
	assert_int_equal(proact_wait(w, c, 4, 0), 0);
	close(u[1]);
	assert_int_equal(t_collect(w, c, 1, TIMEOUT_MS), 1);
	assert_ptr_equal(c[0].ctx, (void *)4);
	assert_int_equal(c[0].fd, u[0]);
	assert_int_equal(c[0].error, 0);
	assert_int_equal(c[0].size, 0);

	proact_watcher_destroy(w);
	close(peer);
	assert_int_equal(t_fd_count(), fd0);
}

static void reset_peer(int peer)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	assert_int_equal(setsockopt(peer, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	close(peer); /* sends RST */
}

static void assert_reset_error(int err)
{
	if (err != ECONNRESET && err != ECONNABORTED && err != EPIPE)
		fail_msg("read after reset: error %d (%s), want ECONNRESET", err,
		         proact_strerror(err));
}

static void test_read_reset(void **state)
{
	(void)state;
	t_need_reset();
	int fd0 = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	struct proact_completion c[4];
	char buf[32];

	/* Reset before the read is submitted. */
	int a[2];
	t_tcp_pair(a);
	reset_peer(a[1]);
	assert_int_equal(proact_read(w, a[0], buf, sizeof(buf), (void *)1), 0);
	assert_int_equal(t_collect(w, c, 1, TIMEOUT_MS), 1);
	assert_ptr_equal(c[0].ctx, (void *)1);
	assert_int_equal(c[0].size, 0);
	assert_reset_error(c[0].error);

	/* Reset while the read is pending. */
	int b[2];
	t_tcp_pair(b);
	assert_int_equal(proact_read(w, b[0], buf, sizeof(buf), (void *)2), 0);
	assert_int_equal(proact_wait(w, c, 4, 0), 0);
	reset_peer(b[1]);
	assert_int_equal(t_collect(w, c, 1, TIMEOUT_MS), 1);
	assert_ptr_equal(c[0].ctx, (void *)2);
	assert_int_equal(c[0].fd, b[0]);
	assert_int_equal(c[0].size, 0);
	assert_reset_error(c[0].error);

	proact_watcher_destroy(w);
	assert_int_equal(t_fd_count(), fd0);
}

/* FULL read fed 1..7 bytes at a time, the watcher driven between segments. */
static void test_read_full_segments(void **state)
{
	(void)state;
	int fd0 = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	t_tcp_pair(fds);
	int s = fds[0], peer = fds[1];
	enum { TOTAL = 2000 };
	uint8_t data[TOTAL], buf[TOTAL];
	t_fill(data, TOTAL, 11, 0);
	memset(buf, 0, sizeof(buf));
	struct proact_completion c[4];
	int got = 0;

	assert_int_equal(proact_read_full(w, s, buf, TOTAL, (void *)9), 0);
	size_t sent = 0;
	int segments = 0;
	while (sent < TOTAL) {
		size_t n = 1 + (size_t)(t_byte(99, (uint64_t)segments) % 7);
		if (n > TOTAL - sent)
			n = TOTAL - sent;
		t_write_all(peer, data + sent, n);
		sent += n;
		segments++;
		if (sent == TOTAL)
			break;
		assert_int_equal(drain(w, s, c, 4, &got), 0);
		if (got != 0)
			fail_msg("FULL read completed after %zu of %d bytes (size %zu)", sent,
			         TOTAL, c[0].size);
	}
	assert_true(segments > 300);
	got += t_collect(w, c + got, 1, TIMEOUT_MS);
	assert_int_equal(got, 1);
	assert_ptr_equal(c[0].ctx, (void *)9);
	assert_int_equal(c[0].op, PROACT_OP_READ);
	assert_ptr_equal(c[0].buf, buf);
	assert_int_equal(c[0].error, 0);
	assert_int_equal(c[0].size, TOTAL);
	assert_true(c[0].flags & PROACT_COMP_FULL);
	assert_memory_equal(buf, data, TOTAL);
	/* Exactly once. */
	assert_int_equal(t_collect(w, c, 1, 20), 0);

	/* Several FULL reads in a row split one stream exactly. */
	uint8_t big[3 * 1000];
	t_fill(big, sizeof(big), 12, 0);
	uint8_t parts[3][1000];
	for (int i = 0; i < 3; i++)
		assert_int_equal(proact_read_full(w, s, parts[i], 1000, (void *)(intptr_t)i), 0);
	for (size_t off = 0; off < sizeof(big); off += 333)
		t_write_all(peer, big + off, off + 333 > sizeof(big) ? sizeof(big) - off : 333);
	assert_int_equal(t_collect(w, c, 3, TIMEOUT_MS), 3);
	for (int i = 0; i < 3; i++) {
		assert_ptr_equal(c[i].ctx, (void *)(intptr_t)i);
		assert_int_equal(c[i].error, 0);
		assert_int_equal(c[i].size, 1000);
		assert_memory_equal(parts[i], big + 1000 * i, 1000);
	}

	/* FULL with a NULL buffer is refused. */
	assert_int_equal(proact_read_full(w, s, NULL, 10, NULL), -EINVAL);
	assert_int_equal(proact_read_deadline(w, s, NULL, 10, PROACT_FULL, 0, NULL), -EINVAL);
	assert_int_equal(t_collect(w, c, 1, 20), 0);

	proact_watcher_destroy(w);
	close(peer);
	assert_int_equal(t_fd_count(), fd0);
}

/* Feeds @chunks chunks of varying size into a pending FULL read, each read by
   the watcher before the next is sent. Returns the bytes sent. */
static size_t feed_chunks(proact_watcher *w, int s, int peer, const uint8_t *data, int chunks,
                          struct proact_completion *c, int *got)
{
	size_t sent = 0;
	for (int i = 0; i < chunks && *got == 0; i++) {
		size_t n = 100 + 37 * (size_t)i;
		t_write_all(peer, data + sent, n);
		sent += n;
		drain(w, s, c, 1, got);
	}
	return sent;
}

static void test_read_full_eof(void **state)
{
	(void)state;
	int fd0 = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	t_tcp_pair(fds);
	int s = fds[0], peer = fds[1];
	uint8_t data[8192], buf[8192];
	t_fill(data, sizeof(data), 21, 0);
	struct proact_completion c[2];
	int got = 0;

	assert_int_equal(proact_read_full(w, s, buf, sizeof(buf), (void *)5), 0);
	size_t sent = feed_chunks(w, s, peer, data, 5, c, &got);
	assert_int_equal(got, 0);
	assert_int_equal(sent, 100 + 137 + 174 + 211 + 248);
	assert_int_equal(shutdown(peer, SHUT_WR), 0);
	assert_int_equal(t_collect(w, c, 1, TIMEOUT_MS), 1);
	assert_ptr_equal(c[0].ctx, (void *)5);
	assert_int_equal(c[0].error, 0);
	assert_int_equal(c[0].size, sent); /* the total, not the last chunk */
	assert_true(c[0].flags & PROACT_COMP_FULL);
	assert_memory_equal(buf, data, sent);

	proact_watcher_destroy(w);
	close(peer);
	assert_int_equal(t_fd_count(), fd0);
}

static void test_read_full_deadline(void **state)
{
	(void)state;
	int fd0 = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	t_tcp_pair(fds);
	int s = fds[0], peer = fds[1];
	uint8_t data[8192], buf[8192];
	t_fill(data, sizeof(data), 22, 0);
	struct proact_completion c[2];
	int got = 0;

	uint64_t deadline = proact_deadline_in(300);
	assert_int_equal(
	    proact_read_deadline(w, s, buf, sizeof(buf), PROACT_FULL, deadline, (void *)6), 0);
	size_t sent = feed_chunks(w, s, peer, data, 4, c, &got);
	got += t_collect(w, c + got, 1 - got, TIMEOUT_MS);
	assert_int_equal(got, 1);
	assert_ptr_equal(c[0].ctx, (void *)6);
	assert_int_equal(c[0].error, ETIMEDOUT);
	assert_true(proact_now() >= deadline);
	/* Whatever the scheduling, size is every byte taken from the kernel. */
	size_t unread = (size_t)inq(s);
	assert_int_equal(c[0].size, sent - unread);
	assert_memory_equal(buf, data, c[0].size);
	if (unread == 0)
		assert_int_equal(c[0].size, 100 + 137 + 174 + 211);

	proact_watcher_destroy(w);
	close(peer);
	assert_int_equal(t_fd_count(), fd0);
}

static void test_read_pool(void **state)
{
	(void)state;
	int fd0 = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	t_tcp_pair(fds);
	int s = fds[0], peer = fds[1];
	struct proact_completion c[4];
	uint8_t data[3000], got[3000];
	t_fill(data, sizeof(data), 31, 0);

	/* Pending before the data arrives. */
	assert_int_equal(proact_read(w, s, NULL, 16384, (void *)7), 0);
	assert_int_equal(proact_wait(w, c, 4, 0), 0);
	t_write_all(peer, data, sizeof(data));
	size_t total = 0;
	for (int i = 0; i < 3000 && total < sizeof(data); i++) {
		if (i > 0)
			assert_int_equal(proact_read(w, s, NULL, 16384, (void *)7), 0);
		assert_int_equal(t_collect(w, c, 1, TIMEOUT_MS), 1);
		assert_ptr_equal(c[0].ctx, (void *)7);
		assert_int_equal(c[0].op, PROACT_OP_READ);
		assert_int_equal(c[0].error, 0);
		assert_true(c[0].flags & PROACT_COMP_POOL);
		assert_non_null(c[0].buf);
		assert_true(c[0].size >= 1 && c[0].size <= sizeof(data) - total);
		memcpy(got + total, c[0].buf, c[0].size);
		total += c[0].size;
	}
	assert_int_equal(total, sizeof(data));
	assert_memory_equal(got, data, sizeof(data));

	/* len caps a NULL-buffer read; 0 means a whole pool buffer. */
	t_write_all(peer, data, 100);
	assert_int_equal(proact_read(w, s, NULL, 10, (void *)10), 0);
	assert_int_equal(t_collect(w, c, 1, TIMEOUT_MS), 1);
	assert_int_equal(c[0].error, 0);
	assert_true(c[0].flags & PROACT_COMP_POOL);
	assert_true(c[0].size >= 1 && c[0].size <= 10);
	memcpy(got, c[0].buf, c[0].size);
	total = c[0].size;
	assert_int_equal(proact_read(w, s, NULL, 0, (void *)11), 0);
	assert_int_equal(t_collect(w, c, 1, TIMEOUT_MS), 1);
	assert_int_equal(c[0].error, 0);
	assert_true(c[0].flags & PROACT_COMP_POOL);
	assert_int_equal(total + c[0].size, 100); /* all there: one buffer takes it */
	memcpy(got + total, c[0].buf, c[0].size);
	assert_memory_equal(got, data, 100);

	/* EOF on a NULL-buffer read: size 0, error 0. */
	assert_int_equal(shutdown(peer, SHUT_WR), 0);
	assert_int_equal(proact_read(w, s, NULL, 16384, (void *)8), 0);
	assert_int_equal(t_collect(w, c, 1, TIMEOUT_MS), 1);
	assert_ptr_equal(c[0].ctx, (void *)8);
	assert_int_equal(c[0].error, 0);
	assert_int_equal(c[0].size, 0);

	proact_watcher_destroy(w);
	close(peer);
	assert_int_equal(t_fd_count(), fd0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_read_one_tcp),       cmocka_unit_test(test_read_one_unix),
	    cmocka_unit_test(test_read_eof),           cmocka_unit_test(test_read_reset),
	    cmocka_unit_test(test_read_full_segments), cmocka_unit_test(test_read_full_eof),
	    cmocka_unit_test(test_read_full_deadline), cmocka_unit_test(test_read_pool),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
