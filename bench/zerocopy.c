/* SPDX-License-Identifier: MIT */
/*
 * zerocopy.c - does a zero-copy send pay here? One loopback TCP connection,
 * a reader thread that discards, and a sender that moves --bytes in writes
 * of --size bytes, four ways:
 *   send      send(2) on a blocking socket
 *   msg_zc    send(2) with MSG_ZEROCOPY (SO_ZEROCOPY), completions read from
 *             the error queue as they come
 *   uring     IORING_OP_SEND, one in flight
 *   uring_zc  IORING_OP_SEND_ZC, one in flight, its notifications reaped
 * Prints one line per way: MB/s and the process's CPU seconds per GiB
 * (both threads), the figure a server pays. The data is the same buffer each
 * time: only the cost of moving it is measured, as in bench/README.md.
 *
 *   zerocopy [--size B] [--bytes B] [--ways send,msg_zc,uring,uring_zc]
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifdef BENCH_HAVE_URING
#include <liburing.h>
#endif

#ifndef SO_ZEROCOPY
#define SO_ZEROCOPY 60
#endif
#ifndef MSG_ZEROCOPY
#define MSG_ZEROCOPY 0x4000000
#endif

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

/* A connected loopback TCP pair: fds[0] sends, fds[1] receives. */
static void tcp_pair(int fds[2])
{
	int l = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&a, &len))
		die("listen");
	fds[0] = socket(AF_INET, SOCK_STREAM, 0);
	if (fds[0] < 0 || connect(fds[0], (struct sockaddr *)&a, sizeof(a)))
		die("connect");
	fds[1] = accept(l, NULL, NULL);
	if (fds[1] < 0)
		die("accept");
	close(l);
	int one = 1;
	setsockopt(fds[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

struct sink {
	int fd;
	size_t want, got;
};

static void *sink_main(void *arg)
{
	struct sink *s = arg;
	size_t cap = 1 << 20;
	char *buf = malloc(cap);
	while (buf && s->got < s->want) {
		ssize_t n = recv(s->fd, buf, cap, 0);
		if (n <= 0)
			break;
		s->got += (size_t)n;
	}
	free(buf);
	return NULL;
}

/* Reads whatever zero-copy notifications are queued; blocks for one if asked. */
static void reap_errqueue(int fd, int block)
{
	for (;;) {
		char control[128];
		struct msghdr m = {.msg_control = control, .msg_controllen = sizeof(control)};
		if (recvmsg(fd, &m, MSG_ERRQUEUE | (block ? 0 : MSG_DONTWAIT)) < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				if (!block)
					return;
				usleep(50);
				continue;
			}
			die("recvmsg errqueue");
		}
		block = 0;
	}
}

static void send_all(int fd, const char *buf, size_t size, size_t bytes, int zc)
{
	size_t sent = 0, calls = 0;
	while (sent < bytes) {
		size_t n = bytes - sent < size ? bytes - sent : size;
		ssize_t k = send(fd, buf, n, zc ? MSG_ZEROCOPY : 0);
		if (k < 0 && errno == ENOBUFS && zc) { /* too many notifications pending */
			reap_errqueue(fd, 1);
			continue;
		}
		if (k <= 0)
			die("send");
		sent += (size_t)k;
		if (zc && ++calls % 32 == 0)
			reap_errqueue(fd, 0);
	}
}

#ifdef BENCH_HAVE_URING
static void uring_all(int fd, const char *buf, size_t size, size_t bytes, int zc)
{
	struct io_uring ring;
	if (io_uring_queue_init(64, &ring, 0))
		die("io_uring_queue_init");
	size_t sent = 0;
	unsigned notifs = 0;
	while (sent < bytes) {
		size_t n = bytes - sent < size ? bytes - sent : size;
		struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
		if (zc) {
			io_uring_prep_send_zc(sqe, fd, buf, n, 0, 0);
			notifs++;
		} else {
			io_uring_prep_send(sqe, fd, buf, n, 0);
		}
		io_uring_submit(&ring);
		for (int done = 0; !done;) {
			struct io_uring_cqe *cqe;
			if (io_uring_wait_cqe(&ring, &cqe))
				die("io_uring_wait_cqe");
			if (cqe->flags & IORING_CQE_F_NOTIF) {
				notifs--;
			} else {
				if (cqe->res <= 0) {
					errno = -cqe->res;
					die(zc ? "send_zc" : "send");
				}
				sent += (size_t)cqe->res;
				done = 1;
			}
			io_uring_cqe_seen(&ring, cqe);
		}
	}
	while (notifs > 0) {
		struct io_uring_cqe *cqe;
		if (io_uring_wait_cqe(&ring, &cqe))
			die("io_uring_wait_cqe");
		notifs -= (cqe->flags & IORING_CQE_F_NOTIF) != 0;
		io_uring_cqe_seen(&ring, cqe);
	}
	io_uring_queue_exit(&ring);
}
#endif

static void run_way(const char *way, size_t size, size_t bytes)
{
	int fds[2];
	tcp_pair(fds);
	int zc = strstr(way, "zc") != NULL;
	if (strcmp(way, "msg_zc") == 0) {
		int one = 1;
		if (setsockopt(fds[0], SOL_SOCKET, SO_ZEROCOPY, &one, sizeof(one))) {
			printf("way=%s size=%zu unavailable (%s)\n", way, size, strerror(errno));
			close(fds[0]);
			close(fds[1]);
			return;
		}
	}
	char *buf = malloc(size);
	if (!buf)
		die("malloc");
	memset(buf, 'z', size);
	struct sink s = {.fd = fds[1], .want = bytes};
	pthread_t th;
	pthread_create(&th, NULL, sink_main, &s);
	double t0 = now_s(), c0 = cpu_s();
	if (strncmp(way, "uring", 5) == 0) {
#ifdef BENCH_HAVE_URING
		uring_all(fds[0], buf, size, bytes, zc);
#else
		printf("way=%s size=%zu unavailable (built without liburing)\n", way, size);
		shutdown(fds[0], SHUT_WR);
		pthread_join(th, NULL);
		close(fds[0]);
		close(fds[1]);
		free(buf);
		return;
#endif
	} else {
		send_all(fds[0], buf, size, bytes, zc);
	}
	pthread_join(th, NULL);
	double t = now_s() - t0, c = cpu_s() - c0;
	if (strcmp(way, "msg_zc") == 0)
		reap_errqueue(fds[0], 0);
	printf("way=%s size=%zu MBps=%.0f cpu_s_per_GiB=%.3f got=%zu\n", way, size,
	       (double)bytes / t / 1e6, c / ((double)bytes / (1u << 30)), s.got);
	fflush(stdout);
	close(fds[0]);
	close(fds[1]);
	free(buf);
}

int main(int argc, char **argv)
{
	size_t size = 65536, bytes = (size_t)512 << 20;
	const char *ways = "send,msg_zc,uring,uring_zc";
	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--size") == 0)
			size = strtoull(argv[i + 1], NULL, 0);
		else if (strcmp(argv[i], "--bytes") == 0)
			bytes = strtoull(argv[i + 1], NULL, 0);
		else if (strcmp(argv[i], "--ways") == 0)
			ways = argv[i + 1];
		else {
			fprintf(stderr, "usage: zerocopy [--size B] [--bytes B] [--ways LIST]\n");
			return 2;
		}
	}
	if (size == 0 || bytes == 0) {
		fprintf(stderr, "zerocopy: --size and --bytes must be > 0\n");
		return 2;
	}
	char *list = strdup(ways);
	for (char *save = NULL, *w = strtok_r(list, ",", &save); w; w = strtok_r(NULL, ",", &save))
		run_way(w, size, bytes);
	free(list);
	return 0;
}
