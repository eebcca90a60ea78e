/* SPDX-License-Identifier: MIT */
/*
 * proact_fuzz.c - libFuzzer harness: each input becomes a sequence of proact
 * calls and peer-side syscalls over a few socket pairs on one watcher (format
 * in fuzz_ops.h), and every result is checked against the model in
 * fuzz_model.h. A mismatch aborts with a message.
 *
 * The watcher runs on the backend named by PROACT_BACKEND. Each input runs in
 * bounded time: waits use zero or short timeouts within a small budget, and
 * the closing drain gives up (and fails) after a generous limit.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_model.h"
#include "fuzz_ops.h"

#define WAIT_BUDGET_MS 40    /* total time one input may spend in timed waits */
#define DRAIN_LIMIT_MS 10000 /* free/detach not done by then: a hang */
#define MAX_OPS        250   /* at most 4 records each, and one free per slot after */
_Static_assert(MAX_OPS * 4 + FZ_SLOTS <= FZ_RECS, "an input can run out of records");

struct input {
	const uint8_t *p;
	size_t n;
	int budget_ms;
};

static unsigned next(struct input *in)
{
	if (in->n == 0)
		return 0;
	in->n--;
	return *in->p++;
}

static const size_t read_lens[8] = {1, 3, 16, 100, 1000, 4096, 20000, 65536};
static const size_t pool_caps[8] = {0, 1, 7, 100, 5000, 0, 64, 3};
static const size_t write_lens[8] = {1, 10, 300, 1000, 4096, 9000, 20000, 70000};
static const size_t seg_lens[8] = {0, 1, 7, 600, 3000, 9000, 0, 2};
static const size_t peer_lens[8] = {1, 5, 100, 1000, 4000, 8000, 30000, 65536};

static uint64_t deadline_of(unsigned v)
{
	switch (v & 3) {
	case 1:
		return 1; /* long past */
	case 2:
		return proact_deadline_in(1);
	case 3:
		return proact_deadline_in(3);
	default:
		return 0;
	}
}

static uint8_t *random_bytes(struct fz *m, size_t n)
{
	uint8_t *b = malloc(n ? n : 1);
	FZ_CHECK(b, "out of memory");
	for (size_t i = 0; i < n; i++) {
		m->rng ^= m->rng << 13;
		m->rng ^= m->rng >> 17;
		m->rng ^= m->rng << 5;
		b[i] = (uint8_t)m->rng;
	}
	return b;
}

/* Whether slot s may get a submission now, and the error it must get. A
   closing slot only right after the free/detach call: once a wait ran, the
   close may be done and the fd number handed back (or reused). */
static bool slot_takes(const struct fz *m, int s, int *expect)
{
	const struct fz_slot *sl = &m->slot[s];
	*expect = 0;
	if (sl->state == S_OPEN || sl->state == S_REG)
		return true;
	*expect = -EALREADY;
	return sl->state == S_CLOSING && sl->fresh_close;
}

/* ---- requests ---- */

static void op_read(struct fz *m, struct input *in, bool pool)
{
	int s = (int)(next(in) % FZ_SLOTS), expect;
	unsigned a = next(in);
	if (!slot_takes(m, s, &expect) || (pool && m->pool_count == 0 && expect))
		return;
	struct fz_rec *r = fz_rec_new(m, s, pool ? K_POOL : K_READ, PROACT_OP_READ);
	if (!r)
		return;
	r->deadline = deadline_of(a >> 4);
	if (pool) {
		r->len = pool_caps[a & 7];
		if (m->pool_count == 0)
			expect = -ENOBUFS;
	} else {
		r->len = read_lens[a & 7];
		r->full = a & 8;
		r->buf = malloc(r->len);
		FZ_CHECK(r->buf, "out of memory");
		memset(r->buf, FZ_CANARY, r->len);
	}
	void *ctx = fz_ctx(m, r);
	int rc;
	if (r->deadline || (a & 0x40))
		rc = proact_read_deadline(m->w, r->fd, r->buf, r->len, r->full ? PROACT_FULL : 0,
		                          r->deadline, ctx);
	else if (r->full)
		rc = proact_read_full(m->w, r->fd, r->buf, r->len, ctx);
	else
		rc = proact_read(m->w, r->fd, r->buf, r->len, ctx);
	fz_submitted(m, r, rc, expect);
}

static void op_write(struct fz *m, struct input *in)
{
	int s = (int)(next(in) % FZ_SLOTS), expect;
	unsigned a = next(in);
	if (!slot_takes(m, s, &expect))
		return;
	struct fz_rec *r = fz_rec_new(m, s, K_WRITE, PROACT_OP_WRITE);
	if (!r)
		return;
	r->len = write_lens[a & 7];
	r->buf = random_bytes(m, r->len);
	r->deadline = deadline_of(a >> 4);
	void *ctx = fz_ctx(m, r);
	int rc = r->deadline || (a & 8)
	             ? proact_write_deadline(m->w, r->fd, r->buf, r->len, r->deadline, ctx)
	             : proact_write(m->w, r->fd, r->buf, r->len, ctx);
	fz_submitted(m, r, rc, expect);
}

/* Segments laid end to end in one block, so the gathered bytes are r->buf. */
static void writev_fill(struct fz *m, struct fz_rec *r, const size_t *lens, int cnt)
{
	size_t total = 0;
	for (int i = 0; i < cnt; i++)
		total += lens[i];
	r->len = total;
	r->buf = random_bytes(m, total);
	r->iov = malloc((size_t)cnt * sizeof(*r->iov));
	FZ_CHECK(r->iov, "out of memory");
	r->iovcnt = cnt;
	size_t off = 0;
	for (int i = 0; i < cnt; i++) {
		r->iov[i] = (struct iovec){.iov_base = r->buf + off, .iov_len = lens[i]};
		off += lens[i];
	}
}

static void op_writev(struct fz *m, struct input *in)
{
	int s = (int)(next(in) % FZ_SLOTS), expect;
	int cnt = 1 + (int)(next(in) % 4);
	size_t lens[4];
	for (int i = 0; i < cnt; i++)
		lens[i] = seg_lens[next(in) & 7];
	if (!slot_takes(m, s, &expect))
		return;
	struct fz_rec *r = fz_rec_new(m, s, K_WRITEV, PROACT_OP_WRITEV);
	if (!r)
		return;
	writev_fill(m, r, lens, cnt);
	if (r->len == 0)
		expect = -EINVAL; /* validation comes before any state of the fd */
	int rc = proact_writev(m->w, r->fd, r->iov, r->iovcnt, fz_ctx(m, r));
	fz_submitted(m, r, rc, expect);
}

/* One request of a batch: a user read, a pool read, a write, or a bad write. */
static struct fz_rec *batch_req(struct fz *m, int s, unsigned a, struct proact_request *q,
                                int *expect)
{
	static const uint8_t kinds[4] = {K_READ, K_POOL, K_WRITE, K_WRITE};
	uint8_t kind = kinds[a & 3];
	if (kind == K_POOL && m->pool_count == 0 && *expect)
		return NULL;
	struct fz_rec *r =
	    fz_rec_new(m, s, kind, kind == K_WRITE ? PROACT_OP_WRITE : PROACT_OP_READ);
	if (!r)
		return NULL;
	r->deadline = (a & 3) == 3 ? deadline_of(a >> 2) : 0;
	if (kind == K_WRITE) {
		r->len = write_lens[(a >> 2) & 7];
		r->buf = random_bytes(m, r->len);
	} else if (kind == K_READ) {
		r->len = read_lens[(a >> 2) & 7];
		r->buf = malloc(r->len);
		FZ_CHECK(r->buf, "out of memory");
		memset(r->buf, FZ_CANARY, r->len);
	} else if (m->pool_count == 0) {
		*expect = -ENOBUFS;
	}
	*q = (struct proact_request){.fd = r->fd,
	                             .op = r->op,
	                             .buf = r->buf,
	                             .len = r->len,
	                             .deadline = r->deadline,
	                             .ctx = fz_ctx(m, r)};
	if ((a >> 5) == 7) { /* zero length: refused with a buffer, whole buffer for the pool */
		q->len = 0;
		if (kind == K_POOL)
			r->len = 0;
		else
			*expect = -EINVAL;
	}
	return r;
}

static void op_submit(struct fz *m, struct input *in)
{
	int n = 1 + (int)(next(in) % 4), expect[4];
	struct proact_request q[4];
	struct fz_rec *r[4];
	int k;
	for (k = 0; k < n; k++) {
		int s = (int)(next(in) % FZ_SLOTS);
		unsigned a = next(in);
		if (!slot_takes(m, s, &expect[k]) ||
		    !(r[k] = batch_req(m, s, a, &q[k], &expect[k])))
			break;
	}
	if (k == 0)
		return;
	int rc = proact_submit(m->w, q, k);
	if (rc < 0)
		fz_submitted(m, r[0], rc, expect[0]);
	for (int i = rc < 0 ? 1 : 0; i < k; i++) {
		if (i < rc)
			fz_submitted(m, r[i], 0, expect[i]);
		else if (i == rc)
			fz_refused(m, r[i], expect[i]);
		else
			fz_rec_drop(r[i]);
	}
}

static void op_close(struct fz *m, struct input *in, bool detach)
{
	int s = (int)(next(in) % FZ_SLOTS), expect;
	if (!slot_takes(m, s, &expect))
		return;
	struct fz_rec *r = fz_rec_new(m, s, K_CLOSE, detach ? PROACT_OP_DETACH : PROACT_OP_FREE);
	if (!r)
		return;
	void *ctx = fz_ctx(m, r);
	int rc = detach ? proact_detach(m->w, r->fd, ctx) : proact_free(m->w, r->fd, ctx);
	fz_close_called(m, r, rc, detach);
	if (rc == 0)
		m->slot[s].fresh_close = true;
}

/* A zero-copy write of a pool buffer delivered by the latest wait. */
static void op_echo(struct fz *m, struct input *in)
{
	int s = (int)(next(in) % FZ_SLOTS), expect;
	unsigned a = next(in);
	if (m->npool_cur == 0 || !slot_takes(m, s, &expect))
		return;
	int k = (int)(a & 0x7f) % m->npool_cur;
	struct fz_rec *r = fz_rec_new(m, s, K_ECHO, PROACT_OP_WRITE);
	if (!r)
		return;
	r->pool = m->pool_cur[k];
	r->len = (a & 0x80) ? (m->pool_cur_len[k] + 1) / 2 : m->pool_cur_len[k];
	r->buf = malloc(r->len);
	FZ_CHECK(r->buf, "out of memory");
	memcpy(r->buf, r->pool, r->len); /* what the peer must get, even if the pool lies */
	int rc = proact_write(m->w, r->fd, r->pool, r->len, fz_ctx(m, r));
	fz_submitted(m, r, rc, expect);
}

/* ---- waiting ---- */

static int do_wait(struct fz *m, int max, int timeout_ms)
{
	struct proact_completion c[8];
	m->npool_cur = 0; /* this call releases the pool buffers of the last one */
	for (int s = 0; s < FZ_SLOTS; s++)
		m->slot[s].fresh_close = false;
	int n = proact_wait(m->w, c, max, timeout_ms);
	FZ_TRACE("wait(max %d, %d ms): %d\n", max, timeout_ms, n);
	FZ_CHECK(n >= 0 && n <= max, "proact_wait(max %d, %d ms) returned %d", max, timeout_ms, n);
	fz_check_batch(m, c, n);
	return n;
}

static void op_wait(struct fz *m, struct input *in)
{
	static const int timeouts[4] = {0, 0, 1, 5};
	unsigned a = next(in);
	int t = timeouts[(a >> 3) & 3];
	if (t > in->budget_ms)
		t = 0;
	in->budget_ms -= t;
	do_wait(m, 1 + (int)(a & 7), t);
}

static void op_wakeup(struct fz *m, struct input *in)
{
	unsigned a = next(in);
	int rc = proact_wakeup(m->w);
	FZ_CHECK(rc == 0, "proact_wakeup returned %d", rc);
	if (a & 1)
		do_wait(m, 8, -1); /* must return: the wakeup is pending */
}

/* ---- timers ---- */

static void op_timer(struct fz *m, struct input *in)
{
	unsigned a = next(in);
	struct fz_rec *r = fz_rec_new(m, 0, K_TIMER, PROACT_OP_TIMER);
	if (!r)
		return;
	r->fd = -1;
	bool submit = a & 4; /* no id: nothing cancels it, so it is never far */
	uint64_t at[4] = {0, 1, proact_deadline_in(2), proact_deadline_in(submit ? 3 : 60000)};
	r->deadline = at[a & 3];
	int rc;
	if (submit) {
		struct proact_request q = {
		    .fd = -1, .op = PROACT_OP_TIMER, .deadline = r->deadline, .ctx = fz_ctx(m, r)};
		rc = proact_submit(m->w, &q, 1);
		rc = rc == 1 ? 0 : rc;
	} else {
		rc = proact_timer(m->w, r->deadline, fz_ctx(m, r), &r->timer_id);
	}
	fz_timer_submitted(m, r, rc);
}

/* The k-th timer record of this input, or NULL if there is none. */
static struct fz_rec *timer_rec(struct fz *m, unsigned k)
{
	int n = 0;
	for (int i = 0; i < m->nrec; i++)
		n += m->rec[i].kind == K_TIMER;
	if (n == 0)
		return NULL;
	k %= (unsigned)n;
	for (int i = 0; i < m->nrec; i++)
		if (m->rec[i].kind == K_TIMER && k-- == 0)
			return &m->rec[i];
	return NULL;
}

static void op_timer_cancel(struct fz *m, struct input *in)
{
	struct fz_rec *r = timer_rec(m, next(in));
	if (r)
		fz_timer_cancelled(m, r, proact_timer_cancel(m->w, r->timer_id));
}

/* ---- the peer side and the sockets ---- */

static void op_peer(struct fz *m, struct input *in, int op)
{
	int s = (int)(next(in) % FZ_SLOTS);
	struct fz_slot *sl = &m->slot[s];
	if (op == OP_PEER_WRITE || op == OP_PEER_READ) {
		size_t len = peer_lens[next(in) & 7];
		if (op == OP_PEER_WRITE)
			fz_peer_write(m, s, len);
		else
			fz_peer_read(m, s, len);
		return;
	}
	if (sl->state == S_NONE || sl->peer_closed)
		return;
	if (op == OP_PEER_SHUT) {
		shutdown(sl->peer, SHUT_WR);
		sl->peer_shut = true;
	} else {
		close(sl->peer);
		sl->peer_closed = true;
	}
}

/* A fresh socket pair in slot s. Not while a close is pending anywhere: the
   new socket could take the number of an fd the watcher is about to close. */
static void op_reopen(struct fz *m, struct input *in)
{
	int s = (int)(next(in) % FZ_SLOTS);
	unsigned a = next(in);
	struct fz_slot *sl = &m->slot[s];
	for (int i = 0; i < FZ_SLOTS; i++)
		if (m->slot[i].state == S_CLOSING)
			return;
	if (sl->state == S_REG || (sl->state == S_OPEN && sl->tried))
		return;
	fz_slot_release(m, s);
	fz_slot_open(m, s, a & 1, a & 2);
}

/* Calls with bad input get their documented error and queue nothing. */
static void op_bad(struct fz *m, struct input *in, int memfd)
{
	int s = (int)(next(in) % FZ_SLOTS);
	unsigned v = next(in) % 12;
	int fd = m->slot[s].state == S_OPEN || m->slot[s].state == S_REG ? m->slot[s].lib : -1;
	char b[4];
	struct proact_completion c;
	struct proact_request q = {.fd = fd, .op = PROACT_OP_FREE, .ctx = b};
	struct iovec iov = {.iov_base = b, .iov_len = 0};
	int rc, want = -EINVAL; /* unless the case says otherwise */
	switch (v) {
	case 0:
		rc = proact_read(m->w, fd, b, 0, NULL);
		break;
	case 1:
		rc = proact_read_full(m->w, fd, NULL, 10, NULL);
		break;
	case 2:
		want = -EBADF;
		rc = proact_write(m->w, -1, b, 1, NULL);
		break;
	case 3:
		rc = proact_write(m->w, fd, NULL, 5, NULL);
		break;
	case 4:
		want = -ENOTSUP;
		rc = proact_read(m->w, memfd, b, 1, NULL);
		break;
	case 5:
		want = -EBADF;
		rc = proact_read(m->w, 4000, b, 1, NULL);
		break;
	case 6:
		want = -EBADF;
		rc = proact_free(m->w, -1, NULL);
		break;
	case 7:
		rc = proact_wait(m->w, &c, 0, 0);
		break;
	case 8:
		rc = proact_read_deadline(m->w, fd, b, 1, 0x80, 0, NULL);
		break;
	case 9:
		rc = proact_writev(m->w, fd, &iov, 1, NULL);
		break;
	case 10:
		rc = proact_submit(m->w, &q, 1);
		break;
	default:
		rc = proact_read(NULL, fd, b, 1, NULL);
		break;
	}
	FZ_CHECK(rc == want, "bad input %u on fd %d: returned %d, expected %d", v, fd, rc, want);
}

/* ---- one input ---- */

static int count_fds(void)
{
	/* libkqueue keeps descriptors of its own and closes them from a thread
	   of its own: a run against it (PROACT_TEST_FOREIGN_KQUEUE) counts none,
	   as the test suite does. */
	const char *foreign = getenv("PROACT_TEST_FOREIGN_KQUEUE");
	if (foreign && *foreign == '1')
		return 0;
	DIR *d = opendir("/proc/self/fd"); /* Linux; macOS lists them in /dev/fd */
	if (!d)
		d = opendir("/dev/fd");
	int n = 0;
	if (!d)
		return -1;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* Returns true if the input ends with a watcher shutdown. */
static bool run_ops(struct fz *m, struct input *in, int memfd)
{
	for (int i = 0; i < MAX_OPS && in->n > 0; i++) {
		unsigned b = next(in);
		FZ_TRACE("op %u\n", b == OP_SHUTDOWN ? b : b % OP_COUNT);
		if (b == OP_SHUTDOWN)
			return true;
		switch (b % OP_COUNT) {
		case OP_READ:
			op_read(m, in, false);
			break;
		case OP_POOL:
			op_read(m, in, true);
			break;
		case OP_WRITE:
			op_write(m, in);
			break;
		case OP_WRITEV:
			op_writev(m, in);
			break;
		case OP_SUBMIT:
			op_submit(m, in);
			break;
		case OP_FREE:
			op_close(m, in, false);
			break;
		case OP_DETACH:
			op_close(m, in, true);
			break;
		case OP_WAIT:
			op_wait(m, in);
			break;
		case OP_WAKEUP:
			op_wakeup(m, in);
			break;
		case OP_BAD:
			op_bad(m, in, memfd);
			break;
		case OP_ECHO:
			op_echo(m, in);
			break;
		case OP_REOPEN:
			op_reopen(m, in);
			break;
		case OP_TIMER:
			op_timer(m, in);
			break;
		case OP_TIMER_CANCEL:
			op_timer_cancel(m, in);
			break;
		default:
			op_peer(m, in, (int)(b % OP_COUNT));
			break;
		}
	}
	return false;
}

/* The normal end: free every fd, collect every completion, then close. */
static void finish(struct fz *m)
{
	for (int s = 0; s < FZ_SLOTS; s++) {
		struct fz_slot *sl = &m->slot[s];
		if (sl->state != S_REG && !(sl->state == S_OPEN && sl->tried))
			continue;
		struct fz_rec *r = fz_rec_new(m, s, K_CLOSE, PROACT_OP_FREE);
		fz_close_called(m, r, proact_free(m->w, sl->lib, fz_ctx(m, r)), false);
	}
	for (int i = 0; i < m->nrec; i++) /* far timers would outlast the drain */
		if (m->rec[i].kind == K_TIMER && m->rec[i].state == R_PENDING && m->rec[i].timer_id)
			fz_timer_cancelled(m, &m->rec[i],
			                   proact_timer_cancel(m->w, m->rec[i].timer_id));
	uint64_t end = proact_deadline_in(DRAIN_LIMIT_MS);
	while (m->pending > 0) {
		FZ_CHECK(proact_now() < end, "%d requests (free/detach included) never completed",
		         m->pending);
		for (int s = 0; s < FZ_SLOTS; s++)
			fz_peer_drain(m, s);
		do_wait(m, 8, 10);
	}
}

static bool fd_is(int fd, ino_t ino)
{
	struct stat st;
	return fstat(fd, &st) == 0 && st.st_ino == ino;
}

/*
 * The abrupt end: shutdown closes every registered fd (also those being
 * detached), leaves the program's own fds open, delivers nothing more, and
 * from then on every call says -ESHUTDOWN. The buffers are the program's.
 */
static void shutdown_checks(struct fz *m)
{
	struct proact_completion c;
	char b;
	int rc = proact_watcher_shutdown(m->w);
	FZ_CHECK(rc == 0, "proact_watcher_shutdown returned %d", rc);
	m->shut = true;
	FZ_CHECK(proact_watcher_shutdown(m->w) == -ESHUTDOWN, "second shutdown");
	FZ_CHECK(proact_wait(m->w, &c, 1, 0) == -ESHUTDOWN, "wait after shutdown");
	FZ_CHECK(proact_wakeup(m->w) == -ESHUTDOWN, "wakeup after shutdown");
	for (int s = 0; s < FZ_SLOTS; s++) {
		struct fz_slot *sl = &m->slot[s];
		bool open = sl->state != S_NONE && sl->state != S_DEAD && fd_is(sl->lib, sl->ino);
		if (sl->state == S_REG)
			FZ_CHECK(!open, "fd %d: registered, still open after shutdown", sl->lib);
		if (sl->state == S_OPEN && !sl->tried)
			FZ_CHECK(open, "fd %d: never registered, closed by shutdown", sl->lib);
		if (open) {
			rc = proact_read(m->w, sl->lib, &b, 1, NULL);
			FZ_CHECK(rc == -ESHUTDOWN, "fd %d: read after shutdown: %d", sl->lib, rc);
		}
		if (sl->state != S_NONE)
			sl->state = open ? S_OPEN : S_DEAD;
	}
	for (int i = 0; i < m->nrec; i++)
		if (m->rec[i].state == R_PENDING)
			fz_rec_drop(&m->rec[i]);
	m->pending = 0;
}

/* A regular file that is nobody else's: created, then unlinked at once. */
static int regular_file(void)
{
	const char *dir = getenv("TMPDIR");
	char path[4096];
	snprintf(path, sizeof(path), "%s/proact_fuzz.XXXXXX", dir && *dir ? dir : "/tmp");
	int fd = mkstemp(path);
	FZ_CHECK(fd >= 0, "mkstemp %s: %s", path, strerror(errno));
	unlink(path);
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int memfd = -1;
	if (memfd < 0) {
		fz_trace = getenv("PROACT_FUZZ_TRACE") != NULL;
		memfd = regular_file();
		fz_init();
	}
	static struct fz m;
	int fds = count_fds();
	struct input in = {.p = data, .n = size, .budget_ms = WAIT_BUDGET_MS};
	unsigned cfg0 = next(&in), cfg1 = next(&in);
	memset(&m, 0, sizeof(m));
	m.rng = 0x9e3779b9u ^ (uint32_t)size;
	m.pool_count = (cfg0 & 0xc0) == 0xc0 ? 0 : 1 + (cfg0 & 3);
	m.pool_size = 64u << (2 * ((cfg0 >> 2) & 3));
	static const uint32_t limits[4] = {4096, 2, 4, 8};
	m.max_per_fd = limits[(cfg0 >> 4) & 3];
	for (int s = 0; s < FZ_SLOTS; s++)
		fz_slot_open(&m, s, (cfg1 >> s) & 1, (cfg1 >> (3 + s)) & 1);
	struct proact_options o = {
	    .pool_buffer_count = m.pool_count ? m.pool_count : PROACT_POOL_NONE,
	    .pool_buffer_size = m.pool_size,
	    .max_pending_per_fd = (cfg0 >> 4) & 3 ? m.max_per_fd : 0,
	};
	int rc = proact_watcher_new(&m.w, &o);
	FZ_CHECK(rc == 0, "proact_watcher_new: %d (backend %s)", rc, getenv("PROACT_BACKEND"));
	if (run_ops(&m, &in, memfd))
		shutdown_checks(&m);
	else
		finish(&m);
	proact_watcher_destroy(m.w);
	for (int s = 0; s < FZ_SLOTS; s++)
		fz_slot_release(&m, s);
	FZ_CHECK(count_fds() == fds, "fd leak: %d open, %d before the input", count_fds(), fds);
	return 0;
}
