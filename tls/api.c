/* SPDX-License-Identifier: MIT */
/*
 * api.c - the connection calls of proact_tls.h: making a connection, its
 * requests, free, and what a program may ask of it.
 */
#include <errno.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>
#ifdef _WIN32
#include <ws2tcpip.h> /* inet_pton */
#else
#include <arpa/inet.h>
#include <unistd.h>
#endif

#include "internal.h"

static int grow_table(proact_tls *t, int fd)
{
	if (fd < t->nconns)
		return 0;
	int n = t->nconns ? t->nconns : 64;
	while (n <= fd)
		n = n > INT32_MAX / 2 ? fd + 1 : 2 * n;
	struct proact_tls_conn **v = realloc(t->conns, (size_t)n * sizeof(*v));
	if (!v)
		return -ENOMEM;
	memset(v + t->nconns, 0, (size_t)(n - t->nconns) * sizeof(*v));
	t->conns = v;
	t->nconns = n;
	return 0;
}

/* SNI and the name check for a client; an address is checked, not sent. */
static int set_peer_name(SSL *ssl, const char *name)
{
	unsigned char a[16];
	if (inet_pton(AF_INET, name, a) == 1 || inet_pton(AF_INET6, name, a) == 1)
		return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) == 1 ? 0 : -EINVAL;
	if (SSL_set_tlsext_host_name(ssl, name) != 1 || SSL_set1_host(ssl, name) != 1)
		return -EINVAL;
	return 0;
}

static int make_ssl(proact_tls *t, struct proact_tls_conn *c, const proact_tls_ctx *ctx,
                    const char *server_name)
{
	c->ssl = SSL_new(ctx->ssl);
	if (!c->ssl || !BIO_up_ref(t->bio))
		return -ENOMEM;
	SSL_set_bio(c->ssl, t->bio, t->bio); /* one reference for both directions */
	tls__info_setup(c->ssl, c);
	c->ktls_why = ctx->ktls_why;
	if (ctx->ktls)
		tls__ktls_begin(c);
	if (ctx->flags & PROACT_TLS_SERVER) {
		SSL_set_accept_state(c->ssl);
		return 0;
	}
	SSL_set_connect_state(c->ssl);
	return server_name ? set_peer_name(c->ssl, server_name) : 0;
}

int proact_tls_conn_new(proact_tls *t, proact_tls_conn **out, proact_socket sock,
                        proact_tls_ctx *ctx, const char *server_name)
{
	if (!t || !out || !ctx)
		return -EINVAL;
	int fd = tls__fdnum(sock);
	if (fd < 0)
		return -EBADF;
	if (fd < t->nconns && t->conns[fd])
		return -EEXIST;
	if (grow_table(t, fd) < 0)
		return -ENOMEM;
	struct proact_tls_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->t = t;
	c->fd = sock;
	tls__list_init(&c->rd);
	tls__list_init(&c->wr);
	tls__list_init(&c->starve);
	int rc = make_ssl(t, c, ctx, server_name);
	ERR_clear_error();
	if (rc < 0) {
		SSL_free(c->ssl);
		tls__ktls_drop(c);
		free(c);
		return rc;
	}
	tls__list_add_tail(&t->all, &c->all);
	t->conns[fd] = c;
	*out = c;
	return 0;
}

/* ---- requests ------------------------------------------------------------- */

static struct tls__req *new_req(proact_tls_conn *c, uint8_t op, void *ctx, int *rc)
{
	struct tls__req *r = NULL;
	if (!c)
		*rc = -EINVAL;
	else if (c->closing)
		*rc = -EALREADY;
	else if (!(r = tls__req_new(c->t, c, op, ctx)))
		*rc = -ENOMEM;
	return r;
}

/* Queues @r on @q (NULL: the handshake slot) and runs what can run now.
   On a failed connection it completes at once with the failure. Out of
   memory, @r is freed, with the references it held. */
static int queue(proact_tls_conn *c, struct tls__req *r, struct tls__link *q, uint64_t deadline)
{
	r->deadline = deadline;
	if (!c->error && deadline && tls__heap_add(c->t, r) < 0) {
		if (r->holds_pool)
			tls__writev_unref(c->t, r);
		tls__req_free(c->t, r);
		return -ENOMEM;
	}
	if (q)
		tls__list_add_tail(q, &r->link);
	else
		c->hs = r;
	if (c->error) {
		if (!q)
			c->hs = NULL;
		tls__complete(r, c->error);
		return 0;
	}
	if (q == &c->wr && !c->wr_take)
		c->wr_take = r;
	tls__pump(c);
	return 0;
}

int proact_tls_handshake(proact_tls_conn *c, uint64_t deadline, void *ctx)
{
	if (c && !c->closing && (c->hs || c->hs_done))
		return -EALREADY;
	int rc;
	struct tls__req *r = new_req(c, PROACT_TLS_OP_HANDSHAKE, ctx, &rc);
	return r ? queue(c, r, NULL, deadline) : rc;
}

int proact_tls_read(proact_tls_conn *c, void *buf, size_t len, uint64_t deadline, void *ctx)
{
	if (buf && len == 0)
		return -EINVAL;
	int rc;
	struct tls__req *r = new_req(c, PROACT_TLS_OP_READ, ctx, &rc);
	if (!r)
		return rc;
	r->one.iov_base = buf;
	r->len = len;
	return queue(c, r, &c->rd, deadline);
}

/* Checks the segments, and takes a reference on every read buffer of the
   layer among them (zero-copy echo); none taken on failure. */
static int hold_segments(proact_tls *t, const struct iovec *iov, int iovcnt, size_t *total,
                         bool *holds)
{
	size_t sum = 0;
	*holds = false;
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < iovcnt; i++) {
			int32_t idx = tls__buf_of(t, iov[i].iov_base);
			if (pass == 1) {
				if (idx >= 0 && iov[i].iov_len)
					t->refs[idx]++;
				continue;
			}
			if ((!iov[i].iov_base && iov[i].iov_len) || iov[i].iov_len > SIZE_MAX - sum)
				return -EINVAL;
			sum += iov[i].iov_len;
			if (idx >= 0 && iov[i].iov_len &&
			    (t->refs[idx] == 0 || t->refs[idx] == UINT16_MAX))
				return t->refs[idx] ? -ENOBUFS : -EINVAL;
			*holds |= idx >= 0 && iov[i].iov_len;
		}
		if (sum == 0)
			return -EINVAL;
	}
	*total = sum;
	return 0;
}

void tls__writev_unref(proact_tls *t, struct tls__req *r)
{
	for (int i = 0; i < r->iovcnt; i++) {
		int32_t idx = tls__buf_of(t, r->iov[i].iov_base);
		if (idx >= 0 && r->iov[i].iov_len)
			tls__buf_unref(t, idx);
	}
	r->holds_pool = 0;
}

static int write_req(proact_tls_conn *c, uint8_t op, const struct iovec *iov, int iovcnt,
                     uint64_t deadline, void *ctx)
{
	int rc;
	struct tls__req *r = new_req(c, op, ctx, &rc);
	if (!r)
		return rc;
	if (op == PROACT_TLS_OP_WRITE) {
		r->one = iov[0];
		iov = &r->one;
	}
	bool holds;
	rc = hold_segments(c->t, iov, iovcnt, &r->len, &holds);
	if (rc < 0) {
		tls__req_free(c->t, r);
		return rc;
	}
	r->iov = iov;
	r->iovcnt = iovcnt;
	r->holds_pool = holds;
	return queue(c, r, &c->wr, deadline);
}

int proact_tls_write(proact_tls_conn *c, const void *buf, size_t len, uint64_t deadline, void *ctx)
{
	if (!buf)
		return -EINVAL;
	struct iovec one = {.iov_base = (void *)buf, .iov_len = len};
	return write_req(c, PROACT_TLS_OP_WRITE, &one, 1, deadline, ctx);
}

int proact_tls_writev(proact_tls_conn *c, const struct iovec *iov, int iovcnt, uint64_t deadline,
                      void *ctx)
{
	if (!iov || iovcnt < 1 || iovcnt > IOV_MAX)
		return -EINVAL;
	return write_req(c, PROACT_TLS_OP_WRITEV, iov, iovcnt, deadline, ctx);
}

int proact_tls_shutdown(proact_tls_conn *c, uint64_t deadline, void *ctx)
{
	int rc;
	struct tls__req *r = new_req(c, PROACT_TLS_OP_SHUTDOWN, ctx, &rc);
	return r ? queue(c, r, &c->wr, deadline) : rc;
}

int proact_tls_free(proact_tls_conn *c, void *ctx)
{
	int rc;
	struct tls__req *f = new_req(c, PROACT_TLS_OP_FREE, ctx, &rc);
	if (!f)
		return rc;
	proact_tls *t = c->t;
	rc = proact_free(t->w, c->fd, c);
	if (rc < 0 && rc != -ENOENT) {
		tls__req_free(t, f);
		return rc;
	}
	c->closing = true;
	c->free_req = f;
	tls__cancel_all(c);
	if (rc == -ENOENT) { /* never registered: no FREE will come from proact */
#ifdef _WIN32
		closesocket(c->fd);
#else
		close(c->fd);
#endif
		t->conns[tls__fdnum(c->fd)] = NULL;
		tls__complete(f, 0);
	}
	return 0;
}

/* ---- questions ----------------------------------------------------------- */

const char *proact_tls_error(const proact_tls_conn *c)
{
	return c && c->error ? c->why : NULL;
}

proact_socket proact_tls_fd(const proact_tls_conn *c)
{
	return c ? c->fd : (proact_socket)-1;
}

size_t proact_tls_alpn(const proact_tls_conn *c, const unsigned char **proto)
{
	const unsigned char *p = NULL;
	unsigned int len = 0;
	if (c && c->hs_done)
		SSL_get0_alpn_selected(c->ssl, &p, &len);
	if (proto)
		*proto = p;
	return len;
}

const char *proact_tls_server_name(const proact_tls_conn *c)
{
	return c ? SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name) : NULL;
}

int proact_tls_ktls(const proact_tls_conn *c, const char **why)
{
	if (!c)
		return -EINVAL;
	if (why)
		*why = c->ktls == (PROACT_TLS_KTLS_TX | PROACT_TLS_KTLS_RX) ? NULL
		       : c->ktls_why                                        ? c->ktls_why
		                                                            : "handshake not done";
	return c->ktls;
}

const char *proact_tls_version(const proact_tls_conn *c)
{
	return c ? SSL_get_version(c->ssl) : NULL;
}
