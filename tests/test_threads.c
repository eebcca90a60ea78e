/* SPDX-License-Identifier: MIT */
/*
 * Checks DESIGN rule 9 (threads): submissions, free and detach from several
 * threads at once while another thread waits; every completion arrives, the
 * bytes are right and per-fd order is kept; proact_wakeup from another thread
 * makes a blocked proact_wait return 0 (and a wakeup before the wait makes the
 * next wait return); two threads in proact_wait at once: one gets -EBUSY.
 * The test itself shares data between threads only through starting and
 * joining them and the library's calls, so it stays clean under
 * ThreadSanitizer.
 */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 30000

static void sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Thread-side helpers: no cmocka assertion outside the main thread. */
static int th_send_all(int fd, const uint8_t *p, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int th_recv_all(int fd, uint8_t *p, size_t len)
{
	while (len > 0) {
		ssize_t n = recv(fd, p, len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

#define NTHREADS 4
#define NREADS   64
#define RLEN     1000
#define NWRITES  200

struct worker {
	proact_watcher *w;
	int id, fd, peer;
	uint8_t *wdata; /* the write stream, seed 200+id */
	size_t wtotal;
	size_t off[NWRITES + 1];
	struct iovec iov[NWRITES][2];
	uint8_t rbuf[NREADS][RLEN]; /* read k gets stream bytes k*RLEN.., seed 100+id */
	char err[160];              /* empty when the thread saw no problem */
};

static void *ctx_of(int id, int dir, int k)
{
	return (void *)(uintptr_t)((1u << 28) | ((uint32_t)id << 24) | ((uint32_t)dir << 20) |
	                           (uint32_t)k);
}

static void *worker_main(void *arg)
{
	struct worker *wk = arg;
	for (int k = 0; k < NWRITES || k < NREADS; k++) {
		int rc;
		if (k < NREADS) {
			rc = proact_read_full(wk->w, wk->fd, wk->rbuf[k], RLEN,
			                      ctx_of(wk->id, 0, k));
			if (rc != 0) {
				snprintf(wk->err, sizeof(wk->err), "read %d: %d", k, rc);
				return NULL;
			}
		}
		if (k < NWRITES) {
			uint8_t *p = wk->wdata + wk->off[k];
			size_t len = wk->off[k + 1] - wk->off[k];
			if (k % 3 == 0) {
				wk->iov[k][0] = (struct iovec){p, len / 2};
				wk->iov[k][1] = (struct iovec){p + len / 2, len - len / 2};
				rc = proact_writev(wk->w, wk->fd, wk->iov[k], 2,
				                   ctx_of(wk->id, 1, k));
			} else {
				rc = proact_write(wk->w, wk->fd, p, len, ctx_of(wk->id, 1, k));
			}
			if (rc != 0) {
				snprintf(wk->err, sizeof(wk->err), "write %d: %d", k, rc);
				return NULL;
			}
		}
	}
	/* now the peer side: send what the reads expect, receive what was written */
	size_t rtotal = (size_t)NREADS * RLEN;
	uint8_t *tx = malloc(rtotal), *rx = malloc(wk->wtotal);
	if (!tx || !rx) {
		snprintf(wk->err, sizeof(wk->err), "malloc");
	} else {
		t_fill(tx, rtotal, 100 + (uint32_t)wk->id, 0);
		if (th_send_all(wk->peer, tx, rtotal) != 0)
			snprintf(wk->err, sizeof(wk->err), "peer send: %s", strerror(errno));
		else if (th_recv_all(wk->peer, rx, wk->wtotal) != 0)
			snprintf(wk->err, sizeof(wk->err), "peer recv: %s", strerror(errno));
		else if (t_check(rx, wk->wtotal, 200 + (uint32_t)wk->id, 0) != -1)
			snprintf(wk->err, sizeof(wk->err), "peer got wrong bytes at %ld",
			         t_check(rx, wk->wtotal, 200 + (uint32_t)wk->id, 0));
	}
	free(tx);
	free(rx);
	return NULL;
}

/*
 * Four threads submit reads and writes on their own fds (and play their
 * peers) while the main thread waits: all completions arrive, per-fd order
 * holds for reads and for writes, every byte is right on both sides.
 */
static void test_four_submitters_one_waiter(void **state)
{
	(void)state;
	int base = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	struct worker *wk = calloc(NTHREADS, sizeof(*wk));
	assert_non_null(wk);
	for (int i = 0; i < NTHREADS; i++) {
		int p[2];
		if (i % 2)
			t_unix_pair(p);
		else
			t_tcp_pair(p);
		t_set_timeouts(p[1], 20);
		wk[i].w = w;
		wk[i].id = i;
		wk[i].fd = p[0];
		wk[i].peer = p[1];
		wk[i].off[0] = 0;
		for (int k = 0; k < NWRITES; k++)
			wk[i].off[k + 1] = wk[i].off[k] + 1 + (size_t)((k * 997 + i * 31) % 4000);
		wk[i].wtotal = wk[i].off[NWRITES];
		wk[i].wdata = malloc(wk[i].wtotal);
		assert_non_null(wk[i].wdata);
		t_fill(wk[i].wdata, wk[i].wtotal, 200 + (uint32_t)i, 0);
	}
	t_thread *th[NTHREADS];
	for (int i = 0; i < NTHREADS; i++)
		th[i] = t_thread_start(worker_main, &wk[i]);

	const int total = NTHREADS * (NREADS + NWRITES);
	int next[NTHREADS][2] = {{0}};
	struct proact_completion out[64];
	int got = 0;
	uint64_t end = proact_deadline_in(WAIT_MS);
	while (got < total && proact_now() < end) {
		int n = proact_wait(w, out, 64, 100);
		assert_true(n >= 0);
		for (int j = 0; j < n; j++) {
			uintptr_t v = (uintptr_t)out[j].ctx;
			assert_true(v & (1u << 28));
			int id = (int)((v >> 24) & 0xf), dir = (int)((v >> 20) & 0xf),
			    k = (int)(v & 0xfffff);
			assert_true(id < NTHREADS);
			struct worker *x = &wk[id];
			assert_int_equal(out[j].fd, x->fd);
			assert_int_equal(out[j].error, 0);
			/* per-fd order: reads, and writes, in submission order */
			assert_int_equal(k, next[id][dir]);
			next[id][dir]++;
			if (dir == 0) {
				assert_int_equal(out[j].op, PROACT_OP_READ);
				assert_ptr_equal(out[j].buf, x->rbuf[k]);
				assert_int_equal(out[j].size, RLEN);
				assert_int_equal(t_check(x->rbuf[k], RLEN, 100 + (uint32_t)id,
				                         (uint64_t)k * RLEN),
				                 -1);
			} else {
				assert_int_equal(out[j].op,
				                 k % 3 == 0 ? PROACT_OP_WRITEV : PROACT_OP_WRITE);
				assert_int_equal(out[j].size, x->off[k + 1] - x->off[k]);
			}
		}
		got += n;
	}
	assert_int_equal(got, total);
	for (int i = 0; i < NTHREADS; i++) {
		if (t_thread_join_within(th[i], 30) != 0)
			fail_msg("worker %d did not finish", i);
		if (wk[i].err[0])
			fail_msg("worker %d: %s", i, wk[i].err);
		assert_int_equal(next[i][0], NREADS);
		assert_int_equal(next[i][1], NWRITES);
	}
	for (int i = 0; i < NTHREADS; i++)
		assert_int_equal(proact_free(w, wk[i].fd, &wk[i]), 0);
	assert_int_equal(t_collect(w, out, NTHREADS, WAIT_MS), NTHREADS);
	for (int j = 0; j < NTHREADS; j++) {
		assert_int_equal(out[j].op, PROACT_OP_FREE);
		struct worker *x = out[j].ctx;
		assert_int_equal(out[j].fd, x->fd);
	}
	for (int i = 0; i < NTHREADS; i++) {
		close(wk[i].peer);
		free(wk[i].wdata);
	}
	free(wk);
	proact_watcher_destroy(w);
	assert_int_equal(t_fd_count(), base);
}

#define FD_PER_THREAD 8

struct closer {
	proact_watcher *w;
	int fds[FD_PER_THREAD];
	char rbuf[FD_PER_THREAD][32];
	char err[160];
};

static void *closer_main(void *arg)
{
	struct closer *c = arg;
	for (int i = 0; i < FD_PER_THREAD; i++) {
		int rc = proact_read(c->w, c->fds[i], c->rbuf[i], sizeof(c->rbuf[i]), c->rbuf[i]);
		if (rc != 0) {
			snprintf(c->err, sizeof(c->err), "read fd %d: %d", c->fds[i], rc);
			return NULL;
		}
	}
	for (int i = 0; i < FD_PER_THREAD; i++) {
		int rc = i % 2 ? proact_detach(c->w, c->fds[i], &c->fds[i])
		               : proact_free(c->w, c->fds[i], &c->fds[i]);
		if (rc != 0) {
			snprintf(c->err, sizeof(c->err), "free/detach fd %d: %d", c->fds[i], rc);
			return NULL;
		}
	}
	return NULL;
}

/*
 * Four threads each register 8 fds with a read, then free or detach them,
 * while the main thread waits: per fd, ECANCELED then FREE/DETACH, last.
 */
static void test_concurrent_free_detach(void **state)
{
	(void)state;
	int base = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	struct closer *cl = calloc(NTHREADS, sizeof(*cl));
	assert_non_null(cl);
	int peers[NTHREADS][FD_PER_THREAD];
	for (int t = 0; t < NTHREADS; t++) {
		cl[t].w = w;
		for (int i = 0; i < FD_PER_THREAD; i++) {
			int p[2];
			t_unix_pair(p);
			cl[t].fds[i] = p[0];
			peers[t][i] = p[1];
		}
	}
	t_thread *th[NTHREADS];
	for (int t = 0; t < NTHREADS; t++)
		th[t] = t_thread_start(closer_main, &cl[t]);

	const int total = NTHREADS * FD_PER_THREAD * 2;
	struct proact_completion *out = calloc(total, sizeof(*out));
	assert_non_null(out);
	int got = t_collect(w, out, total, WAIT_MS);
	for (int t = 0; t < NTHREADS; t++) {
		if (t_thread_join_within(th[t], 30) != 0)
			fail_msg("thread %d did not finish", t);
		if (cl[t].err[0])
			fail_msg("thread %d: %s", t, cl[t].err);
	}
	assert_int_equal(got, total);
	struct proact_completion extra;
	assert_int_equal(t_collect(w, &extra, 1, 50), 0);

	for (int t = 0; t < NTHREADS; t++) {
		for (int i = 0; i < FD_PER_THREAD; i++) {
			int fd = cl[t].fds[i], state_ = 0; /* 0: nothing, 1: canceled, 2: last */
			for (int j = 0; j < total; j++) {
				if ((int)out[j].fd != fd)
					continue;
				if (state_ == 0) {
					assert_int_equal(out[j].op, PROACT_OP_READ);
					assert_int_equal(out[j].error, ECANCELED);
					assert_ptr_equal(out[j].ctx, cl[t].rbuf[i]);
					state_ = 1;
				} else if (state_ == 1) {
					assert_int_equal(out[j].op,
					                 i % 2 ? PROACT_OP_DETACH : PROACT_OP_FREE);
					assert_ptr_equal(out[j].ctx, &cl[t].fds[i]);
					state_ = 2;
				} else {
					fail_msg("completion after the last one of fd %d", fd);
				}
			}
			assert_int_equal(state_, 2);
			if (i % 2) {
				assert_int_not_equal(fcntl(fd, F_GETFD), -1);
				close(fd);
			} else {
				assert_int_equal(fcntl(fd, F_GETFD), -1);
			}
			close(peers[t][i]);
		}
	}
	free(out);
	free(cl);
	proact_watcher_destroy(w);
	assert_int_equal(t_fd_count(), base);
}

struct one_wait {
	proact_watcher *w;
	int rc;
	int busy_retries; /* how often it got -EBUSY first */
};

static void *one_wait_main(void *arg)
{
	struct one_wait *ow = arg;
	struct proact_completion out[8];
	for (int i = 0; i < 5000; i++) {
		ow->rc = proact_wait(ow->w, out, 8, -1);
		if (ow->rc != -EBUSY)
			break;
		ow->busy_retries++;
		sleep_ms(1);
	}
	return NULL;
}

/* Joins the waiter; if it is stuck, shuts the watcher down to free it and fails. */
static void join_or_rescue(t_thread *th, proact_watcher *w, const char *what)
{
	if (t_thread_join_within(th, 10) == 0)
		return;
	proact_watcher_shutdown(w);
	if (t_thread_join_within(th, 10) == 0)
		fail_msg("%s", what);
	fail_msg("%s; even shutdown did not free the waiter", what);
}

/* proact_wakeup from the main thread makes a wait(-1) in another thread return 0. */
static void test_wakeup_from_other_thread(void **state)
{
	(void)state;
	int base = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	for (int round = 0; round < 3; round++) {
		struct one_wait ow = {.w = w};
		t_thread *th = t_thread_start(one_wait_main, &ow);
		sleep_ms(50); /* most likely blocked by now; if not, the next wait returns */
		assert_int_equal(proact_wakeup(w), 0);
		join_or_rescue(th, w, "proact_wakeup did not wake proact_wait(-1)");
		assert_int_equal(ow.rc, 0);
	}
	proact_watcher_destroy(w);
	assert_int_equal(t_fd_count(), base);
}

/*
 * The waiting thread's own write into a socket with room completes inside
 * proact_submit; a write from another thread while it is blocked in
 * proact_wait(-1) is handed to it: it wakes, sends and completes it.
 */
static void test_submit_from_other_thread_wakes_waiter(void **state)
{
	(void)state;
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	t_unix_pair(fds);
	struct proact_completion c;
	assert_int_equal(proact_write(w, fds[0], "x", 1, NULL), 0); /* registers fds[0] */
	assert_int_equal(t_collect(w, &c, 1, 5000), 1);
	for (int round = 0; round < 3; round++) {
		struct one_wait ow = {.w = w};
		t_thread *th = t_thread_start(one_wait_main, &ow);
		sleep_ms(50); /* most likely blocked by now; if not, it finds the completion */
		assert_int_equal(proact_write(w, fds[0], "ping", 4, NULL), 0);
		join_or_rescue(th, w,
		               "a completion made inside proact_submit did not wake the waiter");
		assert_int_equal(ow.rc, 1);
	}
	char got[13] = {0};
	t_read_all(fds[1], got, 13);
	assert_memory_equal(got, "xpingpingping", 13);
	close(fds[1]);
	proact_watcher_destroy(w);
}

/*
 * Waiting moves from one thread to another (a leader/follower pool): the
 * first thread waits, submits a pool read (it goes to the kernel from that
 * thread) and then sleeps on something else entirely; the second thread
 * takes over proact_wait and must get the read's completion when data comes.
 */
struct first_waiter {
	proact_watcher *w;
	int fd;
	int rc;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool handed_over, done;
};

static void *first_waiter_main(void *arg)
{
	struct first_waiter *fw = arg;
	struct proact_completion c;
	fw->rc = proact_wait(fw->w, &c, 1, 0); /* becomes the waiting thread */
	if (fw->rc == 0)
		fw->rc = proact_read(fw->w, fw->fd, NULL, 0, fw);
	if (fw->rc == 0)
		fw->rc = proact_wait(fw->w, &c, 1, 0); /* the read reaches the kernel */
	pthread_mutex_lock(&fw->mu);
	fw->handed_over = true;
	pthread_cond_broadcast(&fw->cv);
	while (!fw->done) /* asleep, outside the library, until the end */
		pthread_cond_wait(&fw->cv, &fw->mu);
	pthread_mutex_unlock(&fw->mu);
	return NULL;
}

static void test_waiting_moves_between_threads(void **state)
{
	(void)state;
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	t_unix_pair(fds);
	struct first_waiter fw = {.w = w, .fd = fds[0]};
	pthread_mutex_init(&fw.mu, NULL);
	pthread_cond_init(&fw.cv, NULL);
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, first_waiter_main, &fw), 0);
	pthread_mutex_lock(&fw.mu);
	while (!fw.handed_over)
		pthread_cond_wait(&fw.cv, &fw.mu);
	pthread_mutex_unlock(&fw.mu);
	t_write_all(fds[1], "hello", 5);
	struct proact_completion c;
	int n = t_collect(w, &c, 1, 5000);
	pthread_mutex_lock(&fw.mu);
	fw.done = true;
	pthread_cond_broadcast(&fw.cv);
	pthread_mutex_unlock(&fw.mu);
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(fw.rc, 0);
	assert_int_equal(n, 1);
	assert_ptr_equal(c.ctx, &fw);
	assert_int_equal(c.size, 5);
	assert_memory_equal(c.buf, "hello", 5);
	close(fds[1]);
	proact_watcher_destroy(w);
	pthread_cond_destroy(&fw.cv);
	pthread_mutex_destroy(&fw.mu);
}

/* A wakeup with no thread waiting makes the next wait return 0. */
static void test_wakeup_before_wait(void **state)
{
	(void)state;
	proact_watcher *w = t_watcher(NULL);
	assert_int_equal(proact_wakeup(w), 0);
	struct one_wait ow = {.w = w};
	t_thread *th = t_thread_start(one_wait_main, &ow);
	join_or_rescue(th, w, "a wakeup before proact_wait(-1) was lost");
	assert_int_equal(ow.rc, 0);
	proact_watcher_destroy(w);
}

/*
 * One thread blocked in proact_wait(-1); the main thread's proact_wait gets
 * -EBUSY (polled with timeout 0 until the other thread is surely inside);
 * then a wakeup lets the blocked one return 0.
 */
static void test_two_waiters_ebusy(void **state)
{
	(void)state;
	proact_watcher *w = t_watcher(NULL);
	struct one_wait ow = {.w = w};
	t_thread *th = t_thread_start(one_wait_main, &ow);
	struct proact_completion out[4];
	int busy = 0;
	for (int i = 0; i < 1000 && !busy; i++) {
		int rc = proact_wait(w, out, 4, 0);
		if (rc == -EBUSY)
			busy = 1;
		else
			assert_int_equal(rc, 0);
		if (!busy)
			sleep_ms(5);
	}
	assert_int_equal(proact_wakeup(w), 0);
	join_or_rescue(th, w, "proact_wakeup did not wake proact_wait(-1)");
	assert_true(busy);
	assert_int_equal(ow.rc, 0);
	proact_watcher_destroy(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_four_submitters_one_waiter),
	    cmocka_unit_test(test_concurrent_free_detach),
	    cmocka_unit_test(test_wakeup_from_other_thread),
	    cmocka_unit_test(test_wakeup_before_wait),
	    cmocka_unit_test(test_submit_from_other_thread_wakes_waiter),
	    cmocka_unit_test(test_waiting_moves_between_threads),
	    cmocka_unit_test(test_two_waiters_ebusy),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
