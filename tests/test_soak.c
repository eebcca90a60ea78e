/* SPDX-License-Identifier: MIT */
/*
 * Checks, for a bounded time, that nothing is lost or leaked under a mixed
 * load (DESIGN rules 2-7 and 12 together): a proact echo server in this
 * process serves clients in a child process (plain non-blocking sockets, not
 * the code under test; a thread on Windows, which has no fork) over 1,000+
 * connections. Each connection carries a
 * seeded pseudo-random stream (its first 4 bytes name the connection); the
 * server mixes pool reads, user-buffer reads and FULL reads, answers with
 * writes and writevs, puts random deadlines on reads and writes, and frees
 * random connections in the middle.
 *
 * At the end, per connection: every byte the client got back equals the byte
 * it sent at that offset (and the server checked every byte it read and
 * every byte each write completion reported); an undisturbed connection got
 * back exactly what it sent; a connection freed at random or cut by a write
 * deadline lost only what its client sent after the last echoed byte. The
 * server's anonymous RSS (RssAnon: the test keeps its own bookkeeping in a
 * shared mapping and preallocated buffers, so what moves is the library's)
 * grows by less than RSS_SLACK over the last 80% of the run, and the fd count
 * is back where it began.
 *
 * PROACT_SOAK_SECONDS sets the load time (default 5) and PROACT_SOAK_CONNS the
 * fewest connections (default 1,000; the short form under Wine takes 200);
 * scripts/soak.sh runs it
 * for 10 minutes per backend. One summary line goes to stdout.
 */
#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#ifndef _WIN32
#include <sys/mman.h>
#include <sys/wait.h>
#endif

#define DEFAULT_SECONDS 5
#define DRAIN_MS        30000 /* after the load: every connection must end by then */
#define MIN_CONNS       1000  /* PROACT_SOAK_CONNS overrides */

static long min_conns = MIN_CONNS;
/*
 * RssAnon may grow this much over the last 80%: allocator noise, not a trend.
 * Under AddressSanitizer freed blocks sit in its quarantine (up to 256 MiB),
 * so RSS says little there; LeakSanitizer is the leak check then.
 */
#if defined(__SANITIZE_ADDRESS__)
#define PROACT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PROACT_ASAN 1
#endif
#endif
#ifdef PROACT_ASAN
#define RSS_SLACK_KB (8192 + rss_base / 20)
#else
#define RSS_SLACK_KB (1024 + rss_base / 50)
#endif

#define SLOTS     128 /* server connections at once (at most 256: see ctx_of) */
#define CLIENTS   48  /* client connections at once */
#define UBUFS     4   /* user buffers per server connection */
#define UBUF_SIZE 16384
#define WTAB      16 /* writes in flight per server connection */
#define MAX_RECS  (1u << 22)
#define SAMPLES   8192

/* ---- the stream and the shared records --------------------------------- */

static uint8_t stream_byte(uint32_t id, uint64_t off)
{
	return off < 4 ? (uint8_t)(id >> (8 * off)) : t_byte(id, off);
}

/* First offset in buf that differs from the stream of id at off, or -1. */
static long stream_check(uint32_t id, uint64_t off, const uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (buf[i] != stream_byte(id, off + i))
			return (long)i;
	return -1;
}

enum { C_DONE = 1, C_COMPLETE = 2, C_BAD = 4, C_CONNFAIL = 8, C_STUCK = 16 };
enum { S_SEEN = 1, S_FREED = 2, S_RANDOM = 4, S_CUT = 8, S_BAD = 16, S_BADW = 32 };

/* One connection, filled by the client (c_) and the server (s_). */
struct rec {
	uint64_t c_sent, c_recv, s_read, s_written;
	uint32_t c_flags, s_flags;
};

struct shared {
	uint32_t nconns;
	struct rec recs[];
};

static struct shared *shared_map(size_t *bytes)
{
	*bytes = sizeof(struct shared) + (size_t)MAX_RECS * sizeof(struct rec);
#ifdef _WIN32 /* the client is a thread: the heap is shared already */
	void *m = calloc(1, *bytes);
	assert_non_null(m);
#else
	void *m = mmap(NULL, *bytes, PROT_READ | PROT_WRITE,
	               MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	assert_true(m != MAP_FAILED);
#endif
	return m;
}

static void shared_unmap(struct shared *sh, size_t bytes)
{
#ifdef _WIN32
	(void)bytes;
	free(sh);
#else
	munmap(sh, bytes);
#endif
}

/* Per thread: the client's own stream where it is a thread of this process. */
static _Thread_local uint64_t rnd_state = 0x2545F4914F6CDD1Dull;

static uint32_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return (uint32_t)(rnd_state >> 11);
}

/* ---- the client child --------------------------------------------------- */

struct cconn {
	int fd;
	uint32_t id;
	uint64_t total, sent, recv;
};

static uint64_t pick_total(void)
{
	uint32_t r = rnd() % 100;
	if (r < 70)
		return 4 + 1 + rnd() % 16384;
	if (r < 95)
		return 4 + 16384 + rnd() % (240 << 10);
	return 4 + (256 << 10) + rnd() % (1792 << 10);
}

static int client_open(struct shared *sh, struct cconn *c, int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (sh->nconns + 1 >= MAX_RECS)
		return -1;
	c->fd = t_socket(AF_INET, SOCK_STREAM, true);
	if (c->fd < 0)
		return -1;
	if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)) != 0 && errno != EINPROGRESS) {
		close(c->fd);
		return -1;
	}
	c->id = ++sh->nconns;
	c->total = pick_total();
	c->sent = c->recv = 0;
	return 0;
}

static void client_finish(struct shared *sh, struct cconn *c, uint32_t flags)
{
	struct rec *r = &sh->recs[c->id];
	r->c_sent = c->sent;
	r->c_recv = c->recv;
	if (c->sent == c->total && c->recv == c->total)
		flags |= C_COMPLETE;
	r->c_flags |= flags | C_DONE;
	close(c->fd);
	c->fd = -1;
}

static void client_send(struct shared *sh, struct cconn *c, uint8_t *tmp)
{
	size_t n = 1 + rnd() % 65536;
	if (n > c->total - c->sent)
		n = (size_t)(c->total - c->sent);
	for (size_t i = 0; i < n; i++)
		tmp[i] = stream_byte(c->id, c->sent + i);
	ssize_t k = send(c->fd, tmp, n, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (k > 0) {
		c->sent += (size_t)k;
		if (c->sent == c->total)
			shutdown(c->fd, SHUT_WR);
	} else if (k < 0 && errno != EAGAIN && errno != EINTR) {
		/* ECONNREFUSED before any byte: the connection never came up */
		client_finish(sh, c, c->sent == 0 && errno == ECONNREFUSED ? C_CONNFAIL : 0);
	}
}

static void client_recv(struct shared *sh, struct cconn *c, uint8_t *tmp)
{
	ssize_t k = recv(c->fd, tmp, 65536, MSG_DONTWAIT);
	if (k > 0) {
		uint32_t bad = stream_check(c->id, c->recv, tmp, (size_t)k) >= 0 ? C_BAD : 0;
		sh->recs[c->id].c_flags |= bad;
		c->recv += (size_t)k;
	} else if (k == 0 || (errno != EAGAIN && errno != EINTR)) {
		client_finish(sh, c, 0); /* EOF, or a reset after a free */
	}
}

static void client_step(struct shared *sh, struct cconn *cs, struct pollfd *p, int n, uint8_t *tmp)
{
	for (int i = 0; i < n; i++) {
		struct cconn *c = &cs[i];
		if (c->fd >= 0 && (p[i].revents & POLLOUT) && c->sent < c->total)
			client_send(sh, c, tmp);
		if (c->fd >= 0 && (p[i].revents & (POLLIN | POLLHUP | POLLERR)))
			client_recv(sh, c, tmp);
	}
}

/* Runs connections for `seconds`, then lets the open ones end; returns
   the client's exit status. */
static int client_main(struct shared *sh, int port, long seconds)
{
	static struct cconn cs[CLIENTS];
	static struct pollfd p[CLIENTS];
	static uint8_t tmp[65536];
	rnd_state ^= (uint64_t)getpid() << 20;
	for (int i = 0; i < CLIENTS; i++)
		cs[i].fd = -1;
	uint64_t t0 = proact_now(), stop_open = t0 + (uint64_t)seconds * 1000000000u;
	uint64_t hard = UINT64_MAX; /* set once the last connection is opened */
	for (;;) {
		uint64_t now = proact_now();
		int active = 0;
		int want = now < stop_open || sh->nconns < (uint32_t)min_conns;
		/* The drain starts when opening stops: on a slow machine (an
		   emulator) the minimum of connections can take beyond the load time. */
		if (!want && hard == UINT64_MAX)
			hard = now + (uint64_t)DRAIN_MS * 1000000u;
		for (int i = 0; i < CLIENTS; i++) {
			if (cs[i].fd < 0 && want && now < hard &&
			    client_open(sh, &cs[i], port) != 0)
				return 3;
			p[i].fd = cs[i].fd;
			p[i].events = (short)(POLLIN | (cs[i].sent < cs[i].total ? POLLOUT : 0));
			p[i].revents = 0;
			active += cs[i].fd >= 0;
		}
		if (active == 0 || now >= hard)
			break;
		if (poll(p, CLIENTS, 10) > 0)
			client_step(sh, cs, p, CLIENTS, tmp);
	}
	for (int i = 0; i < CLIENTS; i++)
		if (cs[i].fd >= 0)
			client_finish(sh, &cs[i], C_STUCK);
	return 0;
}

/* The client: a child process, or on Windows a thread. */
struct client {
	struct shared *sh;
	int port;
	long seconds;
#ifdef _WIN32
	t_thread *th;
	atomic_int status; /* -1 while it runs */
#else
	pid_t pid;
#endif
};

#ifdef _WIN32
static void *client_thread(void *arg)
{
	struct client *cl = arg;
	atomic_store(&cl->status, client_main(cl->sh, cl->port, cl->seconds));
	return NULL;
}

static void client_start(struct client *cl, int lfd)
{
	(void)lfd;
	atomic_store(&cl->status, -1);
	cl->th = t_thread_start(client_thread, cl);
}

/* Its exit status once it ended, else -1. */
static int client_status(struct client *cl)
{
	int status = atomic_load(&cl->status);
	if (status >= 0 && cl->th) {
		assert_int_equal(t_thread_join_within(cl->th, 10), 0);
		cl->th = NULL;
	}
	return status;
}

/* It did not end in time: a thread cannot be killed, so the test fails here. */
static int client_stop(struct client *cl)
{
	(void)cl;
	fail_msg("soak: the client thread did not end");
	return -1;
}
#else
static void client_start(struct client *cl, int lfd)
{
	cl->pid = fork();
	assert_true(cl->pid >= 0);
	if (cl->pid == 0) {
		close(lfd);
		_exit(client_main(cl->sh, cl->port, cl->seconds));
	}
}

static int exit_code(int status)
{
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static int client_status(struct client *cl)
{
	int status;
	return waitpid(cl->pid, &status, WNOHANG) == cl->pid ? exit_code(status) : -1;
}

static int client_stop(struct client *cl)
{
	int status;
	kill(cl->pid, SIGKILL); /* the status then says it was killed */
	waitpid(cl->pid, &status, 0);
	return exit_code(status);
}
#endif

/* ---- the server ---------------------------------------------------------- */

enum kind { K_HDR = 1, K_READ, K_WRITE, K_FREE, K_ACCEPT };
#define POOL_SUB 7

struct pwrite {
	uint64_t off;
	size_t len;
	int ub; /* user buffer it sends, or -1 (pool or header) */
	int deadline;
	const uint8_t *buf;
	struct iovec iov[3];
	int iovcnt;
	int used;
};

struct slot {
	int fd;
	uint32_t gen, id;
	int active, closing, eof, barrier;
	int reads_out, writes_out;
	uint64_t rd_off, wr_off, s_read, s_written;
	uint32_t flags;
	uint8_t hdr[4];
	int ub_busy[UBUFS];
	struct pwrite wt[WTAB];
	uint8_t ubuf[UBUFS][UBUF_SIZE];
};

struct stats {
	uint64_t completions, frees_random, frees_cut, rd_timeouts, wr_retries, accepts;
	uint64_t unexpected, stale;
	long rss_first, rss_last, rss_max;
};

struct server {
	proact_watcher *w;
	struct shared *sh;
	int lfd, accepts_out, nactive, accepting;
	struct slot *slots;
	struct stats st;
	long rss[SAMPLES];
	int nrss;
};

/* A completion's ctx: slot index, 16 bits of its generation, kind and sub,
   in 32 bits so that it fits a pointer on 32-bit targets too. */
#define CTX_GEN(gen) ((uint32_t)(gen)&0xffffu)
_Static_assert(SLOTS <= 256, "the slot index has 8 bits of a ctx");

static void *ctx_of(const struct server *s, const struct slot *sl, enum kind k, int sub)
{
	uint32_t idx = sl ? (uint32_t)(sl - s->slots) : 0, gen = sl ? CTX_GEN(sl->gen) : 0;
	return (void *)(uintptr_t)(idx << 24 | gen << 8 | (uint32_t)k << 4 | (uint32_t)sub);
}

static void unexpected(struct server *s, const char *what, int err)
{
	if (s->st.unexpected++ < 10)
		print_message("soak: unexpected %s (error %d)\n", what, err);
}

static void start_free(struct server *s, struct slot *sl, uint32_t why)
{
	if (sl->closing)
		return;
	sl->closing = 1;
	sl->flags |= why;
	int rc = proact_free(s->w, sl->fd, ctx_of(s, sl, K_FREE, 0));
	if (rc != 0)
		unexpected(s, "proact_free", rc);
}

static int free_ub(const struct slot *sl)
{
	for (int i = 0; i < UBUFS; i++)
		if (!sl->ub_busy[i])
			return i;
	return -1;
}

static int free_wt(const struct slot *sl)
{
	for (int i = 0; i < WTAB; i++)
		if (!sl->wt[i].used)
			return i;
	return -1;
}

static uint64_t maybe_deadline(int percent, uint32_t max_ms)
{
	if ((int)(rnd() % 100) >= percent)
		return 0;
	return proact_now() + (uint64_t)(rnd() % (max_ms * 1000u + 1)) * 1000u;
}

/* Queues one read: into the pool, a user buffer, or FULL into a user buffer. */
static int submit_read(struct server *s, struct slot *sl)
{
	int ub = free_ub(sl), how = (int)(rnd() % 3);
	if (ub < 0 || how == 0)
		return proact_read(s->w, sl->fd, NULL, rnd() % (UBUF_SIZE + 1),
		                   ctx_of(s, sl, K_READ, POOL_SUB));
	size_t len = 1 + rnd() % UBUF_SIZE;
	uint32_t flags = how == 2 ? PROACT_FULL : 0;
	int rc = proact_read_deadline(s->w, sl->fd, sl->ubuf[ub], len, flags,
	                              maybe_deadline(10, 20), ctx_of(s, sl, K_READ, ub));
	if (rc == 0)
		sl->ub_busy[ub] = 1;
	return rc;
}

/* Keeps up to two reads queued, unless writes are backed up or must settle. */
static void pump(struct server *s, struct slot *sl)
{
	while (!sl->closing && !sl->eof && !sl->barrier && sl->reads_out < 2 &&
	       sl->writes_out < WTAB - 4) {
		int rc = submit_read(s, sl);
		if (rc != 0) {
			unexpected(s, "read submission", rc);
			return;
		}
		sl->reads_out++;
	}
	if (sl->eof && !sl->reads_out && !sl->writes_out)
		start_free(s, sl, 0);
}

static int submit_write(struct server *s, struct slot *sl, int t, uint64_t dl)
{
	struct pwrite *p = &sl->wt[t];
	void *ctx = ctx_of(s, sl, K_WRITE, t);
	if (p->iovcnt)
		return proact_writev(s->w, sl->fd, p->iov, p->iovcnt, ctx);
	return proact_write_deadline(s->w, sl->fd, p->buf, p->len, dl, ctx);
}

/* Echoes len bytes at buf: a write (some with a deadline) or a 3-part writev. */
static void echo(struct server *s, struct slot *sl, const uint8_t *buf, size_t len, int ub)
{
	int t = free_wt(sl);
	if (t < 0) {
		unexpected(s, "write table full", 0);
		return;
	}
	struct pwrite *p = &sl->wt[t];
	*p = (struct pwrite){.off = sl->wr_off, .len = len, .ub = ub, .buf = buf, .used = 1};
	uint64_t dl = 0;
	if (rnd() % 4 == 0) {
		size_t a = rnd() % (len + 1), b = a + rnd() % (len - a + 1);
		p->iov[0] = (struct iovec){(void *)buf, a};
		p->iov[1] = (struct iovec){(void *)(buf + a), b - a};
		p->iov[2] = (struct iovec){(void *)(buf + b), len - b};
		p->iovcnt = 3;
	} else if (!sl->writes_out && !sl->reads_out && (dl = maybe_deadline(5, 3)) != 0) {
		/* Alone, and no read can add a write behind it: an expiry before
		   any byte leaves no gap. Nothing more is queued until it settles. */
		p->deadline = 1;
		sl->barrier = 1;
	}
	int rc = submit_write(s, sl, t, dl);
	if (rc != 0) {
		unexpected(s, "write submission", rc);
		p->used = 0;
		return;
	}
	sl->wr_off += len;
	sl->writes_out++;
}

static void on_header(struct server *s, struct slot *sl, const struct proact_completion *c)
{
	sl->reads_out--;
	if (c->error || c->size != 4) {
		unexpected(s, "header read", c->error);
		start_free(s, sl, 0);
		return;
	}
	sl->id = (uint32_t)sl->hdr[0] | (uint32_t)sl->hdr[1] << 8 | (uint32_t)sl->hdr[2] << 16 |
	         (uint32_t)sl->hdr[3] << 24;
	if (sl->id == 0 || sl->id >= MAX_RECS) {
		unexpected(s, "connection id", 0);
		sl->id = 0;
		start_free(s, sl, 0);
		return;
	}
	s->sh->recs[sl->id].s_flags |= S_SEEN;
	sl->rd_off = 4;
	sl->s_read = 4;
	echo(s, sl, sl->hdr, 4, -1);
	pump(s, sl);
}

static void on_read(struct server *s, struct slot *sl, const struct proact_completion *c, int sub)
{
	sl->reads_out--;
	int ub = sub == POOL_SUB ? -1 : sub;
	if (c->error == ETIMEDOUT)
		s->st.rd_timeouts++;
	else if (c->error && c->error != ECANCELED)
		unexpected(s, "read error", c->error);
	if (c->size > 0 && (c->error == 0 || c->error == ETIMEDOUT)) {
		long at = stream_check(sl->id, sl->rd_off, c->buf, c->size);
		if (at >= 0) {
			sl->flags |= S_BAD;
			print_message("soak: connection %u: read byte %llu differs\n", sl->id,
			              (unsigned long long)sl->rd_off + (unsigned long long)at);
		}
		sl->rd_off += c->size;
		sl->s_read += c->size;
		if (!sl->closing) {
			echo(s, sl, c->buf, c->size, ub);
			ub = -1; /* the write owns it now */
		}
	} else if (c->size == 0 && c->error == 0) {
		sl->eof = 1;
	}
	if (c->error == ECANCELED && c->size > 0)
		sl->s_read += c->size; /* read, never echoed: lost with the free */
	if (ub >= 0)
		sl->ub_busy[ub] = 0;
	if (!sl->closing && c->size > 0 && rnd() % 400 == 0)
		start_free(s, sl, S_RANDOM);
	pump(s, sl);
}

/* Checks what a write completion says went out against the stream. */
static void check_written(struct slot *sl, const struct pwrite *p, size_t size)
{
	size_t done = 0;
	for (int i = 0; i < (p->iovcnt ? p->iovcnt : 1) && done < size; i++) {
		const uint8_t *b = p->iovcnt ? p->iov[i].iov_base : p->buf;
		size_t n = p->iovcnt ? p->iov[i].iov_len : p->len;
		n = n < size - done ? n : size - done;
		long at = n ? stream_check(sl->id, p->off + done, b, n) : -1;
		if (at >= 0) {
			sl->flags |= S_BADW;
			print_message("soak: connection %u: written byte %llu differs (%s)\n",
			              sl->id,
			              (unsigned long long)(p->off + done) + (unsigned long long)at,
			              p->ub >= 0 ? "user buffer" : "pool buffer");
		}
		done += n;
	}
}

static void on_write(struct server *s, struct slot *sl, const struct proact_completion *c, int t)
{
	struct pwrite *p = &sl->wt[t];
	check_written(sl, p, c->size);
	sl->s_written += c->size;
	if (c->error == ETIMEDOUT && c->size == 0 && !sl->closing) {
		s->st.wr_retries++; /* nothing went out: the stream is intact, send again */
		int rc = submit_write(s, sl, t, 0);
		if (rc != 0)
			unexpected(s, "write resubmission", rc);
		return;
	}
	sl->writes_out--;
	if (p->ub >= 0)
		sl->ub_busy[p->ub] = 0;
	p->used = 0;
	if (p->deadline)
		sl->barrier = 0;
	if (c->error == ETIMEDOUT) {
		s->st.frees_cut += !sl->closing;
		start_free(s, sl, S_CUT);
	} else if (c->error == 0 && c->size != p->len) {
		unexpected(s, "short write", 0);
	} else if (c->error && c->error != ECANCELED &&
	           !(c->error == EPIPE && (sl->flags & S_CUT))) {
		unexpected(s, "write error", c->error);
	}
	pump(s, sl);
}

static void on_free(struct server *s, struct slot *sl)
{
	if (sl->id) {
		struct rec *r = &s->sh->recs[sl->id];
		r->s_read = sl->s_read;
		r->s_written = sl->s_written;
		r->s_flags |= sl->flags | S_FREED;
	}
	s->st.frees_random += (sl->flags & S_RANDOM) != 0;
	uint32_t gen = sl->gen + 1;
	memset(sl, 0, offsetof(struct slot, ubuf));
	sl->gen = gen;
	sl->fd = -1;
	s->nactive--;
}

static void on_accept(struct server *s, const struct proact_completion *c)
{
	s->accepts_out--;
	if (c->error) {
		if (c->error != ECANCELED)
			unexpected(s, "accept", c->error);
		return;
	}
	s->st.accepts++;
	struct slot *sl = NULL;
	for (int i = 0; i < SLOTS && !sl; i++)
		if (!s->slots[i].active)
			sl = &s->slots[i];
	if (!sl) {
		unexpected(s, "no free slot", 0);
		close(c->newfd);
		return;
	}
	sl->active = 1;
	sl->fd = c->newfd;
	s->nactive++;
	if (rnd() % 4 == 0) { /* small send buffers: writes go out in parts */
		int sz = 4096;
		setsockopt(sl->fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	}
	int rc = proact_read_full(s->w, sl->fd, sl->hdr, 4, ctx_of(s, sl, K_HDR, 0));
	if (rc != 0) {
		unexpected(s, "header read submission", rc);
		return;
	}
	sl->reads_out = 1;
}

static void dispatch(struct server *s, const struct proact_completion *c)
{
	uint32_t v = (uint32_t)(uintptr_t)c->ctx;
	enum kind k = (enum kind)(v >> 4 & 0xf);
	int sub = (int)(v & 0xf);
	s->st.completions++;
	if (k == K_ACCEPT) {
		on_accept(s, c);
		return;
	}
	struct slot *sl = &s->slots[v >> 24];
	if (k == K_FREE && (int)c->fd == s->lfd) {
		s->lfd = -1;
		return;
	}
	if (!sl->active || CTX_GEN(sl->gen) != (v >> 8 & 0xffffu) || (int)c->fd != sl->fd) {
		s->st.stale++;
		return;
	}
	if (k == K_HDR)
		on_header(s, sl, c);
	else if (k == K_READ)
		on_read(s, sl, c, sub);
	else if (k == K_WRITE)
		on_write(s, sl, c, sub);
	else if (k == K_FREE)
		on_free(s, sl);
}

static void keep_accepting(struct server *s)
{
	while (s->accepting && s->accepts_out < 2) {
		int rc = proact_accept(s->w, s->lfd, NULL, 0, ctx_of(s, NULL, K_ACCEPT, 0));
		if (rc != 0) {
			unexpected(s, "accept submission", rc);
			return;
		}
		s->accepts_out++;
	}
}

static void sample_rss(struct server *s)
{
	if (s->nrss < SAMPLES)
		s->rss[s->nrss++] = t_status_kb("RssAnon");
}

/* Serves until the child is gone and every connection was freed. */
static int serve(struct server *s, struct client *child, long seconds)
{
	static struct proact_completion c[256];
	uint64_t t0 = proact_now(), load_end = t0 + (uint64_t)seconds * 1000000000u;
	/* A hang guard only, below ctest's 120 s for the default 5 s of load. */
	uint64_t hard = load_end + (uint64_t)(DRAIN_MS + 70000) * 1000000u;
	uint64_t every = (uint64_t)seconds * 1000000000u / (SAMPLES / 2), next = t0;
	every = every < 100000000u ? 100000000u : every;
	int status = -1;
	while (proact_now() < hard && (s->nactive || status < 0 || s->lfd >= 0)) {
		keep_accepting(s);
		int n = proact_wait(s->w, c, 256, 20);
		if (n < 0)
			fail_msg("proact_wait: %s", proact_strerror(n));
		for (int i = 0; i < n; i++)
			dispatch(s, &c[i]);
		uint64_t now = proact_now();
		if (now >= next && now < load_end) {
			sample_rss(s);
			next = now + every;
		}
		if (status < 0)
			status = client_status(child);
		if (status >= 0 && s->accepting && !s->nactive) {
			s->accepting = 0; /* the client is gone: close the listener */
			assert_int_equal(proact_free(s->w, s->lfd, ctx_of(s, NULL, K_FREE, 0)), 0);
		}
	}
	if (status < 0) {
		print_message("soak: the client or the server did not finish in time (%u "
		              "connections opened)\n",
		              s->sh->nconns);
		status = client_stop(child);
	}
	return status;
}

/* ---- the checks ----------------------------------------------------------- */

struct totals {
	uint64_t sent, echoed, lost_free, lost_cut;
	uint32_t bad, disturbed;
};

/* One connection's books; returns a reason it does not balance, or NULL. */
static const char *check_rec(const struct rec *r, struct totals *t)
{
	if (!(r->c_flags & C_DONE) || (r->c_flags & (C_STUCK | C_CONNFAIL)))
		return "client did not finish";
	if (!(r->s_flags & S_SEEN) || !(r->s_flags & S_FREED))
		return "server never saw or never freed it";
	if ((r->c_flags & C_BAD) || (r->s_flags & (S_BAD | S_BADW)))
		return "a byte differs from the stream";
	t->sent += r->c_sent;
	t->echoed += r->c_recv;
	if (!(r->s_flags & (S_RANDOM | S_CUT))) {
		if (!(r->c_flags & C_COMPLETE) || r->s_read != r->c_sent ||
		    r->s_written != r->c_sent)
			return "undisturbed, yet not every byte came back";
		return NULL;
	}
	t->disturbed++;
	if (r->c_recv > r->s_written || r->s_written > r->s_read || r->s_read > r->c_sent)
		return "disturbed: echoed <= written <= read <= sent does not hold";
	uint64_t lost = r->c_sent - r->c_recv;
	if (r->s_flags & S_CUT)
		t->lost_cut += lost;
	else
		t->lost_free += lost;
	return NULL;
}

static void check_books(const struct shared *sh, struct totals *t)
{
	int bad = 0;
	for (uint32_t id = 1; id <= sh->nconns; id++) {
		const struct rec *r = &sh->recs[id];
		const char *why = check_rec(r, t);
		if (why && bad++ < 10)
			print_message(
			    "soak: connection %u: %s (client %llu sent %llu back, flags %x; "
			    "server read %llu wrote %llu, flags %x)\n",
			    id, why, (unsigned long long)r->c_sent, (unsigned long long)r->c_recv,
			    r->c_flags, (unsigned long long)r->s_read,
			    (unsigned long long)r->s_written, r->s_flags);
	}
	t->bad = (uint32_t)bad;
	assert_int_equal(bad, 0);
	assert_int_equal(t->sent, t->echoed + t->lost_free + t->lost_cut);
}

/* Growth of RssAnon from the 20% mark to the end of the load. */
static void check_rss(struct server *s)
{
	assert_true(s->nrss >= 5);
	long rss_base = s->rss[s->nrss / 5], max = rss_base;
	for (int i = s->nrss / 5; i < s->nrss; i++)
		max = s->rss[i] > max ? s->rss[i] : max;
	s->st.rss_first = rss_base;
	s->st.rss_last = s->rss[s->nrss - 1];
	s->st.rss_max = max;
	if (s->st.rss_last - rss_base > RSS_SLACK_KB)
		fail_msg("soak: RssAnon grew from %ld to %ld KiB over the last 80%% of the run",
		         rss_base, s->st.rss_last);
}

static void summary(const struct server *s, const struct totals *t, long seconds, int fd0, int fd1)
{
	const double mib = 1024.0 * 1024.0;
	printf("soak %s: %lds, %u connections, %.1f MiB sent, %.1f MiB echoed, "
	       "%llu completions, %llu random frees (%.1f KiB lost), %llu write-deadline cuts "
	       "(%.1f KiB lost), %llu read deadlines, %llu write deadlines resent, "
	       "RssAnon %ld/%ld KiB (first/last of the last 80%%, max %ld), fds %d/%d\n",
	       t_backend(), seconds, s->sh->nconns, (double)t->sent / mib, (double)t->echoed / mib,
	       (unsigned long long)s->st.completions, (unsigned long long)s->st.frees_random,
	       (double)t->lost_free / 1024.0, (unsigned long long)s->st.frees_cut,
	       (double)t->lost_cut / 1024.0, (unsigned long long)s->st.rd_timeouts,
	       (unsigned long long)s->st.wr_retries, s->st.rss_first, s->st.rss_last, s->st.rss_max,
	       fd0, fd1);
	fflush(stdout);
}

static void test_soak(void **state)
{
	(void)state;
	static struct server srv; /* static: a failed check leaks nothing */
	struct server *s = &srv;
	long seconds = t_env_long("PROACT_SOAK_SECONDS", DEFAULT_SECONDS);
	min_conns = t_env_long("PROACT_SOAK_CONNS", MIN_CONNS);
	int fd0 = t_fd_count();
	size_t map_bytes;
	s->sh = shared_map(&map_bytes);
	int port;
	s->lfd = t_listener(&port);
	static struct client cl;
	cl = (struct client){.sh = s->sh, .port = port, .seconds = seconds};
	client_start(&cl, s->lfd);
	/* Everything of the test's own is allocated and touched up front. */
	s->slots = malloc(SLOTS * sizeof(*s->slots));
	assert_non_null(s->slots);
	memset(s->slots, 0, SLOTS * sizeof(*s->slots));
	for (int i = 0; i < SLOTS; i++)
		s->slots[i].fd = -1;
	/* A pool small enough to be all touched in the first seconds: its pages
	   then cannot pass for growth later. It also runs dry now and then. */
	struct proact_options o = {.pool_buffer_count = 64};
	s->w = t_watcher(&o);
	s->accepting = 1;
	int status = serve(s, &cl, seconds);
	proact_watcher_destroy(s->w);
	free(s->slots);
	int fd1 = t_fd_count();

	assert_int_equal(status, 0);
	assert_int_equal(s->nactive, 0);
	assert_int_equal(s->st.unexpected, 0);
	assert_int_equal(s->st.stale, 0);
	assert_true(s->sh->nconns >= (uint32_t)min_conns);
	assert_int_equal(s->st.accepts, s->sh->nconns);
	struct totals t = {0};
	check_books(s->sh, &t);
	check_rss(s);
	summary(s, &t, seconds, fd0, fd1);
	assert_int_equal(fd1, fd0);
	shared_unmap(s->sh, map_bytes);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_soak),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
