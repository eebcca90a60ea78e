/* SPDX-License-Identifier: MIT */
/*
 * ctx.c - TLS contexts (an SSL_CTX and the ALPN list), and what OpenSSL's
 * callbacks tell about a connection.
 */
#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define KNOWN_FLAGS                                                                                \
	(PROACT_TLS_SERVER | PROACT_TLS_NO_VERIFY | PROACT_TLS_VERIFY_CLIENT | PROACT_TLS_TLS13 |  \
	 PROACT_TLS_NO_KTLS)

/* "h2,http/1.1" to ALPN's wire form: each name after its length byte. */
static int alpn_wire(const char *list, unsigned char *out, uint8_t *out_len)
{
	size_t n = 0;
	const char *p = list;
	while (*p) {
		size_t k = strcspn(p, ",");
		if (k == 0 || k > 255 || n + 1 + k > 255)
			return -EINVAL;
		out[n++] = (unsigned char)k;
		memcpy(out + n, p, k);
		n += k;
		p += k;
		if (*p == ',')
			p++;
	}
	if (n == 0)
		return -EINVAL;
	*out_len = (uint8_t)n;
	return 0;
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
	(void)ssl;
	const struct proact_tls_ctx *x = arg;
	unsigned char *sel = NULL;
	if (SSL_select_next_proto(&sel, outlen, x->alpn, x->alpn_len, in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK; /* no common protocol: go on without one */
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

static int readable(const char *path)
{
	if (path && access(path, R_OK) != 0)
		return errno == EACCES ? -EACCES : -ENOENT;
	return 0;
}

/* The leaf, then any chain certificates, from PEM text. */
static int use_cert_pem(SSL_CTX *s, const char *pem)
{
	BIO *b = BIO_new_mem_buf(pem, -1);
	X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	int ok = x && SSL_CTX_use_certificate(s, x) == 1;
	X509_free(x);
	while (ok) {
		X509 *chain = PEM_read_bio_X509(b, NULL, NULL, NULL);
		if (!chain)
			break;
		if (SSL_CTX_add0_chain_cert(s, chain) != 1) {
			X509_free(chain);
			ok = 0;
		}
	}
	BIO_free(b);
	return ok ? 0 : -EINVAL;
}

static int use_key_pem(SSL_CTX *s, const char *pem)
{
	BIO *b = BIO_new_mem_buf(pem, -1);
	EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
	int ok = k && SSL_CTX_use_PrivateKey(s, k) == 1;
	EVP_PKEY_free(k);
	BIO_free(b);
	return ok ? 0 : -EINVAL;
}

static int use_identity(SSL_CTX *s, const struct proact_tls_config *cfg)
{
	bool have_cert = cfg->cert_file || cfg->cert_pem, have_key = cfg->key_file || cfg->key_pem;
	if ((cfg->cert_file && cfg->cert_pem) || (cfg->key_file && cfg->key_pem) ||
	    have_cert != have_key)
		return -EINVAL;
	if (!have_cert)
		return (cfg->flags & PROACT_TLS_SERVER) ? -EINVAL : 0;
	int rc = readable(cfg->cert_file);
	if (rc == 0)
		rc = readable(cfg->key_file);
	if (rc < 0)
		return rc;
	if (cfg->cert_file)
		rc = SSL_CTX_use_certificate_chain_file(s, cfg->cert_file) == 1 ? 0 : -EINVAL;
	else
		rc = use_cert_pem(s, cfg->cert_pem);
	if (rc == 0 && cfg->key_file)
		rc = SSL_CTX_use_PrivateKey_file(s, cfg->key_file, SSL_FILETYPE_PEM) == 1 ? 0
		                                                                          : -EINVAL;
	else if (rc == 0)
		rc = use_key_pem(s, cfg->key_pem);
	if (rc == 0 && SSL_CTX_check_private_key(s) != 1)
		rc = -EINVAL;
	return rc;
}

static int use_verify(SSL_CTX *s, const struct proact_tls_config *cfg)
{
	bool server = cfg->flags & PROACT_TLS_SERVER;
	int rc = readable(cfg->ca_file);
	if (rc < 0)
		return rc;
	if (cfg->ca_file && SSL_CTX_load_verify_locations(s, cfg->ca_file, NULL) != 1)
		return -EINVAL;
	if (!cfg->ca_file && !server)
		SSL_CTX_set_default_verify_paths(s);
	if (server && (cfg->flags & PROACT_TLS_VERIFY_CLIENT))
		SSL_CTX_set_verify(s, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	else if (!server && !(cfg->flags & PROACT_TLS_NO_VERIFY))
		SSL_CTX_set_verify(s, SSL_VERIFY_PEER, NULL);
	else
		SSL_CTX_set_verify(s, SSL_VERIFY_NONE, NULL);
	return 0;
}

static int configure(struct proact_tls_ctx *x, const struct proact_tls_config *cfg)
{
	SSL_CTX *s = x->ssl;
	bool server = cfg->flags & PROACT_TLS_SERVER;
	/* Idle connections hold no record buffer; records are made whole. */
	SSL_CTX_set_mode(s, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_options(s, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_min_proto_version(s, (cfg->flags & PROACT_TLS_TLS13) ? TLS1_3_VERSION
	                                                                 : TLS1_2_VERSION);
	if (server) /* no per-session state kept by the server: tickets carry it */
		SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
	int rc = use_identity(s, cfg);
	if (rc == 0)
		rc = use_verify(s, cfg);
	if (rc == 0 && cfg->alpn)
		rc = alpn_wire(cfg->alpn, x->alpn, &x->alpn_len);
	if (rc == 0 && cfg->alpn && !server && SSL_CTX_set_alpn_protos(s, x->alpn, x->alpn_len))
		rc = -ENOMEM;
	if (rc == 0 && cfg->alpn && server)
		SSL_CTX_set_alpn_select_cb(s, alpn_select, x);
	/* The traffic secrets are seen only where a handoff may follow. */
	x->ktls_why = tls__ktls_mode(cfg->flags, &x->ktls);
	if (x->ktls)
		SSL_CTX_set_keylog_callback(s, tls__ktls_keylog);
	return rc;
}

int proact_tls_ctx_new(proact_tls_ctx **out, const struct proact_tls_config *cfg)
{
	if (!out || !cfg || (cfg->flags & ~KNOWN_FLAGS))
		return -EINVAL;
	for (size_t i = 0; i < sizeof(cfg->reserved) / sizeof(cfg->reserved[0]); i++)
		if (cfg->reserved[i])
			return -EINVAL;
	struct proact_tls_ctx *x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	x->flags = cfg->flags;
	x->ssl = SSL_CTX_new((cfg->flags & PROACT_TLS_SERVER) ? TLS_server_method()
	                                                      : TLS_client_method());
	int rc = x->ssl ? configure(x, cfg) : -ENOMEM;
	ERR_clear_error();
	if (rc < 0) {
		proact_tls_ctx_free(x);
		return rc;
	}
	*out = x;
	return 0;
}

void proact_tls_ctx_free(proact_tls_ctx *ctx)
{
	if (!ctx)
		return;
	SSL_CTX_free(ctx->ssl);
	free(ctx);
}

/* TLS 1.2 and earlier: a ClientHello (server) or HelloRequest (client) after
   the handshake asks for a renegotiation, which the layer refuses by failing
   the connection. (TLS 1.3's post-handshake messages are other types.) The
   kTLS handoff counts records here. */
static void on_message(int write_p, int version, int content_type, const void *buf, size_t len,
                       SSL *ssl, void *arg)
{
	(void)version;
	(void)ssl;
	struct proact_tls_conn *c = arg;
	const unsigned char *m = buf;
	tls__ktls_on_message(c, write_p, content_type, m, len);
	if (!write_p && c->hs_done && content_type == SSL3_RT_HANDSHAKE && len > 0 &&
	    (m[0] == SSL3_MT_CLIENT_HELLO || m[0] == SSL3_MT_HELLO_REQUEST))
		c->reneg = true;
}

void tls__info_setup(SSL *ssl, struct proact_tls_conn *c)
{
	SSL_set_msg_callback(ssl, on_message);
	SSL_set_msg_callback_arg(ssl, c);
	SSL_set_app_data(ssl, c); /* for the keylog callback */
}
