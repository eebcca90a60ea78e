/* SPDX-License-Identifier: MIT */
/*
 * proact_echo - the benchmark's echo (and push) server on proact.
 *
 *   proact_echo [--port N] [--push] [--backend epoll|io_uring]
 *              [--pool-size BYTES] [--pool-count N] [--threads N]
 *
 * Each connection keeps one NULL-buffer read pending: an idle connection
 * holds no read buffer, the data lands in a pool buffer only once it has
 * arrived, and that same pool buffer is written back (zero copy; proact keeps
 * it alive until the write completes). Then the next read is queued. All
 * requests made while handling one batch of completions go out in one
 * proact_submit() just before the next proact_wait().
 *
 * Accepting is one more request: ACCEPTS proact_accept() calls stay pending
 * on the listener and each completion is resubmitted with the batch, so a
 * burst of connects is taken a batch at a time and proact_wait() blocks with
 * no timeout (out of descriptors, proact pauses the listener by itself).
 *
 * --threads N runs N watchers, one per thread (the main thread runs the
 * first), each with its own SO_REUSEPORT listener on the same port: the
 * kernel spreads connections over them and the threads share nothing.
 * --push needs one thread: a broadcast reaches the connections of its own
 * watcher only.
 *
 * SIGTERM/SIGINT are blocked in every thread and read through a signalfd
 * with a read pending on the first watcher; its completion raises a flag and
 * wakes the other watchers (proact_wakeup() is not async-signal-safe, so a
 * handler could not). Not sigwait() in a thread of its own: under valgrind
 * (the callgrind scenario) a thread blocked in io_uring_enter() keeps the
 * other threads from running, so only a completion on its own ring reliably
 * wakes it.
 */
#include "peer.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/signalfd.h>

#include "proact.h"

#define BATCH       256
#define ACCEPTS     64 /* accepts pending per listener */
#define MAX_THREADS 64
#define NSIGINFO    4
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
	bool lfd_registered; /* the watcher owns (and closes) the listener */
	int sfd;             /* the first server only: the signalfd, else -1 */
	bool sfd_registered;
	struct signalfd_siginfo sig[NSIGINFO];
	pthread_t thread;
	int status;
	uint64_t errors;
};

static atomic_bool stopping;
static struct server sv[MAX_THREADS];
static unsigned nservers;

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
		if (r->op == PROACT_OP_ACCEPT || r->ctx == s->sig) { /* cannot go on */
			fprintf(stderr, "proact_echo: %s: %s\n",
			        r->ctx == s->sig ? "signalfd read" : "proact_accept",
			        proact_strerror(rc));
			s->status = 1;
			kill(getpid(), SIGTERM);
			atomic_store(&stopping, true); /* in case it was the signal read */
			i++;
			continue;
		}
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

/* The next request of the batch, filled in place by the caller (a request
   is 88 bytes: built elsewhere and copied in, it costs a round trip tens of
   instructions). */
static struct proact_request *queue(struct server *s)
{
	if (s->nbatch == BATCH)
		flush(s);
	return &s->batch[s->nbatch++];
}

static void queue_read(struct server *s, struct conn *c)
{
	/* len 0: one whole pool buffer. */
	*queue(s) = (struct proact_request){.fd = c->fd, .op = PROACT_OP_READ, .ctx = c};
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

static void queue_accept(struct server *s)
{
	*queue(s) = (struct proact_request){.fd = s->lfd, .op = PROACT_OP_ACCEPT};
}

static void conn_open(struct server *s, int fd)
{
	if (s->nconns == s->capconns) {
		uint32_t cap = s->capconns ? 2 * s->capconns : 1024;
		struct conn **n = realloc(s->conns, cap * sizeof(*n));
		if (!n) {
			close(fd);
			s->errors++;
			return;
		}
		s->conns = n;
		s->capconns = cap;
	}
	struct conn *c = malloc(sizeof(*c));
	if (!c) {
		close(fd);
		s->errors++;
		return;
	}
	*c = (struct conn){.fd = fd, .idx = s->nconns};
	s->conns[s->nconns++] = c;
	peer_nodelay(fd);
	queue_read(s, c);
}

static void on_accept(struct server *s, const struct proact_completion *r)
{
	if (r->error == 0)
		conn_open(s, r->newfd);
	else if (r->error == ECANCELED)
		return;
	/* Other errors are EMFILE and the like: proact holds the next accept
	   back until an fd is freed, so resubmitting cannot spin. */
	queue_accept(s);
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
		*queue(s) = (struct proact_request){.fd = c->fd,
		                                    .op = PROACT_OP_WRITE,
		                                    .buf = b->data,
		                                    .len = len,
		                                    .ctx = (void *)((uintptr_t)c | BCAST_TAG)};
	}
	if (--b->refs == 0)
		free(b);
}

/* SIGTERM or SIGINT (the first server only): stop every thread. */
static void on_signal(struct server *s, const struct proact_completion *r)
{
	if (r->error) {
		fprintf(stderr, "proact_echo: signalfd: %s\n", proact_strerror(r->error));
		s->status = 1;
	}
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
	uintptr_t ctx = (uintptr_t)r->ctx;
	struct conn *c = (struct conn *)(ctx & ~BCAST_TAG);
	switch (r->op) {
	case PROACT_OP_ACCEPT:
		on_accept(s, r);
		break;
	case PROACT_OP_READ:
		if (r->error || r->size == 0) { /* EOF, reset, or cancelled */
			conn_close(s, c);
		} else if (s->push && ((const char *)r->buf)[0] == PUSH_TRIGGER) {
			broadcast(s, r->buf, r->size);
			queue_read(s, c);
		} else {
			/* Zero copy: write back the pool buffer the data is in. */
			*queue(s) = (struct proact_request){.fd = c->fd,
			                                    .op = PROACT_OP_WRITE,
			                                    .buf = r->buf,
			                                    .len = r->size,
			                                    .ctx = c};
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

static void *run(void *arg)
{
	struct server *s = arg;
	struct proact_completion comp[BATCH];
	while (!atomic_load(&stopping)) {
		/* Before the wait: it releases the pool buffers that the queued
		   writes refer to unless they are submitted by then. */
		flush(s);
		int n = proact_wait(s->w, comp, BATCH, -1);
		if (n == -EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "proact_echo: proact_wait: %s\n", proact_strerror(n));
			s->status = 1;
			kill(getpid(), SIGTERM); /* the signalfd read stops the others */
			break;
		}
		for (int i = 0; i < n; i++)
			on_completion(s, &comp[i]);
	}
	return NULL;
}

/* A listener on 127.0.0.1:port with SO_REUSEPORT, so that each thread can
   have its own on the same port; exits on failure. */
static int listen_reuseport(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 65535) < 0) {
		perror("proact_echo: listen");
		exit(1);
	}
	return fd;
}

static int bound_port(int fd)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
		perror("proact_echo: getsockname");
		exit(1);
	}
	return ntohs(sa.sin_port);
}

/* A watcher and its listener, with the accepts queued; 0 or -1. */
static int server_setup(struct server *s, const struct proact_options *po, int port, bool push)
{
	s->push = push;
	s->lfd = listen_reuseport(port);
	int rc = proact_watcher_new(&s->w, po);
	if (rc < 0) {
		fprintf(stderr, "proact_echo: proact_watcher_new(%s): %s\n",
		        po->backend ? po->backend : "default", proact_strerror(rc));
		return -1;
	}
	/* The first accept registers the listener: from then on the watcher
	   closes it. */
	rc = proact_accept(s->w, s->lfd, NULL, 0, NULL);
	if (rc < 0) {
		fprintf(stderr, "proact_echo: proact_accept: %s\n", proact_strerror(rc));
		return -1;
	}
	s->lfd_registered = true;
	for (int i = 1; i < ACCEPTS; i++)
		queue_accept(s);
	if (s->sfd >= 0) {
		rc = proact_read(s->w, s->sfd, s->sig, sizeof(s->sig), s->sig);
		if (rc < 0) {
			fprintf(stderr, "proact_echo: signalfd read: %s\n", proact_strerror(rc));
			return -1;
		}
		s->sfd_registered = true;
	}
	return 0;
}

/* Shutdown closes every registered fd and delivers nothing more. */
static void server_teardown(struct server *s)
{
	proact_watcher_destroy(s->w);
	for (uint32_t i = 0; i < s->nconns; i++)
		free(s->conns[i]);
	free(s->conns);
	if (!s->lfd_registered && s->lfd >= 0)
		close(s->lfd);
	if (!s->sfd_registered && s->sfd >= 0)
		close(s->sfd);
	if (s->errors)
		fprintf(stderr, "proact_echo: %llu errors\n", (unsigned long long)s->errors);
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

/* Blocks SIGTERM and SIGINT (threads created later inherit the mask) and
   returns a signalfd for them; SIGPIPE is ignored. */
static int open_signalfd(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	signal(SIGPIPE, SIG_IGN);
	if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
		return -1;
	return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

int main(int argc, char **argv)
{
	/* Take our own options out, hand the rest to the common parser. Pool
	   buffers of 64 KiB: one read takes a whole 64 KiB message, as libuv's
	   suggested read size does (16 KiB ones cost 0.7x the throughput on
	   echo-64k); an idle connection still holds none of them. */
	struct proact_options po = {.pool_buffer_size = 65536};
	unsigned long threads = 1;
	int n = 1;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--pool-size") && i + 1 < argc)
			po.pool_buffer_size = (uint32_t)num_arg(argv[++i]);
		else if (!strcmp(argv[i], "--pool-count") && i + 1 < argc)
			po.pool_buffer_count = (uint32_t)num_arg(argv[++i]);
		else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
			threads = num_arg(argv[++i]);
		else
			argv[n++] = argv[i];
	}
	struct peer_args a = peer_parse(n, argv);
	if (threads > MAX_THREADS || (a.push && threads > 1)) {
		fprintf(stderr, "proact_echo: --threads 1..%d, and 1 with --push\n", MAX_THREADS);
		return 2;
	}
	nservers = (unsigned)threads;
	po.backend = a.backend;
	peer_raise_fd_limit();
	for (unsigned i = 0; i < nservers; i++)
		sv[i].lfd = sv[i].sfd = -1;
	sv[0].sfd = open_signalfd();
	int status = sv[0].sfd < 0;
	if (status)
		perror("proact_echo: signalfd");
	for (unsigned i = 0; i < nservers && !status; i++) {
		/* Port 0: the first listener gets one, the others share it. */
		if (server_setup(&sv[i], &po, i ? bound_port(sv[0].lfd) : a.port, a.push) < 0)
			status = 1;
	}
	unsigned started = 1; /* the main thread runs sv[0] */
	if (!status) {
		fprintf(stderr, "proact_echo: backend %s, %u thread%s\n", proact_backend(sv[0].w),
		        nservers, nservers == 1 ? "" : "s");
		peer_print_listening(sv[0].lfd);
		for (; started < nservers; started++)
			if (pthread_create(&sv[started].thread, NULL, run, &sv[started]) != 0)
				break;
		if (started == nservers)
			run(&sv[0]); /* until SIGTERM or SIGINT */
		else
			status = 1;
	}
	atomic_store(&stopping, true);
	for (unsigned i = 1; i < started; i++)
		proact_wakeup(sv[i].w);
	for (unsigned i = 1; i < started; i++)
		pthread_join(sv[i].thread, NULL);
	for (unsigned i = 0; i < nservers; i++) {
		status |= sv[i].status;
		server_teardown(&sv[i]);
	}
	return status;
}
