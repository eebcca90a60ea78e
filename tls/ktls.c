/* SPDX-License-Identifier: MIT */
/*
 * ktls.c - handing a connection's records to the kernel (the "tls" ULP).
 *
 * With memory BIOs OpenSSL keeps its traffic keys to itself, so the layer
 * rebuilds them: TLS 1.3 from the traffic secrets the keylog callback shows
 * (HKDF-Expand-Label "key" and "iv"), TLS 1.2 from the session's master
 * secret (the PRF's key block). The record sequence numbers are counted
 * from the message callback: every record header after the epoch's start
 * (TLS 1.3: that side's Finished; TLS 1.2: its ChangeCipherSpec record), so the
 * NewSessionTickets a server sends count too. The secrets live only from
 * the handshake to the handoff, and only where kTLS is tried at all.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/kdf.h>

#include "internal.h"

#ifdef TLS__HAVE_KTLS
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>
#ifndef TCP_ULP
#define TCP_ULP 31
#endif
#ifndef SOL_TLS
#define SOL_TLS 282
#endif
#endif

enum { RX = 0, TX = 1 }; /* write_p of the message callback */

struct tls__ktls {
	unsigned char secret[2][EVP_MAX_MD_SIZE]; /* TLS 1.3 traffic secrets, [RX], [TX] */
	uint8_t secret_len[2];
	bool began13[2], began12[2]; /* the epoch began: Finished, ChangeCipherSpec */
	uint64_t seq13[2], seq12[2]; /* records since */
	bool key_update;             /* the keys changed after the handshake */
};

/* ---- the probe, once per process ------------------------------------------ */

static atomic_int probe_cache; /* 0: not yet, 1: available, 2: not */

#ifdef TLS__HAVE_KTLS
static int loopback_pair(int *a, int *b)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), rc = 0;
	*a = *b = -1;
	if (l < 0)
		return -errno;
	if (bind(l, (struct sockaddr *)&sin, len) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&sin, &len) < 0)
		rc = -errno;
	if (rc == 0 && (*a = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		rc = -errno;
	if (rc == 0 && connect(*a, (struct sockaddr *)&sin, len) < 0)
		rc = -errno;
	if (rc == 0 && (*b = accept(l, NULL, NULL)) < 0)
		rc = -errno;
	close(l);
	return rc;
}

static int probe(void)
{
	int a, b;
	int rc = loopback_pair(&a, &b);
	if (rc == 0) {
		/* ENOENT: no tls module; ENOPROTOOPT/EOPNOTSUPP: no ULP support. */
		if (setsockopt(a, IPPROTO_TCP, TCP_ULP, "tls", sizeof("tls")) == 0)
			rc = 1;
		else if (errno == ENOMEM || errno == ENOBUFS)
			rc = -errno;
	}
	if (a >= 0)
		close(a);
	if (b >= 0)
		close(b);
	return rc;
}
#else
static int probe(void)
{
	return 0;
}
#endif

int proact_tls_ktls_probe(void)
{
	int v = atomic_load_explicit(&probe_cache, memory_order_acquire);
	if (v)
		return v == 1;
	int rc = probe();
	if (rc >= 0) /* a failure to run (-EMFILE...) is asked again next time */
		atomic_store_explicit(&probe_cache, rc == 1 ? 1 : 2, memory_order_release);
	return rc;
}

/* PROACT_TLS_KTLS: "0"/"off" never, "force" without the probe (tests,
   operators), else the probe decides. Read when a context is made. */
const char *tls__ktls_mode(uint32_t flags, bool *on)
{
	const char *env = getenv("PROACT_TLS_KTLS");
	*on = false;
	if (flags & PROACT_TLS_NO_KTLS)
		return "kTLS off (PROACT_TLS_NO_KTLS)";
	if (env && (strcmp(env, "0") == 0 || strcmp(env, "off") == 0))
		return "kTLS off (PROACT_TLS_KTLS)";
#ifdef TLS__HAVE_KTLS
	if (env && strcmp(env, "force") == 0) {
		*on = true;
		return NULL;
	}
	if (proact_tls_ktls_probe() != 1)
		return "no tls ULP in this kernel";
	*on = true;
	return NULL;
#else
	/* The handoff is to Linux's tls ULP: elsewhere (Windows...) there is
	   nothing to hand records to, not even with "force". */
	return "no kernel TLS on this system (the handoff is Linux's tls ULP)";
#endif
}

/* ---- secrets and sequence numbers ------------------------------------------- */

static int unhex(const char *s, unsigned char *out, size_t cap)
{
	size_t n = 0;
	for (; s[0] && s[1] && s[0] != ' ' && n < cap; s += 2) {
		int hi = OPENSSL_hexchar2int((unsigned char)s[0]);
		int lo = OPENSSL_hexchar2int((unsigned char)s[1]);
		if (hi < 0 || lo < 0)
			return -1;
		out[n++] = (unsigned char)(hi << 4 | lo);
	}
	return (int)n;
}

void tls__ktls_begin(struct proact_tls_conn *c)
{
	c->k = calloc(1, sizeof(*c->k)); /* out of memory: no handoff, said so */
	if (!c->k)
		c->ktls_why = "no handoff state (out of memory)";
}

/* SSL_CTX_set_keylog_callback: "LABEL <client random> <secret>". */
void tls__ktls_keylog(const SSL *ssl, const char *line)
{
	struct proact_tls_conn *c = SSL_get_app_data(ssl);
	bool server = SSL_is_server(ssl);
	int dir;
	if (strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24) == 0)
		dir = server ? RX : TX;
	else if (strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24) == 0)
		dir = server ? TX : RX;
	else
		return;
	struct tls__ktls *k = c && !c->hs_done ? c->k : NULL;
	const char *hex = strchr(line + 24, ' ');
	if (!k || !hex)
		return;
	int n = unhex(hex + 1, k->secret[dir], sizeof(k->secret[dir]));
	k->secret_len[dir] = n > 0 ? (uint8_t)n : 0;
}

void tls__ktls_on_message(struct proact_tls_conn *c, int write_p, int content_type,
                          const unsigned char *m, size_t len)
{
	struct tls__ktls *k = c->k;
	int d = write_p ? TX : RX;
	if (!k)
		return;
	if (content_type == SSL3_RT_HEADER && len > 0 && m[0] == SSL3_RT_CHANGE_CIPHER_SPEC) {
		/* OpenSSL shows a received ChangeCipherSpec by its header only */
		k->began12[d] = true;
		k->seq12[d] = 0;
	} else if (content_type == SSL3_RT_HEADER) {
		k->seq13[d] += k->began13[d];
		k->seq12[d] += k->began12[d];
	} else if (content_type == SSL3_RT_HANDSHAKE && len > 0) {
		if (m[0] == SSL3_MT_FINISHED) {
			k->began13[d] = true;
			k->seq13[d] = 0;
		} else if (m[0] == SSL3_MT_KEY_UPDATE) {
			k->key_update = true;
		}
	}
}

void tls__ktls_drop(struct proact_tls_conn *c)
{
	if (c->k)
		OPENSSL_clear_free(c->k, sizeof(*c->k));
	c->k = NULL;
}

/* ---- keys ---------------------------------------------------------------- */

#ifdef TLS__HAVE_KTLS

/* HKDF-Expand-Label(secret, label, "", len) of RFC 8446 7.1. */
static int expand_label(const EVP_MD *md, const unsigned char *secret, size_t slen,
                        const char *label, unsigned char *out, size_t len)
{
	unsigned char info[2 + 1 + 6 + 16 + 1];
	size_t ll = strlen(label), n = 0;
	info[n++] = (unsigned char)(len >> 8);
	info[n++] = (unsigned char)len;
	info[n++] = (unsigned char)(6 + ll);
	memcpy(info + n, "tls13 ", 6);
	memcpy(info + n + 6, label, ll);
	n += 6 + ll;
	info[n++] = 0; /* no context */
	int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
	OSSL_PARAM p[] = {
	    OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
	    OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)EVP_MD_get0_name(md),
	                                     0),
	    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret, slen),
	    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, n),
	    OSSL_PARAM_construct_end(),
	};
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	EVP_KDF_CTX *x = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	int ok = x && EVP_KDF_derive(x, out, len, p) == 1;
	EVP_KDF_CTX_free(x);
	EVP_KDF_free(kdf);
	return ok ? 0 : -1;
}

/* The TLS 1.2 key block: client key, server key, client salt, server salt. */
static int key_block(SSL *ssl, const EVP_MD *md, unsigned char *out, size_t len)
{
	unsigned char master[SSL_MAX_MASTER_KEY_LENGTH], seed[2 * SSL3_RANDOM_SIZE];
	size_t mlen = SSL_SESSION_get_master_key(SSL_get_session(ssl), master, sizeof(master));
	SSL_get_server_random(ssl, seed, SSL3_RANDOM_SIZE);
	SSL_get_client_random(ssl, seed + SSL3_RANDOM_SIZE, SSL3_RANDOM_SIZE);
	OSSL_PARAM p[] = {
	    OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)EVP_MD_get0_name(md),
	                                     0),
	    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, master, mlen),
	    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, "key expansion", 13),
	    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, seed, sizeof(seed)),
	    OSSL_PARAM_construct_end(),
	};
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "TLS1-PRF", NULL);
	EVP_KDF_CTX *x = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	int ok = mlen > 0 && x && EVP_KDF_derive(x, out, len, p) == 1;
	EVP_KDF_CTX_free(x);
	EVP_KDF_free(kdf);
	OPENSSL_cleanse(master, sizeof(master));
	return ok ? 0 : -1;
}

static void put_be64(unsigned char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)v;
}

/* One AES-GCM crypto_info (the 128 and 256 structs differ in key size). */
#define GCM_INFO(ki, x, key, iv, nonce, seq)                                                       \
	do {                                                                                       \
		memcpy((x)->key, key, sizeof((x)->key));                                           \
		memcpy((x)->salt, iv, sizeof((x)->salt));                                          \
		memcpy((x)->iv, nonce, sizeof((x)->iv));                                           \
		put_be64((x)->rec_seq, seq);                                                       \
		(ki)->len = sizeof(*(x));                                                          \
	} while (0)

/* The crypto_info of one direction: @key, then @iv as salt and nonce. */
static void fill_info(struct tls__kinfo *ki, uint16_t version, int cipher, const unsigned char *key,
                      const unsigned char *iv, uint64_t seq)
{
	memset(ki, 0, sizeof(*ki));
	ki->u.info.version = version;
	ki->u.info.cipher_type = (uint16_t)cipher;
	if (cipher == TLS_CIPHER_CHACHA20_POLY1305) {
		struct tls12_crypto_info_chacha20_poly1305 *x = &ki->u.chacha;
		memcpy(x->key, key, sizeof(x->key));
		memcpy(x->iv, iv, sizeof(x->iv));
		put_be64(x->rec_seq, seq);
		ki->len = sizeof(*x);
		return;
	}
	/* AES-GCM: a 4-byte salt; TLS 1.3's 8 more IV bytes, TLS 1.2's
	   explicit nonce (the sequence number, as OpenSSL and the kernel
	   count it). */
	unsigned char nonce[8];
	if (version == TLS_1_3_VERSION)
		memcpy(nonce, iv + 4, 8);
	else
		put_be64(nonce, seq);
	if (cipher == TLS_CIPHER_AES_GCM_128)
		GCM_INFO(ki, &ki->u.gcm128, key, iv, nonce, seq);
	else
		GCM_INFO(ki, &ki->u.gcm256, key, iv, nonce, seq);
}

/* The kernel's cipher for OpenSSL's, with its key length; -1: none. */
static int kernel_cipher(const SSL_CIPHER *cs, size_t *klen)
{
	switch (SSL_CIPHER_get_id(cs) & 0xffff) {
	case 0x1301: /* TLS_AES_128_GCM_SHA256 */
	case 0xc02b: /* ECDHE-ECDSA-AES128-GCM-SHA256 */
	case 0xc02f: /* ECDHE-RSA-AES128-GCM-SHA256 */
		*klen = 16;
		return TLS_CIPHER_AES_GCM_128;
	case 0x1302: /* TLS_AES_256_GCM_SHA384 */
	case 0xc02c:
	case 0xc030:
		*klen = 32;
		return TLS_CIPHER_AES_GCM_256;
	case 0x1303: /* TLS_CHACHA20_POLY1305_SHA256 */
		*klen = 32;
		return TLS_CIPHER_CHACHA20_POLY1305;
	default:
		return -1;
	}
}

static int info13(struct proact_tls_conn *c, int d, int cipher, size_t klen, struct tls__kinfo *ki)
{
	const EVP_MD *md = SSL_CIPHER_get_handshake_digest(SSL_get_current_cipher(c->ssl));
	struct tls__ktls *k = c->k;
	unsigned char key[32], iv[12];
	if (!md || !k->secret_len[d] || !k->began13[d] ||
	    expand_label(md, k->secret[d], k->secret_len[d], "key", key, klen) < 0 ||
	    expand_label(md, k->secret[d], k->secret_len[d], "iv", iv, 12) < 0)
		return -1;
	fill_info(ki, TLS_1_3_VERSION, cipher, key, iv, k->seq13[d]);
	OPENSSL_cleanse(key, sizeof(key));
	return 0;
}

static int info12(struct proact_tls_conn *c, int cipher, size_t klen, struct tls__kinfo *tx,
                  struct tls__kinfo *rx)
{
	const EVP_MD *md = SSL_CIPHER_get_handshake_digest(SSL_get_current_cipher(c->ssl));
	struct tls__ktls *k = c->k;
	unsigned char kb[2 * 32 + 2 * 4];
	if (cipher == TLS_CIPHER_CHACHA20_POLY1305 || !md || !k->began12[TX] || !k->began12[RX] ||
	    key_block(c->ssl, md, kb, 2 * klen + 8) < 0)
		return -1;
	/* the client's key and salt come first */
	int mine = SSL_is_server(c->ssl) ? 1 : 0;
	const unsigned char *salt = kb + 2 * klen;
	fill_info(tx, TLS_1_2_VERSION, cipher, kb + mine * klen, salt + mine * 4, k->seq12[TX]);
	fill_info(rx, TLS_1_2_VERSION, cipher, kb + (1 - mine) * klen, salt + (1 - mine) * 4,
	          k->seq12[RX]);
	OPENSSL_cleanse(kb, sizeof(kb));
	return 0;
}

/* Whether the receiving side can go to the kernel now; NULL: yes. */
static const char *rx_refusal(const struct proact_tls_conn *c, bool tls13)
{
	if (tls13 && !SSL_is_server(c->ssl))
		return "TLS 1.3 client: the server's tickets and key updates come later";
	if (c->in_len || c->reading || SSL_has_pending(c->ssl))
		return "ciphertext was read past the handshake";
	return NULL;
}

int tls__ktls_prepare(struct proact_tls_conn *c, struct tls__kinfo *tx, struct tls__kinfo *rx,
                      const char **rx_why)
{
	size_t klen = 0;
	int version = SSL_version(c->ssl);
	int cipher = kernel_cipher(SSL_get_current_cipher(c->ssl), &klen);
	bool tls13 = version == TLS1_3_VERSION;
	*rx_why = NULL;
	if (!c->k)
		return -ENOMEM;
	if (cipher < 0 || (version != TLS1_2_VERSION && !tls13))
		return -EPROTONOSUPPORT;
	if (c->k->key_update)
		return -ESTALE;
	int rc = tls13 ? info13(c, TX, cipher, klen, tx) : info12(c, cipher, klen, tx, rx);
	if (rc == 0 && tls13 && !(*rx_why = rx_refusal(c, true)))
		rc = info13(c, RX, cipher, klen, rx);
	else if (rc == 0 && !tls13)
		*rx_why = rx_refusal(c, false);
	return rc < 0 ? -EINVAL : 0;
}

/* The kernel: the ULP, then each direction; the directions it took. */
static int apply_kernel(proact_socket fd, const struct tls__kinfo *tx, const struct tls__kinfo *rx)
{
	if (setsockopt(fd, IPPROTO_TCP, TCP_ULP, "tls", sizeof("tls")) < 0)
		return -errno;
	/* Without keys the ULP passes bytes through as before. */
	if (setsockopt(fd, SOL_TLS, TLS_TX, &tx->u, tx->len) < 0)
		return -errno;
	if (rx && setsockopt(fd, SOL_TLS, TLS_RX, &rx->u, rx->len) < 0)
		return PROACT_TLS_KTLS_TX;
	return PROACT_TLS_KTLS_TX | (rx ? PROACT_TLS_KTLS_RX : 0);
}

#define RECORD_ALERT     21
#define RECORD_HANDSHAKE 22
#ifndef TLS_SET_RECORD_TYPE
#define TLS_SET_RECORD_TYPE 1
#define TLS_GET_RECORD_TYPE 2
#endif

/* A message of @len bytes at @buf with room for one byte of SOL_TLS control. */
struct record_msg {
	struct msghdr msg;
	struct iovec iov;
	union {
		struct cmsghdr h;
		char space[CMSG_SPACE(1)];
	} cm;
};

static void record_msg(struct record_msg *m, void *buf, size_t len)
{
	m->iov = (struct iovec){buf, len};
	m->msg = (struct msghdr){.msg_iov = &m->iov,
	                         .msg_iovlen = 1,
	                         .msg_control = m->cm.space,
	                         .msg_controllen = sizeof(m->cm.space)};
}

int tls__ktls_close_notify(proact_socket fd)
{
	unsigned char alert[2] = {1, 0}; /* warning, close_notify */
	struct record_msg m;
	record_msg(&m, alert, sizeof(alert));
	struct cmsghdr *h = CMSG_FIRSTHDR(&m.msg);
	h->cmsg_level = SOL_TLS;
	h->cmsg_type = TLS_SET_RECORD_TYPE;
	h->cmsg_len = CMSG_LEN(1);
	*CMSG_DATA(h) = RECORD_ALERT;
	ssize_t n = sendmsg(fd, &m.msg, MSG_DONTWAIT | MSG_NOSIGNAL);
	return n == (ssize_t)sizeof(alert) ? 0 : n < 0 ? errno : EIO;
}

int tls__ktls_control(proact_socket fd, bool *eof, const char **why)
{
	unsigned char body[2];
	struct record_msg m;
	record_msg(&m, body, sizeof(body));
	*eof = false;
	*why = "a bad record (the kernel's check)";
	ssize_t n = recvmsg(fd, &m.msg, MSG_DONTWAIT);
	if (n < 0)
		return errno == EAGAIN ? EPROTO : errno;
	struct cmsghdr *h = CMSG_FIRSTHDR(&m.msg);
	int type = h && h->cmsg_level == SOL_TLS && h->cmsg_type == TLS_GET_RECORD_TYPE
	               ? *CMSG_DATA(h)
	               : 0;
	if (type == RECORD_ALERT && n == 2 && body[1] == 0) {
		*eof = true;
		return 0;
	}
	*why = type == RECORD_ALERT       ? "an alert from the peer"
	       : type == RECORD_HANDSHAKE ? "a handshake message after the kTLS handoff (KeyUpdate)"
	                                  : *why;
	return EPROTO;
}
#else
int tls__ktls_prepare(struct proact_tls_conn *c, struct tls__kinfo *tx, struct tls__kinfo *rx,
                      const char **rx_why)
{
	(void)c;
	(void)tx;
	(void)rx;
	*rx_why = NULL;
	return -EPROTONOSUPPORT;
}

static int apply_kernel(proact_socket fd, const struct tls__kinfo *tx, const struct tls__kinfo *rx)
{
	(void)fd;
	(void)tx;
	(void)rx;
	return -ENOPROTOOPT;
}

int tls__ktls_close_notify(proact_socket fd)
{
	(void)fd;
	return EPROTONOSUPPORT;
}

int tls__ktls_control(proact_socket fd, bool *eof, const char **why)
{
	(void)fd;
	*eof = false;
	*why = "kTLS unsupported";
	return EPROTO;
}
#endif

tls__ktls_apply_fn tls__ktls_apply = apply_kernel;

/* ---- the handoff --------------------------------------------------------- */

static const char *refusal_text(int err)
{
	switch (err) {
	case -EPROTONOSUPPORT:
		return "cipher or version not offered by kTLS";
#ifdef TLS__HAVE_KTLS /* Windows has no ESTALE (nor this refusal) */
	case -ESTALE:
		return "the keys changed after the handshake";
#endif
	case -ENOMEM:
		return "no handoff state (out of memory)";
	case -ENOENT:
		return "tls ULP refused: no tls module in the kernel";
	default:
		return "the kernel refused the keys";
	}
}

bool tls__ktls_ready(const struct proact_tls_conn *c)
{
	return !c->fly && (!c->out || c->out->len == 0);
}

void tls__ktls_handoff(struct proact_tls_conn *c)
{
	struct tls__kinfo tx, rx;
	const char *rx_why;
	c->kpending = false;
	int rc = tls__ktls_prepare(c, &tx, &rx, &rx_why);
	if (rc == 0)
		rc = tls__ktls_apply(c->fd, &tx, rx_why ? NULL : &rx);
	OPENSSL_cleanse(&tx, sizeof(tx));
	OPENSSL_cleanse(&rx, sizeof(rx));
	tls__ktls_drop(c);
	if (rc < 0) {
		c->ktls_why = refusal_text(rc);
		return;
	}
	c->ktls = (uint8_t)rc;
	c->ktls_why = (rc & PROACT_TLS_KTLS_RX) ? NULL : rx_why ? rx_why : "TLS_RX refused";
	/* OpenSSL holds no record buffers from here on for what the kernel does */
	SSL_free_buffers(c->ssl);
}
