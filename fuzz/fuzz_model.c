/* SPDX-License-Identifier: MIT */
/*
 * fuzz_model.c - slots, the byte streams and the request records of the model.
 *
 * Library-to-peer bytes: a write's completion says how many of its bytes went
 * out; those must be the next bytes the peer reads, in completion order, with
 * nothing in between. The peer may read them before the completion arrives,
 * so unmatched bytes wait in fz_bytes on whichever side got there first.
 * Peer-to-library bytes are a pure function of the offset (fz_peer_byte), so
 * a read is checked against the offset the previous reads reached.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_model.h"

#define LIB_SNDBUF 4096 /* small, so writes of a few KiB already go out in parts */

bool fz_trace;

void fz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "proact_fuzz: %s:%d: check failed: %s\n  ", file, line, cond);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

uint8_t fz_peer_byte(uint32_t seed, uint64_t i)
{
	uint64_t x = (i + 1) * 0x9e3779b97f4a7c15ull ^ seed;
	x ^= x >> 31;
	x *= 0xbf58476d1ce4e5b9ull;
	return (uint8_t)(x >> 40);
}

/* ---- sockets ---- */

/* The harness's own descriptors stay out of any child (libFuzzer's fork
   mode); fcntl rather than SOCK_CLOEXEC, which macOS lacks. */
static int cloexec(int fd)
{
	if (fd >= 0)
		fcntl(fd, F_SETFD, FD_CLOEXEC);
	return fd;
}

/* One loopback listener for the whole process: TCP slots connect to it. */
static int tcp_listener(struct sockaddr_in *addr)
{
	static int lfd = -1;
	static struct sockaddr_in a;
	if (lfd < 0) {
		a.sin_family = AF_INET;
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		socklen_t len = sizeof(a);
		lfd = cloexec(socket(AF_INET, SOCK_STREAM, 0));
		FZ_CHECK(lfd >= 0, "socket: %s", strerror(errno));
		FZ_CHECK(bind(lfd, (struct sockaddr *)&a, sizeof(a)) == 0, "bind: %s",
		         strerror(errno));
		FZ_CHECK(listen(lfd, 16) == 0, "listen: %s", strerror(errno));
		FZ_CHECK(getsockname(lfd, (struct sockaddr *)&a, &len) == 0, "getsockname");
	}
	*addr = a;
	return lfd;
}

void fz_init(void)
{
	struct sockaddr_in a;
	tcp_listener(&a);
}

/* Both ends reset on close: thousands of inputs leave no TIME_WAIT behind. */
static void no_linger(int fd)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

/* A blocking connect that a signal (libFuzzer's timeout alarm) interrupted
   goes on in the background: wait for it, then take its result. */
static int connect_all(int fd, const struct sockaddr_in *a)
{
	if (connect(fd, (const struct sockaddr *)a, sizeof(*a)) == 0)
		return 0;
	if (errno != EINTR)
		return -1;
	struct pollfd p = {.fd = fd, .events = POLLOUT};
	while (poll(&p, 1, -1) < 0)
		if (errno != EINTR)
			return -1;
	int err = 0;
	socklen_t len = sizeof(err);
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
		return -1;
	errno = err;
	return err ? -1 : 0;
}

static void tcp_pair(int sv[2])
{
	struct sockaddr_in a;
	int lfd = tcp_listener(&a);
	sv[0] = cloexec(socket(AF_INET, SOCK_STREAM, 0));
	FZ_CHECK(sv[0] >= 0, "socket: %s", strerror(errno));
	FZ_CHECK(connect_all(sv[0], &a) == 0, "connect: %s", strerror(errno));
	sv[1] = cloexec(accept(lfd, NULL, NULL));
	FZ_CHECK(sv[1] >= 0, "accept: %s", strerror(errno));
	no_linger(sv[0]);
	no_linger(sv[1]);
}

static ino_t inode_of(int fd)
{
	struct stat st;
	return fstat(fd, &st) == 0 ? st.st_ino : 0;
}

void fz_slot_open(struct fz *m, int s, bool tcp, bool blocking)
{
	struct fz_slot *sl = &m->slot[s];
	int sv[2];
	if (tcp)
		tcp_pair(sv);
	else
		FZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair: %s",
		         strerror(errno));
	cloexec(sv[0]);
	cloexec(sv[1]);
	int sndbuf = LIB_SNDBUF;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	if (!blocking)
		fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
	uint8_t *keep = sl->out.b;
	size_t cap = sl->out.cap;
	memset(sl, 0, sizeof(*sl));
	sl->out.b = keep;
	sl->out.cap = cap;
	sl->state = S_OPEN;
	sl->tcp = tcp;
	sl->was_blocking = blocking;
	sl->lib = sv[0];
	sl->peer = sv[1];
	sl->ino = inode_of(sv[0]);
	m->rng = m->rng * 1103515245u + 12345u;
	sl->seed = m->rng;
}

/* End of an input: close what the program still owns. */
void fz_slot_release(struct fz *m, int s)
{
	struct fz_slot *sl = &m->slot[s];
	if (sl->state != S_NONE && !sl->peer_closed)
		close(sl->peer);
	if (sl->state == S_OPEN)
		close(sl->lib);
	free(sl->out.b);
	memset(sl, 0, sizeof(*sl));
}

/* ---- library-to-peer bytes ---- */

static void bytes_push(struct fz_bytes *q, const uint8_t *p, size_t n, bool exp)
{
	if (q->len == 0)
		q->off = 0;
	if (q->off + q->len + n > q->cap) {
		if (q->off) {
			memmove(q->b, q->b + q->off, q->len);
			q->off = 0;
		}
		if (q->len + n > q->cap) {
			q->cap = (q->len + n) * 2;
			q->b = realloc(q->b, q->cap);
			FZ_CHECK(q->b, "out of memory");
		}
	}
	memcpy(q->b + q->off + q->len, p, n);
	q->len += n;
	q->exp_ahead = exp;
}

/* Matches n bytes from one side against what the other side left. */
static void bytes_match(struct fz_slot *sl, const uint8_t *p, size_t n, bool exp)
{
	struct fz_bytes *q = &sl->out;
	if (q->len > 0 && q->exp_ahead != exp) {
		size_t k = n < q->len ? n : q->len;
		for (size_t i = 0; i < k; i++)
			FZ_CHECK(q->b[q->off + i] == p[i],
			         "fd %d: the peer received a byte no write sent (%zu bytes in)",
			         sl->lib, i);
		q->off += k;
		q->len -= k;
		p += k;
		n -= k;
	}
	if (n > 0)
		bytes_push(q, p, n, exp);
}

void fz_out_expect(struct fz_slot *sl, const uint8_t *p, size_t n)
{
	bytes_match(sl, p, n, true);
}

/* ---- the peer end, driven with plain syscalls ---- */

void fz_peer_write(struct fz *m, int s, size_t n)
{
	static uint8_t tmp[65536];
	struct fz_slot *sl = &m->slot[s];
	if (sl->state == S_NONE || sl->peer_closed || sl->peer_shut)
		return;
	if (n > sizeof(tmp))
		n = sizeof(tmp);
	for (size_t i = 0; i < n; i++)
		tmp[i] = fz_peer_byte(sl->seed, sl->psent + i);
	ssize_t r = send(sl->peer, tmp, n, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (r > 0)
		sl->psent += (uint64_t)r;
}

/* Reads what the library wrote; returns false at end of stream or error. */
static bool peer_read_once(struct fz *m, int s, size_t max)
{
	static uint8_t tmp[65536];
	struct fz_slot *sl = &m->slot[s];
	if (max > sizeof(tmp))
		max = sizeof(tmp);
	ssize_t r = recv(sl->peer, tmp, max, MSG_DONTWAIT);
	if (r > 0) {
		bytes_match(sl, tmp, (size_t)r, false);
		return true;
	}
	if (r == 0)
		FZ_CHECK(sl->state == S_DEAD || sl->state == S_CLOSING || m->shut,
		         "fd %d: the peer saw end of stream, but the fd is not closed", sl->lib);
	return false;
}

void fz_peer_read(struct fz *m, int s, size_t max)
{
	struct fz_slot *sl = &m->slot[s];
	if (sl->state != S_NONE && !sl->peer_closed)
		peer_read_once(m, s, max);
}

void fz_peer_drain(struct fz *m, int s)
{
	struct fz_slot *sl = &m->slot[s];
	if (sl->state == S_NONE || sl->peer_closed)
		return;
	while (peer_read_once(m, s, 65536))
		;
}

/* ---- request records ---- */

struct fz_rec *fz_rec_new(struct fz *m, int s, uint8_t kind, uint8_t op)
{
	if (m->nrec == FZ_RECS)
		return NULL;
	struct fz_rec *r = &m->rec[m->nrec++];
	memset(r, 0, sizeof(*r));
	r->kind = kind;
	r->op = op;
	r->slot = (uint8_t)s;
	r->fd = m->slot[s].lib;
	return r;
}

int fz_rec_id(const struct fz *m, const struct fz_rec *r)
{
	return (int)(r - m->rec);
}

/* ctx is the record's id plus one: never NULL, and never dereferenced. */
void *fz_ctx(const struct fz *m, const struct fz_rec *r)
{
	return (void *)(uintptr_t)(fz_rec_id(m, r) + 1);
}

/* The library counts a request until it completes, the model until it is
   delivered: -EAGAIN is only possible once the model's count reached the limit. */
bool fz_may_eagain(const struct fz *m, int s)
{
	const struct fz_slot *sl = &m->slot[s];
	return (uint32_t)(sl->npend[0] + sl->npend[1]) >= m->max_per_fd;
}

void fz_rec_drop(struct fz_rec *r)
{
	free(r->buf);
	free(r->iov);
	r->buf = NULL;
	r->iov = NULL;
	r->state = R_DONE;
}

/* The outcome of a submission: rc must be expect, or a limit the model allows. */
void fz_submitted(struct fz *m, struct fz_rec *r, int rc, int expect)
{
	struct fz_slot *sl = &m->slot[r->slot];
	FZ_TRACE("submit #%d fd %d kind %d len %zu full %d deadline %llu: %d\n", fz_rec_id(m, r),
	         r->fd, r->kind, r->len, r->full, (unsigned long long)r->deadline, rc);
	if (rc != 0) {
		bool ok = rc == expect || (m->shut && rc == -ESHUTDOWN) ||
		          (rc == -EAGAIN && expect == 0 && fz_may_eagain(m, r->slot));
		FZ_CHECK(ok, "fd %d: submission (kind %d) returned %d, expected %d", r->fd, r->kind,
		         rc, expect);
		if (expect == 0 && sl->state == S_OPEN)
			sl->tried = true;
		fz_rec_drop(r);
		return;
	}
	FZ_CHECK(expect == 0, "fd %d: submission (kind %d) succeeded, expected %d", r->fd, r->kind,
	         expect);
	FZ_CHECK(fcntl(r->fd, F_GETFL) & O_NONBLOCK, "fd %d: registered but blocking", r->fd);
	int dir = r->kind == K_READ || r->kind == K_POOL ? 0 : 1;
	sl->pend[dir][sl->npend[dir]++] = (uint16_t)fz_rec_id(m, r);
	r->state = R_PENDING;
	m->pending++;
	if (sl->state == S_OPEN)
		sl->state = S_REG;
}

/* proact_submit stopped at r without saying why: a reason must exist. */
void fz_refused(struct fz *m, struct fz_rec *r, int expect)
{
	FZ_CHECK(expect != 0 || fz_may_eagain(m, r->slot),
	         "fd %d: proact_submit refused a valid request (kind %d)", r->fd, r->kind);
	fz_rec_drop(r);
}

/* A timer has no fd and no limit but the watcher's (never reached here). */
void fz_timer_submitted(struct fz *m, struct fz_rec *r, int rc)
{
	FZ_TRACE("timer #%d deadline %llu id %#llx: %d\n", fz_rec_id(m, r),
	         (unsigned long long)r->deadline, (unsigned long long)r->timer_id, rc);
	FZ_CHECK(rc == 0 || (m->shut && rc == -ESHUTDOWN), "timer submission returned %d", rc);
	if (rc != 0) {
		r->timer_id = 0;
		fz_rec_drop(r);
		return;
	}
	r->state = R_PENDING;
	m->pending++;
}

/* A pending timer is cancelled (0) or has fired (-ENOENT, only once its time
   came); any other id is spent: a failed submission's, a delivered one's. */
void fz_timer_cancelled(struct fz *m, struct fz_rec *r, int rc)
{
	FZ_TRACE("cancel timer #%d id %#llx: %d\n", fz_rec_id(m, r),
	         (unsigned long long)r->timer_id, rc);
	bool live = r->state == R_PENDING && r->timer_id && !r->cancelled;
	if (rc == 0) {
		FZ_CHECK(live, "timer #%d: cancel of a spent id returned 0", fz_rec_id(m, r));
		r->cancelled = true;
		return;
	}
	FZ_CHECK(rc == -ENOENT || (m->shut && rc == -ESHUTDOWN), "timer #%d: cancel returned %d",
	         fz_rec_id(m, r), rc);
	if (live && rc == -ENOENT)
		FZ_CHECK(proact_now() >= r->deadline, "timer #%d: -ENOENT before its deadline",
		         fz_rec_id(m, r));
}

void fz_close_called(struct fz *m, struct fz_rec *r, int rc, bool detach)
{
	struct fz_slot *sl = &m->slot[r->slot];
	FZ_TRACE("%s #%d fd %d: %d\n", detach ? "detach" : "free", fz_rec_id(m, r), r->fd, rc);
	int expect = sl->state == S_REG ? 0 : sl->state == S_CLOSING ? -EALREADY : -ENOENT;
	bool ok = rc == expect || (m->shut && rc == -ESHUTDOWN) ||
	          (sl->state == S_OPEN && sl->tried && rc == 0);
	FZ_CHECK(ok, "fd %d: %s returned %d, expected %d", r->fd, detach ? "detach" : "free", rc,
	         expect);
	if (rc != 0) {
		fz_rec_drop(r);
		return;
	}
	sl->state = S_CLOSING;
	r->state = R_PENDING;
	m->pending++;
}
