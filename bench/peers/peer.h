/* SPDX-License-Identifier: MIT */
/*
 * peer.h - what every benchmark server shares: the command line, the
 * listener, the "listening on" line, the fd limit and the stop signal.
 *
 *   SERVER [--port N] [--push] [--backend NAME]
 *
 * Every server listens on 127.0.0.1 only and prints exactly one line
 * "listening on 127.0.0.1:PORT" on stdout once it accepts connections. It
 * echoes every byte it reads back to the same connection. With --push, a read
 * whose first byte is '!' is not echoed: its bytes are sent to every open
 * connection instead (the push scenario's trigger). SIGTERM and SIGINT make
 * it exit. --backend is only meaningful for proact_echo and is ignored
 * elsewhere.
 *
 * Header-only (static functions) so each peer stays one file plus this.
 */
#ifndef BENCH_PEER_H
#define BENCH_PEER_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define PUSH_TRIGGER '!' /* first byte of a read that is broadcast (--push) */

struct peer_args {
	int port;
	bool push;
	const char *backend;
};

static inline void peer_usage(const char *name)
{
	fprintf(stderr, "usage: %s [--port N] [--push] [--backend epoll|io_uring]\n", name);
	exit(2);
}

static inline struct peer_args peer_parse(int argc, char **argv)
{
	struct peer_args a = {.port = 0};
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--push")) {
			a.push = true;
		} else if (!strcmp(argv[i], "--port") && i + 1 < argc) {
			char *end;
			long v = strtol(argv[++i], &end, 10);
			if (*end || v < 0 || v > 65535)
				peer_usage(argv[0]);
			a.port = (int)v;
		} else if (!strcmp(argv[i], "--backend") && i + 1 < argc) {
			a.backend = argv[++i];
		} else {
			peer_usage(argv[0]);
		}
	}
	return a;
}

/* Each connection is an fd: take the hard limit (20,000 on the bench box). */
static inline void peer_raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* A non-blocking listener on 127.0.0.1:port; exits on failure. */
static inline int peer_listen(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	/* The backlog is capped by net.core.somaxconn (4096 here). */
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 65535) < 0) {
		perror("listen");
		exit(1);
	}
	return fd;
}

static inline void peer_print_listening(int fd)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
		perror("getsockname");
		exit(1);
	}
	printf("listening on 127.0.0.1:%d\n", ntohs(sa.sin_port));
	fflush(stdout);
}

/* Echo is request/response: Nagle must not hold back a short reply. */
static inline void peer_nodelay(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static volatile sig_atomic_t peer_stop;

static inline void peer_on_signal(int sig)
{
	(void)sig;
	peer_stop = 1;
}

/* SIGTERM/SIGINT set peer_stop. No SA_RESTART: a blocked wait returns EINTR
   (the servers also bound their waits, which covers the check-then-block
   race). SIGPIPE is ignored: a client that goes away is not a crash. */
static inline void peer_catch_signals(void)
{
	struct sigaction sa = {.sa_handler = peer_on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

#endif /* BENCH_PEER_H */
