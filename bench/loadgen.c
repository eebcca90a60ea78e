/* SPDX-License-Identifier: MIT */
/*
 * loadgen - the benchmark's load generator: one epoll loop per process.
 *
 *   loadgen --port P --mode echo|conn|idle|push|stream [options]
 *   loadgen --mode ceiling|oneway [options]
 *
 *   --conns N      connections (all modes)
 *   --size B       message size in bytes (default 64)
 *   --rounds R     round trips per connection (0: until --duration ends)
 *   --duration S   seconds of load after --warmup (echo mode with rounds 0)
 *   --warmup S     seconds of load not counted (default 0)
 *   --inflight K   connections being set up at once (default 1000)
 *   --procs P      split the connections over P processes (conn, idle)
 *   --pushes K     pushes to time (push mode, default 5)
 *   --hold S       idle mode: hold the connections S seconds (default 30)
 *   --bytes B      stream and ceiling modes: bytes to send (default 1 GiB)
 *   --timeout S    give up after S seconds in all (default 60), exit 1
 *   --src-ports L-H  bind client sockets to ports L..H, split between the
 *                  processes (default 10000-32000; 0 lets the kernel pick)
 *
 * Modes:
 *   echo  connect every connection, then each sends a message and waits for
 *         its echo (stop and wait), again and again; prints round trips/s,
 *         MB/s and the round-trip latency percentiles.
 *   conn  each connection connects, echoes --rounds messages (default 1) and
 *         stays open; prints the wall time from the first connect to the last
 *         byte (gaio's Test8k). At most --inflight connections are between
 *         connect and their first echo at once: this keeps the SYN queue below
 *         net.core.somaxconn, whose overflow costs a 1 s SYN retransmit.
 *   idle  connect, echo one message each, print "ready", then hold.
 *   push  connect, echo one message each, then --pushes times: send one
 *         message starting with '!' on the first connection (the server in
 *         --push mode sends it to every connection) and time until every
 *         connection has received all of it.
 *   stream  one connection, two threads with blocking sockets: one sends
 *         --bytes in --size writes, the other reads the echo and checks it;
 *         prints MB/s (one way) from the first write to the last byte back.
 *   ceiling the same stream against an echo thread inside loadgen (blocking
 *         recv of up to 64 KiB, then send of what came), over loopback TCP
 *         with no server process: what the machine's loopback allows for an
 *         echo, which takes every byte across it twice (cpu= is the two
 *         client threads, server_cpu= the echo thread).
 *   oneway  for context, the same bytes across loopback once: the reader
 *         takes them straight off the listener's end, no echo at all.
 *
 * Every received byte is checked: a message is a 16-byte header ('M', the
 * connection id, the round number) and a body taken from one of four random
 * patterns, and the echo must equal it byte for byte. A mismatch, an early
 * EOF or a timeout is an error: the result line says errors=N and the exit
 * status is 1.
 *
 * Source ports. Left to the kernel, connect() searches the ephemeral range
 * for a free port, and once about 12,000 connections from one address are
 * open that search dominates (perf: __inet_hash_connect and
 * __inet_check_established take 60% of the 16k run), which would make the
 * conn scenario measure the client's kernel rather than the server. So each
 * socket is bound to the next port of its process's share of --src-ports
 * (SO_REUSEADDR, skipping ports in use) before connecting.
 *
 * Output: one line starting with "result" and key=value fields on stdout.
 * Edge-triggered epoll, each connection registered once for both directions,
 * one writev and (usually) one read per round trip, no allocation after
 * setup: the generator stays cheaper than any server it drives (its own CPU
 * use is reported as cpu=, in cores).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HDR       16
#define NPATTERNS 4
#define MAXSIZE   (1u << 20)
#define NEVENTS   512
#define MAX_LAT   (1u << 23) /* latency samples kept */

enum mode { M_ECHO, M_CONN, M_IDLE, M_PUSH, M_STREAM, M_CEILING, M_ONEWAY };
enum state { S_NONE, S_CONNECTING, S_SEND, S_RECV, S_DONE, S_FAILED };

struct opts {
	int port;
	enum mode mode;
	uint32_t conns, size, inflight, procs, pushes;
	uint64_t rounds, bytes;
	uint32_t src_lo, src_hi;
	double duration, warmup, hold, timeout;
};

struct conn {
	int fd;
	uint8_t state;
	uint32_t id;   /* global connection number */
	uint32_t soff; /* bytes of the message sent */
	uint32_t roff; /* bytes of the reply received */
	uint64_t seq;  /* round number */
	uint64_t t0;   /* when the round started */
	unsigned char hdr[HDR];
};

/* What one process reports (also through a pipe, with --procs). */
struct result {
	uint64_t first_ns, last_ns; /* first connect, last byte */
	uint64_t rounds, bytes, errors;
	double cpu_s;
};

static struct opts o;
static struct conn *conns;
static uint32_t nconns, base_id;
static unsigned char *rbufs; /* nconns * size */
static unsigned char *patterns[NPATTERNS];
static int ep;
static uint64_t errors, deadline_ns;
static uint32_t src_next, src_end;  /* this process's share of --src-ports */
static const unsigned char *expect; /* push mode: the message every conn expects */
static uint32_t expect_len;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void fail(struct conn *c, const char *why)
{
	if (errors < 5)
		fprintf(stderr, "loadgen: connection %u round %llu: %s\n", c->id,
		        (unsigned long long)c->seq, why);
	errors++;
	c->state = S_FAILED;
}

/* ---- messages ------------------------------------------------------------ */

static void make_patterns(void)
{
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (int k = 0; k < NPATTERNS; k++) {
		patterns[k] = malloc(MAXSIZE);
		if (!patterns[k]) {
			perror("loadgen: malloc");
			exit(1);
		}
		for (uint32_t i = 0; i < MAXSIZE; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			patterns[k][i] = (unsigned char)x;
		}
	}
}

static void set_header(struct conn *c)
{
	c->hdr[0] = 'M';
	for (int i = 1; i < 8; i++)
		c->hdr[i] = (unsigned char)((uint64_t)c->id >> (8 * (i - 1)));
	for (int i = 0; i < 8; i++)
		c->hdr[8 + i] = (unsigned char)(c->seq >> (8 * i));
}

static const unsigned char *body(const struct conn *c)
{
	return patterns[(c->seq + c->id) % NPATTERNS];
}

/* ---- connections ----------------------------------------------------------- */

static void start_round(struct conn *c, uint64_t now);

static bool open_conn(struct conn *c)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		perror("loadgen: socket");
		return false;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o.port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	for (int tries = 0; src_next < src_end && tries < 256; tries++) {
		struct sockaddr_in src = {.sin_family = AF_INET,
		                          .sin_port = htons((uint16_t)src_next++)};
		src.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (bind(fd, (struct sockaddr *)&src, sizeof(src)) == 0 || errno != EADDRINUSE)
			break;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
		perror("loadgen: connect");
		close(fd);
		return false;
	}
	c->fd = fd;
	c->state = S_CONNECTING;
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP,
	                         .data.ptr = c};
	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
		perror("loadgen: epoll_ctl");
		return false;
	}
	return true;
}

static void do_send(struct conn *c)
{
	while (c->soff < o.size) {
		struct iovec iov[2];
		int n = 0;
		if (c->soff < HDR) {
			uint32_t h = o.size < HDR ? o.size : HDR;
			iov[n++] = (struct iovec){c->hdr + c->soff, h - c->soff};
		}
		if (o.size > HDR) {
			uint32_t from = c->soff > HDR ? c->soff : HDR;
			iov[n++] = (struct iovec){(void *)(body(c) + from), o.size - from};
		}
		ssize_t w = writev(c->fd, iov, n);
		if (w < 0) {
			if (errno == EAGAIN)
				return; /* EPOLLOUT continues */
			if (errno == EINTR)
				continue;
			fail(c, strerror(errno));
			return;
		}
		c->soff += (uint32_t)w;
	}
	c->state = S_RECV;
}

static void start_round(struct conn *c, uint64_t now)
{
	c->seq++;
	set_header(c);
	c->soff = c->roff = 0;
	c->t0 = now;
	c->state = S_SEND;
	do_send(c);
}

/* The reply is complete: does it equal the message? */
static bool verify(struct conn *c, const unsigned char *got)
{
	if (expect) /* push: one message for everyone */
		return memcmp(got, expect, expect_len) == 0;
	uint32_t h = o.size < HDR ? o.size : HDR;
	if (memcmp(got, c->hdr, h) != 0)
		return false;
	return o.size <= HDR || memcmp(got + HDR, body(c) + HDR, o.size - HDR) == 0;
}

/* Reads what is there; true once the whole reply is in and checked. */
static bool do_recv(struct conn *c)
{
	uint32_t want = expect ? expect_len : o.size;
	unsigned char *buf = rbufs + (size_t)(c - conns) * o.size;
	while (c->roff < want) {
		ssize_t r = read(c->fd, buf + c->roff, want - c->roff);
		if (r > 0) {
			c->roff += (uint32_t)r;
			continue;
		}
		if (r < 0 && errno == EAGAIN)
			return false;
		if (r < 0 && errno == EINTR)
			continue;
		fail(c, r == 0 ? "EOF before the whole echo" : strerror(errno));
		return false;
	}
	if (!verify(c, buf)) {
		fail(c, "echo differs from the message sent");
		return false;
	}
	c->roff = 0;
	return true;
}

/* ---- the loop ---------------------------------------------------------------- */

struct phase {
	/* counters the loop updates */
	uint32_t setting_up; /* connections between connect and their first reply */
	uint32_t next_open;  /* next connection to open */
	uint32_t finished;   /* connections in S_DONE or S_FAILED */
	uint64_t rounds, bytes, first_ns, last_ns;
	/* measurement window (echo mode) */
	uint64_t win_start, win_end;
	bool stop_rounds; /* no new rounds */
	uint64_t *lat;
	uint64_t nlat;
};

static struct phase ph;

static void conn_finished(struct conn *c)
{
	if (c->state != S_FAILED)
		c->state = S_DONE;
	ph.finished++;
}

static void on_reply(struct conn *c, uint64_t now)
{
	ph.last_ns = now;
	if (c->seq == 1 && ph.setting_up > 0 && o.mode != M_ECHO)
		ph.setting_up--;
	if (o.mode == M_ECHO && c->t0 >= ph.win_start && now <= ph.win_end) {
		ph.rounds++;
		ph.bytes += 2ull * o.size;
		if (ph.lat && ph.nlat < MAX_LAT)
			ph.lat[ph.nlat++] = now - c->t0;
	} else if (o.mode != M_ECHO) {
		ph.rounds++;
		ph.bytes += 2ull * o.size;
	}
	bool more = o.rounds ? c->seq < o.rounds : true;
	if (o.mode == M_ECHO && (ph.stop_rounds || now >= ph.win_end))
		more = false;
	if (more)
		start_round(c, now);
	else
		conn_finished(c);
}

static void on_event(struct conn *c, uint32_t ev)
{
	if (c->state == S_DONE || c->state == S_FAILED)
		return; /* finished: later events (a server exiting) do not count */
	if (c->state == S_CONNECTING) {
		if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		int err = 0;
		socklen_t len = sizeof(err);
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err) {
			fail(c, strerror(err));
			conn_finished(c);
			if (ph.setting_up)
				ph.setting_up--;
			return;
		}
		if (o.mode == M_ECHO) { /* connected: wait for the start */
			c->state = S_DONE;
			ph.finished++;
			ph.setting_up--;
			return;
		}
		start_round(c, now_ns());
		if (c->state == S_FAILED) {
			conn_finished(c);
			ph.setting_up--;
		}
		return;
	}
	if (c->state == S_SEND && (ev & EPOLLOUT))
		do_send(c);
	if (c->state == S_RECV && (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
		if (do_recv(c))
			on_reply(c, now_ns());
	}
	if (c->state == S_FAILED) {
		if (c->seq <= 1 && ph.setting_up && o.mode != M_ECHO)
			ph.setting_up--;
		conn_finished(c);
	}
}

/* Runs the loop until every connection is done (or failed), opening
   connections as the in-flight cap allows. False on timeout. */
static bool run_until_done(void)
{
	struct epoll_event evs[NEVENTS];
	while (ph.finished < nconns) {
		while (ph.next_open < nconns && ph.setting_up < o.inflight) {
			struct conn *c = &conns[ph.next_open++];
			if (!ph.first_ns)
				ph.first_ns = now_ns();
			ph.setting_up++;
			if (!open_conn(c)) {
				fail(c, "cannot open");
				conn_finished(c);
				ph.setting_up--;
			}
		}
		uint64_t now = now_ns();
		if (now > deadline_ns) {
			fprintf(stderr, "loadgen: timeout with %u of %u connections done\n",
			        ph.finished, nconns);
			return false;
		}
		if (o.mode == M_ECHO && now >= ph.win_end)
			ph.stop_rounds = true;
		int n = epoll_wait(ep, evs, NEVENTS, 100);
		if (n < 0 && errno != EINTR) {
			perror("loadgen: epoll_wait");
			return false;
		}
		for (int i = 0; i < n; i++)
			on_event(evs[i].data.ptr, evs[i].events);
	}
	return true;
}

/* Puts every connection back to work (for the next phase). */
static void reset_phase(void)
{
	ph.finished = 0;
	ph.setting_up = 0;
	for (uint32_t i = 0; i < nconns; i++)
		if (conns[i].state == S_DONE)
			conns[i].state = S_RECV;
		else
			ph.finished++; /* failed ones stay finished */
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static double pct(const uint64_t *v, uint64_t n, double p)
{
	if (!n)
		return 0;
	uint64_t i = (uint64_t)(p * (double)(n - 1) + 0.5);
	return (double)v[i] / 1000.0; /* microseconds */
}

/* ---- modes --------------------------------------------------------------------- */

static int mode_echo(void)
{
	/* Phase 1: connect all. */
	ph.win_start = ph.win_end = UINT64_MAX;
	if (!run_until_done())
		return 1;
	/* Phase 2: everyone starts a round; rounds started after warmup count. */
	ph.lat = malloc(sizeof(uint64_t) * MAX_LAT);
	uint64_t start = now_ns();
	ph.win_start = start + (uint64_t)(o.warmup * 1e9);
	ph.win_end = o.rounds ? UINT64_MAX : ph.win_start + (uint64_t)(o.duration * 1e9);
	if (o.rounds)
		ph.win_start = start;
	ph.finished = 0;
	for (uint32_t i = 0; i < nconns; i++) {
		if (conns[i].state == S_FAILED) {
			ph.finished++;
			continue;
		}
		start_round(&conns[i], now_ns());
		if (conns[i].state == S_FAILED)
			conn_finished(&conns[i]);
	}
	double cpu0 = cpu_seconds();
	bool ok = run_until_done();
	uint64_t end = now_ns();
	double cpu = cpu_seconds() - cpu0;
	uint64_t w_end = o.rounds ? end : ph.win_end;
	double secs = (double)(w_end - ph.win_start) / 1e9;
	if (ph.lat)
		qsort(ph.lat, ph.nlat, sizeof(uint64_t), cmp_u64);
	printf("result mode=echo conns=%u size=%u rounds=%llu secs=%.4f rps=%.1f mbps=%.2f "
	       "p50_us=%.1f p99_us=%.1f p999_us=%.1f cpu=%.2f errors=%llu\n",
	       nconns, o.size, (unsigned long long)ph.rounds, secs, (double)ph.rounds / secs,
	       (double)ph.bytes / 2 / secs / 1e6, pct(ph.lat, ph.nlat, 0.50),
	       pct(ph.lat, ph.nlat, 0.99), pct(ph.lat, ph.nlat, 0.999),
	       cpu / (double)(end - start) * 1e9, (unsigned long long)errors);
	return ok && !errors ? 0 : 1;
}

static int mode_push(void)
{
	if (!run_until_done()) /* connect and one echo each */
		return 1;
	if (errors)
		return 1;
	uint32_t len = o.size < HDR ? HDR : o.size;
	unsigned char *msg = malloc(len);
	uint64_t *t = calloc(o.pushes, sizeof(*t));
	if (!msg || !t)
		return 1;
	rbufs = realloc(rbufs, (size_t)nconns * len);
	o.size = len;
	expect = msg;
	expect_len = len;
	for (uint32_t k = 0; k < o.pushes; k++) {
		memcpy(msg, patterns[k % NPATTERNS], len);
		msg[0] = '!';
		msg[1] = (unsigned char)k;
		reset_phase();
		uint64_t t0 = now_ns();
		ssize_t w = write(conns[0].fd, msg, len);
		if (w != (ssize_t)len) {
			fprintf(stderr, "loadgen: trigger write failed\n");
			return 1;
		}
		/* Every connection now waits in S_RECV for msg; its arrival is a
		   new edge on each socket, so epoll reports every one. */
		struct epoll_event evs[NEVENTS];
		while (ph.finished < nconns) {
			if (now_ns() > deadline_ns) {
				fprintf(stderr, "loadgen: push timeout, %u of %u got it\n",
				        ph.finished, nconns);
				return 1;
			}
			int n = epoll_wait(ep, evs, NEVENTS, 100);
			for (int i = 0; i < n; i++) {
				struct conn *c = evs[i].data.ptr;
				if (c->state != S_RECV)
					continue;
				if (do_recv(c)) {
					c->state = S_DONE;
					ph.last_ns = now_ns();
				}
				if (c->state != S_RECV)
					ph.finished++;
			}
		}
		t[k] = ph.last_ns - t0;
		usleep(20000);
	}
	qsort(t, o.pushes, sizeof(*t), cmp_u64);
	printf("result mode=push conns=%u size=%u pushes=%u secs=%.6f min_secs=%.6f "
	       "max_secs=%.6f errors=%llu\n",
	       nconns, len, o.pushes, (double)t[o.pushes / 2] / 1e9, (double)t[0] / 1e9,
	       (double)t[o.pushes - 1] / 1e9, (unsigned long long)errors);
	return errors ? 1 : 0;
}

/* conn and idle modes, in one process: fills r. */
static bool run_conns(struct result *r)
{
	double cpu0 = cpu_seconds();
	bool ok = run_until_done();
	r->first_ns = ph.first_ns;
	r->last_ns = ph.last_ns;
	r->rounds = ph.rounds;
	r->bytes = ph.bytes;
	r->errors = errors;
	r->cpu_s = cpu_seconds() - cpu0;
	return ok;
}

static void setup_process(uint32_t first, uint32_t count)
{
	base_id = first;
	nconns = count;
	ep = epoll_create1(EPOLL_CLOEXEC);
	conns = calloc(count ? count : 1, sizeof(*conns));
	rbufs = malloc((size_t)(count ? count : 1) * (o.size < HDR ? HDR : o.size));
	if (ep < 0 || !conns || !rbufs) {
		perror("loadgen: setup");
		exit(1);
	}
	for (uint32_t i = 0; i < count; i++)
		conns[i] = (struct conn){.fd = -1, .id = first + i};
	if (o.src_lo) { /* the share of process number first * P / conns */
		uint32_t p = o.procs ? o.procs : 1;
		uint32_t k = (uint32_t)((uint64_t)first * p / o.conns);
		uint32_t span = (o.src_hi - o.src_lo + 1) / p;
		src_next = o.src_lo + k * span;
		src_end = src_next + span;
	}
}

/* Reset rather than close: no TIME_WAIT pile-up across the many runs of a
   bench (a SYN that meets an old TIME_WAIT can cost a 1 s retransmit). */
static void close_all(void)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	for (uint32_t i = 0; i < nconns; i++) {
		if (conns[i].fd < 0)
			continue;
		setsockopt(conns[i].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(conns[i].fd);
		conns[i].fd = -1;
	}
}

static void hold(int from_parent)
{
	if (from_parent >= 0) { /* until the parent goes away */
		char ch;
		while (read(from_parent, &ch, 1) < 0 && errno == EINTR)
			;
		return;
	}
	uint64_t until = now_ns() + (uint64_t)(o.hold * 1e9);
	while (now_ns() < until)
		usleep(100000);
}

static int mode_conns(void)
{
	uint32_t p = o.procs ? o.procs : 1;
	struct result total = {.first_ns = UINT64_MAX};
	int res_pipe[2], go_pipe[2], hold_pipe[2];
	if (pipe(res_pipe) < 0 || pipe(go_pipe) < 0 || pipe(hold_pipe) < 0) {
		perror("loadgen: pipe");
		return 1;
	}
	pid_t kids[64];
	if (p > 64)
		p = 64;
	for (uint32_t k = 0; k < p; k++) {
		uint32_t first = (uint32_t)((uint64_t)o.conns * k / p);
		uint32_t last = (uint32_t)((uint64_t)o.conns * (k + 1) / p);
		kids[k] = fork();
		if (kids[k] < 0) {
			perror("loadgen: fork");
			return 1;
		}
		if (kids[k] == 0) {
			close(res_pipe[0]);
			close(go_pipe[1]);
			close(hold_pipe[1]);
			setup_process(first, last - first);
			char ch;
			if (read(go_pipe[0], &ch, 1) != 1)
				_exit(1);
			struct result r = {0};
			bool ok = run_conns(&r);
			if (!ok)
				r.errors++;
			if (write(res_pipe[1], &r, sizeof(r)) != (ssize_t)sizeof(r))
				_exit(1);
			if (o.mode == M_IDLE)
				hold(hold_pipe[0]);
			close_all();
			_exit(0);
		}
	}
	close(res_pipe[1]);
	close(go_pipe[0]);
	close(hold_pipe[0]);
	char go[64] = {0};
	if (write(go_pipe[1], go, p) != (ssize_t)p)
		return 1;
	int status = 0;
	for (uint32_t k = 0; k < p; k++) {
		struct result r;
		if (read(res_pipe[0], &r, sizeof(r)) != (ssize_t)sizeof(r)) {
			fprintf(stderr, "loadgen: a client process died\n");
			status = 1;
			break;
		}
		if (r.first_ns && r.first_ns < total.first_ns)
			total.first_ns = r.first_ns;
		if (r.last_ns > total.last_ns)
			total.last_ns = r.last_ns;
		total.rounds += r.rounds;
		total.bytes += r.bytes;
		total.errors += r.errors;
		total.cpu_s += r.cpu_s;
	}
	double secs = total.last_ns > total.first_ns && total.first_ns != UINT64_MAX
	                  ? (double)(total.last_ns - total.first_ns) / 1e9
	                  : 0;
	printf("result mode=%s conns=%u size=%u procs=%u rounds=%llu secs=%.4f cpu=%.2f "
	       "errors=%llu\n",
	       o.mode == M_IDLE ? "idle" : "conn", o.conns, o.size, p,
	       (unsigned long long)total.rounds, secs, secs > 0 ? total.cpu_s / secs : 0,
	       (unsigned long long)total.errors);
	fflush(stdout);
	if (total.errors)
		status = 1;
	if (o.mode == M_IDLE && status == 0) {
		printf("ready\n");
		fflush(stdout);
		hold(-1);
	}
	close(hold_pipe[1]); /* the children see EOF and exit */
	for (uint32_t k = 0; k < p; k++)
		waitpid(kids[k], NULL, 0);
	return status;
}

/* ---- stream and ceiling ------------------------------------------------------- */

/* The stream is cut into --size chunks; chunk k is 'S', k (8 bytes, little
   endian) and then bytes of pattern k % NPATTERNS, so a lost, repeated or
   reordered piece shows anywhere in the stream. */
#define SHDR    9
#define RBUF    (256u << 10) /* the reader takes what is there, up to this */
#define ECHOBUF (64u << 10)  /* the ceiling's echo thread: the servers' read size */

struct stream {
	int fd;
	uint64_t sent, got;    /* bytes */
	uint64_t t0, t1;       /* first write, last byte back */
	double cpu_tx, cpu_rx; /* each client thread's own CPU seconds */
	const char *why;       /* the first failure, or NULL */
	atomic_bool stop;      /* a failure: everyone gives up */
	int echo_fd;           /* ceiling and oneway: the listener's end */
	double cpu_echo;
};

static double thread_cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_THREAD, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void stream_fail(struct stream *st, const char *why)
{
	bool was = atomic_exchange(&st->stop, true);
	if (!was) {
		st->why = why;
		fprintf(stderr, "loadgen: stream: %s\n", why);
	}
	/* Wakes a thread blocked in send or recv on this connection (oneway:
	   the reader on the other end sees EOF). */
	shutdown(st->fd, SHUT_RDWR);
}

static void stream_header(uint64_t k, unsigned char *h)
{
	h[0] = 'S';
	for (int i = 0; i < 8; i++)
		h[1 + i] = (unsigned char)(k >> (8 * i));
}

/* Does got[0..n) equal the stream from byte off on? */
static bool stream_check(uint64_t off, const unsigned char *got, size_t n)
{
	while (n > 0) {
		uint64_t k = off / o.size;
		uint32_t in = (uint32_t)(off % o.size);
		size_t len = o.size - in < n ? o.size - in : n;
		size_t done = 0;
		if (in < SHDR) {
			unsigned char h[SHDR];
			stream_header(k, h);
			done = SHDR - in < len ? SHDR - in : len;
			if (memcmp(got, h + in, done) != 0)
				return false;
		}
		if (memcmp(got + done, patterns[k % NPATTERNS] + in + done, len - done) != 0)
			return false;
		off += len;
		got += len;
		n -= len;
	}
	return true;
}

/* A blocking call timed out (SO_SNDTIMEO/SO_RCVTIMEO): past the deadline? */
static bool stream_timed_out(struct stream *st)
{
	if (now_ns() <= deadline_ns)
		return false;
	stream_fail(st, "timeout");
	return true;
}

static void *stream_sender(void *arg)
{
	struct stream *st = arg;
	double cpu0 = thread_cpu_seconds();
	while (st->sent < o.bytes && !atomic_load(&st->stop)) {
		uint64_t k = st->sent / o.size;
		uint32_t in = (uint32_t)(st->sent % o.size);
		uint64_t left = o.bytes - st->sent;
		uint32_t end = left < o.size - in ? in + (uint32_t)left : o.size;
		unsigned char h[SHDR];
		stream_header(k, h);
		struct iovec iov[2];
		int n = 0;
		if (in < SHDR)
			iov[n++] = (struct iovec){h + in, (end < SHDR ? end : SHDR) - in};
		if (end > SHDR) {
			uint32_t from = in > SHDR ? in : SHDR;
			iov[n++] = (struct iovec){patterns[k % NPATTERNS] + from, end - from};
		}
		ssize_t w = writev(st->fd, iov, n);
		if (w > 0) {
			st->sent += (uint64_t)w;
		} else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
			if (stream_timed_out(st))
				break;
		} else {
			stream_fail(st, w == 0 ? "write returned 0" : strerror(errno));
			break;
		}
	}
	st->cpu_tx = thread_cpu_seconds() - cpu0;
	return NULL;
}

/* The reader (the calling thread): until every byte is back and checked. */
static void stream_receiver(struct stream *st)
{
	unsigned char *buf = malloc(RBUF);
	double cpu0 = thread_cpu_seconds();
	if (!buf) {
		stream_fail(st, "malloc");
		return;
	}
	while (st->got < o.bytes && !atomic_load(&st->stop)) {
		uint64_t left = o.bytes - st->got;
		ssize_t r =
		    read(o.mode == M_ONEWAY ? st->echo_fd : st->fd, buf, left < RBUF ? left : RBUF);
		if (r > 0) {
			if (!stream_check(st->got, buf, (size_t)r)) {
				fprintf(stderr, "loadgen: bytes %llu..%llu back:\n",
				        (unsigned long long)st->got,
				        (unsigned long long)(st->got + (uint64_t)r));
				stream_fail(st, "echo differs from the stream sent");
				break;
			}
			st->got += (uint64_t)r;
		} else if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
			if (stream_timed_out(st))
				break;
		} else {
			stream_fail(st, r == 0 ? "EOF before the whole stream" : strerror(errno));
			break;
		}
	}
	st->t1 = now_ns();
	st->cpu_rx = thread_cpu_seconds() - cpu0;
	free(buf);
}

/* The ceiling's server: blocking recv, then send all of it, until EOF. */
static void *stream_echo(void *arg)
{
	struct stream *st = arg;
	unsigned char *buf = malloc(ECHOBUF);
	double cpu0 = thread_cpu_seconds();
	while (buf && !atomic_load(&st->stop)) {
		ssize_t r = recv(st->echo_fd, buf, ECHOBUF, 0);
		if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
			if (stream_timed_out(st))
				break;
			continue;
		}
		if (r <= 0)
			break; /* the client's reset at the end, or its failure */
		for (ssize_t off = 0; off < r && !atomic_load(&st->stop);) {
			ssize_t w = send(st->echo_fd, buf + off, (size_t)(r - off), 0);
			if (w > 0)
				off += w;
			else if (w < 0 && (errno == EAGAIN || errno == EINTR))
				stream_timed_out(st);
			else
				break;
		}
	}
	st->cpu_echo = thread_cpu_seconds() - cpu0;
	free(buf);
	return NULL;
}

/* Blocking, with 0.2 s timeouts so the deadline is looked at. */
static void stream_socket_opts(int fd)
{
	int one = 1;
	struct timeval tv = {.tv_usec = 200000};
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

static int mode_stream(void)
{
	struct stream st = {.fd = -1, .echo_fd = -1};
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o.port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int lfd = -1;
	bool local = o.mode == M_CEILING || o.mode == M_ONEWAY;
	if (local) { /* our own listener on a port of the kernel's choice */
		socklen_t len = sizeof(sa);
		sa.sin_port = 0;
		lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
		    listen(lfd, 1) < 0 || getsockname(lfd, (struct sockaddr *)&sa, &len) < 0) {
			perror("loadgen: ceiling listener");
			return 1;
		}
	}
	st.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (st.fd < 0 || connect(st.fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("loadgen: connect");
		return 1;
	}
	stream_socket_opts(st.fd);
	pthread_t echo, tx;
	bool echoing = false;
	if (local) {
		st.echo_fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		close(lfd);
		if (st.echo_fd < 0) {
			perror("loadgen: accept");
			return 1;
		}
		stream_socket_opts(st.echo_fd);
	}
	if (o.mode == M_CEILING) {
		echoing = pthread_create(&echo, NULL, stream_echo, &st) == 0;
		if (!echoing) {
			fprintf(stderr, "loadgen: cannot start the echo thread\n");
			return 1;
		}
	}
	st.t0 = now_ns();
	if (pthread_create(&tx, NULL, stream_sender, &st) != 0) {
		fprintf(stderr, "loadgen: cannot start the sender thread\n");
		stream_fail(&st, "no sender");
	} else {
		stream_receiver(&st);
		if (st.got < o.bytes)
			stream_fail(&st, "stopped early"); /* unblocks the sender */
		pthread_join(tx, NULL);
	}
	/* A reset, as elsewhere: it also ends the echo thread's recv. */
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	setsockopt(st.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(st.fd);
	if (echoing)
		pthread_join(echo, NULL);
	if (st.echo_fd >= 0)
		close(st.echo_fd);
	uint64_t err = st.why != NULL;
	double secs = (double)(st.t1 - st.t0) / 1e9;
	printf("result mode=%s size=%u bytes=%llu secs=%.4f mbps=%.2f cpu=%.2f",
	       o.mode == M_CEILING  ? "ceiling"
	       : o.mode == M_ONEWAY ? "oneway"
	                            : "stream",
	       o.size, (unsigned long long)st.got, secs, (double)st.got / secs / 1e6,
	       (st.cpu_tx + st.cpu_rx) / secs);
	if (o.mode == M_CEILING)
		printf(" server_cpu=%.2f", st.cpu_echo / secs);
	printf(" errors=%llu\n", (unsigned long long)err);
	return err ? 1 : 0;
}

/* ---- options ------------------------------------------------------------------- */

static void usage(void)
{
	fprintf(stderr, "usage: loadgen --port P --mode echo|conn|idle|push|stream [--conns N] "
	                "[--size B] [--rounds R] [--duration S] [--warmup S] [--inflight K] "
	                "[--procs P] [--pushes K] [--hold S] [--bytes B] [--timeout S] "
	                "[--src-ports L-H]\n"
	                "       loadgen --mode ceiling|oneway [--size B] [--bytes B] "
	                "[--timeout S]\n");
	exit(2);
}

static double num(const char *s, double max)
{
	char *end;
	double v = strtod(s, &end);
	if (*end || end == s || v < 0 || v > max)
		usage();
	return v;
}

static void parse(int argc, char **argv)
{
	o = (struct opts){.size = 64,
	                  .conns = 1,
	                  .inflight = 1000,
	                  .pushes = 5,
	                  .hold = 30,
	                  .bytes = 1ull << 30,
	                  .timeout = 60,
	                  .duration = 2,
	                  .src_lo = 10000,
	                  .src_hi = 32000,
	                  .mode = -1};
	for (int i = 1; i + 1 < argc; i += 2) {
		const char *k = argv[i], *v = argv[i + 1];
		if (!strcmp(k, "--port"))
			o.port = (int)num(v, 65535);
		else if (!strcmp(k, "--mode"))
			o.mode = !strcmp(v, "echo")      ? M_ECHO
			         : !strcmp(v, "conn")    ? M_CONN
			         : !strcmp(v, "idle")    ? M_IDLE
			         : !strcmp(v, "push")    ? M_PUSH
			         : !strcmp(v, "stream")  ? M_STREAM
			         : !strcmp(v, "ceiling") ? M_CEILING
			         : !strcmp(v, "oneway")  ? M_ONEWAY
			                                 : (enum mode) - 1;
		else if (!strcmp(k, "--conns"))
			o.conns = (uint32_t)num(v, 1e6);
		else if (!strcmp(k, "--size"))
			o.size = (uint32_t)num(v, MAXSIZE);
		else if (!strcmp(k, "--rounds"))
			o.rounds = (uint64_t)num(v, 1e12);
		else if (!strcmp(k, "--duration"))
			o.duration = num(v, 3600);
		else if (!strcmp(k, "--warmup"))
			o.warmup = num(v, 3600);
		else if (!strcmp(k, "--inflight"))
			o.inflight = (uint32_t)num(v, 1e6);
		else if (!strcmp(k, "--procs"))
			o.procs = (uint32_t)num(v, 64);
		else if (!strcmp(k, "--pushes"))
			o.pushes = (uint32_t)num(v, 1000);
		else if (!strcmp(k, "--hold"))
			o.hold = num(v, 86400);
		else if (!strcmp(k, "--bytes"))
			o.bytes = (uint64_t)num(v, 1e13);
		else if (!strcmp(k, "--timeout"))
			o.timeout = num(v, 86400);
		else if (!strcmp(k, "--src-ports")) {
			unsigned lo = 0, hi = 0;
			if (strcmp(v, "0") &&
			    (sscanf(v, "%u-%u", &lo, &hi) != 2 || !lo || hi < lo || hi > 65535))
				usage();
			o.src_lo = lo;
			o.src_hi = hi;
		} else
			usage();
	}
	if (argc % 2 == 0 || (!o.port && o.mode < M_CEILING) || (int)o.mode < 0 || !o.conns ||
	    !o.size || !o.inflight || !o.pushes || !o.bytes)
		usage();
	if ((o.mode == M_CONN || o.mode == M_IDLE || o.mode == M_PUSH) && !o.rounds)
		o.rounds = 1;
}

int main(int argc, char **argv)
{
	parse(argc, argv);
	signal(SIGPIPE, SIG_IGN);
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	make_patterns();
	deadline_ns = now_ns() + (uint64_t)(o.timeout * 1e9);
	if (o.mode == M_CONN || o.mode == M_IDLE)
		return mode_conns();
	if (o.mode >= M_STREAM)
		return mode_stream();
	setup_process(0, o.conns);
	int status = o.mode == M_ECHO ? mode_echo() : mode_push();
	close_all();
	return status;
}
