/* SPDX-License-Identifier: MIT */
/*
 * Checks the kTLS handoff as far as a kernel without the tls ULP allows:
 *   - the probe answers once per process, the same each time, and leaves no
 *     fd; PROACT_TLS_NO_KTLS and PROACT_TLS_KTLS=off keep a context on the
 *     memory BIOs, and proact_tls_ktls() says which path a connection took
 *     and why;
 *   - PROACT_TLS_KTLS=force tries the handoff on the real socket: refused
 *     here (ENOENT, no tls module), the connection goes on through the
 *     memory BIOs with every byte; on a kernel with the ULP the same
 *     exchange runs through the kernel;
 *   - the keys and sequence numbers the layer would give the kernel, caught
 *     at the handoff: a record sealed with them in user space (AES-GCM,
 *     ChaCha20-Poly1305) is accepted by the peer's OpenSSL as the next one
 *     (a TLS 1.3 server's tickets counted), and the peer's next record opens
 *     with the receiving keys; TLS 1.3 and 1.2, the layer as server and as
 *     client; ciphertext read past the handshake either went to OpenSSL
 *     (receiving side refused) or stays for the kernel;
 *   - the data path after a handoff the hook accepts, with a stand-in for
 *     the kernel between the sockets that seals and opens the records: 200
 *     KB each way at once, the layer's plain writes and reads against the
 *     peer's OpenSSL, every byte in order.
 */
#include "tls_common.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../tls/internal.h"

/* ---- paths -------------------------------------------------------------------- */

static void exchange(struct tt_layer *l, proact_tls_conn *a, proact_tls_conn *b, size_t len)
{
	unsigned char *out = malloc(len), *in = malloc(len);
	assert_non_null(out);
	assert_non_null(in);
	t_fill(out, len, 9, 0);
	assert_int_equal(proact_tls_write(a, out, len, 0, NULL), 0);
	assert_int_equal(proact_tls_write(b, out, len, 0, NULL), 0);
	size_t got[2] = {0, 0};
	int writes = 0;
	assert_int_equal(proact_tls_read(a, in, len, 0, NULL), 0);
	while (writes < 2 || got[0] < len) {
		struct proact_completion r;
		assert_int_equal(tt_collect(l->t, &r, 1, TT_TIMEOUT_MS), 1);
		assert_int_equal(r.error, 0);
		if (r.op == PROACT_TLS_OP_WRITE) {
			writes++;
		} else if (r.op == PROACT_TLS_OP_READ && r.fd == proact_tls_fd(a)) {
			got[0] += r.size;
			if (got[0] < len)
				assert_int_equal(
				    proact_tls_read(a, in + got[0], len - got[0], 0, NULL), 0);
		}
	}
	assert_memory_equal(in, out, len);
	free(out);
	free(in);
}

static void test_probe_and_off(void **state)
{
	(void)state;
	int fds = t_fd_count();
	int k = proact_tls_ktls_probe();
	assert_true(k == 0 || k == 1);
	assert_int_equal(proact_tls_ktls_probe(), k);
	assert_int_equal(t_fd_count(), fds);
	print_message("kTLS probe: %s\n", k ? "available" : "unavailable");

	struct tt_layer l;
	tt_layer_new(&l);
	proact_tls_ctx *sctx = tt_server_ctx(false, NULL), *cctx = tt_client_ctx(0, NULL);
	const struct tt_certs *ce = tt_certs();
	struct proact_tls_config off = {.flags = PROACT_TLS_SERVER | PROACT_TLS_NO_KTLS,
	                                .cert_file = ce->cert,
	                                .key_file = ce->key};
	proact_tls_ctx *soff;
	assert_int_equal(proact_tls_ctx_new(&soff, &off), 0);
	proact_tls_conn *s, *c;
	tt_pair(&l, soff, cctx, &s, &c);
	const char *why;
	assert_int_equal(proact_tls_ktls(s, &why), 0);
	assert_string_equal(why, "kTLS off (PROACT_TLS_NO_KTLS)");
	assert_int_equal(proact_tls_ktls(c, &why), k ? PROACT_TLS_KTLS_TX : 0);
	if (!k)
		assert_string_equal(why, "no tls ULP in this kernel");
	exchange(&l, s, c, 100000);
	tt_free(l.t, s);
	tt_free(l.t, c);

	setenv("PROACT_TLS_KTLS", "off", 1);
	proact_tls_ctx *senv = tt_server_ctx(false, NULL);
	unsetenv("PROACT_TLS_KTLS");
	tt_pair(&l, senv, cctx, &s, &c);
	assert_int_equal(proact_tls_ktls(s, &why), 0);
	assert_string_equal(why, "kTLS off (PROACT_TLS_KTLS)");
	assert_int_equal(proact_tls_ktls(NULL, &why), -EINVAL);
	tt_free(l.t, s);
	tt_free(l.t, c);
	tt_layer_free(&l);
	proact_tls_ctx_free(soff);
	proact_tls_ctx_free(senv);
	proact_tls_ctx_free(sctx);
	proact_tls_ctx_free(cctx);
}

static void test_forced_handoff(void **state)
{
	(void)state;
	int k = proact_tls_ktls_probe();
	setenv("PROACT_TLS_KTLS", "force", 1);
	proact_tls_ctx *sctx = tt_server_ctx(false, NULL),
	               *cctx = tt_client_ctx(PROACT_TLS_TLS13, NULL);
	unsetenv("PROACT_TLS_KTLS");
	struct tt_layer l;
	tt_layer_new(&l);
	proact_tls_conn *s, *c;
	tt_pair(&l, sctx, cctx, &s, &c);
	const char *why;
	int ks = proact_tls_ktls(s, &why);
	print_message("server: kTLS %d (%s), client: kTLS %d\n", ks, why ? why : "both ways",
	              proact_tls_ktls(c, NULL));
	if (k == 0) {
		assert_int_equal(ks, 0);
		assert_string_equal(why, "tls ULP refused: no tls module in the kernel");
		assert_int_equal(proact_tls_ktls(c, NULL), 0);
	} else {
		assert_int_equal(proact_tls_ktls(c, &why), PROACT_TLS_KTLS_TX);
		assert_non_null(strstr(why, "TLS 1.3 client"));
	}
	exchange(&l, s, c, 3u << 20);
	exchange(&l, c, s, 3u << 20);
	tt_free(l.t, s);
	tt_free(l.t, c);
	tt_layer_free(&l);
	proact_tls_ctx_free(sctx);
	proact_tls_ctx_free(cctx);
}

/* ---- the keys: a user-space stand-in for the kernel ----------------------------- */

#define MAX_PLAIN  16384u
#define MAX_RECORD (5u + MAX_PLAIN + 1u + 16u + 8u)

static struct tls__kinfo caught_tx, caught_rx;
static int caught, caught_has_rx;

static int catch_keys(int fd, const struct tls__kinfo *tx, const struct tls__kinfo *rx)
{
	(void)fd;
	caught++;
	caught_tx = *tx;
	caught_has_rx = rx != NULL;
	if (rx)
		caught_rx = *rx;
	return -ENOENT; /* refused: the layer goes on through the memory BIOs */
}

struct aead_key {
	const EVP_CIPHER *cipher;
	unsigned char key[32], iv[12]; /* iv: salt and nonce, or ChaCha's 12 */
	uint64_t seq;
	bool tls13;
};

static uint64_t be64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static void put64(unsigned char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)v;
}

/* AES-GCM's parts: the key, the 4-byte salt and the 8 more nonce bytes. */
#define GCM_PARTS(k, x, evp)                                                                       \
	do {                                                                                       \
		(k).cipher = (evp);                                                                \
		memcpy((k).key, (x).key, sizeof((x).key));                                         \
		memcpy((k).iv, (x).salt, 4);                                                       \
		memcpy((k).iv + 4, (x).iv, 8);                                                     \
		(k).seq = be64((x).rec_seq);                                                       \
	} while (0)

static struct aead_key key_of(const struct tls__kinfo *ki)
{
	struct aead_key k = {.tls13 = ki->u.info.version == TLS_1_3_VERSION};
	switch (ki->u.info.cipher_type) {
	case TLS_CIPHER_AES_GCM_128:
		GCM_PARTS(k, ki->u.gcm128, EVP_aes_128_gcm());
		break;
	case TLS_CIPHER_AES_GCM_256:
		GCM_PARTS(k, ki->u.gcm256, EVP_aes_256_gcm());
		break;
	case TLS_CIPHER_CHACHA20_POLY1305:
		k.cipher = EVP_chacha20_poly1305();
		memcpy(k.key, ki->u.chacha.key, 32);
		memcpy(k.iv, ki->u.chacha.iv, 12);
		k.seq = be64(ki->u.chacha.rec_seq);
		break;
	default:
		fail_msg("cipher %d", ki->u.info.cipher_type);
	}
	return k;
}

/* The record's nonce: TLS 1.3 XORs the sequence number into the IV; TLS 1.2
   AES-GCM sends an explicit part (here the sequence number). */
static void nonce_of(const struct aead_key *k, const unsigned char *explicit, unsigned char n[12])
{
	memcpy(n, k->iv, 12);
	if (!k->tls13) {
		memcpy(n + 4, explicit, 8);
		return;
	}
	unsigned char s[8];
	put64(s, k->seq);
	for (int i = 0; i < 8; i++)
		n[4 + i] ^= s[i];
}

static int aead(const struct aead_key *k, bool seal, const unsigned char nonce[12],
                const unsigned char *aad, int aadlen, const unsigned char *in, int len,
                unsigned char *out, unsigned char tag[16])
{
	EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
	int n = 0, m = 0,
	    ok = x && EVP_CipherInit_ex(x, k->cipher, NULL, NULL, NULL, seal) == 1 &&
	         EVP_CipherInit_ex(x, NULL, NULL, k->key, nonce, seal) == 1 &&
	         (seal || EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_SET_TAG, 16, tag) == 1) &&
	         EVP_CipherUpdate(x, NULL, &n, aad, aadlen) == 1 &&
	         EVP_CipherUpdate(x, out, &n, in, len) == 1 &&
	         EVP_CipherFinal_ex(x, out + n, &m) == 1 &&
	         (!seal || EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_GET_TAG, 16, tag) == 1);
	EVP_CIPHER_CTX_free(x);
	return ok ? n + m : -1;
}

/* The additional data: TLS 1.3 the record header; TLS 1.2 the sequence
   number, type, version and plaintext length. Returns its length. */
static int aad_of(const struct aead_key *k, const unsigned char *rec, const unsigned char seq[8],
                  size_t len, unsigned char aad[13])
{
	if (k->tls13) {
		memcpy(aad, rec, 5);
		return 5;
	}
	memcpy(aad, seq, 8);
	memcpy(aad + 8, rec, 3);
	aad[11] = (unsigned char)(len >> 8);
	aad[12] = (unsigned char)len;
	return 13;
}

/* One application-data record of @pt, as the kernel would make it. */
static size_t seal_record(const struct aead_key *k, const void *pt, size_t len, unsigned char *rec)
{
	/* TLS 1.3: the inner type byte; TLS 1.2 (AES-GCM only): the explicit nonce */
	size_t body = len + 16 + (k->tls13 ? 1 : 8);
	bool explicit = !k->tls13;
	static unsigned char in[MAX_PLAIN + 1];
	unsigned char nonce[12], aad[13], *p = rec + 5, seq[8];
	memcpy(in, pt, len);
	if (k->tls13)
		in[len++] = 23; /* the inner content type */
	rec[0] = 23;
	rec[1] = rec[2] = 3;
	rec[3] = (unsigned char)(body >> 8);
	rec[4] = (unsigned char)body;
	put64(seq, k->seq);
	if (explicit) {
		memcpy(p, seq, 8);
		p += 8;
	}
	nonce_of(k, seq, nonce);
	int n = aead(k, true, nonce, aad, aad_of(k, rec, seq, len, aad), in, (int)len, p, p + len);
	assert_int_equal(n, (int)len);
	return 5 + body;
}

/* Opens record @rec (header included) into @pt; returns the plaintext length. */
static int open_record(const struct aead_key *k, const unsigned char *rec, size_t reclen,
                       unsigned char *pt)
{
	bool explicit = !k->tls13;
	const unsigned char *p = rec + 5;
	size_t len = reclen - 5 - 16 - (explicit ? 8 : 0);
	unsigned char nonce[12], aad[13], tag[16], seq[8];
	put64(seq, k->seq);
	nonce_of(k, explicit ? p : seq, nonce);
	if (explicit)
		p += 8;
	memcpy(tag, p + len, 16);
	int n = aead(k, false, nonce, aad, aad_of(k, rec, seq, len, aad), p, (int)len, pt, tag);
	if (n > 0 && k->tls13) {
		while (n > 0 && pt[n - 1] == 0)
			n--;
		assert_int_equal(pt[--n], 23);
	}
	return n;
}

/* ---- a peer on plain OpenSSL ---------------------------------------------------- */

struct peer_case {
	const char *suites;  /* TLS 1.3 suite, or NULL */
	const char *ciphers; /* TLS 1.2 cipher, or NULL */
	bool layer_server;
};

static SSL *peer_new(const struct peer_case *pc, int fd)
{
	SSL_CTX *x = SSL_CTX_new(pc->layer_server ? TLS_client_method() : TLS_server_method());
	assert_non_null(x);
	if (pc->suites) {
		SSL_CTX_set_min_proto_version(x, TLS1_3_VERSION);
		assert_int_equal(SSL_CTX_set_ciphersuites(x, pc->suites), 1);
	} else {
		SSL_CTX_set_max_proto_version(x, TLS1_2_VERSION);
		assert_int_equal(SSL_CTX_set_cipher_list(x, pc->ciphers), 1);
	}
	if (!pc->layer_server) {
		const struct tt_certs *ce = tt_certs();
		assert_int_equal(SSL_CTX_use_certificate_chain_file(x, ce->cert), 1);
		assert_int_equal(SSL_CTX_use_PrivateKey_file(x, ce->key, SSL_FILETYPE_PEM), 1);
	}
	SSL *p = SSL_new(x);
	SSL_CTX_free(x);
	assert_non_null(p);
	SSL_set_fd(p, fd);
	if (pc->layer_server)
		SSL_set_connect_state(p);
	else
		SSL_set_accept_state(p);
	return p;
}

static void pollfd_for(int fd, short ev)
{
	struct pollfd p = {.fd = fd, .events = ev};
	assert_int_equal(poll(&p, 1, TT_TIMEOUT_MS), 1);
}

/* Both handshakes, the peer's steps between waits of the layer. With
   @early, the peer sends @early right after its last handshake step. */
static void handshake_both(struct tt_layer *l, proact_tls_conn *c, SSL *p, const char *early)
{
	bool ldone = false, pdone = false;
	assert_int_equal(proact_tls_handshake(c, proact_deadline_in(TT_TIMEOUT_MS), NULL), 0);
	for (int round = 0; !(ldone && pdone); round++) {
		assert_true(round < 4000);
		if (!pdone) {
			int rc = SSL_do_handshake(p);
			if (rc == 1) {
				pdone = true;
				if (early)
					assert_int_equal(SSL_write(p, early, (int)strlen(early)),
					                 (int)strlen(early));
			} else {
				assert_int_equal(SSL_get_error(p, rc), SSL_ERROR_WANT_READ);
			}
		}
		struct proact_completion r;
		int n = proact_tls_wait(l->t, &r, 1, 5);
		assert_true(n >= 0);
		if (n == 1) {
			assert_int_equal(r.op, PROACT_TLS_OP_HANDSHAKE);
			assert_int_equal(r.error, 0);
			ldone = true;
		}
	}
}

static void peer_read(SSL *p, int fd, const char *want)
{
	char buf[256];
	int n;
	while ((n = SSL_read(p, buf, sizeof(buf))) <= 0) {
		assert_int_equal(SSL_get_error(p, n), SSL_ERROR_WANT_READ);
		pollfd_for(fd, POLLIN);
	}
	assert_int_equal(n, (int)strlen(want));
	assert_memory_equal(buf, want, (size_t)n);
}

/* One whole record from @fd (a blocking read of a non-blocking socket). */
static size_t raw_record(int fd, unsigned char *rec, size_t cap)
{
	size_t got = 0, want = 5;
	while (got < want) {
		pollfd_for(fd, POLLIN);
		ssize_t n = recv(fd, rec + got, want - got, 0);
		assert_true(n > 0);
		got += (size_t)n;
		if (got == 5)
			want = 5 + ((size_t)rec[3] << 8 | rec[4]);
		assert_true(want <= cap);
	}
	assert_int_equal(rec[0], 23);
	return got;
}

static void check_keys(const struct peer_case *pc, const char *early)
{
	int fds[2];
	t_tcp_pair(fds);
	assert_int_equal(fcntl(fds[1], F_SETFL, O_NONBLOCK), 0);
	struct tt_layer l;
	tt_layer_new(&l);
	setenv("PROACT_TLS_KTLS", "force", 1);
	proact_tls_ctx *ctx = pc->layer_server ? tt_server_ctx(false, NULL)
	                                       : tt_client_ctx(PROACT_TLS_NO_VERIFY, NULL);
	unsetenv("PROACT_TLS_KTLS");
	proact_tls_conn *c;
	assert_int_equal(proact_tls_conn_new(l.t, &c, fds[0], ctx, NULL), 0);
	SSL *p = peer_new(pc, fds[1]);
	tls__ktls_apply_fn kernel = tls__ktls_apply;
	tls__ktls_apply = catch_keys;
	caught = 0;
	handshake_both(&l, c, p, early);
	tls__ktls_apply = kernel;
	const char *why;
	int path = proact_tls_ktls(c, &why);
	if (caught != 1)
		fail_msg("no handoff: %d, %s", path, why);
	assert_int_equal(proact_tls_ktls(c, &why), 0);
	assert_string_equal(why, "tls ULP refused: no tls module in the kernel");

	/* sending: what the kernel would seal, the peer's OpenSSL opens */
	struct aead_key tx = key_of(&caught_tx);
	assert_int_equal(tx.seq, pc->suites ? (pc->layer_server ? 2 : 0) : 1);
	unsigned char rec[512], pt[512];
	const char *msg = "sealed as the kernel would";
	size_t n = seal_record(&tx, msg, strlen(msg), rec);
	t_write_all(fds[0], rec, n);
	peer_read(p, fds[1], "sealed as the kernel would");

	/* receiving: the peer's next record opens with the receiving keys */
	bool tls13_client = pc->suites && !pc->layer_server;
	if (!early) /* else the layer's read may have taken the early record */
		assert_int_equal(caught_has_rx, !tls13_client);
	if (caught_has_rx) {
		struct aead_key rx = key_of(&caught_rx);
		assert_int_equal(rx.seq, pc->suites ? 0 : 1);
		if (!early)
			assert_int_equal(SSL_write(p, "from the peer", 13), 13);
		n = raw_record(fds[0], rec, sizeof(rec));
		int m = open_record(&rx, rec, n, pt);
		const char *want = early ? early : "from the peer";
		assert_int_equal(m, (int)strlen(want));
		assert_memory_equal(pt, want, (size_t)m);
	} else if (early) {
		/* OpenSSL had the early record: the layer reads it itself */
		char buf[64];
		assert_int_equal(proact_tls_read(c, buf, sizeof(buf), 0, NULL), 0);
		struct proact_completion r = tt_expect(l.t, c, PROACT_TLS_OP_READ);
		assert_int_equal(r.size, strlen(early));
		assert_memory_equal(buf, early, r.size);
	}
	print_message("%s %s: tx seq %llu, rx %s\n", pc->layer_server ? "server" : "client",
	              pc->suites ? pc->suites : pc->ciphers, (unsigned long long)tx.seq,
	              caught_has_rx ? "to the kernel" : "kept");
	SSL_free(p);
	tt_free(l.t, c);
	close(fds[1]);
	tt_layer_free(&l);
	proact_tls_ctx_free(ctx);
}

/* Every cipher of @names (TLS 1.3 suites, else TLS 1.2 ciphers), the layer
   as server and as client. */
static void check_both_sides(const char *const *names, int n, bool tls13)
{
	for (int i = 0; i < 2 * n; i++) {
		struct peer_case pc = {.layer_server = i % 2 == 0};
		*(tls13 ? &pc.suites : &pc.ciphers) = names[i / 2];
		check_keys(&pc, NULL);
	}
}

static void test_keys_tls13(void **state)
{
	(void)state;
	static const char *const suites[] = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
	                                     "TLS_CHACHA20_POLY1305_SHA256"};
	check_both_sides(suites, 3, true);
}

static void test_keys_tls12(void **state)
{
	(void)state;
	static const char *const ciphers[] = {"ECDHE-ECDSA-AES128-GCM-SHA256",
	                                      "ECDHE-ECDSA-AES256-GCM-SHA384"};
	check_both_sides(ciphers, 2, false);
}

static void test_keys_read_past_handshake(void **state)
{
	(void)state;
	check_keys(&(struct peer_case){.suites = "TLS_AES_128_GCM_SHA256", .layer_server = true},
	           "sent with the Finished");
}

/* ---- after a handoff: the data path, the kernel played in user space ---------- */

/* Stands between the layer's socket and the peer's: passes the bytes on as
   they are until the handoff, then seals what the layer writes into records
   and opens the peer's records into plaintext, as the kernel would. */
struct stand_in {
	int x, y; /* the other end of the layer's socket; the end toward the peer */
	int layer_fd;
	bool on;
	struct aead_key tx, rx;
	unsigned char up[2 * MAX_RECORD], down[2 * MAX_RECORD], rec[MAX_RECORD];
	size_t up_len, down_len, rec_len;
};
static struct stand_in *kern;

static void push(int fd, unsigned char *buf, size_t *len)
{
	ssize_t n = *len ? send(fd, buf, *len, MSG_DONTWAIT | MSG_NOSIGNAL) : 0;
	if (n > 0) {
		memmove(buf, buf + n, *len - (size_t)n);
		*len -= (size_t)n;
	}
}

/* The peer's record in k->rec, when whole: opened into k->down. */
static void from_peer(struct stand_in *k)
{
	size_t want = k->rec_len < 5 ? 5 : 5 + ((size_t)k->rec[3] << 8 | k->rec[4]);
	ssize_t n = recv(k->y, k->rec + k->rec_len, want - k->rec_len, MSG_DONTWAIT);
	if (n <= 0)
		return;
	k->rec_len += (size_t)n;
	if (k->rec_len < 5 || k->rec_len < 5 + ((size_t)k->rec[3] << 8 | k->rec[4]))
		return;
	int m = open_record(&k->rx, k->rec, k->rec_len, k->down);
	assert_true(m > 0);
	k->rx.seq++;
	k->down_len = (size_t)m;
	k->rec_len = 0;
}

static void stand_in_move(struct stand_in *k)
{
	push(k->y, k->up, &k->up_len);
	push(k->x, k->down, &k->down_len);
	if (k->up_len == 0) {
		ssize_t n = recv(k->x, k->on ? k->down + MAX_RECORD : k->up,
		                 k->on ? MAX_PLAIN : sizeof(k->up), MSG_DONTWAIT);
		if (n > 0 && k->on) {
			k->up_len = seal_record(&k->tx, k->down + MAX_RECORD, (size_t)n, k->up);
			k->tx.seq++;
		} else if (n > 0) {
			k->up_len = (size_t)n;
		}
	}
	if (k->down_len == 0 && k->on) {
		from_peer(k);
	} else if (k->down_len == 0) {
		ssize_t n = recv(k->y, k->down, MAX_RECORD, MSG_DONTWAIT);
		k->down_len = n > 0 ? (size_t)n : 0;
	}
}

/* The hook: what the layer wrote before is on its way as it was; from now
   on the stand-in seals and opens. */
static int stand_in_takes(int fd, const struct tls__kinfo *tx, const struct tls__kinfo *rx)
{
	assert_int_equal(fd, kern->layer_fd);
	assert_non_null(rx);
	int queued = 1;
	for (int i = 0; i < 1000 && queued; i++) {
		assert_int_equal(ioctl(fd, SIOCOUTQ, &queued), 0);
		stand_in_move(kern);
	}
	while (kern->up_len || recv(kern->x, kern->up, 0, MSG_DONTWAIT | MSG_PEEK) > 0)
		stand_in_move(kern);
	kern->tx = key_of(tx);
	kern->rx = key_of(rx);
	kern->on = true;
	return PROACT_TLS_KTLS_TX | PROACT_TLS_KTLS_RX;
}

struct flow {
	unsigned char *out, *in;
	size_t len, sent, got;
};

static void peer_moves(SSL *p, struct flow *to_peer, struct flow *from_peer)
{
	int n;
	if (from_peer->sent < from_peer->len &&
	    (n = SSL_write(p, from_peer->out + from_peer->sent,
	                   (int)(from_peer->len - from_peer->sent))) > 0)
		from_peer->sent += (size_t)n;
	while ((n = SSL_read(p, to_peer->in + to_peer->got, (int)(to_peer->len - to_peer->got))) >
	       0)
		to_peer->got += (size_t)n;
}

static void layer_moves(struct tt_layer *l, proact_tls_conn *c, struct flow *to_layer)
{
	struct proact_completion r[4];
	int n = proact_tls_wait(l->t, r, 4, 1);
	for (int i = 0; i < n; i++) {
		assert_int_equal(r[i].error, 0);
		if (r[i].op != PROACT_TLS_OP_READ)
			continue;
		assert_true(r[i].size > 0 && to_layer->got + r[i].size <= to_layer->len);
		memcpy(to_layer->in + to_layer->got, r[i].buf, r[i].size);
		to_layer->got += r[i].size;
		if (to_layer->got < to_layer->len)
			assert_int_equal(proact_tls_read(c, NULL, 0, 0, NULL), 0);
	}
}

static void flow_init(struct flow *f, size_t len, int seed)
{
	*f = (struct flow){.out = malloc(len), .in = malloc(len), .len = len};
	assert_non_null(f->out);
	assert_non_null(f->in);
	t_fill(f->out, len, seed, 0);
}

static void test_data_path_stand_in(void **state)
{
	(void)state;
	int a[2], b[2];
	t_tcp_pair(a);
	t_tcp_pair(b);
	assert_int_equal(fcntl(a[1], F_SETFL, O_NONBLOCK), 0);
	assert_int_equal(fcntl(b[0], F_SETFL, O_NONBLOCK), 0);
	assert_int_equal(fcntl(b[1], F_SETFL, O_NONBLOCK), 0);
	kern = calloc(1, sizeof(*kern));
	assert_non_null(kern);
	*kern = (struct stand_in){.x = a[1], .y = b[0], .layer_fd = a[0]};
	struct tt_layer l;
	tt_layer_new(&l);
	setenv("PROACT_TLS_KTLS", "force", 1);
	proact_tls_ctx *ctx = tt_server_ctx(false, NULL);
	unsetenv("PROACT_TLS_KTLS");
	proact_tls_conn *c;
	assert_int_equal(proact_tls_conn_new(l.t, &c, a[0], ctx, NULL), 0);
	SSL *p = peer_new(
	    &(struct peer_case){.suites = "TLS_AES_128_GCM_SHA256", .layer_server = true}, b[1]);
	tls__ktls_apply_fn kernel = tls__ktls_apply;
	tls__ktls_apply = stand_in_takes;
	assert_int_equal(proact_tls_handshake(c, proact_deadline_in(TT_TIMEOUT_MS), NULL), 0);
	bool ldone = false, pdone = false;
	for (int round = 0; !(ldone && pdone); round++) {
		assert_true(round < 20000);
		int rc = pdone ? 1 : SSL_do_handshake(p);
		pdone = rc == 1;
		if (!pdone)
			assert_int_equal(SSL_get_error(p, rc), SSL_ERROR_WANT_READ);
		stand_in_move(kern);
		struct proact_completion r;
		if (proact_tls_wait(l.t, &r, 1, 1) == 1) {
			assert_int_equal(r.op, PROACT_TLS_OP_HANDSHAKE);
			assert_int_equal(r.error, 0);
			ldone = true;
		}
	}
	tls__ktls_apply = kernel;
	const char *why;
	assert_int_equal(proact_tls_ktls(c, &why), PROACT_TLS_KTLS_TX | PROACT_TLS_KTLS_RX);
	assert_null(why);

	/* 200 KB each way at once: the layer's plain writes and reads, records
	   made and opened by the stand-in, the peer's OpenSSL at the other end */
	struct flow down, up;
	flow_init(&down, 200000, 5);
	flow_init(&up, 200000, 6);
	assert_int_equal(proact_tls_write(c, down.out, down.len, 0, NULL), 0);
	assert_int_equal(proact_tls_read(c, NULL, 0, 0, NULL), 0);
	for (int round = 0; down.got < down.len || up.got < up.len; round++) {
		assert_true(round < 200000);
		peer_moves(p, &down, &up);
		stand_in_move(kern);
		layer_moves(&l, c, &up);
	}
	assert_memory_equal(down.in, down.out, down.len);
	assert_memory_equal(up.in, up.out, up.len);
	print_message("200 KB each way through the stand-in: %llu records sent, %llu received\n",
	              (unsigned long long)kern->tx.seq - 2, (unsigned long long)kern->rx.seq);
	SSL_free(p);
	tt_free(l.t, c);
	tt_layer_free(&l);
	proact_tls_ctx_free(ctx);
	close(a[1]);
	close(b[0]);
	close(b[1]);
	free(down.out);
	free(down.in);
	free(up.out);
	free(up.in);
	free(kern);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_probe_and_off),
	    cmocka_unit_test(test_forced_handoff),
	    cmocka_unit_test(test_keys_tls13),
	    cmocka_unit_test(test_keys_tls12),
	    cmocka_unit_test(test_keys_read_past_handshake),
	    cmocka_unit_test(test_data_path_stand_in),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	tt_certs_remove();
	return rc;
}
