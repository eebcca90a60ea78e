/* SPDX-License-Identifier: MIT */
/*
 * echo_load - a load client for echo_server (or any echo server).
 *
 *   echo_load --port N [--host ADDR] [--conns N] [--msgs M] [--size BYTES]
 *             [--seconds LIMIT] [--seed S]
 *   echo_load --port N --idle N [--hold-seconds S]
 *
 * Each connection sends a message of pseudo-random bytes (a function of the
 * seed, the connection and the message number), waits for the whole echo,
 * checks every byte, and repeats --msgs times. One thread drives all
 * connections with edge-triggered epoll and non-blocking sockets, so the
 * client is not the bottleneck of a small demo. Exits nonzero on any error,
 * mismatch or timeout.
 *
 * --idle N only opens N connections, prints "idle: N connections open" once
 * all are connected, and holds them for --hold-seconds (or until SIGINT or
 * SIGTERM): the server's memory per idle connection can be measured then.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef PROACT_PROG_HAVE_EPOLL
#include <sys/epoll.h>
#else
#include <sys/event.h>
#endif
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

#define MAX_EVENTS     1024
#define CONNECT_WINDOW 256 /* handshakes in flight: keeps the server's accept queue short */
#define SCRATCH_SIZE   65536
#define MAX_REPORTS    5 /* errors printed in full; the rest are only counted */
#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0 /* SIGPIPE is ignored (main) */
#endif

enum state { IDLE, CONNECTING, RUNNING, FINISHED };

struct conn {
	int fd;
	uint32_t id;
	uint32_t msg; /* messages completed */
	uint8_t state;
	size_t sent, recvd; /* of the current message */
	uint8_t *tx;        /* the current message */
};

struct options {
	const char *host, *port;
	uint32_t conns, msgs;
	size_t size;
	unsigned long seconds, hold_seconds;
	uint64_t seed;
	uint32_t idle_conns; /* --idle N: replaces --conns, whatever the order */
	bool idle;
};

struct load {
	struct options o;
	int ep;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	struct conn *conns;
	uint32_t next;       /* next connection to open */
	uint32_t connecting; /* handshakes in flight */
	uint32_t connected;  /* handshakes done */
	uint32_t finished;   /* done or failed */
	uint64_t msgs, bytes, errors;
	uint8_t scratch[SCRATCH_SIZE];
};

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static const char usage_text[] =
    "usage: echo_load --port N [--host ADDR] [--conns N] [--msgs M] [--size BYTES]\n"
    "                 [--seconds LIMIT] [--seed S]\n"
    "       echo_load --port N --idle N [--hold-seconds S]\n";

static bool take_option(void *arg, const char *a, const char *v)
{
	struct options *o = arg;
	if (!strcmp(a, "--host"))
		o->host = v;
	else if (!strcmp(a, "--port") && ex_parse_num(v, 1, 65535))
		o->port = v;
	else if (!strcmp(a, "--conns"))
		o->conns = (uint32_t)ex_parse_num(v, 1, 1u << 24);
	else if (!strcmp(a, "--msgs"))
		o->msgs = (uint32_t)ex_parse_num(v, 1, UINT32_MAX);
	else if (!strcmp(a, "--size"))
		o->size = (size_t)ex_parse_num(v, 1, 1u << 30);
	else if (!strcmp(a, "--seconds"))
		o->seconds = (unsigned long)ex_parse_num(v, 1, 86400);
	else if (!strcmp(a, "--seed"))
		o->seed = ex_parse_num(v, 0, UINT64_MAX);
	else if (!strcmp(a, "--idle"))
		o->idle_conns = (uint32_t)ex_parse_num(v, 1, 1u << 24);
	else if (!strcmp(a, "--hold-seconds"))
		o->hold_seconds = (unsigned long)ex_parse_num(v, 0, 86400);
	else
		return false;
	return true;
}

static void parse_args(int argc, char **argv, struct options *o)
{
	*o = (struct options){.host = "127.0.0.1",
	                      .conns = 1000,
	                      .msgs = 100,
	                      .size = 1024,
	                      .seconds = 30,
	                      .hold_seconds = 30,
	                      .seed = 1};
	ex_parse_options(argc, argv, take_option, o);
	if (!o->port)
		ex_usage();
	if (o->idle_conns) {
		o->idle = true;
		o->conns = o->idle_conns;
	}
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int resolve(struct load *l)
{
	int rc = ex_resolve(l->o.host, l->o.port, 0, &l->addr, &l->addrlen);
	if (rc != 0) {
		fprintf(stderr, "echo_load: %s: %s\n", l->o.host, gai_strerror(rc));
		return -1;
	}
	return 0;
}

/* ---- messages: reproducible from (seed, connection, message) ---------------- */

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void fill_message(const struct load *l, struct conn *c)
{
	uint64_t x = l->o.seed ^ ((uint64_t)c->id << 32) ^ c->msg;
	for (size_t i = 0; i < l->o.size; i += 8) {
		uint64_t r = splitmix64(&x);
		size_t n = l->o.size - i < 8 ? l->o.size - i : 8;
		memcpy(c->tx + i, &r, n);
	}
}

/* ---- connections ---------------------------------------------------------- */

static void conn_finish(struct load *l, struct conn *c)
{
	if (c->state == CONNECTING)
		l->connecting--;
	close(c->fd); /* also leaves the epoll set */
	c->fd = -1;
	c->state = FINISHED;
	free(c->tx);
	c->tx = NULL;
	l->finished++;
}

static void conn_fail(struct load *l, struct conn *c, const char *what, int err)
{
	if (l->errors++ < MAX_REPORTS)
		fprintf(stderr, "echo_load: connection %u, message %u: %s: %s\n", c->id, c->msg,
		        what, strerror(err));
	conn_finish(l, c);
}

static void conn_mismatch(struct load *l, struct conn *c, size_t off, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (l->scratch[i] == c->tx[off + i])
			continue;
		fprintf(stderr,
		        "echo_load: MISMATCH connection %u, message %u, byte %zu: sent 0x%02x, "
		        "got 0x%02x\n",
		        c->id, c->msg, off + i, c->tx[off + i], l->scratch[i]);
		break;
	}
	l->errors++;
	conn_finish(l, c);
}

/* Sends until done or EAGAIN (edge-triggered: an EPOLLOUT edge follows). */
static bool send_some(struct load *l, struct conn *c)
{
	while (c->sent < l->o.size) {
		ssize_t n = send(c->fd, c->tx + c->sent, l->o.size - c->sent, MSG_NOSIGNAL);
		if (n > 0)
			c->sent += (size_t)n;
		else if (errno == EAGAIN)
			return true;
		else if (errno != EINTR)
			break;
	}
	if (c->sent == l->o.size)
		return true;
	conn_fail(l, c, "send", errno);
	return false;
}

/* Receives and checks until the echo is whole (1), EAGAIN (0) or failure (-1). */
static int recv_some(struct load *l, struct conn *c)
{
	while (c->recvd < l->o.size) {
		size_t want = l->o.size - c->recvd;
		ssize_t n = recv(c->fd, l->scratch, want < SCRATCH_SIZE ? want : SCRATCH_SIZE, 0);
		if (n > 0) {
			if (memcmp(l->scratch, c->tx + c->recvd, (size_t)n) != 0) {
				conn_mismatch(l, c, c->recvd, (size_t)n);
				return -1;
			}
			c->recvd += (size_t)n;
		} else if (n == 0) {
			conn_fail(l, c, "server closed the connection", EPIPE);
			return -1;
		} else if (errno == EAGAIN) {
			return 0;
		} else if (errno != EINTR) {
			conn_fail(l, c, "recv", errno);
			return -1;
		}
	}
	return 1;
}

/* Counts the finished echo; false when the connection has done all of them. */
static bool next_message(struct load *l, struct conn *c)
{
	l->msgs++;
	l->bytes += l->o.size;
	if (++c->msg == l->o.msgs) {
		conn_finish(l, c);
		return false;
	}
	c->sent = c->recvd = 0;
	fill_message(l, c);
	return true;
}

/* Moves the connection as far as the socket allows without blocking. */
static void pump(struct load *l, struct conn *c)
{
	while (send_some(l, c) && recv_some(l, c) == 1 && next_message(l, c))
		;
}

static void conn_connected(struct load *l, struct conn *c)
{
	l->connected++;
	if (l->o.idle) {
		c->state = IDLE;
		return;
	}
	c->tx = malloc(l->o.size);
	if (!c->tx) {
		conn_fail(l, c, "malloc", ENOMEM);
		return;
	}
	c->state = RUNNING;
	fill_message(l, c);
	pump(l, c);
}

/* The connections' readiness: edge-triggered epoll, else kqueue with
   EV_CLEAR (one event per filter; on_event() tries both directions). */
#ifdef PROACT_PROG_HAVE_EPOLL
typedef struct epoll_event poller_event;
#define POLLER_PTR(e) ((e).data.ptr)

static int poller_open(void)
{
	return epoll_create1(EPOLL_CLOEXEC);
}

static int poller_add(int ep, int fd, void *ptr)
{
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = ptr};
	return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

static int poller_wait(int ep, poller_event *ev, int max, int timeout_ms)
{
	return epoll_wait(ep, ev, max, timeout_ms);
}
#else
typedef struct kevent poller_event;
#define POLLER_PTR(e) ((e).udata)

static int poller_open(void)
{
	int kq = kqueue();
	if (kq >= 0)
		(void)fcntl(kq, F_SETFD, FD_CLOEXEC);
	return kq;
}

static int poller_add(int kq, int fd, void *ptr)
{
	struct kevent ev[2];
	EV_SET(&ev[0], (uintptr_t)fd, EVFILT_READ, EV_ADD | EV_CLEAR, 0, 0, ptr);
	EV_SET(&ev[1], (uintptr_t)fd, EVFILT_WRITE, EV_ADD | EV_CLEAR, 0, 0, ptr);
	return kevent(kq, ev, 2, NULL, 0, NULL);
}

static int poller_wait(int kq, poller_event *ev, int max, int timeout_ms)
{
	struct timespec ts = {.tv_sec = timeout_ms / 1000,
	                      .tv_nsec = (timeout_ms % 1000) * 1000000L};
	return kevent(kq, NULL, 0, ev, max, &ts);
}
#endif

static void conn_open(struct load *l, struct conn *c)
{
	int one = 1;
	c->fd = ex_socket(l->addr.ss_family, SOCK_STREAM);
	if (c->fd < 0) {
		c->state = CONNECTING; /* so that the failure is counted in one place */
		l->connecting++;
		conn_fail(l, c, "socket", errno);
		return;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->state = CONNECTING;
	l->connecting++;
	int rc = connect(c->fd, (struct sockaddr *)&l->addr, l->addrlen);
	if (rc < 0 && errno != EINPROGRESS) {
		conn_fail(l, c, "connect", errno);
		return;
	}
	/* Registered after connect(): an edge for the finished handshake comes
	   either way, from the ADD itself if it is already done. */
	if (poller_add(l->ep, c->fd, c) < 0)
		conn_fail(l, c, "poller add", errno);
}

static void open_more(struct load *l)
{
	while (l->connecting < CONNECT_WINDOW && l->next < l->o.conns) {
		struct conn *c = &l->conns[l->next];
		*c = (struct conn){.id = l->next};
		l->next++;
		conn_open(l, c);
	}
}

static void on_event(struct load *l, struct conn *c)
{
	if (c->state == CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err) {
			conn_fail(l, c, "connect", err);
			return;
		}
		l->connecting--;
		conn_connected(l, c);
	} else if (c->state == RUNNING) {
		pump(l, c);
	}
	/* IDLE: nothing to do until the hold ends. */
}

/* ---- the loop --------------------------------------------------------------- */

/* Runs until every connection is done (idle: connected) or the limit passes. */
static bool run(struct load *l, double deadline)
{
	poller_event ev[MAX_EVENTS];
	for (;;) {
		open_more(l);
		/* Idle: a connection is settled once connected (or failed). */
		uint32_t settled = l->finished + (l->o.idle ? l->connected : 0);
		if (settled >= l->o.conns)
			return true;
		double left = deadline - now_s();
		if (left <= 0 || stop_requested)
			return false;
		int n =
		    poller_wait(l->ep, ev, MAX_EVENTS, left > 1 ? 1000 : (int)(left * 1000) + 1);
		if (n < 0 && errno != EINTR) {
			perror("echo_load: wait");
			return false;
		}
		for (int i = 0; i < n; i++)
			on_event(l, POLLER_PTR(ev[i]));
	}
}

static void hold(const struct load *l)
{
	printf("echo_load: idle: %u connections open\n", l->connected);
	fflush(stdout);
	struct timespec ts = {.tv_sec = (time_t)l->o.hold_seconds};
	/* A stop signal interrupts the sleep (no SA_RESTART): end the hold early. */
	while (!stop_requested && nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void report(const struct load *l, double elapsed, bool completed)
{
	double mb = (double)l->bytes / 1e6;
	printf("echo_load: %u connections, %" PRIu64 " messages, %" PRIu64
	       " bytes verified, %" PRIu64 " errors, %.3f s, %.1f MB/s, %.0f msgs/s%s\n",
	       l->o.conns, l->msgs, l->bytes, l->errors, elapsed, mb / elapsed,
	       (double)l->msgs / elapsed, completed ? "" : " (TIMEOUT or interrupted)");
	fflush(stdout);
}

static void install_signals(void)
{
	struct sigaction sa = {.sa_handler = on_stop_signal}; /* no SA_RESTART */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

int main(int argc, char **argv)
{
	static struct load l; /* the scratch buffer is large */
	ex_init("echo_load", usage_text);
	parse_args(argc, argv, &l.o);
	ex_raise_fd_limit();
	install_signals();
	l.conns = calloc(l.o.conns, sizeof(*l.conns));
	l.ep = poller_open();
	if (!l.conns || l.ep < 0 || resolve(&l) < 0) {
		perror("echo_load: setup");
		return 1;
	}
	double start = now_s();
	bool completed = run(&l, start + (double)l.o.seconds);
	double elapsed = now_s() - start;
	if (l.o.idle && completed && l.errors == 0)
		hold(&l);
	for (uint32_t i = 0; i < l.next; i++)
		if (l.conns[i].state != FINISHED)
			conn_finish(&l, &l.conns[i]);
	if (l.o.idle)
		printf("echo_load: idle: %u of %u connected in %.3f s, %" PRIu64 " errors%s\n",
		       l.connected, l.o.conns, elapsed, l.errors, completed ? "" : " (TIMEOUT)");
	else
		report(&l, elapsed, completed);
	free(l.conns);
	close(l.ep);
	return completed && l.errors == 0 ? 0 : 1;
}
