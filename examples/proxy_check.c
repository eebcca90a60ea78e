/* SPDX-License-Identifier: MIT */
/*
 * proxy_check - checks examples/proxy end to end over loopback sockets.
 *
 *   proxy_check PROXY_BINARY [--mib N] [--rate-mib N]
 *
 * Starts the proxy (the backend comes from PROACT_BACKEND, as for the test
 * suite) in front of upstream servers run here on plain blocking sockets:
 *
 *  1. Back-pressure: a fast sender pushes N MiB (default 128) of a
 *     deterministic pattern through the proxy to a slow upstream reader
 *     (small reads, paced to --rate-mib MiB/s with short sleeps). Every byte
 *     is checked in order, the sender's shutdown must arrive as end of
 *     stream right after the last byte, and the reader's reply must come
 *     back to the sender, followed by end of stream (half-close both ways).
 *     Meanwhile the proxy's VmRSS is sampled: it must stay flat (the
 *     growth once data flows stays under RSS_SLACK_KIB), which it can only do
 *     if the slow reader slowed the sender down through TCP instead of the
 *     proxy buffering the difference.
 *  2. Echo: ECHO_CLIENTS clients at once, each ECHO_MSGS messages of
 *     various sizes through the proxy to an echo upstream and back, then a
 *     half-close that must come back as end of stream.
 *  3. A failed connect: a second proxy aimed at a closed port must drop its
 *     client (end of stream or reset) and count one failed connect.
 *  4. SIGTERM: both proxies exit 0 with a summary line that reports the
 *     expected connections and no errors.
 *
 * A cross-built proxy runs under the command in PROXY_CHECK_EMULATOR.
 *
 * Memory is asserted, time is not: every wait is bounded only to turn a hang
 * into a failure. Exit 0 pass, 1 fail, 77 skip (backend not available).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define PERIOD        1048573 /* pattern period: a prime, so a shifted stream never matches */
#define RUN_LIMIT_S   60      /* the whole back-pressure transfer */
#define SEND_CHUNK    (256 * 1024)
#define READ_CHUNK    (16 * 1024) /* the slow reader's reads */
#define SAMPLE_MS     20
#define RSS_SLACK_KIB 4096 /* allowed VmRSS growth while the data flows */
#define ECHO_CLIENTS  8
#define ECHO_MSGS     100
#define ECHO_MAX      32768
#define TRAILER       "done\n"

static unsigned char pattern[PERIOD];

/* Copies (or compares) the pattern from stream offset @off, wrapping. */
static void pattern_at(uint64_t off, unsigned char *out, size_t n)
{
	size_t i = (size_t)(off % PERIOD);
	while (n) {
		size_t k = PERIOD - i < n ? PERIOD - i : n;
		memcpy(out, pattern + i, k);
		out += k;
		n -= k;
		i = 0;
	}
}

static bool pattern_matches(uint64_t off, const unsigned char *in, size_t n)
{
	size_t i = (size_t)(off % PERIOD);
	while (n) {
		size_t k = PERIOD - i < n ? PERIOD - i : n;
		if (memcmp(in, pattern + i, k) != 0)
			return false;
		in += k;
		n -= k;
		i = 0;
	}
	return true;
}

/* ---- the proxy process ------------------------------------------------- */

static void proxy_start(struct ck_server *p, const char *bin, int upstream_port)
{
	char to[32];
	snprintf(to, sizeof(to), "127.0.0.1:%d", upstream_port);
	char *argv[] = {(char *)bin, "--listen", "0", "--to", to, NULL};
	ck_server_start(p, argv);
}

static long rss_kib(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	long kib = -1;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld", &kib) == 1)
			break;
	if (f)
		fclose(f);
	return kib;
}

/* ---- 1. back-pressure -------------------------------------------------- */

struct stream {
	int proxy_port, upstream_lfd;
	uint64_t total, rate; /* bytes; reader pace in bytes/s */
	_Atomic uint64_t sent, received;
	atomic_bool reader_done;
};

static void *sender(void *arg)
{
	struct stream *s = arg;
	unsigned char *buf = malloc(SEND_CHUNK);
	if (!buf)
		ck_fail("out of memory");
	int fd = ck_connect_local(s->proxy_port);
	for (uint64_t off = 0; off < s->total;) {
		size_t n = s->total - off < SEND_CHUNK ? (size_t)(s->total - off) : SEND_CHUNK;
		pattern_at(off, buf, n);
		ck_write_all(fd, buf, n, "sender");
		off += n;
		atomic_store(&s->sent, off);
	}
	shutdown(fd, SHUT_WR);
	char reply[sizeof(TRAILER)];
	ck_read_all(fd, reply, sizeof(TRAILER) - 1, "sender (reply)");
	if (memcmp(reply, TRAILER, sizeof(TRAILER) - 1) != 0)
		ck_fail("sender: wrong reply from the reader");
	ck_expect_eof(fd, "sender (after the reply)");
	close(fd);
	free(buf);
	return NULL;
}

/* Reads small chunks, sleeping as needed to stay at s->rate. */
static void *slow_reader(void *arg)
{
	struct stream *s = arg;
	static unsigned char buf[READ_CHUNK];
	int fd = ck_accept(s->upstream_lfd);
	double start = ck_now();
	uint64_t got = 0;
	while (got < s->total) {
		size_t want = s->total - got < READ_CHUNK ? (size_t)(s->total - got) : READ_CHUNK;
		ssize_t k = read(fd, buf, want);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			ck_fail("reader: %s after %llu of %llu bytes",
			        k ? strerror(errno) : "end of stream", (unsigned long long)got,
			        (unsigned long long)s->total);
		if (!pattern_matches(got, buf, (size_t)k))
			ck_fail("reader: wrong data in bytes %llu..%llu", (unsigned long long)got,
			        (unsigned long long)(got + (uint64_t)k));
		got += (uint64_t)k;
		atomic_store(&s->received, got);
		double ahead = start + (double)got / (double)s->rate - ck_now();
		if (ahead > 0)
			ck_sleep(ahead);
	}
	ck_expect_eof(fd, "reader (after the last byte)");
	ck_write_all(fd, TRAILER, sizeof(TRAILER) - 1, "reader");
	close(fd);
	atomic_store(&s->reader_done, true);
	return NULL;
}

static void check_back_pressure(struct ck_server *p, int upstream_lfd, uint64_t mib, uint64_t rate)
{
	struct stream s = {.proxy_port = p->port,
	                   .upstream_lfd = upstream_lfd,
	                   .total = mib << 20,
	                   .rate = rate << 20};
	long before = rss_kib(p->pid);
	pthread_t ts, tr;
	double start = ck_now();
	if (pthread_create(&tr, NULL, slow_reader, &s) || pthread_create(&ts, NULL, sender, &s))
		ck_fail("pthread_create");
	/* Samples count from the first eighth of the stream on: by then the
	   pool buffers the proxy will ever use have been touched. */
	long lo = 0, hi = 0;
	uint64_t lead = 0;
	int samples = 0;
	while (!atomic_load(&s.reader_done)) {
		if (ck_now() - start > RUN_LIMIT_S)
			ck_fail("back-pressure run not done after %d s", RUN_LIMIT_S);
		uint64_t got = atomic_load(&s.received), sent = atomic_load(&s.sent);
		long kib = rss_kib(p->pid);
		lead = sent - got > lead ? sent - got : lead;
		if (got >= s.total / 8 && kib > 0) {
			lo = samples == 0 || kib < lo ? kib : lo;
			hi = samples == 0 || kib > hi ? kib : hi;
			samples++;
		}
		ck_sleep(SAMPLE_MS / 1000.0);
	}
	pthread_join(tr, NULL);
	pthread_join(ts, NULL);
	double secs = ck_now() - start;
	printf("back-pressure: %llu MiB through the proxy in %.1f s (reader paced at %llu MiB/s), "
	       "sender ahead by at most %.1f MiB\n",
	       (unsigned long long)mib, secs, (unsigned long long)rate, (double)lead / 1048576.0);
	printf("back-pressure: proxy VmRSS %ld KiB before, %ld..%ld KiB over %d samples while "
	       "the data flowed (growth %ld KiB, limit %d)\n",
	       before, lo, hi, samples, hi - lo, RSS_SLACK_KIB);
	if (samples < 2)
		ck_fail("too few VmRSS samples");
	if (hi - lo > RSS_SLACK_KIB)
		ck_fail("proxy memory grew by %ld KiB while the data flowed", hi - lo);
}

/* ---- 2. echo ----------------------------------------------------------- */

static void *echo_conn(void *arg)
{
	int fd = (int)(intptr_t)arg;
	static _Thread_local unsigned char buf[65536];
	for (;;) {
		ssize_t k = read(fd, buf, sizeof(buf));
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			ck_fail("echo upstream: read: %s", strerror(errno));
		if (k == 0)
			break;
		ck_write_all(fd, buf, (size_t)k, "echo upstream");
	}
	shutdown(fd, SHUT_WR); /* pass the client's half-close back */
	close(fd);
	return NULL;
}

struct echo_client {
	int port, id;
	pthread_t thread;
	uint64_t bytes;
};

static size_t echo_size(int id, int i)
{
	return 1 + (size_t)(((unsigned)id * 104729u + (unsigned)i * 7919u) % ECHO_MAX);
}

static void *echo_client(void *arg)
{
	struct echo_client *c = arg;
	unsigned char *out = malloc(ECHO_MAX), *in = malloc(ECHO_MAX);
	if (!out || !in)
		ck_fail("out of memory");
	int fd = ck_connect_local(c->port);
	uint64_t off = (uint64_t)c->id * 7777777u;
	for (int i = 0; i < ECHO_MSGS; i++) {
		size_t n = echo_size(c->id, i);
		pattern_at(off, out, n);
		ck_write_all(fd, out, n, "echo client");
		ck_read_all(fd, in, n, "echo client");
		if (memcmp(in, out, n) != 0)
			ck_fail("echo client %d: message %d came back different", c->id, i);
		off += n;
		c->bytes += n;
	}
	shutdown(fd, SHUT_WR);
	ck_expect_eof(fd, "echo client (after its half-close)");
	close(fd);
	free(out);
	free(in);
	return NULL;
}

static uint64_t check_echo(struct ck_server *p, int upstream_lfd)
{
	struct echo_client c[ECHO_CLIENTS];
	pthread_t up[ECHO_CLIENTS];
	for (int i = 0; i < ECHO_CLIENTS; i++) {
		c[i] = (struct echo_client){.port = p->port, .id = i};
		if (pthread_create(&c[i].thread, NULL, echo_client, &c[i]))
			ck_fail("pthread_create");
	}
	for (int i = 0; i < ECHO_CLIENTS; i++) {
		int fd = ck_accept(upstream_lfd);
		if (pthread_create(&up[i], NULL, echo_conn, (void *)(intptr_t)fd))
			ck_fail("pthread_create");
	}
	uint64_t bytes = 0;
	for (int i = 0; i < ECHO_CLIENTS; i++) {
		pthread_join(c[i].thread, NULL);
		pthread_join(up[i], NULL);
		bytes += c[i].bytes;
	}
	printf("echo: %d clients x %d messages, %llu bytes each way, all verified\n", ECHO_CLIENTS,
	       ECHO_MSGS, (unsigned long long)bytes);
	return bytes;
}

/* ---- 3. failed connect ------------------------------------------------- */

static void check_failed_connect(const char *bin)
{
	int port;
	close(ck_listen_local(&port)); /* a port with nobody listening (any more) */
	struct ck_server p;
	proxy_start(&p, bin, port);
	int fd = ck_connect_local(p.port);
	char c;
	ssize_t k = read(fd, &c, 1);
	if (k > 0 || (k < 0 && errno != ECONNRESET))
		ck_fail("client of a proxy without upstream: %s", k < 0 ? strerror(errno) : "data");
	close(fd);
	const char *line = ck_server_stop(&p, "proxy: accepted");
	printf("failed connect: the client was dropped; %s", line);
	if (!strstr(line, "accepted 1 connections") || !strstr(line, " 1 failed connects") ||
	    !strstr(line, " 0 errors"))
		ck_fail("unexpected summary");
}

/* ---- main -------------------------------------------------------------- */

int main(int argc, char **argv)
{
	ck_init("proxy_check", "PROXY_CHECK_EMULATOR");
	if (argc < 2)
		ck_fail("usage: proxy_check PROXY_BINARY [--mib N] [--rate-mib N]");
	uint64_t mib = 128, rate = 32;
	for (int i = 2; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--mib"))
			mib = strtoull(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--rate-mib"))
			rate = strtoull(argv[i + 1], NULL, 10);
	}
	if (mib == 0 || rate == 0)
		ck_fail("--mib and --rate-mib take a positive number");
	ck_skip_if_unavailable();
	ck_fill_pattern(pattern, PERIOD);

	int upstream_port;
	int upstream_lfd = ck_listen_local(&upstream_port);
	struct ck_server p;
	proxy_start(&p, argv[1], upstream_port);
	check_back_pressure(&p, upstream_lfd, mib, rate);
	uint64_t echoed = check_echo(&p, upstream_lfd);
	check_failed_connect(argv[1]);

	const char *line = ck_server_stop(&p, "proxy: accepted");
	printf("%s", line);
	char expect[128];
	snprintf(expect, sizeof(expect), "accepted %d connections, %llu bytes to upstream, %llu",
	         1 + ECHO_CLIENTS, (unsigned long long)((mib << 20) + echoed),
	         (unsigned long long)(sizeof(TRAILER) - 1 + echoed));
	if (!strstr(line, expect) || !strstr(line, " 0 resets, 0 errors"))
		ck_fail("unexpected summary, wanted '%s ... 0 resets, 0 errors'", expect);
	close(upstream_lfd);
	printf("proxy_check: PASS\n");
	return 0;
}
