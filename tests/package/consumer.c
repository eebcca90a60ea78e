// SPDX-License-Identifier: MIT
/*
 * consumer - a program built against an installed proact, as a user builds
 * one (scripts/package-test.sh: with find_package and with pkg-config).
 *
 *   consumer                  plain requests only
 *   consumer CERT KEY         also TLS (built with CONSUMER_TLS)
 *
 * Moves bytes over a socketpair through a watcher: a write on one end, a
 * full read on the other, then frees both ends; with TLS, a handshake, a
 * write and a pool read on a second pair through the TLS layer. Prints what
 * it did and exits 0, or says what failed and exits 1.
 */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <proact.h>
#ifdef CONSUMER_TLS
#include <proact_tls.h>
#endif

static const char msg[] = "bytes through an installed proact";

static int failed(const char *what, int err)
{
	fprintf(stderr, "consumer: %s: %s\n", what, proact_strerror(err));
	return 1;
}

/* Checks one completion of the exchange: the whole message moved. */
static int check(const struct proact_completion *c, const void *got)
{
	if (c->error != 0)
		return failed("completion", c->error);
	if (c->size != sizeof(msg) || (got != NULL && memcmp(got, msg, sizeof(msg)) != 0)) {
		fprintf(stderr, "consumer: op %d moved %zu bytes, not the message\n", c->op,
		        c->size);
		return 1;
	}
	return 0;
}

static int plain(proact_watcher *w)
{
	int sv[2], r;
	char buf[sizeof(msg)];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
		return failed("socketpair", 1);
	if ((r = proact_write(w, sv[0], msg, sizeof(msg), NULL)) != 0 ||
	    (r = proact_read_full(w, sv[1], buf, sizeof(buf), NULL)) != 0)
		return failed("submit", r);
	int moved = 0, freed = 0;
	uint64_t end = proact_deadline_in(5000);
	while (freed < 2 && proact_now() < end) {
		struct proact_completion c[8];
		int n = proact_wait(w, c, 8, 100);
		if (n < 0)
			return failed("proact_wait", n);
		for (int i = 0; i < n; i++) {
			if (c[i].op == PROACT_OP_FREE) {
				freed++;
				continue;
			}
			if (check(&c[i], c[i].op == PROACT_OP_READ ? buf : NULL) != 0)
				return 1;
			if (++moved == 2 && ((r = proact_free(w, sv[0], NULL)) != 0 ||
			                     (r = proact_free(w, sv[1], NULL)) != 0))
				return failed("proact_free", r);
		}
	}
	if (freed < 2)
		return failed("plain exchange", 110);
	printf("consumer: %s: %zu bytes written and read, both ends freed\n", proact_backend(w),
	       sizeof(msg));
	return 0;
}

#ifdef CONSUMER_TLS
static int tls(proact_watcher *w, const char *cert, const char *key)
{
	struct proact_tls_config scfg = {.flags = PROACT_TLS_SERVER, .cert_file = cert,
	                                 .key_file = key};
	struct proact_tls_config ccfg = {.flags = PROACT_TLS_NO_VERIFY};
	proact_tls_ctx *sctx, *cctx;
	proact_tls *t;
	proact_tls_conn *server, *client;
	int sv[2], r;
	if ((r = proact_tls_ctx_new(&sctx, &scfg)) != 0 || (r = proact_tls_ctx_new(&cctx, &ccfg)) != 0)
		return failed("proact_tls_ctx_new", r);
	if ((r = proact_tls_new(&t, w, NULL)) != 0)
		return failed("proact_tls_new", r);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
		return failed("socketpair", 1);
	if ((r = proact_tls_conn_new(t, &server, sv[0], sctx, NULL)) != 0 ||
	    (r = proact_tls_conn_new(t, &client, sv[1], cctx, "localhost")) != 0 ||
	    (r = proact_tls_handshake(server, 0, NULL)) != 0 ||
	    (r = proact_tls_handshake(client, 0, NULL)) != 0 ||
	    (r = proact_tls_write(client, msg, sizeof(msg), 0, NULL)) != 0 ||
	    (r = proact_tls_read(server, NULL, 0, 0, NULL)) != 0)
		return failed("TLS submit", r);
	int handshakes = 0, freed = 0, got = 0;
	uint64_t end = proact_deadline_in(5000);
	while (freed < 2 && proact_now() < end) {
		struct proact_completion c[8];
		int n = proact_tls_wait(t, c, 8, 100);
		if (n < 0)
			return failed("proact_tls_wait", n);
		for (int i = 0; i < n; i++) {
			if (c[i].op == PROACT_TLS_OP_FREE) {
				freed++;
				continue;
			}
			if (c[i].error != 0)
				return failed("TLS completion", c[i].error);
			if (c[i].op == PROACT_TLS_OP_HANDSHAKE) {
				handshakes++;
				continue;
			}
			if (c[i].op == PROACT_TLS_OP_READ) {
				/* One record carries the whole message; a read gets it. */
				if (check(&c[i], c[i].buf) != 0)
					return 1;
				got = 1;
				if ((r = proact_tls_free(server, NULL)) != 0 ||
				    (r = proact_tls_free(client, NULL)) != 0)
					return failed("proact_tls_free", r);
			}
		}
	}
	if (freed < 2 || !got || handshakes != 2)
		return failed("TLS exchange", 110);
	printf("consumer: TLS: handshake, %zu bytes written and read, both ends freed\n",
	       sizeof(msg));
	proact_tls_destroy(t);
	proact_tls_ctx_free(sctx);
	proact_tls_ctx_free(cctx);
	return 0;
}
#endif

int main(int argc, char **argv)
{
	proact_watcher *w;
	int r = proact_watcher_new(&w, NULL);
	if (r != 0)
		return failed("proact_watcher_new", r);
	r = plain(w);
#ifdef CONSUMER_TLS
	if (r == 0 && argc == 3)
		r = tls(w, argv[1], argv[2]);
#else
	(void)argv;
	if (r == 0 && argc == 3)
		r = failed("TLS asked of a consumer built without it", 95);
#endif
	proact_watcher_destroy(w);
	return r;
}
