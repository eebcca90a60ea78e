/* SPDX-License-Identifier: MIT */
/*
 * fault.h - the test side of fault injection.
 *
 * Three injectors, each making failures the kernel or libc could really
 * produce: the LD_PRELOAD shim (shim.c) for the system calls of the epoll
 * backend, link-time wrapping (alloc.c) for the library's allocations, and
 * the io_uring backend's own hook (src/backend/io_uring_fault.c), on when the
 * environment variable PROACT_URING_FAULTS is set as a watcher starts.
 */
#ifndef PROACT_TEST_FAULT_H
#define PROACT_TEST_FAULT_H

#include <stdbool.h>

/* alloc.c: the n-th wrapped allocation from now fails (0: the next); -1: none. */
void fault_alloc_fail_at(long n);
/* Whether the failure armed last happened (also after disarming with -1). */
bool fault_alloc_fired(void);

/* The shim's controls, found at run time; NULL members when it is not loaded. */
struct fault_shim {
	int (*set)(const char *spec);            /* new schedule, "eintr=10,short=30,..." */
	unsigned long (*hits)(const char *kind); /* faults of one kind injected so far */
};

#endif
