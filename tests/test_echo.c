/* SPDX-License-Identifier: MIT */
/*
 * Checks that rules 2, 3, 4 and 5 hold together under load: 100 MiB go
 * through a proact echo loop (read -> write back -> read again, the server
 * side driven by proact_wait on this thread) and come back byte-exact to a
 * client whose writer thread sends a seeded stream in chunks of varied size
 * and whose reader thread verifies everything that comes back.
 *   - user buffers: 4 buffers of 64 KiB cycling read -> write -> read, so
 *     reads and writes of one fd are queued together (rules 2, 3, 4);
 *   - NULL buffers: each pool buffer read is written back zero-copy and a
 *     new NULL read is submitted at once, so the pool runs dry whenever the
 *     client lags and reads must wait for buffers (rules 2, 3, 4, 5).
 * The client ends with shutdown(SHUT_WR); the echo loop sees EOF (size 0,
 * error 0) and finishes once every write completed.
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

#define TOTAL      ((size_t)100 << 20)
#define PAT        ((size_t)(1 << 20) + 4099) /* not a power of two */
#define TIMEOUT_MS 50000

/* The stream: byte i is pat[i % PAT], with pat a seeded pseudo-random run. */
static uint8_t *pat;

struct client {
	int fd;
	pthread_t wt, rt;
	size_t sent;
	int werr;
	atomic_size_t recvd;
	long bad; /* stream offset of the first wrong byte, or -1 */
	int rerr;
};

static void *writer_main(void *arg)
{
	struct client *cl = arg;
	uint64_t end = proact_deadline_in(TIMEOUT_MS);
	uint32_t x = 12345;
	size_t off = 0;
	while (off < TOTAL && proact_now() < end) {
		x = x * 1103515245u + 12345u;
		size_t n = 1 + (x >> 8) % (256 * 1024);
		size_t at = off % PAT;
		if (n > PAT - at)
			n = PAT - at;
		if (n > TOTAL - off)
			n = TOTAL - off;
		ssize_t k = send(cl->fd, pat + at, n, MSG_NOSIGNAL);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			cl->werr = errno;
			break;
		}
		off += (size_t)k;
	}
	cl->sent = off;
	shutdown(cl->fd, SHUT_WR);
	return NULL;
}

static void *reader_main(void *arg)
{
	struct client *cl = arg;
	enum { RBUF = 128 * 1024 };
	uint8_t *buf = malloc(RBUF);
	uint64_t end = proact_deadline_in(TIMEOUT_MS);
	size_t off = 0;
	cl->bad = -1;
	while (buf && off < TOTAL && proact_now() < end) {
		ssize_t k = recv(cl->fd, buf, RBUF, 0);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			cl->rerr = k == 0 ? -1 : errno;
			break;
		}
		/* Compare piecewise against the cyclic pattern. */
		size_t done = 0;
		while (done < (size_t)k && cl->bad < 0) {
			size_t at = (off + done) % PAT;
			size_t n = (size_t)k - done;
			if (n > PAT - at)
				n = PAT - at;
			if (memcmp(buf + done, pat + at, n) != 0) {
				size_t i = 0;
				while (buf[done + i] == pat[at + i])
					i++;
				cl->bad = (long)(off + done + i);
			}
			done += n;
		}
		off += (size_t)k;
		atomic_store(&cl->recvd, off);
	}
	free(buf);
	return NULL;
}

#define NBUF  4
#define UBUF  (64 * 1024)
#define NREAD 2 /* NULL reads kept pending */

struct stats {
	size_t read_bytes, written_bytes;
	int reads, writes, eofs;
	int bad_read, bad_write, bad_flags, submit_rc;
};

static void run_echo(int use_pool)
{
	int fd0 = t_fd_count();
	if (!pat) {
		pat = malloc(PAT);
		assert_non_null(pat);
		t_fill(pat, PAT, 2024, 0);
	}
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	t_tcp_pair(fds);
	int s = fds[0];
	struct client cl = {.fd = fds[1]};
	t_set_timeouts(cl.fd, 30);
	atomic_store(&cl.recvd, 0);

	uint8_t *bufs = NULL;
	struct stats st = {0};
	int pending_reads = 0, pending_writes = 0;
	if (use_pool) {
		for (int i = 0; i < NREAD; i++)
			assert_int_equal(proact_read(w, s, NULL, UBUF, NULL), 0);
		pending_reads = NREAD;
	} else {
		bufs = malloc(NBUF * UBUF);
		assert_non_null(bufs);
		for (int i = 0; i < NBUF; i++)
			assert_int_equal(proact_read(w, s, bufs + i * UBUF, UBUF, bufs + i * UBUF),
			                 0);
		pending_reads = NBUF;
	}
	assert_int_equal(pthread_create(&cl.wt, NULL, writer_main, &cl), 0);
	assert_int_equal(pthread_create(&cl.rt, NULL, reader_main, &cl), 0);

	struct proact_completion c[64];
	uint64_t end = proact_deadline_in(TIMEOUT_MS);
	while ((st.eofs == 0 || pending_reads > 0 || pending_writes > 0) && proact_now() < end &&
	       st.submit_rc == 0) {
		int n = proact_wait(w, c, 64, 100);
		if (n < 0) {
			st.submit_rc = n;
			break;
		}
		for (int j = 0; j < n; j++) {
			struct proact_completion *e = &c[j];
			int rc = 0;
			if (e->op == PROACT_OP_READ) {
				pending_reads--;
				st.reads++;
				if (e->error != 0 || (int)e->fd != s) {
					st.bad_read++;
					continue;
				}
				if (e->size == 0) {
					st.eofs++;
					continue;
				}
				if (!!(e->flags & PROACT_COMP_POOL) != use_pool ||
				    (!use_pool && e->buf != e->ctx) || e->size > UBUF)
					st.bad_flags++;
				st.read_bytes += e->size;
				/* Echo it back: the user buffer, or the pool buffer
				   zero-copy (held until the write completes). */
				rc = proact_write(w, s, e->buf, e->size, e->buf);
				if (rc == 0)
					pending_writes++;
				if (rc == 0 && use_pool && st.eofs == 0) {
					rc = proact_read(w, s, NULL, UBUF, NULL);
					if (rc == 0)
						pending_reads++;
				}
			} else if (e->op == PROACT_OP_WRITE) {
				pending_writes--;
				st.writes++;
				if (e->error != 0 || e->buf != e->ctx) {
					st.bad_write++;
					continue;
				}
				st.written_bytes += e->size;
				if (!use_pool && st.eofs == 0) {
					rc = proact_read(w, s, e->buf, UBUF, e->buf);
					if (rc == 0)
						pending_reads++;
				}
			} else {
				st.bad_read++;
			}
			if (rc != 0 && st.submit_rc == 0)
				st.submit_rc = rc;
		}
	}
	int finished = st.eofs > 0 && pending_reads == 0 && pending_writes == 0;
	if (!finished)
		shutdown(cl.fd, SHUT_RDWR); /* unblock the client threads */
	pthread_join(cl.wt, NULL);
	pthread_join(cl.rt, NULL);

	if (st.submit_rc)
		fail_msg("submission or wait failed: %s", proact_strerror(st.submit_rc));
	assert_int_equal(st.bad_read, 0);
	assert_int_equal(st.bad_write, 0);
	assert_int_equal(st.bad_flags, 0);
	if (!finished)
		fail_msg("echo unfinished: eofs %d, reads pending %d, writes pending %d, read %zu, "
		         "written %zu, client sent %zu, got back %zu",
		         st.eofs, pending_reads, pending_writes, st.read_bytes, st.written_bytes,
		         cl.sent, atomic_load(&cl.recvd));
	assert_int_equal(cl.werr, 0);
	assert_int_equal(cl.sent, TOTAL);
	assert_int_equal(st.read_bytes, TOTAL);
	assert_int_equal(st.written_bytes, TOTAL);
	assert_int_equal(cl.rerr, 0);
	if (cl.bad >= 0)
		fail_msg("echoed stream differs at byte %ld", cl.bad);
	assert_int_equal(atomic_load(&cl.recvd), TOTAL);

	proact_watcher_destroy(w);
	close(cl.fd);
	free(bufs);
	assert_int_equal(t_fd_count(), fd0);
}

static void test_echo_user_buffers(void **state)
{
	(void)state;
	run_echo(0);
}

static void test_echo_pool_buffers(void **state)
{
	(void)state;
	run_echo(1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_echo_user_buffers),
	    cmocka_unit_test(test_echo_pool_buffers),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	free(pat);
	return rc;
}
