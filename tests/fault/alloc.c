/* SPDX-License-Identifier: MIT */
/*
 * alloc.c - allocation failures on purpose, by link-time wrapping.
 *
 * The fault test program is linked with -Wl,--wrap=malloc (and calloc,
 * realloc, mmap), which sends the calls of its own objects and of the static
 * library proact to the __wrap_ functions below; the shared libraries (libc,
 * cmocka, the sanitizers) keep the real allocator. fault_alloc_fail_at(n)
 * makes the n-th wrapped allocation from now fail, as under memory pressure,
 * so a test can walk every allocation of a call one by one.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/mman.h>

#include "fault.h"

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
void *__real_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);
void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);

/* Allocations left before the one that fails; negative: none fails. Only the
   thread running a test allocates through these while one is armed. */
static _Thread_local long countdown = -1;
static _Thread_local bool fired;

void fault_alloc_fail_at(long n)
{
	countdown = n;
	if (n >= 0)
		fired = false; /* disarming keeps the answer for fault_alloc_fired() */
}

bool fault_alloc_fired(void)
{
	return fired;
}

static bool fail_now(void)
{
	if (countdown < 0)
		return false;
	if (countdown-- > 0)
		return false;
	fired = true;
	return true;
}

void *__wrap_malloc(size_t size)
{
	if (fail_now()) {
		errno = ENOMEM;
		return NULL;
	}
	return __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size)
{
	if (fail_now()) {
		errno = ENOMEM;
		return NULL;
	}
	return __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t size)
{
	if (fail_now()) {
		errno = ENOMEM;
		return NULL;
	}
	return __real_realloc(p, size);
}

void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	if (fail_now()) {
		errno = ENOMEM;
		return MAP_FAILED;
	}
	return __real_mmap(addr, len, prot, flags, fd, off);
}
