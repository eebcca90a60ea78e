/*
 * echo_server - gaio's echo server, in C on proact.
 *
 *   echo_server [--host ADDR] [--port N] [--backend NAME] [--buffer BYTES]
 *               [--threads N]
 *
 * Every connection carries one request at a time: a read, then a write of
 * exactly the bytes read, then the next read. With the default NULL-buffer
 * reads the data lands in a pool buffer only once it has arrived, and that
 * same pool buffer is written back (zero copy): an idle connection costs a
 * small struct and no read buffer. --buffer N gives each connection its own
 * N-byte buffer instead, for comparison.
 *
 * Accepting is one more request: a few proact_accept() calls stay pending on
 * the listener, and each completion brings a new socket and is resubmitted.
 * Out of descriptors, proact pauses the listener by itself, so the loop
 * needs no timer and proact_wait() blocks with no timeout.
 *
 * --threads N runs N watchers, one per thread (the main thread runs the
 * first), each with its own listener on the same port (SO_REUSEPORT: the
 * kernel spreads new connections over them). Nothing is shared between the
 * threads but the totals.
 *
 * SIGINT and SIGTERM are blocked in every thread and read through a
 * signalfd, one more descriptor with a read pending on the first watcher: a
 * signal completes that read like any other request, and the main thread
 * then raises a flag and wakes the other watchers with proact_wakeup(). No
 * handler, because proact_wakeup() is not async-signal-safe; and no thread
 * waits in sigwait(), because under valgrind a thread blocked in
 * io_uring_enter() keeps the other threads from running, so only a
 * completion on its own ring reliably wakes it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proact.h"
#include "util.h"

#define BATCH         256   /* completions per proact_wait */
#define POOL_BUF_SIZE 16384 /* pool buffer size, and the length of a NULL-buffer read */
#define ACCEPTS       16    /* accepts pending per listener: a burst needs fewer rounds */
#define MAX_THREADS   64
#define NSIGINFO      4 /* signals taken per signalfd read */

/* Every live connection is on a list, to free them all at exit. */
struct link {
	struct link *prev, *next;
};

struct conn {
	struct link link; /* first: a struct link * of a conn is the conn */
	int fd;
	bool closing;        /* proact_free was called; wait for PROACT_OP_FREE */
	unsigned char buf[]; /* --buffer mode only */
};

/* One per thread: a watcher, its listener and its connections. */
struct server {
	proact_watcher *w;
	int lfd;
	bool lfd_registered; /* the watcher owns (and closes) the listener */
	bool failed;
	size_t bufsize; /* 0: NULL-buffer pool reads */
	int sfd;        /* the first server only: the signalfd, else -1 */
	bool sfd_registered;
	ex_siginfo sig[NSIGINFO];
	struct link live;     /* list head */
	struct ex_batch reqs; /* one proact_submit per loop round */
	pthread_t thread;
	uint64_t accepted, bytes, resets, errors;
};

struct options {
	struct ex_server_options net;
	size_t bufsize;
	unsigned threads;
};

/* Shared by the threads: the stop flag and the open-connection count. */
static atomic_bool stopping;
static atomic_uint_fast64_t open_conns, peak_conns;
static struct server sv[MAX_THREADS]; /* large (the batches) */
static unsigned nservers;

static const char usage_text[] = "usage: echo_server [--host ADDR] [--port N] [--backend NAME] "
                                 "[--buffer BYTES] [--threads N]\n";

static bool take_option(void *arg, const char *name, const char *v)
{
	struct options *o = arg;
	if (!strcmp(name, "--buffer"))
		o->bufsize = (size_t)ex_parse_num(v, 0, 1ul << 30);
	else if (!strcmp(name, "--threads"))
		o->threads = (unsigned)ex_parse_num(v, 0, MAX_THREADS);
	else
		return ex_server_option(&o->net, "--port", name, v);
	return true;
}

static void parse_args(int argc, char **argv, struct options *o)
{
	*o = (struct options){.net = {.host = "127.0.0.1", .port = "0"}, .threads = 1};
	ex_parse_options(argc, argv, take_option, o);
	if (o->threads == 0)
		ex_usage();
}

/* Opens one listener per server, all with SO_REUSEPORT so that every thread
   has its own on the same port. With port 0 the first one gets a port from
   the kernel and the others bind to that same port. */
static int open_listeners(unsigned n, const char *host, const char *port)
{
	sv[0].lfd = ex_open_listener(host, port, 65535, true);
	if (sv[0].lfd < 0)
		return -1;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (getsockname(sv[0].lfd, (struct sockaddr *)&ss, &len) < 0)
		return -1;
	for (unsigned i = 1; i < n; i++) {
		sv[i].lfd = ex_listen((struct sockaddr *)&ss, len, 65535, true);
		if (sv[i].lfd < 0)
			return -1;
	}
	return 0;
}

/* ---- requests ------------------------------------------------------------ */

static void conn_close(struct server *s, struct conn *c);

/* A listener that cannot take accepts any more ends the whole server. */
static void fatal(struct server *s, const char *what, int err)
{
	fprintf(stderr, "echo_server: %s: %s\n", what, proact_strerror(err));
	s->failed = true;
	kill(getpid(), SIGTERM); /* the signalfd read stops everyone */
}

static void refused(void *arg, const struct proact_request *r, int err)
{
	struct server *s = arg;
	if (r->op == PROACT_OP_ACCEPT || r->ctx == s->sig) {
		fatal(s, r->op == PROACT_OP_ACCEPT ? "proact_accept" : "signalfd read", err);
		atomic_store(&stopping, true); /* in case it was the signal read */
		return;
	}
	struct conn *c = r->ctx;
	if (err != -EALREADY)
		s->errors++;
	conn_close(s, c);
}

static void queue(struct server *s, struct proact_request r)
{
	ex_batch_queue(&s->reqs, r);
}

static void queue_read(struct server *s, struct conn *c)
{
	if (s->bufsize)
		queue(s, (struct proact_request){.fd = c->fd,
		                                 .op = PROACT_OP_READ,
		                                 .buf = c->buf,
		                                 .len = s->bufsize,
		                                 .ctx = c});
	else
		queue(s, (struct proact_request){
		             .fd = c->fd, .op = PROACT_OP_READ, .len = POOL_BUF_SIZE, .ctx = c});
}

static void queue_accept(struct server *s)
{
	queue(s, (struct proact_request){.fd = s->lfd, .op = PROACT_OP_ACCEPT});
}

/* ---- connections --------------------------------------------------------- */

static void conn_release(struct conn *c)
{
	c->link.prev->next = c->link.next;
	c->link.next->prev = c->link.prev;
	atomic_fetch_sub(&open_conns, 1);
	free(c);
}

/* Hands the fd to proact_free; the state goes when PROACT_OP_FREE arrives. */
static void conn_close(struct server *s, struct conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	if (ex_free_fd(s->w, c->fd, c) == -ENOENT) /* its first read was refused */
		conn_release(c);
}

static void count_open(void)
{
	uint_fast64_t now = atomic_fetch_add(&open_conns, 1) + 1;
	uint_fast64_t peak = atomic_load(&peak_conns);
	while (now > peak && !atomic_compare_exchange_weak(&peak_conns, &peak, now))
		;
}

static void conn_open(struct server *s, int fd)
{
	struct conn *c = malloc(sizeof(*c) + s->bufsize);
	if (!c) {
		close(fd);
		s->errors++;
		return;
	}
	*c = (struct conn){.fd = fd, .link = {.prev = &s->live, .next = s->live.next}};
	s->live.next->prev = &c->link;
	s->live.next = &c->link;
	s->accepted++;
	count_open();
	/* Echo is request/response: do not let Nagle hold back a short echo. */
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	queue_read(s, c);
}

/* ---- completions --------------------------------------------------------- */

static void on_accept(struct server *s, const struct proact_completion *r)
{
	if (r->error == ECANCELED)
		return;
	if (r->error == 0) {
		conn_open(s, r->newfd);
	} else if (!ex_accept_transient(r->error)) {
		fatal(s, "accept", r->error);
		return;
	}
	queue_accept(s);
}

static void on_read(struct server *s, struct conn *c, const struct proact_completion *r)
{
	if (r->error || r->size == 0) { /* EOF, reset, or cancelled by a close */
		ex_count_failure(r->error, &s->resets, &s->errors);
		conn_close(s, c);
		return;
	}
	/* Write back the very buffer the data arrived in: a pool buffer stays
	   valid until this write completes. */
	queue(s, (struct proact_request){
	             .fd = c->fd, .op = PROACT_OP_WRITE, .buf = r->buf, .len = r->size, .ctx = c});
}

static void on_write(struct server *s, struct conn *c, const struct proact_completion *r)
{
	s->bytes += r->size;
	if (r->error) {
		ex_count_failure(r->error, &s->resets, &s->errors);
		conn_close(s, c);
		return;
	}
	queue_read(s, c);
}

/* SIGINT or SIGTERM (the first server only): stop every thread. */
static void on_signal(struct server *s, const struct proact_completion *r)
{
	if (r->error)
		fatal(s, "signalfd", r->error);
	atomic_store(&stopping, true);
	for (unsigned i = 1; i < nservers; i++)
		proact_wakeup(sv[i].w);
}

static void on_completion(struct server *s, const struct proact_completion *r)
{
	if (r->ctx == s->sig) {
		on_signal(s, r);
		return;
	}
	struct conn *c = r->ctx;
	switch (r->op) {
	case PROACT_OP_ACCEPT:
		on_accept(s, r);
		break;
	case PROACT_OP_READ:
		on_read(s, c, r);
		break;
	case PROACT_OP_WRITE:
		on_write(s, c, r);
		break;
	case PROACT_OP_FREE:
		conn_release(c);
		break;
	default:
		break;
	}
}

static void *run(void *arg)
{
	struct server *s = arg;
	struct proact_completion comp[BATCH];
	while (!atomic_load(&stopping)) {
		int n = proact_wait(s->w, comp, BATCH, -1);
		if (n == -EINTR)
			continue;
		if (n < 0) {
			fatal(s, "proact_wait", n);
			break;
		}
		for (int i = 0; i < n; i++)
			on_completion(s, &comp[i]);
		/* Before the next wait: that call releases the pool buffers the
		   queued writes refer to, unless they are submitted by then. */
		ex_batch_flush(&s->reqs);
	}
	return NULL;
}

/* ---- setup and exit ------------------------------------------------------ */

static int setup(struct server *s, const struct options *o)
{
	struct proact_options po = {.backend = o->net.backend, .pool_buffer_size = POOL_BUF_SIZE};
	/* With per-connection buffers the pool would only cost memory. */
	if (o->bufsize)
		po.pool_buffer_count = PROACT_POOL_NONE;
	s->bufsize = o->bufsize;
	s->live.next = s->live.prev = &s->live;
	int rc = proact_watcher_new(&s->w, &po);
	if (rc < 0) {
		fprintf(stderr, "echo_server: proact_watcher_new: %s\n", proact_strerror(rc));
		return -1;
	}
	s->reqs = (struct ex_batch){.w = s->w, .refused = refused, .ctx = s};
	if (ex_accept_first(s->w, s->lfd) < 0)
		return -1;
	s->lfd_registered = true;
	for (int i = 1; i < ACCEPTS; i++)
		queue_accept(s);
	if (s->sfd >= 0)
		queue(s, ex_signal_read(s->sfd, s->sig, sizeof(s->sig)));
	ex_batch_flush(&s->reqs);
	s->sfd_registered = s->sfd >= 0 && !s->failed;
	return s->failed ? -1 : 0;
}

/* After shutdown nothing more is delivered, so the remaining connection
   states are freed here. */
static void teardown(struct server *s)
{
	proact_watcher_destroy(s->w);
	while (s->live.next && s->live.next != &s->live)
		conn_release((struct conn *)s->live.next);
	if (!s->lfd_registered && s->lfd >= 0)
		close(s->lfd);
	if (!s->sfd_registered && s->sfd >= 0)
		close(s->sfd);
}

/* Servers 1..n-1 get a thread each; returns how many threads started. */
static unsigned start_threads(unsigned n)
{
	for (unsigned i = 1; i < n; i++) {
		if (pthread_create(&sv[i].thread, NULL, run, &sv[i]) != 0) {
			fprintf(stderr, "echo_server: pthread_create failed\n");
			return i - 1;
		}
	}
	return n - 1;
}

static void join_threads(unsigned started)
{
	atomic_store(&stopping, true);
	for (unsigned i = 1; i <= started; i++)
		proact_wakeup(sv[i].w);
	for (unsigned i = 1; i <= started; i++)
		pthread_join(sv[i].thread, NULL);
}

static bool report(unsigned n)
{
	uint64_t accepted = 0, bytes = 0, resets = 0, errors = 0;
	bool failed = false;
	for (unsigned i = 0; i < n; i++) {
		accepted += sv[i].accepted;
		bytes += sv[i].bytes;
		resets += sv[i].resets;
		errors += sv[i].errors;
		failed |= sv[i].failed;
	}
	printf("echo_server: accepted %" PRIu64 " connections, echoed %" PRIu64
	       " bytes, peak %" PRIu64 " open, %" PRIu64 " resets, %" PRIu64 " errors\n",
	       accepted, bytes, (uint64_t)atomic_load(&peak_conns), resets, errors);
	fflush(stdout);
	return !failed;
}

int main(int argc, char **argv)
{
	struct options o;
	ex_init("echo_server", usage_text);
	parse_args(argc, argv, &o);
	ex_raise_fd_limit();
	nservers = o.threads;
	for (unsigned i = 0; i < nservers; i++)
		sv[i].lfd = sv[i].sfd = -1;
	sv[0].sfd = ex_open_signalfd();
	if (sv[0].sfd < 0) {
		perror("echo_server: signalfd");
		return 1;
	}
	bool ok = open_listeners(nservers, o.net.host, o.net.port) == 0;
	for (unsigned i = 0; ok && i < nservers; i++)
		ok = setup(&sv[i], &o) == 0;
	if (ok) {
		fprintf(stderr, "echo_server: backend %s, %s, %u thread%s\n",
		        proact_backend(sv[0].w),
		        o.bufsize ? "per-connection buffers" : "NULL-buffer pool reads", nservers,
		        nservers == 1 ? "" : "s");
		ex_print_listening(sv[0].lfd);
		unsigned started = start_threads(nservers);
		if (started == nservers - 1)
			run(&sv[0]); /* until SIGINT or SIGTERM */
		join_threads(started);
		ok = report(nservers) && started == nservers - 1;
	}
	for (unsigned i = 0; i < nservers; i++)
		teardown(&sv[i]);
	return ok ? 0 : 1;
}
