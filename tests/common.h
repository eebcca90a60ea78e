/* SPDX-License-Identifier: MIT */
/*
 * Shared helpers for the test programs: real sockets over loopback and
 * socketpairs, and a loop that collects completions with a time bound.
 * Each test program runs on the backend named by PROACT_BACKEND.
 */
#ifndef PROACT_TEST_COMMON_H
#define PROACT_TEST_COMMON_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#ifdef _WIN32
#include <sys/socket.h> /* tests/win32: close, read and write of sockets */
#endif

#include "proact.h"

/* A watcher on the backend under test, with optional overrides (NULL: defaults). */
proact_watcher *t_watcher(const struct proact_options *opts);

/* A close-on-exec socket, non-blocking too if @nonblock; and accept() of a
   close-on-exec socket: the flags go to the call where it takes them, else
   fcntl sets them afterwards. -1 with errno set on failure. */
int t_socket(int domain, int type, bool nonblock);
int t_accept(int lfd);

/* A connected TCP pair over 127.0.0.1: fds[0] and fds[1]. Asserts on failure. */
void t_tcp_pair(int fds[2]);
/* A connected AF_UNIX stream socketpair. */
void t_unix_pair(int fds[2]);
/* A listening TCP socket on 127.0.0.1 with a kernel-chosen port. */
int t_listener(int *port);
/* A blocking client connected to 127.0.0.1:port. */
int t_connect(int port);

/*
 * Collects completions into out[] until `want` of them arrived, or the
 * timeout (ms) passed. Returns how many arrived. Pool buffers delivered along
 * the way are released by the next proact_wait call: copy what you need first.
 */
int t_collect(proact_watcher *w, struct proact_completion *out, int want, int timeout_ms);

/* Deterministic pseudo-random bytes: the byte at stream offset i of seed s. */
uint8_t t_byte(uint32_t seed, uint64_t i);
void t_fill(uint8_t *buf, size_t len, uint32_t seed, uint64_t offset);
/* Index of the first byte that differs from the seed stream, or -1. */
long t_check(const uint8_t *buf, size_t len, uint32_t seed, uint64_t offset);

/* Blocking helpers for the peer side (plain sockets, not the watcher). */
void t_write_all(int fd, const void *buf, size_t len);
void t_read_all(int fd, void *buf, size_t len);
/* Socket options for the peer side; each asserts success. 0 leaves a size as is. */
void t_set_rcvtimeo(int fd, int sec);
/* SO_RCVTIMEO and SO_SNDTIMEO of sec seconds: a blocked peer never blocks forever. */
void t_set_timeouts(int fd, int sec);
/* 64 KiB send buffer on sender, receive buffer on receiver: writes fill up fast. */
void t_small_bufs(int sender, int receiver);
void t_set_bufs(int fd, int snd, int rcv);
/* Whether fd is an open descriptor of this process. */
int t_fd_open(int fd);
/* Number of open fds of this process (from /proc/self/fd on Linux). */
int t_fd_count(void);
/* The name of the backend under test (PROACT_BACKEND or "auto"). */
const char *t_backend(void);

/* A field of /proc/self/status in KiB ("VmRSS", "RssAnon"), or -1. */
long t_status_kb(const char *field);
/* Makes close(fd) send a reset (SO_LINGER with a zero timeout). */
void t_linger_reset(int fd);
/* Skips the test where such a close may send no reset (under Wine: the
   peer reads EOF instead). */
void t_need_reset(void);
/* Sets or clears O_NONBLOCK on a plain socket of the peer side. */
void t_set_nonblock(int fd, int on);
/* A temporary file holding len bytes of data (none if len is 0), open for
   reading and writing, already unlinked; a directory open for reading.
   Windows: C runtime descriptors (_open_osfhandle), which close() takes. */
int t_temp_file(const void *data, size_t len);
int t_open_dir(void);
/* What a request names for descriptor d of a file or directory: d itself;
   Windows: its handle, as a socket is named by its handle there. */
int t_file_as_socket(int d);
/* An environment variable as a positive number, or def when unset or bad. */
long t_env_long(const char *name, long def);

/*
 * A thread that can be joined with a time bound (pthread_timedjoin_np is
 * glibc's own): t_thread_start runs fn(arg) in a new thread, asserting it
 * started. t_thread_join_within waits up to sec seconds for fn to return,
 * then joins the thread and frees t: 0. Still running: ETIMEDOUT, and t
 * stays valid (join again later, or leave it to the thread: a failed test).
 */
typedef struct t_thread t_thread;
t_thread *t_thread_start(void *(*fn)(void *), void *arg);
int t_thread_join_within(t_thread *t, int sec);

#endif
