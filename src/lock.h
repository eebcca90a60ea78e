/* SPDX-License-Identifier: MIT */
/*
 * lock.h - the watcher lock.
 *
 * Where the build finds Linux's futex, a futex mutex: taking and releasing it
 * uncontended costs one atomic instruction each, a few times per echo round
 * trip, where a pthread mutex costs tens of instructions through two library
 * calls. The word is 0 (free), 1 (held) or 2 (held, and a thread may sleep
 * on it): only a release of a 2 enters the kernel (the classic three-state
 * futex mutex). Windows: a slim reader/writer lock taken exclusively, one
 * interlocked instruction uncontended and no pthreads. Elsewhere a pthread
 * mutex: portable, and the BSDs' and macOS's are fast enough uncontended.
 */
#ifndef PROACT_LOCK_H
#define PROACT_LOCK_H

#ifdef PROACT_HAVE_FUTEX

#include <linux/futex.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef struct {
	atomic_int word;
} proact__mutex;

static inline int proact__mutex_init(proact__mutex *m)
{
	atomic_init(&m->word, 0);
	return 0;
}

static inline void proact__mutex_destroy(proact__mutex *m)
{
	(void)m;
}

static inline void proact__mutex_lock_slow(proact__mutex *m, int c)
{
	if (c != 2)
		c = atomic_exchange_explicit(&m->word, 2, memory_order_acquire);
	while (c != 0) {
		syscall(SYS_futex, &m->word, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
		c = atomic_exchange_explicit(&m->word, 2, memory_order_acquire);
	}
}

static inline void proact__mutex_lock(proact__mutex *m)
{
	int c = 0;
	if (!atomic_compare_exchange_strong_explicit(&m->word, &c, 1, memory_order_acquire,
	                                             memory_order_relaxed))
		proact__mutex_lock_slow(m, c);
}

static inline void proact__mutex_unlock(proact__mutex *m)
{
	if (atomic_exchange_explicit(&m->word, 0, memory_order_release) == 2)
		syscall(SYS_futex, &m->word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

#elif defined(_WIN32)

/* winsock2.h first: windows.h would bring the old winsock.h. */
#include <winsock2.h>

#include <windows.h>

typedef struct {
	SRWLOCK l;
} proact__mutex;

static inline int proact__mutex_init(proact__mutex *m)
{
	InitializeSRWLock(&m->l);
	return 0;
}

static inline void proact__mutex_destroy(proact__mutex *m)
{
	(void)m;
}

static inline void proact__mutex_lock(proact__mutex *m)
{
	AcquireSRWLockExclusive(&m->l);
}

static inline void proact__mutex_unlock(proact__mutex *m)
{
	ReleaseSRWLockExclusive(&m->l);
}

#else /* POSIX */

#include <errno.h>
#include <pthread.h>

typedef struct {
	pthread_mutex_t m;
} proact__mutex;

static inline int proact__mutex_init(proact__mutex *m)
{
	return -pthread_mutex_init(&m->m, NULL);
}

static inline void proact__mutex_destroy(proact__mutex *m)
{
	pthread_mutex_destroy(&m->m);
}

static inline void proact__mutex_lock(proact__mutex *m)
{
	pthread_mutex_lock(&m->m);
}

static inline void proact__mutex_unlock(proact__mutex *m)
{
	pthread_mutex_unlock(&m->m);
}

#endif

#endif
