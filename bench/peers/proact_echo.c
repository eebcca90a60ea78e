/*
 * proact_echo - the benchmark's echo (and push) server on proact.
 *
 *   proact_echo [--port N] [--push] [--backend epoll|io_uring]
 *              [--pool-size BYTES] [--pool-count N]
 *
 * Each connection keeps one NULL-buffer read pending: an idle connection
 * holds no read buffer, the data lands in a pool buffer only once it has
 * arrived, and that same pool buffer is written back (zero copy; proact keeps
 * it alive until the write completes). Then the next read is queued. All
 * requests made while handling one batch of completions go out in one
 * proact_submit() just before the next proact_wait().
 *
 * Accepting. proact has no accept operation and a listening socket cannot
 * carry a proact read, so the loop accepts by itself: the listener is
 * non-blocking and, before a wait, accept4() runs until EAGAIN. To keep
 * that extra syscall off the hot path it runs at most once per millisecond
 * while the loop is busy, and always after a wait that timed out. The wait
 * is therefore bounded: 1 ms while connections are arriving (any accepted in
 * the last 100 ms), 10 ms otherwise. That bounds the accept latency (a burst
 * of connects on an idle server waits at most 10 ms) and the exit latency:
 * SIGTERM/SIGINT only set a flag (proact_wakeup() is not async-signal-safe),
 * which the loop sees within one wait. examples/echo_server.c avoids the
 * polling with O_ASYNC + signalfd; the bench keeps the simplest correct loop,
 * and its cost (one clock read per wait, an accept4 per millisecond) is part
 * of what the bench measures for proact.
 */
#include "peer.h"

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "proact.h"

#define BATCH       256
#define ACCEPT_GAP  1000000ull   /* ns between accept rounds while busy */
#define HOT_WINDOW  100000000ull /* ns after an accept during which waits are short */
#define WAIT_HOT_MS 1
#define WAIT_MS     10
#define BCAST_TAG   ((uintptr_t)1) /* low bit of a write's ctx: a broadcast write */

struct conn {
	int fd;
	uint32_t idx; /* position in server.conns */
	bool closing; /* proact_free was called; PROACT_OP_FREE releases it */
};

/* One pushed message, shared by the writes to every connection. */
struct bcast {
	size_t refs;
	size_t len;
	unsigned char data[];
};

struct server {
	proact_watcher *w;
	int lfd;
	bool push;
	struct conn **conns; /* every open connection, for broadcast and exit */
	uint32_t nconns, capconns;
	struct proact_request batch[BATCH];
	int nbatch;
	uint64_t last_accept_try, last_accepted;
	uint64_t errors;
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void conn_close(struct server *s, struct conn *c);

static void flush(struct server *s)
{
	int i = 0;
	while (i < s->nbatch) {
		int rc = proact_submit(s->w, s->batch + i, s->nbatch - i);
		if (rc > 0) {
			i += rc;
			continue;
		}
		/* batch[i] was refused: drop its connection (a broadcast write's
		   reference is dropped too). */
		struct proact_request *r = &s->batch[i];
		uintptr_t ctx = (uintptr_t)r->ctx;
		if (ctx & BCAST_TAG) {
			struct bcast *b = (struct bcast *)((unsigned char *)r->buf -
			                                   offsetof(struct bcast, data));
			if (--b->refs == 0)
				free(b);
		}
		if (rc != -EALREADY)
			s->errors++;
		conn_close(s, (struct conn *)(ctx & ~BCAST_TAG));
		i++;
	}
	s->nbatch = 0;
}

static void queue(struct server *s, struct proact_request r)
{
	if (s->nbatch == BATCH)
		flush(s);
	s->batch[s->nbatch++] = r;
}

static void queue_read(struct server *s, struct conn *c)
{
	/* len 0: one whole pool buffer. */
	queue(s, (struct proact_request){.fd = c->fd, .op = PROACT_OP_READ, .ctx = c});
}

static void conn_release(struct server *s, struct conn *c)
{
	struct conn *last = s->conns[--s->nconns];
	last->idx = c->idx;
	s->conns[c->idx] = last;
	free(c);
}

static void conn_close(struct server *s, struct conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	int rc = proact_free(s->w, c->fd, c);
	if (rc == -ENOENT) { /* never registered: its first read was refused */
		close(c->fd);
		conn_release(s, c);
	} else if (rc < 0) {
		s->errors++;
	}
}

static void accept_all(struct server *s, uint64_t now)
{
	s->last_accept_try = now;
	for (;;) {
		int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return; /* EAGAIN, or out of fds: retried next round */
		}
		if (s->nconns == s->capconns) {
			uint32_t cap = s->capconns ? 2 * s->capconns : 1024;
			struct conn **n = realloc(s->conns, cap * sizeof(*n));
			if (!n) {
				close(fd);
				continue;
			}
			s->conns = n;
			s->capconns = cap;
		}
		struct conn *c = malloc(sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		*c = (struct conn){.fd = fd, .idx = s->nconns};
		s->conns[s->nconns++] = c;
		peer_nodelay(fd);
		queue_read(s, c);
		s->last_accepted = now;
	}
}

/* --push: send the trigger's bytes to every open connection. */
static void broadcast(struct server *s, const void *data, size_t len)
{
	struct bcast *b = malloc(sizeof(*b) + len);
	if (!b) {
		s->errors++;
		return;
	}
	b->refs = 1; /* held by this loop until every write is queued */
	b->len = len;
	memcpy(b->data, data, len);
	for (uint32_t i = 0; i < s->nconns; i++) {
		struct conn *c = s->conns[i];
		if (c->closing)
			continue;
		b->refs++;
		queue(s, (struct proact_request){.fd = c->fd,
		                                 .op = PROACT_OP_WRITE,
		                                 .buf = b->data,
		                                 .len = len,
		                                 .ctx = (void *)((uintptr_t)c | BCAST_TAG)});
	}
	if (--b->refs == 0)
		free(b);
}

static void on_completion(struct server *s, const struct proact_completion *r)
{
	uintptr_t ctx = (uintptr_t)r->ctx;
	struct conn *c = (struct conn *)(ctx & ~BCAST_TAG);
	switch (r->op) {
	case PROACT_OP_READ:
		if (r->error || r->size == 0) { /* EOF, reset, or cancelled */
			conn_close(s, c);
		} else if (s->push && ((const char *)r->buf)[0] == PUSH_TRIGGER) {
			broadcast(s, r->buf, r->size);
			queue_read(s, c);
		} else {
			/* Zero copy: write back the pool buffer the data is in. */
			queue(s, (struct proact_request){.fd = c->fd,
			                                 .op = PROACT_OP_WRITE,
			                                 .buf = r->buf,
			                                 .len = r->size,
			                                 .ctx = c});
		}
		break;
	case PROACT_OP_WRITE:
		if (ctx & BCAST_TAG) {
			struct bcast *b = (struct bcast *)((unsigned char *)r->buf -
			                                   offsetof(struct bcast, data));
			if (--b->refs == 0)
				free(b);
			if (r->error)
				conn_close(s, c);
		} else if (r->error) {
			conn_close(s, c);
		} else {
			queue_read(s, c);
		}
		break;
	case PROACT_OP_FREE:
		conn_release(s, c);
		break;
	default:
		break;
	}
}

static int run(struct server *s)
{
	struct proact_completion comp[BATCH];
	bool timed_out = true;
	while (!peer_stop) {
		uint64_t now = now_ns();
		if (timed_out || now - s->last_accept_try >= ACCEPT_GAP)
			accept_all(s, now);
		/* Before the wait: it releases the pool buffers that the queued
		   writes refer to unless they are submitted by then. */
		flush(s);
		int timeout = now - s->last_accepted < HOT_WINDOW ? WAIT_HOT_MS : WAIT_MS;
		int n = proact_wait(s->w, comp, BATCH, timeout);
		if (n == -EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "proact_echo: proact_wait: %s\n", proact_strerror(n));
			return 1;
		}
		timed_out = n == 0;
		for (int i = 0; i < n; i++)
			on_completion(s, &comp[i]);
	}
	return 0;
}

static unsigned long num_arg(const char *s)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);
	if (*end || v == 0 || v > (1ul << 30)) {
		fprintf(stderr, "proact_echo: bad number '%s'\n", s);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	/* Take our own two options out, hand the rest to the common parser. */
	struct proact_options po = {0};
	int n = 1;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--pool-size") && i + 1 < argc)
			po.pool_buffer_size = (uint32_t)num_arg(argv[++i]);
		else if (!strcmp(argv[i], "--pool-count") && i + 1 < argc)
			po.pool_buffer_count = (uint32_t)num_arg(argv[++i]);
		else
			argv[n++] = argv[i];
	}
	struct peer_args a = peer_parse(n, argv);
	po.backend = a.backend;
	peer_raise_fd_limit();
	peer_catch_signals();
	static struct server s;
	s.push = a.push;
	int rc = proact_watcher_new(&s.w, &po);
	if (rc < 0) {
		fprintf(stderr, "proact_echo: proact_watcher_new(%s): %s\n",
		        a.backend ? a.backend : "default", proact_strerror(rc));
		return 1;
	}
	s.lfd = peer_listen(a.port);
	fprintf(stderr, "proact_echo: backend %s\n", proact_backend(s.w));
	peer_print_listening(s.lfd);
	int status = run(&s);
	/* Shutdown closes every registered fd and delivers nothing more. */
	proact_watcher_destroy(s.w);
	for (uint32_t i = 0; i < s.nconns; i++)
		free(s.conns[i]);
	free(s.conns);
	close(s.lfd);
	if (s.errors)
		fprintf(stderr, "proact_echo: %llu errors\n", (unsigned long long)s.errors);
	return status;
}
