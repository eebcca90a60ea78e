/* SPDX-License-Identifier: MIT */
/*
 * util - what the example servers and clients share: option parsing, the
 * descriptor limit, listening sockets, stop signals, and the request
 * plumbing every proact server needs. Not part of proact; echo_minimal.c
 * and lifecycle.c stay self-contained on purpose.
 *
 * Messages go to stderr prefixed with the name given to ex_init().
 */
#ifndef PROACT_EXAMPLES_UTIL_H
#define PROACT_EXAMPLES_UTIL_H

#include <stdbool.h>
#include <stdint.h>
/* The platform's socket names, so that a program needs none of its own:
   Winsock on Windows (util.c starts it in ex_init). */
#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#else
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/socket.h>
#ifdef PROACT_PROG_HAVE_SIGNALFD
#include <sys/signalfd.h>
#endif
#endif

#include "proact.h"

/* No socket: what ex_socket() and the listener calls return on failure. */
#define EX_NO_SOCKET ((proact_socket)-1)

/* ---- options ------------------------------------------------------------ */

/* Names the program for every message below ("echo_server") and gives the
   whole usage text, newline included, that ex_usage() prints. Call first. */
void ex_init(const char *progname, const char *usage);

/* Prints the usage text and exits with status 2. */
_Noreturn void ex_usage(void);

/* A decimal option value in [min, max]; anything else (a sign, trailing text,
   overflow) prints "PROG: bad number 'S'" and exits with status 2. */
unsigned long long ex_parse_num(const char *s, unsigned long long min, unsigned long long max);

/* Takes one "--name value" option; false if @name is not one of its own. */
typedef bool ex_option_fn(void *ctx, const char *name, const char *value);

/* Hands every "--name value" pair of argv to @take. A name without a value,
   or one @take does not know, is a usage error (ex_usage()). */
void ex_parse_options(int argc, char **argv, ex_option_fn *take, void *ctx);

/* The options every server takes. The caller sets the defaults. */
struct ex_server_options {
	const char *host;    /* --host ADDR */
	const char *port;    /* checked, then kept as text for getaddrinfo */
	const char *backend; /* --backend NAME; NULL lets proact choose */
};

/* Takes --host, --backend and the port option, named @port_name ("--port";
   the proxy says "--listen"); false for any other @name. */
bool ex_server_option(struct ex_server_options *o, const char *port_name, const char *name,
                      const char *value);

/* ---- sockets and signals ------------------------------------------------ */

/* What a read of the stop-signal descriptor returns: signalfd's record, or
   where there is no signalfd the signal number a handler wrote. */
#ifdef PROACT_PROG_HAVE_SIGNALFD
typedef struct signalfd_siginfo ex_siginfo;
#else
typedef struct {
	uint32_t ssi_signo;
} ex_siginfo;
#endif

/* A non-blocking, close-on-exec socket(), or EX_NO_SOCKET with errno set
   (on Windows: WSAGetLastError()). */
proact_socket ex_socket(int domain, int type);

/* Closes a socket proact was never given: close(), or closesocket(). */
void ex_close(proact_socket fd);

/* Raises the soft RLIMIT_NOFILE to the hard one: every connection is an fd.
   Failure is ignored; the program then runs out of fds sooner. Nothing on
   Windows, whose sockets have no such limit. */
void ex_raise_fd_limit(void);

/* Resolves @host and @port (ai_flags: AI_PASSIVE for a listener) to the
   first address found. Returns 0, or getaddrinfo's error code for
   gai_strerror(); prints nothing, so the caller names what failed. */
int ex_resolve(const char *host, const char *port, int ai_flags, struct sockaddr_storage *ss,
               socklen_t *len);

/* A non-blocking listener bound to @addr with SO_REUSEADDR, and with
   @reuseport also SO_REUSEPORT (several listeners on one port, one per
   thread; Windows has neither, see ex_shards_open). Returns the fd, or
   EX_NO_SOCKET after printing "PROG: listen: ERROR". */
proact_socket ex_listen(const struct sockaddr *addr, socklen_t len, int backlog, bool reuseport);

/* ex_resolve() with AI_PASSIVE, then ex_listen(). Returns the fd, or
   EX_NO_SOCKET after printing why. */
proact_socket ex_open_listener(const char *host, const char *port, int backlog, bool reuseport);

/* Prints "listening on HOST:PORT" ("[V6]:PORT") for @fd's local address and
   flushes: scripts wait for that line and take the port from it (port 0
   lets the kernel choose). Exits with status 1 if the address is unknown. */
void ex_print_listening(proact_socket fd);

#ifndef _WIN32
/* Blocks SIGINT, SIGTERM and SIGUSR1 in the calling thread (threads it
   creates later inherit the mask) and returns a non-blocking signalfd for
   them (SIGUSR1 asks for the counters, see ex_stop_signal), or -1 with
   errno set. A read pending on it stops the loop without a handler, which
   could not call proact_wakeup() (not async-signal-safe). Without signalfd,
   a handler writes the signal's number into a pipe and this returns the
   pipe's non-blocking read end. */
int ex_open_signalfd(void);
#endif

/* The read of @len bytes into @info that a stop signal completes. @info is
   also the ctx, so a completion whose ctx is @info is the signal. */
struct proact_request ex_signal_read(int sfd, ex_siginfo *info, size_t len);

#ifndef _WIN32
/* Whether the completed signal read @r asks to stop: SIGINT, SIGTERM, an
   error or an end. False when it brought only SIGUSR1, which asks for the
   counters (ex_print_stats): the program prints them and reads again. */
bool ex_stop_signal(const struct proact_completion *r);
#endif

/* Prints the watcher's counters (proact_stats) on one line to stderr,
   "PROG: stats[IDX]: ...". */
void ex_print_stats(proact_watcher *w, unsigned idx);

/* ---- requests ----------------------------------------------------------- */

#define EX_BATCH 256 /* requests per proact_submit */

/* Requests gathered during a loop round, submitted together by
   ex_batch_flush(). Set w, refused and ctx; n starts at 0. */
struct ex_batch {
	proact_watcher *w;
	/* Called for each request proact_submit() refuses, with its negative
	   errno: no completion will come for it. */
	void (*refused)(void *ctx, const struct proact_request *r, int err);
	void *ctx;
	int n;
	struct proact_request req[EX_BATCH];
};

/* Adds @r, first submitting the batch if it is full. */
void ex_batch_queue(struct ex_batch *b, struct proact_request r);

/* Submits every queued request. Call before the next proact_wait(): that
   call releases the pool buffers that queued writes may refer to. */
void ex_batch_flush(struct ex_batch *b);

/* Submits the first accept on @lfd, which registers it: from then on the
   watcher owns and closes it. Returns 0, or the error after printing it. */
int ex_accept_first(proact_watcher *w, proact_socket lfd);

/* Whether an accept that failed with @err may simply be resubmitted: out of
   fds or memory, proact holds the next accept back until a descriptor is
   freed, and the client waits in the listen queue meanwhile. */
bool ex_accept_transient(int err);

/* Hands @fd to proact_free(). Returns 0: a PROACT_OP_FREE completion with
   @ctx follows; -ENOENT: never registered (its first request was refused),
   so it was closed here and no completion follows; another negative errno:
   printed, no completion follows. */
int ex_free_fd(proact_watcher *w, proact_socket fd, void *ctx);

/* Counts a failed request: a peer that resets or breaks the pipe is a
   client event (*resets), a cancel is a close of ours (not counted), the
   rest are *errors. */
void ex_count_failure(int err, uint64_t *resets, uint64_t *errors);

/* ---- servers with a watcher per thread ---------------------------------- */

#define EX_NSIGINFO 4 /* signals taken per signalfd read */

/*
 * One thread of a server that runs a watcher per thread, each with its own
 * SO_REUSEPORT listener on the one port (the kernel spreads the
 * connections over them); the first also reads the stop signals. It is the
 * first member of the program's per-thread struct, so a pointer to it is a
 * pointer to that struct. Nothing is shared between the threads but the
 * stop flag.
 *
 * Windows has no SO_REUSEPORT, and a socket belongs to one completion port
 * for good: there the first shard alone listens, and hands each accepted
 * socket to the shards in turn (a socket joins a watcher's port at its
 * first request, so a new one can go to any). Ctrl-C, Ctrl-Break or closing
 * the console stops the server; there is no SIGUSR1, so the counters are
 * printed at exit only.
 */
#ifdef _WIN32
typedef HANDLE ex_thread;
#else
typedef pthread_t ex_thread;
#endif

struct ex_shard {
	proact_watcher *w;
	proact_socket lfd;   /* the listener; EX_NO_SOCKET on Windows but the first */
	int sfd;             /* the first shard: the signalfd; the others (and Windows) -1 */
	bool lfd_registered; /* the watcher owns (and closes) the listener */
	bool sfd_registered;
	bool failed;
	ex_siginfo sig[EX_NSIGINFO];
	struct ex_batch reqs; /* one proact_submit per loop round */
	ex_thread thread;
};

/* Opens the signalfd (for sh[0]) and a listener per shard, all on one port
   (with port 0 the first gets one from the kernel, the others bind to it).
   On Windows: sets the console's stop handler and opens sh[0]'s listener.
   Returns 0, or -1 after printing why. */
int ex_shards_open(struct ex_shard *const sh[], unsigned n, const char *host, const char *port,
                   int backlog);

/* Creates the shard's watcher with @po, then submits @accepts accepts on its
   listener (if it has one) and, on the first shard, the signal read.
   @refused and @ctx go to sh->reqs (see ex_shard_refused). Returns 0, or -1
   after printing why. */
int ex_shard_setup(struct ex_shard *sh, const struct proact_options *po, int accepts,
                   void (*refused)(void *ctx, const struct proact_request *r, int err), void *ctx);

/* What the program does in a shard's loop. Requests it queues on sh->reqs
   are submitted once the round's completions are handled. */
struct ex_shard_ops {
	void (*round)(struct ex_shard *sh); /* before a round's completions; may be NULL */
	/* A new connection, the program's from now on. */
	void (*accepted)(struct ex_shard *sh, proact_socket fd);
	void (*completion)(struct ex_shard *sh, const struct proact_completion *c); /* the rest */
	/* What the loop waits with, proact_wait() of sh->w when NULL (a TLS
	   server passes proact_tls_wait() on its layer). */
	int (*wait)(struct ex_shard *sh, struct proact_completion *out, int max, int timeout_ms);
};

/* Runs each shard's loop (proact_wait, then the shard's own completions:
   the signal read stops the server, an accept is resubmitted unless it
   failed for good; the rest to @ops), sh[1..n-1] in threads of their own
   and sh[0] in the calling thread, until a stop signal or a failure; then
   stops the others and joins them. False if a thread could not start. */
bool ex_shards_run(struct ex_shard *const sh[], unsigned n, const struct ex_shard_ops *ops);

/* For a request of sh->reqs that proact_submit refused: true if it was the
   shard's own (an accept, the signal read), which stops the server. */
bool ex_shard_refused(struct ex_shard *sh, const struct proact_request *r, int err);

/* Prints "PROG: WHAT: ERROR", marks the shard failed and stops the server. */
void ex_shard_fail(struct ex_shard *sh, const char *what, int err);

/* Destroys the watcher (nothing more is delivered: the program then frees
   what is left of its connections) and closes the listener and signalfd if
   the watcher never took them. */
void ex_shard_close(struct ex_shard *sh);

#endif
