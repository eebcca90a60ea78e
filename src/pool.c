/* SPDX-License-Identifier: MIT */
/*
 * pool.c - the watcher's fixed pool of read buffers.
 *
 * A buffer is free when nobody holds a reference. A NULL-buffer read takes
 * one only when data is there (readiness backends take it right before the
 * read; io_uring's kernel picks it from a provided-buffer ring). The delivery
 * of its completion holds one reference until the next proact_wait; each write
 * that sends part of it holds one more until its own completion is released.
 * The memory is one anonymous mapping, so untouched buffers cost no RSS, and
 * a buffer no read took for a whole trim period gives its pages back
 * (MADV_DONTNEED, where the platform has it): a burst that used every
 * buffer leaves no memory behind once the watcher is idle.
 */
#include <errno.h>
#include <stdlib.h>
#ifndef _WIN32
#include <sys/mman.h>
#endif

#include "internal.h"

#ifdef _WIN32
#define pool_map                   proact__os_map
#define pool_unmap                 proact__os_unmap
#define PROACT__POOL_DISCARD(p, n) proact__os_discard(p, n)
#else
#if defined(MAP_ANONYMOUS) && defined(MADV_DONTNEED)
#define PROACT__POOL_DISCARD(p, n) madvise(p, n, MADV_DONTNEED)
#endif

/* MAP_ANONYMOUS is POSIX only since its 2024 edition and strict headers may
   hide it; there a large calloc serves, whose pages the allocator maps
   untouched as well. */
static void *pool_map(size_t bytes)
{
#ifdef MAP_ANONYMOUS
	void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return m == MAP_FAILED ? NULL : m;
#else
	return calloc(1, bytes);
#endif
}

static void pool_unmap(void *base, size_t bytes)
{
#ifdef MAP_ANONYMOUS
	munmap(base, bytes);
#else
	(void)bytes;
	free(base);
#endif
}
#endif

int proact__pool_init(struct proact__pool *p, uint32_t count, uint32_t size)
{
	*p = (struct proact__pool){0};
	if (count == 0)
		return 0;
	p->size = size;
	p->count = count;
	p->bytes = (size_t)count * size;
	p->base = pool_map(p->bytes);
	if (!p->base)
		return -ENOMEM;
	p->stack = malloc(count * sizeof(*p->stack));
	p->refs = calloc(count, sizeof(*p->refs));
	p->dirty = calloc(count, sizeof(*p->dirty));
	if (!p->stack || !p->refs || !p->dirty) {
		proact__pool_destroy(p);
		return -ENOMEM;
	}
	/* Hand out low addresses first: fewer pages touched under light load. */
	for (uint32_t i = 0; i < count; i++)
		p->stack[i] = count - 1 - i;
	p->nstack = count;
	p->low = count;
	p->hot = PROACT__POOL_HOT;
	p->navail = count;
	return 0;
}

void proact__pool_destroy(struct proact__pool *p)
{
	if (p->base)
		pool_unmap(p->base, p->bytes);
	free(p->stack);
	free(p->refs);
	free(p->dirty);
	*p = (struct proact__pool){0};
}

void *proact__pool_addr(const struct proact__pool *p, int32_t idx)
{
	return p->base + (size_t)idx * p->size;
}

int32_t proact__pool_index(const struct proact__pool *p, const void *ptr)
{
	/* One unsigned compare: below base wraps to a large offset, and with no
	   pool bytes is 0. */
	uintptr_t off = (uintptr_t)ptr - (uintptr_t)p->base;
	if (off >= p->bytes)
		return -1;
	return (int32_t)(off / p->size);
}

uint32_t proact__pool_pop(struct proact__pool *p)
{
	uint32_t idx = p->stack[--p->nstack];
	if (p->nstack < p->low)
		p->low = p->nstack;
	return idx;
}

void proact__pool_push(struct proact__pool *p, uint32_t idx)
{
	p->stack[p->nstack++] = idx;
}

/* The first write since a trim. Only more dirty buffers than a steady load
   keeps using start a period: a busy loop on a few buffers reads no clock. */
void proact__pool_dirty(struct proact__pool *p, uint32_t idx)
{
	if (p->dirty[idx])
		return;
	p->dirty[idx] = 1;
	if (++p->ndirty > p->hot && !p->trim_at)
		p->trim_at = proact_now() + PROACT__POOL_TRIM_NS;
}

#ifdef PROACT__POOL_DISCARD
/* Gives back the pages of the dirty buffers of stack[0..n), a run of
   neighbouring buffers (the stack starts in address order) in one call. */
static void discard_bottom(struct proact__pool *p, uint32_t n)
{
	uint32_t i = 0;
	while (i < n) {
		uint32_t lo = p->stack[i], hi = lo, j = i + 1;
		if (!p->dirty[lo]) {
			i++;
			continue;
		}
		for (; j < n && p->dirty[p->stack[j]]; j++) {
			if (p->stack[j] + 1 == lo)
				lo--;
			else if (p->stack[j] == hi + 1)
				hi++;
			else
				break;
		}
		if (PROACT__POOL_DISCARD(proact__pool_addr(p, (int32_t)lo),
		                         (size_t)(hi - lo + 1) * p->size) == 0) {
			for (uint32_t k = i; k < j; k++)
				p->dirty[p->stack[k]] = 0;
			p->ndirty -= j - i;
		}
		i = j;
	}
}
#endif

/*
 * A buffer's pages go back once it stayed on the stack untouched for two
 * whole periods (below both periods' low-water marks): a load that comes
 * back within a period or two finds its buffers still there, instead of
 * giving pages back and faulting them in again at every burst.
 */
void proact__pool_trim(struct proact_watcher *w, uint64_t now)
{
	struct proact__pool *p = &w->pool;
#ifdef PROACT__POOL_DISCARD
	discard_bottom(p, p->low < p->low_prev ? p->low : p->low_prev);
#endif
	if (w->be->pool_shrink)
		w->be->pool_shrink(w);
	p->low_prev = p->low;
	p->low = p->nstack;
	p->trim_at = p->ndirty > p->hot ? now + PROACT__POOL_TRIM_NS : 0;
}

/* Buffer idx now holds data: one reference, and the high-water mark. */
static void hold_new(struct proact__pool *p, uint32_t idx)
{
	proact__pool_dirty(p, idx);
	p->refs[idx] = 1;
	p->navail--;
	if (p->count - p->navail > p->high)
		p->high = p->count - p->navail;
}

int32_t proact__pool_take(struct proact_watcher *w, void **ptr)
{
	struct proact__pool *p = &w->pool;
	if (p->nstack == 0)
		return -1;
	uint32_t idx = proact__pool_pop(p);
	hold_new(p, idx);
	*ptr = proact__pool_addr(p, (int32_t)idx);
	return (int32_t)idx;
}

/* Gives back a buffer taken for a read that found no data. */
void proact__pool_untake(struct proact_watcher *w, int32_t idx)
{
	struct proact__pool *p = &w->pool;
	p->refs[idx] = 0;
	proact__pool_push(p, (uint32_t)idx);
	p->navail++;
}

/* The kernel filled buffer idx from the ring: it is held from now on. */
void proact__pool_claim(struct proact_watcher *w, int32_t idx)
{
	hold_new(&w->pool, (uint32_t)idx);
}

/*
 * Wakes reads that waited for a buffer, one per free buffer. With a
 * kernel-managed pool a buffer counts as taken only once its completion is
 * reaped, so each woken read that went to the kernel reserves one free buffer
 * until its result is in: a returned buffer wakes one read, not every starved
 * read at once (a herd that fails with ENOBUFS but one).
 */
void proact__pool_wake(struct proact_watcher *w)
{
	struct proact__pool *p = &w->pool;
	while (p->navail > p->trying && w->starved_head) {
		struct proact__fd *f = w->starved_head;
		w->starved_head = proact__fd_at(w, f->next_starved);
		if (!w->starved_head)
			w->starved_tail = NULL;
		f->next_starved = PROACT__NO_FD;
		f->flags &= (uint16_t)~PROACT__F_STARVED;
		if (f->state != PROACT__FD_ACTIVE)
			continue;
		proact__progress(w, f, PROACT__RD);
		/* A pool the program side hands out took its buffer already, or
		   the read waits for data (IOCP's zero-byte receive): nothing to
		   reserve. */
		if (p->kernel_managed && f->inflight[PROACT__RD] && !f->pool_try) {
			f->pool_try = 1;
			p->trying++;
		}
	}
}

/* The result of a read of f is in: a reservation it held ends. */
void proact__pool_tried(struct proact_watcher *w, struct proact__fd *f)
{
	if (!f->pool_try)
		return;
	f->pool_try = 0;
	w->pool.trying--;
}

void proact__pool_unref(struct proact_watcher *w, int32_t idx)
{
	struct proact__pool *p = &w->pool;
	if (--p->refs[idx] > 0)
		return;
	p->navail++;
	if (p->kernel_managed)
		w->be->pool_recycle(w, (uint32_t)idx);
	else
		proact__pool_push(p, (uint32_t)idx);
	if (w->starved_head) /* reads wait for a buffer */
		proact__pool_wake(w);
}
