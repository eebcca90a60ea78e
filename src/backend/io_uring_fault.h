/* SPDX-License-Identifier: MIT */
/*
 * io_uring_fault.h - test-only fault injection in the io_uring backend.
 *
 * Compiled in only with the build option PROACT_FAULT_INJECTION (the test
 * builds turn it on); a release library has none of it, and the hooks below
 * are empty inlines the compiler removes. Compiled in, it is off unless
 * PROACT_URING_FAULTS is set when a watcher starts; then the backend's SQEs
 * and CQEs pass through the hooks, which make results the kernel could give
 * at that moment (see io_uring_fault.c).
 */
#ifndef PROACT_FAULT_URING_H
#define PROACT_FAULT_URING_H

#include <stdbool.h>
#include <stdint.h>

#include <liburing.h>

enum {
	PROACT__UF_SHORT,
	PROACT__UF_EAGAIN,
	PROACT__UF_EINTR,
	PROACT__UF_NOBUFS,
	PROACT__UF_EMFILE,
	PROACT__UF_SQFULL,
	PROACT__UF_SPURIOUS,
	PROACT__UF_N
};

#ifdef PROACT_FAULT_INJECTION

struct proact__ufault {
	bool on;
	uint8_t pct[PROACT__UF_N]; /* percent of eligible SQEs */
	uint64_t rng;
};

static inline bool proact__ufault_on(const struct proact__ufault *uf)
{
	return uf->on;
}
/* Reads PROACT_URING_FAULTS ("seed=7,short=30,eagain=10,..."); off if unset. */
void proact__ufault_init(struct proact__ufault *uf);
/* Whether to act as if the submission queue were full (the flush path runs). */
bool proact__ufault_sq_full(struct proact__ufault *uf);
/* A prepared SQE, user_data set: may turn it into a failure, or shorten it
   if its fd is a stream socket. */
void proact__ufault_sqe(struct proact__ufault *uf, struct io_uring_sqe *sqe, bool stream);
/* A CQE as the backend must see it: the result of a failure made by
   proact__ufault_sqe is written into *copy, which is returned instead. */
struct io_uring_cqe *proact__ufault_cqe(struct io_uring_cqe *cqe, struct io_uring_cqe *copy);
/* Faults injected in this process so far, by every watcher. */
unsigned long proact__ufault_hits(void);

#else /* no fault injection: every hook folds away */

struct proact__ufault {
	char unused;
};
static inline bool proact__ufault_on(const struct proact__ufault *uf)
{
	(void)uf;
	return false;
}
static inline void proact__ufault_init(struct proact__ufault *uf)
{
	(void)uf;
}
static inline bool proact__ufault_sq_full(struct proact__ufault *uf)
{
	(void)uf;
	return false;
}
static inline void proact__ufault_sqe(struct proact__ufault *uf, struct io_uring_sqe *sqe,
                                      bool stream)
{
	(void)uf;
	(void)sqe;
	(void)stream;
}
static inline struct io_uring_cqe *proact__ufault_cqe(struct io_uring_cqe *cqe,
                                                      struct io_uring_cqe *copy)
{
	(void)copy;
	return cqe;
}

#endif

#endif
