/*
 * lock.h - the watcher lock: a futex mutex.
 *
 * Taking and releasing it uncontended costs one atomic instruction each, a
 * few times per echo round trip, where a pthread mutex costs tens of
 * instructions through two library calls. The word is 0 (free), 1 (held) or
 * 2 (held, and a thread may sleep on it): only a release of a 2 enters the
 * kernel. This is the classic three-state futex mutex.
 */
#ifndef PROACT_LOCK_H
#define PROACT_LOCK_H

#include <linux/futex.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef struct {
	atomic_int word;
} proact__mutex;

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

#endif
