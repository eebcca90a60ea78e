/* SPDX-License-Identifier: MIT */
/*
 * proxy - a TCP proxy on proact, with back-pressure.
 *
 *   proxy --listen PORT [--host ADDR] --to HOST:PORT [--backend NAME]
 *         [--connect-timeout MS]
 *
 * For each accepted client the proxy connects a new socket to the upstream
 * (proact_connect with a deadline, default 5 s), then pumps both directions
 * at once. A direction is a loop of two requests: a NULL-buffer read of the
 * source, then a write of that very pool buffer to the destination (zero
 * copy), and only once the write completed the next read. So a destination
 * that reads slowly stops the reads of its source, the source's data stays
 * in the kernel, TCP flow control slows the sender down, and the proxy holds
 * at most one pool buffer per direction whatever the speed difference:
 * memory stays flat (gaio's "transfer data from a faster source A to a
 * slower destination B").
 *
 * When a source reaches end of stream, the destination gets
 * proact_shutdown_write() behind the last write, so half-closed connections
 * work (the other direction carries on). When both directions have ended,
 * or on any error, both sockets are handed to proact_free(); the pair's
 * state is released when the last PROACT_OP_FREE completion arrives.
 *
 * SIGINT and SIGTERM come through a signalfd with a read pending on the
 * watcher, so one thread does everything and never polls; on exit the proxy
 * prints one summary line.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proact.h"
#include "util.h"

#define BATCH      128 /* completions per proact_wait */
#define ACCEPTS    8   /* accepts pending on the listener */
#define NSIGINFO   4   /* signals taken per signalfd read */
#define CONNECT_MS 5000

struct pair;

/* One direction of a pair: from one socket to the other. */
struct dir {
	struct pair *p;
	int from, to;
	bool done; /* the source ended and the destination's shutdown completed */
};

/* A client and its upstream connection. */
struct pair {
	struct dir d[2]; /* d[0]: client to upstream, d[1]: upstream to client */
	int cfd, ufd;
	int frees;    /* PROACT_OP_FREE completions still to come */
	bool closing; /* proact_free was called on both */
	struct pair *prev, *next;
};

struct proxy {
	proact_watcher *w;
	int lfd, sfd;
	bool lfd_registered, sfd_registered; /* the watcher owns (and closes) them */
	bool stop, failed;
	struct sockaddr_storage up; /* the upstream address */
	socklen_t uplen;
	uint64_t connect_ms;
	ex_siginfo sig[NSIGINFO];
	struct pair live; /* list head: every pair not yet released */
	uint64_t accepted, bytes[2], failed_connects, resets, errors;
};

struct options {
	struct ex_server_options net;
	const char *to;
	unsigned long connect_ms;
};

static const char usage_text[] = "usage: proxy --listen PORT [--host ADDR] --to HOST:PORT "
                                 "[--backend NAME] [--connect-timeout MS]\n";

static bool take_option(void *arg, const char *name, const char *v)
{
	struct options *o = arg;
	if (!strcmp(name, "--to"))
		o->to = v;
	else if (!strcmp(name, "--connect-timeout"))
		o->connect_ms = (unsigned long)ex_parse_num(v, 1, 3600000);
	else
		return ex_server_option(&o->net, "--listen", name, v);
	return true;
}

static void parse_args(int argc, char **argv, struct options *o)
{
	*o = (struct options){.net = {.host = "127.0.0.1"}, .connect_ms = CONNECT_MS};
	ex_parse_options(argc, argv, take_option, o);
	if (!o->net.port || !o->to)
		ex_usage();
}

/* "HOST:PORT" or "[V6]:PORT" to an address; 0 or -1. */
static int resolve_to(const char *to, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[256];
	const char *colon = strrchr(to, ':');
	size_t n = colon ? (size_t)(colon - to) : 0;
	if (!colon || n == 0 || n >= sizeof(host))
		return -1;
	memcpy(host, to, n);
	host[n] = 0;
	if (host[0] == '[' && host[n - 1] == ']') { /* [::1]:80 */
		memmove(host, host + 1, n - 2);
		host[n - 2] = 0;
	}
	int rc = ex_resolve(host, colon + 1, 0, ss, len);
	if (rc != 0) {
		fprintf(stderr, "proxy: %s: %s\n", to, gai_strerror(rc));
		return -1;
	}
	return 0;
}

/* ---- pairs ------------------------------------------------------------- */

static void pair_release(struct pair *p)
{
	p->prev->next = p->next;
	p->next->prev = p->prev;
	free(p);
}

/* Ends the pair: pending requests complete with ECANCELED, then come the
   FREE completions, and the last of those releases the state. */
static void pair_close(struct proxy *x, struct pair *p)
{
	if (p->closing)
		return;
	p->closing = true;
	/* A side that gets no FREE completion (never registered, or the free
	   failed) is done with now. */
	p->frees = (ex_free_fd(x->w, p->cfd, p) == 0) + (ex_free_fd(x->w, p->ufd, p) == 0);
	if (p->frees == 0)
		pair_release(p);
}

/* A reset or broken pipe is the peers' doing; anything else is an error. */
static void pair_fail(struct proxy *x, struct pair *p, int err)
{
	if (err == ECONNRESET || err == EPIPE)
		x->resets++;
	else
		x->errors++;
	pair_close(x, p);
}

/* A refused submission: the pair cannot go on. */
static void check(struct proxy *x, struct pair *p, int rc, const char *what)
{
	if (rc >= 0)
		return;
	fprintf(stderr, "proxy: %s: %s\n", what, proact_strerror(rc));
	x->errors++;
	pair_close(x, p);
}

static void nodelay(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void pair_open(struct proxy *x, int cfd)
{
	struct pair *p = calloc(1, sizeof(*p));
	int ufd = ex_socket(x->up.ss_family, SOCK_STREAM);
	if (!p || ufd < 0) {
		free(p);
		close(cfd);
		if (ufd >= 0)
			close(ufd);
		x->errors++;
		return;
	}
	x->accepted++;
	p->cfd = cfd;
	p->ufd = ufd;
	p->d[0] = (struct dir){.p = p, .from = cfd, .to = ufd};
	p->d[1] = (struct dir){.p = p, .from = ufd, .to = cfd};
	p->prev = &x->live;
	p->next = x->live.next;
	x->live.next->prev = p;
	x->live.next = p;
	/* Forward each chunk as it comes: the proxy adds no delay of its own. */
	nodelay(cfd);
	nodelay(ufd);
	int rc = proact_connect(x->w, ufd, (struct sockaddr *)&x->up, x->uplen,
	                        proact_deadline_in(x->connect_ms), p);
	check(x, p, rc, "proact_connect");
}

/* ---- the pump ---------------------------------------------------------- */

static void dir_read(struct proxy *x, struct dir *d)
{
	/* NULL buffer, length 0: one whole pool buffer, taken only when data is
	   there. */
	check(x, d->p, proact_read(x->w, d->from, NULL, 0, d), "proact_read");
}

static void on_connect(struct proxy *x, struct pair *p, const struct proact_completion *r)
{
	if (p->closing)
		return;
	if (r->error) { /* refused, unreachable, or the deadline passed */
		x->failed_connects++;
		pair_close(x, p);
		return;
	}
	dir_read(x, &p->d[0]);
	if (!p->closing)
		dir_read(x, &p->d[1]);
}

static void on_read(struct proxy *x, struct dir *d, const struct proact_completion *r)
{
	/* Once the pair is closing, what still completes is only drained: it may
	   have finished before the free, but the fds take no new requests. */
	if (d->p->closing)
		return;
	if (r->error) {
		pair_fail(x, d->p, r->error);
		return;
	}
	if (r->size == 0) { /* end of stream: pass it on after the last write */
		check(x, d->p, proact_shutdown_write(x->w, d->to, d), "proact_shutdown_write");
		return;
	}
	/* Zero copy: the pool buffer stays valid until this write completes,
	   and the next read of the source waits for that completion. */
	check(x, d->p, proact_write(x->w, d->to, r->buf, r->size, d), "proact_write");
}

static void on_write(struct proxy *x, struct dir *d, const struct proact_completion *r)
{
	x->bytes[d == &d->p->d[1]] += r->size;
	if (d->p->closing)
		return;
	if (r->error) {
		pair_fail(x, d->p, r->error);
		return;
	}
	dir_read(x, d);
}

static void on_shutdown(struct proxy *x, struct dir *d, const struct proact_completion *r)
{
	if (d->p->closing)
		return;
	if (r->error) { /* ENOTCONN: the destination went away meanwhile */
		pair_fail(x, d->p, r->error);
		return;
	}
	d->done = true;
	if (d->p->d[0].done && d->p->d[1].done)
		pair_close(x, d->p);
}

static void on_free(struct pair *p)
{
	if (--p->frees == 0)
		pair_release(p);
}

/* ---- the loop ---------------------------------------------------------- */

static void stop(struct proxy *x, const char *what, int err)
{
	fprintf(stderr, "proxy: %s: %s\n", what, proact_strerror(err));
	x->stop = x->failed = true;
}

static void on_accept(struct proxy *x, const struct proact_completion *r)
{
	if (r->error == 0) {
		pair_open(x, r->newfd);
	} else if (!ex_accept_transient(r->error)) {
		stop(x, "accept", r->error);
		return;
	}
	int rc = proact_accept(x->w, x->lfd, NULL, 0, NULL);
	if (rc < 0)
		stop(x, "proact_accept", rc);
}

static void on_completion(struct proxy *x, const struct proact_completion *r)
{
	if (r->ctx == x->sig && !ex_stop_signal(r)) { /* SIGUSR1: the counters */
		ex_print_stats(x->w, 0);
		int rc = proact_read(x->w, x->sfd, x->sig, sizeof(x->sig), x->sig);
		if (rc < 0)
			stop(x, "signalfd read", rc);
		return;
	}
	if (r->ctx == x->sig) { /* SIGINT or SIGTERM */
		if (r->error)
			stop(x, "signalfd", r->error);
		x->stop = true;
		return;
	}
	switch (r->op) {
	case PROACT_OP_ACCEPT:
		on_accept(x, r);
		break;
	case PROACT_OP_CONNECT:
		on_connect(x, r->ctx, r);
		break;
	case PROACT_OP_READ:
		on_read(x, r->ctx, r);
		break;
	case PROACT_OP_WRITE:
		on_write(x, r->ctx, r);
		break;
	case PROACT_OP_SHUTDOWN:
		on_shutdown(x, r->ctx, r);
		break;
	case PROACT_OP_FREE:
		on_free(r->ctx);
		break;
	default:
		break;
	}
}

static void run(struct proxy *x)
{
	struct proact_completion comp[BATCH];
	for (int i = 1; i < ACCEPTS && !x->stop; i++) {
		int rc = proact_accept(x->w, x->lfd, NULL, 0, NULL);
		if (rc < 0)
			stop(x, "proact_accept", rc);
	}
	while (!x->stop) {
		int n = proact_wait(x->w, comp, BATCH, -1);
		if (n == -EINTR)
			continue;
		if (n < 0) {
			stop(x, "proact_wait", n);
			return;
		}
		for (int i = 0; i < n; i++)
			on_completion(x, &comp[i]);
	}
}

static int setup(struct proxy *x, const struct options *o)
{
	if (resolve_to(o->to, &x->up, &x->uplen) < 0) {
		fprintf(stderr, "proxy: bad --to '%s' (HOST:PORT)\n", o->to);
		return -1;
	}
	x->connect_ms = o->connect_ms;
	struct proact_options po = {.backend = o->net.backend};
	int rc = proact_watcher_new(&x->w, &po);
	if (rc < 0) {
		fprintf(stderr, "proxy: proact_watcher_new: %s\n", proact_strerror(rc));
		return -1;
	}
	x->sfd = ex_open_signalfd();
	if (x->sfd < 0) {
		perror("proxy: signalfd");
		return -1;
	}
	x->lfd = ex_open_listener(o->net.host, o->net.port, 4096, false);
	if (x->lfd < 0 || ex_accept_first(x->w, x->lfd) < 0)
		return -1;
	x->lfd_registered = true;
	rc = proact_read(x->w, x->sfd, x->sig, sizeof(x->sig), x->sig);
	if (rc < 0) {
		fprintf(stderr, "proxy: signalfd read: %s\n", proact_strerror(rc));
		return -1;
	}
	x->sfd_registered = true;
	return 0;
}

/* Shutdown closes every registered fd and delivers nothing more: what is
   left of the pairs is freed here. */
static void teardown(struct proxy *x)
{
	if (x->w)
		ex_print_stats(x->w, 0);
	proact_watcher_destroy(x->w);
	while (x->live.next != &x->live)
		pair_release(x->live.next);
	if (x->lfd >= 0 && !x->lfd_registered)
		close(x->lfd);
	if (x->sfd >= 0 && !x->sfd_registered)
		close(x->sfd);
}

int main(int argc, char **argv)
{
	struct options o;
	ex_init("proxy", usage_text);
	parse_args(argc, argv, &o);
	ex_raise_fd_limit();
	static struct proxy x; /* its fields' addresses are ctxs */
	x.lfd = x.sfd = -1;
	x.live.next = x.live.prev = &x.live;
	if (setup(&x, &o) < 0) {
		teardown(&x);
		return 1;
	}
	fprintf(stderr, "proxy: backend %s, to %s\n", proact_backend(x.w), o.to);
	ex_print_listening(x.lfd);
	run(&x);
	printf("proxy: accepted %" PRIu64 " connections, %" PRIu64 " bytes to upstream, %" PRIu64
	       " bytes to clients, %" PRIu64 " failed connects, %" PRIu64 " resets, %" PRIu64
	       " errors\n",
	       x.accepted, x.bytes[0], x.bytes[1], x.failed_connects, x.resets, x.errors);
	fflush(stdout);
	teardown(&x);
	return x.failed ? 1 : 0;
}
