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
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proact.h"

#define PERIOD        1048573 /* pattern period: a prime, so a shifted stream never matches */
#define IO_TIMEOUT_S  20      /* any single blocking socket call */
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
static pid_t proxies[2]; /* killed on failure */

static void fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "proxy_check: FAIL: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	for (int i = 0; i < 2; i++)
		if (proxies[i] > 0)
			kill(proxies[i], SIGKILL);
	exit(1);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
	struct timespec ts = {.tv_sec = (time_t)s,
	                      .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
	nanosleep(&ts, NULL);
}

static void fill_pattern(void)
{
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (size_t i = 0; i < PERIOD; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		pattern[i] = (unsigned char)(x >> 32);
	}
}

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

/* ---- sockets ----------------------------------------------------------- */

static void set_timeouts(int fd)
{
	struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* Close-on-exec descriptors (proxies are forked while other threads run):
   atomically where the calls take the flag, else with fcntl afterwards. */
#if !defined(SOCK_CLOEXEC) || !defined(PROACT_PROG_HAVE_ACCEPT4) || !defined(PROACT_PROG_HAVE_PIPE2)
static int cloexec(int fd)
{
	if (fd >= 0)
		(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
	return fd;
}
#endif

static int tcp_socket(void)
{
#ifdef SOCK_CLOEXEC
	return socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
#else
	return cloexec(socket(AF_INET, SOCK_STREAM, 0));
#endif
}

static int accept_cloexec(int lfd)
{
#ifdef PROACT_PROG_HAVE_ACCEPT4
	return accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
#else
	return cloexec(accept(lfd, NULL, NULL));
#endif
}

static int pipe_cloexec(int p[2])
{
#ifdef PROACT_PROG_HAVE_PIPE2
	return pipe2(p, O_CLOEXEC);
#else
	if (pipe(p) < 0)
		return -1;
	cloexec(p[0]);
	cloexec(p[1]);
	return 0;
#endif
}

/* A listener on 127.0.0.1 with a kernel-chosen port. */
static int listen_local(int *port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int fd = tcp_socket();
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, len) < 0 || listen(fd, 64) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
		fail("listen: %s", strerror(errno));
	*port = ntohs(sa.sin_port);
	return fd;
}

static int accept_bounded(int lfd)
{
	struct pollfd p = {.fd = lfd, .events = POLLIN};
	if (poll(&p, 1, IO_TIMEOUT_S * 1000) != 1)
		fail("no connection from the proxy within %d s", IO_TIMEOUT_S);
	int fd = accept_cloexec(lfd);
	if (fd < 0)
		fail("accept: %s", strerror(errno));
	set_timeouts(fd);
	return fd;
}

static int connect_local(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons((uint16_t)port),
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = tcp_socket();
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		fail("connect to port %d: %s", port, strerror(errno));
	set_timeouts(fd);
	return fd;
}

static void write_all(int fd, const void *buf, size_t n, const char *who)
{
	const unsigned char *p = buf;
	while (n) {
		ssize_t k = write(fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			fail("%s: write: %s", who, k < 0 ? strerror(errno) : "0");
		p += k;
		n -= (size_t)k;
	}
}

/* Reads exactly @n bytes; fails on end of stream, error or timeout. */
static void read_all(int fd, void *buf, size_t n, const char *who)
{
	unsigned char *p = buf;
	while (n) {
		ssize_t k = read(fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			fail("%s: read: %s", who, k < 0 ? strerror(errno) : "early end of stream");
		p += k;
		n -= (size_t)k;
	}
}

static void expect_eof(int fd, const char *who)
{
	char c;
	ssize_t k;
	while ((k = read(fd, &c, 1)) < 0 && errno == EINTR)
		;
	if (k != 0)
		fail("%s: expected end of stream, got %s", who, k < 0 ? strerror(errno) : "data");
}

/* ---- the proxy process ------------------------------------------------- */

struct proxy {
	pid_t pid;
	int out; /* its stdout */
	int port;
	char text[4096]; /* everything it printed */
	size_t len;
};

/* Appends what the proxy printed, waiting up to @ms for more. */
static bool proxy_read(struct proxy *p, int ms)
{
	struct pollfd pf = {.fd = p->out, .events = POLLIN};
	if (poll(&pf, 1, ms) != 1)
		return false;
	ssize_t k = read(p->out, p->text + p->len, sizeof(p->text) - 1 - p->len);
	if (k <= 0)
		return false;
	p->len += (size_t)k;
	p->text[p->len] = 0;
	return true;
}

/*
 * Runs the proxy in this (child) process. PROXY_CHECK_EMULATOR, when set,
 * is the command line (words split at spaces) that runs a cross-built
 * proxy: under qemu-user an exec of a foreign binary fails unless the
 * host registered the emulator with binfmt_misc.
 */
static _Noreturn void exec_proxy(const char *bin, const char *to)
{
	char *argv[16];
	int n = 0;
	char *emulator = getenv("PROXY_CHECK_EMULATOR");
	for (char *save = NULL, *word = emulator ? strtok_r(emulator, " ", &save) : NULL;
	     word && n < 10; word = strtok_r(NULL, " ", &save))
		argv[n++] = word;
	const char *tail[] = {bin, "--listen", "0", "--to", to};
	for (size_t i = 0; i < sizeof(tail) / sizeof(tail[0]); i++)
		argv[n++] = (char *)tail[i];
	argv[n] = NULL;
	execvp(argv[0], argv);
	_exit(127);
}

static void proxy_start(struct proxy *p, const char *bin, int upstream_port, int slot)
{
	char to[32];
	snprintf(to, sizeof(to), "127.0.0.1:%d", upstream_port);
	int pipefd[2];
	if (pipe_cloexec(pipefd) < 0)
		fail("pipe: %s", strerror(errno));
	*p = (struct proxy){.out = pipefd[0]};
	p->pid = fork();
	if (p->pid < 0)
		fail("fork: %s", strerror(errno));
	if (p->pid == 0) {
		dup2(pipefd[1], STDOUT_FILENO);
		exec_proxy(bin, to);
	}
	proxies[slot] = p->pid;
	close(pipefd[1]);
	double end = now_s() + IO_TIMEOUT_S;
	char *nl;
	while (!(nl = strchr(p->text, '\n')) && now_s() < end)
		proxy_read(p, 100);
	if (!nl || sscanf(p->text, "listening on 127.0.0.1:%d", &p->port) != 1)
		fail("proxy did not start: '%s'", p->text);
}

/* SIGTERM, then the exit status and the summary line. */
static const char *proxy_stop(struct proxy *p, int slot)
{
	kill(p->pid, SIGTERM);
	int status = 0;
	double end = now_s() + IO_TIMEOUT_S;
	pid_t r;
	while ((r = waitpid(p->pid, &status, WNOHANG)) == 0 && now_s() < end)
		sleep_s(0.01);
	if (r != p->pid)
		fail("proxy did not exit within %d s of SIGTERM", IO_TIMEOUT_S);
	proxies[slot] = 0;
	while (proxy_read(p, 1000))
		;
	close(p->out);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail("proxy exited with status %#x", status);
	const char *line = strstr(p->text, "proxy: accepted");
	if (!line)
		fail("no summary line in '%s'", p->text);
	return line;
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
		fail("out of memory");
	int fd = connect_local(s->proxy_port);
	for (uint64_t off = 0; off < s->total;) {
		size_t n = s->total - off < SEND_CHUNK ? (size_t)(s->total - off) : SEND_CHUNK;
		pattern_at(off, buf, n);
		write_all(fd, buf, n, "sender");
		off += n;
		atomic_store(&s->sent, off);
	}
	shutdown(fd, SHUT_WR);
	char reply[sizeof(TRAILER)];
	read_all(fd, reply, sizeof(TRAILER) - 1, "sender (reply)");
	if (memcmp(reply, TRAILER, sizeof(TRAILER) - 1) != 0)
		fail("sender: wrong reply from the reader");
	expect_eof(fd, "sender (after the reply)");
	close(fd);
	free(buf);
	return NULL;
}

/* Reads small chunks, sleeping as needed to stay at s->rate. */
static void *slow_reader(void *arg)
{
	struct stream *s = arg;
	static unsigned char buf[READ_CHUNK];
	int fd = accept_bounded(s->upstream_lfd);
	double start = now_s();
	uint64_t got = 0;
	while (got < s->total) {
		size_t want = s->total - got < READ_CHUNK ? (size_t)(s->total - got) : READ_CHUNK;
		ssize_t k = read(fd, buf, want);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			fail("reader: %s after %llu of %llu bytes",
			     k ? strerror(errno) : "end of stream", (unsigned long long)got,
			     (unsigned long long)s->total);
		if (!pattern_matches(got, buf, (size_t)k))
			fail("reader: wrong data in bytes %llu..%llu", (unsigned long long)got,
			     (unsigned long long)(got + (uint64_t)k));
		got += (uint64_t)k;
		atomic_store(&s->received, got);
		double ahead = start + (double)got / (double)s->rate - now_s();
		if (ahead > 0)
			sleep_s(ahead);
	}
	expect_eof(fd, "reader (after the last byte)");
	write_all(fd, TRAILER, sizeof(TRAILER) - 1, "reader");
	close(fd);
	atomic_store(&s->reader_done, true);
	return NULL;
}

static void check_back_pressure(struct proxy *p, int upstream_lfd, uint64_t mib, uint64_t rate)
{
	struct stream s = {.proxy_port = p->port,
	                   .upstream_lfd = upstream_lfd,
	                   .total = mib << 20,
	                   .rate = rate << 20};
	long before = rss_kib(p->pid);
	pthread_t ts, tr;
	double start = now_s();
	if (pthread_create(&tr, NULL, slow_reader, &s) || pthread_create(&ts, NULL, sender, &s))
		fail("pthread_create");
	/* Samples count from the first eighth of the stream on: by then the
	   pool buffers the proxy will ever use have been touched. */
	long lo = 0, hi = 0;
	uint64_t lead = 0;
	int samples = 0;
	while (!atomic_load(&s.reader_done)) {
		if (now_s() - start > RUN_LIMIT_S)
			fail("back-pressure run not done after %d s", RUN_LIMIT_S);
		uint64_t got = atomic_load(&s.received), sent = atomic_load(&s.sent);
		long kib = rss_kib(p->pid);
		lead = sent - got > lead ? sent - got : lead;
		if (got >= s.total / 8 && kib > 0) {
			lo = samples == 0 || kib < lo ? kib : lo;
			hi = samples == 0 || kib > hi ? kib : hi;
			samples++;
		}
		sleep_s(SAMPLE_MS / 1000.0);
	}
	pthread_join(tr, NULL);
	pthread_join(ts, NULL);
	double secs = now_s() - start;
	printf("back-pressure: %llu MiB through the proxy in %.1f s (reader paced at %llu MiB/s), "
	       "sender ahead by at most %.1f MiB\n",
	       (unsigned long long)mib, secs, (unsigned long long)rate, (double)lead / 1048576.0);
	printf("back-pressure: proxy VmRSS %ld KiB before, %ld..%ld KiB over %d samples while "
	       "the data flowed (growth %ld KiB, limit %d)\n",
	       before, lo, hi, samples, hi - lo, RSS_SLACK_KIB);
	if (samples < 2)
		fail("too few VmRSS samples");
	if (hi - lo > RSS_SLACK_KIB)
		fail("proxy memory grew by %ld KiB while the data flowed", hi - lo);
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
			fail("echo upstream: read: %s", strerror(errno));
		if (k == 0)
			break;
		write_all(fd, buf, (size_t)k, "echo upstream");
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
		fail("out of memory");
	int fd = connect_local(c->port);
	uint64_t off = (uint64_t)c->id * 7777777u;
	for (int i = 0; i < ECHO_MSGS; i++) {
		size_t n = echo_size(c->id, i);
		pattern_at(off, out, n);
		write_all(fd, out, n, "echo client");
		read_all(fd, in, n, "echo client");
		if (memcmp(in, out, n) != 0)
			fail("echo client %d: message %d came back different", c->id, i);
		off += n;
		c->bytes += n;
	}
	shutdown(fd, SHUT_WR);
	expect_eof(fd, "echo client (after its half-close)");
	close(fd);
	free(out);
	free(in);
	return NULL;
}

static uint64_t check_echo(struct proxy *p, int upstream_lfd)
{
	struct echo_client c[ECHO_CLIENTS];
	pthread_t up[ECHO_CLIENTS];
	for (int i = 0; i < ECHO_CLIENTS; i++) {
		c[i] = (struct echo_client){.port = p->port, .id = i};
		if (pthread_create(&c[i].thread, NULL, echo_client, &c[i]))
			fail("pthread_create");
	}
	for (int i = 0; i < ECHO_CLIENTS; i++) {
		int fd = accept_bounded(upstream_lfd);
		if (pthread_create(&up[i], NULL, echo_conn, (void *)(intptr_t)fd))
			fail("pthread_create");
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
	close(listen_local(&port)); /* a port with nobody listening (any more) */
	struct proxy p;
	proxy_start(&p, bin, port, 1);
	int fd = connect_local(p.port);
	char c;
	ssize_t k = read(fd, &c, 1);
	if (k > 0 || (k < 0 && errno != ECONNRESET))
		fail("client of a proxy without upstream: %s", k < 0 ? strerror(errno) : "data");
	close(fd);
	const char *line = proxy_stop(&p, 1);
	printf("failed connect: the client was dropped; %s", line);
	if (!strstr(line, "accepted 1 connections") || !strstr(line, " 1 failed connects") ||
	    !strstr(line, " 0 errors"))
		fail("unexpected summary");
}

/* ---- main -------------------------------------------------------------- */

/* The test runner names the backend in PROACT_BACKEND; skip if it is not
   available here. */
static void skip_if_unavailable(void)
{
	proact_watcher *w;
	int rc = proact_watcher_new(&w, NULL);
	if (rc == -ENOSYS) {
		printf("proxy_check: SKIP: backend %s not available\n", getenv("PROACT_BACKEND"));
		exit(77);
	}
	if (rc < 0)
		fail("proact_watcher_new: %s", proact_strerror(rc));
	printf("proxy_check: backend %s\n", proact_backend(w));
	proact_watcher_destroy(w);
}

int main(int argc, char **argv)
{
	if (argc < 2)
		fail("usage: proxy_check PROXY_BINARY [--mib N] [--rate-mib N]");
	uint64_t mib = 128, rate = 32;
	for (int i = 2; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--mib"))
			mib = strtoull(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--rate-mib"))
			rate = strtoull(argv[i + 1], NULL, 10);
	}
	if (mib == 0 || rate == 0)
		fail("--mib and --rate-mib take a positive number");
	signal(SIGPIPE, SIG_IGN);
	skip_if_unavailable();
	fill_pattern();

	int upstream_port;
	int upstream_lfd = listen_local(&upstream_port);
	struct proxy p;
	proxy_start(&p, argv[1], upstream_port, 0);
	check_back_pressure(&p, upstream_lfd, mib, rate);
	uint64_t echoed = check_echo(&p, upstream_lfd);
	check_failed_connect(argv[1]);

	const char *line = proxy_stop(&p, 0);
	printf("%s", line);
	char expect[128];
	snprintf(expect, sizeof(expect), "accepted %d connections, %llu bytes to upstream, %llu",
	         1 + ECHO_CLIENTS, (unsigned long long)((mib << 20) + echoed),
	         (unsigned long long)(sizeof(TRAILER) - 1 + echoed));
	if (!strstr(line, expect) || !strstr(line, " 0 resets, 0 errors"))
		fail("unexpected summary, wanted '%s ... 0 resets, 0 errors'", expect);
	close(upstream_lfd);
	printf("proxy_check: PASS\n");
	return 0;
}
