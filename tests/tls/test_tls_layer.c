/* SPDX-License-Identifier: MIT */
/*
 * Checks the TLS layer's request rules with both ends in the process:
 *   - 8 MiB each way at once, writev of odd segments one way, NULL-buffer
 *     reads the other: every byte, in order, sizes exact;
 *   - NULL-buffer reads take a layer buffer only when data came, wait when
 *     all are in use, and go on once the next wait released one;
 *   - a read deadline ends that read (ETIMEDOUT) and the connection goes on;
 *     a write that expires after part of it was taken leaves a cut (EPIPE
 *     after it);
 *   - shutdown: the peer reads every byte then EOF, and can still write;
 *   - free: pending requests complete with ECANCELED, FREE comes last, the
 *     socket is closed;
 *   - plain requests on the same watcher pass through proact_tls_wait;
 *   - bad arguments get their documented errors; contexts from PEM text;
 *     ALPN with no common protocol; the kTLS probe answers cleanly and
 *     TLS serves either way (test_tls_ktls.c checks the handoff).
 */
#include "tls_common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BIG (8u << 20)

struct fixture {
	struct tt_layer l;
	proact_tls_ctx *sctx, *cctx;
	proact_tls_conn *s, *c;
	int fds0;
};

static void setup_pair(struct fixture *f, const struct proact_tls_options *o)
{
	f->fds0 = t_fd_count();
	tt_layer_new_with(&f->l, o);
	f->sctx = tt_server_ctx(false, NULL);
	f->cctx = tt_client_ctx(0, NULL);
	tt_pair(&f->l, f->sctx, f->cctx, &f->s, &f->c);
}

static void teardown_pair(struct fixture *f, bool free_conns)
{
	if (free_conns) {
		tt_free(f->l.t, f->s);
		tt_free(f->l.t, f->c);
	}
	tt_layer_free(&f->l);
	proact_tls_ctx_free(f->sctx);
	proact_tls_ctx_free(f->cctx);
	assert_int_equal(t_fd_count(), f->fds0);
}

/* ---- both ways at once ------------------------------------------------------ */

static void test_bulk_both_ways(void **state)
{
	(void)state;
	struct fixture f;
	setup_pair(&f, NULL);
	uint8_t *up = malloc(BIG), *down = malloc(BIG), *got = malloc(BIG);
	assert_non_null(up);
	assert_non_null(down);
	assert_non_null(got);
	t_fill(up, BIG, 3, 0);
	t_fill(down, BIG, 4, 0);
	/* client -> server: one writev of odd segments, one of them empty */
	struct iovec iov[5] = {
	    {up, 1}, {up + 1, 0}, {up + 1, 77}, {up + 78, 70000}, {up + 70078, BIG - 70078}};
	assert_int_equal(proact_tls_writev(f.c, iov, 5, 0, iov), 0);
	/* server -> client: two writes */
	assert_int_equal(proact_tls_write(f.s, down, BIG / 2, 0, NULL), 0);
	assert_int_equal(proact_tls_write(f.s, down + BIG / 2, BIG / 2, 0, NULL), 0);
	assert_int_equal(proact_tls_read(f.s, NULL, 0, 0, NULL), 0);
	assert_int_equal(proact_tls_read(f.c, got, BIG, 0, NULL), 0);
	size_t srv = 0, cli = 0;
	int writes = 0;
	uint64_t end = proact_deadline_in(TT_TIMEOUT_MS);
	while ((srv < BIG || cli < BIG || writes < 3) && proact_now() < end) {
		struct proact_completion r[16];
		int n = tt_collect(f.l.t, r, 1, 1000);
		for (int i = 0; i < n; i++) {
			assert_int_equal(r[i].error, 0);
			if (r[i].op == PROACT_TLS_OP_WRITEV) {
				assert_ptr_equal(r[i].ctx, iov);
				assert_ptr_equal(r[i].buf, iov);
				assert_int_equal(r[i].size, BIG);
				writes++;
			} else if (r[i].op == PROACT_TLS_OP_WRITE) {
				assert_int_equal(r[i].size, BIG / 2);
				writes++;
			} else if (r[i].fd == proact_tls_fd(f.s)) { /* pool read */
				assert_true(r[i].flags & PROACT_COMP_POOL);
				assert_true(r[i].size > 0 && r[i].size <= 16384);
				assert_int_equal(t_check(r[i].buf, r[i].size, 3, srv), -1);
				srv += r[i].size;
				if (srv < BIG)
					assert_int_equal(proact_tls_read(f.s, NULL, 0, 0, NULL), 0);
			} else {
				assert_false(r[i].flags & PROACT_COMP_POOL);
				assert_ptr_equal(r[i].buf, got + cli);
				cli += r[i].size;
				if (cli < BIG)
					assert_int_equal(
					    proact_tls_read(f.c, got + cli, BIG - cli, 0, NULL), 0);
			}
		}
	}
	assert_int_equal(srv, BIG);
	assert_int_equal(cli, BIG);
	assert_int_equal(writes, 3);
	assert_int_equal(t_check(got, BIG, 4, 0), -1);
	teardown_pair(&f, true);
	free(up);
	free(down);
	free(got);
}

/* ---- layer buffers ---------------------------------------------------------- */

static void test_read_buffers_wait(void **state)
{
	(void)state;
	struct fixture f;
	struct proact_tls_options o = {.buffer_count = 1};
	setup_pair(&f, &o);
	/* A second pair in the same layer. */
	proact_tls_conn *s2, *c2;
	tt_pair(&f.l, f.sctx, f.cctx, &s2, &c2);
	assert_int_equal(proact_tls_read(f.s, NULL, 0, 0, NULL), 0);
	assert_int_equal(proact_tls_read(s2, NULL, 0, 0, NULL), 0);
	assert_int_equal(proact_tls_write(f.c, "one", 3, 0, NULL), 0);
	assert_int_equal(proact_tls_write(c2, "two", 3, 0, NULL), 0);
	/* One buffer: one read completes per wait; zero-copy echo of it holds the
	   buffer until that write completed. */
	int reads = 0, echoes = 0;
	uint64_t end = proact_deadline_in(TT_TIMEOUT_MS);
	while ((reads < 2 || echoes < 2) && proact_now() < end) {
		struct proact_completion r[8];
		int n = proact_tls_wait(f.l.t, r, 8, 100);
		int reads_now = 0;
		for (int i = 0; i < n; i++) {
			assert_int_equal(r[i].error, 0);
			if (r[i].op == PROACT_TLS_OP_READ && r[i].flags & PROACT_COMP_POOL) {
				assert_int_equal(r[i].size, 3);
				assert_true(!memcmp(r[i].buf, "one", 3) ||
				            !memcmp(r[i].buf, "two", 3));
				proact_tls_conn *s = r[i].fd == proact_tls_fd(f.s) ? f.s : s2;
				assert_int_equal(proact_tls_write(s, r[i].buf, 3, 0, NULL), 0);
				reads++;
				reads_now++;
			} else if (r[i].op == PROACT_TLS_OP_WRITE &&
			           (r[i].fd == proact_tls_fd(f.s) ||
			            r[i].fd == proact_tls_fd(s2))) {
				echoes++;
			}
		}
		assert_true(reads_now <= 1);
	}
	assert_int_equal(reads, 2);
	assert_int_equal(echoes, 2);
	/* The echoes arrived, each on its own connection. */
	char a[4], b[4];
	assert_int_equal(proact_tls_read(f.c, a, 4, 0, NULL), 0);
	assert_int_equal(tt_expect(f.l.t, f.c, PROACT_TLS_OP_READ).size, 3);
	assert_memory_equal(a, "one", 3);
	assert_int_equal(proact_tls_read(c2, b, 4, 0, NULL), 0);
	assert_int_equal(tt_expect(f.l.t, c2, PROACT_TLS_OP_READ).size, 3);
	assert_memory_equal(b, "two", 3);
	tt_free(f.l.t, s2);
	tt_free(f.l.t, c2);
	teardown_pair(&f, true);
}

/* ---- deadlines ---------------------------------------------------------------- */

static void test_read_deadline(void **state)
{
	(void)state;
	struct fixture f;
	setup_pair(&f, NULL);
	char buf[16];
	assert_int_equal(proact_tls_read(f.s, buf, sizeof(buf), proact_deadline_in(50), NULL), 0);
	struct proact_completion r = tt_expect(f.l.t, f.s, PROACT_TLS_OP_READ);
	assert_int_equal(r.error, ETIMEDOUT);
	assert_int_equal(r.size, 0);
	/* the connection goes on */
	assert_int_equal(proact_tls_write(f.c, "later", 5, 0, NULL), 0);
	assert_int_equal(
	    proact_tls_read(f.s, buf, sizeof(buf), proact_deadline_in(TT_TIMEOUT_MS), NULL), 0);
	assert_int_equal(tt_expect(f.l.t, f.c, PROACT_TLS_OP_WRITE).error, 0);
	r = tt_expect(f.l.t, f.s, PROACT_TLS_OP_READ);
	assert_int_equal(r.error, 0);
	assert_int_equal(r.size, 5);
	assert_memory_equal(buf, "later", 5);
	teardown_pair(&f, true);
}

static void test_write_deadline_cut(void **state)
{
	(void)state;
	struct fixture f;
	setup_pair(&f, NULL);
	uint8_t *big = malloc(BIG * 4);
	assert_non_null(big);
	memset(big, 'x', BIG * 4);
	/* The server reads nothing: 32 MiB cannot all be taken in 200 ms. */
	assert_int_equal(proact_tls_write(f.c, big, BIG * 4, proact_deadline_in(200), NULL), 0);
	assert_int_equal(proact_tls_write(f.c, "after", 5, 0, NULL), 0);
	struct proact_completion r = tt_expect(f.l.t, f.c, PROACT_TLS_OP_WRITE);
	assert_int_equal(r.error, ETIMEDOUT);
	assert_true(r.size > 0 && r.size < BIG * 4);
	/* The later write fails with EPIPE, in its turn: once the records made
	   before it went out, which takes a reader. */
	size_t got = 0;
	bool epipe = false;
	assert_int_equal(proact_tls_read(f.s, NULL, 0, 0, NULL), 0);
	uint64_t end = proact_deadline_in(TT_TIMEOUT_MS);
	while (!epipe && proact_now() < end) {
		if (tt_collect(f.l.t, &r, 1, 1000) != 1)
			continue;
		if (r.fd == proact_tls_fd(f.s)) {
			assert_int_equal(r.error, 0);
			got += r.size;
			assert_int_equal(proact_tls_read(f.s, NULL, 0, 0, NULL), 0);
			continue;
		}
		assert_int_equal(r.op, PROACT_TLS_OP_WRITE);
		assert_int_equal(r.error, EPIPE);
		assert_int_equal(r.size, 0);
		epipe = true;
	}
	assert_true(epipe);
	assert_true(got > 0);
	teardown_pair(&f, true);
	free(big);
}

/* ---- shutdown and free --------------------------------------------------------- */

static void test_shutdown_half_close(void **state)
{
	(void)state;
	struct fixture f;
	setup_pair(&f, NULL);
	assert_int_equal(proact_tls_write(f.s, "last words", 10, 0, NULL), 0);
	assert_int_equal(proact_tls_shutdown(f.s, 0, NULL), 0);
	assert_int_equal(proact_tls_write(f.s, "too late", 8, 0, NULL), 0);
	/* in submission order: the write, the shutdown, the write after it */
	assert_int_equal(tt_expect(f.l.t, f.s, PROACT_TLS_OP_WRITE).error, 0);
	assert_int_equal(tt_expect(f.l.t, f.s, PROACT_TLS_OP_SHUTDOWN).error, 0);
	struct proact_completion r = tt_expect(f.l.t, f.s, PROACT_TLS_OP_WRITE);
	assert_int_equal(r.error, EPIPE);
	char buf[32];
	size_t got = 0;
	for (;;) {
		assert_int_equal(proact_tls_read(f.c, buf + got, sizeof(buf) - got, 0, NULL), 0);
		r = tt_expect(f.l.t, f.c, PROACT_TLS_OP_READ);
		assert_int_equal(r.error, 0);
		if (r.size == 0)
			break;
		got += r.size;
	}
	assert_int_equal(got, 10);
	assert_memory_equal(buf, "last words", 10);
	/* EOF stays EOF; the other way is still open */
	assert_int_equal(proact_tls_read(f.c, buf, sizeof(buf), 0, NULL), 0);
	assert_int_equal(tt_expect(f.l.t, f.c, PROACT_TLS_OP_READ).size, 0);
	assert_int_equal(proact_tls_write(f.c, "reply", 5, 0, NULL), 0);
	assert_int_equal(proact_tls_read(f.s, buf, sizeof(buf), 0, NULL), 0);
	assert_int_equal(tt_expect(f.l.t, f.c, PROACT_TLS_OP_WRITE).error, 0);
	r = tt_expect(f.l.t, f.s, PROACT_TLS_OP_READ);
	assert_int_equal(r.size, 5);
	teardown_pair(&f, true);
}

static void test_free_cancels(void **state)
{
	(void)state;
	struct fixture f;
	setup_pair(&f, NULL);
	int sfd = proact_tls_fd(f.s);
	char buf[16];
	uint8_t *big = calloc(1, BIG * 4);
	assert_non_null(big);
	assert_int_equal(proact_tls_read(f.s, buf, sizeof(buf), 0, (void *)1), 0);
	assert_int_equal(proact_tls_read(f.s, NULL, 0, proact_deadline_in(60000), (void *)2), 0);
	assert_int_equal(proact_tls_write(f.s, big, BIG * 4, 0, (void *)3), 0);
	assert_int_equal(proact_tls_free(f.s, (void *)4), 0);
	assert_int_equal(proact_tls_free(f.s, NULL), -EALREADY);
	assert_int_equal(proact_tls_read(f.s, buf, 1, 0, NULL), -EALREADY);
	struct proact_completion r[4];
	assert_int_equal(tt_collect(f.l.t, r, 4, TT_TIMEOUT_MS), 4);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(r[i].error, ECANCELED);
		assert_int_equal((intptr_t)r[i].ctx, i + 1);
	}
	assert_int_equal(r[3].op, PROACT_TLS_OP_FREE);
	assert_int_equal((intptr_t)r[3].ctx, 4);
	assert_false(t_fd_open(sfd));
	/* the client sees the end: TCP EOF without close_notify is a failure */
	assert_int_equal(proact_tls_read(f.c, buf, sizeof(buf), 0, NULL), 0);
	struct proact_completion e = tt_expect(f.l.t, f.c, PROACT_TLS_OP_READ);
	assert_true(e.error == EPROTO || e.error == ECONNRESET);
	assert_non_null(proact_tls_error(f.c));
	tt_free(f.l.t, f.c);
	teardown_pair(&f, false);
	free(big);
}

/* ---- plain requests, arguments, contexts, kTLS ----------------------------------- */

static void test_plain_passes_through(void **state)
{
	(void)state;
	struct fixture f;
	setup_pair(&f, NULL);
	int p[2];
	t_unix_pair(p);
	char buf[8];
	assert_int_equal(proact_read(f.l.w, p[0], buf, sizeof(buf), (void *)f.s), 0);
	t_write_all(p[1], "plain", 5);
	struct proact_completion r;
	assert_int_equal(tt_collect(f.l.t, &r, 1, TT_TIMEOUT_MS), 1);
	assert_int_equal(r.op, PROACT_OP_READ);
	assert_int_equal((int)r.fd, p[0]);
	assert_ptr_equal(r.ctx, f.s); /* any ctx, even a pointer of the layer's */
	assert_int_equal(r.size, 5);
	assert_int_equal(proact_free(f.l.w, p[0], NULL), 0);
	assert_int_equal(tt_collect(f.l.t, &r, 1, TT_TIMEOUT_MS), 1);
	assert_int_equal(r.op, PROACT_OP_FREE);
	close(p[1]);
	teardown_pair(&f, true);
}

static void test_bad_arguments(void **state)
{
	(void)state;
	struct fixture f;
	setup_pair(&f, NULL);
	proact_tls_conn *x;
	struct proact_tls_config cfg = {.flags = PROACT_TLS_SERVER};
	proact_tls_ctx *ctx;
	assert_int_equal(proact_tls_ctx_new(&ctx, &cfg), -EINVAL); /* no certificate */
	cfg.cert_file = "/nonexistent/cert.pem";
	cfg.key_file = tt_certs()->key;
	assert_int_equal(proact_tls_ctx_new(&ctx, &cfg), -ENOENT);
	cfg = (struct proact_tls_config){.flags = 0x100};
	assert_int_equal(proact_tls_ctx_new(&ctx, &cfg), -EINVAL);
	cfg = (struct proact_tls_config){.reserved = {1}};
	assert_int_equal(proact_tls_ctx_new(&ctx, &cfg), -EINVAL);
	cfg = (struct proact_tls_config){.alpn = ",,"};
	assert_int_equal(proact_tls_ctx_new(&ctx, &cfg), -EINVAL);
	cfg = (struct proact_tls_config){.flags = PROACT_TLS_SERVER,
	                                 .cert_file = tt_certs()->cert,
	                                 .key_file = tt_certs()->other_key};
	assert_int_equal(proact_tls_ctx_new(&ctx, &cfg), -EINVAL); /* key of another cert */
	assert_int_equal(proact_tls_ctx_new(NULL, &cfg), -EINVAL);
	assert_int_equal(proact_tls_new(NULL, f.l.w, NULL), -EINVAL);
	struct proact_tls_options o = {.buffer_count = 70000};
	proact_tls *t2;
	assert_int_equal(proact_tls_new(&t2, f.l.w, &o), -EINVAL);
	assert_int_equal(proact_tls_conn_new(f.l.t, &x, -1, f.sctx, NULL), -EBADF);
	assert_int_equal(proact_tls_conn_new(f.l.t, &x, proact_tls_fd(f.s), f.sctx, NULL), -EEXIST);
	assert_int_equal(proact_tls_conn_new(NULL, &x, 3, f.sctx, NULL), -EINVAL);
	assert_int_equal(proact_tls_handshake(f.s, 0, NULL), -EALREADY);
	assert_int_equal(proact_tls_handshake(NULL, 0, NULL), -EINVAL);
	char buf[4];
	assert_int_equal(proact_tls_read(f.s, buf, 0, 0, NULL), -EINVAL);
	assert_int_equal(proact_tls_read(NULL, buf, 4, 0, NULL), -EINVAL);
	assert_int_equal(proact_tls_write(f.s, buf, 0, 0, NULL), -EINVAL);
	assert_int_equal(proact_tls_write(f.s, NULL, 4, 0, NULL), -EINVAL);
	struct iovec iov[2] = {{NULL, 0}, {NULL, 0}};
	assert_int_equal(proact_tls_writev(f.s, iov, 2, 0, NULL), -EINVAL);
	assert_int_equal(proact_tls_writev(f.s, iov, 0, 0, NULL), -EINVAL);
	iov[0].iov_len = 1;
	assert_int_equal(proact_tls_writev(f.s, iov, 2, 0, NULL), -EINVAL);
	assert_int_equal(proact_tls_shutdown(NULL, 0, NULL), -EINVAL);
	assert_int_equal(proact_tls_free(NULL, NULL), -EINVAL);
	assert_int_equal(proact_tls_wait(NULL, NULL, 1, 0), -EINVAL);
	assert_null(proact_tls_error(f.s));
	assert_null(proact_tls_error(NULL));
	assert_int_equal(proact_tls_fd(NULL), -1);
	assert_int_equal(proact_tls_alpn(f.s, NULL), 0); /* no ALPN configured */
	assert_int_equal(proact_tls_wait(f.l.t, (struct proact_completion[1]){0}, 1, 0), 0);
	teardown_pair(&f, true);
}

static void test_pem_and_alpn(void **state)
{
	(void)state;
	struct tt_layer l;
	tt_layer_new(&l);
	struct proact_tls_config cfg = {.flags = PROACT_TLS_SERVER | PROACT_TLS_TLS13,
	                                .cert_pem = tt_certs()->cert_pem,
	                                .key_pem = tt_certs()->key_pem,
	                                .alpn = "h2"};
	proact_tls_ctx *sctx, *cctx = tt_client_ctx(0, "http/1.1");
	assert_int_equal(proact_tls_ctx_new(&sctx, &cfg), 0);
	proact_tls_conn *s, *c;
	tt_pair(&l, sctx, cctx, &s, &c);
	assert_int_equal(proact_tls_alpn(s, NULL), 0); /* nothing in common: none */
	assert_int_equal(proact_tls_alpn(c, NULL), 0);
	assert_string_equal(proact_tls_version(s), "TLSv1.3");
	tt_free(l.t, s);
	tt_free(l.t, c);
	tt_layer_free(&l);
	proact_tls_ctx_free(sctx);
	proact_tls_ctx_free(cctx);
}

static void test_ktls_probe(void **state)
{
	(void)state;
	int fds = t_fd_count();
	int k = proact_tls_ktls_probe();
	print_message("kTLS probe: %d (%s)\n", k, k == 1 ? "available" : "unavailable");
	assert_true(k == 0 || k == 1);
	assert_int_equal(t_fd_count(), fds);
	/* whatever the answer, TLS serves (the kernel's records or the BIOs) */
	struct fixture f;
	setup_pair(&f, NULL);
	char buf[4];
	assert_int_equal(proact_tls_write(f.s, "bio", 3, 0, NULL), 0);
	assert_int_equal(proact_tls_read(f.c, buf, 4, 0, NULL), 0);
	assert_int_equal(tt_expect(f.l.t, f.s, PROACT_TLS_OP_WRITE).error, 0);
	assert_int_equal(tt_expect(f.l.t, f.c, PROACT_TLS_OP_READ).size, 3);
	const char *why = NULL;
	int carried = proact_tls_ktls(f.s, &why);
	print_message("kTLS of a connection: %d (%s)\n", carried, why ? why : "both ways");
#ifndef __linux__
	/* Windows...: no kernel to hand records to, and the reason says so */
	assert_int_equal(k, 0);
	assert_int_equal(carried, 0);
	if (!getenv("PROACT_TLS_KTLS"))
		assert_string_equal(
		    why, "no kernel TLS on this system (the handoff is Linux's tls ULP)");
#endif
	teardown_pair(&f, true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bulk_both_ways),       cmocka_unit_test(test_read_buffers_wait),
	    cmocka_unit_test(test_read_deadline),        cmocka_unit_test(test_write_deadline_cut),
	    cmocka_unit_test(test_shutdown_half_close),  cmocka_unit_test(test_free_cancels),
	    cmocka_unit_test(test_plain_passes_through), cmocka_unit_test(test_bad_arguments),
	    cmocka_unit_test(test_pem_and_alpn),         cmocka_unit_test(test_ktls_probe),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	tt_certs_remove();
	return rc;
}
