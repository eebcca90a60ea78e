/*
 * timer.c - deadlines in a binary min-heap: O(log n) insert and removal,
 * O(1) for the nearest deadline. Each request remembers its heap position so
 * completion can take it out without a search.
 */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "internal.h"

uint64_t proact_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

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
