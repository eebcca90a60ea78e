/* SPDX-License-Identifier: MIT */
/*
 * Checks DESIGN rule 10 (back-pressure): with max_pending_per_fd = 8 the 9th
 * request on an fd returns -EAGAIN (other fds unaffected) and produces no
 * completion; proact_submit stops at the limit and says how many it queued;
 * with max_pending = 16 the 17th request on the watcher returns -ENOBUFS; once
 * completions are delivered the limits free up again; and reads happen only
 * when requested: an unread connection fills up and blocks its peer, and every
 * byte the peer sent is still there, in order, when a read finally comes.
 */
#include "common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define WAIT_MS 10000

static void assert_quiet(proact_watcher *w, int ms)
{
	struct proact_completion c[4];
	assert_int_equal(t_collect(w, c, 1, ms), 0);
}

static char bufs[64][16];

static void test_per_fd_limit(void **state)
{
	(void)state;
	int base = t_fd_count();
	struct proact_options o = {.max_pending_per_fd = 8};
	proact_watcher *w = t_watcher(&o);
	int a[2], b[2];
	t_tcp_pair(a);
	t_unix_pair(b);

	for (int i = 0; i < 8; i++)
		assert_int_equal(proact_read(w, a[0], bufs[i], 16, bufs[i]), 0);
	/* the 9th request of any kind on that fd */
	assert_int_equal(proact_read(w, a[0], bufs[8], 16, bufs[8]), -EAGAIN);
	assert_int_equal(proact_read(w, a[0], NULL, 16, NULL), -EAGAIN);
	assert_int_equal(proact_read_full(w, a[0], bufs[8], 16, bufs[8]), -EAGAIN);
	assert_int_equal(proact_write(w, a[0], "x", 1, NULL), -EAGAIN);
	struct iovec iov = {"x", 1};
	assert_int_equal(proact_writev(w, a[0], &iov, 1, NULL), -EAGAIN);
	struct proact_request rq = {.fd = a[0], .op = PROACT_OP_READ, .buf = bufs[8], .len = 16};
	assert_int_equal(proact_submit(w, &rq, 1), -EAGAIN);
	/* no completion for the refused ones, and nothing reached the peer */
	assert_quiet(w, 100);
	char c;
	assert_int_equal(recv(a[1], &c, 1, MSG_DONTWAIT), -1);
	assert_true(errno == EAGAIN || errno == EWOULDBLOCK);

	/* another fd is not affected; submit stops at its limit and reports it */
	struct proact_request rs[10];
	for (int i = 0; i < 10; i++)
		rs[i] = (struct proact_request){.fd = b[0],
		                                .op = PROACT_OP_READ,
		                                .buf = bufs[16 + i],
		                                .len = 16,
		                                .ctx = bufs[16 + i]};
	assert_int_equal(proact_submit(w, rs, 10), 8);
	assert_int_equal(proact_submit(w, rs + 8, 2), -EAGAIN);
	assert_quiet(w, 50);

	/* a completion delivered frees one slot, and only one */
	t_write_all(a[1], "1", 1);
	struct proact_completion out[32];
	assert_int_equal(t_collect(w, out, 1, WAIT_MS), 1);
	assert_ptr_equal(out[0].ctx, bufs[0]);
	assert_int_equal(out[0].error, 0);
	assert_int_equal(out[0].size, 1);
	assert_int_equal(proact_read(w, a[0], bufs[8], 16, bufs[8]), 0);
	assert_int_equal(proact_read(w, a[0], bufs[9], 16, bufs[9]), -EAGAIN);
	assert_quiet(w, 50);

	/* free a[0] (8 reads pending): 8 ECANCELED, then FREE */
	assert_int_equal(proact_free(w, a[0], a), 0);
	assert_int_equal(t_collect(w, out, 9, WAIT_MS), 9);
	for (int i = 0; i < 8; i++) {
		assert_int_equal(out[i].error, ECANCELED);
		assert_ptr_equal(out[i].ctx, bufs[i + 1]);
	}
	assert_int_equal(out[8].op, PROACT_OP_FREE);
	assert_int_equal(proact_free(w, b[0], b), 0);
	assert_int_equal(t_collect(w, out, 9, WAIT_MS), 9);
	assert_int_equal(out[8].op, PROACT_OP_FREE);
	assert_quiet(w, 50);

	close(a[1]);
	close(b[1]);
	proact_watcher_destroy(w);
	assert_int_equal(t_fd_count(), base);
}

static void test_watcher_limit(void **state)
{
	(void)state;
	int base = t_fd_count();
	struct proact_options o = {.max_pending = 16};
	proact_watcher *w = t_watcher(&o);
	int p[5][2];
	for (int i = 0; i < 5; i++)
		t_unix_pair(p[i]);
	for (int i = 0; i < 4; i++)
		for (int k = 0; k < 4; k++)
			assert_int_equal(
			    proact_read(w, p[i][0], bufs[i * 4 + k], 16, bufs[i * 4 + k]), 0);
	/* the 17th: on a new fd, on a registered one, of any kind */
	assert_int_equal(proact_read(w, p[4][0], bufs[16], 16, NULL), -ENOBUFS);
	assert_int_equal(proact_read(w, p[0][0], bufs[16], 16, NULL), -ENOBUFS);
	assert_int_equal(proact_write(w, p[1][0], "x", 1, NULL), -ENOBUFS);
	struct proact_request rq = {.fd = p[4][0], .op = PROACT_OP_WRITE, .buf = "x", .len = 1};
	assert_int_equal(proact_submit(w, &rq, 1), -ENOBUFS);
	assert_quiet(w, 100);
	char c;
	assert_int_equal(recv(p[4][1], &c, 1, MSG_DONTWAIT), -1);
	assert_int_equal(recv(p[1][1], &c, 1, MSG_DONTWAIT), -1);

	/* one completion delivered: one slot again, taken by a read that waits */
	t_write_all(p[2][1], "z", 1);
	struct proact_completion out[32];
	assert_int_equal(t_collect(w, out, 1, WAIT_MS), 1);
	assert_ptr_equal(out[0].ctx, bufs[8]);
	assert_int_equal(out[0].size, 1);
	assert_int_equal(proact_read(w, p[4][0], bufs[16], 16, bufs[16]), 0);
	assert_int_equal(proact_read(w, p[4][0], bufs[17], 16, NULL), -ENOBUFS);
	assert_int_equal(proact_write(w, p[4][0], "y", 1, NULL), -ENOBUFS);
	/* its completion frees the slot: a write takes it until it completes */
	t_write_all(p[4][1], "q", 1);
	assert_int_equal(t_collect(w, out, 1, WAIT_MS), 1);
	assert_ptr_equal(out[0].ctx, bufs[16]);
	assert_int_equal(out[0].size, 1);
	assert_int_equal(proact_write(w, p[4][0], "y", 1, bufs[18]), 0);
	assert_int_equal(t_collect(w, out, 1, WAIT_MS), 1);
	assert_ptr_equal(out[0].ctx, bufs[18]);
	assert_int_equal(out[0].error, 0);
	assert_int_equal(out[0].size, 1);
	t_read_all(p[4][1], &c, 1);
	assert_int_equal(c, 'y');
	/* the write is done, so its slot is free again too */
	assert_int_equal(proact_read(w, p[4][0], bufs[17], 16, bufs[17]), 0);
	assert_int_equal(proact_read(w, p[4][0], bufs[19], 16, NULL), -ENOBUFS);

	/* destroy closes everything (free itself may need a slot at the limit) */
	proact_watcher_destroy(w);
	for (int i = 0; i < 5; i++)
		close(p[i][1]);
	assert_int_equal(t_fd_count(), base);
}

#define BOUND (64u << 20)

/*
 * An fd registered (by a write) but with no read requested: the peer's
 * non-blocking sends fill the connection and stop with EAGAIN while the
 * watcher keeps running; then a FULL read gets every byte sent, in order.
 */
static void test_unread_connection_pushes_back(void **state)
{
	(void)state;
	int base = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	t_tcp_pair(fds);
	t_set_bufs(fds[0], 0, 16384);
	t_set_bufs(fds[1], 16384, 0);
	/* register fds[0] with a write: it is watched, but no read is asked */
	assert_int_equal(proact_write(w, fds[0], "hi", 2, NULL), 0);
	struct proact_completion out[4];
	assert_int_equal(t_collect(w, out, 1, WAIT_MS), 1);
	assert_int_equal(out[0].error, 0);
	char hi[2];
	t_read_all(fds[1], hi, 2);

	uint8_t *tx = malloc(BOUND);
	assert_non_null(tx);
	t_fill(tx, BOUND, 9, 0);
	size_t sent = 0;
	int still = 0;
	for (int round = 0; round < 1000 && still < 3; round++) {
		size_t before = sent;
		for (;;) {
			if (sent >= BOUND)
				fail_msg(
				    "the peer sent %u bytes nobody asked for: the library reads "
				    "unrequested data",
				    BOUND);
			ssize_t n =
			    send(fds[1], tx + sent, BOUND - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
			if (n < 0) {
				assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
				break;
			}
			sent += (size_t)n;
		}
		/* the watcher runs, but must not read: no completion either */
		assert_int_equal(proact_wait(w, out, 4, 20), 0);
		still = sent == before ? still + 1 : 0;
	}
	assert_int_equal(still, 3);
	assert_true(sent > 0);

	uint8_t *rx = malloc(sent);
	assert_non_null(rx);
	assert_int_equal(proact_read_full(w, fds[0], rx, sent, rx), 0);
	assert_int_equal(t_collect(w, out, 1, WAIT_MS), 1);
	assert_ptr_equal(out[0].ctx, rx);
	assert_int_equal(out[0].error, 0);
	assert_int_equal(out[0].size, sent);
	assert_int_equal(t_check(rx, sent, 9, 0), -1);

	assert_int_equal(proact_free(w, fds[0], NULL), 0);
	assert_int_equal(t_collect(w, out, 1, WAIT_MS), 1);
	assert_int_equal(out[0].op, PROACT_OP_FREE);
	close(fds[1]);
	free(rx);
	free(tx);
	proact_watcher_destroy(w);
	assert_int_equal(t_fd_count(), base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_per_fd_limit),
	    cmocka_unit_test(test_watcher_limit),
	    cmocka_unit_test(test_unread_connection_pushes_back),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
