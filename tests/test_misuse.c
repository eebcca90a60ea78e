/* SPDX-License-Identifier: MIT */
/*
 * Checks DESIGN rule 12 as a table: every public function of proact.h
 * against every bad input we could think of, each row expecting the exact
 * negative errno proact.h documents (or, where it documents nothing, any
 * negative errno: the report lists those rows). After each refused call no
 * completion may appear, and when a group is done a valid request on the same
 * fds still works. Beside the table: a bad fd number must not cost memory,
 * deadlines at the edges of the clock, two threads in proact_wait (EBUSY), and
 * calls from other threads while the watcher shuts down.
 *
 * PROACT_MISUSE_TABLE=1 prints every row as Markdown with the result seen.
 */
#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define WAIT_MS  10000
#define ANY_NEG  INT_MIN /* undocumented: any negative errno will do */
#define FD_SPARE 1000    /* an fd number nothing in this process opens */

enum fn {
	F_READ,
	F_READ_FULL,
	F_READ_DL,
	F_WRITE,
	F_WRITE_DL,
	F_WRITEV,
	F_SUBMIT,
	F_ACCEPT,
	F_CONNECT,
	F_SHUTW,
	F_RECVFROM,
	F_SENDTO,
	F_FREE,
	F_DETACH,
	F_WAIT,
	F_WAKEUP,
	F_SHUTDOWN,
	F_NEW,
};

static const char *const fn_names[] = {
    "proact_read",           "proact_read_full",        "proact_read_deadline",
    "proact_write",          "proact_write_deadline",   "proact_writev",
    "proact_submit",         "proact_accept",           "proact_connect",
    "proact_shutdown_write", "proact_recvfrom",         "proact_sendto",
    "proact_free",           "proact_detach",           "proact_wait",
    "proact_wakeup",         "proact_watcher_shutdown", "proact_watcher_new",
};

enum wsel { W_LIVE, W_NULL, W_DOWN };
enum fdsel { FD_REG, FD_UNREG, FD_NEG, FD_MIN, FD_CLOSED, FD_FILE, FD_DIR, FD_FREEING, FD_LISTEN };
enum bufsel { B_OK, B_NULL, B_STALE_POOL, B_NULL_ARRAY };
enum iovsel { IOV_NONE, IOV_OK, IOV_NULL, IOV_NULL_BASE, IOV_ALL_EMPTY, IOV_OVER_SSIZE };

struct row {
	const char *input; /* the bad input, for the table */
	enum fn fn;
	enum wsel w;
	enum fdsel fd;
	enum bufsel buf;
	size_t len;       /* the buffer length */
	uint32_t flags;   /* read flags, or the request's flags */
	int count;        /* iovcnt, n of proact_submit, max of proact_wait */
	uint8_t op;       /* proact_submit: the request's op */
	uint8_t reserved; /* proact_submit: reserved[0] */
	int addr;         /* 1: pass the fixture's address */
	uint32_t addrlen;
	enum iovsel iov;
	int expect; /* 0, a negative errno, or ANY_NEG */
};

/* ---- the fixture: one live watcher, one shut down, fds of every kind ---- */

struct fx {
	proact_watcher *w, *down;
	int reg, reg_peer;     /* registered (one write went through), idle */
	int unreg, unreg_peer; /* never registered */
	int file, dir, lfd;
	int freeing; /* proact_free called, FREE not yet delivered */
	struct sockaddr_in addr;
	char buf[64];
	void *stale_pool;              /* a pool buffer released by a later proact_wait */
	struct iovec iov[IOV_MAX + 1]; /* {buf, 1} each */
	struct iovec iov_null_base[2], iov_empty[2], iov_huge[2];
	struct proact_completion out[8];
	int base;
};

static void settle_quiet(proact_watcher *w, const char *what)
{
	struct proact_completion c[4];
	int n = proact_wait(w, c, 4, 0);
	if (n != 0)
		fail_msg("%s: proact_wait gave %d (ctx %p) after a refused call", what, n,
		         n > 0 ? c[0].ctx : NULL);
}

static void register_fd(struct fx *f, int fd, int peer)
{
	assert_int_equal(proact_write(f->w, fd, "r", 1, NULL), 0);
	assert_int_equal(t_collect(f->w, f->out, 1, WAIT_MS), 1);
	assert_int_equal(f->out[0].error, 0);
	char x;
	t_read_all(peer, &x, 1);
}

/* A pool buffer the program no longer holds: delivered, then released. */
static void make_stale_pool(struct fx *f)
{
	assert_int_equal(proact_read(f->w, f->reg, NULL, 0, NULL), 0);
	t_write_all(f->reg_peer, "p", 1);
	assert_int_equal(t_collect(f->w, f->out, 1, WAIT_MS), 1);
	assert_true(f->out[0].flags & PROACT_COMP_POOL);
	f->stale_pool = f->out[0].buf;
	settle_quiet(f->w, "stale pool");
}

static void make_iovs(struct fx *f)
{
	for (int i = 0; i <= IOV_MAX; i++)
		f->iov[i] = (struct iovec){f->buf, 1};
	f->iov_null_base[0] = (struct iovec){f->buf, 4};
	f->iov_null_base[1] = (struct iovec){NULL, 4};
	f->iov_empty[0] = (struct iovec){f->buf, 0};
	f->iov_empty[1] = (struct iovec){NULL, 0};
	/* never sent: the total is refused before any byte is looked at */
	f->iov_huge[0] = (struct iovec){f->buf, (size_t)SSIZE_MAX};
	f->iov_huge[1] = (struct iovec){f->buf, 2};
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	f->base = t_fd_count();
	f->w = t_watcher(NULL);
	f->down = t_watcher(NULL);
	assert_int_equal(proact_watcher_shutdown(f->down), 0);
	int p[2];
	t_unix_pair(p);
	f->reg = p[0];
	f->reg_peer = p[1];
	t_unix_pair(p);
	f->unreg = p[0];
	f->unreg_peer = p[1];
	f->file = t_temp_file(NULL, 0);
	f->dir = t_open_dir();
	int port;
	f->lfd = t_listener(&port);
	f->addr = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	f->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(fcntl(FD_SPARE, F_GETFD), -1);
	f->freeing = -1;
	make_iovs(f);
	register_fd(f, f->reg, f->reg_peer);
	make_stale_pool(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	proact_watcher_destroy(f->w); /* closes reg (and anything registered) */
	proact_watcher_destroy(f->down);
	if (fcntl(f->unreg, F_GETFD) != -1)
		close(f->unreg);
	close(f->reg_peer);
	close(f->unreg_peer);
	close(f->file);
	close(f->dir);
	close(f->lfd);
	int leak = t_fd_count() != f->base;

	free(f);
	return leak ? -1 : 0;
}

/* ---- running a row ------------------------------------------------------ */

static proact_watcher *pick_w(const struct fx *f, enum wsel s)
{
	return s == W_LIVE ? f->w : s == W_DOWN ? f->down : NULL;
}

static int pick_fd(const struct fx *f, enum fdsel s)
{
	switch (s) {
	case FD_REG:
		return f->reg;
	case FD_UNREG:
		return f->unreg;
	case FD_NEG:
		return -1;
	case FD_MIN:
		return INT_MIN;
	case FD_CLOSED:
		return FD_SPARE;
	case FD_FILE:
		return t_file_as_socket(f->file);
	case FD_DIR:
		return t_file_as_socket(f->dir);
	case FD_FREEING:
		return f->freeing;
	case FD_LISTEN:
		return f->lfd;
	}
	return -1;
}

static void *pick_buf(struct fx *f, enum bufsel s)
{
	return s == B_OK ? f->buf : s == B_STALE_POOL ? f->stale_pool : NULL;
}

static const struct iovec *pick_iov(const struct fx *f, enum iovsel s)
{
	switch (s) {
	case IOV_NONE:
	case IOV_NULL:
		return NULL;
	case IOV_OK:
		return f->iov;
	case IOV_NULL_BASE:
		return f->iov_null_base;
	case IOV_ALL_EMPTY:
		return f->iov_empty;
	case IOV_OVER_SSIZE:
		return f->iov_huge;
	}
	return NULL;
}

static int call_submit(struct fx *f, const struct row *r, int fd)
{
	struct proact_request q = {
	    .fd = fd,
	    .op = r->op,
	    .flags = r->flags,
	    .buf = pick_buf(f, r->buf),
	    .len = r->len,
	    .addr = r->addr ? (struct sockaddr *)&f->addr : NULL,
	    .addrlen = r->addrlen,
	    .ctx = (void *)r,
	};
	q.reserved[0] = r->reserved;
	int n = r->count;
	if (r->iov != IOV_NONE) { /* count is iovcnt then; one request */
		q.iov = pick_iov(f, r->iov);
		q.iovcnt = r->count;
		n = 1;
	}
	return proact_submit(pick_w(f, r->w), r->buf == B_NULL_ARRAY ? NULL : &q, n);
}

/* proact_watcher_new with option set k; a watcher made by mistake is destroyed. */
static int call_new(int k)
{
	struct proact_options o = {0};
	proact_watcher *w = NULL;
	if (k == 0)
		return proact_watcher_new(NULL, NULL);
	if (k == 1)
		o.reserved[3] = 1;
	if (k == 2)
		o.backend = "no-such-backend";
	if (k == 3) /* a backend this build lacks: kqueue on Linux, io_uring elsewhere */
		o.backend = strcmp(t_backend(), "kqueue") == 0 ? "io_uring" : "kqueue";
	if (k == 4)
		o.pool_buffer_count = 1u << 20;
	if (k == 5)
		o.pool_buffer_size = UINT32_MAX;
	int rc = proact_watcher_new(&w, &o);
	proact_watcher_destroy(w);
	return rc;
}

static int call_row(struct fx *f, const struct row *r)
{
	proact_watcher *w = pick_w(f, r->w);
	int fd = pick_fd(f, r->fd);
	void *buf = pick_buf(f, r->buf), *ctx = (void *)r;
	struct sockaddr *addr = r->addr ? (struct sockaddr *)&f->addr : NULL;
	uint64_t dl = proact_deadline_in(60000);
	switch (r->fn) {
	case F_READ:
		return proact_read(w, fd, buf, r->len, ctx);
	case F_READ_FULL:
		return proact_read_full(w, fd, buf, r->len, ctx);
	case F_READ_DL:
		return proact_read_deadline(w, fd, buf, r->len, r->flags, dl, ctx);
	case F_WRITE:
		return proact_write(w, fd, buf, r->len, ctx);
	case F_WRITE_DL:
		return proact_write_deadline(w, fd, buf, r->len, dl, ctx);
	case F_WRITEV:
		return proact_writev(w, fd, pick_iov(f, r->iov), r->count, ctx);
	case F_SUBMIT:
		return call_submit(f, r, fd);
	case F_ACCEPT:
		return proact_accept(w, fd, addr, r->addrlen, ctx);
	case F_CONNECT:
		return proact_connect(w, fd, addr, r->addrlen, 0, ctx);
	case F_SHUTW:
		return proact_shutdown_write(w, fd, ctx);
	case F_RECVFROM:
		return proact_recvfrom(w, fd, buf, r->len, addr, r->addrlen, ctx);
	case F_SENDTO:
		return proact_sendto(w, fd, buf, r->len, addr, r->addrlen, ctx);
	case F_FREE:
		return proact_free(w, fd, ctx);
	case F_DETACH:
		return proact_detach(w, fd, ctx);
	case F_WAIT:
		return proact_wait(w, r->buf == B_NULL ? NULL : f->out, r->count, 0);
	case F_WAKEUP:
		return proact_wakeup(w);
	case F_SHUTDOWN:
		return proact_watcher_shutdown(w);
	case F_NEW:
		return call_new(r->count);
	}
	return 0;
}

static const char *errname(int rc, char *tmp, size_t n)
{
	static const struct {
		int e;
		const char *name;
	} names[] = {{EINVAL, "EINVAL"},       {EBADF, "EBADF"},        {ENOTSUP, "ENOTSUP"},
	             {ENOENT, "ENOENT"},       {EALREADY, "EALREADY"},  {ESHUTDOWN, "ESHUTDOWN"},
	             {EBUSY, "EBUSY"},         {ENOBUFS, "ENOBUFS"},    {EAGAIN, "EAGAIN"},
	             {ENOSYS, "ENOSYS"},       {ENOMEM, "ENOMEM"},      {ENOTSOCK, "ENOTSOCK"},
	             {EEXIST, "EEXIST"},       {EPERM, "EPERM"},        {EMSGSIZE, "EMSGSIZE"},
	             {ECANCELED, "ECANCELED"}, {ETIMEDOUT, "ETIMEDOUT"}};
	if (rc == ANY_NEG)
		return "any -errno";
	if (rc >= 0) {
		snprintf(tmp, n, "%d", rc);
		return tmp;
	}
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].e == -rc)
			return snprintf(tmp, n, "-%s", names[i].name) > 0 ? tmp : tmp;
	snprintf(tmp, n, "%d", rc);
	return tmp;
}

static const char *wname(enum wsel s)
{
	return s == W_NULL ? "NULL watcher, " : s == W_DOWN ? "shut-down watcher, " : "";
}

static int row_ok(const struct row *r, int rc)
{
	return r->expect == ANY_NEG ? rc < 0 : rc == r->expect;
}

/* Runs the rows; refused calls must leave no completion behind (unless quiet_ok). */
static void run_rows(struct fx *f, const struct row *rows, size_t n, int check_quiet)
{
	int bad = 0;
	int table = getenv("PROACT_MISUSE_TABLE") != NULL;
	for (size_t i = 0; i < n; i++) {
		const struct row *r = &rows[i];
		int rc = call_row(f, r);
		char a[32], b[32];
		if (table)
			print_message("| %s | %s%s | %s | %s |\n", fn_names[r->fn], wname(r->w),
			              r->input, errname(r->expect, a, sizeof(a)),
			              errname(rc, b, sizeof(b)));
		if (!row_ok(r, rc)) {
			print_message("MISMATCH %s(%s%s): expected %s, got %s\n", fn_names[r->fn],
			              wname(r->w), r->input, errname(r->expect, a, sizeof(a)),
			              errname(rc, b, sizeof(b)));
			bad++;
		}
		if (check_quiet && rc < 0 && r->w == W_LIVE)
			settle_quiet(f->w, r->input);
	}
	if (bad)
		fail_msg("%d of %zu rows differ from proact.h", bad, n);
}

/* The fd still works: a write and a read, each with exactly its completion. */
static void still_works(struct fx *f, int fd, int peer)
{
	char in[4];
	t_set_rcvtimeo(peer, WAIT_MS / 1000);
	assert_int_equal(proact_read(f->w, fd, in, sizeof(in), in), 0);
	assert_int_equal(proact_write(f->w, fd, "ping", 4, f), 0);
	assert_int_equal(t_collect(f->w, f->out, 1, WAIT_MS), 1);
	assert_ptr_equal(f->out[0].ctx, f);
	assert_int_equal(f->out[0].error, 0);
	assert_int_equal(f->out[0].size, 4);
	t_read_all(peer, f->buf, 4);
	assert_memory_equal(f->buf, "ping", 4);
	t_write_all(peer, "pong", 4);
	assert_int_equal(t_collect(f->w, f->out, 1, WAIT_MS), 1);
	assert_ptr_equal(f->out[0].ctx, in);
	assert_int_equal(f->out[0].error, 0);
	assert_int_equal(f->out[0].size, 4);
	assert_memory_equal(in, "pong", 4);
	assert_int_equal(t_collect(f->w, f->out, 1, 20), 0);
}

static void after_group(struct fx *f)
{
	still_works(f, f->reg, f->reg_peer);
	/* unreg was never touched: still blocking, still unregistered */
	assert_false(fcntl(f->unreg, F_GETFL) & O_NONBLOCK);
	assert_int_equal(proact_free(f->w, f->unreg, NULL), -ENOENT);
	still_works(f, f->unreg, f->unreg_peer);
}

#define RUN(f, rows) run_rows(f, rows, sizeof(rows) / sizeof(rows[0]), 1)

/* ---- the table ---------------------------------------------------------- */

#define L16  .len = 16
#define ADDR .addr = 1, .addrlen = sizeof(struct sockaddr_in)

static const struct row rows_null_watcher[] = {
    {"read", F_READ, W_NULL, L16, .expect = -EINVAL},
    {"pool read", F_READ, W_NULL, .buf = B_NULL, L16, .expect = -EINVAL},
    {"full read", F_READ_FULL, W_NULL, L16, .expect = -EINVAL},
    {"read with deadline", F_READ_DL, W_NULL, L16, .expect = -EINVAL},
    {"write", F_WRITE, W_NULL, L16, .expect = -EINVAL},
    {"write with deadline", F_WRITE_DL, W_NULL, L16, .expect = -EINVAL},
    {"writev", F_WRITEV, W_NULL, .iov = IOV_OK, .count = 1, .expect = -EINVAL},
    {"one READ", F_SUBMIT, W_NULL, .op = PROACT_OP_READ, L16, .count = 1, .expect = -EINVAL},
    {"accept", F_ACCEPT, W_NULL, .fd = FD_LISTEN, .expect = -EINVAL},
    {"connect", F_CONNECT, W_NULL, .fd = FD_UNREG, ADDR, .expect = -EINVAL},
    {"shutdown for writing", F_SHUTW, W_NULL, .expect = -EINVAL},
    {"recvfrom", F_RECVFROM, W_NULL, L16, .expect = -EINVAL},
    {"sendto", F_SENDTO, W_NULL, L16, .expect = -EINVAL},
    {"free", F_FREE, W_NULL, .expect = -EINVAL},
    {"detach", F_DETACH, W_NULL, .expect = -EINVAL},
    {"wait", F_WAIT, W_NULL, .count = 4, .expect = -EINVAL},
    {"wakeup", F_WAKEUP, W_NULL, .expect = -EINVAL},
    {"shutdown", F_SHUTDOWN, W_NULL, .expect = -EINVAL},
};

static const struct row rows_null_pointers[] = {
    {"NULL out", F_NEW, .count = 0, .expect = -EINVAL},
    {"options.reserved nonzero", F_NEW, .count = 1, .expect = -EINVAL},
    {"unknown backend name", F_NEW, .count = 2, .expect = -EINVAL},
    {"a backend this build lacks", F_NEW, .count = 3, .expect = -ENOSYS},
    {"pool_buffer_count 2^20", F_NEW, .count = 4, .expect = ANY_NEG},
    {"pool_buffer_size UINT32_MAX", F_NEW, .count = 5, .expect = ANY_NEG},
    {"NULL buf", F_READ_FULL, .buf = B_NULL, L16, .expect = -EINVAL},
    {"NULL buf with PROACT_FULL", F_READ_DL, .buf = B_NULL, L16, .flags = PROACT_FULL,
     .expect = -EINVAL},
    {"NULL buf", F_WRITE, .buf = B_NULL, L16, .expect = -EINVAL},
    {"NULL buf", F_WRITE_DL, .buf = B_NULL, L16, .expect = -EINVAL},
    {"pool buffer already released", F_WRITE, .buf = B_STALE_POOL, .len = 1, .expect = -EINVAL},
    {"NULL iov, iovcnt 1", F_WRITEV, .iov = IOV_NULL, .count = 1, .expect = -EINVAL},
    {"NULL reqs, n 1", F_SUBMIT, .buf = B_NULL_ARRAY, .count = 1, .expect = -EINVAL},
    {"NULL reqs, n 0", F_SUBMIT, .buf = B_NULL_ARRAY, .count = 0, .expect = -EINVAL},
    {"NULL out", F_WAIT, .buf = B_NULL, .count = 4, .expect = -EINVAL},
    {"NULL addr", F_CONNECT, .fd = FD_UNREG, .addrlen = 16, .expect = -EINVAL},
    {"addrlen 0", F_CONNECT, .fd = FD_UNREG, .addr = 1, .expect = -EINVAL},
    {"addr with addrlen 0", F_ACCEPT, .fd = FD_LISTEN, .addr = 1, .expect = -EINVAL},
    {"NULL addr with addrlen 16", F_ACCEPT, .fd = FD_LISTEN, .addrlen = 16, .expect = ANY_NEG},
    {"NULL addr with addrlen 16", F_RECVFROM, L16, .addrlen = 16, .expect = ANY_NEG},
    {"NULL buf", F_SENDTO, .buf = B_NULL, L16, .expect = ANY_NEG},
};

/* Every request function against one kind of bad fd. */
/* clang-format off */
#define BAD_FD_ROWS(sel, what, e)                                                          \
	{what, F_READ, .fd = sel, L16, .expect = e},                                       \
	{what, F_READ, .fd = sel, .buf = B_NULL, L16, .expect = e},                        \
	{what, F_READ_FULL, .fd = sel, L16, .expect = e},                                  \
	{what, F_READ_DL, .fd = sel, L16, .expect = e},                                    \
	{what, F_WRITE, .fd = sel, L16, .expect = e},                                      \
	{what, F_WRITE_DL, .fd = sel, L16, .expect = e},                                   \
	{what, F_WRITEV, .fd = sel, .iov = IOV_OK, .count = 1, .expect = e},               \
	{what, F_SUBMIT, .fd = sel, .op = PROACT_OP_READ, L16, .count = 1, .expect = e},   \
	{what, F_ACCEPT, .fd = sel, .expect = e},                                          \
	{what, F_CONNECT, .fd = sel, ADDR, .expect = e},                                   \
	{what, F_SHUTW, .fd = sel, .expect = e},                                           \
	{what, F_RECVFROM, .fd = sel, L16, .expect = e},                                   \
	{what, F_SENDTO, .fd = sel, L16, .expect = e}
/* clang-format on */

static const struct row rows_bad_fds[] = {
    BAD_FD_ROWS(FD_NEG, "fd -1", -EBADF),
    BAD_FD_ROWS(FD_MIN, "fd INT_MIN", -EBADF),
    BAD_FD_ROWS(FD_CLOSED, "fd not open", -EBADF),
    BAD_FD_ROWS(FD_FILE, "regular file", -ENOTSUP),
    BAD_FD_ROWS(FD_DIR, "directory", -ENOTSUP),
    {"fd -1", F_FREE, .fd = FD_NEG, .expect = -EBADF},
    {"fd INT_MIN", F_FREE, .fd = FD_MIN, .expect = -EBADF},
    {"fd not open", F_FREE, .fd = FD_CLOSED, .expect = -ENOENT},
    {"regular file (never registered)", F_FREE, .fd = FD_FILE, .expect = -ENOENT},
    {"unregistered socket", F_FREE, .fd = FD_UNREG, .expect = -ENOENT},
    {"fd -1", F_DETACH, .fd = FD_NEG, .expect = -EBADF},
    {"fd not open", F_DETACH, .fd = FD_CLOSED, .expect = -ENOENT},
    {"directory (never registered)", F_DETACH, .fd = FD_DIR, .expect = -ENOENT},
    {"unregistered socket", F_DETACH, .fd = FD_UNREG, .expect = -ENOENT},
};

static const struct row rows_lengths[] = {
    {"len 0", F_READ, .len = 0, .expect = -EINVAL},
    {"len 0", F_READ_FULL, .len = 0, .expect = -EINVAL},
    {"len 0", F_READ_DL, .len = 0, .expect = -EINVAL},
    {"len 0", F_WRITE, .len = 0, .expect = -EINVAL},
    {"len 0", F_WRITE_DL, .len = 0, .expect = -EINVAL},
    {"len 0 with a buffer", F_RECVFROM, .len = 0, .expect = -EINVAL},
    {"len 0", F_SENDTO, .len = 0, .expect = -EINVAL},
    {"len 0 (WRITE)", F_SUBMIT, .op = PROACT_OP_WRITE, .count = 1, .expect = -EINVAL},
    {"len SIZE_MAX", F_READ, .len = SIZE_MAX, .expect = -EINVAL},
    {"len SSIZE_MAX+1", F_READ, .len = (size_t)SSIZE_MAX + 1, .expect = -EINVAL},
    {"len SIZE_MAX", F_READ_FULL, .len = SIZE_MAX, .expect = -EINVAL},
    {"len SIZE_MAX", F_READ_DL, .len = SIZE_MAX, .expect = -EINVAL},
    {"len SIZE_MAX", F_WRITE, .len = SIZE_MAX, .expect = -EINVAL},
    {"len SSIZE_MAX+1", F_WRITE, .len = (size_t)SSIZE_MAX + 1, .expect = -EINVAL},
    {"len SIZE_MAX", F_WRITE_DL, .len = SIZE_MAX, .expect = -EINVAL},
    {"len SIZE_MAX", F_RECVFROM, .len = SIZE_MAX, .expect = -EINVAL},
    {"len SIZE_MAX", F_SENDTO, .len = SIZE_MAX, .expect = -EINVAL},
    {"segments totalling > SSIZE_MAX", F_WRITEV, .iov = IOV_OVER_SSIZE, .count = 2,
     .expect = -EINVAL},
};

static const struct row rows_iov[] = {
    {"iovcnt 0", F_WRITEV, .iov = IOV_OK, .count = 0, .expect = -EINVAL},
    {"iovcnt -1", F_WRITEV, .iov = IOV_OK, .count = -1, .expect = -EINVAL},
    {"iovcnt INT_MIN", F_WRITEV, .iov = IOV_OK, .count = INT_MIN, .expect = -EINVAL},
    {"iovcnt IOV_MAX+1", F_WRITEV, .iov = IOV_OK, .count = IOV_MAX + 1, .expect = -EINVAL},
    {"NULL iov, iovcnt 0", F_WRITEV, .iov = IOV_NULL, .count = 0, .expect = -EINVAL},
    {"segment with NULL base, len 4", F_WRITEV, .iov = IOV_NULL_BASE, .count = 2,
     .expect = -EINVAL},
    {"every segment empty", F_WRITEV, .iov = IOV_ALL_EMPTY, .count = 2, .expect = -EINVAL},
    {"WRITEV, iovcnt 0", F_SUBMIT, .op = PROACT_OP_WRITEV, .buf = B_NULL, .iov = IOV_OK, .count = 0,
     .expect = -EINVAL},
    {"WRITEV, iovcnt IOV_MAX+1", F_SUBMIT, .op = PROACT_OP_WRITEV, .buf = B_NULL, .iov = IOV_OK,
     .count = IOV_MAX + 1, .expect = -EINVAL},
    {"WRITEV, NULL base", F_SUBMIT, .op = PROACT_OP_WRITEV, .buf = B_NULL, .iov = IOV_NULL_BASE,
     .count = 2, .expect = -EINVAL},
};

static const struct row rows_submit[] = {
    {"n -1", F_SUBMIT, .op = PROACT_OP_READ, L16, .count = -1, .expect = ANY_NEG},
    {"n INT_MIN", F_SUBMIT, .op = PROACT_OP_READ, L16, .count = INT_MIN, .expect = ANY_NEG},
    {"n 0", F_SUBMIT, .op = PROACT_OP_READ, L16, .count = 0, .expect = 0},
    {"op 0", F_SUBMIT, .op = 0, L16, .count = 1, .expect = -EINVAL},
    {"op FREE", F_SUBMIT, .op = PROACT_OP_FREE, L16, .count = 1, .expect = -EINVAL},
    {"op DETACH", F_SUBMIT, .op = PROACT_OP_DETACH, L16, .count = 1, .expect = -EINVAL},
    {"op 13", F_SUBMIT, .op = 13, L16, .count = 1, .expect = -EINVAL},
    {"op 255", F_SUBMIT, .op = 255, L16, .count = 1, .expect = -EINVAL},
    {"READ, flags 0x2", F_SUBMIT, .op = PROACT_OP_READ, L16, .flags = 2, .count = 1,
     .expect = -EINVAL},
    {"READ, flags 0x80000000", F_SUBMIT, .op = PROACT_OP_READ, L16, .flags = 0x80000000u,
     .count = 1, .expect = -EINVAL},
    {"WRITE, flags PROACT_FULL", F_SUBMIT, .op = PROACT_OP_WRITE, L16, .flags = PROACT_FULL,
     .count = 1, .expect = -EINVAL},
    {"flags 0x80", F_READ_DL, L16, .flags = 0x80, .expect = -EINVAL},
    {"READ, reserved[0] = 1", F_SUBMIT, .op = PROACT_OP_READ, L16, .reserved = 1, .count = 1,
     .expect = -EINVAL},
    {"READ with iov set", F_SUBMIT, .op = PROACT_OP_READ, L16, .iov = IOV_OK, .count = 1,
     .expect = ANY_NEG},
    {"READ with addr set", F_SUBMIT, .op = PROACT_OP_READ, L16, ADDR, .count = 1,
     .expect = ANY_NEG},
    {"SHUTDOWN with a buffer", F_SUBMIT, .op = PROACT_OP_SHUTDOWN, L16, .count = 1,
     .expect = ANY_NEG},
    {"max 0", F_WAIT, .count = 0, .expect = -EINVAL},
    {"max -1", F_WAIT, .count = -1, .expect = -EINVAL},
    {"max INT_MIN", F_WAIT, .count = INT_MIN, .expect = -EINVAL},
};

static const struct row rows_shut_down[] = {
    {"valid read", F_READ, W_DOWN, .fd = FD_UNREG, L16, .expect = -ESHUTDOWN},
    {"valid pool read", F_READ, W_DOWN, .fd = FD_UNREG, .buf = B_NULL, .expect = -ESHUTDOWN},
    {"valid full read", F_READ_FULL, W_DOWN, .fd = FD_UNREG, L16, .expect = -ESHUTDOWN},
    {"valid read", F_READ_DL, W_DOWN, .fd = FD_UNREG, L16, .expect = -ESHUTDOWN},
    {"valid write", F_WRITE, W_DOWN, .fd = FD_UNREG, L16, .expect = -ESHUTDOWN},
    {"valid write", F_WRITE_DL, W_DOWN, .fd = FD_UNREG, L16, .expect = -ESHUTDOWN},
    {"valid writev", F_WRITEV, W_DOWN, .fd = FD_UNREG, .iov = IOV_OK, .count = 3,
     .expect = -ESHUTDOWN},
    {"one valid READ", F_SUBMIT, W_DOWN, .fd = FD_UNREG, .op = PROACT_OP_READ, L16, .count = 1,
     .expect = -ESHUTDOWN},
    {"n 0", F_SUBMIT, W_DOWN, .fd = FD_UNREG, .op = PROACT_OP_READ, L16, .count = 0,
     .expect = -ESHUTDOWN},
    {"valid accept", F_ACCEPT, W_DOWN, .fd = FD_LISTEN, .expect = -ESHUTDOWN},
    {"valid connect", F_CONNECT, W_DOWN, .fd = FD_UNREG, ADDR, .expect = -ESHUTDOWN},
    {"valid shutdown for writing", F_SHUTW, W_DOWN, .fd = FD_UNREG, .expect = -ESHUTDOWN},
    {"valid recvfrom", F_RECVFROM, W_DOWN, .fd = FD_UNREG, L16, .expect = -ESHUTDOWN},
    {"valid sendto", F_SENDTO, W_DOWN, .fd = FD_UNREG, L16, .expect = -ESHUTDOWN},
    {"any fd", F_FREE, W_DOWN, .fd = FD_UNREG, .expect = -ESHUTDOWN},
    {"any fd", F_DETACH, W_DOWN, .fd = FD_UNREG, .expect = -ESHUTDOWN},
    {"valid wait", F_WAIT, W_DOWN, .count = 4, .expect = -ESHUTDOWN},
    {"wakeup", F_WAKEUP, W_DOWN, .expect = -ESHUTDOWN},
    {"second shutdown", F_SHUTDOWN, W_DOWN, .expect = -ESHUTDOWN},
    /* Which error wins is not stated: the header says "every call". */
    {"and fd -1", F_READ, W_DOWN, .fd = FD_NEG, L16, .expect = -ESHUTDOWN},
    {"and len 0", F_WRITE, W_DOWN, .fd = FD_UNREG, .len = 0, .expect = -ESHUTDOWN},
    {"and op 0", F_SUBMIT, W_DOWN, .fd = FD_UNREG, .op = 0, L16, .count = 1, .expect = -ESHUTDOWN},
    {"and fd -1", F_FREE, W_DOWN, .fd = FD_NEG, .expect = -ESHUTDOWN},
    {"and max 0", F_WAIT, W_DOWN, .count = 0, .expect = -ESHUTDOWN},
};

/* Free pending (FREE not delivered yet): no proact_wait between the rows. */
static const struct row rows_freeing[] = {
    {"fd being freed", F_READ, .fd = FD_FREEING, L16, .expect = -EALREADY},
    {"fd being freed", F_READ, .fd = FD_FREEING, .buf = B_NULL, .expect = -EALREADY},
    {"fd being freed", F_READ_FULL, .fd = FD_FREEING, L16, .expect = -EALREADY},
    {"fd being freed", F_WRITE, .fd = FD_FREEING, L16, .expect = -EALREADY},
    {"fd being freed", F_WRITEV, .fd = FD_FREEING, .iov = IOV_OK, .count = 2, .expect = -EALREADY},
    {"fd being freed", F_SUBMIT, .fd = FD_FREEING, .op = PROACT_OP_WRITE, L16, .count = 1,
     .expect = -EALREADY},
    {"fd being freed", F_SHUTW, .fd = FD_FREEING, .expect = -EALREADY},
    {"fd being freed", F_RECVFROM, .fd = FD_FREEING, L16, .expect = -EALREADY},
    {"fd being freed", F_SENDTO, .fd = FD_FREEING, L16, .expect = -EALREADY},
    {"double free (pending)", F_FREE, .fd = FD_FREEING, .expect = -EALREADY},
    {"free, then detach", F_DETACH, .fd = FD_FREEING, .expect = -EALREADY},
};

/* After the FREE completion: the number is closed and unregistered. */
static const struct row rows_freed[] = {
    {"freed fd (closed)", F_READ, .fd = FD_FREEING, L16, .expect = -EBADF},
    {"freed fd (closed)", F_WRITE, .fd = FD_FREEING, L16, .expect = -EBADF},
    {"freed fd (closed)", F_WRITEV, .fd = FD_FREEING, .iov = IOV_OK, .count = 1, .expect = -EBADF},
    {"double free (after FREE)", F_FREE, .fd = FD_FREEING, .expect = -ENOENT},
    {"detach after FREE", F_DETACH, .fd = FD_FREEING, .expect = -ENOENT},
};

/* Detach pending, then after the DETACH completion. */
static const struct row rows_detaching[] = {
    {"detach, then free", F_FREE, .fd = FD_FREEING, .expect = -EALREADY},
    {"double detach (pending)", F_DETACH, .fd = FD_FREEING, .expect = -EALREADY},
    {"fd being detached", F_WRITE, .fd = FD_FREEING, L16, .expect = -EALREADY},
};

static const struct row rows_detached[] = {
    {"detached fd", F_FREE, .fd = FD_FREEING, .expect = -ENOENT},
    {"detached fd", F_DETACH, .fd = FD_FREEING, .expect = -ENOENT},
};

static void test_null_watcher(void **state)
{
	struct fx *f = *state;
	RUN(f, rows_null_watcher);
	assert_null(proact_backend(NULL));
	proact_watcher_destroy(NULL);
	after_group(f);
}

static void test_null_pointers(void **state)
{
	struct fx *f = *state;
	RUN(f, rows_null_pointers);
	after_group(f);
}

static void test_bad_fds(void **state)
{
	struct fx *f = *state;
	RUN(f, rows_bad_fds);
	/* neither the file nor the directory was changed */
	assert_false(fcntl(f->file, F_GETFL) & O_NONBLOCK);
	assert_false(fcntl(f->dir, F_GETFL) & O_NONBLOCK);
	after_group(f);
}

static void test_lengths(void **state)
{
	struct fx *f = *state;
	RUN(f, rows_lengths);
	after_group(f);
}

static void test_iov(void **state)
{
	struct fx *f = *state;
	RUN(f, rows_iov);
	after_group(f);
}

static void test_submit_ops_flags(void **state)
{
	struct fx *f = *state;
	RUN(f, rows_submit);
	after_group(f);
}

static void test_shut_down(void **state)
{
	struct fx *f = *state;
	RUN(f, rows_shut_down);
	assert_non_null(proact_backend(f->down)); /* still names its backend */
	after_group(f);
}

/* A registered socket with one read pending, then closed through the watcher. */
static void start_close(struct fx *f, int detach, int *peer, char *rd)
{
	int p[2];
	t_unix_pair(p);
	f->freeing = p[0];
	*peer = p[1];
	assert_int_equal(proact_read(f->w, f->freeing, rd, 8, rd), 0);
	int rc = detach ? proact_detach(f->w, f->freeing, f) : proact_free(f->w, f->freeing, f);
	assert_int_equal(rc, 0);
}

/* The closing fd's completions, and nothing of the refused rows. */
static void finish_close(struct fx *f, int op, const char *rd)
{
	struct proact_completion c[8];
	assert_int_equal(t_collect(f->w, c, 8, 200), 2);
	assert_ptr_equal(c[0].ctx, rd);
	assert_int_equal(c[0].error, ECANCELED);
	assert_int_equal(c[1].op, op);
	assert_ptr_equal(c[1].ctx, f);
}

static void test_freed_fd(void **state)
{
	struct fx *f = *state;
	int peer;
	char rd[8];
	start_close(f, 0, &peer, rd);
	run_rows(f, rows_freeing, sizeof(rows_freeing) / sizeof(rows_freeing[0]), 0);
	finish_close(f, PROACT_OP_FREE, rd);
	assert_int_equal(fcntl(f->freeing, F_GETFD), -1);
	RUN(f, rows_freed);
	close(peer);
	after_group(f);
}

static void test_detached_fd(void **state)
{
	struct fx *f = *state;
	int peer;
	char rd[8];
	start_close(f, 1, &peer, rd);
	run_rows(f, rows_detaching, sizeof(rows_detaching) / sizeof(rows_detaching[0]), 0);
	finish_close(f, PROACT_OP_DETACH, rd);
	assert_false(fcntl(f->freeing, F_GETFL) & O_NONBLOCK); /* blocking again */
	RUN(f, rows_detached);
	/* The program may hand it back: a new registration that works. */
	still_works(f, f->freeing, peer);
	assert_int_equal(proact_free(f->w, f->freeing, NULL), 0);
	assert_int_equal(t_collect(f->w, f->out, 1, WAIT_MS), 1);
	assert_int_equal(f->out[0].op, PROACT_OP_FREE);
	close(peer);
	after_group(f);
}

/* ---- beside the table --------------------------------------------------- */

/*
 * A refused fd must not cost memory: the number of a descriptor that is not
 * open (up to INT_MAX) says nothing about the table the watcher needs.
 */
static void test_bad_fd_memory(void **state)
{
	struct fx *f = *state;
	const int fds[] = {19999, 1 << 20, INT_MAX};
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
		long before = t_status_kb("RssAnon");
		assert_int_equal(proact_read(f->w, fds[i], f->buf, 16, NULL), -EBADF);
		assert_int_equal(proact_free(f->w, fds[i], NULL), -ENOENT);
		long grown = t_status_kb("RssAnon") - before;
		if (grown > 1024)
			fail_msg("a read on fd %d (not open) grew RssAnon by %ld KiB", fds[i],
			         grown);
	}
	after_group(f);
}

/* Calls proact_wakeup after 5 s unless told to stop: a hung wait ends. */
struct rescue {
	proact_watcher *w;
	atomic_int stop, fired;
	pthread_t th;
};

static void *rescue_main(void *arg)
{
	struct rescue *r = arg;
	for (int i = 0; i < 500 && !atomic_load(&r->stop); i++)
		usleep(10 * 1000);
	if (!atomic_load(&r->stop)) {
		atomic_store(&r->fired, 1);
		proact_wakeup(r->w);
	}
	return NULL;
}

static void test_deadline_edges(void **state)
{
	struct fx *f = *state;
	struct proact_completion c[4];
	char b[8];
	/* already passed: accepted, completes ETIMEDOUT with nothing read */
	assert_int_equal(proact_read_deadline(f->w, f->reg, b, sizeof(b), 0, 1, b), 0);
	assert_int_equal(t_collect(f->w, c, 2, 200), 1);
	assert_ptr_equal(c[0].ctx, b);
	assert_int_equal(c[0].error, ETIMEDOUT);
	assert_int_equal(c[0].size, 0);

	/* the end of the clock: the read never expires, and a bounded wait
	   must still return on its own (the rescue thread only ends a hang) */
	assert_int_equal(proact_read_deadline(f->w, f->reg, b, sizeof(b), 0, UINT64_MAX, b), 0);
	struct rescue r = {.w = f->w};
	assert_int_equal(pthread_create(&r.th, NULL, rescue_main, &r), 0);
	int n = proact_wait(f->w, c, 4, 20);
	atomic_store(&r.stop, 1);
	pthread_join(r.th, NULL);
	assert_int_equal(n, 0);
	if (atomic_load(&r.fired))
		fail_msg("proact_wait(20 ms) with a deadline of UINT64_MAX hung until woken");
	t_write_all(f->reg_peer, "d", 1);
	assert_int_equal(t_collect(f->w, c, 1, WAIT_MS), 1);
	assert_int_equal(c[0].error, 0);
	assert_int_equal(c[0].size, 1);

	after_group(f);
}

static void test_deadline_in_range(void **state)
{
	struct fx *f = *state;
	struct proact_completion c[4];
	/* proact_deadline_in must not wrap around to the past */
	const uint64_t ms[] = {UINT64_MAX / 1000000u + 1, UINT64_MAX / 2, UINT64_MAX};
	for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++) {
		uint64_t now = proact_now();
		if (proact_deadline_in(ms[i]) < now)
			fail_msg("proact_deadline_in(%llu) wrapped to a time in the past",
			         (unsigned long long)ms[i]);
	}
	/* a timeout below -1: undocumented; with a wakeup pending it returns */
	assert_int_equal(proact_wakeup(f->w), 0);
	assert_int_equal(proact_wait(f->w, c, 4, -2), 0);
	after_group(f);
}

/* One thread blocks in proact_wait; a second waiter gets -EBUSY. */
struct waiter {
	proact_watcher *w;
	int rc;
	atomic_int inside;
	pthread_t th;
};

static void *waiter_main(void *arg)
{
	struct waiter *t = arg;
	struct proact_completion c[4];
	for (int i = 0; i < 1000; i++) {
		atomic_store(&t->inside, 1);
		t->rc = proact_wait(t->w, c, 4, -1);
		if (t->rc != -EBUSY) /* the main thread was inside for a moment */
			break;
	}
	atomic_store(&t->inside, 0);
	return NULL;
}

static void test_concurrent_wait(void **state)
{
	struct fx *f = *state;
	struct waiter t = {.w = f->w};
	assert_int_equal(pthread_create(&t.th, NULL, waiter_main, &t), 0);
	struct proact_completion c[4];
	int busy = 0;
	for (int i = 0; i < 5000 && !busy; i++) {
		int rc = proact_wait(f->w, c, 4, 0);
		assert_true(rc == 0 || rc == -EBUSY);
		busy = rc == -EBUSY;
		if (!busy)
			usleep(1000);
	}
	assert_int_equal(proact_wakeup(f->w), 0);
	pthread_join(t.th, NULL);
	assert_true(busy);
	assert_int_equal(t.rc, 0);
	after_group(f);
}

/*
 * "The iov array and every segment stay the watcher's until the completion is
 * delivered": after that the program may reuse the array at once. Doing so
 * must not touch the pool buffers the array named before (nor any other).
 */
static void pool_read(struct fx *f, int fd, int peer, const char *data, void **buf)
{
	assert_int_equal(proact_read(f->w, fd, NULL, 0, NULL), 0);
	t_write_all(peer, data, 8);
	assert_int_equal(t_collect(f->w, f->out, 1, WAIT_MS), 1);
	assert_int_equal(f->out[0].size, 8);
	*buf = f->out[0].buf;
}

static void test_iov_reuse_after_completion(void **state)
{
	struct fx *f = *state;
	enum { FILL = 1 << 20 };
	int b[2], c[2];
	t_unix_pair(b);
	t_unix_pair(c);
	uint8_t *fill = malloc(FILL);
	assert_non_null(fill);
	memset(fill, 'f', FILL);
	void *p1, *p2, *p3;
	/* W1 sends pool buffer P1 but waits behind a write the peer does not read. */
	assert_int_equal(proact_write(f->w, b[0], fill, FILL, fill), 0);
	pool_read(f, f->reg, f->reg_peer, "11111111", &p1);
	assert_int_equal(proact_write(f->w, b[0], p1, 8, p1), 0);
	/* W2: a writev of pool buffer P2 through the array v, completed. */
	pool_read(f, f->reg, f->reg_peer, "22222222", &p2);
	struct iovec v[1] = {{p2, 8}};
	assert_int_equal(proact_writev(f->w, c[0], v, 1, v), 0);
	assert_int_equal(t_collect(f->w, f->out, 1, WAIT_MS), 1);
	assert_ptr_equal(f->out[0].ctx, v);
	assert_int_equal(f->out[0].error, 0);
	v[0].iov_base = p1; /* the array is ours again: reused for the next message */
	pool_read(f, f->reg, f->reg_peer, "33333333", &p3);
	/* The peer drains b: W1 must still carry P1's bytes. */
	char tail[8];
	t_set_rcvtimeo(b[1], WAIT_MS / 1000);
	for (size_t got = 0; got < FILL;) {
		ssize_t k = recv(b[1], fill, FILL - got, 0);
		assert_true(k > 0);
		got += (size_t)k;
		assert_int_equal(proact_wait(f->w, f->out, 8, 0) >= 0, 1);
	}
	t_read_all(b[1], tail, 8);
	char x[8];
	t_read_all(c[1], x, 8);
	close(b[1]);
	close(c[1]);
	free(fill);
	if (memcmp(tail, "11111111", 8) != 0)
		fail_msg("a pending write's pool buffer was reused: sent \"%.8s\" (P3 %s P1)", tail,
		         p3 == p1 ? "==" : "!=");
	assert_memory_equal(x, "22222222", 8);
	after_group(f);
}

/* ---- calls from other threads while the watcher shuts down -------------- */

enum { HAMMERS = 3, HAMMER_CALLS = 5000000 };

struct hammer {
	proact_watcher *w;
	int fd, peer, other; /* other: never registered, for free and detach */
	atomic_int *down;    /* set once proact_watcher_shutdown returned */
	int queued;          /* submissions that returned 0 */
	int late_bad;        /* calls made after shutdown that did not get -ESHUTDOWN */
	int wrong;           /* results outside what proact.h allows */
	char buf[4][64];
	/* The writevs' array: the watcher's until their completions, so it must
	   outlive the call; set once, every writev of this thread shares it. */
	struct iovec iov[2];
	pthread_t th;
};

/* One call; returns 0 for a queued submission, 1 for another success. */
static int hammer_call(struct hammer *h, int i)
{
	struct proact_request q = {
	    .fd = h->fd, .op = PROACT_OP_WRITE, .buf = h->buf[2], .len = 16, .ctx = h};
	int rc;
	switch (i % 7) {
	case 0:
		return proact_read(h->w, h->fd, h->buf[0], 64, h);
	case 1:
		return proact_write(h->w, h->fd, h->buf[3], 16, h);
	case 2:
		return proact_writev(h->w, h->fd, h->iov, 2, h);
	case 3:
		rc = proact_submit(h->w, &q, 1);
		return rc == 1 ? 0 : rc;
	case 4:
		return proact_read(h->w, h->fd, NULL, 0, h);
	case 5:
		rc = proact_wakeup(h->w);
		return rc == 0 ? 1 : rc;
	default:
		rc = i & 8 ? proact_free(h->w, h->other, h) : proact_detach(h->w, h->other, h);
		return rc == -ENOENT ? 1 : rc;
	}
}

static void *hammer_main(void *arg)
{
	struct hammer *h = arg;
	int after = 0;
	for (int i = 0; i < HAMMER_CALLS && after < 1000; i++) {
		int was_down = atomic_load(h->down);
		int rc = hammer_call(h, i);
		after += was_down;
		if (rc == 0)
			h->queued++;
		else if (rc != 1 && rc != -ESHUTDOWN && rc != -EAGAIN) /* EAGAIN: per-fd limit */
			h->wrong++;
		if (was_down && rc != -ESHUTDOWN)
			h->late_bad++;
	}
	return NULL;
}

/* The waiting thread: drives the I/O until the shutdown ends its wait. */
static void *drive_main(void *arg)
{
	struct hammer *h = arg;
	struct proact_completion c[64];
	for (int i = 0; i < 1000000; i++) {
		int rc = proact_wait(h->w, c, 64, -1);
		if (rc < 0) {
			h->wrong += rc != -ESHUTDOWN;
			break;
		}
	}
	return NULL;
}

static void test_calls_during_shutdown(void **state)
{
	(void)state;
	int base = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	atomic_int down = 0;
	struct hammer h[HAMMERS + 1];
	memset(h, 0, sizeof(h));
	for (int i = 0; i <= HAMMERS; i++) {
		int p[2], q[2];
		t_unix_pair(p);
		t_unix_pair(q);
		h[i] =
		    (struct hammer){.w = w, .fd = p[0], .peer = p[1], .other = q[0], .down = &down};
		h[i].iov[0] = (struct iovec){h[i].buf[1], 8};
		h[i].iov[1] = (struct iovec){h[i].buf[1] + 8, 8};
		close(q[1]);
	}
	assert_int_equal(pthread_create(&h[HAMMERS].th, NULL, drive_main, &h[HAMMERS]), 0);
	for (int i = 0; i < HAMMERS; i++)
		assert_int_equal(pthread_create(&h[i].th, NULL, hammer_main, &h[i]), 0);
	usleep(100 * 1000);
	assert_int_equal(proact_watcher_shutdown(w), 0);
	atomic_store(&down, 1);
	for (int i = 0; i <= HAMMERS; i++)
		pthread_join(h[i].th, NULL);
	for (int i = 0; i <= HAMMERS; i++) {
		assert_int_equal(h[i].wrong, 0);
		assert_int_equal(h[i].late_bad, 0);
		/* registered by a successful submission: shutdown closed it */
		int open = fcntl(h[i].fd, F_GETFD) != -1;
		assert_int_equal(open, h[i].queued == 0);
		if (open)
			close(h[i].fd);
		close(h[i].peer);
		close(h[i].other);
		memset(h[i].buf, 0xee, sizeof(h[i].buf)); /* the library is done with them */
	}
	assert_int_equal(proact_wait(w, NULL, 0, 0), -ESHUTDOWN); /* shut down comes first */
	proact_watcher_destroy(w);
	assert_int_equal(t_fd_count(), base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_null_watcher, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_null_pointers, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_fds, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lengths, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_iov, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_submit_ops_flags, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_shut_down, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_freed_fd, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_detached_fd, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_fd_memory, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_deadline_edges, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_deadline_in_range, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_concurrent_wait, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_iov_reuse_after_completion, setup, teardown),
	    cmocka_unit_test(test_calls_during_shutdown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
