/* SPDX-License-Identifier: MIT */
/*
 * Checks the watcher's counters (proact_stats) over real sockets: requests
 * submitted and completed per op, failures, descriptors registered now and
 * at most, pending requests, pool buffers held now and at most (a pool
 * read's buffer until the next wait), deadlines and timers fired, kernel
 * waits, and the backend's own work (system calls on the readiness
 * backends, ring entries on io_uring); a reader on another thread while the
 * watcher runs; bad arguments and a shut-down watcher. Pauses at EMFILE are
 * checked in test_lifecycle, where the descriptor limit is lowered.
 */
#include "common.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define WAIT_MS 10000

static struct proact_stats stats_of(proact_watcher *w)
{
	struct proact_stats s;
	memset(&s, 0xff, sizeof(s)); /* every field must be written */
	assert_int_equal(proact_stats(w, &s), 0);
	return s;
}

static uint64_t sum(const uint64_t *v)
{
	uint64_t n = 0;
	for (int i = 0; i < PROACT_STATS_OPS; i++)
		n += v[i];
	return n;
}

static struct proact_completion collect_one(proact_watcher *w)
{
	struct proact_completion c;
	memset(&c, 0, sizeof(c));
	assert_int_equal(t_collect(w, &c, 1, WAIT_MS), 1);
	return c;
}

static void test_new_watcher_is_zero(void **state)
{
	(void)state;
	struct proact_options o = {.pool_buffer_count = 32};
	proact_watcher *w = t_watcher(&o);
	struct proact_stats s = stats_of(w);
	assert_int_equal(sum(s.submitted), 0);
	assert_int_equal(sum(s.completed), 0);
	assert_int_equal(s.failed, 0);
	assert_int_equal(s.deadlines_fired, 0);
	assert_int_equal(s.timers_fired, 0);
	assert_int_equal(s.pauses, 0);
	assert_int_equal(s.paused, 0);
	assert_int_equal(s.fds, 0);
	assert_int_equal(s.fds_high, 0);
	assert_int_equal(s.pending, 0);
	assert_int_equal(s.pool_buffers, 32);
	assert_int_equal(s.pool_in_use, 0);
	assert_int_equal(s.pool_high, 0);
	assert_int_equal(s.reserved32, 0);
	for (size_t i = 0; i < sizeof(s.reserved) / sizeof(s.reserved[0]); i++)
		assert_int_equal(s.reserved[i], 0);
	proact_watcher_destroy(w);
}

/* A pool read, a write and a free: each counted once by its op, and the
   pool buffer counted as held until the next wait. */
static void test_counts_by_op(void **state)
{
	(void)state;
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	t_unix_pair(fds);
	assert_int_equal(proact_read(w, fds[0], NULL, 0, NULL), 0);
	struct proact_stats s = stats_of(w);
	assert_int_equal(s.submitted[PROACT_OP_READ], 1);
	assert_int_equal(sum(s.submitted), 1);
	assert_int_equal(s.fds, 1);
	assert_int_equal(s.pending, 1);
	assert_int_equal(s.pool_in_use, 0); /* no data yet: no buffer */

	t_write_all(fds[1], "hello", 5);
	struct proact_completion c = collect_one(w);
	assert_int_equal(c.op, PROACT_OP_READ);
	assert_int_equal(c.size, 5);
	s = stats_of(w);
	assert_int_equal(s.completed[PROACT_OP_READ], 1);
	assert_int_equal(s.pending, 0);
	assert_int_equal(s.pool_in_use, 1); /* the program holds it until the next wait */
	assert_int_equal(s.pool_high, 1);

	static const char msg[] = "a reply";
	assert_int_equal(proact_write(w, fds[0], msg, sizeof(msg), NULL), 0);
	c = collect_one(w);
	assert_int_equal(c.op, PROACT_OP_WRITE);
	assert_int_equal(c.error, 0);
	char got[sizeof(msg)];
	t_read_all(fds[1], got, sizeof(got));
	s = stats_of(w);
	assert_int_equal(s.submitted[PROACT_OP_WRITE], 1);
	assert_int_equal(s.completed[PROACT_OP_WRITE], 1);
	assert_int_equal(s.pool_in_use, 0); /* given back by that wait */
	assert_int_equal(s.pool_high, 1);

	assert_int_equal(proact_free(w, fds[0], NULL), 0);
	c = collect_one(w);
	assert_int_equal(c.op, PROACT_OP_FREE);
	s = stats_of(w);
	assert_int_equal(s.submitted[PROACT_OP_FREE], 1);
	assert_int_equal(s.completed[PROACT_OP_FREE], 1);
	assert_int_equal(sum(s.submitted), 3);
	assert_int_equal(sum(s.completed), 3);
	assert_int_equal(s.failed, 0);
	assert_int_equal(s.fds, 0);
	assert_int_equal(s.fds_high, 1);
	close(fds[1]);
	proact_watcher_destroy(w);
}

/* The backend's own work: the system calls that moved the bytes (epoll,
   kqueue) or ring entries (io_uring), and a wait that blocks in the kernel. */
static void test_backend_work(void **state)
{
	(void)state;
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	t_unix_pair(fds);
	char buf[16];
	assert_int_equal(proact_read(w, fds[0], buf, sizeof(buf), NULL), 0);
	struct proact_completion c;
	assert_int_equal(proact_wait(w, &c, 1, 0), 0); /* nothing there yet */
	t_write_all(fds[1], "x", 1);
	c = collect_one(w);
	assert_int_equal(c.size, 1);
	struct proact_stats s = stats_of(w);
	if (strcmp(proact_backend(w), "io_uring") == 0) {
		assert_true(s.ring_entries >= 1);
		assert_true(s.ring_enters >= 1);
	} else {
		assert_true(s.io_calls >= 1);
		assert_int_equal(s.ring_entries, 0);
		assert_int_equal(s.ring_enters, 0);
	}
	uint64_t waits = s.kernel_waits;
	assert_int_equal(proact_wait(w, &c, 1, 20), 0);
	assert_true(stats_of(w).kernel_waits > waits);
	close(fds[1]);
	proact_watcher_destroy(w);
}

/* A read's deadline, a timer that fires and one that is cancelled. */
static void test_deadlines_and_timers(void **state)
{
	(void)state;
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	t_unix_pair(fds);
	char buf[16];
	assert_int_equal(
	    proact_read_deadline(w, fds[0], buf, sizeof(buf), 0, proact_deadline_in(30), NULL), 0);
	uint64_t fire, cancel;
	assert_int_equal(proact_timer(w, proact_deadline_in(10), NULL, &fire), 0);
	assert_int_equal(proact_timer(w, proact_deadline_in(60000), NULL, &cancel), 0);
	assert_int_equal(proact_timer_cancel(w, cancel), 0);
	struct proact_completion c[3];
	assert_int_equal(t_collect(w, c, 3, WAIT_MS), 3);
	struct proact_stats s = stats_of(w);
	assert_int_equal(s.submitted[PROACT_OP_TIMER], 2);
	assert_int_equal(s.completed[PROACT_OP_TIMER], 2);
	assert_int_equal(s.completed[PROACT_OP_READ], 1);
	assert_int_equal(s.timers_fired, 1);
	assert_int_equal(s.deadlines_fired, 1);
	assert_int_equal(s.failed, 2); /* ETIMEDOUT and ECANCELED */
	assert_int_equal(s.pending, 0);
	close(fds[1]);
	proact_watcher_destroy(w);
}

struct reader {
	proact_watcher *w;
	int calls;
	bool bad;
};

static void *read_stats(void *arg)
{
	struct reader *r = arg;
	uint64_t last = 0;
	for (r->calls = 0; r->calls < 2000; r->calls++) {
		struct proact_stats s;
		if (proact_stats(r->w, &s) != 0 || s.completed[PROACT_OP_READ] < last ||
		    s.completed[PROACT_OP_READ] > s.submitted[PROACT_OP_READ]) {
			r->bad = true;
			break;
		}
		last = s.completed[PROACT_OP_READ];
	}
	return NULL;
}

/* Any thread may read the counters while the waiting thread works. */
static void test_reader_thread(void **state)
{
	(void)state;
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	t_unix_pair(fds);
	struct reader r = {.w = w};
	t_thread *t = t_thread_start(read_stats, &r);
	for (int i = 0; i < 200; i++) {
		assert_int_equal(proact_read(w, fds[0], NULL, 0, NULL), 0);
		t_write_all(fds[1], "ping", 4);
		struct proact_completion c = collect_one(w);
		assert_int_equal(c.size, 4);
	}
	assert_int_equal(t_thread_join_within(t, 60), 0);
	assert_false(r.bad);
	assert_int_equal(stats_of(w).completed[PROACT_OP_READ], 200);
	close(fds[1]);
	proact_watcher_destroy(w);
}

static void test_bad_arguments(void **state)
{
	(void)state;
	struct proact_stats s;
	assert_int_equal(proact_stats(NULL, &s), -EINVAL);
	proact_watcher *w = t_watcher(NULL);
	assert_int_equal(proact_stats(w, NULL), -EINVAL);
	assert_int_equal(proact_watcher_shutdown(w), 0);
	assert_int_equal(proact_stats(w, &s), -ESHUTDOWN);
	proact_watcher_destroy(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_new_watcher_is_zero), cmocka_unit_test(test_counts_by_op),
	    cmocka_unit_test(test_backend_work),        cmocka_unit_test(test_deadlines_and_timers),
	    cmocka_unit_test(test_reader_thread),       cmocka_unit_test(test_bad_arguments),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
