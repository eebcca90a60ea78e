/* SPDX-License-Identifier: MIT */
/*
 * ready.c - I/O for the readiness backends (epoll, kqueue): the head request
 * of a direction is performed at once, without blocking.
 *
 * The backend marks a direction ready (f->ready) when the kernel reports it
 * and calls proact__progress; this moves the bytes. A short transfer on a
 * stream socket, or EAGAIN, clears the mark until the next report. Portable
 * POSIX only: what a platform lacks (accept4) has a fallback chosen by the
 * build.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"

/* A datagram receive reports its sender; one that did not fit reports one
   byte more than the room (msg_flags says so on every platform), so that the
   core completes it with EMSGSIZE. */
static PROACT__NOINLINE ssize_t recv_datagram(const struct proact__fd *f, struct proact__req *r,
                                              void *buf, size_t len)
{
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	struct msghdr m = {.msg_name = r->addr,
	                   .msg_namelen = r->addr ? r->addrlen : 0,
	                   .msg_iov = &iov,
	                   .msg_iovlen = 1};
	ssize_t n = recvmsg(f->fd, &m, 0);
	if (n < 0)
		return n;
	r->addrlen = m.msg_namelen;
	return (m.msg_flags & MSG_TRUNC) ? (ssize_t)len + 1 : n;
}

static ssize_t sys_read(const struct proact__fd *f, struct proact__req *r, void *buf, size_t len)
{
	if (r->op == PROACT_OP_RECVFROM)
		return recv_datagram(f, r, buf, len);
	if (f->flags & PROACT__F_SOCKET)
		return recv(f->fd, buf, len, 0);
	return read(f->fd, buf, len);
}

static ssize_t do_read(struct proact_watcher *w, struct proact__fd *f, struct proact__req *r,
                       size_t *asked)
{
	if (r->buf) {
		*asked = r->len - r->done;
		w->stats.io_calls++;
		return sys_read(f, r, (char *)r->buf + r->done, *asked);
	}
	void *p;
	int32_t idx = proact__pool_take(w, &p);
	if (idx < 0)
		return PROACT__NOPOOL;
	w->stats.io_calls++;
	*asked = r->len;
	ssize_t n = sys_read(f, r, p, r->len);
	if (n > 0 || (n == 0 && r->op == PROACT_OP_RECVFROM)) { /* an empty datagram is data */
		r->buf = p;
		r->pool = idx;
	} else {
		proact__pool_untake(w, idx);
	}
	return n;
}

int proact__nonblock_cloexec(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0 ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) != 0)
		return -1;
	return 0;
}

/* accept4 where the build found it; else accept, then the two flags. */
static int accept_nb(int lfd, struct sockaddr *addr, socklen_t *len)
{
#ifdef PROACT_HAVE_ACCEPT4
	return accept4(lfd, addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
#else
	int fd = accept(lfd, addr, len);
	if (fd >= 0 && proact__nonblock_cloexec(fd) != 0) {
		int err = errno;
		close(fd);
		errno = err;
		return -1;
	}
	return fd;
#endif
}

static PROACT__NOINLINE ssize_t do_accept(struct proact_watcher *w, struct proact__fd *f,
                                          struct proact__req *r)
{
	w->stats.io_calls++;
	for (;;) {
		socklen_t len = r->addrlen;
		int fd = accept_nb(f->fd, r->addr, r->addr ? &len : NULL);
		if (fd >= 0) {
			r->addrlen = len;
			return fd;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue; /* a peer that reset while queued is not the program's business */
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		f->ready[PROACT__RD] = 0;
		return PROACT__WAIT;
	}
}

/* Starts a connect; later calls learn whether it finished (the socket became writable). */
static PROACT__NOINLINE ssize_t do_connect(struct proact_watcher *w, struct proact__fd *f,
                                           struct proact__req *r)
{
	w->stats.io_calls++;
	if (!(r->flags & PROACT__R_STARTED)) {
		r->flags |= PROACT__R_STARTED;
		if (connect(f->fd, r->addr, r->addrlen) == 0)
			return 0;
		/* EINTR: the connect goes on in the background, like EINPROGRESS. */
		if (errno != EINPROGRESS && errno != EINTR)
			return -errno;
		f->ready[PROACT__WR] = 0;
		return PROACT__WAIT;
	}
	int err = 0;
	socklen_t len = sizeof(err);
	if (getsockopt(f->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
		return -errno;
	if (err)
		return -err;
	struct sockaddr_storage peer;
	len = sizeof(peer);
	if (getpeername(f->fd, (struct sockaddr *)&peer, &len) == 0)
		return 0;
	if (errno != ENOTCONN)
		return -errno;
	f->ready[PROACT__WR] = 0; /* still connecting: the writable edge comes later */
	return PROACT__WAIT;
}

ssize_t proact__ready_send(struct proact_watcher *w, struct proact__fd *f, struct proact__req *r)
{
	if (!f->ready[PROACT__WR])
		return PROACT__WAIT;
	w->stats.io_calls++;
	struct proact__sent s = proact__send_head(f, r);
	if (s.n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		f->ready[PROACT__WR] = 0;
		return PROACT__WAIT;
	}
	/* A short send on a stream socket: the buffer is full, the next edge
	   says when there is room. */
	if (s.n > 0 && (size_t)s.n < s.asked && (f->flags & PROACT__F_STREAM))
		f->ready[PROACT__WR] = 0;
	return s.n;
}

ssize_t proact__ready_io(struct proact_watcher *w, struct proact__fd *f, int dir,
                         struct proact__req *r)
{
	if (!f->ready[dir])
		return PROACT__WAIT;
	if (r->op == PROACT_OP_CONNECT)
		return do_connect(w, f, r);
	if (r->op == PROACT_OP_ACCEPT)
		return do_accept(w, f, r);
	if (dir == PROACT__WR)
		return proact__ready_send(w, f, r);
	ssize_t n;
	size_t asked;
	do
		n = do_read(w, f, r, &asked);
	while (n == -1 && errno == EINTR); /* not PROACT__NOPOOL with a stale errno */
	if (n == PROACT__NOPOOL)
		return n;
	if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		f->ready[dir] = 0;
		return PROACT__WAIT;
	}
	/* On a stream socket a short read means the kernel buffer was drained:
	   the next edge says when to go on. Not after the peer's FIN: its edge
	   is spent, and the next read must see the EOF. */
	if (n > 0 && (size_t)n < asked &&
	    (f->flags & (PROACT__F_STREAM | PROACT__F_RDHUP)) == PROACT__F_STREAM)
		f->ready[dir] = 0;
	return n;
}
