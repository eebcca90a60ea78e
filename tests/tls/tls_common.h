/* SPDX-License-Identifier: MIT */
/*
 * What the TLS tests share: certificates made at run time, a layer on the
 * watcher of the backend under test, connected TLS pairs inside the
 * process, a completion collector with a time bound, and child processes
 * (openssl, curl) with a time bound.
 */
#ifndef PROACT_TEST_TLS_COMMON_H
#define PROACT_TEST_TLS_COMMON_H

#include <stdbool.h>
#include <sys/types.h>

#include "../common.h"
#include "proact_tls.h"

#define TT_TIMEOUT_MS 20000 /* a hang guard, never a timing assertion */

/* Two self-signed identities in a private temporary folder: "good" names
   localhost and 127.0.0.1; "other" names other.example. PEM files and
   text. Made once per process; tt_certs_remove() deletes the folder. */
struct tt_certs {
	char dir[260];                        /* Windows: under the user's temporary folder */
	char cert[300], key[300];             /* good */
	char other_cert[300], other_key[300]; /* other */
	char *cert_pem, *key_pem;
};
const struct tt_certs *tt_certs(void);
void tt_certs_remove(void);

/* Contexts from those: a server with good (or other), and a client that
   trusts good (flags added: PROACT_TLS_NO_VERIFY...). Assert on failure. */
proact_tls_ctx *tt_server_ctx(bool other, const char *alpn);
proact_tls_ctx *tt_client_ctx(uint32_t flags, const char *alpn);

/* A watcher on the backend under test with a layer on it. */
struct tt_layer {
	proact_watcher *w;
	proact_tls *t;
};
void tt_layer_new(struct tt_layer *l);
void tt_layer_new_with(struct tt_layer *l, const struct proact_tls_options *o);
void tt_layer_free(struct tt_layer *l);

/* Collects TLS (and plain) completions until @want arrived or @timeout_ms
   passed; returns how many. Buffers delivered along the way are released by
   the next call: copy what you need first. */
int tt_collect(proact_tls *t, struct proact_completion *out, int want, int timeout_ms);

/* One completion of @op on @conn's fd. Others that come first are kept for
   later calls (up to 16, not pool reads: those fail); tt_layer_free()
   fails if any was never asked for. */
struct proact_completion tt_expect(proact_tls *t, proact_tls_conn *conn, int op);

/* A server and a client connection over a loopback TCP pair, handshake
   done (asserted), in one layer. */
void tt_pair(struct tt_layer *l, proact_tls_ctx *sctx, proact_tls_ctx *cctx,
             proact_tls_conn **server, proact_tls_conn **client);

/* Frees @conn and collects completions until its FREE arrived (asserted). */
void tt_free(proact_tls *t, proact_tls_conn *conn);

/* A connection from blocking listener @lfd (asserted); retries EINTR, which
   io_uring's task work can cause. */
int tt_accept(int lfd);

#ifndef _WIN32 /* the peers are programs of this machine: no fork under Wine */
/* Whether @tool runs from PATH. */
bool tt_have(const char *tool);

/* Starts argv[0] with stdin and stdout on pipes (*in: write end; *out: read
   end, non-blocking) and stderr to /dev/null unless TT_VERBOSE is set. */
pid_t tt_spawn(char *const argv[], int *in, int *out);
/* Waits up to @sec seconds for @pid, then kills it: its exit status, or -1. */
int tt_reap(pid_t pid, int sec);
/* Reads from non-blocking @fd until @len bytes, EOF or @ms; returns bytes. */
size_t tt_read_pipe(int fd, char *buf, size_t len, int ms);
/* Reads the lines of @fd until one starts with @prefix; the rest of the
   line after the prefix goes to @rest. true if found within @ms. */
bool tt_wait_line(int fd, const char *prefix, char *rest, size_t restlen, int ms);
#endif

#endif
