/* SPDX-License-Identifier: MIT */
/*
 * Checks the TLS layer against real peers over loopback, with certificates
 * made at run time (DESIGN rule 15):
 *   - as a server, with `openssl s_client` verifying it (CA, host name):
 *     SNI and ALPN arrive, 256 KiB of bytes echo back exactly through
 *     NULL-buffer reads written back as they are (zero copy), and
 *     close_notify ends the client cleanly;
 *   - as a client, against `openssl s_server -rev`: the certificate and
 *     the name are verified, ALPN agreed, a line comes back reversed, and
 *     a certificate the client does not trust fails the handshake with
 *     EACCES and OpenSSL's reason;
 *   - as an HTTPS responder for `curl`: two requests on one keep-alive
 *     connection.
 * Exits 77 if openssl or curl is missing, and on Windows: the peers are
 * this machine's programs, which a Windows program under Wine cannot start
 * (no fork, no exec of a Linux program).
 */
#include "tls_common.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef _WIN32
#define MSG (256u << 10)

/* ---- proact as the server, openssl s_client as the client ---------------- */

struct feeder {
	int in, out;           /* the child's stdin and stdout */
	const uint8_t *msg;    /* what goes to its stdin */
	size_t sent, received; /* stdin bytes written; stdout bytes checked */
	long bad;              /* first wrong byte of stdout, or -1 */
};

/* Moves what the pipes take without blocking, both ways. */
static void feed(struct feeder *f)
{
	if (f->sent < MSG) {
		ssize_t k =
		    write(f->in, f->msg + f->sent, MSG - f->sent > 4096 ? 4096 : MSG - f->sent);
		if (k > 0)
			f->sent += (size_t)k;
	}
	uint8_t buf[8192];
	ssize_t k;
	while ((k = read(f->out, buf, sizeof(buf))) > 0) {
		long b = t_check(buf, (size_t)k, 7, f->received);
		if (b >= 0 && f->bad < 0)
			f->bad = (long)f->received + b;
		f->received += (size_t)k;
	}
}

/* The server side of a test: a layer, a context, a blocking listener. */
struct server {
	struct tt_layer l;
	proact_tls_ctx *ctx;
	int lfd, port;
};

static void server_start(struct server *s, const char *alpn)
{
	tt_layer_new(&s->l);
	s->ctx = tt_server_ctx(false, alpn);
	s->lfd = t_listener(&s->port);
	t_set_rcvtimeo(s->lfd, 10);
}

/* Accepts the client's connection and makes it a TLS one, handshake queued. */
static proact_tls_conn *server_accept(struct server *s)
{
	proact_tls_conn *c;
	assert_int_equal(proact_tls_conn_new(s->l.t, &c, tt_accept(s->lfd), s->ctx, NULL), 0);
	assert_int_equal(proact_tls_handshake(c, proact_deadline_in(TT_TIMEOUT_MS), c), 0);
	return c;
}

static void server_stop(struct server *s, proact_tls_conn *c)
{
	tt_free(s->l.t, c);
	close(s->lfd);
	tt_layer_free(&s->l);
	proact_tls_ctx_free(s->ctx);
}

static void test_server_s_client(void **state)
{
	(void)state;
	const struct tt_certs *certs = tt_certs();
	struct server sv;
	server_start(&sv, "h2,http/1.1");
	struct tt_layer l = sv.l;
	int port = sv.port;
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	char *argv[] = {"openssl",
	                "s_client",
	                "-connect",
	                addr,
	                "-CAfile",
	                (char *)certs->cert,
	                "-verify_return_error",
	                "-servername",
	                "localhost",
	                "-alpn",
	                "http/1.1",
	                "-quiet",
	                NULL};
	uint8_t *msg = malloc(MSG);
	assert_non_null(msg);
	t_fill(msg, MSG, 7, 0);
	struct feeder f = {.msg = msg, .bad = -1};
	pid_t pid = tt_spawn(argv, &f.in, &f.out);
	t_set_nonblock(f.in, 1);
	proact_tls_conn *c = server_accept(&sv);

	/* Echo: each read's buffer is written back as it is. */
	size_t echoed = 0;
	bool shut = false, handshaken = false;
	uint64_t end = proact_deadline_in(TT_TIMEOUT_MS);
	while (!shut && proact_now() < end) {
		feed(&f);
		struct proact_completion r[8];
		int n = proact_tls_wait(l.t, r, 8, 10);
		assert_true(n >= 0);
		for (int i = 0; i < n; i++) {
			if (r[i].error)
				fail_msg("op %d: %s (%s)", r[i].op, proact_strerror(r[i].error),
				         proact_tls_error(c));
			if (r[i].op == PROACT_TLS_OP_HANDSHAKE) {
				handshaken = true;
				assert_string_equal(proact_tls_server_name(c), "localhost");
				const unsigned char *p;
				size_t len = proact_tls_alpn(c, &p);
				assert_int_equal(len, 8);
				assert_memory_equal(p, "http/1.1", 8);
				assert_int_equal(proact_tls_read(c, NULL, 0, 0, c), 0);
			} else if (r[i].op == PROACT_TLS_OP_READ) {
				assert_true(r[i].size > 0);
				assert_true(r[i].flags & PROACT_COMP_POOL);
				assert_int_equal(proact_tls_write(c, r[i].buf, r[i].size, 0, c), 0);
			} else if (r[i].op == PROACT_TLS_OP_WRITE) {
				echoed += r[i].size;
				if (echoed == MSG)
					assert_int_equal(proact_tls_shutdown(c, 0, c), 0);
				else
					assert_int_equal(proact_tls_read(c, NULL, 0, 0, c), 0);
			} else if (r[i].op == PROACT_TLS_OP_SHUTDOWN) {
				shut = true;
			}
		}
	}
	/* The client ends at close_notify; what it printed is the echo. */
	while (f.received < MSG && proact_now() < end) {
		feed(&f);
		usleep(1000);
	}
	int st = tt_reap(pid, 10);
	assert_true(handshaken);
	assert_true(shut);
	assert_int_equal(f.received, MSG);
	assert_int_equal(f.bad, -1);
	assert_int_equal(st, 0);
	close(f.in);
	close(f.out);
	free(msg);
	server_stop(&sv, c);
}

/* ---- proact as the client, openssl s_server as the server ----------------- */

/* openssl s_server on a port of the kernel's choosing; returns its pid. */
static pid_t start_s_server(const char *cert, const char *key, int *port, int *in, int *out)
{
	char *argv[] = {"openssl", "s_server",  "-accept", "127.0.0.1:0", "-cert",    (char *)cert,
	                "-key",    (char *)key, "-rev",    "-alpn",       "http/1.1", NULL};
	pid_t pid = tt_spawn(argv, in, out);
	char rest[64];
	if (!tt_wait_line(*out, "ACCEPT 127.0.0.1:", rest, sizeof(rest), 10000)) {
		tt_reap(pid, 0);
		fail_msg("openssl s_server did not start");
	}
	*port = atoi(rest);
	return pid;
}

static void test_client_s_server(void **state)
{
	(void)state;
	const struct tt_certs *certs = tt_certs();
	int port, in, out;
	pid_t pid = start_s_server(certs->cert, certs->key, &port, &in, &out);
	struct tt_layer l;
	tt_layer_new(&l);
	proact_tls_ctx *cctx = tt_client_ctx(0, "h2,http/1.1");
	proact_tls_conn *c;
	assert_int_equal(proact_tls_conn_new(l.t, &c, t_connect(port), cctx, "localhost"), 0);
	assert_int_equal(proact_tls_handshake(c, proact_deadline_in(TT_TIMEOUT_MS), NULL), 0);
	struct proact_completion r = tt_expect(l.t, c, PROACT_TLS_OP_HANDSHAKE);
	if (r.error)
		fail_msg("handshake: %s (%s)", proact_strerror(r.error), proact_tls_error(c));
	assert_null(proact_tls_error(c));
	const unsigned char *p;
	assert_int_equal(proact_tls_alpn(c, &p), 8);
	assert_memory_equal(p, "http/1.1", 8);
	assert_string_equal(proact_tls_version(c), "TLSv1.3");

	static const char line[] = "hello proact\n";
	assert_int_equal(proact_tls_write(c, line, sizeof(line) - 1, 0, NULL), 0);
	assert_int_equal(tt_expect(l.t, c, PROACT_TLS_OP_WRITE).size, sizeof(line) - 1);
	char got[64];
	size_t n = 0;
	while (n < sizeof(line) - 1) {
		assert_int_equal(proact_tls_read(c, got + n, sizeof(got) - n, 0, NULL), 0);
		r = tt_expect(l.t, c, PROACT_TLS_OP_READ);
		assert_int_equal(r.error, 0);
		assert_true(r.size > 0);
		n += r.size;
	}
	assert_int_equal(n, sizeof(line) - 1);
	assert_memory_equal(got, "tcaorp olleh\n", n);
	assert_int_equal(proact_tls_shutdown(c, 0, NULL), 0);
	assert_int_equal(tt_expect(l.t, c, PROACT_TLS_OP_SHUTDOWN).error, 0);
	tt_free(l.t, c);
	kill(pid, SIGTERM);
	tt_reap(pid, 10);
	close(in);
	close(out);
	tt_layer_free(&l);
	proact_tls_ctx_free(cctx);
}

/* A server whose certificate the client does not trust: EACCES, with the
   reason, and the connection's requests all fail with it. */
static void test_client_untrusted(void **state)
{
	(void)state;
	const struct tt_certs *certs = tt_certs();
	int port, in, out;
	pid_t pid = start_s_server(certs->other_cert, certs->other_key, &port, &in, &out);
	struct tt_layer l;
	tt_layer_new(&l);
	proact_tls_ctx *cctx = tt_client_ctx(0, NULL);
	proact_tls_conn *c;
	assert_int_equal(proact_tls_conn_new(l.t, &c, t_connect(port), cctx, "localhost"), 0);
	assert_int_equal(proact_tls_handshake(c, proact_deadline_in(TT_TIMEOUT_MS), NULL), 0);
	char buf[16];
	assert_int_equal(proact_tls_read(c, buf, sizeof(buf), 0, NULL), 0);
	struct proact_completion r = tt_expect(l.t, c, PROACT_TLS_OP_HANDSHAKE);
	assert_int_equal(r.error, EACCES);
	assert_non_null(proact_tls_error(c));
	print_message("untrusted server: %s\n", proact_tls_error(c));
	assert_int_equal(tt_expect(l.t, c, PROACT_TLS_OP_READ).error, EACCES);
	/* later requests fail at once, with the same error */
	assert_int_equal(proact_tls_write(c, "x", 1, 0, NULL), 0);
	assert_int_equal(tt_expect(l.t, c, PROACT_TLS_OP_WRITE).error, EACCES);
	tt_free(l.t, c);
	kill(pid, SIGTERM);
	tt_reap(pid, 10);
	close(in);
	close(out);
	tt_layer_free(&l);
	proact_tls_ctx_free(cctx);
}

/* ---- curl against an HTTPS responder ---------------------------------------- */

static const char reply[] = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nContent-Type: text/plain\r\n"
                            "\r\nhello\n";

/* Serves requests on @c until the client ends; returns how many. */
static int serve_https(proact_tls *t, proact_tls_conn *c)
{
	char req[4096];
	size_t have = 0;
	int served = 0;
	assert_int_equal(proact_tls_read(c, req, sizeof(req), 0, NULL), 0);
	for (;;) {
		struct proact_completion r;
		if (tt_collect(t, &r, 1, TT_TIMEOUT_MS) != 1)
			fail_msg("curl: nothing came");
		if (r.op == PROACT_TLS_OP_WRITE) {
			assert_int_equal(r.error, 0);
			continue;
		}
		assert_int_equal(r.op, PROACT_TLS_OP_READ);
		if (r.error || r.size == 0) /* close_notify, or a client that just closes */
			return served;
		have += r.size;
		char *end = memmem(req, have, "\r\n\r\n", 4);
		if (end) {
			size_t used = (size_t)(end + 4 - req);
			memmove(req, req + used, have - used);
			have -= used;
			served++;
			assert_int_equal(proact_tls_write(c, reply, sizeof(reply) - 1, 0, NULL), 0);
		}
		assert_true(have < sizeof(req));
		assert_int_equal(proact_tls_read(c, req + have, sizeof(req) - have, 0, NULL), 0);
	}
}

static void test_curl(void **state)
{
	(void)state;
	const struct tt_certs *certs = tt_certs();
	struct server sv;
	server_start(&sv, "http/1.1");
	int port = sv.port;
	char url[64], resolve[64];
	snprintf(url, sizeof(url), "https://localhost:%d/", port);
	snprintf(resolve, sizeof(resolve), "localhost:%d:127.0.0.1", port);
	char *argv[] = {"curl",      "-sS",   "--max-time", "15", "--cacert", (char *)certs->cert,
	                "--resolve", resolve, url,          url,  NULL};
	int in, out;
	pid_t pid = tt_spawn(argv, &in, &out);
	proact_tls_conn *c = server_accept(&sv);
	struct proact_completion r = tt_expect(sv.l.t, c, PROACT_TLS_OP_HANDSHAKE);
	if (r.error)
		fail_msg("handshake: %s (%s)", proact_strerror(r.error), proact_tls_error(c));
	assert_int_equal(serve_https(sv.l.t, c), 2);
	char body[64];
	size_t n = tt_read_pipe(out, body, sizeof(body), 10000);
	assert_int_equal(tt_reap(pid, 10), 0);
	assert_int_equal(n, 12);
	assert_memory_equal(body, "hello\nhello\n", 12);
	close(in);
	close(out);
	server_stop(&sv, c);
}

#endif

int main(void)
{
#ifdef _WIN32
	fprintf(stderr, "the peers (openssl, curl) are this machine's programs, which a Windows "
	                "program cannot start under Wine: skipped\n");
	return 77;
#else
	if (!tt_have("openssl") || !tt_have("curl")) {
		fprintf(stderr, "openssl or curl is not installed: skipped\n");
		return 77;
	}
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_server_s_client),
	    cmocka_unit_test(test_client_s_server),
	    cmocka_unit_test(test_client_untrusted),
	    cmocka_unit_test(test_curl),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	tt_certs_remove();
	return rc;
#endif
}
