/* SPDX-License-Identifier: MIT */
/*
 * conn.c - one TLS connection's engine.
 *
 * OpenSSL reads ciphertext through the layer's BIO (one for every
 * connection, bound to the one OpenSSL is called for) that serves the
 * bytes of the last pool read (copied aside only if some are left when the
 * pool buffer goes back), and writes records into an output buffer, which
 * goes to proact_write() as a whole: one buffer being filled and one in
 * flight at most. A write is taken into records only once the output buffer
 * has room for a whole record, so a peer that stops reading stops the
 * encryption too (back-pressure), and the write's deadline can still end it.
 */
#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static void flush(struct proact_tls_conn *c);

/* ---- the BIO --------------------------------------------------------------- */

static int bio_write(BIO *b, const char *data, int len)
{
	struct proact_tls_conn *c = tls__bio_conn(b);
	BIO_clear_retry_flags(b);
	if (len <= 0)
		return 0;
	struct tls__obuf *o = c->out;
	if (!o && !(o = c->out = tls__obuf_get(c->t)))
		return -1;
	if (o->len + (size_t)len > o->cap) { /* a long certificate chain: rare */
		size_t cap = o->cap;
		while (cap < o->len + (size_t)len)
			cap *= 2;
		struct tls__obuf *g = realloc(o, sizeof(*o) + cap);
		if (!g)
			return -1;
		g->cap = cap;
		c->out = o = g;
	}
	memcpy(o->data + o->len, data, (size_t)len);
	o->len += (size_t)len;
	c->made += (uint64_t)len;
	return len;
}

/* Bytes of the last socket read: ciphertext for OpenSSL, or after a kTLS
   handoff of the receiving side, the kernel's plaintext. */
static size_t take_input(struct proact_tls_conn *c, void *data, size_t len)
{
	size_t n = c->in_len < len ? c->in_len : len;
	memcpy(data, c->in, n);
	c->in += n;
	c->in_len -= n;
	if (c->in_len == 0 && c->stash) {
		free(c->stash);
		c->stash = NULL;
	}
	return n;
}

static int bio_read(BIO *b, char *data, int len)
{
	struct proact_tls_conn *c = tls__bio_conn(b);
	BIO_clear_retry_flags(b);
	if (len <= 0)
		return 0;
	if (c->in_len == 0) {
		if (c->sock_eof)
			return 0;
		BIO_set_retry_read(b);
		return -1;
	}
	return (int)take_input(c, data, (size_t)len);
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	(void)num;
	(void)ptr;
	struct proact_tls_conn *c = tls__bio_conn(b);
	if (!c)
		return 0;
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1;
	case BIO_CTRL_PENDING:
		return (long)c->in_len;
	case BIO_CTRL_EOF:
		return c->sock_eof && c->in_len == 0;
	default:
		return 0;
	}
}

BIO_METHOD *tls__bio_method_new(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_TYPE_SOURCE_SINK, "proact");
	if (m && (!BIO_meth_set_write(m, bio_write) || !BIO_meth_set_read(m, bio_read) ||
	          !BIO_meth_set_ctrl(m, bio_ctrl))) {
		BIO_meth_free(m);
		m = NULL;
	}
	return m;
}

/* ---- failure ---------------------------------------------------------------- */

static struct tls__req *next_of(struct proact_tls_conn *c, struct tls__req *r)
{
	return r->link.next == &c->wr ? NULL : TLS__REQ(r->link.next);
}

static void complete_queue(struct tls__link *q, int error)
{
	while (!tls__list_empty(q))
		tls__complete(TLS__REQ(q->next), error);
}

/* Completes every pending request of @c with @error (ECANCELED on free). */
static void complete_all(struct proact_tls_conn *c, int error)
{
	if (c->hs) {
		tls__complete(c->hs, error);
		c->hs = NULL;
	}
	complete_queue(&c->rd, error);
	complete_queue(&c->wr, error);
	c->wr_take = NULL;
	c->shut = NULL;
	tls__unstarve(c);
}

static void conn_fail(struct proact_tls_conn *c, int error, const char *why)
{
	if (c->error)
		return;
	c->error = error;
	c->why = why ? why : proact_strerror(error);
	complete_all(c, error);
	flush(c); /* OpenSSL's fatal alert, if it made one */
}

/* After an OpenSSL call failed with SSL_get_error() @e. */
static void ssl_fail(struct proact_tls_conn *c, int e)
{
	unsigned long code = ERR_peek_last_error();
	long v = SSL_get_verify_result(c->ssl);
	const char *why = code ? ERR_reason_error_string(code) : NULL;
	if (c->reneg)
		conn_fail(c, EPROTO, "renegotiation refused");
	else if (ERR_GET_REASON(code) == SSL_R_CERTIFICATE_VERIFY_FAILED)
		conn_fail(c, EACCES, v != X509_V_OK ? X509_verify_cert_error_string(v) : why);
	else if (e == SSL_ERROR_ZERO_RETURN)
		conn_fail(c, EPROTO, "close_notify before the handshake finished");
	else if (e == SSL_ERROR_SYSCALL || !why)
		conn_fail(c, EPROTO, "unexpected end of the TLS stream");
	else
		conn_fail(c, EPROTO, why);
	ERR_clear_error();
}

/* ---- moving ciphertext ------------------------------------------------------- */

/* After the sending side's handoff OpenSSL's records would be wrapped
   again by the kernel: what it makes (a key update's answer, an alert) is
   dropped, and the connection fails unless it had. */
static bool drop_output(struct proact_tls_conn *c)
{
	if (!(c->ktls & PROACT_TLS_KTLS_TX))
		return false;
	if (c->out && c->out->len) {
		c->out->len = 0;
		conn_fail(c, EPROTO, "OpenSSL wrote a record after the kTLS handoff");
	}
	return true;
}

static void flush(struct proact_tls_conn *c)
{
	if (drop_output(c) || c->fly || !c->out || c->out->len == 0 || c->closing)
		return;
	c->fly = c->out;
	c->out = NULL;
	int rc = proact_write(c->t->w, c->fd, c->fly->data, c->fly->len, c);
	if (rc < 0) {
		tls__obuf_put(c->t, c->fly);
		c->fly = NULL;
		conn_fail(c, -rc, NULL);
	}
}

/* OpenSSL wants more ciphertext: a pool read, unless one is pending. */
static void need_input(struct proact_tls_conn *c)
{
	if (c->reading || c->in_len || c->sock_eof || c->closing || c->error)
		return;
	int rc = proact_read(c->t->w, c->fd, NULL, 0, c);
	if (rc < 0)
		conn_fail(c, -rc, NULL);
	else
		c->reading = true;
}

/* Bytes of the read left when proact takes its pool buffer back. */
static void keep_input(struct proact_tls_conn *c)
{
	if (c->in_len == 0 || c->stash || c->error || c->closing)
		return;
	c->stash = malloc(c->in_len);
	if (!c->stash) {
		conn_fail(c, ENOMEM, NULL);
		return;
	}
	memcpy(c->stash, c->in, c->in_len);
	c->in = c->stash;
}

/* ---- the handshake and reads ------------------------------------------------- */

static bool handshake_done(struct proact_tls_conn *c)
{
	struct tls__req *r = c->hs;
	c->hs = NULL;
	tls__complete(r, 0);
	return true;
}

/* The kTLS handoff, once OpenSSL's last handshake records went out (a
   server's tickets among them); the handshake completes after it. */
static bool handoff(struct proact_tls_conn *c)
{
	flush(c);
	if (c->error || !tls__ktls_ready(c))
		return false;
	tls__ktls_handoff(c);
	return handshake_done(c);
}

static bool handshake(struct proact_tls_conn *c)
{
	ERR_clear_error();
	c->t->cur = c;
	int ret = SSL_do_handshake(c->ssl);
	if (ret == 1) {
		c->hs_done = true;
		c->kpending = c->k != NULL;
		return !c->kpending && handshake_done(c);
	}
	int e = SSL_get_error(c->ssl, ret);
	if (e == SSL_ERROR_WANT_READ)
		need_input(c);
	else
		ssl_fail(c, e);
	return false;
}

static void read_done(struct tls__req *r, void *buf, size_t n, int32_t idx)
{
	r->done = n;
	r->pool = idx;
	r->one.iov_base = buf;
	tls__complete(r, 0);
}

/* After the receiving side's handoff: the kernel's plaintext, as it came. */
static bool kernel_read(struct proact_tls_conn *c, struct tls__req *r, void *buf, size_t len,
                        int32_t idx)
{
	size_t n = take_input(c, buf, len);
	if (n > 0) {
		read_done(r, buf, n, idx);
		return true;
	}
	if (idx >= 0)
		tls__buf_unref(c->t, idx);
	if (c->sock_eof)
		conn_fail(c, EPROTO, "unexpected end of the TLS stream");
	else
		need_input(c);
	return false;
}

/* One read, into its buffer or one of the layer's; false: wait. */
static bool read_one(struct proact_tls_conn *c, struct tls__req *r)
{
	proact_tls *t = c->t;
	void *buf = r->one.iov_base;
	size_t len = r->len;
	int32_t idx = -1;
	if (!buf) {
		if ((idx = tls__buf_take(t)) < 0) {
			tls__starve(t, c);
			return false;
		}
		buf = tls__buf_ptr(t, idx);
		len = len == 0 || len > TLS__RECORD ? TLS__RECORD : len;
	}
	if (c->ktls & PROACT_TLS_KTLS_RX)
		return kernel_read(c, r, buf, len, idx);
	ERR_clear_error();
	c->t->cur = c;
	int n = SSL_read(c->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
	if (n > 0) {
		read_done(r, buf, (size_t)n, idx);
		return true;
	}
	if (idx >= 0)
		tls__buf_unref(t, idx);
	int e = SSL_get_error(c->ssl, n);
	if (e == SSL_ERROR_ZERO_RETURN) {
		c->rx_eof = true;
		return true;
	}
	if (e == SSL_ERROR_WANT_READ && !c->reneg) {
		/* Idle until ciphertext comes: OpenSSL's release-buffers mode
		   keeps the read buffer after a handshake record; let it go (a
		   partial record in it keeps it). */
		if (c->in_len == 0)
			SSL_free_buffers(c->ssl);
		need_input(c);
	} else {
		ssl_fail(c, e);
	}
	return false;
}

static void pump_reads(struct proact_tls_conn *c)
{
	while (!c->error && !tls__list_empty(&c->rd)) {
		if (c->rx_eof)
			tls__complete(TLS__REQ(c->rd.next), 0);
		else if (!read_one(c, TLS__REQ(c->rd.next)))
			return;
	}
}

/* ---- writes and shutdown ------------------------------------------------------ */

static bool room(struct proact_tls_conn *c)
{
	if (!c->out && !(c->out = tls__obuf_get(c->t))) {
		conn_fail(c, ENOMEM, NULL);
		return false;
	}
	return c->out->len + TLS__ROOM <= c->out->cap;
}

/* The next bytes of @r, up to a record: in place if one segment holds
   them all, else gathered into the layer's buffer. */
static size_t next_chunk(proact_tls *t, const struct tls__req *r, const void **p)
{
	size_t want = r->len - r->done, off = r->done, got = 0;
	int i = 0;
	if (want > TLS__RECORD)
		want = TLS__RECORD;
	while (off >= r->iov[i].iov_len)
		off -= r->iov[i++].iov_len;
	if (r->iov[i].iov_len - off >= want) {
		*p = (const char *)r->iov[i].iov_base + off;
		return want;
	}
	for (; got < want; i++, off = 0) {
		size_t k = r->iov[i].iov_len - off;
		if (k > want - got)
			k = want - got;
		if (k)
			memcpy(t->gather + got, (const char *)r->iov[i].iov_base + off, k);
		got += k;
	}
	*p = t->gather;
	return want;
}

/* After the sending side's handoff: the program's bytes go to the socket
   as they are, one write in flight, and the kernel makes the records. */
static bool kernel_write(struct proact_tls_conn *c, struct tls__req *r)
{
	if (c->kfly)
		return false;
	int rc = proact_writev(c->t->w, c->fd, r->iov, r->iovcnt, c);
	if (rc < 0) {
		conn_fail(c, -rc, NULL);
		return false;
	}
	c->kfly = true;
	r->done = r->len;
	c->made += r->len;
	r->mark = c->made;
	tls__heap_del(c->t, r);
	return true;
}

/* Takes @r's bytes into records as far as there is room; true when all are. */
static bool take_write(struct proact_tls_conn *c, struct tls__req *r)
{
	if (c->ktls & PROACT_TLS_KTLS_TX)
		return kernel_write(c, r);
	while (r->done < r->len) {
		if (!room(c)) {
			flush(c);
			if (c->error || !room(c))
				return false;
		}
		const void *p;
		size_t k = next_chunk(c->t, r, &p);
		ERR_clear_error();
		c->t->cur = c;
		int n = SSL_write(c->ssl, p, (int)k);
		if (n <= 0) {
			ssl_fail(c, SSL_get_error(c->ssl, n));
			return false;
		}
		r->done += (size_t)n;
	}
	r->mark = c->made;
	tls__heap_del(c->t, r); /* taken: its records go out whatever happens */
	return true;
}

/* close_notify (unless the stream was cut), then, once it is handed to
   proact, the socket's shutdown behind it. */
static bool take_shutdown(struct proact_tls_conn *c, struct tls__req *r)
{
	if (r->stage == 0 && (c->ktls & PROACT_TLS_KTLS_TX)) {
		if (c->kfly) /* the alert goes behind the bytes before it */
			return false;
		c->wr_closed = true;
		r->stage = 1;
		int e = c->cut ? 0 : tls__ktls_close_notify(c->fd);
		if (e) {
			conn_fail(c, e, "close_notify could not be sent");
			return false;
		}
	}
	if (r->stage == 0) {
		c->wr_closed = true;
		r->stage = 1;
		ERR_clear_error();
		c->t->cur = c;
		int ret = c->cut ? 0 : SSL_shutdown(c->ssl);
		if (ret < 0) {
			ssl_fail(c, SSL_get_error(c->ssl, ret));
			return false;
		}
	}
	flush(c);
	if (c->error || (c->out && c->out->len))
		return false;
	int rc = proact_shutdown_write(c->t->w, c->fd, c);
	if (rc < 0) {
		conn_fail(c, -rc, NULL);
		return false;
	}
	r->stage = 2;
	c->shut = r;
	return true;
}

static void pump_writes(struct proact_tls_conn *c)
{
	while (!c->error && c->wr_take) {
		struct tls__req *r = c->wr_take;
		if (r->op == PROACT_TLS_OP_SHUTDOWN) {
			if (!take_shutdown(c, r))
				return;
		} else if (c->wr_closed || c->cut) {
			/* completes in its turn, after the writes before it */
			r->error = EPIPE;
			r->done = 0;
			r->mark = c->made;
			tls__heap_del(c->t, r);
		} else if (!take_write(c, r)) {
			return;
		}
		c->wr_take = next_of(c, r);
	}
	flush(c);
}

/* Completes, in order, the writes whose records all went out. */
static void complete_sent(struct proact_tls_conn *c)
{
	while (!tls__list_empty(&c->wr)) {
		struct tls__req *r = TLS__REQ(c->wr.next);
		if (r == c->wr_take || r->op == PROACT_TLS_OP_SHUTDOWN || r->mark > c->sent)
			return;
		tls__complete(r, r->error);
	}
}

void tls__pump(struct proact_tls_conn *c)
{
	if (c->closing || c->error)
		return;
	if (!c->hs_done && (!c->hs || !handshake(c)) && !c->kpending) {
		flush(c);
		return;
	}
	if (c->kpending && !handoff(c))
		return;
	pump_reads(c);
	pump_writes(c);
	if (c->reneg && !c->error)
		conn_fail(c, EPROTO, "renegotiation refused");
}

/* ---- completions of the layer's requests --------------------------------------- */

/* The kernel stops a plain read at a record that is not data (EIO): an
   alert, close_notify among them, or a handshake message; and reports a
   record that failed its checks (EBADMSG, EMSGSIZE). */
static void kernel_read_error(struct proact_tls_conn *c, int error)
{
	const char *why = "a bad record (the kernel's check)";
	bool eof = false;
	if (error == EIO)
		error = tls__ktls_control(c->fd, &eof, &why);
	else if (error == EBADMSG || error == EMSGSIZE || error == EINVAL)
		error = EPROTO;
	else
		why = NULL;
	if (!eof) {
		conn_fail(c, error, why);
		return;
	}
	c->rx_eof = true;
	tls__pump(c);
}

static void on_read(struct proact_tls_conn *c, const struct proact_completion *r)
{
	c->reading = false;
	if (c->closing || c->error)
		return;
	if (r->error && (c->ktls & PROACT_TLS_KTLS_RX)) {
		kernel_read_error(c, r->error);
		return;
	}
	if (r->error) {
		conn_fail(c, r->error, NULL);
		return;
	}
	if (r->size == 0) {
		c->sock_eof = true;
	} else {
		c->in = r->buf;
		c->in_len = r->size;
	}
	tls__pump(c);
	keep_input(c);
}

static void on_write(struct proact_tls_conn *c, const struct proact_completion *r)
{
	tls__obuf_put(c->t, c->fly);
	c->fly = NULL;
	c->kfly = false;
	c->sent += r->size;
	if (c->closing || c->error)
		return;
	if (r->error) {
		conn_fail(c, r->error, NULL);
		return;
	}
	complete_sent(c);
	tls__pump(c);
}

static void on_shutdown(struct proact_tls_conn *c, const struct proact_completion *r)
{
	struct tls__req *s = c->shut;
	c->shut = NULL;
	if (!s || c->closing)
		return;
	tls__complete(s, r->error);
	complete_sent(c);
}

void tls__on_io(struct proact_tls_conn *c, const struct proact_completion *r)
{
	switch (r->op) {
	case PROACT_OP_READ:
		on_read(c, r);
		break;
	case PROACT_OP_WRITE:
		on_write(c, r);
		break;
	case PROACT_OP_SHUTDOWN:
		on_shutdown(c, r);
		break;
	case PROACT_OP_FREE:
		/* the fd number may be reused from now on */
		c->t->conns[tls__fdnum(c->fd)] = NULL;
		tls__complete(c->free_req, 0);
		break;
	default:
		break;
	}
}

void tls__expire(struct tls__req *r)
{
	struct proact_tls_conn *c = r->c;
	tls__heap_del(c->t, r);
	if (r->op == PROACT_TLS_OP_HANDSHAKE) {
		conn_fail(c, ETIMEDOUT, "handshake timed out");
		return;
	}
	if (r->op == PROACT_TLS_OP_READ) {
		tls__complete(r, ETIMEDOUT);
		return;
	}
	if (r->op != PROACT_TLS_OP_SHUTDOWN && r->done > 0)
		c->cut = true;
	if (r == c->wr_take)
		c->wr_take = next_of(c, r);
	if (r == c->shut)
		c->shut = NULL;
	tls__complete(r, ETIMEDOUT);
	complete_sent(c);
	tls__pump(c);
}

/* ---- end of a connection --------------------------------------------------------- */

void tls__cancel_all(struct proact_tls_conn *c)
{
	complete_all(c, ECANCELED);
}

static void free_queue(proact_tls *t, struct tls__link *q)
{
	while (!tls__list_empty(q)) {
		struct tls__req *r = TLS__REQ(q->next);
		tls__list_del(&r->link);
		tls__req_free(t, r);
	}
}

void tls__conn_destroy(struct proact_tls_conn *c)
{
	proact_tls *t = c->t;
	tls__list_del(&c->all);
	tls__unstarve(c);
	int fd = tls__fdnum(c->fd);
	if (fd >= 0 && fd < t->nconns && t->conns[fd] == c)
		t->conns[fd] = NULL;
	if (c->hs)
		tls__req_free(t, c->hs);
	free_queue(t, &c->rd);
	free_queue(t, &c->wr);
	if (c->free_req && c->free_req->link.next == &c->free_req->link)
		tls__req_free(t, c->free_req); /* never completed: not on the done list */
	if (t->cur == c)
		t->cur = NULL;
	SSL_free(c->ssl);
	tls__ktls_drop(c);
	free(c->out);
	free(c->fly);
	free(c->stash);
	free(c);
}
