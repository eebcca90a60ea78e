/* SPDX-License-Identifier: MIT */
/*
 * Checks that timers follow DESIGN rule 13: a timer fires once, never before
 * its deadline, as a PROACT_OP_TIMER completion in the batch (fd -1, error
 * 0, ctx as given); several fire in deadline order, equal deadlines all fire,
 * a deadline already past fires at the next wait; a cancel before the time
 * yields exactly one ECANCELED completion and a spent id is -ENOENT (after a
 * cancel, after firing, also before the fired completion was delivered), ids
 * are never reused; timers and socket reads complete side by side; shutdown
 * drops pending timers with no completion; a timer or a cancel from another
 * thread wakes a blocked proact_wait, and so does a read's deadline from
 * another thread (the same heap); timers count against max_pending;
 * 10,000 timers with random deadlines fire in deadline order; bad arguments
 * get their documented errors. Timing is only ever asserted from below.
 */
#include "common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 10000

static void sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0)
		;
}

/* Asserts that nothing is delivered within ms milliseconds. */
static void assert_quiet(proact_watcher *w, int ms)
{
	struct proact_completion c[4];
	assert_int_equal(t_collect(w, c, 1, ms), 0);
}

/* Asserts c is the completion of a timer with ctx and error. */
static void assert_timer(const struct proact_completion *c, void *ctx, int error)
{
	assert_int_equal(c->op, PROACT_OP_TIMER);
	assert_int_equal(c->fd, -1);
	assert_ptr_equal(c->ctx, ctx);
	assert_int_equal(c->error, error);
	assert_int_equal(c->size, 0);
	assert_null(c->buf);
	assert_int_equal(c->newfd, -1);
	assert_int_equal(c->flags, 0);
}

/* Collects exactly one completion, asserting it arrived. */
static struct proact_completion collect_one(proact_watcher *w)
{
	struct proact_completion c;
	memset(&c, 0, sizeof(c));
	assert_int_equal(t_collect(w, &c, 1, WAIT_MS), 1);
	return c;
}

static void test_fires_once_not_early(void **state)
{
	(void)state;
	proact_watcher *w = t_watcher(NULL);
	int ctx;
	uint64_t id = 0;
	uint64_t dl = proact_deadline_in(50);
	assert_int_equal(proact_timer(w, dl, &ctx, &id), 0);
	assert_true(id != 0);
	struct proact_completion c = collect_one(w);
	assert_true(proact_now() >= dl);
	assert_timer(&c, &ctx, 0);
	assert_quiet(w, 100);
	proact_watcher_destroy(w);
}

/* Deadlines submitted out of order come back sorted, each at or after its time. */
static void test_order_by_deadline(void **state)
{
	(void)state;
	proact_watcher *w = t_watcher(NULL);
	static const int ms[] = {80, 20, 60, 0, 40, 100, 10};
	enum { N = sizeof(ms) / sizeof(ms[0]) };
	uint64_t dl[N];
	uint64_t base = proact_now();
	for (int i = 0; i < N; i++) {
		dl[i] = base + (uint64_t)ms[i] * 1000000u;
		assert_int_equal(proact_timer(w, dl[i], &dl[i], NULL), 0);
	}
	uint64_t last = 0;
	for (int k = 0; k < N; k++) {
		struct proact_completion c = collect_one(w);
		uint64_t *d = c.ctx;
		assert_true(d >= dl && d < dl + N);
		assert_timer(&c, d, 0);
		assert_true(proact_now() >= *d);
		assert_true(*d >= last);
		last = *d;
	}
	assert_int_equal(last, base + 100 * 1000000u);
	assert_quiet(w, 50);
	proact_watcher_destroy(w);
}

/* Equal deadlines: every one fires, once, in no set order. */
static void test_same_deadline(void **state)
{
	(void)state;
	proact_watcher *w = t_watcher(NULL);
	enum { N = 16 };
	int seen[N] = {0};
	uint64_t dl = proact_deadline_in(30);
	for (int i = 0; i < N; i++)
		assert_int_equal(proact_timer(w, dl, &seen[i], NULL), 0);
	struct proact_completion c[N];
	assert_int_equal(t_collect(w, c, N, WAIT_MS), N);
	assert_true(proact_now() >= dl);
	for (int i = 0; i < N; i++) {
		int *s = c[i].ctx;
		assert_true(s >= seen && s < seen + N);
		assert_timer(&c[i], s, 0);
		assert_int_equal((*s)++, 0);
	}
	assert_quiet(w, 50);
	proact_watcher_destroy(w);
}

/* A deadline already past (0 included) fires at the next wait, even one that does not block. */
static void test_past_deadline(void **state)
{
	(void)state;
	proact_watcher *w = t_watcher(NULL);
	int a, b, d;
	uint64_t now = proact_now();
	assert_int_equal(proact_timer(w, 0, &a, NULL), 0);
	assert_int_equal(proact_timer(w, now > 1000000000u ? now - 1000000000u : 1, &b, NULL), 0);
	struct proact_request q = {.fd = -1, .op = PROACT_OP_TIMER, .deadline = now, .ctx = &d};
	assert_int_equal(proact_submit(w, &q, 1), 1);
	struct proact_completion c[4];
	assert_int_equal(proact_wait(w, c, 4, 0), 3);
	assert_timer(&c[0], &a, 0); /* deadline order: 0, now - 1 s, now */
	assert_timer(&c[1], &b, 0);
	assert_timer(&c[2], &d, 0);
	assert_int_equal(proact_wait(w, c, 4, 0), 0);
	proact_watcher_destroy(w);
}

static void test_cancel_before_fire(void **state)
{
	(void)state;
	proact_watcher *w = t_watcher(NULL);
	int near, far;
	uint64_t id_near, id_far;
	assert_int_equal(proact_timer(w, proact_deadline_in(60000), &near, &id_near), 0);
	assert_int_equal(proact_timer(w, UINT64_MAX, &far, &id_far), 0);
	assert_true(id_near != id_far);
	struct proact_completion c[4];
	assert_int_equal(proact_wait(w, c, 4, 0), 0);

	assert_int_equal(proact_timer_cancel(w, id_near), 0);
	assert_int_equal(proact_timer_cancel(w, id_near), -ENOENT); /* before delivery too */
	c[0] = collect_one(w);
	assert_timer(&c[0], &near, ECANCELED);
	assert_int_equal(proact_timer_cancel(w, id_near), -ENOENT);

	/* a deadline at the end of the clock neither fires nor breaks the wait */
	assert_quiet(w, 50);
	assert_int_equal(proact_timer_cancel(w, id_far), 0);
	c[0] = collect_one(w);
	assert_timer(&c[0], &far, ECANCELED);
	assert_int_equal(proact_timer_cancel(w, id_far), -ENOENT);
	assert_quiet(w, 50);
	proact_watcher_destroy(w);
}

/* A fired timer's id is spent, also while its completion waits to be delivered. */
static void test_cancel_after_fire(void **state)
{
	(void)state;
	proact_watcher *w = t_watcher(NULL);
	int a, b;
	uint64_t ida, idb;
	assert_int_equal(proact_timer(w, proact_deadline_in(10), &a, &ida), 0);
	assert_int_equal(proact_timer(w, proact_deadline_in(20), &b, &idb), 0);
	sleep_ms(30);
	struct proact_completion c;
	assert_int_equal(proact_wait(w, &c, 1, WAIT_MS), 1); /* both fired, one delivered */
	assert_timer(&c, &a, 0);
	assert_int_equal(proact_timer_cancel(w, ida), -ENOENT);
	assert_int_equal(proact_timer_cancel(w, idb), -ENOENT); /* fired, not yet delivered */
	c = collect_one(w);
	assert_timer(&c, &b, 0); /* still error 0: the cancel changed nothing */
	assert_int_equal(proact_timer_cancel(w, idb), -ENOENT);
	assert_quiet(w, 50);
	proact_watcher_destroy(w);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Timers come and go through the same slots: no id repeats, a stale id
   never touches the timer that took over its slot. */
static void test_ids_not_reused(void **state)
{
	(void)state;
	proact_watcher *w = t_watcher(NULL);
	enum { N = 2000 };
	uint64_t *ids = calloc(N, sizeof(*ids));
	assert_non_null(ids);
	struct proact_completion c;
	for (int i = 0; i < N; i++) {
		uint64_t dl = i % 2 ? 0 : UINT64_MAX; /* fire, or be cancelled */
		assert_int_equal(proact_timer(w, dl, &ids[i], &ids[i]), 0);
		assert_true(ids[i] != 0);
		if (i % 2 == 0)
			assert_int_equal(proact_timer_cancel(w, ids[i]), 0);
		c = collect_one(w);
		assert_timer(&c, &ids[i], i % 2 ? 0 : ECANCELED);
		if (i > 0) /* the previous id is spent, whatever holds its slot now */
			assert_int_equal(proact_timer_cancel(w, ids[i - 1]), -ENOENT);
	}
	uint64_t live;
	int ctx;
	assert_int_equal(proact_timer(w, UINT64_MAX, &ctx, &live), 0);
	for (int i = 0; i < N; i++)
		assert_int_equal(proact_timer_cancel(w, ids[i]), -ENOENT);
	qsort(ids, N, sizeof(*ids), cmp_u64);
	for (int i = 1; i < N; i++)
		assert_true(ids[i] != ids[i - 1]);
	assert_null(bsearch(&live, ids, N, sizeof(*ids), cmp_u64));
	assert_int_equal(proact_timer_cancel(w, live), 0); /* the live one is untouched */
	c = collect_one(w);
	assert_timer(&c, &ctx, ECANCELED);
	free(ids);
	proact_watcher_destroy(w);
}

/* Timers and reads on a socketpair complete side by side, each exactly once;
   a timer firing leaves a pending read pending. */
static void test_mixed_with_reads(void **state)
{
	(void)state;
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	t_unix_pair(fds);
	char buf[16];
	int tctx;
	assert_int_equal(proact_read(w, fds[0], buf, sizeof(buf), buf), 0);
	assert_int_equal(proact_timer(w, proact_deadline_in(20), &tctx, NULL), 0);
	struct proact_completion c = collect_one(w);
	assert_timer(&c, &tctx, 0);
	assert_quiet(w, 30); /* the read still waits for data */

	for (int round = 0; round < 100; round++) {
		uint64_t dl = proact_deadline_in((uint64_t)(round % 3));
		assert_int_equal(proact_timer(w, dl, &tctx, NULL), 0);
		t_write_all(fds[1], "x", 1);
		struct proact_completion out[2];
		assert_int_equal(t_collect(w, out, 2, WAIT_MS), 2);
		int reads = 0, timers = 0;
		for (int k = 0; k < 2; k++) {
			if (out[k].op == PROACT_OP_TIMER) {
				assert_timer(&out[k], &tctx, 0);
				timers++;
			} else {
				assert_int_equal(out[k].op, PROACT_OP_READ);
				assert_int_equal(out[k].fd, fds[0]);
				assert_ptr_equal(out[k].ctx, buf);
				assert_int_equal(out[k].error, 0);
				assert_int_equal(out[k].size, 1);
				reads++;
			}
		}
		assert_int_equal(reads, 1);
		assert_int_equal(timers, 1);
		assert_true(proact_now() >= dl);
		assert_int_equal(proact_read(w, fds[0], buf, sizeof(buf), buf), 0);
	}
	assert_int_equal(proact_free(w, fds[0], NULL), 0);
	c = collect_one(w);
	assert_int_equal(c.op, PROACT_OP_READ);
	assert_int_equal(c.error, ECANCELED);
	c = collect_one(w);
	assert_int_equal(c.op, PROACT_OP_FREE);
	close(fds[1]);
	proact_watcher_destroy(w);
}

/* Shutdown drops pending timers, fired ones not yet delivered included. */
static void test_shutdown_with_timers(void **state)
{
	(void)state;
	int base = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	int ctx[8];
	uint64_t id = 0;
	for (int i = 0; i < 8; i++)
		assert_int_equal(
		    proact_timer(w, i < 4 ? 0 : proact_deadline_in(60000), &ctx[i], &id), 0);
	struct proact_completion c[8];
	assert_int_equal(proact_wait(w, c, 1, 0), 1); /* three fired ones stay undelivered */
	assert_int_equal(proact_watcher_shutdown(w), 0);
	assert_int_equal(proact_wait(w, c, 8, 0), -ESHUTDOWN);
	assert_int_equal(proact_wait(w, c, 8, 100), -ESHUTDOWN);
	assert_int_equal(proact_timer(w, 0, NULL, NULL), -ESHUTDOWN);
	assert_int_equal(proact_timer_cancel(w, id), -ESHUTDOWN);
	struct proact_request q = {.fd = -1, .op = PROACT_OP_TIMER};
	assert_int_equal(proact_submit(w, &q, 1), -ESHUTDOWN);
	proact_watcher_destroy(w);
	assert_int_equal(t_fd_count(), base);
}

struct waiter {
	proact_watcher *w;
	struct proact_completion c[4];
	int rc;
	uint64_t returned;
};

static void *waiter_main(void *arg)
{
	struct waiter *wt = arg;
	wt->rc = proact_wait(wt->w, wt->c, 4, -1);
	wt->returned = proact_now();
	return NULL;
}

/* Joins the waiter; if it stays blocked, shutdown frees it and the test fails. */
static void join_waiter(t_thread *th, struct waiter *wt, const char *what)
{
	if (t_thread_join_within(th, 10) == 0)
		return;
	proact_watcher_shutdown(wt->w);
	if (t_thread_join_within(th, 10) != 0)
		fail_msg("%s: the waiter stayed blocked, also after shutdown", what);
	fail_msg("%s: proact_wait(-1) was not woken", what);
}

/*
 * proact_wait(-1) blocked with nothing (then with a timer a minute away):
 * a timer submitted from another thread, nearer than anything, wakes it and
 * fires on time; a cancel from another thread is delivered at once.
 */
static void test_other_thread_wakes_waiter(void **state)
{
	(void)state;
	proact_watcher *w = t_watcher(NULL);
	int far, near;
	uint64_t far_id = 0;
	for (int round = 0; round < 2; round++) {
		struct waiter wt = {.w = w};
		if (round == 1)
			assert_int_equal(proact_timer(w, proact_deadline_in(60000), &far, &far_id),
			                 0);
		t_thread *th = t_thread_start(waiter_main, &wt);
		sleep_ms(50); /* most likely blocked by now; either way must work */
		uint64_t dl = proact_deadline_in(20);
		assert_int_equal(proact_timer(w, dl, &near, NULL), 0);
		join_waiter(th, &wt, "a nearer timer");
		assert_int_equal(wt.rc, 1);
		assert_timer(&wt.c[0], &near, 0);
		assert_true(wt.returned >= dl);
	}
	struct waiter wt = {.w = w};
	t_thread *th = t_thread_start(waiter_main, &wt);
	sleep_ms(50);
	assert_int_equal(proact_timer_cancel(w, far_id), 0);
	join_waiter(th, &wt, "a cancel");
	assert_int_equal(wt.rc, 1);
	assert_timer(&wt.c[0], &far, ECANCELED);
	proact_watcher_destroy(w);
}

/*
 * The heap is shared: a read's deadline from another thread, on a read queued
 * behind another (so nothing else is there for the waiter to do), wakes a
 * proact_wait(-1) blocked with no deadline and expires on time.
 */
static void test_other_thread_deadline_wakes_waiter(void **state)
{
	(void)state;
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	t_unix_pair(fds);
	char a[8], b[8];
	assert_int_equal(proact_read(w, fds[0], a, sizeof(a), a), 0);
	struct waiter wt = {.w = w};
	t_thread *th = t_thread_start(waiter_main, &wt);
	sleep_ms(50);
	uint64_t dl = proact_deadline_in(20);
	assert_int_equal(proact_read_deadline(w, fds[0], b, sizeof(b), 0, dl, b), 0);
	join_waiter(th, &wt, "a read's deadline");
	assert_int_equal(wt.rc, 1);
	assert_int_equal(wt.c[0].op, PROACT_OP_READ);
	assert_ptr_equal(wt.c[0].ctx, b);
	assert_int_equal(wt.c[0].error, ETIMEDOUT);
	assert_true(wt.returned >= dl);
	assert_int_equal(proact_free(w, fds[0], NULL), 0);
	struct proact_completion c[2];
	assert_int_equal(t_collect(w, c, 2, WAIT_MS), 2);
	assert_ptr_equal(c[0].ctx, a);
	assert_int_equal(c[0].error, ECANCELED);
	assert_int_equal(c[1].op, PROACT_OP_FREE);
	close(fds[1]);
	proact_watcher_destroy(w);
}

/* Timers count against max_pending, with the other requests. */
static void test_max_pending(void **state)
{
	(void)state;
	struct proact_options o = {.max_pending = 4};
	proact_watcher *w = t_watcher(&o);
	int fds[2];
	t_unix_pair(fds);
	char buf[8];
	uint64_t id[3];
	for (int i = 0; i < 3; i++)
		assert_int_equal(proact_timer(w, UINT64_MAX, &id[i], &id[i]), 0);
	assert_int_equal(proact_read(w, fds[0], buf, sizeof(buf), buf), 0);
	assert_int_equal(proact_timer(w, 0, NULL, NULL), -ENOBUFS);
	struct proact_request q = {.fd = -1, .op = PROACT_OP_TIMER};
	assert_int_equal(proact_submit(w, &q, 1), -ENOBUFS);
	assert_int_equal(proact_write(w, fds[0], "x", 1, NULL), -ENOBUFS);

	/* a cancelled timer frees its place at once, before its completion is delivered */
	assert_int_equal(proact_timer_cancel(w, id[0]), 0);
	int ctx;
	assert_int_equal(proact_timer(w, 0, &ctx, NULL), 0);
	assert_int_equal(proact_timer(w, 0, NULL, NULL), -ENOBUFS);
	struct proact_completion c[4];
	assert_int_equal(t_collect(w, c, 2, WAIT_MS), 2);
	assert_timer(&c[0], &id[0], ECANCELED);
	assert_timer(&c[1], &ctx, 0);
	for (int i = 1; i < 3; i++)
		assert_int_equal(proact_timer_cancel(w, id[i]), 0);
	assert_int_equal(t_collect(w, c, 2, WAIT_MS), 2);
	assert_int_equal(proact_free(w, fds[0], NULL), 0);
	assert_int_equal(t_collect(w, c, 2, WAIT_MS), 2);
	assert_int_equal(c[1].op, PROACT_OP_FREE);
	close(fds[1]);
	proact_watcher_destroy(w);
}

#define MANY 10000

struct many {
	uint64_t deadline;
	uint64_t id;
	int cancelled;
	int seen;
};

/* 10,000 timers within ~200 ms, a quarter cancelled: the cancelled ones
   complete ECANCELED, the rest fire in deadline order, never early. */
static void test_thousands_in_order(void **state)
{
	(void)state;
	proact_watcher *w = t_watcher(NULL);
	struct many *m = calloc(MANY, sizeof(*m));
	assert_non_null(m);
	uint64_t base = proact_now();
	uint32_t x = 12345;
	for (int i = 0; i < MANY; i++) {
		x = x * 1103515245u + 12345u;
		m[i].deadline = base + (uint64_t)(x >> 8) % 200000000u;
		assert_int_equal(proact_timer(w, m[i].deadline, &m[i], &m[i].id), 0);
	}
	for (int i = 0; i < MANY; i += 4) {
		m[i].cancelled = 1;
		assert_int_equal(proact_timer_cancel(w, m[i].id), 0);
	}
	struct proact_completion out[256];
	int got = 0;
	uint64_t last = 0, end = proact_deadline_in(30000);
	while (got < MANY && proact_now() < end) {
		int n = proact_wait(w, out, 256, 100);
		assert_true(n >= 0);
		uint64_t now = proact_now();
		for (int k = 0; k < n; k++) {
			struct many *t = out[k].ctx;
			assert_true(t >= m && t < m + MANY);
			assert_int_equal(t->seen++, 0);
			assert_timer(&out[k], t, t->cancelled ? ECANCELED : 0);
			if (t->cancelled)
				continue;
			assert_true(now >= t->deadline);
			assert_true(t->deadline >= last);
			last = t->deadline;
		}
		got += n;
	}
	assert_int_equal(got, MANY);
	assert_quiet(w, 50);
	free(m);
	proact_watcher_destroy(w);
}

static void test_bad_arguments(void **state)
{
	(void)state;
	uint64_t id = 0;
	assert_int_equal(proact_timer(NULL, 0, NULL, &id), -EINVAL);
	assert_int_equal(id, 0);
	assert_int_equal(proact_timer_cancel(NULL, 1), -EINVAL);

	proact_watcher *w = t_watcher(NULL);
	assert_int_equal(proact_timer_cancel(w, 0), -ENOENT);
	assert_int_equal(proact_timer_cancel(w, 1), -ENOENT);
	assert_int_equal(proact_timer_cancel(w, UINT64_MAX), -ENOENT);
	assert_int_equal(proact_timer(w, UINT64_MAX, NULL, &id), 0);
	assert_int_equal(proact_timer_cancel(w, id + 1), -ENOENT);
	assert_int_equal(proact_timer_cancel(w, id ^ (1ull << 32)), -ENOENT);
	assert_int_equal(proact_timer_cancel(w, id | 0xffffffffu), -ENOENT);

	/* proact_submit: fd -1, the deadline and ctx, nothing else */
	char buf[4];
	struct iovec iov = {buf, sizeof(buf)};
	struct sockaddr sa;
	const struct proact_request ok = {.fd = -1, .op = PROACT_OP_TIMER, .deadline = 1};
	struct proact_request bad[12];
	for (int i = 0; i < 12; i++)
		bad[i] = ok;
	bad[0].fd = 0;
	bad[1].fd = -2;
	bad[2].buf = buf;
	bad[3].len = 1;
	bad[4].flags = PROACT_FULL;
	bad[5].iov = &iov;
	bad[6].iovcnt = 1;
	bad[7].addr = &sa;
	bad[8].addrlen = sizeof(sa);
	bad[9].reserved[2] = 1;
	bad[10].file = 3;
	bad[11].offset = 1;
	for (int i = 0; i < 12; i++)
		assert_int_equal(proact_submit(w, &bad[i], 1), -EINVAL);
	struct proact_request two[2] = {ok, bad[0]};
	assert_int_equal(proact_submit(w, two, 2), 1); /* stops at the bad one */

	struct proact_completion c[4];
	assert_int_equal(t_collect(w, c, 1, WAIT_MS), 1);
	assert_timer(&c[0], NULL, 0);
	assert_quiet(w, 30);
	assert_int_equal(proact_timer_cancel(w, id), 0);
	assert_int_equal(t_collect(w, c, 1, WAIT_MS), 1);
	assert_timer(&c[0], NULL, ECANCELED);
	proact_watcher_destroy(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fires_once_not_early),
	    cmocka_unit_test(test_order_by_deadline),
	    cmocka_unit_test(test_same_deadline),
	    cmocka_unit_test(test_past_deadline),
	    cmocka_unit_test(test_cancel_before_fire),
	    cmocka_unit_test(test_cancel_after_fire),
	    cmocka_unit_test(test_ids_not_reused),
	    cmocka_unit_test(test_mixed_with_reads),
	    cmocka_unit_test(test_shutdown_with_timers),
	    cmocka_unit_test(test_other_thread_wakes_waiter),
	    cmocka_unit_test(test_other_thread_deadline_wakes_waiter),
	    cmocka_unit_test(test_max_pending),
	    cmocka_unit_test(test_thousands_in_order),
	    cmocka_unit_test(test_bad_arguments),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
