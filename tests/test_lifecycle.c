/* SPDX-License-Identifier: MIT */
/*
 * The life of a connection as requests: accept (with the peer address, and
 * out of descriptors without spinning or losing the listener), connect (IPv4,
 * IPv6, Unix-domain, refused, deadline), shutdown for writing ordered behind
 * the queued writes, and datagrams (one whole datagram per completion with
 * its sender, pool buffers, truncation reported).
 */
#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#ifndef _WIN32 /* Windows: no descriptor limit, no fork (those cases skip there) */
#include <sys/resource.h>
#include <sys/un.h>
#include <sys/wait.h>
#endif

#define WAIT_MS 10000

static struct sockaddr_in loopback4(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

static int local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* One completion, which must arrive within WAIT_MS. */
static struct proact_completion one(proact_watcher *w)
{
	struct proact_completion c;
	assert_int_equal(t_collect(w, &c, 1, WAIT_MS), 1);
	return c;
}

/* Accept and connect on one watcher: both ends, no blocking call. */
static void test_accept_connect_v4(void **state)
{
	(void)state;
	int base = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	int port, lfd = t_listener(&port);
	struct sockaddr_in peer, to = loopback4(port);
	int cfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(cfd >= 0);

	assert_int_equal(proact_accept(w, lfd, (struct sockaddr *)&peer, sizeof(peer), (void *)1),
	                 0);
	assert_int_equal(proact_connect(w, cfd, (struct sockaddr *)&to, sizeof(to), 0, (void *)2),
	                 0);
	/* Queued behind the connect: goes out once connected. */
	assert_int_equal(proact_write(w, cfd, "hello", 5, (void *)3), 0);

	struct proact_completion c[3];
	assert_int_equal(t_collect(w, c, 3, WAIT_MS), 3);
	int afd = -1;
	for (int i = 0; i < 3; i++) {
		assert_int_equal(c[i].error, 0);
		if (c[i].op == PROACT_OP_ACCEPT) {
			afd = c[i].newfd;
			assert_ptr_equal(c[i].ctx, (void *)1);
			assert_int_equal(c[i].addrlen, sizeof(struct sockaddr_in));
			assert_int_equal(peer.sin_family, AF_INET);
			assert_int_equal(ntohs(peer.sin_port), local_port(cfd));
		} else if (c[i].op == PROACT_OP_WRITE) {
			assert_int_equal(c[i].size, 5);
		} else {
			assert_int_equal(c[i].op, PROACT_OP_CONNECT);
			assert_int_equal(c[i].newfd, -1);
		}
	}
	assert_true(afd >= 0);
#ifndef _WIN32 /* Winsock cannot tell a socket's blocking mode */
	assert_true(fcntl(afd, F_GETFL) & O_NONBLOCK);
#endif
	assert_true(fcntl(afd, F_GETFD) & FD_CLOEXEC);

	char buf[8];
	assert_int_equal(proact_read(w, afd, buf, sizeof(buf), NULL), 0);
	struct proact_completion r = one(w);
	assert_int_equal(r.size, 5);
	assert_memory_equal(buf, "hello", 5);

	assert_int_equal(proact_free(w, afd, NULL), 0);
	assert_int_equal(proact_free(w, cfd, NULL), 0);
	assert_int_equal(proact_free(w, lfd, NULL), 0);
	assert_int_equal(t_collect(w, c, 3, WAIT_MS), 3);
	proact_watcher_destroy(w);
	assert_int_equal(t_fd_count(), base);
}

/* Reads submitted together with a connect wait for it, then see the data. */
static void test_connect_v6_read_waits(void **state)
{
	(void)state;
	int l = socket(AF_INET6, SOCK_STREAM, 0);
	struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = in6addr_loopback};
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) != 0) {
		if (l >= 0)
			close(l);
		skip(); /* no IPv6 loopback here */
	}
	assert_int_equal(listen(l, 16), 0);
	a.sin6_port = htons((uint16_t)local_port(l));
	proact_watcher *w = t_watcher(NULL);
	int cfd = socket(AF_INET6, SOCK_STREAM, 0);
	char buf[16];
	assert_int_equal(proact_connect(w, cfd, (struct sockaddr *)&a, sizeof(a), 0, NULL), 0);
	assert_int_equal(proact_read(w, cfd, buf, sizeof(buf), NULL), 0);
	struct proact_completion c = one(w);
	assert_int_equal(c.op, PROACT_OP_CONNECT);
	assert_int_equal(c.error, 0);

	int s = accept(l, NULL, NULL);
	assert_true(s >= 0);
	t_write_all(s, "v6 data", 7);
	c = one(w);
	assert_int_equal(c.op, PROACT_OP_READ);
	assert_int_equal(c.error, 0);
	assert_int_equal(c.size, 7);
	assert_memory_equal(buf, "v6 data", 7);
	close(s);
	close(l);
	proact_watcher_destroy(w);
}

static void test_connect_unix(void **state)
{
	(void)state;
#ifdef _WIN32
	/* ConnectEx and AcceptEx take TCP sockets only: iocp connects and
	   accepts no Unix-domain socket (docs/PORTABILITY.md). */
	skip();
#else
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "/tmp/proact-test-%d.sock", (int)getpid());
	unlink(a.sun_path);
	int l = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(l, 4), 0);
	proact_watcher *w = t_watcher(NULL);
	int cfd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(proact_accept(w, l, NULL, 0, (void *)1), 0);
	assert_int_equal(proact_connect(w, cfd, (struct sockaddr *)&a, sizeof(a), 0, (void *)2), 0);
	struct proact_completion c[2];
	assert_int_equal(t_collect(w, c, 2, WAIT_MS), 2);
	int afd = -1;
	for (int i = 0; i < 2; i++) {
		assert_int_equal(c[i].error, 0);
		if (c[i].op == PROACT_OP_ACCEPT)
			afd = c[i].newfd;
	}
	assert_true(afd >= 0);
	assert_int_equal(c[0].addrlen + c[1].addrlen, 0); /* no address asked for */
	close(afd);
	unlink(a.sun_path);
	close(l);
	proact_watcher_destroy(w);
#endif
}

static void test_connect_refused(void **state)
{
	(void)state;
	int port, l = t_listener(&port);
	close(l); /* nothing listens on port any more */
	proact_watcher *w = t_watcher(NULL);
	struct sockaddr_in to = loopback4(port);
	int cfd = socket(AF_INET, SOCK_STREAM, 0);
	char buf[4];
	assert_int_equal(proact_connect(w, cfd, (struct sockaddr *)&to, sizeof(to), 0, NULL), 0);
	assert_int_equal(proact_write(w, cfd, "x", 1, NULL), 0);
	assert_int_equal(proact_read(w, cfd, buf, sizeof(buf), NULL), 0);
	struct proact_completion c[3];
	assert_int_equal(t_collect(w, c, 3, WAIT_MS), 3);
	bool saw_connect = false;
	for (int i = 0; i < 3; i++) {
		if (c[i].op == PROACT_OP_CONNECT) {
			saw_connect = true;
			assert_int_equal(c[i].error, ECONNREFUSED);
		} else {
			assert_int_equal(c[i].error,
			                 ECONNREFUSED); /* queued behind it: same error */
		}
	}
	assert_true(saw_connect);
	assert_int_equal(proact_free(w, cfd, NULL), 0);
	assert_int_equal(one(w).op, PROACT_OP_FREE);
	proact_watcher_destroy(w);
}

/* A listener whose accept queue is full drops SYNs: only the deadline ends the connect. */
static void test_connect_deadline(void **state)
{
	(void)state;
	int l = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = loopback4(0);
	assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(l, 0), 0);
	a.sin_port = htons((uint16_t)local_port(l));
	int fill[4];
	for (int i = 0; i < 4; i++) { /* fill the accept queue, never accept */
		fill[i] = t_socket(AF_INET, SOCK_STREAM, true);
		connect(fill[i], (struct sockaddr *)&a, sizeof(a));
	}
	usleep(100000);
	proact_watcher *w = t_watcher(NULL);
	int cfd = socket(AF_INET, SOCK_STREAM, 0);
	uint64_t dl = proact_deadline_in(200);
	assert_int_equal(proact_connect(w, cfd, (struct sockaddr *)&a, sizeof(a), dl, NULL), 0);
	struct proact_completion c = one(w);
	assert_int_equal(c.op, PROACT_OP_CONNECT);
	/* Normally the deadline; a loaded machine may still squeeze it in. */
	assert_true(c.error == ETIMEDOUT || c.error == 0);
	assert_true(c.error == 0 || proact_now() >= dl);
	for (int i = 0; i < 4; i++)
		close(fill[i]);
	close(l);
	proact_watcher_destroy(w);
}

/* The peer of test_shutdown_after_writes: every byte, then EOF at once. */
struct fin_peer {
	int fd;
	size_t len;
	uint8_t *in;
	bool ok;
};

static void *fin_peer_main(void *arg)
{
	struct fin_peer *p = arg;
	size_t got = 0;
	ssize_t n;
	while ((n = read(p->fd, p->in + got, p->len + 1 - got)) > 0)
		got += (size_t)n;
	p->ok = n == 0 && got == p->len && t_check(p->in, p->len, 7, 0) < 0;
	return NULL;
}

/* The FIN goes out after the last queued byte. */
static void test_shutdown_after_writes(void **state)
{
	(void)state;
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	t_tcp_pair(fds);
	size_t len = 4u << 20;
	uint8_t *out = malloc(len), *in = malloc(len + 1);
	t_fill(out, len, 7, 0);
	assert_int_equal(proact_write(w, fds[0], out, len / 2, (void *)1), 0);
	assert_int_equal(proact_write(w, fds[0], out + len / 2, len / 2, (void *)2), 0);
	assert_int_equal(proact_shutdown_write(w, fds[0], (void *)3), 0);
	assert_int_equal(proact_write(w, fds[0], "late", 4, (void *)4), 0);

	t_set_rcvtimeo(fds[1], WAIT_MS / 1000);
	struct fin_peer peer = {.fd = fds[1], .len = len, .in = in};
	t_thread *th = t_thread_start(fin_peer_main, &peer);
	struct proact_completion c[4];
	assert_int_equal(t_collect(w, c, 4, WAIT_MS), 4);
	for (int i = 0; i < 4; i++)
		assert_ptr_equal(c[i].ctx, (void *)(intptr_t)(i + 1));
	assert_int_equal(c[0].error, 0);
	assert_int_equal(c[1].error, 0);
	assert_int_equal(c[2].op, PROACT_OP_SHUTDOWN);
	assert_int_equal(c[2].error, 0);
	assert_int_equal(c[3].error, EPIPE);
	assert_int_equal(c[3].size, 0);
	assert_int_equal(t_thread_join_within(th, WAIT_MS / 1000), 0);
	assert_true(peer.ok);

	/* Reads go on after a shutdown for writing. */
	char buf[8];
	t_write_all(fds[1], "back", 4);
	assert_int_equal(proact_read(w, fds[0], buf, sizeof(buf), NULL), 0);
	assert_int_equal(one(w).size, 4);
	free(out);
	free(in);
	close(fds[1]);
	proact_watcher_destroy(w);
}

#ifndef _WIN32
/*
 * Out of descriptors: the accept completes with EMFILE, the listener pauses
 * instead of spinning, and accepting resumes once a descriptor is freed.
 * Runs in a child with a low descriptor limit.
 */
static int emfile_run(proact_watcher *w)
{
	int port, l = t_listener(&port);
	int keep = t_connect(port); /* the client end stays open throughout */
	int spare = socket(AF_INET, SOCK_STREAM, 0);
	struct rlimit rl = {.rlim_cur = (rlim_t)t_fd_count() + 8, .rlim_max = 1024};
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 10;
	rl.rlim_cur = 64;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 11;
	while (dup(0) >= 0) /* use up every descriptor */
		;
	if (errno != EMFILE)
		return 12;
	if (proact_read(w, spare, NULL, 0, NULL) != 0) /* registered, so it can be freed */
		return 13;
	struct proact_completion c;
	int emfile = 0, rounds = 0;
	uint64_t end = proact_deadline_in(500);
	if (proact_accept(w, l, NULL, 0, NULL) != 0)
		return 14;
	while (proact_now() < end &&
	       rounds < 1000000) { /* resubmit at once, as a naive loop would */
		int n = proact_wait(w, &c, 1, 50);
		rounds++;
		if (n == 1 && c.op == PROACT_OP_ACCEPT) {
			if (c.error != EMFILE)
				return 15;
			emfile++;
			if (proact_accept(w, l, NULL, 0, NULL) != 0)
				return 16;
		}
	}
	/* Paused 100 ms each time: a handful in half a second, not thousands. */
	if (emfile < 1 || emfile > 20)
		return 17;
	struct proact_stats st; /* each EMFILE paused the listener once */
	if (proact_stats(w, &st) != 0 || st.pauses != (uint64_t)emfile || st.paused > 1)
		return 22;
	if (proact_free(w, spare, NULL) != 0)
		return 18;
	for (int i = 0; i < 100; i++) {
		if (proact_wait(w, &c, 1, WAIT_MS) != 1)
			return 19;
		if (c.op == PROACT_OP_ACCEPT)
			return c.error == 0 && c.newfd >= 0 ? 0 : 20;
	}
	(void)keep;
	return 21;
}

static int emfile_child(void)
{
	proact_watcher *w = t_watcher(NULL);
	int rc = emfile_run(w);
	proact_watcher_destroy(w); /* a memory checker follows the child too */
	return rc;
}

#endif

static void test_accept_emfile_pauses(void **state)
{
	(void)state;
#ifdef _WIN32
	skip(); /* Windows has no descriptor limit to lower (setrlimit) */
#else
	/* valgrind hands out descriptors from its own range and, above the
	   client's limit, closes the accepted socket and reports EMFILE: the
	   connection is gone, where the kernel keeps it queued. */
	if (getenv("PROACT_VALGRIND"))
		skip();
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(emfile_child());
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
#endif
}

/*
 * Connections that arrive in a burst while accepts are requested one at a
 * time: every one is accepted exactly once (io_uring's multishot accept may
 * take them before they are asked for), an accept with a deadline expires
 * when nobody connects and the next one works, and freeing the listener
 * leaves no descriptor behind.
 */
static void test_accept_one_at_a_time(void **state)
{
	(void)state;
	enum { N = 40 };
	int base = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	int port, l = t_listener(&port);
	struct proact_completion c;

	uint64_t dl = proact_deadline_in(50);
	struct proact_request q = {.fd = l, .op = PROACT_OP_ACCEPT, .deadline = dl};
	assert_int_equal(proact_submit(w, &q, 1), 1);
	c = one(w);
	assert_int_equal(c.op, PROACT_OP_ACCEPT);
	assert_int_equal(c.error, ETIMEDOUT);
	assert_int_equal(c.newfd, -1);

	int clients[N], seen_port[N];
	for (int i = 0; i < N; i++)
		clients[i] = t_connect(port);
	for (int i = 0; i < N; i++) {
		struct sockaddr_in peer;
		assert_int_equal(proact_accept(w, l, (struct sockaddr *)&peer, sizeof(peer), NULL),
		                 0);
		c = one(w);
		assert_int_equal(c.error, 0);
		assert_true((int)c.newfd >= 0);
		assert_int_equal(c.addrlen, sizeof(peer));
		seen_port[i] = ntohs(peer.sin_port);
		for (int j = 0; j < i; j++)
			assert_int_not_equal(seen_port[j], seen_port[i]); /* each one once */
		close(c.newfd);
	}
	for (int i = 0; i < N; i++) /* arrive with no accept requested */
		close(clients[i]);
	for (int i = 0; i < 8; i++)
		clients[i] = t_connect(port);
	assert_int_equal(proact_accept(w, l, NULL, 0, NULL), 0);
	c = one(w);
	assert_int_equal(c.error, 0);
	close(c.newfd);
	assert_int_equal(proact_free(w, l, NULL), 0); /* the rest go with the listener */
	c = one(w);
	assert_int_equal(c.op, PROACT_OP_FREE);
	for (int i = 0; i < 8; i++)
		close(clients[i]);
	proact_watcher_destroy(w);
	assert_int_equal(t_fd_count(), base);
}

static int udp_socket(struct sockaddr_in *a)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	*a = loopback4(0);
	assert_int_equal(bind(fd, (struct sockaddr *)a, sizeof(*a)), 0);
	a->sin_port = htons((uint16_t)local_port(fd));
	return fd;
}

/* Datagrams: whole, in order, with the sender; pool buffers; truncation reported. */
static void test_datagrams(void **state)
{
	(void)state;
	struct proact_options o = {.pool_buffer_size = 1024, .pool_buffer_count = 4};
	proact_watcher *w = t_watcher(&o);
	struct sockaddr_in aa, ab;
	int a = udp_socket(&aa), b = udp_socket(&ab);
	char msg[3][600];
	for (int i = 0; i < 3; i++)
		memset(msg[i], 'a' + i, sizeof(msg[i]));
	size_t sizes[3] = {100, 600, 1};
	for (int i = 0; i < 3; i++)
		assert_int_equal(proact_sendto(w, a, msg[i], sizes[i], (struct sockaddr *)&ab,
		                               sizeof(ab), (void *)(intptr_t)i),
		                 0);
	char ubuf[700];
	struct sockaddr_in from[3];
	assert_int_equal(proact_recvfrom(w, b, ubuf, sizeof(ubuf), (struct sockaddr *)&from[0],
	                                 sizeof(from[0]), (void *)10),
	                 0);
	assert_int_equal(proact_recvfrom(w, b, NULL, 0, (struct sockaddr *)&from[1],
	                                 sizeof(from[1]), (void *)11),
	                 0);
	char tiny[1];
	assert_int_equal(proact_recvfrom(w, b, tiny, 1, NULL, 0, (void *)12), 0);

	struct proact_completion c[6];
	assert_int_equal(t_collect(w, c, 6, WAIT_MS), 6);
	int rx = 0;
	for (int i = 0; i < 6; i++) {
		if (c[i].op == PROACT_OP_SENDTO) {
			assert_int_equal(c[i].error, 0);
			assert_int_equal(c[i].size, sizes[(intptr_t)c[i].ctx]);
			continue;
		}
		assert_int_equal(c[i].op, PROACT_OP_RECVFROM);
		assert_ptr_equal(c[i].ctx, (void *)(intptr_t)(10 + rx));
		if (rx == 0) { /* whole datagram, from a */
			assert_int_equal(c[i].error, 0);
			assert_int_equal(c[i].size, 100);
			assert_memory_equal(c[i].buf, msg[0], 100);
			assert_int_equal(c[i].addrlen, sizeof(struct sockaddr_in));
			assert_int_equal(from[0].sin_port, aa.sin_port);
		} else if (rx == 1) { /* into the pool */
			assert_int_equal(c[i].error, 0);
			assert_true(c[i].flags & PROACT_COMP_POOL);
			assert_int_equal(c[i].size, 600);
			assert_memory_equal(c[i].buf, msg[1], 600);
			assert_int_equal(from[1].sin_port, aa.sin_port);
		} else { /* one byte of one byte: fits */
			assert_int_equal(c[i].error, 0);
			assert_int_equal(c[i].size, 1);
		}
		rx++;
	}
	/* A datagram larger than the buffer: reported, not silently cut. */
	assert_int_equal(proact_sendto(w, a, msg[2], 600, (struct sockaddr *)&ab, sizeof(ab), NULL),
	                 0);
	assert_int_equal(proact_recvfrom(w, b, ubuf, 50, NULL, 0, NULL), 0);
	assert_int_equal(t_collect(w, c, 2, WAIT_MS), 2);
	struct proact_completion *r = c[0].op == PROACT_OP_RECVFROM ? &c[0] : &c[1];
	assert_int_equal(r->error, EMSGSIZE);
	assert_true(r->flags & PROACT_COMP_TRUNC);
	assert_int_equal(r->size, 50);
	assert_memory_equal(ubuf, msg[2], 50);
	/* And the next datagram is whole again. */
	assert_int_equal(proact_sendto(w, a, msg[0], 10, (struct sockaddr *)&ab, sizeof(ab), NULL),
	                 0);
	assert_int_equal(proact_recvfrom(w, b, NULL, 0, NULL, 0, NULL), 0);
	assert_int_equal(t_collect(w, c, 2, WAIT_MS), 2);
	r = c[0].op == PROACT_OP_RECVFROM ? &c[0] : &c[1];
	assert_int_equal(r->error, 0);
	assert_int_equal(r->size, 10);
	proact_watcher_destroy(w);
}

static void test_bad_lifecycle_requests(void **state)
{
	(void)state;
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	t_tcp_pair(fds);
	struct sockaddr_in a = loopback4(1);
	assert_int_equal(proact_connect(w, fds[0], NULL, 0, 0, NULL), -EINVAL);
	assert_int_equal(proact_connect(w, fds[0], (struct sockaddr *)&a, 0, 0, NULL), -EINVAL);
	assert_int_equal(proact_accept(w, fds[0], (struct sockaddr *)&a, 0, NULL), -EINVAL);
	assert_int_equal(proact_sendto(w, fds[0], NULL, 4, NULL, 0, NULL), -EINVAL);
	assert_int_equal(proact_sendto(w, fds[0], "x", 0, NULL, 0, NULL), -EINVAL);
	assert_int_equal(proact_recvfrom(w, fds[0], "x", 0, NULL, 0, NULL), -EINVAL);
	assert_int_equal(proact_shutdown_write(w, -1, NULL), -EBADF);
	struct proact_request q = {.fd = fds[0], .op = PROACT_OP_ACCEPT, .buf = &a, .len = 4};
	assert_int_equal(proact_submit(w, &q, 1), -EINVAL);
	q = (struct proact_request){.fd = fds[0],
	                            .op = PROACT_OP_WRITE,
	                            .buf = "x",
	                            .len = 1,
	                            .addr = (struct sockaddr *)&a,
	                            .addrlen = sizeof(a)};
	assert_int_equal(proact_submit(w, &q, 1), -EINVAL);
	/* An accept on a socket that is not listening completes with its error. */
	assert_int_equal(proact_accept(w, fds[0], NULL, 0, NULL), 0);
	struct proact_completion c = one(w);
	assert_int_equal(c.op, PROACT_OP_ACCEPT);
	assert_int_equal(c.error, EINVAL);
	assert_int_equal(c.newfd, -1);
	close(fds[1]);
	proact_watcher_destroy(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_accept_connect_v4),
	    cmocka_unit_test(test_connect_v6_read_waits),
	    cmocka_unit_test(test_connect_unix),
	    cmocka_unit_test(test_connect_refused),
	    cmocka_unit_test(test_connect_deadline),
	    cmocka_unit_test(test_shutdown_after_writes),
	    cmocka_unit_test(test_accept_emfile_pauses),
	    cmocka_unit_test(test_accept_one_at_a_time),
	    cmocka_unit_test(test_datagrams),
	    cmocka_unit_test(test_bad_lifecycle_requests),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
