/* SPDX-License-Identifier: MIT */
/*
 * Checks that misbehaving peers get the answers DESIGN rules 2, 3, 6 and 12
 * promise, over real loopback TCP:
 *   - a peer that resets in the middle of a large write: the write completes
 *     with ECONNRESET or EPIPE and exactly the bytes the kernel took (the
 *     peer's read bytes plus both socket queues, measured once the write
 *     stalled), the write queued behind it fails with size 0, nothing else;
 *   - a half-close (the peer's shutdown(SHUT_WR)): reads see the data, then
 *     EOF (size 0, error 0) as often as they are asked, while writes to the
 *     peer go on and arrive byte-exact;
 *   - a slowloris trickling single bytes: other connections are served
 *     meanwhile, a FULL read with a deadline completes ETIMEDOUT with exactly
 *     the bytes that arrived (the rest is read afterwards, nothing is lost);
 *   - a peer that never reads while 100 MiB are written with a deadline: the
 *     write completes ETIMEDOUT with 0 < size < 100 MiB, later writes fail
 *     with EPIPE and size 0, and the peer gets exactly size bytes;
 *   - 19,000 connections dropped at once by a child process (half reset,
 *     half closed): every pending pool read completes exactly once (EOF or
 *     ECONNRESET), all are freed, and the fd count is back where it began.
 */
#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#ifndef _WIN32 /* test_many_dropped's child process */
#include <sys/wait.h>
#endif
#include <unistd.h>

/* The reset test counts the bytes the kernel took with Linux's TCP_INFO
   (tcpi_bytes_acked) and SIOCOUTQ; other systems have neither. */
#if defined(__linux__)
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <sys/ioctl.h>
#endif

#define WAIT_MS 20000

static int is_pipe_error(int e)
{
	return e == EPIPE || e == ECONNRESET;
}

/* Frees fd and waits for its FREE completion, checking nothing else comes. */
static void free_and_settle(proact_watcher *w, int fd)
{
	struct proact_completion c[4];
	assert_int_equal(proact_free(w, fd, &c), 0);
	assert_int_equal(t_collect(w, c, 1, WAIT_MS), 1);
	assert_int_equal(c[0].op, PROACT_OP_FREE);
	assert_int_equal(c[0].fd, fd);
}

/* Reads until EOF from a plain socket, checking the seed stream from `off`. */
static size_t drain_checked(int fd, uint32_t seed, uint64_t off, size_t period)
{
	static uint8_t buf[65536];
	size_t got = 0;
	for (int i = 0; i < 1000000; i++) {
		ssize_t k = recv(fd, buf, sizeof(buf), 0);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			fail_msg("recv: %s", strerror(errno));
		if (k == 0)
			return got;
		for (ssize_t j = 0; j < k; j++) {
			uint64_t at = off + got + (size_t)j;
			if (buf[j] != t_byte(seed, period ? at % period : at))
				fail_msg("byte %llu differs", (unsigned long long)at);
		}
		got += (size_t)k;
	}
	fail_msg("no EOF");
	return got;
}

/* ---- reset in the middle of a large write ------------------------------ */

/*
 * The bytes TCP socket s had acknowledged, from Linux's TCP_INFO; false
 * where that is not known: other systems, and qemu-user, which hands back
 * only the start of struct tcp_info.
 */
static bool bytes_acked(int s, uint64_t *out)
{
#if defined(__linux__)
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	memset(&ti, 0, sizeof(ti));
	if (getsockopt(s, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 ||
	    len < offsetof(struct tcp_info, tcpi_bytes_acked) + sizeof(ti.tcpi_bytes_acked))
		return false;
	*out = ti.tcpi_bytes_acked;
	return true;
#else
	(void)s;
	(void)out;
	return false;
#endif
}

/* Bytes in s's send queue (Linux's SIOCOUTQ; only reached where
   bytes_acked works). */
static uint64_t send_queued(int s)
{
	int n = 0;
#if defined(__linux__)
	assert_int_equal(ioctl(s, SIOCOUTQ, &n), 0);
#else
	(void)s;
#endif
	return (uint64_t)n;
}

/*
 * Bytes handed to TCP socket s so far: those the peer acknowledged plus those
 * still in the send queue. The SYN counts as acknowledged on the connecting
 * side: callers subtract the value read before any data went out.
 */
static uint64_t bytes_taken(int s)
{
	uint64_t acked = 0;
	assert_true(bytes_acked(s, &acked));
	return acked + send_queued(s);
}

/* The reset test counts bytes with bytes_taken: it skips where that is not known. */
static void needs_tcp_info(void)
{
	int fds[2];
	uint64_t acked;
	t_tcp_pair(fds);
	bool known = bytes_acked(fds[0], &acked);
	close(fds[0]);
	close(fds[1]);
	if (!known)
		skip();
}

/*
 * Drives the write while the peer reads `want` bytes, then lets it stall:
 * returns the bytes the kernel took, once that stopped changing (the
 * library handed over everything the socket could hold).
 */
static uint64_t read_then_stall(proact_watcher *w, int s, int peer, uint8_t *in, size_t want)
{
	struct proact_completion c[4];
	size_t got = 0;
	uint64_t end = proact_deadline_in(WAIT_MS);
	while (got < want && proact_now() < end) {
		assert_int_equal(proact_wait(w, c, 4, 5), 0); /* nothing may complete */
		ssize_t k = recv(peer, in + got, want - got, MSG_DONTWAIT);
		if (k > 0)
			got += (size_t)k;
	}
	assert_int_equal(got, want);
	int same = 0;
	uint64_t last = 0;
	for (int i = 0; i < 2000 && same < 20; i++) {
		assert_int_equal(proact_wait(w, c, 4, 5), 0);
		uint64_t now = bytes_taken(s);
		same = now == last ? same + 1 : 0;
		last = now;
	}
	assert_int_equal(same, 20);
	return last;
}

static void test_reset_mid_write(void **state)
{
	(void)state;
	needs_tcp_info();
	int fd0 = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	t_tcp_pair(fds);
	int s = fds[0], peer = fds[1];
	t_small_bufs(s, peer);
	enum { BIG = 16 << 20, FIRST = 256 << 10 };
	uint8_t *buf = malloc(BIG), *in = malloc(FIRST);
	assert_non_null(buf);
	assert_non_null(in);
	t_fill(buf, BIG, 71, 0);
	static const char after[] = "must never reach the peer";
	uint64_t syn = bytes_taken(s);

	assert_int_equal(proact_write(w, s, buf, BIG, buf), 0);
	assert_int_equal(proact_write(w, s, after, sizeof(after), (void *)after), 0);
	uint64_t taken = read_then_stall(w, s, peer, in, FIRST) - syn;
	assert_int_equal(t_check(in, FIRST, 71, 0), -1);

	t_linger_reset(peer);
	close(peer);
	struct proact_completion c[4];
	assert_int_equal(t_collect(w, c, 2, WAIT_MS), 2);
	assert_ptr_equal(c[0].ctx, buf);
	if (!is_pipe_error(c[0].error))
		fail_msg("reset write: error %d", c[0].error);
	assert_int_equal(c[0].size, taken);
	assert_true(c[0].size >= FIRST);
	assert_true(c[0].size < BIG);
	assert_ptr_equal(c[1].ctx, after);
	if (!is_pipe_error(c[1].error))
		fail_msg("write after reset: error %d", c[1].error);
	assert_int_equal(c[1].size, 0);
	assert_int_equal(t_collect(w, c, 1, 50), 0); /* nothing after */

	free_and_settle(w, s);
	proact_watcher_destroy(w);
	free(buf);
	free(in);
	assert_int_equal(t_fd_count(), fd0);
}

/* ---- half-close --------------------------------------------------------- */

struct sink {
	int fd;
	uint32_t seed;
	size_t got; /* bytes read before EOF, all checked */
	pthread_t th;
};

static void *sink_main(void *arg)
{
	struct sink *k = arg;
	k->got = drain_checked(k->fd, k->seed, 0, 0);
	return NULL;
}

static void expect_eof(const struct proact_completion *c, const void *ctx)
{
	assert_ptr_equal(c->ctx, ctx);
	assert_int_equal(c->op, PROACT_OP_READ);
	assert_int_equal(c->error, 0);
	assert_int_equal(c->size, 0);
}

static void test_half_close(void **state)
{
	(void)state;
	int fd0 = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	t_tcp_pair(fds);
	int s = fds[0], peer = fds[1];
	t_set_timeouts(peer, WAIT_MS / 1000);
	enum { HELLO = 1000, OUT = 3 << 20, SPLIT = 1 << 20 };
	uint8_t hello[HELLO], got[HELLO], got2[16];
	t_fill(hello, HELLO, 81, 0);
	t_write_all(peer, hello, HELLO);
	assert_int_equal(shutdown(peer, SHUT_WR), 0);

	uint8_t *out = malloc(OUT);
	assert_non_null(out);
	t_fill(out, OUT, 82, 0);
	struct iovec iov[2] = {{out + SPLIT, SPLIT}, {out + 2 * SPLIT, OUT - 2 * SPLIT}};
	struct sink sk = {.fd = peer, .seed = 82};
	assert_int_equal(pthread_create(&sk.th, NULL, sink_main, &sk), 0);

	assert_int_equal(proact_read_full(w, s, got, HELLO, got), 0);
	assert_int_equal(proact_read(w, s, got2, sizeof(got2), got2), 0);
	assert_int_equal(proact_read(w, s, NULL, 0, NULL), 0);
	assert_int_equal(proact_write(w, s, out, SPLIT, out), 0);
	assert_int_equal(proact_writev(w, s, iov, 2, iov), 0);
	struct proact_completion c[8];
	int n = t_collect(w, c, 5, WAIT_MS);
	/* One more read after EOF, FULL this time: still EOF. */
	assert_int_equal(proact_read_full(w, s, got2, sizeof(got2), &sk), 0);
	n += t_collect(w, c + n, 1, WAIT_MS);
	free_and_settle(w, s); /* the peer sees EOF after the last byte */
	pthread_join(sk.th, NULL);

	assert_int_equal(n, 6);
	int reads = 0, writes = 0;
	for (int i = 0; i < n; i++) {
		if (c[i].op != PROACT_OP_READ) {
			assert_int_equal(c[i].error, 0);
			assert_int_equal(c[i].size, writes++ == 0 ? SPLIT : OUT - SPLIT);
			continue;
		}
		if (reads++ == 0) {
			assert_ptr_equal(c[i].ctx, got);
			assert_int_equal(c[i].error, 0);
			assert_int_equal(c[i].size, HELLO);
			assert_memory_equal(got, hello, HELLO);
		} else {
			expect_eof(&c[i], reads == 2 ? got2 : reads == 3 ? NULL : (void *)&sk);
		}
	}
	assert_int_equal(reads, 4);
	assert_int_equal(writes, 2);
	assert_int_equal(sk.got, OUT);
	close(peer);
	proact_watcher_destroy(w);
	free(out);
	assert_int_equal(t_fd_count(), fd0);
}

/* ---- slowloris ---------------------------------------------------------- */

enum { SLOW_CAP = 300, SLOW_WANT = 1000, ECHO_ROUNDS = 100, ECHO_MSG = 100 };

/* Trickles one byte every 50 ms (100 ms scaled down) on each socket. */
struct trickle {
	int fd[2];
	uint32_t seed[2];
	size_t sent[2];
	atomic_int stop;
	pthread_t th;
};

static void *trickle_main(void *arg)
{
	struct trickle *t = arg;
	for (int i = 0; i < SLOW_CAP && !atomic_load(&t->stop); i++) {
		for (int k = 0; k < 2; k++) {
			uint8_t b = t_byte(t->seed[k], t->sent[k]);
			if (send(t->fd[k], &b, 1, MSG_NOSIGNAL) == 1)
				t->sent[k]++;
		}
		/* 50 ms; usleep is gone from POSIX 2008 */
		nanosleep(&(struct timespec){.tv_nsec = 50 * 1000000L}, NULL);
	}
	return NULL;
}

/* A client doing ping-pong through the watcher's echo on another connection. */
struct pinger {
	int fd;
	atomic_int rounds_ok; /* the waiting thread reads it while this one runs */
	pthread_t th;
};

static void *pinger_main(void *arg)
{
	struct pinger *p = arg;
	uint8_t msg[ECHO_MSG], back[ECHO_MSG];
	for (int r = 0; r < ECHO_ROUNDS; r++) {
		t_fill(msg, sizeof(msg), 91, (uint64_t)r * ECHO_MSG);
		if (send(p->fd, msg, sizeof(msg), MSG_NOSIGNAL) != (ssize_t)sizeof(msg))
			return NULL;
		size_t got = 0;
		while (got < sizeof(back)) {
			ssize_t k = recv(p->fd, back + got, sizeof(back) - got, 0);
			if (k <= 0)
				return NULL;
			got += (size_t)k;
		}
		if (memcmp(msg, back, sizeof(msg)) != 0)
			return NULL;
		atomic_fetch_add(&p->rounds_ok, 1);
	}
	return NULL;
}

struct slow_state {
	proact_watcher *w;
	int a1, a2, b;
	uint8_t buf1[SLOW_WANT], buf2[SLOW_WANT];
	struct proact_completion a1_c, a2_c;
	int a1_done, a2_done;
	uint64_t deadline;
	uint64_t a2_at; /* when the A2 completion was delivered */
};

/* Serves the echo connection and watches the two slow reads. */
static void slow_step(struct slow_state *st, const struct proact_completion *c)
{
	if ((int)c->fd == st->b && c->op == PROACT_OP_READ) {
		assert_int_equal(c->error, 0);
		if (c->size == 0)
			return; /* the pinger closed */
		assert_int_equal(proact_write(st->w, st->b, c->buf, c->size, NULL), 0);
		assert_int_equal(proact_read(st->w, st->b, NULL, 0, NULL), 0);
	} else if ((int)c->fd == st->b) {
		assert_int_equal(c->error, 0);
	} else if ((int)c->fd == st->a1) {
		st->a1_c = *c;
		st->a1_done++;
	} else if ((int)c->fd == st->a2) {
		st->a2_c = *c;
		st->a2_done++;
		st->a2_at = proact_now();
	}
}

/* Reads the bytes that followed a partial FULL read and checks them. */
static void read_rest(proact_watcher *w, int fd, uint8_t *buf, size_t from, size_t to,
                      uint32_t seed)
{
	struct proact_completion c[2];
	if (to > from) {
		assert_int_equal(proact_read_full(w, fd, buf + from, to - from, buf), 0);
		assert_int_equal(t_collect(w, c, 1, WAIT_MS), 1);
		assert_int_equal(c[0].error, 0);
		assert_int_equal(c[0].size, to - from);
	}
	assert_int_equal(t_check(buf, to, seed, 0), -1);
	/* and nothing beyond: a short read with a deadline times out empty */
	assert_int_equal(
	    proact_read_deadline(w, fd, buf, 1, 0, proact_deadline_in(50), (void *)&read_rest), 0);
	assert_int_equal(t_collect(w, c, 1, WAIT_MS), 1);
	assert_int_equal(c[0].error, ETIMEDOUT);
	assert_int_equal(c[0].size, 0);
}

static void slow_run(struct slow_state *st, struct pinger *pg)
{
	struct proact_completion c[16];
	uint64_t end = proact_deadline_in(WAIT_MS);
	int pinger_joined = 0;
	while (proact_now() < end && (!st->a2_done || !pinger_joined)) {
		int n = proact_wait(st->w, c, 16, 10);
		assert_true(n >= 0);
		for (int i = 0; i < n; i++)
			slow_step(st, &c[i]);
		if (!pinger_joined && atomic_load(&pg->rounds_ok) == ECHO_ROUNDS) {
			pthread_join(pg->th, NULL);
			pinger_joined = 1;
		}
	}
	if (!pinger_joined) {
		shutdown(pg->fd, SHUT_RDWR);
		pthread_join(pg->th, NULL);
	}
}

static void test_slowloris(void **state)
{
	(void)state;
	int fd0 = t_fd_count();
	struct slow_state *st = calloc(1, sizeof(*st));
	assert_non_null(st);
	st->w = t_watcher(NULL);
	int p1[2], p2[2], pb[2];
	t_tcp_pair(p1);
	t_tcp_pair(p2);
	t_tcp_pair(pb);
	t_set_timeouts(pb[1], WAIT_MS / 1000);
	st->a1 = p1[0];
	st->a2 = p2[0];
	st->b = pb[0];

	struct trickle tr = {.fd = {p1[1], p2[1]}, .seed = {101, 102}};
	struct pinger pg = {.fd = pb[1]};
	/* A1 can never fill (the trickle stops below SLOW_WANT): it stays
	   pending all along, while B is served and A2's deadline passes. */
	assert_int_equal(proact_read_full(st->w, st->a1, st->buf1, SLOW_WANT, st->buf1), 0);
	st->deadline = proact_deadline_in(1000);
	assert_int_equal(proact_read_deadline(st->w, st->a2, st->buf2, SLOW_WANT, PROACT_FULL,
	                                      st->deadline, st->buf2),
	                 0);
	assert_int_equal(proact_read(st->w, st->b, NULL, 0, NULL), 0);
	assert_int_equal(pthread_create(&tr.th, NULL, trickle_main, &tr), 0);
	assert_int_equal(pthread_create(&pg.th, NULL, pinger_main, &pg), 0);
	slow_run(st, &pg);
	atomic_store(&tr.stop, 1);
	pthread_join(tr.th, NULL);

	assert_int_equal(atomic_load(&pg.rounds_ok), ECHO_ROUNDS);
	assert_int_equal(st->a1_done, 0);
	assert_int_equal(st->a2_done, 1);
	assert_int_equal(st->a2_c.error, ETIMEDOUT);
	assert_true(st->a2_c.flags & PROACT_COMP_FULL);
	assert_true(st->a2_at >= st->deadline); /* never early */
	assert_true(st->a2_c.size <= tr.sent[1]);
	read_rest(st->w, st->a2, st->buf2, st->a2_c.size, tr.sent[1], 102);

	/* A1: detach cancels the pending read with the bytes it had; the rest
	   is still in the socket, which is ours again. */
	struct proact_completion c[4];
	assert_int_equal(proact_detach(st->w, st->a1, NULL), 0);
	assert_int_equal(t_collect(st->w, c, 2, WAIT_MS), 2);
	assert_int_equal(c[0].error, ECANCELED);
	assert_int_equal(c[1].op, PROACT_OP_DETACH);
	size_t have = c[0].size;
	assert_true(have <= tr.sent[0]);
	if (tr.sent[0] > have)
		t_read_all(st->a1, st->buf1 + have, tr.sent[0] - have);
	assert_int_equal(t_check(st->buf1, tr.sent[0], 101, 0), -1);
	assert_int_equal(recv(st->a1, st->buf1, 1, MSG_DONTWAIT), -1);

	proact_watcher_destroy(st->w);
	close(p1[0]);
	close(p1[1]);
	close(p2[1]);
	close(pb[1]);
	free(st);
	assert_int_equal(t_fd_count(), fd0);
}

/* ---- a peer that never reads -------------------------------------------- */

enum { HUGE = 100 << 20, PERIOD = 1 << 20 };

static void test_never_reads(void **state)
{
	(void)state;
	int fd0 = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	t_tcp_pair(fds);
	int s = fds[0], peer = fds[1];
	t_set_timeouts(peer, WAIT_MS / 1000);
	/* One MiB of the seed stream, repeated: cheap to make, still ordered. */
	uint8_t *buf = malloc(HUGE);
	assert_non_null(buf);
	t_fill(buf, PERIOD, 111, 0);
	for (size_t off = PERIOD; off < HUGE; off += PERIOD)
		memcpy(buf + off, buf, PERIOD);

	uint64_t dl = proact_deadline_in(500);
	assert_int_equal(proact_write_deadline(w, s, buf, HUGE, dl, buf), 0);
	struct proact_completion c[4];
	assert_int_equal(t_collect(w, c, 1, WAIT_MS), 1);
	assert_ptr_equal(c[0].ctx, buf);
	assert_int_equal(c[0].error, ETIMEDOUT);
	size_t cut = c[0].size;
	assert_true(cut > 0);
	assert_true(cut < HUGE);

	/* The stream has a gap now: later writes send nothing. */
	static const char more[] = "after the cut";
	struct iovec iov[2] = {{(void *)more, 5}, {(void *)(more + 5), sizeof(more) - 5}};
	assert_int_equal(proact_write(w, s, more, sizeof(more), (void *)more), 0);
	assert_int_equal(proact_writev(w, s, iov, 2, iov), 0);
	assert_int_equal(t_collect(w, c, 2, WAIT_MS), 2);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(c[i].error, EPIPE);
		assert_int_equal(c[i].size, 0);
	}
	assert_ptr_equal(c[0].ctx, more);
	assert_ptr_equal(c[1].ctx, iov);

	free_and_settle(w, s);
	assert_int_equal(drain_checked(peer, 111, 0, PERIOD), cut);
	close(peer);
	proact_watcher_destroy(w);
	free(buf);
	assert_int_equal(t_fd_count(), fd0);
}

/* ---- 19,000 connections dropped at once -------------------------------- */

/* STEP connections at a time: the child waits for the parent to accept
   each step, so the listener's queue (4,096) never overflows on a slow or
   loaded machine (a dropped handshake retries after 1, 3, 7... seconds). */
enum { MANY = 19000, STEP = 1000 };

#ifndef _WIN32
static bool wait_word(int fd)
{
	char x;
	struct pollfd p = {.fd = fd, .events = POLLIN};
	return poll(&p, 1, 60000) == 1 && read(fd, &x, 1) == 1;
}

/* The child: connect MANY times (a step at a time, each taken by the
   parent before the next), report, wait for the word, then drop all. */
static void many_child(int port, int ready_fd, int go_fd)
{
	static int fds[MANY];
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (int i = 0; i < MANY; i++) {
		if (i > 0 && i % STEP == 0 && !wait_word(go_fd))
			_exit(4);
		fds[i] = socket(AF_INET, SOCK_STREAM, 0);
		if (fds[i] < 0 || connect(fds[i], (struct sockaddr *)&a, sizeof(a)) != 0)
			_exit(3); /* no cmocka in the child: the parent sees the status */
		if (i % 2 == 0) { /* half reset, half close with FIN */
			struct linger lg = {.l_onoff = 1, .l_linger = 0};
			setsockopt(fds[i], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		}
	}
	char x = 'r';
	if (write(ready_fd, &x, 1) != 1)
		_exit(2);
	wait_word(go_fd);
	_exit(0); /* the kernel closes all MANY sockets at once */
}

/* Accepts MANY connections, each with a pool read pending, and lets the
   child go on after each step. */
static int accept_many(proact_watcher *w, int lfd, int *fds, int go_fd)
{
	int n = 0;
	struct proact_completion c[16];
	uint64_t end = proact_deadline_in(60000);
	while (n < MANY && proact_now() < end) {
		struct pollfd p = {.fd = lfd, .events = POLLIN};
		poll(&p, 1, 100);
		int fd;
		while (n < MANY && (fd = t_accept(lfd)) >= 0) {
			assert_int_equal(proact_read(w, fd, NULL, 0, (void *)(intptr_t)n), 0);
			fds[n++] = fd;
			if (n % STEP == 0 && n < MANY)
				assert_int_equal(write(go_fd, "s", 1), 1);
		}
		assert_int_equal(proact_wait(w, c, 16, 0), 0); /* nothing may complete yet */
	}
	return n;
}

static void check_drop_completions(const struct proact_completion *c, int n, int *seen)
{
	int eof = 0, reset = 0;
	for (int i = 0; i < n; i++) {
		int k = (int)(intptr_t)c[i].ctx;
		assert_int_equal(c[i].op, PROACT_OP_READ);
		assert_true(k >= 0 && k < MANY);
		assert_int_equal(seen[k]++, 0);
		assert_int_equal(c[i].size, 0);
		if (c[i].error == 0)
			eof++;
		else if (c[i].error == ECONNRESET)
			reset++;
		else
			fail_msg("dropped connection: error %d", c[i].error);
	}
	assert_int_equal(eof, MANY / 2);
	assert_int_equal(reset, MANY / 2);
}

#endif

static void test_many_dropped(void **state)
{
	(void)state;
#ifdef _WIN32
	skip(); /* it needs a second process (fork) that drops every connection at once */
#else
	int port, ready[2], go[2];
	int lfd = t_listener(&port);
	t_set_nonblock(lfd, 1);
	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(go), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(lfd);
		many_child(port, ready[1], go[0]);
	}
	int fd0 = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	int fd_w = t_fd_count();
	int *fds = malloc(MANY * sizeof(*fds));
	int *seen = calloc(MANY, sizeof(*seen));
	struct proact_completion *c = malloc(MANY * sizeof(*c));
	assert_true(fds && seen && c);

	int n = accept_many(w, lfd, fds, go[1]);
	char x;
	struct pollfd p = {.fd = ready[0], .events = POLLIN};
	int child_ready = n == MANY && poll(&p, 1, WAIT_MS) == 1 && read(ready[0], &x, 1) == 1;
	assert_int_equal(write(go[1], "g", 1), 1);
	int st = 0;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_int_equal(n, MANY);
	assert_true(child_ready);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);

	assert_int_equal(t_collect(w, c, MANY, 60000), MANY);
	check_drop_completions(c, MANY, seen);
	assert_int_equal(t_collect(w, c, 1, 50), 0);
	for (int i = 0; i < MANY; i++)
		assert_int_equal(proact_free(w, fds[i], (void *)(intptr_t)i), 0);
	assert_int_equal(t_collect(w, c, MANY, 60000), MANY);
	memset(seen, 0, MANY * sizeof(*seen));
	for (int i = 0; i < MANY; i++) {
		assert_int_equal(c[i].op, PROACT_OP_FREE);
		assert_int_equal(seen[(intptr_t)c[i].ctx]++, 0);
	}
	assert_int_equal(t_fd_count(), fd_w);
	proact_watcher_destroy(w);
	assert_int_equal(t_fd_count(), fd0);
	close(lfd);
	close(ready[0]);
	close(ready[1]);
	close(go[0]);
	close(go[1]);
	free(fds);
	free(seen);
	free(c);
#endif
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_reset_mid_write), cmocka_unit_test(test_half_close),
	    cmocka_unit_test(test_slowloris),       cmocka_unit_test(test_never_reads),
	    cmocka_unit_test(test_many_dropped),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
