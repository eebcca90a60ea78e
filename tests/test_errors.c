/* SPDX-License-Identifier: MIT */
/*
 * Checks DESIGN rule 12 (errors): every bad input gets the exact negative
 * errno the header documents, never a crash, and produces no completion:
 * NULL watcher, NULL out, bad options and unknown backend names, NULL or zero
 * or oversized buffers, negative / closed / regular-file / directory fds, bad
 * iov arrays, unknown ops and flags, FULL with a NULL buffer, a pool read
 * without a pool, bad proact_wait arguments; a failed submission registers
 * nothing and a batch stops at its first bad request. Failures of the I/O
 * itself come back as a positive errno in the completion (EPIPE without
 * SIGPIPE, ECONNRESET). proact_strerror always gives a text.
 */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define WAIT_MS 10000

/* No completion shows up: a refused call must not produce one. */
static void assert_quiet(proact_watcher *w, int ms)
{
	struct proact_completion c[4];
	assert_int_equal(t_collect(w, c, 1, ms), 0);
}

static void test_null_watcher(void **state)
{
	(void)state;
	int fds[2];
	t_unix_pair(fds);
	char b[8];
	struct iovec iov = {b, sizeof(b)};
	struct proact_request rq = {.fd = fds[0], .op = PROACT_OP_READ, .buf = b, .len = 8};
	struct proact_completion out[2];
	assert_int_equal(proact_read(NULL, fds[0], b, 8, NULL), -EINVAL);
	assert_int_equal(proact_read(NULL, fds[0], NULL, 8, NULL), -EINVAL);
	assert_int_equal(proact_read_full(NULL, fds[0], b, 8, NULL), -EINVAL);
	assert_int_equal(proact_read_deadline(NULL, fds[0], b, 8, 0, 0, NULL), -EINVAL);
	assert_int_equal(proact_write(NULL, fds[0], b, 8, NULL), -EINVAL);
	assert_int_equal(proact_write_deadline(NULL, fds[0], b, 8, 0, NULL), -EINVAL);
	assert_int_equal(proact_writev(NULL, fds[0], &iov, 1, NULL), -EINVAL);
	assert_int_equal(proact_submit(NULL, &rq, 1), -EINVAL);
	assert_int_equal(proact_free(NULL, fds[0], NULL), -EINVAL);
	assert_int_equal(proact_detach(NULL, fds[0], NULL), -EINVAL);
	assert_int_equal(proact_wait(NULL, out, 2, 0), -EINVAL);
	assert_int_equal(proact_wait(NULL, out, 2, -1), -EINVAL);
	assert_int_equal(proact_wakeup(NULL), -EINVAL);
	assert_int_equal(proact_watcher_shutdown(NULL), -EINVAL);
	assert_null(proact_backend(NULL));
	proact_watcher_destroy(NULL);
	/* the socket was not touched */
	assert_false(fcntl(fds[0], F_GETFL) & O_NONBLOCK);
	close(fds[0]);
	close(fds[1]);
}

static void test_watcher_new_bad_args(void **state)
{
	(void)state;
	int base = t_fd_count();
	struct proact_options o = {0};
	assert_int_equal(proact_watcher_new(NULL, NULL), -EINVAL);
	assert_int_equal(proact_watcher_new(NULL, &o), -EINVAL);
	proact_watcher *w = NULL;
	o.backend = "no-such-backend";
	assert_int_equal(proact_watcher_new(&w, &o), -EINVAL);
	o.backend = "select";
	assert_int_equal(proact_watcher_new(&w, &o), -EINVAL);
	o.backend = NULL;
	o.reserved[2] = 1; /* "must be zero" */
	assert_int_equal(proact_watcher_new(&w, &o), -EINVAL);
	assert_int_equal(t_fd_count(), base);
}

/* A watcher plus an unregistered socketpair for the argument checks. */
struct fixture {
	proact_watcher *w;
	int fds[2];
	int base;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	f->base = t_fd_count();
	f->w = t_watcher(NULL);
	t_unix_pair(f->fds);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	proact_watcher_destroy(f->w);
	close(f->fds[0]);
	close(f->fds[1]);
	int leak = t_fd_count() != f->base;
	free(f);
	return leak ? -1 : 0;
}

/* After only refused calls the fd is still unregistered and blocking. */
static void assert_untouched(struct fixture *f)
{
	assert_quiet(f->w, 20);
	assert_int_equal(proact_free(f->w, f->fds[0], NULL), -ENOENT);
	assert_false(fcntl(f->fds[0], F_GETFL) & O_NONBLOCK);
}

static void test_bad_buffers_and_lengths(void **state)
{
	struct fixture *f = *state;
	proact_watcher *w = f->w;
	int fd = f->fds[0];
	char b[16];
	/* NULL buffer with a nonzero length, for writes */
	assert_int_equal(proact_write(w, fd, NULL, 10, NULL), -EINVAL);
	assert_int_equal(proact_write_deadline(w, fd, NULL, 10, 0, NULL), -EINVAL);
	/* zero length */
	assert_int_equal(proact_read(w, fd, b, 0, NULL), -EINVAL);
	assert_int_equal(proact_read_full(w, fd, b, 0, NULL), -EINVAL);
	assert_int_equal(proact_read_deadline(w, fd, b, 0, 0, 0, NULL), -EINVAL);
	assert_int_equal(proact_write(w, fd, b, 0, NULL), -EINVAL);
	assert_int_equal(proact_write_deadline(w, fd, b, 0, 0, NULL), -EINVAL);
	/* over SSIZE_MAX */
	assert_int_equal(proact_read(w, fd, b, SIZE_MAX, NULL), -EINVAL);
	assert_int_equal(proact_read(w, fd, b, (size_t)SSIZE_MAX + 1, NULL), -EINVAL);
	assert_int_equal(proact_read_full(w, fd, b, SIZE_MAX, NULL), -EINVAL);
	assert_int_equal(proact_write(w, fd, b, SIZE_MAX, NULL), -EINVAL);
	assert_int_equal(proact_write(w, fd, b, (size_t)SSIZE_MAX + 1, NULL), -EINVAL);
	/* FULL with a NULL buffer */
	assert_int_equal(proact_read_full(w, fd, NULL, 16, NULL), -EINVAL);
	assert_int_equal(proact_read_deadline(w, fd, NULL, 16, PROACT_FULL, 0, NULL), -EINVAL);
	/* unknown flags */
	assert_int_equal(proact_read_deadline(w, fd, b, 16, 0x80, 0, NULL), -EINVAL);
	assert_int_equal(proact_read_deadline(w, fd, b, 16, 0x80000000u, 0, NULL), -EINVAL);
	assert_untouched(f);
}

/*
 * A pool read (NULL buf) takes its length as a cap: 0, or more than a pool
 * buffer, means one whole pool buffer; so those lengths are accepted, and
 * the read completes with at most one pool buffer of bytes.
 */
static void test_pool_read_lengths(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(proact_read(f->w, f->fds[0], NULL, 0, NULL), 0);
	assert_int_equal(proact_read(f->w, f->fds[0], NULL, (size_t)SSIZE_MAX + 1, NULL), 0);
	t_write_all(f->fds[1], "xy", 2);
	struct proact_completion c[2];
	assert_int_equal(t_collect(f->w, c, 1, 5000), 1);
	assert_int_equal(c[0].error, 0);
	assert_int_equal(c[0].size, 2);
	assert_true(c[0].flags & PROACT_COMP_POOL);
	assert_int_equal(proact_free(f->w, f->fds[0], NULL), 0);
	assert_int_equal(t_collect(f->w, c, 2, 5000), 2);
	assert_int_equal(c[0].error, ECANCELED);
	assert_int_equal(c[1].op, PROACT_OP_FREE);
	f->fds[0] = -1;
}

static void test_bad_iov(void **state)
{
	struct fixture *f = *state;
	proact_watcher *w = f->w;
	int fd = f->fds[0];
	char b[16];
	struct iovec iov[2] = {{b, 8}, {b + 8, 8}};
	assert_int_equal(proact_writev(w, fd, iov, 0, NULL), -EINVAL);
	assert_int_equal(proact_writev(w, fd, iov, -1, NULL), -EINVAL);
	assert_int_equal(proact_writev(w, fd, NULL, 1, NULL), -EINVAL);
	assert_int_equal(proact_writev(w, fd, NULL, 0, NULL), -EINVAL);
	struct iovec *many = calloc(IOV_MAX + 1, sizeof(*many));
	assert_non_null(many);
	for (int i = 0; i <= IOV_MAX; i++)
		many[i] = (struct iovec){b, 1};
	assert_int_equal(proact_writev(w, fd, many, IOV_MAX + 1, NULL), -EINVAL);
	/* a NULL segment base with a nonzero length */
	struct iovec bad[2] = {{b, 4}, {NULL, 4}};
	assert_int_equal(proact_writev(w, fd, bad, 2, NULL), -EINVAL);
	/* a total length of zero */
	struct iovec empty[2] = {{b, 0}, {b, 0}};
	assert_int_equal(proact_writev(w, fd, empty, 2, NULL), -EINVAL);
	/* the same through proact_submit */
	struct proact_request rq = {.fd = fd, .op = PROACT_OP_WRITEV, .iov = iov, .iovcnt = 0};
	assert_int_equal(proact_submit(w, &rq, 1), -EINVAL);
	rq.iovcnt = IOV_MAX + 1;
	rq.iov = many;
	assert_int_equal(proact_submit(w, &rq, 1), -EINVAL);
	rq.iov = NULL;
	rq.iovcnt = 1;
	assert_int_equal(proact_submit(w, &rq, 1), -EINVAL);
	free(many);
	assert_untouched(f);
}

static void test_bad_fds(void **state)
{
	struct fixture *f = *state;
	proact_watcher *w = f->w;
	char b[16];
	struct iovec iov = {b, 16};
	/* negative */
	for (int fd = -1; fd >= -2; fd--) {
		assert_int_equal(proact_read(w, fd, b, 16, NULL), -EBADF);
		assert_int_equal(proact_read(w, fd, NULL, 16, NULL), -EBADF);
		assert_int_equal(proact_read_full(w, fd, b, 16, NULL), -EBADF);
		assert_int_equal(proact_write(w, fd, b, 16, NULL), -EBADF);
		assert_int_equal(proact_writev(w, fd, &iov, 1, NULL), -EBADF);
		struct proact_request rq = {.fd = fd, .op = PROACT_OP_READ, .buf = b, .len = 16};
		assert_int_equal(proact_submit(w, &rq, 1), -EBADF);
		assert_int_equal(proact_free(w, fd, NULL), -EBADF);
		assert_int_equal(proact_detach(w, fd, NULL), -EBADF);
	}
	assert_int_equal(proact_read(w, INT_MIN, b, 16, NULL), -EBADF);
	/* open but closed again */
	int tmp[2];
	t_unix_pair(tmp);
	close(tmp[0]);
	close(tmp[1]);
	assert_int_equal(proact_read(w, tmp[0], b, 16, NULL), -EBADF);
	assert_int_equal(proact_write(w, tmp[1], b, 16, NULL), -EBADF);
	assert_int_equal(proact_writev(w, tmp[1], &iov, 1, NULL), -EBADF);
	/* a number far above anything open */
	assert_int_equal(proact_read(w, 19999, b, 16, NULL), -EBADF);
	assert_int_equal(proact_read(w, INT_MAX, b, 16, NULL), -EBADF);
#ifndef _WIN32 /* C runtime descriptors of files are no sockets there */
	/* a regular file and a directory are not pollable */
	char path[] = "/tmp/proact-errors-XXXXXX";
	int file = mkstemp(path);
	assert_true(file >= 0);
	unlink(path);
	assert_int_equal(write(file, "abc", 3), 3);
	assert_int_equal(lseek(file, 0, SEEK_SET), 0);
	assert_int_equal(proact_read(w, file, b, 16, NULL), -ENOTSUP);
	assert_int_equal(proact_write(w, file, b, 16, NULL), -ENOTSUP);
	assert_int_equal(proact_writev(w, file, &iov, 1, NULL), -ENOTSUP);
	assert_int_equal(proact_free(w, file, NULL), -ENOENT);
	int dir = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(dir >= 0);
	assert_int_equal(proact_read(w, dir, b, 16, NULL), -ENOTSUP);
	assert_quiet(w, 20);
	/* the file was not touched */
	assert_int_equal(lseek(file, 0, SEEK_CUR), 0);
	assert_false(fcntl(file, F_GETFL) & O_NONBLOCK);
	close(dir);
	close(file);
#endif
	assert_untouched(f);
}

static void test_bad_submit(void **state)
{
	struct fixture *f = *state;
	proact_watcher *w = f->w;
	int fd = f->fds[0];
	char b[16];
	assert_int_equal(proact_submit(w, NULL, 1), -EINVAL);
	const uint8_t ops[] = {0, PROACT_OP_FREE, PROACT_OP_DETACH, 11, 99, 255};
	for (size_t i = 0; i < sizeof(ops); i++) {
		struct proact_request rq = {.fd = fd, .op = ops[i], .buf = b, .len = 16};
		assert_int_equal(proact_submit(w, &rq, 1), -EINVAL);
	}
	struct proact_request rq = {.fd = fd, .op = PROACT_OP_READ, .buf = b, .len = 16};
	rq.flags = 0x10;
	assert_int_equal(proact_submit(w, &rq, 1), -EINVAL);
	rq.flags = PROACT_FULL;
	rq.buf = NULL;
	assert_int_equal(proact_submit(w, &rq, 1), -EINVAL);
	rq.flags = 0;
	rq.buf = b;
	rq.len = 0;
	assert_int_equal(proact_submit(w, &rq, 1), -EINVAL);
	struct proact_request wr = {.fd = fd, .op = PROACT_OP_WRITE, .buf = NULL, .len = 4};
	assert_int_equal(proact_submit(w, &wr, 1), -EINVAL);
	assert_untouched(f);
}

/* A batch stops at its first bad request; the ones before it are queued. */
static void test_submit_stops_at_first_bad(void **state)
{
	struct fixture *f = *state;
	proact_watcher *w = f->w;
	int fd = f->fds[0];
	struct proact_request rq[3] = {
	    {.fd = fd, .op = PROACT_OP_WRITE, .buf = "first", .len = 5, .ctx = rq},
	    {.fd = fd, .op = PROACT_OP_WRITE, .buf = "bad", .len = 0},
	    {.fd = fd, .op = PROACT_OP_WRITE, .buf = "third", .len = 5},
	};
	assert_int_equal(proact_submit(w, rq, 3), 1);
	struct proact_completion out[4];
	assert_int_equal(t_collect(w, out, 1, WAIT_MS), 1);
	assert_ptr_equal(out[0].ctx, rq);
	assert_int_equal(out[0].error, 0);
	assert_int_equal(out[0].size, 5);
	assert_quiet(w, 50);
	char got[16];
	t_read_all(f->fds[1], got, 5);
	assert_memory_equal(got, "first", 5);
	assert_int_equal(recv(f->fds[1], got, sizeof(got), MSG_DONTWAIT), -1);
	assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
	/* the fd is registered now; leave it to the watcher */
	assert_int_equal(proact_detach(w, fd, NULL), 0);
	assert_int_equal(t_collect(w, out, 1, WAIT_MS), 1);
	assert_int_equal(out[0].op, PROACT_OP_DETACH);
}

static void test_pool_none(void **state)
{
	(void)state;
	int base = t_fd_count();
	struct proact_options o = {.pool_buffer_count = PROACT_POOL_NONE};
	proact_watcher *w = t_watcher(&o);
	int fds[2];
	t_unix_pair(fds);
	assert_int_equal(proact_read(w, fds[0], NULL, 16, NULL), -ENOBUFS);
	struct proact_request rq = {.fd = fds[0], .op = PROACT_OP_READ, .len = 16};
	assert_int_equal(proact_submit(w, &rq, 1), -ENOBUFS);
	assert_quiet(w, 20);
	close(fds[0]);
	close(fds[1]);
	proact_watcher_destroy(w);
	assert_int_equal(t_fd_count(), base);
}

static void test_bad_wait_args(void **state)
{
	struct fixture *f = *state;
	struct proact_completion out[2];
	assert_int_equal(proact_wait(f->w, NULL, 1, 0), -EINVAL);
	assert_int_equal(proact_wait(f->w, NULL, 1, -1), -EINVAL);
	assert_int_equal(proact_wait(f->w, out, 0, 0), -EINVAL);
	assert_int_equal(proact_wait(f->w, out, -1, -1), -EINVAL);
	assert_int_equal(proact_wait(f->w, out, INT_MIN, 0), -EINVAL);
	assert_int_equal(proact_wait(f->w, out, 2, 0), 0);
}

/* A write to a closed peer: EPIPE in the completion, and no SIGPIPE. */
static void test_write_to_closed_peer(void **state)
{
	struct fixture *f = *state;
#ifdef _WIN32
	/* An AF_UNIX property: t_unix_pair is TCP there, whose first write to
	   a closed peer still succeeds (test_write covers TCP). */
	skip();
#endif
	void (*old)(int) = signal(SIGPIPE, SIG_DFL);
	close(f->fds[1]);
	f->fds[1] = -1;
	assert_int_equal(proact_write(f->w, f->fds[0], "data", 4, f), 0);
	struct proact_completion out[2];
	assert_int_equal(t_collect(f->w, out, 1, WAIT_MS), 1);
	assert_int_equal(out[0].op, PROACT_OP_WRITE);
	assert_ptr_equal(out[0].ctx, f);
	assert_int_equal(out[0].error, EPIPE);
	assert_int_equal(out[0].size, 0);
	signal(SIGPIPE, old);
	assert_int_equal(proact_detach(f->w, f->fds[0], NULL), 0);
	assert_int_equal(t_collect(f->w, out, 1, WAIT_MS), 1);
	assert_int_equal(out[0].op, PROACT_OP_DETACH);
}

/* A read on a connection the peer resets: ECONNRESET in the completion. */
static void test_read_reset(void **state)
{
	(void)state;
	t_need_reset();
	int base = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	int fds[2];
	t_tcp_pair(fds);
	char b[16];
	assert_int_equal(proact_read(w, fds[0], b, sizeof(b), b), 0);
	assert_quiet(w, 20);
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	assert_int_equal(setsockopt(fds[1], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	close(fds[1]);
	struct proact_completion out[2];
	assert_int_equal(t_collect(w, out, 1, WAIT_MS), 1);
	assert_ptr_equal(out[0].ctx, b);
	assert_int_equal(out[0].error, ECONNRESET);
	assert_int_equal(out[0].size, 0);
	assert_int_equal(proact_free(w, fds[0], NULL), 0);
	assert_int_equal(t_collect(w, out, 1, WAIT_MS), 1);
	assert_int_equal(out[0].op, PROACT_OP_FREE);
	proact_watcher_destroy(w);
	assert_int_equal(t_fd_count(), base);
}

static void test_strerror(void **state)
{
	(void)state;
	const int v[] = {0,         EINVAL, -EINVAL, ETIMEDOUT, -ETIMEDOUT, ECANCELED, -ESHUTDOWN,
	                 -EALREADY, EPIPE,  4095,    -4095,     INT_MAX,    INT_MIN};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		const char *s = proact_strerror(v[i]);
		assert_non_null(s);
		assert_true(strlen(s) > 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_null_watcher),
	    cmocka_unit_test(test_watcher_new_bad_args),
	    cmocka_unit_test_setup_teardown(test_bad_buffers_and_lengths, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pool_read_lengths, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_iov, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_fds, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_submit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_submit_stops_at_first_bad, setup, teardown),
	    cmocka_unit_test(test_pool_none),
	    cmocka_unit_test_setup_teardown(test_bad_wait_args, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_write_to_closed_peer, setup, teardown),
	    cmocka_unit_test(test_read_reset),
	    cmocka_unit_test(test_strerror),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
