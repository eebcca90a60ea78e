/*
 * echo_server - gaio's echo server, in C on proact.
 *
 *   echo_server [--host ADDR] [--port N] [--backend NAME] [--buffer BYTES]
 *
 * Every connection carries one request at a time: a read, then a write of
 * exactly the bytes read, then the next read. With the default NULL-buffer
 * reads the data lands in a pool buffer only once it has arrived, and that
 * same pool buffer is written back (zero copy): an idle connection costs a
 * small struct and no read buffer. --buffer N gives each connection its own
 * N-byte buffer instead, for comparison.
 *
 * Accepting without an extra thread and without a polling timeout: the
 * listener is non-blocking and has O_ASYNC set, so the kernel raises SIGIO
 * whenever a connection arrives. SIGIO, SIGINT and SIGTERM are blocked and
 * read through a signalfd, and that signalfd is just one more descriptor with
 * a read pending on the watcher. A new connection therefore wakes
 * proact_wait() like any completion, and the loop accepts until EAGAIN:
 * accept latency is one wake-up, proact_wait() blocks with no timeout, and
 * SIGINT/SIGTERM are handled in the loop, not in a handler (proact_wakeup()
 * is not async-signal-safe). SIGIO is a standard signal, so arrivals while
 * one is pending coalesce; that is harmless because every wake-up drains the
 * whole accept queue. Should O_ASYNC be refused, the loop falls back to
 * accepting every round with a short wait timeout.
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
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proact.h"

#define BATCH         256   /* completions per proact_wait, requests per proact_submit */
#define POOL_BUF_SIZE 16384 /* pool buffer size, and the length of a NULL-buffer read */
#define NSIGINFO      4     /* signals taken per signalfd read */
#define RETRY_MS      100   /* wait timeout while accepting is paused or polled */

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

struct server {
	proact_watcher *w;
	int lfd;
	int sfd;
	bool accept_poll;   /* O_ASYNC unavailable: accept every round */
	bool accept_paused; /* out of fds: retry after RETRY_MS */
	bool stop;
	bool failed;
	size_t bufsize; /* 0: NULL-buffer pool reads */
	struct signalfd_siginfo sig[NSIGINFO];
	struct link live; /* list head */
	struct proact_request batch[BATCH];
	int nbatch;
	uint64_t accepted, open, peak, bytes, resets, errors;
};

struct options {
	const char *host;
	const char *port;
	const char *backend;
	size_t bufsize;
};

static void usage(void)
{
	fprintf(stderr, "usage: echo_server [--host ADDR] [--port N] [--backend NAME] "
	                "[--buffer BYTES]\n");
	exit(2);
}

static unsigned long parse_num(const char *s, unsigned long max)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v > max || s[0] == '-') {
		fprintf(stderr, "echo_server: bad number '%s'\n", s);
		exit(2);
	}
	return v;
}

static void parse_args(int argc, char **argv, struct options *o)
{
	*o = (struct options){.host = "127.0.0.1", .port = "0"};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (i + 1 >= argc)
			usage();
		const char *v = argv[++i];
		if (!strcmp(a, "--host"))
			o->host = v;
		else if (!strcmp(a, "--port") && parse_num(v, 65535) <= 65535)
			o->port = v; /* validated, then kept as text for getaddrinfo */
		else if (!strcmp(a, "--backend"))
			o->backend = v;
		else if (!strcmp(a, "--buffer"))
			o->bufsize = parse_num(v, 1ul << 30);
		else
			usage();
	}
}

/* Each connection is one fd: let the process have as many as it may. */
static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void print_listening(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char host[NI_MAXHOST], port[NI_MAXSERV];
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0 ||
	    getnameinfo((struct sockaddr *)&ss, len, host, sizeof(host), port, sizeof(port),
	                NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
		perror("echo_server: getsockname");
		exit(1);
	}
	if (ss.ss_family == AF_INET6)
		printf("listening on [%s]:%s\n", host, port);
	else
		printf("listening on %s:%s\n", host, port);
	fflush(stdout);
}

static int open_listener(const char *host, const char *port)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
	struct addrinfo *ai;
	int rc = getaddrinfo(host, port, &hints, &ai);
	if (rc != 0) {
		fprintf(stderr, "echo_server: %s: %s\n", host, gai_strerror(rc));
		return -1;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 65535) < 0) {
		perror("echo_server: listen");
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	return fd;
}

/* SIGIO on new connections, delivered to this process (see the top comment). */
static bool enable_sigio(int lfd)
{
	int fl = fcntl(lfd, F_GETFL);
	return fl >= 0 && fcntl(lfd, F_SETOWN, getpid()) == 0 &&
	       fcntl(lfd, F_SETFL, fl | O_ASYNC) == 0;
}

static int open_signalfd(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGIO);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	/* Blocked before any thread exists, so no thread takes them instead. */
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return -1;
	return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

/* ---- request batching: one proact_submit per loop round ---------------- */

static void conn_close(struct server *s, struct conn *c);

static void refused(struct server *s, const struct proact_request *r, int err)
{
	if (r->ctx == s->sig) {
		fprintf(stderr, "echo_server: signalfd read: %s\n", proact_strerror(err));
		s->stop = s->failed = true;
		return;
	}
	struct conn *c = r->ctx;
	if (err != -EALREADY)
		s->errors++;
	conn_close(s, c);
}

static void flush(struct server *s)
{
	int i = 0;
	while (i < s->nbatch) {
		int rc = proact_submit(s->w, s->batch + i, s->nbatch - i);
		if (rc > 0) {
			i += rc;
			continue;
		}
		/* The head was refused; a retry from it returns its errno. */
		refused(s, &s->batch[i], rc);
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

static void queue_signal_read(struct server *s)
{
	queue(s, (struct proact_request){.fd = s->sfd,
	                                 .op = PROACT_OP_READ,
	                                 .buf = s->sig,
	                                 .len = sizeof(s->sig),
	                                 .ctx = s->sig});
}

/* ---- connections --------------------------------------------------------- */

static void conn_release(struct server *s, struct conn *c)
{
	c->link.prev->next = c->link.next;
	c->link.next->prev = c->link.prev;
	s->open--;
	free(c);
}

/* Hands the fd to proact_free; the state goes when PROACT_OP_FREE arrives. */
static void conn_close(struct server *s, struct conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	int rc = proact_free(s->w, c->fd, c);
	if (rc == -ENOENT) { /* its first read was refused: never registered */
		close(c->fd);
		conn_release(s, c);
	} else if (rc < 0) {
		fprintf(stderr, "echo_server: proact_free(%d): %s\n", c->fd, proact_strerror(rc));
	}
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
	if (++s->open > s->peak)
		s->peak = s->open;
	/* Echo is request/response: do not let Nagle hold back a short echo. */
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	queue_read(s, c);
}

static void accept_all(struct server *s)
{
	for (;;) {
		int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			conn_open(s, fd);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		/* Out of fds: the queue stays full and raises no new SIGIO, so retry
		   on a timer until a connection has gone. */
		s->accept_paused =
		    errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM;
		if (errno != EAGAIN && !s->accept_paused)
			perror("echo_server: accept4");
		return;
	}
}

/* ---- completions --------------------------------------------------------- */

/* A peer that resets is a client event, not a server error: count apart. */
static void count_failure(struct server *s, int err)
{
	if (err == ECONNRESET || err == EPIPE)
		s->resets++;
	else if (err && err != ECANCELED)
		s->errors++;
}

static void on_read(struct server *s, struct conn *c, const struct proact_completion *r)
{
	if (r->error || r->size == 0) { /* EOF, reset, or cancelled by a close */
		count_failure(s, r->error);
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
		count_failure(s, r->error);
		conn_close(s, c);
		return;
	}
	queue_read(s, c);
}

static void on_signal(struct server *s, const struct proact_completion *r)
{
	if (r->error) {
		fprintf(stderr, "echo_server: signalfd: %s\n", proact_strerror(r->error));
		s->stop = s->failed = true;
		return;
	}
	for (size_t i = 0; i < r->size / sizeof(s->sig[0]); i++) {
		if (s->sig[i].ssi_signo == SIGIO)
			accept_all(s);
		else
			s->stop = true;
	}
	queue_signal_read(s);
}

static void on_completion(struct server *s, const struct proact_completion *r)
{
	if (r->ctx == s->sig) {
		on_signal(s, r);
		return;
	}
	struct conn *c = r->ctx;
	switch (r->op) {
	case PROACT_OP_READ:
		on_read(s, c, r);
		break;
	case PROACT_OP_WRITE:
		on_write(s, c, r);
		break;
	case PROACT_OP_FREE:
		conn_release(s, c);
		if (s->accept_paused) /* an fd came free */
			accept_all(s);
		break;
	default:
		break;
	}
}

static void run(struct server *s)
{
	struct proact_completion comp[BATCH];
	queue_signal_read(s);
	accept_all(s); /* anything that arrived before SIGIO was armed */
	flush(s);
	while (!s->stop) {
		int timeout = s->accept_poll || s->accept_paused ? RETRY_MS : -1;
		int n = proact_wait(s->w, comp, BATCH, timeout);
		if (n < 0) {
			fprintf(stderr, "echo_server: proact_wait: %s\n", proact_strerror(n));
			s->failed = true;
			return;
		}
		for (int i = 0; i < n; i++)
			on_completion(s, &comp[i]);
		if (s->accept_poll || s->accept_paused)
			accept_all(s);
		/* Before the next wait: that call releases the pool buffers the
		   queued writes refer to, unless they are submitted by then. */
		flush(s);
	}
}

static int setup(struct server *s, const struct options *o)
{
	struct proact_options po = {.backend = o->backend, .pool_buffer_size = POOL_BUF_SIZE};
	/* With per-connection buffers the pool would only cost memory. */
	if (o->bufsize)
		po.pool_buffer_count = PROACT_POOL_NONE;
	int rc = proact_watcher_new(&s->w, &po);
	if (rc < 0) {
		fprintf(stderr, "echo_server: proact_watcher_new: %s\n", proact_strerror(rc));
		return -1;
	}
	s->sfd = open_signalfd();
	if (s->sfd < 0) {
		perror("echo_server: signalfd");
		return -1;
	}
	s->lfd = open_listener(o->host, o->port);
	if (s->lfd < 0)
		return -1;
	s->accept_poll = !enable_sigio(s->lfd);
	return 0;
}

int main(int argc, char **argv)
{
	struct options o;
	parse_args(argc, argv, &o);
	raise_fd_limit();
	static struct server s; /* large (the batch), and its address is a ctx */
	s.bufsize = o.bufsize;
	s.lfd = s.sfd = -1;
	s.live.next = s.live.prev = &s.live;
	if (setup(&s, &o) < 0) {
		proact_watcher_destroy(s.w);
		return 1;
	}
	fprintf(stderr, "echo_server: backend %s, %s\n", proact_backend(s.w),
	        o.bufsize ? "per-connection buffers" : "NULL-buffer pool reads");
	print_listening(s.lfd);
	run(&s);
	printf("echo_server: accepted %" PRIu64 " connections, echoed %" PRIu64
	       " bytes, peak %" PRIu64 " open, %" PRIu64 " resets, %" PRIu64 " errors\n",
	       s.accepted, s.bytes, s.peak, s.resets, s.errors);
	fflush(stdout);
	/* Shutdown closes every registered fd (the signalfd too) and delivers
	   nothing more, so the remaining connection states are freed here. */
	proact_watcher_destroy(s.w);
	while (s.live.next != &s.live)
		conn_release(&s, (struct conn *)s.live.next);
	close(s.lfd);
	return s.failed ? 1 : 0;
}
