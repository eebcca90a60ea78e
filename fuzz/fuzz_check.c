/* SPDX-License-Identifier: MIT */
/*
 * fuzz_check.c - every completion, judged against the model.
 *
 * A completion must name a pending request (exactly once), come in
 * submission order for its direction (a request whose own deadline passed
 * may overtake, having moved nothing), carry only errors the situation
 * allows, and move exactly the bytes the streams say.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_model.h"

static struct fz_rec *rec_of(struct fz *m, const struct proact_completion *c)
{
	uintptr_t id = (uintptr_t)c->ctx;
	FZ_CHECK(id >= 1 && id <= (uintptr_t)m->nrec, "fd %d: unknown ctx %p", c->fd, c->ctx);
	struct fz_rec *r = &m->rec[id - 1];
	FZ_CHECK(r->state == R_PENDING,
	         "fd %d: completion for request %lu that is not pending (failed submission or "
	         "second completion)",
	         c->fd, (unsigned long)(id - 1));
	FZ_CHECK(c->fd == r->fd && c->op == r->op,
	         "request %lu: completion fd %d op %d, submitted fd %d op %d",
	         (unsigned long)(id - 1), c->fd, c->op, r->fd, r->op);
	return r;
}

/* Removes r from its direction's pending list; only an expired request
   that moved nothing may overtake the ones before it. */
static void check_order(struct fz *m, struct fz_rec *r, int dir, const struct proact_completion *c)
{
	struct fz_slot *sl = &m->slot[r->slot];
	uint16_t id = (uint16_t)fz_rec_id(m, r);
	int i = 0;
	while (i < sl->npend[dir] && sl->pend[dir][i] != id)
		i++;
	FZ_CHECK(i < sl->npend[dir], "fd %d: request %u not in its queue", r->fd, id);
	FZ_CHECK(i == 0 || (c->error == ETIMEDOUT && c->size == 0),
	         "fd %d: %s request %u completed before %d earlier ones (error %d, size %zu)",
	         r->fd, dir ? "write" : "read", id, i, c->error, c->size);
	memmove(&sl->pend[dir][i], &sl->pend[dir][i + 1],
	        (size_t)(sl->npend[dir] - i - 1) * sizeof(uint16_t));
	sl->npend[dir]--;
}

/* Errors every request may end with, whatever its direction. */
static void check_common_error(struct fz *m, const struct fz_rec *r, int err)
{
	const struct fz_slot *sl = &m->slot[r->slot];
	if (err == ETIMEDOUT)
		FZ_CHECK(r->deadline && proact_now() >= r->deadline,
		         "fd %d: ETIMEDOUT before its deadline (deadline %llu)", r->fd,
		         (unsigned long long)r->deadline);
	if (err == ECANCELED)
		FZ_CHECK(sl->state == S_CLOSING, "fd %d: ECANCELED without free/detach", r->fd);
	if (err == ECONNRESET)
		FZ_CHECK(sl->peer_closed, "fd %d: ECONNRESET but the peer is open", r->fd);
}

/* A pool buffer lies on the pool's grid and is not held by anyone else. */
static void check_pool_buf(struct fz *m, const uint8_t *p, size_t size, int batch_end)
{
	FZ_CHECK(p != NULL, "pool completion without a buffer");
	FZ_CHECK(size <= m->pool_size, "pool read of %zu bytes into %u-byte buffers", size,
	         m->pool_size);
	if (!m->pool_lo)
		m->pool_lo = p;
	ptrdiff_t d = p - m->pool_lo;
	FZ_CHECK(d % (ptrdiff_t)m->pool_size == 0, "pool buffer %p off the grid of %p", (void *)p,
	         (const void *)m->pool_lo);
	ptrdiff_t span = (ptrdiff_t)m->pool_count * (ptrdiff_t)m->pool_size;
	FZ_CHECK(d < span && d > -span, "pool buffer %p outside a pool of %u", (void *)p,
	         m->pool_count);
	for (int i = 0; i < batch_end; i++)
		FZ_CHECK(m->pool_cur[i] != p, "pool buffer %p handed out twice in one wait",
		         (void *)p);
	for (int i = 0; i < m->nrec; i++)
		FZ_CHECK(!(m->rec[i].state == R_PENDING && m->rec[i].kind == K_ECHO &&
		           m->rec[i].pool == p),
		         "pool buffer %p reused while a write of it is pending", (void *)p);
}

static void check_read_bytes(struct fz *m, struct fz_rec *r, const uint8_t *p, size_t size)
{
	struct fz_slot *sl = &m->slot[r->slot];
	FZ_CHECK(sl->rpos + size <= sl->psent,
	         "fd %d: read %zu bytes at offset %llu, the peer sent %llu", r->fd, size,
	         (unsigned long long)sl->rpos, (unsigned long long)sl->psent);
	for (size_t i = 0; i < size; i++)
		FZ_CHECK(p[i] == fz_peer_byte(sl->seed, sl->rpos + i),
		         "fd %d: read byte %zu (stream offset %llu) differs", r->fd, i,
		         (unsigned long long)(sl->rpos + i));
	sl->rpos += size;
	if (r->kind == K_READ)
		for (size_t i = size; i < r->len; i++)
			FZ_CHECK(r->buf[i] == FZ_CANARY, "fd %d: read of %zu wrote byte %zu", r->fd,
			         size, i);
}

static void check_read(struct fz *m, struct fz_rec *r, const struct proact_completion *c)
{
	struct fz_slot *sl = &m->slot[r->slot];
	int err = c->error;
	FZ_CHECK(err == 0 || err == ETIMEDOUT || err == ECANCELED || err == ECONNRESET,
	         "fd %d: read error %d", r->fd, err);
	check_common_error(m, r, err);
	check_order(m, r, 0, c);
	FZ_CHECK(!(c->flags & PROACT_COMP_FULL) == !r->full, "fd %d: FULL flag %#x", r->fd,
	         c->flags);
	const uint8_t *p = c->buf;
	if (r->kind == K_POOL) {
		size_t cap = r->len && r->len < m->pool_size ? r->len : m->pool_size;
		FZ_CHECK(c->size <= cap, "fd %d: pool read %zu > cap %zu", r->fd, c->size, cap);
		FZ_CHECK(c->size == 0 || (c->flags & PROACT_COMP_POOL), "fd %d: no POOL flag",
		         r->fd);
		if (c->flags & PROACT_COMP_POOL) {
			check_pool_buf(m, p, c->size, m->npool_cur);
			if (m->npool_cur < 8 && c->size > 0) {
				m->pool_cur[m->npool_cur] = c->buf;
				m->pool_cur_len[m->npool_cur++] = c->size;
			}
		}
	} else {
		FZ_CHECK(p == r->buf && !(c->flags & PROACT_COMP_POOL), "fd %d: read buffer %p",
		         r->fd, c->buf);
		FZ_CHECK(c->size <= r->len, "fd %d: read %zu > len %zu", r->fd, c->size, r->len);
	}
	check_read_bytes(m, r, p, c->size);
	/* Short with no error: only at end of stream, and only after every byte. */
	bool shorted = c->size == 0 || (r->full && c->size < r->len);
	if (err == 0 && shorted) {
		FZ_CHECK(sl->peer_shut || sl->peer_closed, "fd %d: end of stream, peer still open",
		         r->fd);
		FZ_CHECK(sl->tcp || sl->rpos == sl->psent,
		         "fd %d: end of stream at %llu of %llu bytes", r->fd,
		         (unsigned long long)sl->rpos, (unsigned long long)sl->psent);
	}
}

/* The bytes a write handed over, gathered (WRITEV) or as they were (ECHO). */
static const uint8_t *write_bytes(const struct fz_rec *r)
{
	if (r->kind == K_ECHO)
		FZ_CHECK(memcmp(r->pool, r->buf, r->len) == 0,
		         "fd %d: pool buffer %p changed while a write of it was pending", r->fd,
		         (const void *)r->pool);
	return r->buf;
}

static void check_write(struct fz *m, struct fz_rec *r, const struct proact_completion *c)
{
	struct fz_slot *sl = &m->slot[r->slot];
	int err = c->error;
	FZ_CHECK(err == 0 || err == ETIMEDOUT || err == ECANCELED || err == EPIPE ||
	             err == ECONNRESET,
	         "fd %d: write error %d", r->fd, err);
	check_common_error(m, r, err);
	if (err == EPIPE)
		FZ_CHECK(sl->cut || sl->peer_closed, "fd %d: EPIPE with no cut and the peer open",
		         r->fd);
	check_order(m, r, 1, c);
	const void *want = r->kind == K_WRITEV ? (const void *)r->iov
	                   : r->kind == K_ECHO ? (const void *)r->pool
	                                       : (const void *)r->buf;
	FZ_CHECK(c->buf == want && c->flags == 0, "fd %d: write buf %p flags %#x", r->fd, c->buf,
	         c->flags);
	FZ_CHECK(err != 0 || c->size == r->len, "fd %d: write done with %zu of %zu", r->fd, c->size,
	         r->len);
	FZ_CHECK(c->size <= r->len, "fd %d: wrote %zu of %zu", r->fd, c->size, r->len);
	FZ_CHECK(!sl->cut || (c->size == 0 && err != 0),
	         "fd %d: a write after a cut sent %zu bytes (error %d)", r->fd, c->size, err);
	fz_out_expect(sl, write_bytes(r), c->size);
	if (err == ETIMEDOUT && c->size > 0)
		sl->cut = true;
}

static bool fd_is(int fd, ino_t ino)
{
	struct stat st;
	return fstat(fd, &st) == 0 && st.st_ino == ino;
}

/* Everything the peer can still read must have been reported written. */
static void check_stream_end(struct fz *m, int s)
{
	struct fz_slot *sl = &m->slot[s];
	fz_peer_drain(m, s);
	if (sl->peer_closed)
		return;
	FZ_CHECK(sl->out.len == 0 || sl->out.exp_ahead,
	         "fd %d: the peer got %zu bytes no completion accounts for", sl->lib, sl->out.len);
	/* TCP slots close with a reset, which may drop bytes in flight. */
	FZ_CHECK(sl->tcp || sl->out.len == 0,
	         "fd %d: %zu bytes reported written never reached the peer", sl->lib, sl->out.len);
}

static void check_close(struct fz *m, struct fz_rec *r, const struct proact_completion *c)
{
	struct fz_slot *sl = &m->slot[r->slot];
	FZ_CHECK(c->error == 0 && c->size == 0 && c->buf == NULL,
	         "fd %d: close completion error %d size %zu", r->fd, c->error, c->size);
	FZ_CHECK(sl->npend[0] == 0 && sl->npend[1] == 0,
	         "fd %d: %s completion before %d reads and %d writes", r->fd,
	         r->op == PROACT_OP_FREE ? "FREE" : "DETACH", sl->npend[0], sl->npend[1]);
	if (r->op == PROACT_OP_FREE) {
		FZ_CHECK(!fd_is(sl->lib, sl->ino), "fd %d: still open after FREE", sl->lib);
		sl->state = S_DEAD;
		check_stream_end(m, r->slot);
		return;
	}
	FZ_CHECK(fd_is(sl->lib, sl->ino), "fd %d: not open after DETACH", sl->lib);
	int fl = fcntl(sl->lib, F_GETFL);
	FZ_CHECK(!(fl & O_NONBLOCK) == sl->was_blocking, "fd %d: blocking mode not restored",
	         sl->lib);
	sl->state = S_OPEN;
	sl->tried = false;
	sl->cut = false; /* the next request is a new registration */
}

/* Fired (never early) or cancelled, whichever the cancel call said. */
static void check_timer(const struct fz_rec *r, const struct proact_completion *c)
{
	int id = (int)((uintptr_t)c->ctx - 1);
	FZ_CHECK(c->error == (r->cancelled ? ECANCELED : 0), "timer #%d: error %d, cancelled %d",
	         id, c->error, r->cancelled);
	FZ_CHECK(r->cancelled || proact_now() >= r->deadline, "timer #%d: fired before %llu", id,
	         (unsigned long long)r->deadline);
	FZ_CHECK(c->size == 0 && c->buf == NULL && c->flags == 0 && c->newfd == -1,
	         "timer #%d: size %zu buf %p flags %#x newfd %d", id, c->size, c->buf, c->flags,
	         c->newfd);
}

void fz_check_batch(struct fz *m, const struct proact_completion *c, int n)
{
	for (int i = 0; i < n; i++) {
		FZ_TRACE("  done #%ld fd %d op %d error %d size %zu flags %#x\n",
		         (long)(uintptr_t)c[i].ctx - 1, c[i].fd, c[i].op, c[i].error, c[i].size,
		         c[i].flags);
		struct fz_rec *r = rec_of(m, &c[i]);
		if (r->kind == K_READ || r->kind == K_POOL)
			check_read(m, r, &c[i]);
		else if (r->kind == K_CLOSE)
			check_close(m, r, &c[i]);
		else if (r->kind == K_TIMER)
			check_timer(r, &c[i]);
		else
			check_write(m, r, &c[i]);
		fz_rec_drop(r);
		m->pending--;
	}
}
