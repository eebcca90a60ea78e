/* SPDX-License-Identifier: MIT */
/*
 * check - what the example checkers (proxy_check, http_check) share: failing
 * with the servers killed, blocking loopback sockets with time limits, and
 * running a server binary (under the cross build's emulator) until it says
 * "listening on", then stopping it with SIGTERM and taking its summary.
 *
 * Every wait is bounded only to turn a hang into a failure: nothing here
 * asserts a time. Messages go to stderr prefixed with the name given to
 * ck_init().
 */
#ifndef PROACT_EXAMPLES_CHECK_H
#define PROACT_EXAMPLES_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define CK_IO_TIMEOUT_S 20 /* any single blocking socket call, and a start or stop */

/* Names the checker for its messages, and the environment variable that
   holds the emulator command line (words split at spaces) a cross-built
   server runs under, or NULL. Call first. */
void ck_init(const char *name, const char *emulator_env);

/* Prints "NAME: FAIL: ...", kills every server started here, runs the
   cleanup hook and exits with status 1. */
_Noreturn void ck_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Called by ck_fail() before it exits (to remove temporary files...). */
void ck_on_fail(void (*hook)(void));

/* Exits 77 if the backend named in PROACT_BACKEND is not available here
   (the test runner sets it), after printing which backend runs. */
void ck_skip_if_unavailable(void);

double ck_now(void);
void ck_sleep(double s);

/* Fills @buf with @n bytes of a fixed pseudo-random pattern (xorshift64),
   the same on every call. */
void ck_fill_pattern(unsigned char *buf, size_t n);

/* ---- sockets (blocking, close-on-exec, CK_IO_TIMEOUT_S per call) ----- */

int ck_tcp_socket(void);
int ck_pipe(int p[2]);
int ck_listen_local(int *port); /* 127.0.0.1, a port the kernel chose */
int ck_accept(int lfd);         /* fails after CK_IO_TIMEOUT_S */
int ck_connect_local(int port); /* to 127.0.0.1:port, timeouts set */
void ck_set_timeouts(int fd);
void ck_write_all(int fd, const void *buf, size_t n, const char *who);
void ck_read_all(int fd, void *buf, size_t n, const char *who); /* exactly n */
void ck_expect_eof(int fd, const char *who);

/* ---- servers --------------------------------------------------------- */

struct ck_server {
	pid_t pid;
	int out;         /* its stdout */
	int port;        /* from its "listening on 127.0.0.1:PORT" line */
	char text[8192]; /* everything it printed */
	size_t len;
};

/* Runs argv (argv[0] the binary; NULL-terminated) under the emulator, if
   any, and waits for its listening line. */
void ck_server_start(struct ck_server *sv, char *const argv[]);

/* SIGTERM, then waits for exit status 0 and returns the line of its output
   that starts with @summary (fails if there is none). */
const char *ck_server_stop(struct ck_server *sv, const char *summary);

/* Runs a command with stdout and stderr to *out (malloc'd, NUL-terminated),
   killing it after @limit_s. Returns its exit status (as waitpid), or -1 if
   it could not run or was killed. */
int ck_run(char *const argv[], char **out, double limit_s);

/* The full path of @prog found in PATH, in @buf; false when absent. */
bool ck_find_program(const char *prog, char *buf, size_t len);

#endif
