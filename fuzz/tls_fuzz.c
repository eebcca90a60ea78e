/* SPDX-License-Identifier: MIT */
/*
 * tls_fuzz.c - arbitrary bytes from the "network" into the TLS layer.
 *
 * Input: one mode byte, then chunks, each a length byte and that many bytes.
 * Mode bit 0: the layer is the server (else the client, which sends its
 * ClientHello first); bit 1: the peer ends with a reset instead of the end
 * of the stream. A connection of the layer over a socketpair gets a
 * handshake (with a deadline), a NULL-buffer read and a write; the chunks
 * are sent to it one by one, with the layer run in between.
 *
 * Checks: the handshake never succeeds (no input can forge a Finished),
 * every request completes exactly once, FREE comes last, the socket is
 * closed, and (under ASan) nothing leaks. A failed check aborts.
 */
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proact.h"
#include "proact_tls.h"

#define CHECK(x)                                                                                   \
	do {                                                                                       \
		if (!(x)) {                                                                        \
			fprintf(stderr, "tls_fuzz: check failed: %s (line %d)\n", #x, __LINE__);   \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

struct harness {
	proact_watcher *w;
	proact_tls *t;
	proact_tls_ctx *server, *client;
};

/* A self-signed P-256 identity as PEM text; the caller frees both. */
static void make_pem(char **cert, char **key)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	CHECK(k && x);
	X509_set_version(x, 2);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, k);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
	                           (const unsigned char *)"fuzz", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	CHECK(X509_sign(x, k, EVP_sha256()) > 0);
	BIO *b = BIO_new(BIO_s_mem()), *c = BIO_new(BIO_s_mem());
	CHECK(PEM_write_bio_X509(b, x) &&
	      PEM_write_bio_PrivateKey(c, k, NULL, NULL, 0, NULL, NULL));
	char *p;
	long n = BIO_get_mem_data(b, &p);
	*cert = strndup(p, (size_t)n);
	n = BIO_get_mem_data(c, &p);
	*key = strndup(p, (size_t)n);
	BIO_free(b);
	BIO_free(c);
	X509_free(x);
	EVP_PKEY_free(k);
}

/* Set up once: a watcher of the backend in PROACT_BACKEND, its layer, and
   server and client contexts. */
static struct harness *harness(void)
{
	static struct harness h;
	if (h.t)
		return &h;
	char *cert, *key;
	make_pem(&cert, &key);
	struct proact_tls_config s = {.flags = PROACT_TLS_SERVER, .cert_pem = cert, .key_pem = key};
	struct proact_tls_config c = {.flags = PROACT_TLS_NO_VERIFY};
	CHECK(proact_watcher_new(&h.w, NULL) == 0);
	CHECK(proact_tls_new(&h.t, h.w, NULL) == 0);
	CHECK(proact_tls_ctx_new(&h.server, &s) == 0);
	CHECK(proact_tls_ctx_new(&h.client, &c) == 0);
	free(cert);
	free(key);
	return &h;
}

/* Runs the layer for about @ms, counting completions on fd; true once FREE came. */
static bool run(struct harness *h, int fd, int ms, int counts[8])
{
	struct proact_completion r[8];
	uint64_t end = proact_deadline_in((uint64_t)ms);
	do {
		int n = proact_tls_wait(h->t, r, 8, 1);
		CHECK(n >= 0);
		for (int i = 0; i < n; i++) {
			CHECK(r[i].fd == fd && r[i].op >= PROACT_TLS_OP_HANDSHAKE);
			CHECK(counts[7] == 0); /* nothing after FREE */
			counts[r[i].op - PROACT_TLS_OP_HANDSHAKE]++;
			if (r[i].op == PROACT_TLS_OP_HANDSHAKE)
				CHECK(r[i].error != 0);
			if (r[i].op == PROACT_TLS_OP_FREE)
				counts[7] = 1;
		}
	} while (!counts[7] && proact_now() < end);
	return counts[7];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	struct harness *h = harness();
	int fds[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
	proact_tls_conn *c;
	bool server = data[0] & 1;
	CHECK(proact_tls_conn_new(h->t, &c, fds[0], server ? h->server : h->client,
	                          server ? NULL : "fuzz") == 0);
	CHECK(proact_tls_handshake(c, proact_deadline_in(200), NULL) == 0);
	CHECK(proact_tls_read(c, NULL, 0, 0, NULL) == 0);
	CHECK(proact_tls_write(c, "x", 1, 0, NULL) == 0);
	int counts[8] = {0};
	size_t at = 1;
	while (at < size) {
		size_t n = data[at++];
		if (n > size - at)
			n = size - at;
		if (n && send(fds[1], data + at, n, MSG_NOSIGNAL) < 0)
			break;
		at += n;
		run(h, fds[0], 0, counts);
	}
	if (data[0] & 2)
		close(fds[1]);
	else
		shutdown(fds[1], SHUT_WR);
	run(h, fds[0], 5, counts);
	CHECK(proact_tls_free(c, NULL) == 0);
	CHECK(run(h, fds[0], 5000, counts));
	/* one handshake, one read, one write, one FREE: each exactly once */
	CHECK(counts[0] == 1 && counts[1] == 1 && counts[2] == 1 && counts[5] == 1);
	if (!(data[0] & 2))
		close(fds[1]);
	return 0;
}
