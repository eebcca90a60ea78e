/* SPDX-License-Identifier: MIT */
/*
 * timer.c - deadlines in a binary min-heap: O(log n) insert and removal,
 * O(1) for the nearest deadline. Each request remembers its heap position so
 * completion can take it out without a search. Timer requests live in the
 * same heap: a timer is a request with a deadline and no fd, which fires
 * with error 0 where another request would expire with ETIMEDOUT.
 */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "internal.h"

#ifndef _WIN32 /* Windows: QueryPerformanceCounter, in platform/win32.c */
/* Out of line: its timespec would give every caller it was inlined into
   (the read path, through the pool) the stack protector's check. */
PROACT__NOINLINE uint64_t proact_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
#endif

uint64_t proact_deadline_in(uint64_t ms)
{
	uint64_t now = proact_now();
	if (ms > (UINT64_MAX - now) / 1000000u)
		return UINT64_MAX; /* saturate: a far deadline must not wrap into the past */
	return now + ms * 1000000u;
}

static void heap_set(struct proact__heap *h, uint32_t i, struct proact__req *r)
{
	h->v[i] = r;
	r->heap_idx = i;
}

static void sift_up(struct proact__heap *h, uint32_t i)
{
	struct proact__req *r = h->v[i];
	while (i > 0) {
		uint32_t parent = (i - 1) / 2;
		if (h->v[parent]->deadline <= r->deadline)
			break;
		heap_set(h, i, h->v[parent]);
		i = parent;
	}
	heap_set(h, i, r);
}

static void sift_down(struct proact__heap *h, uint32_t i)
{
	struct proact__req *r = h->v[i];
	for (;;) {
		uint32_t c = 2 * i + 1;
		if (c >= h->n)
			break;
		if (c + 1 < h->n && h->v[c + 1]->deadline < h->v[c]->deadline)
			c++;
		if (r->deadline <= h->v[c]->deadline)
			break;
		heap_set(h, i, h->v[c]);
		i = c;
	}
	heap_set(h, i, r);
}

int proact__heap_push(struct proact__heap *h, struct proact__req *r)
{
	if (h->n == h->cap) {
		uint32_t cap = h->cap ? h->cap * 2 : 64;
		struct proact__req **v = realloc(h->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		h->v = v;
		h->cap = cap;
	}
	heap_set(h, h->n++, r);
	sift_up(h, r->heap_idx);
	return 0;
}

void proact__heap_remove(struct proact__heap *h, struct proact__req *r)
{
	uint32_t i = r->heap_idx;
	if (i == PROACT__NO_HEAP)
		return;
	r->heap_idx = PROACT__NO_HEAP;
	struct proact__req *last = h->v[--h->n];
	if (i == h->n)
		return;
	heap_set(h, i, last);
	sift_down(h, i);
	sift_up(h, last->heap_idx);
}

void proact__heap_destroy(struct proact__heap *h)
{
	free(h->v);
	h->v = NULL;
	h->n = h->cap = 0;
}

/* ---- deadlines of requests ---- */

int proact__deadline_add(struct proact_watcher *w, struct proact__req *r)
{
	int rc = proact__heap_push(&w->heap, r);
	/* A waiter asleep until a later deadline must come back for this one. */
	if (rc == 0 && r->heap_idx == 0)
		w->sooner = true;
	return rc;
}

/* ---- timer requests ---- */

/* Makes sure the next timer finds a free slot; 0 or -ENOMEM. */
static int slots_reserve(struct proact__timers *t)
{
	if (t->free_head || t->n < t->cap)
		return 0;
	if (t->cap > UINT32_MAX / 4)
		return -ENOMEM; /* a billion timers at once: ids keep 32 bits of slot */
	uint32_t cap = t->cap ? t->cap * 2 : 64;
	if ((uint64_t)cap * sizeof(*t->v) > SIZE_MAX / 2)
		return -ENOMEM; /* 32-bit address spaces */
	struct proact__timer_slot *v = realloc(t->v, cap * sizeof(*v));
	if (!v)
		return -ENOMEM;
	t->v = v;
	t->cap = cap;
	return 0;
}

/* A reserved slot: the most recently freed one, else a new one. */
static uint32_t slot_take(struct proact__timers *t)
{
	if (t->free_head) {
		uint32_t s = t->free_head - 1;
		t->free_head = t->v[s].next_free;
		return s;
	}
	t->v[t->n].gen = 1; /* ids are never 0 */
	return t->n++;
}

static void slot_put(struct proact__timers *t, uint32_t s)
{
	struct proact__timer_slot *e = &t->v[s];
	e->req = NULL;
	if (++e->gen == 0)
		return; /* every id of this slot was given out: retired, never reused */
	e->next_free = t->free_head;
	t->free_head = s + 1;
}

int proact__timer_add(struct proact_watcher *w, uint64_t deadline, void *ctx, uint64_t *id)
{
	if (w->pending >= w->max_pending)
		return -ENOBUFS;
	int rc = slots_reserve(&w->timers);
	if (rc)
		return rc;
	struct proact__req *r = proact__req_alloc(w);
	if (!r)
		return -ENOMEM;
	*r = (struct proact__req){.ctx = ctx,
	                          .deadline = deadline,
	                          .heap_idx = PROACT__NO_HEAP,
	                          .fdnum = -1,
	                          .pool = -1,
	                          .op = PROACT_OP_TIMER};
	if ((rc = proact__deadline_add(w, r)) != 0) {
		proact__req_release(w, r);
		return rc;
	}
	uint32_t s = slot_take(&w->timers);
	w->timers.v[s].req = r;
	r->slot = s;
	w->pending++;
	if (id)
		*id = (uint64_t)w->timers.v[s].gen << 32 | s;
	return 0;
}

int proact__timer_cancel(struct proact_watcher *w, uint64_t id)
{
	const struct proact__timers *t = &w->timers;
	uint32_t s = (uint32_t)id;
	if (s >= t->n || !t->v[s].req || t->v[s].gen != (uint32_t)(id >> 32))
		return -ENOENT; /* fired, cancelled, or never given out */
	proact__timer_finish(w, t->v[s].req, ECANCELED);
	return 0;
}

/* Fired (error 0) or cancelled: the id is spent and the completion queued. */
void proact__timer_finish(struct proact_watcher *w, struct proact__req *r, int error)
{
	proact__heap_remove(&w->heap, r);
	slot_put(&w->timers, r->slot);
	r->error = error;
	w->pending--;
	proact__done_push(w, r);
}

void proact__timers_destroy(struct proact__timers *t)
{
	free(t->v);
	*t = (struct proact__timers){0};
}
