/* SPDX-License-Identifier: MIT */
/*
 * epoll_echo - the raw epoll echo (and push) server: the practical limit for
 * a readiness loop, written the way a careful C programmer would.
 *
 *   epoll_echo [--port N] [--push]
 *
 * One thread, edge-triggered epoll, each connection registered once for
 * EPOLLIN|EPOLLOUT|EPOLLET with its own 16 KiB buffer allocated at accept
 * (a buffer per connection, as the classic design has). On readiness it
 * reads until EAGAIN and writes each chunk straight back; a short write
 * parks the rest and stops reading (back-pressure) until EPOLLOUT.
 */
#include "peer.h"

#include <sys/epoll.h>

#define BUF_SIZE 16384
#define NEVENTS  256
#define WAIT_MS  50 /* bounds the exit latency (see peer_catch_signals) */

struct conn {
	int fd;
	uint32_t off, len; /* pending output: buf[off, off + len) */
	unsigned char buf[BUF_SIZE];
};

static struct conn **conns; /* indexed by fd */
static int maxfd = -1;
static int nfds_cap;

static void conn_close(struct conn *c)
{
	conns[c->fd] = NULL;
	close(c->fd); /* also removes it from the epoll set */
	free(c);
}

/* Writes the pending output; false if some is still left (or on error). */
static bool flush_out(struct conn *c)
{
	while (c->len) {
		ssize_t n = send(c->fd, c->buf + c->off, c->len, MSG_NOSIGNAL);
		if (n < 0)
			return false; /* EAGAIN: EPOLLOUT resumes; errors: the read sees them */
		c->off += (uint32_t)n;
		c->len -= (uint32_t)n;
	}
	c->off = 0;
	return true;
}

/* --push: queue the trigger's bytes on every connection and send them. */
static void broadcast(const unsigned char *data, size_t len)
{
	for (int fd = 0; fd <= maxfd; fd++) {
		struct conn *c = conns[fd];
		if (!c)
			continue;
		if (c->off + c->len + len > BUF_SIZE) {
			memmove(c->buf, c->buf + c->off, c->len);
			c->off = 0;
		}
		if (c->len + len > BUF_SIZE)
			continue; /* a client that does not read: drop the push */
		memcpy(c->buf + c->off + c->len, data, len);
		c->len += (uint32_t)len;
		flush_out(c);
	}
}

static void on_ready(struct conn *c, bool push)
{
	for (;;) {
		if (c->len && !flush_out(c))
			return;
		ssize_t n = recv(c->fd, c->buf, BUF_SIZE, 0);
		if (n > 0) {
			if (push && c->buf[0] == PUSH_TRIGGER) {
				unsigned char msg[BUF_SIZE];
				memcpy(msg, c->buf, (size_t)n);
				broadcast(msg, (size_t)n);
				continue;
			}
			c->len = (uint32_t)n;
			continue; /* the top of the loop writes it */
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			if (errno == EAGAIN)
				return;
			continue;
		}
		conn_close(c); /* EOF or error */
		return;
	}
}

static void accept_all(int ep, int lfd)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return;
		}
		struct conn *c = fd < nfds_cap ? malloc(sizeof(*c)) : NULL;
		if (!c) {
			close(fd);
			continue;
		}
		c->fd = fd;
		c->off = c->len = 0;
		peer_nodelay(fd);
		struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP,
		                         .data.ptr = c};
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
			close(fd);
			free(c);
			continue;
		}
		conns[fd] = c;
		if (fd > maxfd)
			maxfd = fd;
	}
}

int main(int argc, char **argv)
{
	struct peer_args a = peer_parse(argc, argv);
	peer_raise_fd_limit();
	peer_catch_signals();
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	nfds_cap = rl.rlim_cur > 1000000 ? 1000000 : (int)rl.rlim_cur;
	conns = calloc((size_t)nfds_cap, sizeof(*conns));
	int ep = epoll_create1(EPOLL_CLOEXEC);
	int lfd = peer_listen(a.port);
	static int listener_tag;
	struct epoll_event lev = {.events = EPOLLIN, .data.ptr = &listener_tag};
	if (!conns || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) < 0) {
		perror("epoll_echo: setup");
		return 1;
	}
	peer_print_listening(lfd);
	struct epoll_event evs[NEVENTS];
	while (!peer_stop) {
		int n = epoll_wait(ep, evs, NEVENTS, WAIT_MS);
		if (n < 0 && errno != EINTR) {
			perror("epoll_echo: epoll_wait");
			return 1;
		}
		for (int i = 0; i < n; i++) {
			if (evs[i].data.ptr == &listener_tag)
				accept_all(ep, lfd);
			else
				on_ready(evs[i].data.ptr, a.push);
		}
	}
	for (int fd = 0; fd <= maxfd; fd++)
		if (conns[fd])
			conn_close(conns[fd]);
	free(conns);
	close(lfd);
	close(ep);
	return 0;
}
