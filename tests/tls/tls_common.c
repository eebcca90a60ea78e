/* SPDX-License-Identifier: MIT */
#include "tls_common.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#include <sys/wait.h>
#endif
#include <unistd.h>

static struct tt_certs certs;

/* ---- certificates ---------------------------------------------------------- */

static void add_ext(X509 *x, int nid, const char *value)
{
	X509V3_CTX v;
	X509V3_set_ctx_nodb(&v);
	X509V3_set_ctx(&v, x, x, NULL, NULL, 0);
	X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v, nid, value);
	assert_non_null(e);
	assert_int_equal(X509_add_ext(x, e, -1), 1);
	X509_EXTENSION_free(e);
}

/* A self-signed P-256 certificate for @cn with @san, written as PEM files. */
static void make_identity(const char *cn, const char *san, const char *cert, const char *key)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	assert_non_null(k);
	assert_non_null(x);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), (long)getpid());
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 2L * 24 * 3600);
	X509_set_pubkey(x, k);
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, name);
	add_ext(x, NID_subject_alt_name, san);
	add_ext(x, NID_basic_constraints, "critical,CA:TRUE");
	assert_true(X509_sign(x, k, EVP_sha256()) > 0);
	FILE *f = fopen(cert, "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_X509(f, x), 1);
	fclose(f);
	f = fopen(key, "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
	fclose(f);
	X509_free(x);
	EVP_PKEY_free(k);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	char *s = calloc(1, 16384);
	assert_non_null(s);
	fread(s, 1, 16383, f);
	fclose(f);
	return s;
}

const struct tt_certs *tt_certs(void)
{
	if (certs.dir[0])
		return &certs;
#ifdef _WIN32
	/* No mkdtemp: a folder named for the process, made where none is. */
	char tmp[MAX_PATH];
	assert_true(GetTempPathA(sizeof(tmp), tmp) > 0);
	snprintf(certs.dir, sizeof(certs.dir), "%sproact-tls-%lu", tmp, GetCurrentProcessId());
	assert_true(CreateDirectoryA(certs.dir, NULL));
#else
	snprintf(certs.dir, sizeof(certs.dir), "/tmp/proact-tls-XXXXXX");
	assert_non_null(mkdtemp(certs.dir));
#endif
	snprintf(certs.cert, sizeof(certs.cert), "%s/cert.pem", certs.dir);
	snprintf(certs.key, sizeof(certs.key), "%s/key.pem", certs.dir);
	snprintf(certs.other_cert, sizeof(certs.other_cert), "%s/other.pem", certs.dir);
	snprintf(certs.other_key, sizeof(certs.other_key), "%s/other-key.pem", certs.dir);
	make_identity("localhost", "DNS:localhost,IP:127.0.0.1", certs.cert, certs.key);
	make_identity("other.example", "DNS:other.example", certs.other_cert, certs.other_key);
	certs.cert_pem = slurp(certs.cert);
	certs.key_pem = slurp(certs.key);
	return &certs;
}

void tt_certs_remove(void)
{
	if (!certs.dir[0])
		return;
	unlink(certs.cert);
	unlink(certs.key);
	unlink(certs.other_cert);
	unlink(certs.other_key);
	rmdir(certs.dir);
	free(certs.cert_pem);
	free(certs.key_pem);
	memset(&certs, 0, sizeof(certs));
}

proact_tls_ctx *tt_server_ctx(bool other, const char *alpn)
{
	const struct tt_certs *c = tt_certs();
	struct proact_tls_config cfg = {.flags = PROACT_TLS_SERVER,
	                                .cert_file = other ? c->other_cert : c->cert,
	                                .key_file = other ? c->other_key : c->key,
	                                .alpn = alpn};
	proact_tls_ctx *x = NULL;
	assert_int_equal(proact_tls_ctx_new(&x, &cfg), 0);
	return x;
}

proact_tls_ctx *tt_client_ctx(uint32_t flags, const char *alpn)
{
	struct proact_tls_config cfg = {.flags = flags, .ca_file = tt_certs()->cert, .alpn = alpn};
	proact_tls_ctx *x = NULL;
	assert_int_equal(proact_tls_ctx_new(&x, &cfg), 0);
	return x;
}

/* ---- layers and connections ------------------------------------------------- */

/* Completions tt_expect() took while it waited for another, which a later
   tt_expect() returns: two connections' completions come in either order
   (under Wine a read may come before the write that sent its bytes). Not
   pool reads, whose buffers go back at the next wait. Per layer. */
static struct proact_completion held[16];
static int nheld;

void tt_layer_new_with(struct tt_layer *l, const struct proact_tls_options *o)
{
	nheld = 0;
	l->w = t_watcher(NULL);
	assert_int_equal(proact_tls_new(&l->t, l->w, o), 0);
}

void tt_layer_new(struct tt_layer *l)
{
	tt_layer_new_with(l, NULL);
}

void tt_layer_free(struct tt_layer *l)
{
	int unclaimed = nheld;
	nheld = 0;
	assert_int_equal(unclaimed, 0);
	proact_watcher_shutdown(l->w);
	proact_tls_destroy(l->t);
	proact_watcher_destroy(l->w);
}

int tt_collect(proact_tls *t, struct proact_completion *out, int want, int timeout_ms)
{
	uint64_t end = proact_deadline_in((uint64_t)timeout_ms);
	int got = 0;
	while (got < want) {
		uint64_t now = proact_now();
		if (now >= end)
			break;
		int n =
		    proact_tls_wait(t, out + got, want - got, (int)((end - now) / 1000000u) + 1);
		if (n < 0)
			fail_msg("proact_tls_wait: %s", proact_strerror(n));
		got += n;
	}
	return got;
}

struct proact_completion tt_expect(proact_tls *t, proact_tls_conn *conn, int op)
{
	struct proact_completion c;
	for (int i = 0; i < nheld; i++) {
		if (held[i].fd == proact_tls_fd(conn) && held[i].op == op) {
			c = held[i];
			memmove(held + i, held + i + 1, (size_t)(nheld - i - 1) * sizeof(*held));
			nheld--;
			return c;
		}
	}
	uint64_t end = proact_deadline_in(TT_TIMEOUT_MS);
	while (proact_now() < end) {
		if (tt_collect(t, &c, 1, 200) != 1)
			continue;
		if (c.fd == proact_tls_fd(conn) && c.op == op)
			return c;
		if (!(c.flags & PROACT_COMP_POOL) && nheld < (int)(sizeof(held) / sizeof(*held))) {
			held[nheld++] = c;
			continue;
		}
		fail_msg("fd %d op %d error %d (%s): not the awaited fd %d op %d", (int)c.fd, c.op,
		         c.error, proact_strerror(c.error), (int)proact_tls_fd(conn), op);
	}
	fail_msg("no completion of op %d on fd %d", op, (int)proact_tls_fd(conn));
	return c;
}

void tt_pair(struct tt_layer *l, proact_tls_ctx *sctx, proact_tls_ctx *cctx,
             proact_tls_conn **server, proact_tls_conn **client)
{
	int fds[2];
	t_tcp_pair(fds);
	assert_int_equal(proact_tls_conn_new(l->t, server, fds[0], sctx, NULL), 0);
	assert_int_equal(proact_tls_conn_new(l->t, client, fds[1], cctx, "localhost"), 0);
	assert_int_equal(proact_tls_handshake(*server, 0, NULL), 0);
	assert_int_equal(proact_tls_handshake(*client, 0, NULL), 0);
	struct proact_completion c[2];
	assert_int_equal(tt_collect(l->t, c, 2, TT_TIMEOUT_MS), 2);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(c[i].op, PROACT_TLS_OP_HANDSHAKE);
		if (c[i].error)
			fail_msg("handshake: %s", proact_strerror(c[i].error));
	}
}

void tt_free(proact_tls *t, proact_tls_conn *conn)
{
	proact_socket fd = proact_tls_fd(conn);
	assert_int_equal(proact_tls_free(conn, NULL), 0);
	struct proact_completion c;
	uint64_t end = proact_deadline_in(TT_TIMEOUT_MS);
	while (proact_now() < end) {
		if (tt_collect(t, &c, 1, 200) == 1 && c.fd == fd && c.op == PROACT_TLS_OP_FREE)
			return;
	}
	fail_msg("no FREE for fd %d", (int)fd);
}

/* ---- child processes ---------------------------------------------------------- */

int tt_accept(int lfd)
{
	for (int i = 0; i < 1000; i++) {
		int fd = t_accept(lfd);
		if (fd >= 0)
			return fd;
		if (errno != EINTR)
			fail_msg("accept: %s", strerror(errno));
	}
	fail_msg("accept: interrupted 1000 times");
	return -1;
}

#ifndef _WIN32
bool tt_have(const char *tool)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", tool);
	return system(cmd) == 0;
}

pid_t tt_spawn(char *const argv[], int *in, int *out)
{
	int pin[2], pout[2];
	assert_int_equal(pipe(pin), 0);
	assert_int_equal(pipe(pout), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(pin[0], 0);
		dup2(pout[1], 1);
		if (!getenv("TT_VERBOSE")) {
			int null = open("/dev/null", O_WRONLY);
			dup2(null, 2);
		}
		for (int fd = 3; fd < 1024; fd++)
			close(fd);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(pin[0]);
	close(pout[1]);
	fcntl(pout[0], F_SETFL, fcntl(pout[0], F_GETFL) | O_NONBLOCK);
	fcntl(pin[1], F_SETFD, FD_CLOEXEC);
	fcntl(pout[0], F_SETFD, FD_CLOEXEC);
	*in = pin[1];
	*out = pout[0];
	return pid;
}

int tt_reap(pid_t pid, int sec)
{
	int st;
	uint64_t end = proact_deadline_in((uint64_t)sec * 1000);
	while (proact_now() < end) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return -1;
}

size_t tt_read_pipe(int fd, char *buf, size_t len, int ms)
{
	size_t got = 0;
	uint64_t end = proact_deadline_in((uint64_t)ms);
	while (got < len && proact_now() < end) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 50) <= 0)
			continue;
		ssize_t k = read(fd, buf + got, len - got);
		if (k == 0)
			break;
		if (k > 0)
			got += (size_t)k;
		else if (errno != EAGAIN && errno != EINTR)
			break;
	}
	return got;
}

bool tt_wait_line(int fd, const char *prefix, char *rest, size_t restlen, int ms)
{
	char line[512];
	size_t n = 0;
	uint64_t end = proact_deadline_in((uint64_t)ms);
	while (proact_now() < end) {
		char ch;
		if (tt_read_pipe(fd, &ch, 1, 100) != 1)
			continue;
		if (ch != '\n') {
			if (n < sizeof(line) - 1)
				line[n++] = ch;
			continue;
		}
		line[n] = 0;
		n = 0;
		size_t p = strlen(prefix);
		if (strncmp(line, prefix, p) == 0) {
			snprintf(rest, restlen, "%s", line + p);
			return true;
		}
	}
	return false;
}
#endif
