/* SPDX-License-Identifier: MIT */
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
 * then raises a flag and wakes the other watchers with proact_wakeup()
 * (util.c's shards do this for every server with a watcher per thread). No
 * handler, because proact_wakeup() is not async-signal-safe; and no thread
 * waits in sigwait(), because under valgrind a thread blocked in
 * io_uring_enter() keeps the other threads from running, so only a
 * completion on its own ring reliably wakes it. SIGUSR1 prints the
 * watchers' counters; they are printed at exit too.
 *
 * On Windows (the iocp backend) the program is the same; util.c differs:
 * there is no SO_REUSEPORT, so with --threads N the first watcher alone
 * accepts and hands the new sockets to the N watchers in turn; Ctrl-C,
 * Ctrl-Break or closing the console stops the server (a console handler
 * raises the flag and wakes the watchers); there is no SIGUSR1, so the
 * counters are printed at exit only.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proact.h"
#include "util.h" /* and the socket headers of the platform */

#define POOL_BUF_SIZE 16384 /* pool buffer size, and the length of a NULL-buffer read */
#define ACCEPTS       16    /* accepts pending per listener: a burst needs fewer rounds */
#define MAX_THREADS   64

/* Every live connection is on a list, to free them all at exit. */
struct link {
	struct link *prev, *next;
};

struct conn {
	struct link link; /* first: a struct link * of a conn is the conn */
	proact_socket fd;
	bool closing;        /* proact_free was called; wait for PROACT_OP_FREE */
	unsigned char buf[]; /* --buffer mode only */
};

/* One per thread: a watcher, its listener and its connections. */
struct server {
	struct ex_shard sh; /* first: the shard's address is the server's */
	size_t bufsize;     /* 0: NULL-buffer pool reads */
	struct link live;   /* list head */
	uint64_t accepted, bytes, resets, errors;
};

struct options {
	struct ex_server_options net;
	size_t bufsize;
	unsigned threads;
};

/* Shared by the threads: the open-connection count. */
static atomic_uint_fast64_t open_conns, peak_conns;
static struct server sv[MAX_THREADS]; /* large (the batches) */

static const char usage_text[] =
    "usage: echo_server [--host ADDR] [--port N] [--backend NAME] [--buffer BYTES] [--threads N]\n"
    "SIGINT or SIGTERM (Windows: Ctrl-C) stops it; SIGUSR1 (not on Windows) prints the\n"
    "counters, as does the exit.\n";

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

/* ---- requests ------------------------------------------------------------ */

static void conn_close(struct server *s, struct conn *c);

static void refused(void *arg, const struct proact_request *r, int err)
{
	struct server *s = arg;
	if (ex_shard_refused(&s->sh, r, err))
		return;
	struct conn *c = r->ctx;
	if (err != -EALREADY)
		s->errors++;
	conn_close(s, c);
}

static void queue(struct server *s, struct proact_request r)
{
	ex_batch_queue(&s->sh.reqs, r);
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
	if (ex_free_fd(s->sh.w, c->fd, c) == -ENOENT) /* its first read was refused */
		conn_release(c);
}

static void count_open(void)
{
	uint_fast64_t now = atomic_fetch_add(&open_conns, 1) + 1;
	uint_fast64_t peak = atomic_load(&peak_conns);
	while (now > peak && !atomic_compare_exchange_weak(&peak_conns, &peak, now))
		;
}

static void conn_open(struct ex_shard *sh, proact_socket fd)
{
	struct server *s = (struct server *)sh;
	struct conn *c = malloc(sizeof(*c) + s->bufsize);
	if (!c) {
		ex_close(fd);
		s->errors++;
		return;
	}
	*c = (struct conn){.fd = fd, .link = {.prev = &s->live, .next = s->live.next}};
	s->live.next->prev = &c->link;
	s->live.next = &c->link;
	s->accepted++;
	count_open();
	/* Echo is request/response: do not let Nagle hold back a short echo. */
	int one = 1; /* Winsock takes a char pointer, POSIX a void one */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, (const void *)&one, sizeof(one));
	queue_read(s, c);
}

/* ---- completions --------------------------------------------------------- */

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

static void on_completion(struct ex_shard *sh, const struct proact_completion *r)
{
	struct server *s = (struct server *)sh;
	struct conn *c = r->ctx;
	switch (r->op) {
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

/* ---- setup and exit ------------------------------------------------------ */

static int setup(struct server *s, const struct options *o)
{
	struct proact_options po = {.backend = o->net.backend, .pool_buffer_size = POOL_BUF_SIZE};
	/* With per-connection buffers the pool would only cost memory. */
	if (o->bufsize)
		po.pool_buffer_count = PROACT_POOL_NONE;
	s->bufsize = o->bufsize;
	s->live.next = s->live.prev = &s->live;
	return ex_shard_setup(&s->sh, &po, ACCEPTS, refused, s);
}

/* After shutdown nothing more is delivered, so the remaining connection
   states are freed here. */
static void teardown(struct server *s)
{
	ex_shard_close(&s->sh);
	while (s->live.next && s->live.next != &s->live)
		conn_release((struct conn *)s->live.next);
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
		failed |= sv[i].sh.failed;
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
	unsigned n = o.threads;
	struct ex_shard *shards[MAX_THREADS];
	for (unsigned i = 0; i < n; i++)
		shards[i] = &sv[i].sh;
	bool ok = ex_shards_open(shards, n, o.net.host, o.net.port, 65535) == 0;
	for (unsigned i = 0; ok && i < n; i++)
		ok = setup(&sv[i], &o) == 0;
	if (ok) {
		fprintf(stderr, "echo_server: backend %s, %s, %u thread%s\n",
		        proact_backend(sv[0].sh.w),
		        o.bufsize ? "per-connection buffers" : "NULL-buffer pool reads", n,
		        n == 1 ? "" : "s");
		ex_print_listening(sv[0].sh.lfd);
		static const struct ex_shard_ops ops = {.accepted = conn_open,
		                                        .completion = on_completion};
		ok = ex_shards_run(shards, n, &ops);
		ok = report(n) && ok;
	}
	for (unsigned i = 0; i < n; i++)
		teardown(&sv[i]);
	return ok ? 0 : 1;
}
