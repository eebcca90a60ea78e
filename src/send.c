/*
 * send.c - the non-blocking send every backend uses: the readiness
 * backends (epoll, kqueue) for every write, io_uring for a write that finds
 * room in the socket at once (no SQE, no completion round trip).
 */
#include <errno.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"

static ssize_t send_buf(const struct proact__fd *f, const struct proact__req *r, const void *buf,
                        size_t len)
{
	if (r && r->op == PROACT_OP_SENDTO && r->addr) {
		struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
		struct msghdr m = {.msg_name = r->addr,
		                   .msg_namelen = r->addrlen,
		                   .msg_iov = &iov,
		                   .msg_iovlen = 1};
		return sendmsg(f->fd, &m, PROACT__SEND_FLAGS);
	}
	if (f->flags & PROACT__F_SOCKET)
		return send(f->fd, buf, len, PROACT__SEND_FLAGS);
	return write(f->fd, buf, len);
}

/* The part of a WRITEV not yet sent, at most PROACT__IOV_SLICE segments. */
static ssize_t send_iov(const struct proact__fd *f, const struct proact__req *r, size_t *asked)
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

ssize_t proact__send_head(const struct proact__fd *f, const struct proact__req *r, size_t *asked)
{
	ssize_t n;
	do {
		if (r->op == PROACT_OP_WRITEV) {
			n = send_iov(f, r, asked);
		} else {
			*asked = r->len - r->done;
			n = send_buf(f, r, (const char *)r->buf + r->done, *asked);
		}
	} while (n < 0 && errno == EINTR);
	return n;
}
