/* SPDX-License-Identifier: MIT */
/*
 * send.c - the non-blocking send every backend uses: the readiness
 * backends (epoll, kqueue) for every write, io_uring for a write that finds
 * room in the socket at once (no SQE, no completion round trip).
 */
#include <errno.h>
#include <sys/socket.h>
#include <sys/uio.h>
#ifdef __linux__
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/sendfile.h>
#include <time.h>
#endif
#include <unistd.h>

#include "internal.h"

static PROACT__NOINLINE ssize_t send_datagram(const struct proact__fd *f,
                                              const struct proact__req *r, const void *buf,
                                              size_t len)
{
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	struct msghdr m = {
	    .msg_name = r->addr, .msg_namelen = r->addrlen, .msg_iov = &iov, .msg_iovlen = 1};
	return sendmsg(f->fd, &m, PROACT__SEND_FLAGS);
}

static ssize_t send_buf(const struct proact__fd *f, const struct proact__req *r, const void *buf,
                        size_t len)
{
	if (r && r->op == PROACT_OP_SENDTO && r->addr)
		return send_datagram(f, r, buf, len);
	if (f->flags & PROACT__F_SOCKET)
		return send(f->fd, buf, len, PROACT__SEND_FLAGS);
	return write(f->fd, buf, len);
}

/* The part of a WRITEV not yet sent, at most PROACT__IOV_SLICE segments. */
static PROACT__NOINLINE ssize_t send_iov(const struct proact__fd *f, const struct proact__req *r,
                                         size_t *asked)
{
	const struct iovec *iov = r->buf;
	size_t done;
	int k = proact__iov_resume(r, &done), cnt = r->iovcnt;
	if (done > 0) { /* inside a segment: finish it on its own */
		*asked = iov[k].iov_len - done;
		return send_buf(f, NULL, (const char *)iov[k].iov_base + done, *asked);
	}
	int n = cnt - k < PROACT__IOV_SLICE ? cnt - k : PROACT__IOV_SLICE;
	*asked = 0;
	for (int i = 0; i < n; i++)
		*asked += iov[k + i].iov_len;
	if (f->flags & PROACT__F_SOCKET) {
		struct msghdr m = {.msg_iov = (struct iovec *)(iov + k), .msg_iovlen = (size_t)n};
		return sendmsg(f->fd, &m, PROACT__SEND_FLAGS);
	}
	return writev(f->fd, iov + k, n);
}

/* One piece of a file's range, at most this much per call: the size the
   socket could take, so a short result means it is full, as for send(). */
#define FILE_SLICE (1u << 30)

#ifdef __linux__
/*
 * sendfile(2) has no MSG_NOSIGNAL: a peer that went away raises SIGPIPE.
 * Blocked in this thread around the call, a SIGPIPE it raised is taken back
 * before the mask is restored. One can be pending before the call only if
 * the thread had it blocked already: that one stays pending.
 */
static ssize_t send_file_once(const struct proact__fd *f, int file, uint64_t at, size_t want)
{
	sigset_t pipe_set, old, pending;
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	sigemptyset(&pending);
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
	bool was_pending = sigismember(&old, SIGPIPE) && sigpending(&pending) == 0 &&
	                   sigismember(&pending, SIGPIPE);
	off_t off = (off_t)at;
	ssize_t n = sendfile(f->fd, file, &off, want);
	int err = errno;
	/* Also after a short count: the kernel moves the range in pieces, and
	   a piece that met the closed peer raised it though others went. */
	if ((n < 0 || (size_t)n < want) && !was_pending && sigpending(&pending) == 0 &&
	    sigismember(&pending, SIGPIPE)) {
		struct timespec none = {0, 0};
		while (sigtimedwait(&pipe_set, NULL, &none) < 0 && errno == EINTR) {
		}
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	errno = err;
	return n;
}
#else
/* No sendfile(2) of the same meaning everywhere: read a piece on the stack
   and send it; what the socket did not take is read again next time. */
static ssize_t send_file_once(const struct proact__fd *f, int file, uint64_t at, size_t want)
{
	char chunk[16384];
	ssize_t got = pread(file, chunk, want < sizeof(chunk) ? want : sizeof(chunk), (off_t)at);
	if (got <= 0)
		return got;
	return send_buf(f, NULL, chunk, (size_t)got);
}
#endif

/*
 * Sends from the file until the socket is full, the range is done or the
 * file ends. A short piece is not taken as a full socket (the file may have
 * ended): the loop asks again, and only EAGAIN says full. The end of the
 * file before the range's is ENODATA, once what was sent is accounted.
 */
static PROACT__NOINLINE ssize_t send_file(const struct proact__fd *f, const struct proact__req *r,
                                          size_t *asked)
{
	size_t rest = r->len - r->done, sent = 0;
	*asked = rest;
	while (sent < rest) {
		size_t want = rest - sent < FILE_SLICE ? rest - sent : FILE_SLICE;
		ssize_t n = send_file_once(f, r->file, r->offset + r->done + sent, want);
		if (n > 0) {
			sent += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (sent > 0) { /* report what went; the next call finds the cause again */
			if (n == 0)
				*asked = sent; /* not a full socket: no wait for room */
			return (ssize_t)sent;
		}
		if (n == 0)
			errno = ENODATA;
		return -1;
	}
	return (ssize_t)sent;
}

/* The ways with more to work out than a buffer, out of line (see
   PROACT__NOINLINE): what they tried comes back by value. */
static PROACT__NOINLINE struct proact__sent send_other(const struct proact__fd *f,
                                                       const struct proact__req *r)
{
	struct proact__sent s;
	if (r->op == PROACT_OP_SENDFILE)
		s.n = send_file(f, r, &s.asked);
	else
		s.n = send_iov(f, r, &s.asked);
	return s;
}

struct proact__sent proact__send_head(const struct proact__fd *f, const struct proact__req *r)
{
	struct proact__sent s;
	do {
		if (r->op == PROACT_OP_WRITEV || r->op == PROACT_OP_SENDFILE) {
			s = send_other(f, r);
		} else {
			s.asked = r->len - r->done;
			s.n = send_buf(f, r, (const char *)r->buf + r->done, s.asked);
		}
	} while (s.n < 0 && errno == EINTR);
	return s;
}
