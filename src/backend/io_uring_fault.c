/* SPDX-License-Identifier: MIT */
/*
 * io_uring_fault.c - test-only faults for the io_uring backend.
 *
 * Each fault is a result the kernel could give for that SQE at that moment:
 *   short     on a stream socket, a recv/send/read/write asks for fewer bytes
 *             (a sendmsg or writev for fewer segments): a real short
 *             transfer (never on datagrams, which go whole or not at all);
 *   eagain    a data op or accept completes with -EAGAIN without being done;
 *   eintr     the same with -EINTR;
 *   nobufs    a buffer-select read completes with -ENOBUFS, as when the
 *             provided-buffer ring is empty;
 *   emfile    an accept completes with -EMFILE (the process is out of fds);
 *   sqfull    getting an SQE finds the submission queue full;
 *   spurious  a poll for readiness completes although nothing is readable.
 * An op that fails "without being done" is submitted as a NOP whose user_data
 * carries the failure in bits 60-62; the CQE hook strips them and writes the
 * result. Nothing else in the ring uses those bits: the kind of an op sits in
 * bits 56-59.
 */
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "io_uring_fault.h"

#define MARK_SHIFT 60
#define MARK_MASK  ((uint64_t)7 << MARK_SHIFT)

enum { MARK_EAGAIN = 1, MARK_EINTR, MARK_NOBUFS, MARK_POLLIN, MARK_EMFILE };

static const char *const names[PROACT__UF_N] = {"short",  "eagain", "eintr",   "nobufs",
                                                "emfile", "sqfull", "spurious"};
static atomic_ulong hits;

static uint64_t next_random(struct proact__ufault *uf)
{
	uf->rng ^= uf->rng >> 12;
	uf->rng ^= uf->rng << 25;
	uf->rng ^= uf->rng >> 27;
	return uf->rng * 2685821657736338717ull;
}

static bool roll(struct proact__ufault *uf, int kind)
{
	if (uf->pct[kind] == 0 || next_random(uf) % 100 >= uf->pct[kind])
		return false;
	atomic_fetch_add_explicit(&hits, 1, memory_order_relaxed);
	return true;
}

/* One "name=value" item; false if it is not understood. */
static bool parse_item(struct proact__ufault *uf, const char *p, size_t len)
{
	const char *eq = memchr(p, '=', len);
	if (!eq)
		return false;
	size_t klen = (size_t)(eq - p);
	unsigned long v = strtoul(eq + 1, NULL, 10);
	if (klen == 4 && strncmp(p, "seed", 4) == 0) {
		uf->rng = v * 0x9E3779B97F4A7C15ull | 1;
		return true;
	}
	for (int k = 0; k < PROACT__UF_N; k++) {
		if (strlen(names[k]) == klen && strncmp(names[k], p, klen) == 0 && v <= 100) {
			uf->pct[k] = (uint8_t)v;
			return true;
		}
	}
	return false;
}

void proact__ufault_init(struct proact__ufault *uf)
{
	*uf = (struct proact__ufault){.rng = 1};
	const char *spec = getenv("PROACT_URING_FAULTS");
	if (!spec || !*spec)
		return;
	for (const char *p = spec; *p;) {
		size_t len = strcspn(p, ",");
		if (!parse_item(uf, p, len)) {
			*uf = (struct proact__ufault){.rng = 1};
			return; /* a test that asked for faults notices none came */
		}
		p += len + (p[len] == ',');
	}
	uf->on = true;
}

bool proact__ufault_sq_full(struct proact__ufault *uf)
{
	return roll(uf, PROACT__UF_SQFULL);
}

/* A length in [1, n) for a short transfer of n. */
static unsigned shorter(struct proact__ufault *uf, unsigned n)
{
	return 1 + (unsigned)(next_random(uf) % (n - 1));
}

static void shorten(struct proact__ufault *uf, struct io_uring_sqe *sqe)
{
	switch (sqe->opcode) {
	case IORING_OP_RECV:
	case IORING_OP_SEND:
	case IORING_OP_READ:
	case IORING_OP_WRITE:
	case IORING_OP_WRITEV: /* len counts segments here */
		if (sqe->len > 1 && roll(uf, PROACT__UF_SHORT))
			sqe->len = shorter(uf, sqe->len);
		break;
	case IORING_OP_SENDMSG: {
		/* the backend's own msghdr, stable until submission */
		struct msghdr *m = (struct msghdr *)(uintptr_t)sqe->addr;
		if (m->msg_iovlen > 1 && roll(uf, PROACT__UF_SHORT))
			m->msg_iovlen = shorter(uf, (unsigned)m->msg_iovlen);
		break;
	}
	}
}

/* Which failure, if any, to make of this SQE instead of doing it. */
static uint64_t pick_failure(struct proact__ufault *uf, const struct io_uring_sqe *sqe)
{
	switch (sqe->opcode) {
	case IORING_OP_POLL_ADD:
		return roll(uf, PROACT__UF_SPURIOUS) ? MARK_POLLIN : 0;
	case IORING_OP_ACCEPT:
		if (roll(uf, PROACT__UF_EMFILE))
			return MARK_EMFILE;
		break;
	case IORING_OP_RECV:
	case IORING_OP_RECVMSG:
	case IORING_OP_READ:
	case IORING_OP_SEND:
	case IORING_OP_SENDMSG:
	case IORING_OP_WRITE:
	case IORING_OP_WRITEV:
		break;
	default:
		return 0; /* connect, shutdown: their EAGAIN means something else */
	}
	if ((sqe->flags & IOSQE_BUFFER_SELECT) && roll(uf, PROACT__UF_NOBUFS))
		return MARK_NOBUFS;
	if (roll(uf, PROACT__UF_EAGAIN))
		return MARK_EAGAIN;
	if (roll(uf, PROACT__UF_EINTR))
		return MARK_EINTR;
	return 0;
}

void proact__ufault_sqe(struct proact__ufault *uf, struct io_uring_sqe *sqe, bool stream)
{
	uint64_t mark = pick_failure(uf, sqe);
	if (!mark) {
		if (stream)
			shorten(uf, sqe);
		return;
	}
	uint64_t ud = sqe->user_data;
	io_uring_prep_nop(sqe);
	sqe->user_data = ud | mark << MARK_SHIFT;
}

struct io_uring_cqe *proact__ufault_cqe(struct io_uring_cqe *cqe, struct io_uring_cqe *copy)
{
	static const int results[] = {0, -EAGAIN, -EINTR, -ENOBUFS, POLLIN, -EMFILE};
	uint64_t mark = (cqe->user_data & MARK_MASK) >> MARK_SHIFT;
	if (mark == 0)
		return cqe;
	*copy =
	    (struct io_uring_cqe){.user_data = cqe->user_data & ~MARK_MASK, .res = results[mark]};
	return copy;
}

unsigned long proact__ufault_hits(void)
{
	return atomic_load_explicit(&hits, memory_order_relaxed);
}
