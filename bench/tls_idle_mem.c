/* SPDX-License-Identifier: MIT */
/*
 * tls_idle_mem - what an idle TLS connection's memory is made of.
 *
 *   tls_idle_mem N CLIENT
 *
 * A TLS server on proact's layer (TLS 1.3, a P-256 certificate made here)
 * that starts CLIENT (bench/tls_idle) as its client, takes N connections,
 * completes each handshake and leaves a NULL-buffer read pending on it. It
 * counts every live heap block by where it was allocated: OpenSSL's by
 * file and line (CRYPTO_set_mem_functions), everything else by caller
 * (malloc interposed), and prints, per connection, the difference between
 * N/5 and N idle connections (so one-time costs drop out): the bytes the
 * blocks asked for, with the allocator's share (usable size and header), and
 * the heap in use and free between blocks (mallinfo2).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proact.h"
#include "proact_tls.h"

/* ---- the tally: live blocks by site ------------------------------------- */

#define SLOTS (1u << 22) /* live blocks, open addressing */
#define SITES 8192

struct site {
	const char *file; /* OpenSSL's, or NULL: a caller address */
	int line;
	void *caller;
	long bytes, blocks, real; /* live: asked for, count, usable + header */
	long b0, n0, r0;          /* at the first snapshot */
};

struct slot {
	void *p;
	size_t size;
	int site;
};

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

static struct slot *slots;
static struct site sites[SITES];
static int nsites;
static int busy; /* the tally's own work: not counted */

static int site_of(const char *file, int line, void *caller)
{
	for (int i = 0; i < nsites; i++)
		if (sites[i].file == file && sites[i].line == line && sites[i].caller == caller)
			return i;
	if (nsites == SITES)
		return SITES - 1;
	sites[nsites] = (struct site){.file = file, .line = line, .caller = caller};
	return nsites++;
}

static size_t slot_of(const void *p)
{
	return ((uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull >> 42 & (SLOTS - 1);
}

static void add(void *p, size_t size, int site)
{
	if (!p || !slots)
		return;
	size_t i = slot_of(p);
	while (slots[i].p)
		i = (i + 1) & (SLOTS - 1);
	slots[i] = (struct slot){p, size, site};
	sites[site].bytes += (long)size;
	sites[site].blocks++;
	sites[site].real += (long)(malloc_usable_size(p) + sizeof(size_t));
}

/* Removes @p; backward-shift deletion keeps the probe chains whole. */
static void del(void *p)
{
	if (!p || !slots)
		return;
	size_t i = slot_of(p);
	while (slots[i].p && slots[i].p != p)
		i = (i + 1) & (SLOTS - 1);
	if (!slots[i].p)
		return; /* from before the tally */
	struct site *s = &sites[slots[i].site];
	s->bytes -= (long)slots[i].size;
	s->blocks--;
	s->real -= (long)(malloc_usable_size(p) + sizeof(size_t));
	slots[i].p = NULL;
	for (size_t j = (i + 1) & (SLOTS - 1); slots[j].p; j = (j + 1) & (SLOTS - 1)) {
		size_t h = slot_of(slots[j].p);
		if ((j > i && (h <= i || h > j)) || (j < i && h <= i && h > j)) {
			slots[i] = slots[j];
			slots[j].p = NULL;
			i = j;
		}
	}
}

#define TALLY(expr, old, size, file, line, caller)                                                 \
	do {                                                                                       \
		if (busy)                                                                          \
			return expr;                                                               \
		busy = 1;                                                                          \
		del(old);                                                                          \
		void *p_ = expr;                                                                   \
		add(p_, size, site_of(file, line, caller));                                        \
		busy = 0;                                                                          \
		return p_;                                                                         \
	} while (0)

void *malloc(size_t n)
{
	TALLY(__libc_malloc(n), NULL, n, NULL, 0, __builtin_return_address(0));
}

void *calloc(size_t a, size_t b)
{
	TALLY(__libc_calloc(a, b), NULL, a * b, NULL, 0, __builtin_return_address(0));
}

void *realloc(void *old, size_t n)
{
	TALLY(__libc_realloc(old, n), old, n, NULL, 0, __builtin_return_address(0));
}

void free(void *p)
{
	if (!busy) {
		busy = 1;
		del(p);
		busy = 0;
	}
	__libc_free(p);
}

static void *ossl_malloc(size_t n, const char *file, int line)
{
	TALLY(__libc_malloc(n), NULL, n, file, line, NULL);
}

static void *ossl_realloc(void *old, size_t n, const char *file, int line)
{
	TALLY(__libc_realloc(old, n), old, n, file, line, NULL);
}

static void ossl_free(void *p, const char *file, int line)
{
	(void)file;
	(void)line;
	free(p);
}

/* ---- the report ------------------------------------------------------------ */

static void snapshot(void)
{
	for (int i = 0; i < nsites; i++) {
		sites[i].b0 = sites[i].bytes;
		sites[i].n0 = sites[i].blocks;
		sites[i].r0 = sites[i].real;
	}
}

static const char *where(const struct site *s, char *buf, size_t len)
{
	Dl_info d;
	if (s->file) {
		const char *f = strrchr(s->file, '/');
		snprintf(buf, len, "%s:%d", f ? f + 1 : s->file, s->line);
	} else if (dladdr(s->caller, &d) && d.dli_sname) {
		snprintf(buf, len, "%s()", d.dli_sname);
	} else {
		snprintf(buf, len, "%p", s->caller);
	}
	return buf;
}

static int by_bytes(const void *a, const void *b)
{
	const struct site *x = a, *y = b;
	long dx = x->real - x->r0, dy = y->real - y->r0;
	return dx < dy ? 1 : dx > dy ? -1 : 0;
}

static void report(int first, int n, const struct mallinfo2 *m0, const struct mallinfo2 *m1)
{
	long bytes = 0, blocks = 0, real = 0;
	double m = n - first;
	busy = 1;
	qsort(sites, (size_t)nsites, sizeof(sites[0]), by_bytes);
	printf("per connection (the difference between %d and %d idle connections):\n", first, n);
	printf("%8s %8s %7s  %s\n", "asked B", "real B", "blocks", "allocated at");
	for (int i = 0; i < nsites; i++) {
		struct site *s = &sites[i];
		double b = (double)(s->bytes - s->b0) / m;
		double k = (double)(s->blocks - s->n0) / m;
		double r = (double)(s->real - s->r0) / m;
		bytes += s->bytes - s->b0;
		blocks += s->blocks - s->n0;
		real += s->real - s->r0;
		char w[160];
		if (r >= 8)
			printf("%8.0f %8.0f %7.2f  %s\n", b, r, k, where(s, w, sizeof(w)));
	}
	printf("%8.0f %8.0f %7.2f  all live blocks\n", bytes / m, real / m, blocks / m);
	/* RSS is no measure here: the tally's own table grows with the blocks */
	printf("heap (mallinfo2): %.0f B in use, %.0f B free between blocks\n",
	       (double)((long)m1->uordblks - (long)m0->uordblks) / m,
	       (double)((long)m1->fordblks - (long)m0->fordblks) / m);
	busy = 0;
}

/* ---- the server ----------------------------------------------------------- */

static int listener(int *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&a, len) < 0 || listen(l, 4096) < 0 ||
	    getsockname(l, (struct sockaddr *)&a, &len) < 0)
		return -1;
	*port = ntohs(a.sin_port);
	return l;
}

static proact_tls_ctx *server_ctx(void)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	char *cert = NULL, *key = NULL;
	size_t len;
	FILE *cf = open_memstream(&cert, &len), *kf;
	X509_set_version(x, 2);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 24 * 3600);
	X509_set_pubkey(x, k);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
	                           (const unsigned char *)"localhost", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	X509_sign(x, k, EVP_sha256());
	PEM_write_X509(cf, x);
	fclose(cf);
	kf = open_memstream(&key, &len);
	PEM_write_PrivateKey(kf, k, NULL, NULL, 0, NULL, NULL);
	fclose(kf);
	struct proact_tls_config cfg = {
	    .flags = PROACT_TLS_SERVER | PROACT_TLS_TLS13, .cert_pem = cert, .key_pem = key};
	proact_tls_ctx *ctx = NULL;
	if (proact_tls_ctx_new(&ctx, &cfg) < 0)
		ctx = NULL;
	X509_free(x);
	EVP_PKEY_free(k);
	free(cert);
	free(key);
	return ctx;
}

static pid_t client(const char *path, int port, int n)
{
	char p[16], c[16];
	snprintf(p, sizeof(p), "%d", port);
	snprintf(c, sizeof(c), "%d", n);
	pid_t pid = fork();
	if (pid == 0) {
		execl(path, path, "--port", p, "--conns", c, "--hold-seconds", "60", (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* Accepts what is there (@l >= 0), then one wait: a read for every
   handshake done. */
static int step(proact_tls *t, proact_tls_ctx *ctx, int l, int *done)
{
	struct proact_completion c[256];
	int fd;
	while (l >= 0 && (fd = accept4(l, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
		proact_tls_conn *conn;
		int rc = proact_tls_conn_new(t, &conn, fd, ctx, NULL);
		if (rc == 0)
			rc = proact_tls_handshake(conn, 0, conn);
		if (rc < 0) {
			fprintf(stderr, "tls_idle_mem: connection: %s\n", proact_strerror(-rc));
			return -1;
		}
	}
	int n = proact_tls_wait(t, c, 256, 5);
	for (int i = 0; i < n; i++) {
		if (c[i].op != PROACT_TLS_OP_HANDSHAKE)
			continue;
		if (c[i].error) {
			fprintf(stderr, "tls_idle_mem: handshake: %s\n",
			        proact_tls_error(c[i].ctx));
			return -1;
		}
		if (proact_tls_read(c[i].ctx, NULL, 0, 0, c[i].ctx) < 0)
			return -1;
		++*done;
	}
	return 0;
}

/* Serves until @want handshakes are done, then lets the handshakes under
   way finish, accepting no more. */
static int serve(proact_tls *t, proact_tls_ctx *ctx, int l, int *done, int want)
{
	uint64_t end = proact_deadline_in(120000);
	while (*done < want && proact_now() < end)
		if (step(t, ctx, l, done) < 0)
			return -1;
	for (int i = 0; i < 50; i++)
		if (step(t, ctx, -1, done) < 0)
			return -1;
	return *done >= want ? 0 : -1;
}

int main(int argc, char **argv)
{
	int n = 0, port, done = 0, first;
	const char *path = NULL;
	slots = __libc_calloc(SLOTS, sizeof(*slots));
	CRYPTO_set_mem_functions(ossl_malloc, ossl_realloc, ossl_free);
	if (argc == 3) {
		n = atoi(argv[1]);
		path = argv[2];
	}
	if (n < 10 || !path || !slots) {
		fprintf(stderr, "usage: tls_idle_mem N CLIENT\n");
		return 2;
	}
	struct rlimit rl; /* N sockets, and the listener's */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	proact_watcher *w;
	proact_tls *t;
	proact_tls_ctx *ctx = server_ctx();
	int l = listener(&port);
	if (!ctx || l < 0 || proact_watcher_new(&w, NULL) < 0 || proact_tls_new(&t, w, NULL) < 0) {
		fprintf(stderr, "tls_idle_mem: setup failed\n");
		return 1;
	}
	pid_t pid = client(path, port, n);
	int rc = serve(t, ctx, l, &done, n / 5);
	struct mallinfo2 m0 = mallinfo2(), m1;
	snapshot();
	first = done;
	rc = rc == 0 ? serve(t, ctx, l, &done, n) : rc;
	m1 = mallinfo2();
	if (rc == 0)
		report(first, done, &m0, &m1);
	else
		fprintf(stderr, "tls_idle_mem: %d of %d handshakes\n", done, n);
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	proact_watcher_shutdown(w);
	proact_tls_destroy(t);
	proact_watcher_destroy(w);
	proact_tls_ctx_free(ctx);
	return rc == 0 ? 0 : 1;
}
