/* SPDX-License-Identifier: MIT */
/*
 * layer.c - the TLS layer on a watcher: request nodes, the deadline heap,
 * output buffers, the read buffers of NULL-buffer reads, and
 * proact_tls_wait(), which drives it all from proact_wait()'s completions.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define MAX_BUFFERS 65536u

/* ---- requests ----------------------------------------------------------- */

struct tls__req *tls__req_new(proact_tls *t, struct proact_tls_conn *c, uint8_t op, void *ctx)
{
	struct tls__req *r = t->free_reqs;
	if (r)
		t->free_reqs = (struct tls__req *)r->link.next;
	else if (!(r = malloc(sizeof(*r))))
		return NULL;
	*r = (struct tls__req){.c = c, .ctx = ctx, .op = op, .heap_idx = TLS__NO_HEAP, .pool = -1};
	r->link.next = r->link.prev = &r->link;
	return r;
}

void tls__req_free(proact_tls *t, struct tls__req *r)
{
	r->link.next = (struct tls__link *)t->free_reqs;
	t->free_reqs = r;
}

void tls__complete(struct tls__req *r, int error)
{
	proact_tls *t = r->c->t;
	tls__heap_del(t, r);
	if (r->holds_pool)
		tls__writev_unref(t, r);
	tls__list_del(&r->link);
	r->error = error;
	tls__list_add_tail(&t->done, &r->link);
}

/* ---- deadlines: a binary min-heap, O(log n) ------------------------------ */

static void heap_set(proact_tls *t, uint32_t i, struct tls__req *r)
{
	t->heap[i] = r;
	r->heap_idx = i;
}

static void heap_up(proact_tls *t, uint32_t i)
{
	struct tls__req *r = t->heap[i];
	while (i > 0) {
		uint32_t p = (i - 1) / 2;
		if (t->heap[p]->deadline <= r->deadline)
			break;
		heap_set(t, i, t->heap[p]);
		i = p;
	}
	heap_set(t, i, r);
}

static void heap_down(proact_tls *t, uint32_t i)
{
	struct tls__req *r = t->heap[i];
	for (;;) {
		uint32_t k = 2 * i + 1;
		if (k >= t->nheap)
			break;
		if (k + 1 < t->nheap && t->heap[k + 1]->deadline < t->heap[k]->deadline)
			k++;
		if (r->deadline <= t->heap[k]->deadline)
			break;
		heap_set(t, i, t->heap[k]);
		i = k;
	}
	heap_set(t, i, r);
}

int tls__heap_add(proact_tls *t, struct tls__req *r)
{
	if (t->nheap == t->heap_cap) {
		uint32_t cap = t->heap_cap ? 2 * t->heap_cap : 64;
		struct tls__req **v = realloc(t->heap, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		t->heap = v;
		t->heap_cap = cap;
	}
	heap_set(t, t->nheap++, r);
	heap_up(t, r->heap_idx);
	return 0;
}

void tls__heap_del(proact_tls *t, struct tls__req *r)
{
	uint32_t i = r->heap_idx;
	if (i == TLS__NO_HEAP)
		return;
	r->heap_idx = TLS__NO_HEAP;
	struct tls__req *last = t->heap[--t->nheap];
	if (i == t->nheap)
		return;
	heap_set(t, i, last);
	heap_up(t, i);
	heap_down(t, last->heap_idx);
}

/* ---- output buffers ------------------------------------------------------- */

struct tls__obuf *tls__obuf_get(proact_tls *t)
{
	struct tls__obuf *b = t->free_obufs;
	if (b) {
		t->free_obufs = b->next;
		t->nfree_obufs--;
	} else if ((b = malloc(sizeof(*b) + TLS__OBUF_CAP))) {
		b->cap = TLS__OBUF_CAP;
	}
	if (b)
		b->len = 0;
	return b;
}

void tls__obuf_put(proact_tls *t, struct tls__obuf *b)
{
	if (!b)
		return;
	if (b->cap != TLS__OBUF_CAP || t->nfree_obufs >= TLS__OBUF_KEEP) {
		free(b);
		return;
	}
	b->next = t->free_obufs;
	t->free_obufs = b;
	t->nfree_obufs++;
}

/* ---- read buffers ---------------------------------------------------------- */

int32_t tls__buf_take(proact_tls *t)
{
	if (t->nfree == 0)
		return -1;
	uint32_t i = t->free_idx[--t->nfree];
	t->refs[i] = 1;
	return (int32_t)i;
}

void tls__buf_unref(proact_tls *t, int32_t idx)
{
	if (--t->refs[idx] == 0)
		t->free_idx[t->nfree++] = (uint32_t)idx;
}

int32_t tls__buf_of(const proact_tls *t, const void *p)
{
	uintptr_t a = (uintptr_t)p, base = (uintptr_t)t->slab;
	if (a < base || a >= base + (uintptr_t)t->nbuf * TLS__RECORD)
		return -1;
	return (int32_t)((a - base) / TLS__RECORD);
}

void tls__starve(proact_tls *t, struct proact_tls_conn *c)
{
	if (c->starved)
		return;
	c->starved = true;
	tls__list_add_tail(&t->starved, &c->starve);
}

void tls__unstarve(struct proact_tls_conn *c)
{
	if (!c->starved)
		return;
	c->starved = false;
	tls__list_del(&c->starve);
}

/* Buffers came back: the connections that waited for one try again, in the
   order they began to wait. */
static void feed_starved(proact_tls *t)
{
	while (!tls__list_empty(&t->starved) && t->nfree > 0) {
		struct proact_tls_conn *c =
		    (struct proact_tls_conn *)(void *)((char *)t->starved.next -
		                                       offsetof(struct proact_tls_conn, starve));
		tls__unstarve(c);
		tls__pump(c);
	}
}

static void release_delivered(proact_tls *t)
{
	for (uint32_t i = 0; i < t->ndelivered; i++)
		tls__buf_unref(t, (int32_t)t->delivered[i]);
	t->ndelivered = 0;
	feed_starved(t);
}

/* ---- the layer ------------------------------------------------------------- */

int proact_tls_new(proact_tls **out, proact_watcher *w, const struct proact_tls_options *opts)
{
	struct proact_tls_options o = opts ? *opts : (struct proact_tls_options){0};
	if (!out || !w || o.buffer_count > MAX_BUFFERS)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(o.reserved) / sizeof(o.reserved[0]); i++)
		if (o.reserved[i])
			return -EINVAL;
	uint32_t n = o.buffer_count ? o.buffer_count : 256;
	proact_tls *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->w = w;
	t->nbuf = t->nfree = n;
	tls__list_init(&t->all);
	tls__list_init(&t->done);
	tls__list_init(&t->starved);
	/* malloc, not calloc: the block is address space until buffers are used. */
	t->slab = malloc((size_t)n * TLS__RECORD);
	t->free_idx = malloc(n * sizeof(*t->free_idx));
	t->delivered = malloc(n * sizeof(*t->delivered));
	t->refs = calloc(n, sizeof(*t->refs));
	t->bio_method = tls__bio_method_new();
	t->bio = t->bio_method ? BIO_new(t->bio_method) : NULL;
	if (!t->slab || !t->free_idx || !t->delivered || !t->refs || !t->bio) {
		proact_tls_destroy(t);
		return -ENOMEM;
	}
	BIO_set_data(t->bio, t);
	BIO_set_init(t->bio, 1);
	for (uint32_t i = 0; i < n; i++)
		t->free_idx[i] = n - 1 - i;
	*out = t;
	return 0;
}

void proact_tls_destroy(proact_tls *t)
{
	if (!t)
		return;
	while (!tls__list_empty(&t->all))
		tls__conn_destroy((struct proact_tls_conn *)(void *)t->all.next);
	while (!tls__list_empty(&t->done)) {
		struct tls__req *r = TLS__REQ(t->done.next);
		tls__list_del(&r->link);
		free(r);
	}
	while (t->free_reqs) {
		struct tls__req *r = t->free_reqs;
		t->free_reqs = (struct tls__req *)r->link.next;
		free(r);
	}
	while (t->free_obufs) {
		struct tls__obuf *b = t->free_obufs;
		t->free_obufs = b->next;
		free(b);
	}
	BIO_free(t->bio); /* the last reference: the connections' went with them */
	BIO_meth_free(t->bio_method);
	free(t->conns);
	free(t->heap);
	free(t->slab);
	free(t->free_idx);
	free(t->delivered);
	free(t->refs);
	free(t);
}

/* ---- proact_tls_wait ----------------------------------------------------- */

static void expire(proact_tls *t, uint64_t now)
{
	while (t->nheap > 0 && t->heap[0]->deadline <= now)
		tls__expire(t->heap[0]);
}

static void fill(proact_tls *t, struct tls__req *r, struct proact_completion *o)
{
	*o = (struct proact_completion){
	    .fd = r->c->fd, .op = r->op, .error = r->error, .ctx = r->ctx, .newfd = -1};
	switch (r->op) {
	case PROACT_TLS_OP_READ:
		o->buf = r->one.iov_base;
		o->size = r->done;
		if (r->pool >= 0) {
			o->flags = PROACT_COMP_POOL;
			t->delivered[t->ndelivered++] = (uint32_t)r->pool;
		}
		break;
	case PROACT_TLS_OP_WRITE:
		o->buf = r->one.iov_base;
		o->size = r->done;
		break;
	case PROACT_TLS_OP_WRITEV:
		o->buf = (void *)r->iov;
		o->size = r->done;
		break;
	default:
		break;
	}
}

static int deliver(proact_tls *t, struct proact_completion *out, int max)
{
	int n = 0;
	while (n < max && !tls__list_empty(&t->done)) {
		struct tls__req *r = TLS__REQ(t->done.next);
		tls__list_del(&r->link);
		fill(t, r, &out[n++]);
		if (r->op == PROACT_TLS_OP_FREE) {
			r->c->free_req = NULL; /* r goes back below */
			tls__conn_destroy(r->c);
		}
		tls__req_free(t, r);
	}
	return n;
}

/* The connection a completion of the layer's own belongs to, or NULL. */
static struct proact_tls_conn *owner(const proact_tls *t, const struct proact_completion *r)
{
	int fd = tls__fdnum(r->fd);
	if (fd < 0 || fd >= t->nconns)
		return NULL;
	struct proact_tls_conn *c = t->conns[fd];
	return c && r->ctx == c ? c : NULL;
}

/* How long proact_wait may block: the caller's time, cut at the nearest
   TLS deadline. */
static int wait_ms(const proact_tls *t, uint64_t now, uint64_t end, bool *at_deadline)
{
	uint64_t until = end;
	*at_deadline = false;
	if (t->nheap > 0 && (until == 0 || t->heap[0]->deadline < until)) {
		until = t->heap[0]->deadline;
		*at_deadline = true;
	}
	if (until == 0)
		return -1;
	if (until <= now)
		return 0;
	uint64_t ms = (until - now + 999999) / 1000000;
	return ms > 1000000 ? 1000000 : (int)ms;
}

int proact_tls_wait(proact_tls *t, struct proact_completion *out, int max, int timeout_ms)
{
	if (!t || !out || max < 1)
		return -EINVAL;
	release_delivered(t);
	uint64_t end = timeout_ms < 0 ? 0 : proact_now() + (uint64_t)timeout_ms * 1000000u;
	for (;;) {
		uint64_t now = proact_now();
		expire(t, now);
		int n = deliver(t, out, max);
		bool at_deadline = false;
		int ms = n > 0 ? 0 : wait_ms(t, now, end, &at_deadline);
		int room = max - n < TLS__COMPS ? max - n : TLS__COMPS;
		if (room == 0)
			return n;
		int k = proact_wait(t->w, t->comp, room, ms);
		if (k < 0)
			return n > 0 ? n : k;
		for (int i = 0; i < k; i++) {
			struct proact_tls_conn *c = owner(t, &t->comp[i]);
			if (c)
				tls__on_io(c, &t->comp[i]);
			else
				out[n++] = t->comp[i];
		}
		now = proact_now();
		expire(t, now);
		n += deliver(t, out + n, max - n);
		if (n > 0)
			return n;
		/* Nothing for the caller: a wakeup, the caller's timeout, or only the
		   layer's own work; wait on in the last case. */
		if (k == 0 && !at_deadline)
			return 0;
		if (end != 0 && now >= end)
			return 0;
	}
}
