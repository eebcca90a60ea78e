/* SPDX-License-Identifier: MIT */
/*
 * tls_idle - idle TLS clients for bench/tls_idle.sh.
 *
 *   tls_idle --port N --conns N [--hold-seconds N]
 *
 * Opens N connections to 127.0.0.1:port, completes a TLS handshake on each
 * (through proact's TLS layer, certificate not checked), prints "N
 * connections open", then holds them idle with a read pending until the time
 * is up. Connections are opened 256 at a time so the listen queue never
 * overflows.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proact.h"
#include "proact_tls.h"

#define STEP 256

static int dial(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
		return fd;
	perror("tls_idle: connect");
	exit(1);
}

/* Waits for @want handshakes; each done one gets a NULL-buffer read. */
static void handshakes(proact_tls *t, int want)
{
	struct proact_completion c[256];
	uint64_t end = proact_deadline_in(60000);
	while (want > 0 && proact_now() < end) {
		int n = proact_tls_wait(t, c, 256, 1000);
		for (int i = 0; i < n; i++) {
			if (c[i].op != PROACT_TLS_OP_HANDSHAKE)
				continue;
			if (c[i].error) {
				fprintf(stderr, "tls_idle: handshake: %s\n",
				        proact_strerror(c[i].error));
				exit(1);
			}
			proact_tls_read(c[i].ctx, NULL, 0, 0, c[i].ctx);
			want--;
		}
	}
	if (want > 0) {
		fprintf(stderr, "tls_idle: %d handshakes missing\n", want);
		exit(1);
	}
}

int main(int argc, char **argv)
{
	int port = 0, conns = 0, hold = 60;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--port"))
			port = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--conns"))
			conns = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--hold-seconds"))
			hold = atoi(argv[i + 1]);
	}
	if (port <= 0 || conns <= 0) {
		fprintf(stderr, "usage: tls_idle --port N --conns N [--hold-seconds N]\n");
		return 2;
	}
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	proact_watcher *w;
	proact_tls *t;
	proact_tls_ctx *ctx;
	struct proact_tls_config cfg = {.flags = PROACT_TLS_NO_VERIFY};
	if (proact_watcher_new(&w, NULL) < 0 || proact_tls_new(&t, w, NULL) < 0 ||
	    proact_tls_ctx_new(&ctx, &cfg) < 0) {
		fprintf(stderr, "tls_idle: setup failed\n");
		return 1;
	}
	for (int done = 0; done < conns;) {
		int step = conns - done < STEP ? conns - done : STEP;
		for (int i = 0; i < step; i++) {
			proact_tls_conn *c;
			if (proact_tls_conn_new(t, &c, dial(port), ctx, NULL) < 0 ||
			    proact_tls_handshake(c, proact_deadline_in(60000), c) < 0) {
				fprintf(stderr, "tls_idle: connection %d failed\n", done + i);
				return 1;
			}
		}
		handshakes(t, step);
		done += step;
	}
	printf("%d connections open\n", conns);
	fflush(stdout);
	struct proact_completion c[64];
	uint64_t end = proact_deadline_in((uint64_t)hold * 1000);
	while (proact_now() < end)
		proact_tls_wait(t, c, 64, 1000);
	proact_watcher_shutdown(w);
	proact_tls_destroy(t);
	proact_watcher_destroy(w);
	proact_tls_ctx_free(ctx);
	return 0;
}
