/* SPDX-License-Identifier: MIT */
/*
 * Checks that completions and bytes keep submission order, DESIGN rule 4:
 *   - 1,000 reads (small user buffers) and 1,000 writes queued at once on one
 *     fd, interleaved: reads complete in submission order and filled in
 *     submission order (their concatenation is the peer's stream), writes
 *     complete in submission order, and the written bytes reach the peer in
 *     submission order, never interleaved (each write a distinct piece of a
 *     seeded stream that the peer verifies);
 *   - writes and writevs mixed (1,000 requests, writev segments scattered in
 *     memory, queued through proact_submit in batches) complete in one order
 *     and deliver exactly the concatenated stream.
 */
#include "common.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define TIMEOUT_MS 20000
#define N          1000

/* ---- a peer reader thread that verifies a seed stream ------------------- */

struct reader {
	int fd;
	uint32_t seed;
	size_t want;
	atomic_size_t got;
	long bad; /* stream offset of the first wrong byte, or -1 */
	int err;  /* errno of a failed recv, -1 for early EOF, or 0 */
	pthread_t th;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	uint8_t buf[16384];
	size_t got = 0;
	uint64_t end = proact_deadline_in(TIMEOUT_MS);
	r->bad = -1;
	r->err = 0;
	while (got < r->want && proact_now() < end) {
		size_t n = r->want - got < sizeof(buf) ? r->want - got : sizeof(buf);
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
	}
	return NULL;
}

static void reader_start(struct reader *r, int fd, uint32_t seed, size_t want)
{
	t_set_rcvtimeo(fd, TIMEOUT_MS / 1000);
	r->fd = fd;
	r->seed = seed;
	r->want = want;
	atomic_store(&r->got, 0);
	assert_int_equal(pthread_create(&r->th, NULL, reader_main, r), 0);
}

static void reader_join(struct reader *r, int ok)
{
	if (!ok)
		shutdown(r->fd, SHUT_RDWR); /* unblock it */
	pthread_join(r->th, NULL);
}

/* Length of write i: 1..4000 bytes, varied. */
static size_t wlen(int i)
{
	return 1 + (size_t)(((unsigned)i * 2654435761u) % 4000u);
}

/* ---------------------------------------------------------------------- */

static void test_order_reads_and_writes(void **state)
{
	(void)state;
	int fd0 = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	t_tcp_pair(fds);
	int s = fds[0], peer = fds[1];

	enum { RLEN = 8 };
	static uint8_t rbuf[N][RLEN];
	memset(rbuf, 0, sizeof(rbuf));
	size_t woff[N + 1];
	woff[0] = 0;
	for (int i = 0; i < N; i++)
		woff[i + 1] = woff[i] + wlen(i);
	uint8_t *wdata = malloc(woff[N]);
	assert_non_null(wdata);
	t_fill(wdata, woff[N], 71, 0);

	/* Interleaved: read 0, write 0, read 1, write 1, ... */
	for (int i = 0; i < N; i++) {
		assert_int_equal(proact_read(w, s, rbuf[i], RLEN, (void *)(intptr_t)i), 0);
		assert_int_equal(
		    proact_write(w, s, wdata + woff[i], wlen(i), (void *)(intptr_t)(N + i)), 0);
	}

	struct reader r;
	reader_start(&r, peer, 71, woff[N]);

	/* The peer's stream for the reads: fed in 97-byte chunks while the
	   watcher runs, until every read completed. */
	enum { RMAX = N * RLEN };
	static uint8_t rstream[RMAX];
	t_fill(rstream, RMAX, 72, 0);
	size_t fed = 0, rtotal = 0;
	int nr = 0, nw = 0, bad_read_order = -1, bad_write_order = -1, bad_other = -1;
	struct proact_completion c[64];
	uint64_t end = proact_deadline_in(TIMEOUT_MS);
	while ((nr < N || nw < N) && proact_now() < end) {
		if (fed < RMAX && fed < rtotal + 4096) {
			size_t k = RMAX - fed < 97 ? RMAX - fed : 97;
			ssize_t sent = send(peer, rstream + fed, k, MSG_DONTWAIT | MSG_NOSIGNAL);
			if (sent > 0)
				fed += (size_t)sent;
		}
		int n = proact_wait(w, c, 64, 1);
		if (n < 0)
			break;
		for (int j = 0; j < n; j++) {
			intptr_t id = (intptr_t)c[j].ctx;
			if (c[j].error != 0 && bad_other < 0)
				bad_other = (int)id;
			if (c[j].op == PROACT_OP_READ) {
				if (id != nr || c[j].buf != rbuf[nr] || c[j].size < 1 ||
				    c[j].size > RLEN) {
					if (bad_read_order < 0)
						bad_read_order = nr;
				} else if (memcmp(rbuf[nr], rstream + rtotal, c[j].size) != 0) {
					if (bad_read_order < 0)
						bad_read_order = nr;
				}
				rtotal += c[j].size;
				nr++;
			} else if (c[j].op == PROACT_OP_WRITE) {
				if (id != N + nw || c[j].size != wlen(nw))
					if (bad_write_order < 0)
						bad_write_order = nw;
				nw++;
			} else if (bad_other < 0) {
				bad_other = (int)id;
			}
		}
	}
	reader_join(&r, nw == N);

	assert_int_equal(bad_other, -1);
	assert_int_equal(nr, N);
	assert_int_equal(nw, N);
	assert_int_equal(bad_read_order, -1);
	assert_int_equal(bad_write_order, -1);
	assert_true(rtotal <= fed);
	assert_int_equal(r.err, 0);
	if (r.bad >= 0)
		fail_msg("written stream differs at byte %ld of %zu", r.bad, woff[N]);
	assert_int_equal(atomic_load(&r.got), woff[N]);

	proact_watcher_destroy(w);
	close(peer);
	free(wdata);
	assert_int_equal(t_fd_count(), fd0);
}

static void test_order_write_writev_mixed(void **state)
{
	(void)state;
	int fd0 = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	t_unix_pair(fds);
	int s = fds[0], peer = fds[1];

	size_t off[N + 1];
	off[0] = 0;
	for (int i = 0; i < N; i++)
		off[i + 1] = off[i] + wlen(i);
	size_t total = off[N];
	uint8_t *data = malloc(total);
	uint8_t *scatter = malloc(2 * total); /* writev pieces, with gaps */
	assert_non_null(data);
	assert_non_null(scatter);
	t_fill(data, total, 81, 0);
	memset(scatter, 0xEE, 2 * total);

	static struct iovec iovs[N][4];
	static struct proact_request reqs[N];
	memset(reqs, 0, sizeof(reqs));
	for (int i = 0; i < N; i++) {
		reqs[i].fd = s;
		reqs[i].ctx = (void *)(intptr_t)i;
		if (i % 2 == 0) {
			reqs[i].op = PROACT_OP_WRITE;
			reqs[i].buf = data + off[i];
			reqs[i].len = wlen(i);
			continue;
		}
		/* Split into 1..4 segments placed apart from each other. */
		int nseg = 1 + i % 4;
		size_t len = wlen(i), pos = 0;
		int k = 0;
		for (; k < nseg && pos < len; k++) {
			size_t piece = k == nseg - 1 ? len - pos : (len - pos + 1) / 2;
			uint8_t *dst = scatter + 2 * (off[i] + pos);
			memcpy(dst, data + off[i] + pos, piece);
			iovs[i][k].iov_base = dst;
			iovs[i][k].iov_len = piece;
			pos += piece;
		}
		reqs[i].op = PROACT_OP_WRITEV;
		reqs[i].iov = iovs[i];
		reqs[i].iovcnt = k;
	}

	struct reader r;
	reader_start(&r, peer, 81, total);
	for (int i = 0; i < N; i += 250)
		assert_int_equal(proact_submit(w, reqs + i, 250), 250);

	struct proact_completion c[64];
	int n_done = 0, bad = -1;
	uint64_t end = proact_deadline_in(TIMEOUT_MS);
	while (n_done < N && proact_now() < end) {
		int n = proact_wait(w, c, 64, 10);
		if (n < 0)
			break;
		for (int j = 0; j < n; j++, n_done++) {
			int i = n_done;
			int ok = (intptr_t)c[j].ctx == i && c[j].op == reqs[i].op &&
			         (int)c[j].fd == s && c[j].error == 0 && c[j].size == wlen(i) &&
			         c[j].buf == (i % 2 ? (void *)iovs[i] : reqs[i].buf);
			if (!ok && bad < 0)
				bad = i;
		}
	}
	reader_join(&r, n_done == N);
	assert_int_equal(n_done, N);
	assert_int_equal(bad, -1);
	assert_int_equal(r.err, 0);
	if (r.bad >= 0)
		fail_msg("written stream differs at byte %ld of %zu", r.bad, total);
	assert_int_equal(atomic_load(&r.got), total);

	proact_watcher_destroy(w);
	close(peer);
	free(data);
	free(scatter);
	assert_int_equal(t_fd_count(), fd0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_order_reads_and_writes),
	    cmocka_unit_test(test_order_write_writev_mixed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
