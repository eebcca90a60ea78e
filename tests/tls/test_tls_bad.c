/* SPDX-License-Identifier: MIT */
/*
 * Checks that bad input ends that connection alone, with a clear error and
 * nothing lost (DESIGN rules 12 and 15): bytes that are not a ClientHello,
 * a truncated record, a peer that resets mid-handshake, a handshake that
 * never finishes (its deadline), a record with a bad MAC, an oversized
 * record, a renegotiation attempt, a certificate the client does not trust
 * and a host name that does not match. Each case runs beside a healthy
 * connection of the same layer, which still echoes afterwards, and ends with
 * every descriptor closed (and, under ASan, no leak).
 */
#include "tls_common.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct fixture {
	struct tt_layer l;
	proact_tls_ctx *sctx, *cctx;
	proact_tls_conn *gs, *gc; /* the healthy pair */
	int fds0;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	f->fds0 = t_fd_count();
	tt_layer_new(&f->l);
	f->sctx = tt_server_ctx(false, NULL);
	f->cctx = tt_client_ctx(0, NULL);
	tt_pair(&f->l, f->sctx, f->cctx, &f->gs, &f->gc);
	*state = f;
	return 0;
}

/* The write of 4 bytes on @w and their read on @r completed: in either
   order, as each is on its own connection (under Wine the read may come
   first). */
static void expect_exchange(struct fixture *f, proact_tls_conn *w, proact_tls_conn *r)
{
	struct proact_completion c[2];
	assert_int_equal(tt_collect(f->l.t, c, 2, TT_TIMEOUT_MS), 2);
	assert_int_not_equal(c[0].op, c[1].op);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(c[i].error, 0);
		assert_true(c[i].fd == proact_tls_fd(c[i].op == PROACT_TLS_OP_WRITE ? w : r));
		assert_int_equal(c[i].size, 4);
	}
}

/* The healthy pair still carries bytes both ways; then everything goes. */
static int teardown(void **state)
{
	struct fixture *f = *state;
	char a[8], b[8];
	assert_int_equal(proact_tls_write(f->gc, "ping", 4, 0, NULL), 0);
	assert_int_equal(proact_tls_read(f->gs, a, sizeof(a), 0, NULL), 0);
	expect_exchange(f, f->gc, f->gs);
	assert_int_equal(proact_tls_write(f->gs, "pong", 4, 0, NULL), 0);
	assert_int_equal(proact_tls_read(f->gc, b, sizeof(b), 0, NULL), 0);
	expect_exchange(f, f->gs, f->gc);
	assert_memory_equal(a, "ping", 4);
	assert_memory_equal(b, "pong", 4);
	tt_free(f->l.t, f->gs);
	tt_free(f->l.t, f->gc);
	tt_layer_free(&f->l);
	proact_tls_ctx_free(f->sctx);
	proact_tls_ctx_free(f->cctx);
	assert_int_equal(t_fd_count(), f->fds0);
	free(f);
	return 0;
}

/* A server connection on one end of a TCP pair, handshake queued; the
   other end, a plain blocking socket, is returned in *peer. */
static proact_tls_conn *victim(struct fixture *f, int *peer, uint64_t deadline)
{
	int fds[2];
	t_tcp_pair(fds);
	t_set_timeouts(fds[1], 10);
	proact_tls_conn *c;
	assert_int_equal(proact_tls_conn_new(f->l.t, &c, fds[0], f->sctx, NULL), 0);
	assert_int_equal(proact_tls_handshake(c, deadline, NULL), 0);
	*peer = fds[1];
	return c;
}

/* The connection failed with @err: its handshake (or read) says so, and
   proact_tls_error() gives a reason. Frees it. */
static void expect_failure(struct fixture *f, proact_tls_conn *c, int op, int err)
{
	struct proact_completion r = tt_expect(f->l.t, c, op);
	if (r.error != err)
		fail_msg("error %d (%s), reason %s; expected %d (%s)", r.error,
		         proact_strerror(r.error), proact_tls_error(c), err, proact_strerror(err));
	assert_non_null(proact_tls_error(c));
	print_message("  reason: %s\n", proact_tls_error(c));
	tt_free(f->l.t, c);
}

/* A real ClientHello, as a client connection of the layer sends it. */
static size_t client_hello(struct fixture *f, uint8_t *buf, size_t len)
{
	int fds[2];
	t_tcp_pair(fds);
	t_set_timeouts(fds[1], 10);
	proact_tls_conn *c;
	assert_int_equal(proact_tls_conn_new(f->l.t, &c, fds[0], f->cctx, "localhost"), 0);
	assert_int_equal(proact_tls_handshake(c, 0, NULL), 0);
	struct proact_completion r;
	tt_collect(f->l.t, &r, 1, 50); /* the ClientHello goes out */
	ssize_t n = recv(fds[1], buf, len, 0);
	assert_true(n > 5);
	assert_int_equal(buf[0], 0x16); /* a handshake record */
	tt_free(f->l.t, c);
	close(fds[1]);
	return (size_t)n;
}

static void test_not_client_hello(void **state)
{
	struct fixture *f = *state;
	int peer;
	proact_tls_conn *c = victim(f, &peer, 0);
	static const char get[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
	t_write_all(peer, get, sizeof(get) - 1);
	expect_failure(f, c, PROACT_TLS_OP_HANDSHAKE, EPROTO);
	close(peer);
}

/* A server connection that got the first half of a real ClientHello. */
static proact_tls_conn *half_hello(struct fixture *f, int *peer)
{
	uint8_t hello[4096];
	size_t n = client_hello(f, hello, sizeof(hello));
	proact_tls_conn *c = victim(f, peer, 0);
	t_write_all(*peer, hello, n / 2);
	return c;
}

static void test_truncated_record(void **state)
{
	struct fixture *f = *state;
	int peer;
	proact_tls_conn *c = half_hello(f, &peer);
	shutdown(peer, SHUT_WR);
	expect_failure(f, c, PROACT_TLS_OP_HANDSHAKE, EPROTO);
	close(peer);
}

static void test_reset_mid_handshake(void **state)
{
	struct fixture *f = *state;
	t_need_reset();
	int peer;
	proact_tls_conn *c = half_hello(f, &peer);
	t_linger_reset(peer);
	close(peer);
	expect_failure(f, c, PROACT_TLS_OP_HANDSHAKE, ECONNRESET);
}

static void test_handshake_deadline(void **state)
{
	struct fixture *f = *state;
	int peer;
	proact_tls_conn *c = victim(f, &peer, proact_deadline_in(100));
	char buf[8];
	assert_int_equal(proact_tls_read(c, buf, sizeof(buf), 0, NULL), 0);
	struct proact_completion r = tt_expect(f->l.t, c, PROACT_TLS_OP_HANDSHAKE);
	assert_int_equal(r.error, ETIMEDOUT);
	assert_string_equal(proact_tls_error(c), "handshake timed out");
	expect_failure(f, c, PROACT_TLS_OP_READ, ETIMEDOUT);
	close(peer);
}

/* ---- a raw peer: OpenSSL of the test's own, over memory BIOs ---------------- */

struct raw {
	SSL_CTX *ctx;
	SSL *ssl;
	BIO *rb, *wb;
	int fd;
};

static void raw_new(struct raw *p, int fd, int max_version)
{
	p->ctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(p->ctx);
	SSL_CTX_set_max_proto_version(p->ctx, max_version);
	p->ssl = SSL_new(p->ctx);
	p->rb = BIO_new(BIO_s_mem());
	p->wb = BIO_new(BIO_s_mem());
	SSL_set_bio(p->ssl, p->rb, p->wb);
	SSL_set_connect_state(p->ssl);
	p->fd = fd;
}

static void raw_free(struct raw *p)
{
	SSL_free(p->ssl);
	SSL_CTX_free(p->ctx);
	close(p->fd);
	ERR_clear_error();
}

/* Sends what the peer's OpenSSL made, takes in what arrived. */
static void raw_io(struct raw *p)
{
	char buf[16384];
	int n;
	while ((n = BIO_read(p->wb, buf, sizeof(buf))) > 0)
		t_write_all(p->fd, buf, (size_t)n);
	ssize_t k;
	while ((k = recv(p->fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
		BIO_write(p->rb, buf, (int)k);
}

/* Both handshakes done: the raw client's and @c's. */
static void raw_handshake(struct fixture *f, struct raw *p, proact_tls_conn *c)
{
	bool server_done = false;
	int ret = 0;
	uint64_t end = proact_deadline_in(TT_TIMEOUT_MS);
	while ((ret != 1 || !server_done) && proact_now() < end) {
		ret = SSL_do_handshake(p->ssl);
		raw_io(p);
		struct proact_completion r;
		if (proact_tls_wait(f->l.t, &r, 1, 10) == 1) {
			assert_int_equal(r.op, PROACT_TLS_OP_HANDSHAKE);
			assert_int_equal(r.fd, proact_tls_fd(c));
			assert_int_equal(r.error, 0);
			server_done = true;
		}
	}
	assert_int_equal(ret, 1);
	assert_true(server_done);
}

/* A raw client whose handshake with a server connection is done. */
static proact_tls_conn *raw_victim(struct fixture *f, struct raw *p, int max_version)
{
	int peer;
	proact_tls_conn *c = victim(f, &peer, 0);
	raw_new(p, peer, max_version);
	raw_handshake(f, p, c);
	return c;
}

static void test_bad_mac(void **state)
{
	struct fixture *f = *state;
	struct raw p;
	proact_tls_conn *c = raw_victim(f, &p, TLS1_3_VERSION);
	char buf[64];
	assert_int_equal(proact_tls_read(c, buf, sizeof(buf), 0, NULL), 0);
	assert_int_equal(SSL_write(p.ssl, "hello", 5), 5);
	char rec[256];
	int n = BIO_read(p.wb, rec, sizeof(rec));
	assert_true(n > 5);
	rec[n - 1] ^= 0x55; /* the tag no longer matches */
	t_write_all(p.fd, rec, (size_t)n);
	expect_failure(f, c, PROACT_TLS_OP_READ, EPROTO);
	raw_free(&p);
}

static void test_oversized_record(void **state)
{
	struct fixture *f = *state;
	struct raw p;
	proact_tls_conn *c = raw_victim(f, &p, TLS1_3_VERSION);
	char buf[64];
	assert_int_equal(proact_tls_read(c, buf, sizeof(buf), 0, NULL), 0);
	uint8_t rec[5 + 512] = {0x17, 0x03, 0x03, 0xff, 0xff}; /* 65,535 > 2^14 + 256 */
	t_write_all(p.fd, rec, sizeof(rec));
	expect_failure(f, c, PROACT_TLS_OP_READ, EPROTO);
	raw_free(&p);
}

static void test_renegotiation(void **state)
{
	struct fixture *f = *state;
	struct raw p;
	proact_tls_conn *c = raw_victim(f, &p, TLS1_2_VERSION);
	assert_string_equal(proact_tls_version(c), "TLSv1.2");
	char buf[64];
	assert_int_equal(proact_tls_read(c, buf, sizeof(buf), 0, NULL), 0);
	assert_int_equal(SSL_renegotiate(p.ssl), 1);
	SSL_do_handshake(p.ssl); /* sends a new ClientHello */
	raw_io(&p);
	expect_failure(f, c, PROACT_TLS_OP_READ, EPROTO);
	raw_free(&p);
}

/* ---- the client side: a certificate or name it must refuse ------------------ */

static void client_refuses(struct fixture *f, bool other_cert, const char *name)
{
	proact_tls_ctx *sctx = tt_server_ctx(other_cert, NULL);
	int fds[2];
	t_tcp_pair(fds);
	proact_tls_conn *s, *c;
	assert_int_equal(proact_tls_conn_new(f->l.t, &s, fds[0], sctx, NULL), 0);
	assert_int_equal(proact_tls_conn_new(f->l.t, &c, fds[1], f->cctx, name), 0);
	assert_int_equal(proact_tls_handshake(s, proact_deadline_in(TT_TIMEOUT_MS), NULL), 0);
	assert_int_equal(proact_tls_handshake(c, proact_deadline_in(TT_TIMEOUT_MS), NULL), 0);
	/* The client fails, then is freed; the server hears its alert (or the
	   close): before the client's FREE or after it (under Wine, before). */
	proact_socket cfd = proact_tls_fd(c);
	int cerr = 0, serr = 0;
	bool freed = false;
	uint64_t end = proact_deadline_in(TT_TIMEOUT_MS);
	while ((!freed || !serr) && proact_now() < end) {
		struct proact_completion r;
		if (tt_collect(f->l.t, &r, 1, 200) != 1)
			continue;
		if (r.fd == proact_tls_fd(s)) {
			assert_int_equal(r.op, PROACT_TLS_OP_HANDSHAKE);
			assert_int_not_equal(r.error, 0);
			serr = r.error;
			continue;
		}
		assert_true(r.fd == cfd);
		if (r.op == PROACT_TLS_OP_FREE) {
			freed = true;
			continue;
		}
		assert_int_equal(r.op, PROACT_TLS_OP_HANDSHAKE);
		if (r.error != EACCES)
			fail_msg("error %d (%s), reason %s; expected EACCES", r.error,
			         proact_strerror(r.error), proact_tls_error(c));
		print_message("  reason: %s\n", proact_tls_error(c));
		cerr = r.error;
		assert_int_equal(proact_tls_free(c, NULL), 0);
	}
	assert_int_equal(cerr, EACCES);
	assert_true(freed);
	assert_int_not_equal(serr, 0);
	tt_free(f->l.t, s);
	proact_tls_ctx_free(sctx);
}

static void test_untrusted_certificate(void **state)
{
	client_refuses(*state, true, "other.example");
}

static void test_wrong_host_name(void **state)
{
	client_refuses(*state, false, "wrong.example");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_not_client_hello, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_truncated_record, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reset_mid_handshake, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_handshake_deadline, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_mac, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_oversized_record, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_renegotiation, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_untrusted_certificate, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_wrong_host_name, setup, teardown),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	tt_certs_remove();
	return rc;
}
