/* SPDX-License-Identifier: MIT */
/*
 * iocp.c - the completion backend of Windows: I/O completion ports.
 *
 * A socket is associated with the watcher's port when it registers. The
 * head request of a direction becomes one overlapped call on the program's
 * own buffer (WSARecv, WSASend with one WSABUF per segment, AcceptEx,
 * ConnectEx), and its completion comes back through the port, dequeued in
 * batches by GetQueuedCompletionStatusEx. A pool read posts a zero-byte
 * WSARecv, which completes when data is there and holds no buffer; only
 * then is a pool buffer taken and filled by a receive that does not block,
 * so an idle connection holds no buffer (as epoll's readiness does).
 *
 * Each fd has one OVERLAPPED per direction, in memory of its own that lives
 * until the core forgets the fd, which it does only once nothing of the fd
 * is in flight: a request asked back by CancelIoEx still completes through
 * the port before its socket is closed (rule 7). Other threads wake the
 * waiter with PostQueuedCompletionStatus.
 *
 * Datagrams are WSARecvFrom and WSASendTo; a zero-byte receive on a
 * datagram socket peeks (MSG_PEEK), as one without would take the datagram.
 * A file send reads a piece of the file (a C runtime descriptor) at its
 * offset into a buffer of the fd, then sends it overlapped: the bytes pass
 * through user space (TransmitFile was not taken: see docs/PORTABILITY.md).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../internal.h"

#include <io.h>
#include <mswsock.h>

#define KEY_SOCKET 0
#define KEY_WAKE   1
#define BATCH      128
/* One overlapped call moves at most this much; the core asks for the rest. */
#define MAX_CHUNK   (1ul << 30)
#define MAX_SEGS    PROACT__IOV_SLICE
#define ADDR_ROOM   (sizeof(struct sockaddr_storage) + 16) /* what AcceptEx asks for */
#define QUIESCE_MS  20
#define QUIESCE_TRY 100
#define FILE_PIECE  (256u << 10) /* a file send's piece: read, then sent */

struct iocp_op {
	OVERLAPPED ov;
	int fd;
	uint8_t dir;
	uint8_t zero; /* a zero-byte receive: data has come, no buffer taken */
};

struct iocp_fd {
	struct iocp_op op[2];
	uint32_t posted;  /* ops whose completion has not been dequeued */
	SOCKET accepted;  /* ACCEPT: the socket AcceptEx fills */
	char *accept_buf; /* ACCEPT: the addresses AcceptEx writes */
	WSABUF *segs;     /* WRITEV: the segments of the send in flight */
	uint32_t nsegs;   /* room at segs */
	char *piece;      /* SENDFILE: the piece of the file in flight */
	INT fromlen;      /* RECVFROM: the room at addr, then the address's length */
};

struct iocp_state {
	HANDLE port;
	struct iocp_fd **fds; /* by fd number */
	uint32_t nfds;
	uint32_t outstanding; /* posted ops not yet dequeued, under the lock */
	volatile LONG taken;  /* dequeued by a poll that waits for the lock */
	LPFN_ACCEPTEX acceptex;
	LPFN_CONNECTEX connectex;
};

static struct iocp_state *state(struct proact_watcher *w)
{
	return w->bstate;
}

static SOCKET sock_of(const struct proact__fd *f)
{
	return proact__sock(f->fd);
}

static struct iocp_fd *extra(struct iocp_state *s, int fd)
{
	return (uint32_t)fd < s->nfds ? s->fds[fd] : NULL;
}

/* The entry of a registered fd, which fd_add made (never NULL). */
static struct iocp_fd *registered(struct iocp_state *s, const struct proact__fd *f)
{
	return s->fds[f->fd];
}

static int last_err(void)
{
	return -proact__win_errno((DWORD)WSAGetLastError());
}

/* ---- setup ---- */

static int iocp_init(struct proact_watcher *w)
{
	WSADATA wd;
	if (WSAStartup(MAKEWORD(2, 2), &wd) != 0)
		return -ENOSYS;
	struct iocp_state *s = calloc(1, sizeof(*s));
	if (!s) {
		WSACleanup();
		return -ENOMEM;
	}
	s->port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 1);
	if (!s->port) {
		int err = proact__win_errno(GetLastError());
		free(s);
		WSACleanup();
		return -err;
	}
	w->bstate = s;
	w->park_reads = true; /* a waiting pool read holds only its zero-byte receive */
	return 0;
}

static void extra_free(struct iocp_fd *x)
{
	if (x->accepted != INVALID_SOCKET)
		closesocket(x->accepted);
	free(x->accept_buf);
	free(x->segs);
	free(x->piece);
	free(x);
}

static void iocp_destroy(struct proact_watcher *w)
{
	struct iocp_state *s = state(w);
	for (uint32_t i = 0; i < s->nfds; i++)
		if (s->fds[i])
			extra_free(s->fds[i]);
	free(s->fds);
	CloseHandle(s->port);
	free(s);
	w->bstate = NULL;
	WSACleanup();
}

static int table_grow(struct iocp_state *s, int fd)
{
	if ((uint32_t)fd < s->nfds)
		return 0;
	uint32_t n = s->nfds ? s->nfds : 256;
	while (n <= (uint32_t)fd)
		n *= 2;
	struct iocp_fd **t = realloc(s->fds, n * sizeof(*t));
	if (!t)
		return -ENOMEM;
	memset(t + s->nfds, 0, (n - s->nfds) * sizeof(*t));
	s->fds = t;
	s->nfds = n;
	return 0;
}

static int iocp_fd_add(struct proact_watcher *w, struct proact__fd *f)
{
	struct iocp_state *s = state(w);
	if (table_grow(s, f->fd) != 0)
		return -ENOMEM;
	struct iocp_fd *x = s->fds[f->fd];
	if (!x && !(x = calloc(1, sizeof(*x))))
		return -ENOMEM;
	x->accepted = INVALID_SOCKET;
	s->fds[f->fd] = x;
	/* A detached socket stays associated with its port (Windows cannot undo
	   that): registering it here again finds it so. */
	if (!CreateIoCompletionPort((HANDLE)sock_of(f), s->port, KEY_SOCKET, 0) &&
	    GetLastError() != ERROR_INVALID_PARAMETER) {
		int err = proact__win_errno(GetLastError());
		s->fds[f->fd] = NULL;
		extra_free(x);
		return -err;
	}
	for (int dir = 0; dir < 2; dir++)
		x->op[dir] = (struct iocp_op){.fd = f->fd, .dir = (uint8_t)dir};
	f->ready[PROACT__RD] = 0; /* idle until a zero-byte receive says otherwise */
	return 0;
}

static void iocp_fd_remove(struct proact_watcher *w, struct proact__fd *f)
{
	struct iocp_state *s = state(w);
	struct iocp_fd *x = extra(s, f->fd);
	/* Still posted only after a shutdown that gave up waiting: destroy frees it. */
	if (!x || x->posted)
		return;
	s->fds[f->fd] = NULL;
	extra_free(x);
}

/* ---- requests ---- */

static struct iocp_op *op_start(struct iocp_state *s, struct iocp_fd *x, int dir, bool zero)
{
	struct iocp_op *op = &x->op[dir];
	memset(&op->ov, 0, sizeof(op->ov));
	op->zero = zero;
	x->posted++;
	s->outstanding++;
	return op;
}

/* The call did not go to the kernel: no completion will come. */
static ssize_t op_failed(struct iocp_state *s, struct iocp_fd *x, int err)
{
	x->posted--;
	s->outstanding--;
	return -err;
}

/* An overlapped call returned rc (0, or SOCKET_ERROR / FALSE with the
   error in WSAGetLastError): posted, or failed. */
static ssize_t posted(struct iocp_state *s, struct iocp_fd *x, bool ok, ssize_t in_flight)
{
	if (ok)
		return in_flight;
	int err = WSAGetLastError();
	if (err == WSA_IO_PENDING)
		return in_flight;
	return op_failed(s, x, proact__win_errno((DWORD)err));
}

/* A receive into buf, or a zero-byte one that completes when data is there
   (on a datagram socket it peeks: without, it would take the datagram). */
static ssize_t recv_post(struct iocp_state *s, struct proact__fd *f, void *buf, size_t len,
                         bool zero)
{
	struct iocp_fd *x = registered(s, f);
	struct iocp_op *op = op_start(s, x, PROACT__RD, zero);
	WSABUF b = {.len = (ULONG)(len > MAX_CHUNK ? MAX_CHUNK : len), .buf = buf};
	bool peek = zero && !(f->flags & PROACT__F_STREAM);
	DWORD flags = peek ? MSG_PEEK : 0;
	int rc = WSARecv(sock_of(f), &b, 1, NULL, &flags, &op->ov, NULL);
	if (rc != 0 && peek && WSAGetLastError() == WSAEMSGSIZE) {
		/* The peek found a datagram at once, which Winsock reports as an
		   error: no completion comes, so it is posted here. */
		PostQueuedCompletionStatus(s->port, 0, KEY_SOCKET, &op->ov);
		return PROACT__ARMED;
	}
	return posted(s, x, rc == 0, zero ? PROACT__ARMED : PROACT__INFLIGHT);
}

/* One datagram into the request's buffer, with its sender's address. */
static ssize_t recvfrom_post(struct iocp_state *s, struct proact__fd *f, struct proact__req *r)
{
	struct iocp_fd *x = registered(s, f);
	struct iocp_op *op = op_start(s, x, PROACT__RD, false);
	WSABUF b = {.len = (ULONG)(r->len > MAX_CHUNK ? MAX_CHUNK : r->len), .buf = r->buf};
	DWORD flags = 0;
	x->fromlen = (INT)r->addrlen;
	int rc = WSARecvFrom(sock_of(f), &b, 1, NULL, &flags, r->addr, r->addr ? &x->fromlen : NULL,
	                     &op->ov, NULL);
	if (rc != 0 && WSAGetLastError() == WSAEMSGSIZE) { /* cut at once: no completion comes */
		op_failed(s, x, 0);
		if (r->addr)
			r->addrlen = (socklen_t)x->fromlen;
		return (ssize_t)r->len + 1;
	}
	return posted(s, x, rc == 0, PROACT__INFLIGHT);
}

/* A non-blocking receive into a pool buffer: bytes, or SOCKET_ERROR. A
   datagram longer than len counts one more than len (the core's sign of
   a cut datagram; its length is not known here). */
static int recv_now(struct proact__fd *f, struct proact__req *r, char *p, int len)
{
	if (r->op != PROACT_OP_RECVFROM)
		return recv(sock_of(f), p, len, 0);
	int alen = (int)r->addrlen;
	int n = recvfrom(sock_of(f), p, len, 0, r->addr, r->addr ? &alen : NULL);
	if (n == SOCKET_ERROR && WSAGetLastError() == WSAEMSGSIZE)
		n = len + 1;
	if (n >= 0 && r->addr)
		r->addrlen = (socklen_t)alen;
	return n;
}

/* A pool read: data is there (the zero-byte receive said so), or it waits. */
static ssize_t pool_read(struct proact_watcher *w, struct proact__fd *f, struct proact__req *r)
{
	if (!f->ready[PROACT__RD])
		return recv_post(state(w), f, NULL, 0, true);
	void *p;
	int32_t idx = proact__pool_take(w, &p);
	if (idx < 0)
		return PROACT__NOPOOL;
	int len = r->len > MAX_CHUNK ? (int)MAX_CHUNK : (int)r->len;
	int n = recv_now(f, r, p, len);
	if (n > 0 || (n == 0 && r->op == PROACT_OP_RECVFROM)) { /* an empty datagram is one */
		r->buf = p;
		r->pool = idx;
		if (n < len && (f->flags & PROACT__F_STREAM))
			f->ready[PROACT__RD] = 0; /* drained */
		return n;
	}
	proact__pool_untake(w, idx);
	if (n == 0)
		return 0;
	int err = WSAGetLastError();
	if (err != WSAEWOULDBLOCK)
		return -proact__win_errno((DWORD)err);
	f->ready[PROACT__RD] = 0;
	return recv_post(state(w), f, NULL, 0, true);
}

static ssize_t iocp_arm_read(struct proact_watcher *w, struct proact__fd *f)
{
	return recv_post(state(w), f, NULL, 0, true);
}

/* The WSABUFs of what is left of a WRITEV, at most MAX_SEGS of them. */
static int segs_fill(struct iocp_fd *x, const struct proact__req *r, DWORD *count)
{
	size_t off;
	int k = proact__iov_resume(r, &off);
	const struct iovec *iov = r->buf;
	uint32_t n = (uint32_t)(r->iovcnt - k);
	n = n > MAX_SEGS ? MAX_SEGS : n;
	if (n > x->nsegs) {
		WSABUF *v = realloc(x->segs, n * sizeof(*v));
		if (!v)
			return -ENOMEM;
		x->segs = v;
		x->nsegs = n;
	}
	DWORD used = 0;
	for (uint32_t i = 0; i < n; i++, off = 0) {
		size_t len = iov[k + i].iov_len - off;
		if (len == 0)
			continue;
		x->segs[used].buf = (char *)iov[k + i].iov_base + off;
		x->segs[used++].len = (ULONG)(len > MAX_CHUNK ? MAX_CHUNK : len);
		if (len > MAX_CHUNK)
			break; /* the rest of this segment goes next time, before the others */
	}
	*count = used;
	return 0;
}

static ssize_t send_post(struct iocp_state *s, struct proact__fd *f, struct proact__req *r)
{
	struct iocp_fd *x = registered(s, f);
	WSABUF one, *bufs = &one;
	DWORD count = 1;
	if (r->op == PROACT_OP_WRITEV) {
		int rc = segs_fill(x, r, &count);
		if (rc)
			return rc;
		bufs = x->segs;
	} else {
		size_t left = r->len - r->done;
		one = (WSABUF){.len = (ULONG)(left > MAX_CHUNK ? MAX_CHUNK : left),
		               .buf = (char *)r->buf + r->done};
	}
	struct iocp_op *op = op_start(s, x, PROACT__WR, false);
	int rc = WSASend(sock_of(f), bufs, count, NULL, 0, &op->ov, NULL);
	return posted(s, x, rc == 0, PROACT__INFLIGHT);
}

static ssize_t sendto_post(struct iocp_state *s, struct proact__fd *f, struct proact__req *r)
{
	struct iocp_fd *x = registered(s, f);
	WSABUF b = {.len = (ULONG)r->len, .buf = r->buf};
	struct iocp_op *op = op_start(s, x, PROACT__WR, false);
	int rc = WSASendTo(sock_of(f), &b, 1, NULL, 0, r->addr, r->addr ? (int)r->addrlen : 0,
	                   &op->ov, NULL);
	return posted(s, x, rc == 0, PROACT__INFLIGHT);
}

/* Reads up to len bytes of the file at off, as pread does (the handle's
   own position moves, which Windows' positioned read does not spare). */
static ssize_t file_read(int file, uint64_t off, char *p, DWORD len)
{
	HANDLE h = (HANDLE)_get_osfhandle(file);
	if (h == INVALID_HANDLE_VALUE)
		return -EBADF;
	OVERLAPPED at = {.Offset = (DWORD)off, .OffsetHigh = (DWORD)(off >> 32)};
	DWORD got = 0;
	if (!ReadFile(h, p, len, &got, &at)) {
		DWORD err = GetLastError();
		if (err == ERROR_HANDLE_EOF)
			return 0;
		return err == ERROR_INVALID_HANDLE ? -EBADF : -proact__win_errno(err);
	}
	return got;
}

/* The next piece of a file's range: read into the fd's buffer, then sent. */
static ssize_t sendfile_post(struct iocp_state *s, struct proact__fd *f, struct proact__req *r)
{
	struct iocp_fd *x = registered(s, f);
	if (!x->piece && !(x->piece = malloc(FILE_PIECE)))
		return -ENOMEM;
	size_t left = r->len - r->done;
	ssize_t n = file_read(r->file, r->offset + r->done, x->piece,
	                      left < FILE_PIECE ? (DWORD)left : FILE_PIECE);
	if (n <= 0)
		return n == 0 ? -ENODATA : n; /* the file ended before the range */
	WSABUF b = {.len = (ULONG)n, .buf = x->piece};
	struct iocp_op *op = op_start(s, x, PROACT__WR, false);
	int rc = WSASend(sock_of(f), &b, 1, NULL, 0, &op->ov, NULL);
	return posted(s, x, rc == 0, PROACT__INFLIGHT);
}

static void *extension(SOCKET sock, GUID guid)
{
	void *fn = NULL;
	DWORD bytes;
	if (WSAIoctl(sock, SIO_GET_EXTENSION_FUNCTION_POINTER, &guid, sizeof(guid), &fn, sizeof(fn),
	             &bytes, NULL, NULL) != 0)
		return NULL;
	return fn;
}

static ssize_t accept_post(struct iocp_state *s, struct proact__fd *f)
{
	struct iocp_fd *x = registered(s, f);
	struct sockaddr_storage me;
	int len = sizeof(me);
	if (!s->acceptex && !(s->acceptex = extension(sock_of(f), (GUID)WSAID_ACCEPTEX)))
		return last_err();
	if (getsockname(sock_of(f), (struct sockaddr *)&me, &len) != 0)
		return last_err();
	BOOL listening = FALSE;
	int optlen = sizeof(listening);
	if (getsockopt(sock_of(f), SOL_SOCKET, SO_ACCEPTCONN, (char *)&listening, &optlen) != 0)
		return last_err();
	if (!listening)
		return -EINVAL; /* as accept(2) says it (AcceptEx may never complete) */
	if (!x->accept_buf && !(x->accept_buf = malloc(2 * ADDR_ROOM)))
		return -ENOMEM;
	x->accepted = WSASocketW(me.ss_family, SOCK_STREAM, IPPROTO_TCP, NULL, 0,
	                         WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
	if (x->accepted == INVALID_SOCKET)
		return last_err();
	struct iocp_op *op = op_start(s, x, PROACT__RD, false);
	DWORD bytes;
	BOOL ok = s->acceptex(sock_of(f), x->accepted, x->accept_buf, 0, ADDR_ROOM, ADDR_ROOM,
	                      &bytes, &op->ov);
	ssize_t rc = posted(s, x, ok, PROACT__INFLIGHT);
	if (rc != PROACT__INFLIGHT) {
		closesocket(x->accepted);
		x->accepted = INVALID_SOCKET;
	}
	return rc;
}

/* ConnectEx wants a bound socket: an unbound one gets the wildcard address. */
static int bind_any(SOCKET sock, int family)
{
	struct sockaddr_storage me;
	int len = sizeof(me);
	if (getsockname(sock, (struct sockaddr *)&me, &len) == 0)
		return 0;
	memset(&me, 0, sizeof(me));
	me.ss_family = (ADDRESS_FAMILY)family;
	len =
	    family == AF_INET6 ? (int)sizeof(struct sockaddr_in6) : (int)sizeof(struct sockaddr_in);
	return bind(sock, (struct sockaddr *)&me, len) == 0 ? 0 : last_err();
}

static ssize_t connect_post(struct iocp_state *s, struct proact__fd *f, struct proact__req *r)
{
	struct iocp_fd *x = registered(s, f);
	if (!s->connectex && !(s->connectex = extension(sock_of(f), (GUID)WSAID_CONNECTEX)))
		return last_err();
	int rc = bind_any(sock_of(f), r->addr->sa_family);
	if (rc)
		return rc;
	struct iocp_op *op = op_start(s, x, PROACT__WR, false);
	BOOL ok = s->connectex(sock_of(f), r->addr, (int)r->addrlen, NULL, 0, NULL, &op->ov);
	return posted(s, x, ok, PROACT__INFLIGHT);
}

static ssize_t iocp_io(struct proact_watcher *w, struct proact__fd *f, int dir,
                       struct proact__req *r)
{
	struct iocp_state *s = state(w);
	w->stats.io_calls++; /* an overlapped call, or a receive into a pool buffer */
	switch (r->op) {
	case PROACT_OP_READ:
		if (!r->buf)
			return pool_read(w, f, r);
		return recv_post(s, f, (char *)r->buf + r->done, r->len - r->done, false);
	case PROACT_OP_RECVFROM:
		return r->buf ? recvfrom_post(s, f, r) : pool_read(w, f, r);
	case PROACT_OP_SENDTO:
		return sendto_post(s, f, r);
	case PROACT_OP_SENDFILE:
		return sendfile_post(s, f, r);
	case PROACT_OP_ACCEPT:
		return accept_post(s, f);
	case PROACT_OP_CONNECT:
		return connect_post(s, f, r);
	case PROACT_OP_WRITE:
	case PROACT_OP_WRITEV:
		return send_post(s, f, r);
	default:
		(void)dir;
		return -ENOTSUP; /* refused at submission already */
	}
}

static void iocp_cancel(struct proact_watcher *w, struct proact__fd *f, int dir)
{
	struct iocp_fd *x = registered(state(w), f);
	/* Not found: it completed already, and its result is on its way. */
	CancelIoEx((HANDLE)sock_of(f), &x->op[dir].ov);
}

/* ---- completions ---- */

/* The peer's address of an accepted socket, into the request's room. */
static void peer_addr(struct proact__req *r, SOCKET sock)
{
	struct sockaddr_storage peer;
	int len = sizeof(peer);
	if (!r->addr || getpeername(sock, (struct sockaddr *)&peer, &len) != 0)
		return;
	int room = (int)r->addrlen;
	memcpy(r->addr, &peer, (size_t)(len < room ? len : room));
	r->addrlen = (socklen_t)len;
}

/* The accepted socket made a socket of its own, as accept(2) gives one. */
static ssize_t accepted(struct proact__fd *f, struct iocp_fd *x, struct proact__req *r)
{
	SOCKET a = x->accepted, l = sock_of(f);
	u_long one = 1;
	x->accepted = INVALID_SOCKET;
	if (setsockopt(a, SOL_SOCKET, SO_UPDATE_ACCEPT_CONTEXT, (char *)&l, sizeof(l)) != 0 ||
	    ioctlsocket(a, FIONBIO, &one) != 0 || proact__fdnum(a) < 0) {
		int err =
		    a > (SOCKET)INT_MAX ? EMFILE : proact__win_errno((DWORD)WSAGetLastError());
		closesocket(a);
		return -err;
	}
	peer_addr(r, a);
	return proact__fdnum(a);
}

/* The result of op as the core counts it: bytes, a new fd, or -errno. */
static ssize_t op_result(struct proact__fd *f, struct iocp_fd *x, struct iocp_op *op, DWORD bytes)
{
	struct proact__req *r = f->head[op->dir];
	DWORD flags = 0;
	int err = 0;
	if (!WSAGetOverlappedResult(sock_of(f), &op->ov, &bytes, FALSE, &flags))
		err = proact__win_errno((DWORD)WSAGetLastError());
	if (r && r->op == PROACT_OP_ACCEPT && !op->zero) {
		if (!err)
			return accepted(f, x, r);
		closesocket(x->accepted);
		x->accepted = INVALID_SOCKET;
		return -err; /* asked back too: no socket came of it */
	} else if (r && r->op == PROACT_OP_CONNECT && !err) {
		if (setsockopt(sock_of(f), SOL_SOCKET, SO_UPDATE_CONNECT_CONTEXT, NULL, 0) != 0)
			err = proact__win_errno((DWORD)WSAGetLastError());
	} else if (r && r->op == PROACT_OP_RECVFROM && !op->zero) {
		if (err == EMSGSIZE) /* cut: one more than the room says so to the core */
			return (ssize_t)r->len + 1;
		if (!err && r->addr)
			r->addrlen = (socklen_t)x->fromlen;
	}
	if (err == ECANCELED) /* asked back: what it moved still counts */
		return (ssize_t)bytes;
	return err ? -err : (ssize_t)bytes;
}

static void dispatch(struct proact_watcher *w, struct iocp_op *op, DWORD bytes)
{
	struct iocp_state *s = state(w);
	struct iocp_fd *x = extra(s, op->fd);
	struct proact__fd *f = proact__fd_lookup(w, op->fd);
	int dir = op->dir;
	x->posted--;
	s->outstanding--;
	if (!f || f->state == PROACT__FD_UNUSED || !f->inflight[dir])
		return; /* cannot happen: an fd is forgotten only once nothing is posted */
	if (op->zero) {
		f->ready[PROACT__RD] = 1; /* data, the end or an error: the receive tells */
		if (f->cancel[dir]) {
			proact__io_done(w, f, dir, 0);
		} else {
			f->inflight[dir] = 0;
			proact__progress(w, f, dir);
		}
		return;
	}
	ssize_t res = op_result(f, x, op, bytes);
	struct proact__req *r = f->head[dir];
	bool skipped = r->op == PROACT_OP_ACCEPT && (res == -ECONNRESET || res == -ECONNABORTED);
	if (skipped && !f->cancel[dir]) { /* a peer that reset while queued: accept the next */
		f->inflight[dir] = 0;
		proact__progress(w, f, dir);
		return;
	}
	proact__io_done(w, f, dir, skipped ? 0 : res);
}

/* A completion dequeued after shutdown: only what it holds is let go. */
static void drop(struct proact_watcher *w, struct iocp_op *op)
{
	struct iocp_state *s = state(w);
	struct iocp_fd *x = extra(s, op->fd);
	s->outstanding--;
	if (!x)
		return;
	x->posted--;
	if (op->dir == PROACT__RD && x->accepted != INVALID_SOCKET) {
		closesocket(x->accepted);
		x->accepted = INVALID_SOCKET;
	}
}

static void handle(struct proact_watcher *w, const OVERLAPPED_ENTRY *e, ULONG n)
{
	for (ULONG i = 0; i < n; i++) {
		if (e[i].lpCompletionKey == KEY_WAKE) {
			w->wake_sent = false;
			continue;
		}
		struct iocp_op *op = CONTAINING_RECORD(e[i].lpOverlapped, struct iocp_op, ov);
		if (w->closed)
			drop(w, op);
		else
			dispatch(w, op, e[i].dwNumberOfBytesTransferred);
	}
}

static LONG ops_in(const OVERLAPPED_ENTRY *e, ULONG n)
{
	LONG k = 0;
	for (ULONG i = 0; i < n; i++)
		k += e[i].lpCompletionKey != KEY_WAKE;
	return k;
}

static int iocp_poll(struct proact_watcher *w, int64_t timeout_ns)
{
	struct iocp_state *s = state(w);
	OVERLAPPED_ENTRY e[BATCH];
	ULONG n = 0;
	DWORD ms = timeout_ns < 0 ? INFINITE : (DWORD)((timeout_ns + 999999) / 1000000);
	BOOL ok;
	w->stats.kernel_waits++;
	if (ms == 0) {
		ok = GetQueuedCompletionStatusEx(s->port, e, BATCH, &n, 0, FALSE);
	} else {
		w->sleeping = true;
		proact__unlock(w);
		ok = GetQueuedCompletionStatusEx(s->port, e, BATCH, &n, ms, FALSE);
		LONG k = ok ? ops_in(e, n) : 0;
		InterlockedAdd(&s->taken, k); /* a shutdown meanwhile must not wait for them */
		proact__lock(w);
		InterlockedAdd(&s->taken, -k);
		w->sleeping = false;
	}
	if (!ok) {
		DWORD err = GetLastError();
		return err == WAIT_TIMEOUT ? 0 : -proact__win_errno(err);
	}
	handle(w, e, n);
	return 0;
}

static void iocp_wakeup(struct proact_watcher *w)
{
	PostQueuedCompletionStatus(state(w)->port, 0, KEY_WAKE, NULL);
}

/*
 * Shutdown: every posted call is cancelled, and its completion collected, so
 * that no buffer of the program is touched after; the waiting thread may hold
 * some it dequeued (taken). A call that does not come back within about two
 * seconds is left to the closing of its socket.
 */
static void iocp_quiesce(struct proact_watcher *w)
{
	struct iocp_state *s = state(w);
	for (uint32_t i = 0; i < s->nfds; i++)
		if (s->fds[i] && s->fds[i]->posted)
			CancelIoEx((HANDLE)proact__sock((int)i), NULL);
	for (int tries = 0; tries < QUIESCE_TRY && s->outstanding > (uint32_t)s->taken;) {
		OVERLAPPED_ENTRY e[BATCH];
		ULONG n = 0;
		if (!GetQueuedCompletionStatusEx(s->port, e, BATCH, &n, QUIESCE_MS, FALSE)) {
			tries++;
			continue;
		}
		handle(w, e, n);
	}
}

const struct proact__backend proact__backend_iocp = {
    .name = "iocp",
    .init = iocp_init,
    .destroy = iocp_destroy,
    .fd_add = iocp_fd_add,
    .fd_remove = iocp_fd_remove,
    .io = iocp_io,
    .arm_read = iocp_arm_read,
    .cancel = iocp_cancel,
    .poll = iocp_poll,
    .wakeup = iocp_wakeup,
    .quiesce = iocp_quiesce,
};
