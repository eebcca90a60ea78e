/* SPDX-License-Identifier: MIT */
/*
 * Checks DESIGN rule 8 (watcher shutdown, then destroy): shutdown from another
 * thread makes a blocked proact_wait return -ESHUTDOWN; pending requests on
 * many fds deliver no completion; the registered fds are closed (the peers see
 * EOF); every later call returns -ESHUTDOWN, a second shutdown too; destroy
 * without shutdown shuts down and closes; destroy(NULL) is harmless.
 */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Reads a peer until EOF; fails on a reset or when more than max bytes come. */
static void drain_to_eof(int fd, size_t max)
{
	static char sink[65536];
	size_t total = 0;
	for (;;) {
		ssize_t n = recv(fd, sink, sizeof(sink), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			fail_msg("peer recv: %s", strerror(errno));
		if (n == 0)
			return;
		total += (size_t)n;
		assert_true(total <= max);
	}
}

struct waiter {
	proact_watcher *w;
	int timeout_ms;
	int rc;    /* the last return of proact_wait */
	int ncomp; /* completions received before it */
};

static void *waiter_main(void *arg)
{
	struct waiter *wt = arg;
	struct proact_completion out[64];
	wt->rc = 0;
	for (int i = 0; i < 1000; i++) {
		int n = proact_wait(wt->w, out, 64, wt->timeout_ms);
		if (n < 0) {
			wt->rc = n;
			break;
		}
		wt->ncomp += n;
	}
	return NULL;
}

#define NPAIRS 32
#define WLEN   (2u << 20)

/*
 * Pending reads and writes on 32 fds (TCP and AF_UNIX), a thread blocked in
 * proact_wait(-1); shutdown from the main thread: the wait returns -ESHUTDOWN
 * with no completion delivered, the fds are closed and each peer sees EOF
 * after at most the bytes that were written.
 */
static void test_shutdown_wakes_waiter_and_closes(void **state)
{
	(void)state;
	int base = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	int p[NPAIRS][2];
	char *rbuf[NPAIRS];
	uint8_t *wbuf = malloc(WLEN); /* only read by the writes: one for all */
	assert_non_null(wbuf);
	memset(wbuf, 'w', WLEN);
	for (int i = 0; i < NPAIRS; i++) {
		if (i % 2)
			t_unix_pair(p[i]);
		else
			t_tcp_pair(p[i]);
		t_set_bufs(p[i][0], 4096, 0);
		t_set_rcvtimeo(p[i][1], 10);
		rbuf[i] = malloc(256);
		assert_non_null(rbuf[i]);
		assert_int_equal(proact_read(w, p[i][0], rbuf[i], 256, rbuf[i]), 0);
		assert_int_equal(proact_read(w, p[i][0], NULL, 256, NULL), 0);
		assert_int_equal(proact_write(w, p[i][0], wbuf, WLEN, rbuf[i] + 1), 0);
		assert_int_equal(proact_write(w, p[i][0], wbuf, 100, rbuf[i] + 2), 0);
	}

	struct waiter wt = {.w = w, .timeout_ms = -1};
	t_thread *th = t_thread_start(waiter_main, &wt);
	sleep_ms(100); /* most likely blocked in proact_wait by now; either way works */
	assert_int_equal(proact_watcher_shutdown(w), 0);
	if (t_thread_join_within(th, 10) != 0)
		fail_msg("proact_wait did not return after proact_watcher_shutdown");
	assert_int_equal(wt.rc, -ESHUTDOWN);
	assert_int_equal(wt.ncomp, 0);

	/* all buffers are ours again: release them before destroy */
	for (int i = 0; i < NPAIRS; i++)
		free(rbuf[i]);
	free(wbuf);
	for (int i = 0; i < NPAIRS; i++) {
		assert_false(t_fd_open(p[i][0]));
		drain_to_eof(p[i][1], WLEN + 100);
		close(p[i][1]);
	}
	assert_int_equal(proact_watcher_shutdown(w), -ESHUTDOWN);
	proact_watcher_destroy(w);
	assert_int_equal(t_fd_count(), base);
}

/* After shutdown every call returns -ESHUTDOWN, even with valid arguments. */
static void test_every_call_after_shutdown(void **state)
{
	(void)state;
	int base = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	int reg[2];
	t_unix_pair(reg);
	char rb[64];
	/* a read whose data is already there: completed maybe, never delivered */
	t_write_all(reg[1], "data", 4);
	assert_int_equal(proact_read(w, reg[0], rb, sizeof(rb), rb), 0);
	assert_int_equal(proact_watcher_shutdown(w), 0);
	assert_false(t_fd_open(reg[0]));
	/* closed: EOF, or ECONNRESET since "data" was left unread in it (AF_UNIX) */
	char c;
	ssize_t eof = recv(reg[1], &c, 1, 0);
	assert_true(eof == 0 || (eof < 0 && errno == ECONNRESET));

	int f[2];
	t_unix_pair(f);
	struct proact_completion out[4];
	assert_int_equal(proact_wait(w, out, 4, 0), -ESHUTDOWN);
	assert_int_equal(proact_wait(w, out, 4, 100), -ESHUTDOWN);
	assert_int_equal(proact_read(w, f[0], rb, sizeof(rb), NULL), -ESHUTDOWN);
	assert_int_equal(proact_read(w, f[0], NULL, sizeof(rb), NULL), -ESHUTDOWN);
	assert_int_equal(proact_read_full(w, f[0], rb, sizeof(rb), NULL), -ESHUTDOWN);
	assert_int_equal(proact_read_deadline(w, f[0], rb, sizeof(rb), PROACT_FULL,
	                                      proact_deadline_in(100), NULL),
	                 -ESHUTDOWN);
	assert_int_equal(proact_write(w, f[0], "x", 1, NULL), -ESHUTDOWN);
	assert_int_equal(proact_write_deadline(w, f[0], "x", 1, proact_deadline_in(100), NULL),
	                 -ESHUTDOWN);
	struct iovec iov[2] = {{"a", 1}, {"b", 1}};
	assert_int_equal(proact_writev(w, f[0], iov, 2, NULL), -ESHUTDOWN);
	struct proact_request rq[2] = {
	    {.fd = f[0], .op = PROACT_OP_WRITE, .buf = "x", .len = 1},
	    {.fd = f[0], .op = PROACT_OP_READ, .buf = rb, .len = sizeof(rb)},
	};
	assert_int_equal(proact_submit(w, rq, 2), -ESHUTDOWN);
	assert_int_equal(proact_free(w, reg[0], NULL), -ESHUTDOWN);
	assert_int_equal(proact_free(w, f[0], NULL), -ESHUTDOWN);
	assert_int_equal(proact_detach(w, f[0], NULL), -ESHUTDOWN);
	assert_int_equal(proact_wakeup(w), -ESHUTDOWN);
	assert_int_equal(proact_watcher_shutdown(w), -ESHUTDOWN);

	/* an unbounded wait returns at once too (checked from a thread) */
	struct waiter wt = {.w = w, .timeout_ms = -1};
	t_thread *th = t_thread_start(waiter_main, &wt);
	if (t_thread_join_within(th, 10) != 0)
		fail_msg("proact_wait(-1) blocked on a shut-down watcher");
	assert_int_equal(wt.rc, -ESHUTDOWN);
	assert_int_equal(wt.ncomp, 0);

	/* the unregistered socket was left alone: still blocking and usable */
	assert_false(fcntl(f[0], F_GETFL) & O_NONBLOCK);
	t_write_all(f[0], "ok", 2);
	char got[2];
	t_read_all(f[1], got, 2);
	assert_memory_equal(got, "ok", 2);

	close(f[0]);
	close(f[1]);
	close(reg[1]);
	proact_watcher_destroy(w);
	assert_int_equal(t_fd_count(), base);
}

/* Destroy without shutdown: it shuts down first, closing the registered fds. */
static void test_destroy_without_shutdown(void **state)
{
	(void)state;
	int base = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	enum { N = 8 };
	int p[N][2];
	static char rb[N][64];
	static char wb[N][1000];
	for (int i = 0; i < N; i++) {
		if (i % 2)
			t_unix_pair(p[i]);
		else
			t_tcp_pair(p[i]);
		t_set_rcvtimeo(p[i][1], 10);
		memset(wb[i], 'w', sizeof(wb[i]));
		assert_int_equal(proact_read(w, p[i][0], rb[i], sizeof(rb[i]), rb[i]), 0);
		assert_int_equal(proact_write(w, p[i][0], wb[i], sizeof(wb[i]), wb[i]), 0);
	}
	struct proact_completion out[2 * N];
	/* let some of the writes complete and be delivered, not necessarily all */
	int n = proact_wait(w, out, 2 * N, 50);
	assert_true(n >= 0);
	proact_watcher_destroy(w);
	for (int i = 0; i < N; i++) {
		assert_false(t_fd_open(p[i][0]));
		drain_to_eof(p[i][1], sizeof(wb[i]));
		close(p[i][1]);
	}
	assert_int_equal(t_fd_count(), base);
}

static void test_destroy_fresh_and_null(void **state)
{
	(void)state;
	int base = t_fd_count();
	proact_watcher_destroy(NULL);
	proact_watcher *w = t_watcher(NULL);
	proact_watcher_destroy(w);
	w = t_watcher(NULL);
	assert_int_equal(proact_watcher_shutdown(w), 0);
	proact_watcher_destroy(w);
	assert_int_equal(t_fd_count(), base);
}

/*
 * A Unix-domain peer that stops reading with a large write half sent: the
 * kernel may finish such a send in a worker thread that blocks for buffer
 * space and does not see the cancel. Freeing the fd and shutting the watcher
 * down must still end promptly (an alarm bounds each).
 */
static void blocked_send(proact_watcher *w, int fds[2], uint8_t **data)
{
	t_unix_pair(fds);
	int small = 4096;
	assert_int_equal(setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
#ifdef _WIN32 /* t_unix_pair is TCP there: the peer's receive buffer takes more */
	size_t seg = 1 << 20;
#else
	size_t seg = 3000;
#endif
	size_t len = 3 * seg;
	*data = malloc(len);
	memset(*data, 'x', len);
	struct iovec iov[3] = {{*data, seg}, {*data + seg, seg}, {*data + 2 * seg, seg}};
	assert_int_equal(proact_writev(w, fds[0], iov, 3, NULL), 0);
	shutdown(fds[1], SHUT_WR);
	struct proact_completion c;
	assert_true(proact_wait(w, &c, 1, 0) >= 0); /* the send starts and fills the buffers */
}

static void test_free_with_send_blocked(void **state)
{
	(void)state;
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	uint8_t *data;
	blocked_send(w, fds, &data);
	alarm(20);
	assert_int_equal(proact_free(w, fds[0], (void *)7), 0);
	struct proact_completion c[2];
	assert_int_equal(t_collect(w, c, 2, 10000), 2);
	assert_int_equal(c[0].op, PROACT_OP_WRITEV);
	assert_true(c[0].error == ECANCELED || c[0].error == EPIPE);
	assert_int_equal(c[1].op, PROACT_OP_FREE);
	alarm(0);
	close(fds[1]);
	proact_watcher_destroy(w);
	free(data);
}

static void test_shutdown_with_send_blocked(void **state)
{
	(void)state;
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	uint8_t *data;
	blocked_send(w, fds, &data);
	alarm(20);
	assert_int_equal(proact_watcher_shutdown(w), 0);
	alarm(0);
	close(fds[1]);
	proact_watcher_destroy(w);
	free(data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_shutdown_wakes_waiter_and_closes),
	    cmocka_unit_test(test_every_call_after_shutdown),
	    cmocka_unit_test(test_destroy_without_shutdown),
	    cmocka_unit_test(test_destroy_fresh_and_null),
	    cmocka_unit_test(test_free_with_send_blocked),
	    cmocka_unit_test(test_shutdown_with_send_blocked),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
