/* SPDX-License-Identifier: MIT */
/*
 * tls_echo - the echo server over TLS, on proact and its TLS layer.
 *
 *   tls_echo --cert FILE --key FILE [--host ADDR] [--port N] [--backend NAME]
 *            [--handshake-ms N]
 *
 * Every connection runs one TLS request at a time: the handshake (with a
 * deadline), then a read into a buffer of the layer's, taken only once
 * decrypted bytes are there, then a write of that same buffer (zero copy:
 * it stays valid until the write completes), then the next read. At the end
 * of the peer's stream it sends close_notify and frees the connection; on
 * any failure it frees it at once. An idle connection costs its OpenSSL
 * session state and no buffer.
 *
 * Plain requests share the loop: the accepts on the listener and the read
 * of the stop signal's descriptor come back from proact_tls_wait() as they
 * would from proact_wait().
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proact.h"
#include "proact_tls.h"
#include "util.h"

#define BATCH   256
#define ACCEPTS 16

struct conn {
	struct conn *prev, *next; /* every live connection, to free them at exit */
	proact_tls_conn *tls;
	bool closing;
};

struct server {
	proact_watcher *w;
	proact_tls *t;
	proact_tls_ctx *ctx;
	struct conn live; /* list head */
	int lfd;
	int sfd;
	ex_siginfo sig[4];
	uint64_t handshake_ms;
	bool stop, failed;
	uint64_t accepted, handshakes, bytes, failures;
};

struct options {
	struct ex_server_options net;
	const char *cert, *key;
	uint64_t handshake_ms;
};

static const char usage_text[] =
    "usage: tls_echo --cert FILE --key FILE [--host ADDR] [--port N] [--backend NAME] "
    "[--handshake-ms N]\n";

static bool take_option(void *arg, const char *name, const char *v)
{
	struct options *o = arg;
	if (!strcmp(name, "--cert"))
		o->cert = v;
	else if (!strcmp(name, "--key"))
		o->key = v;
	else if (!strcmp(name, "--handshake-ms"))
		o->handshake_ms = ex_parse_num(v, 1, 3600000);
	else
		return ex_server_option(&o->net, "--port", name, v);
	return true;
}

/* ---- connections ----------------------------------------------------------- */

static void conn_close(struct server *s, struct conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	int rc = proact_tls_free(c->tls, c);
	if (rc < 0) { /* the watcher is going away: nothing more will come */
		fprintf(stderr, "tls_echo: proact_tls_free: %s\n", proact_strerror(rc));
		s->failed = true;
	}
}

/* A request refused at submission: no completion comes for it. */
static void check(struct server *s, struct conn *c, int rc)
{
	if (rc < 0) {
		s->failures++;
		conn_close(s, c);
	}
}

static void conn_open(struct server *s, int fd)
{
	struct conn *c = calloc(1, sizeof(*c));
	if (!c || proact_tls_conn_new(s->t, &c->tls, fd, s->ctx, NULL) < 0) {
		free(c);
		close(fd);
		s->failures++;
		return;
	}
	c->prev = &s->live;
	c->next = s->live.next;
	s->live.next->prev = c;
	s->live.next = c;
	s->accepted++;
	int one = 1; /* echo is request and response: no Nagle delay */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	check(s, c, proact_tls_handshake(c->tls, proact_deadline_in(s->handshake_ms), c));
}

static void on_tls(struct server *s, struct conn *c, const struct proact_completion *r)
{
	if (r->op == PROACT_TLS_OP_FREE) {
		c->prev->next = c->next;
		c->next->prev = c->prev;
		free(c);
		return;
	}
	if (c->closing)
		return;
	if (r->error) {
		if (r->error != ECANCELED)
			s->failures++;
		conn_close(s, c);
		return;
	}
	switch (r->op) {
	case PROACT_TLS_OP_HANDSHAKE:
		s->handshakes++;
		check(s, c, proact_tls_read(c->tls, NULL, 0, 0, c));
		break;
	case PROACT_TLS_OP_READ:
		if (r->size == 0) /* close_notify: answer with ours */
			check(s, c, proact_tls_shutdown(c->tls, 0, c));
		else
			check(s, c, proact_tls_write(c->tls, r->buf, r->size, 0, c));
		break;
	case PROACT_TLS_OP_WRITE:
		s->bytes += r->size;
		check(s, c, proact_tls_read(c->tls, NULL, 0, 0, c));
		break;
	case PROACT_TLS_OP_SHUTDOWN:
		conn_close(s, c);
		break;
	default:
		break;
	}
}

static void on_plain(struct server *s, const struct proact_completion *r)
{
	if (r->ctx == s->sig) {
		s->stop = true;
		return;
	}
	if (r->op != PROACT_OP_ACCEPT)
		return;
	if (r->error == 0)
		conn_open(s, r->newfd);
	else if (!ex_accept_transient(r->error)) {
		fprintf(stderr, "tls_echo: accept: %s\n", proact_strerror(r->error));
		s->failed = s->stop = true;
		return;
	}
	if (proact_accept(s->w, s->lfd, NULL, 0, NULL) < 0)
		s->failed = s->stop = true;
}

static void run(struct server *s, uint64_t until)
{
	struct proact_completion comp[BATCH];
	while (until ? s->live.next != &s->live && proact_now() < until : !s->stop) {
		int n = proact_tls_wait(s->t, comp, BATCH, until ? 100 : -1);
		if (n == -EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "tls_echo: proact_tls_wait: %s\n", proact_strerror(n));
			s->failed = true;
			return;
		}
		for (int i = 0; i < n; i++) {
			if (comp[i].op >= PROACT_TLS_OP_HANDSHAKE)
				on_tls(s, comp[i].ctx, &comp[i]);
			else
				on_plain(s, &comp[i]);
		}
	}
}

/* ---- setup ----------------------------------------------------------------- */

static int setup(struct server *s, const struct options *o)
{
	struct proact_options po = {.backend = o->net.backend};
	struct proact_tls_config cfg = {
	    .flags = PROACT_TLS_SERVER, .cert_file = o->cert, .key_file = o->key};
	int rc = proact_tls_ctx_new(&s->ctx, &cfg);
	if (rc < 0) {
		fprintf(stderr, "tls_echo: certificate or key: %s\n", proact_strerror(rc));
		return -1;
	}
	if ((rc = proact_watcher_new(&s->w, &po)) < 0 ||
	    (rc = proact_tls_new(&s->t, s->w, NULL)) < 0) {
		fprintf(stderr, "tls_echo: setup: %s\n", proact_strerror(rc));
		return -1;
	}
	if (ex_accept_first(s->w, s->lfd) < 0)
		return -1;
	for (int i = 1; i < ACCEPTS; i++)
		if (proact_accept(s->w, s->lfd, NULL, 0, NULL) < 0)
			return -1;
	struct proact_request sr = ex_signal_read(s->sfd, s->sig, sizeof(s->sig));
	if ((rc = proact_submit(s->w, &sr, 1)) < 0) {
		fprintf(stderr, "tls_echo: signal read: %s\n", proact_strerror(rc));
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct options o = {.net = {.host = "127.0.0.1", .port = "0"}, .handshake_ms = 10000};
	ex_init("tls_echo", usage_text);
	ex_parse_options(argc, argv, take_option, &o);
	if (!o.cert || !o.key)
		ex_usage();
	ex_raise_fd_limit();
	struct server s = {.lfd = -1, .handshake_ms = o.handshake_ms};
	s.live.next = s.live.prev = &s.live;
	s.sfd = ex_open_signalfd();
	if (s.sfd < 0) {
		perror("tls_echo: signalfd");
		return 1;
	}
	s.lfd = ex_open_listener(o.net.host, o.net.port, 65535, false);
	bool ok = s.lfd >= 0 && setup(&s, &o) == 0;
	if (ok) {
		fprintf(stderr, "tls_echo: backend %s, kTLS %s\n", proact_backend(s.w),
		        proact_tls_ktls_probe() == 1 ? "available" : "unavailable");
		ex_print_listening(s.lfd);
		run(&s, 0);
		/* Stopped: free what is left and wait (2 s at most) for its FREEs. */
		for (struct conn *c = s.live.next; c != &s.live; c = c->next)
			conn_close(&s, c);
		run(&s, proact_deadline_in(2000));
		printf("tls_echo: accepted %" PRIu64 ", handshakes %" PRIu64 ", echoed %" PRIu64
		       " bytes, %" PRIu64 " failures\n",
		       s.accepted, s.handshakes, s.bytes, s.failures);
		fflush(stdout);
		ok = !s.failed;
	}
	/* Shut down first: the layer then frees the connections left. */
	proact_watcher_shutdown(s.w);
	proact_tls_destroy(s.t);
	proact_watcher_destroy(s.w);
	proact_tls_ctx_free(s.ctx);
	while (s.live.next != &s.live) { /* their FREE did not come in time */
		struct conn *c = s.live.next;
		s.live.next = c->next;
		free(c);
	}
	if (!s.w) {
		if (s.lfd >= 0)
			close(s.lfd);
		close(s.sfd);
	}
	return ok ? 0 : 1;
}
