/* SPDX-License-Identifier: MIT */
/*
 * push_server - gaio's push server, in C on proact.
 *
 *   push_server [--host ADDR] [--port N] [--backend NAME] [--interval-ms N]
 *
 * Every interval (default one second) the current time, as one line, goes to
 * every connected client: one buffer for all of them, submitted once per
 * client and freed when the last of those writes has completed. A client
 * whose write fails is freed. Try it with `nc HOST PORT` or `telnet`.
 *
 * Everything arrives through the one watcher, so a single thread with no
 * timeouts does it all: the tick is a timerfd with a read pending on the
 * watcher, new connections come from accepts pending on the listener, and
 * SIGINT/SIGTERM through a signalfd read (proact_wakeup() is not
 * async-signal-safe, so no handler could stop the loop). Each client also keeps
 * a NULL-buffer read pending: it costs no memory until the client sends
 * something, and it notices a client that hangs up at once instead of at the
 * next push. A client that is too slow to take its pushes (MAX_INFLIGHT
 * writes still queued) skips a tick rather than making the queue grow.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#ifdef PROACT_PROG_HAVE_TIMERFD
#include <sys/timerfd.h>
#else
#include <fcntl.h>
#include <pthread.h>
#endif
#include <time.h>
#include <unistd.h>

#include "proact.h"
#include "util.h"

#define BATCH         256  /* completions per proact_wait */
#define MAX_INFLIGHT  8    /* queued pushes per client before it skips ticks */
#define POOL_BUF_SIZE 4096 /* clients are not expected to talk: a small pool */
#define POOL_BUF_N    64
#define NSIGINFO      4
#define ACCEPTS       4 /* accepts pending on the listener */

struct client {
	size_t idx; /* position in server.clients */
	int fd;
	uint32_t inflight; /* pushes queued on this client */
	bool closing;      /* proact_free was called; wait for PROACT_OP_FREE */
};

/* One time line, shared by every client's write; freed with the last one. */
struct push {
	struct push *prev, *next; /* live pushes, to free them at exit */
	uint32_t refs;
	size_t len;
	char text[64];
};

struct server {
	proact_watcher *w;
	int lfd, sfd, tfd;
	bool lfd_registered; /* the watcher owns (and closes) the listener */
	bool stop, failed;
	ex_siginfo sig[NSIGINFO];
	uint64_t ticks; /* timerfd read buffer */
	struct client **clients;
	size_t nclients, cap;
	struct push pushes;   /* list head */
	struct ex_batch reqs; /* one proact_submit per loop round */
	uint64_t accepted, pushes_sent, bytes, skipped, resets, errors;
};

struct options {
	struct ex_server_options net;
	unsigned long interval_ms;
};

static const char usage_text[] = "usage: push_server [--host ADDR] [--port N] [--backend NAME] "
                                 "[--interval-ms N]\n";

static bool take_option(void *arg, const char *name, const char *v)
{
	struct options *o = arg;
	if (strcmp(name, "--interval-ms") != 0)
		return ex_server_option(&o->net, "--port", name, v);
	o->interval_ms = (unsigned long)ex_parse_num(v, 1, 86400000);
	return true;
}

#ifdef PROACT_PROG_HAVE_TIMERFD
static int open_timerfd(unsigned long ms)
{
	int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
	struct itimerspec its = {.it_interval = ts, .it_value = ts};
	if (fd >= 0 && timerfd_settime(fd, 0, &its, NULL) < 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}
#else
/* Without timerfd: a thread writes a count of 1 into a pipe every interval;
   a read takes one tick (8-byte writes are atomic, below PIPE_BUF). */
static struct timespec tick_interval;

static void *ticker(void *arg)
{
	int wr = (int)(intptr_t)arg;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGPIPE); /* a closed reader ends the thread with EPIPE */
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	const uint64_t one = 1;
	for (;;) {
		struct timespec left = tick_interval;
		while (nanosleep(&left, &left) < 0 && errno == EINTR)
			;
		if (write(wr, &one, sizeof(one)) < 0 && errno != EAGAIN)
			break;
	}
	close(wr);
	return NULL;
}

static int open_timerfd(unsigned long ms)
{
	int p[2];
	pthread_t t;
	if (pipe(p) < 0)
		return -1;
	tick_interval = (struct timespec){.tv_sec = (time_t)(ms / 1000),
	                                  .tv_nsec = (long)(ms % 1000) * 1000000};
	for (int i = 0; i < 2; i++) {
		int fl = fcntl(p[i], F_GETFL);
		if (fl < 0 || fcntl(p[i], F_SETFL, fl | O_NONBLOCK) < 0 ||
		    fcntl(p[i], F_SETFD, FD_CLOEXEC) < 0)
			goto fail;
	}
	if (pthread_create(&t, NULL, ticker, (void *)(intptr_t)p[1]) != 0)
		goto fail;
	pthread_detach(t);
	return p[0];
fail:
	close(p[0]);
	close(p[1]);
	return -1;
}
#endif

/* ---- pushes --------------------------------------------------------------- */

static struct push *push_new(struct server *s)
{
	struct push *p = malloc(sizeof(*p));
	if (!p)
		return NULL;
	struct timespec now;
	struct tm tm;
	char date[32], zone[16];
	clock_gettime(CLOCK_REALTIME, &now);
	localtime_r(&now.tv_sec, &tm);
	strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", &tm);
	strftime(zone, sizeof(zone), "%z %Z", &tm);
	int n = snprintf(p->text, sizeof(p->text), "%s.%06ld %s\n", date, now.tv_nsec / 1000, zone);
	p->len = n > 0 && (size_t)n < sizeof(p->text) ? (size_t)n : sizeof(p->text) - 1;
	p->refs = 1; /* the tick's own reference, dropped once all writes are queued */
	p->prev = &s->pushes;
	p->next = s->pushes.next;
	s->pushes.next->prev = p;
	s->pushes.next = p;
	return p;
}

static void push_unref(struct push *p)
{
	if (--p->refs)
		return;
	p->prev->next = p->next;
	p->next->prev = p->prev;
	free(p);
}

/* A write completion carries the buffer, which is the push's text. */
static struct push *push_of(const void *text)
{
	return (struct push *)((char *)text - offsetof(struct push, text));
}

/* ---- request batching ----------------------------------------------------- */

static void client_close(struct server *s, struct client *c);

static void refused(void *arg, const struct proact_request *r, int err)
{
	struct server *s = arg;
	if (r->ctx == s->sig || r->ctx == &s->ticks || r->op == PROACT_OP_ACCEPT) {
		fprintf(stderr, "push_server: internal request: %s\n", proact_strerror(err));
		s->stop = s->failed = true;
		return;
	}
	struct client *c = r->ctx;
	if (r->op == PROACT_OP_WRITE) {
		push_unref(push_of(r->buf));
		c->inflight--;
		if (err == -EAGAIN) { /* its queue is full: it misses this tick */
			s->skipped++;
			return;
		}
	}
	if (err != -EALREADY)
		s->errors++;
	client_close(s, c);
}

static void flush(struct server *s)
{
	ex_batch_flush(&s->reqs);
}

static void queue(struct server *s, struct proact_request r)
{
	ex_batch_queue(&s->reqs, r);
}

static void queue_client_read(struct server *s, struct client *c)
{
	queue(s, (struct proact_request){
	             .fd = c->fd, .op = PROACT_OP_READ, .len = POOL_BUF_SIZE, .ctx = c});
}

static void queue_accept(struct server *s)
{
	queue(s, (struct proact_request){.fd = s->lfd, .op = PROACT_OP_ACCEPT});
}

static void queue_timer_read(struct server *s)
{
	queue(s, (struct proact_request){.fd = s->tfd,
	                                 .op = PROACT_OP_READ,
	                                 .buf = &s->ticks,
	                                 .len = sizeof(s->ticks),
	                                 .ctx = &s->ticks});
}

/* ---- clients ---------------------------------------------------------------- */

static void client_release(struct server *s, struct client *c)
{
	struct client *last = s->clients[--s->nclients];
	last->idx = c->idx;
	s->clients[c->idx] = last;
	free(c);
}

static void client_close(struct server *s, struct client *c)
{
	if (c->closing)
		return;
	c->closing = true;
	if (ex_free_fd(s->w, c->fd, c) == -ENOENT) /* its first read was refused */
		client_release(s, c);
}

static void client_open(struct server *s, int fd)
{
	struct client *c = malloc(sizeof(*c));
	if (s->nclients == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 256;
		struct client **v = realloc(s->clients, cap * sizeof(*v));
		if (v) {
			s->clients = v;
			s->cap = cap;
		}
	}
	if (!c || s->nclients == s->cap) {
		free(c);
		close(fd);
		s->errors++;
		return;
	}
	*c = (struct client){.idx = s->nclients, .fd = fd};
	s->clients[s->nclients++] = c;
	s->accepted++;
	queue_client_read(s, c);
}

static void on_accept(struct server *s, const struct proact_completion *r)
{
	if (r->error && !ex_accept_transient(r->error)) {
		fprintf(stderr, "push_server: accept: %s\n", proact_strerror(r->error));
		s->stop = s->failed = true;
		return;
	}
	if (r->error == 0)
		client_open(s, r->newfd);
	queue_accept(s);
}

/* ---- completions ------------------------------------------------------------ */

static void on_tick(struct server *s, const struct proact_completion *r)
{
	if (r->error) {
		fprintf(stderr, "push_server: timerfd: %s\n", proact_strerror(r->error));
		s->stop = s->failed = true;
		return;
	}
	queue_timer_read(s);
	/* Submit the first reads of clients accepted this round first: from then
	   on every client in the array is registered, so a refused write below
	   can only mark its client closing and never shrinks the array under
	   this loop. */
	flush(s);
	struct push *p = push_new(s);
	if (!p) {
		s->errors++;
		return;
	}
	for (size_t i = 0; i < s->nclients; i++) {
		struct client *c = s->clients[i];
		if (c->closing)
			continue;
		if (c->inflight >= MAX_INFLIGHT) {
			s->skipped++;
			continue;
		}
		c->inflight++;
		p->refs++;
		queue(s, (struct proact_request){.fd = c->fd,
		                                 .op = PROACT_OP_WRITE,
		                                 .buf = p->text,
		                                 .len = p->len,
		                                 .ctx = c});
	}
	flush(s); /* refusals drop their references; then the tick drops its own */
	push_unref(p);
}

static void on_write(struct server *s, struct client *c, const struct proact_completion *r)
{
	push_unref(push_of(r->buf));
	c->inflight--;
	if (r->error) {
		/* A client that hangs up with pushes unread resets the
		   connection: a disconnect, not a server error. */
		ex_count_failure(r->error, &s->resets, &s->errors);
		client_close(s, c);
		return;
	}
	s->pushes_sent++;
	s->bytes += r->size;
}

/* Clients are not expected to send; whatever they do send is dropped. */
static void on_read(struct server *s, struct client *c, const struct proact_completion *r)
{
	if (r->error || r->size == 0) {
		ex_count_failure(r->error, &s->resets, &s->errors);
		client_close(s, c);
		return;
	}
	queue_client_read(s, c);
}

static void on_signal(struct server *s, const struct proact_completion *r)
{
	if (r->error) {
		fprintf(stderr, "push_server: signalfd: %s\n", proact_strerror(r->error));
		s->stop = s->failed = true;
		return;
	}
	s->stop = ex_stop_signal(r); /* SIGINT or SIGTERM; SIGUSR1 asks for the counters */
	if (!s->stop) {
		ex_print_stats(s->w, 0);
		queue(s, ex_signal_read(s->sfd, s->sig, sizeof(s->sig)));
	}
}

static void on_completion(struct server *s, const struct proact_completion *r)
{
	if (r->ctx == s->sig) {
		on_signal(s, r);
		return;
	}
	if (r->ctx == &s->ticks) {
		on_tick(s, r);
		return;
	}
	struct client *c = r->ctx;
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
		client_release(s, c);
		break;
	default:
		break;
	}
}

static void run(struct server *s)
{
	struct proact_completion comp[BATCH];
	queue(s, ex_signal_read(s->sfd, s->sig, sizeof(s->sig)));
	queue_timer_read(s);
	for (int i = 1; i < ACCEPTS; i++)
		queue_accept(s);
	flush(s);
	while (!s->stop) {
		int n = proact_wait(s->w, comp, BATCH, -1);
		if (n < 0) {
			fprintf(stderr, "push_server: proact_wait: %s\n", proact_strerror(n));
			s->failed = true;
			return;
		}
		for (int i = 0; i < n; i++)
			on_completion(s, &comp[i]);
		flush(s);
	}
}

static int setup(struct server *s, const struct options *o)
{
	struct proact_options po = {.backend = o->net.backend,
	                            .pool_buffer_size = POOL_BUF_SIZE,
	                            .pool_buffer_count = POOL_BUF_N};
	int rc = proact_watcher_new(&s->w, &po);
	if (rc < 0) {
		fprintf(stderr, "push_server: proact_watcher_new: %s\n", proact_strerror(rc));
		return -1;
	}
	s->sfd = ex_open_signalfd();
	s->tfd = open_timerfd(o->interval_ms);
	if (s->sfd < 0 || s->tfd < 0) {
		perror("push_server: signalfd/timerfd");
		return -1;
	}
	s->reqs = (struct ex_batch){.w = s->w, .refused = refused, .ctx = s};
	s->lfd = ex_open_listener(o->net.host, o->net.port, 65535, false);
	if (s->lfd < 0 || ex_accept_first(s->w, s->lfd) < 0)
		return -1;
	s->lfd_registered = true;
	return 0;
}

int main(int argc, char **argv)
{
	struct options o = {.net = {.host = "127.0.0.1", .port = "0"}, .interval_ms = 1000};
	ex_init("push_server", usage_text);
	ex_parse_options(argc, argv, take_option, &o);
	ex_raise_fd_limit();
	static struct server s; /* large (the batch), and its fields' addresses are ctxs */
	s.lfd = s.sfd = s.tfd = -1;
	s.pushes.next = s.pushes.prev = &s.pushes;
	if (setup(&s, &o) < 0) {
		proact_watcher_destroy(s.w);
		if (s.lfd >= 0 && !s.lfd_registered)
			close(s.lfd);
		return 1;
	}
	fprintf(stderr, "push_server: backend %s, a push every %lu ms; try: nc HOST PORT\n",
	        proact_backend(s.w), o.interval_ms);
	ex_print_listening(s.lfd);
	run(&s);
	ex_print_stats(s.w, 0);
	printf("push_server: accepted %" PRIu64 " clients, sent %" PRIu64 " pushes (%" PRIu64
	       " bytes), %" PRIu64 " skipped, %" PRIu64 " resets, %" PRIu64 " errors\n",
	       s.accepted, s.pushes_sent, s.bytes, s.skipped, s.resets, s.errors);
	fflush(stdout);
	/* After shutdown nothing more is delivered: free what is still held. */
	proact_watcher_destroy(s.w);
	while (s.nclients)
		client_release(&s, s.clients[s.nclients - 1]);
	free(s.clients);
	while (s.pushes.next != &s.pushes) {
		s.pushes.next->refs = 1;
		push_unref(s.pushes.next);
	}
	return s.failed ? 1 : 0;
}
