/* SPDX-License-Identifier: MIT */
/*
 * fuzz_model.h - the reference model the fuzz harness checks proact against.
 *
 * The harness drives one watcher over a few socket pairs. Each pair is a
 * slot: the library end is handed to the watcher, the peer end is driven with
 * plain syscalls. The model knows, per slot, what the peer has sent and what
 * every completed write must have put on the wire, and which requests are
 * pending in which order, so each completion can be judged on its own.
 */
#ifndef PROACT_FUZZ_MODEL_H
#define PROACT_FUZZ_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "proact.h"

#define FZ_SLOTS  3
#define FZ_RECS   1024 /* requests per input; ids are never reused */
#define FZ_CANARY 0xa5 /* user read buffers are filled with it before submission */

/* Aborts with a message: libFuzzer reports the input as a crash. */
#define FZ_CHECK(cond, ...)                                                                        \
	do {                                                                                       \
		if (!(cond))                                                                       \
			fz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);                           \
	} while (0)

enum fz_kind { K_READ, K_POOL, K_WRITE, K_WRITEV, K_ECHO, K_CLOSE, K_TIMER };
enum fz_rec_state { R_UNUSED, R_PENDING, R_DONE };
enum fz_slot_state {
	S_NONE,    /* no socket */
	S_OPEN,    /* a socket the watcher does not hold */
	S_REG,     /* registered with the watcher */
	S_CLOSING, /* proact_free/detach called, its completion not yet seen */
	S_DEAD,    /* freed: the library end is closed */
};

/* One submitted request (or free/detach), named by its ctx. */
struct fz_rec {
	uint8_t state, kind, slot, op;
	bool full;
	int fd;
	uint64_t deadline;
	uint8_t *buf;        /* user read buffer, or the bytes a write sends */
	size_t len;          /* bytes asked for */
	struct iovec *iov;   /* WRITEV: the array handed over */
	int iovcnt;          /* WRITEV */
	const uint8_t *pool; /* ECHO: the pool buffer handed over */
	uint64_t timer_id;   /* TIMER: as proact_timer gave it, 0 if none */
	bool cancelled;      /* TIMER: proact_timer_cancel returned 0 */
};

/* Bytes on one direction of the wire not yet matched: either the library
   reported them written and the peer has not read them (exp_ahead), or the
   peer read them before the write that sent them completed. */
struct fz_bytes {
	uint8_t *b;
	size_t off, len, cap;
	bool exp_ahead;
};

struct fz_slot {
	uint8_t state;
	bool tcp;
	bool was_blocking; /* the library end was blocking when handed over */
	bool tried;        /* a failed submission may have registered it */
	bool fresh_close;  /* free/detach called since the last wait: surely pending */
	int lib, peer;
	ino_t ino; /* of the library end: tells "closed" from "number reused" */
	uint32_t seed;
	uint64_t psent, rpos; /* peer-to-library bytes sent, and read by the library */
	bool peer_shut, peer_closed;
	bool cut; /* a write expired part-way: later writes send nothing */
	struct fz_bytes out;
	uint16_t pend[2][FZ_RECS]; /* pending rec ids, submission order, per direction */
	int npend[2];
};

struct fz {
	proact_watcher *w;
	bool shut;
	uint32_t pool_count, pool_size, max_per_fd;
	const uint8_t *pool_lo; /* first pool buffer seen, to check the others */
	uint8_t *pool_cur[8];   /* pool buffers of the latest wait, valid until the next */
	size_t pool_cur_len[8];
	int npool_cur;
	struct fz_slot slot[FZ_SLOTS];
	struct fz_rec rec[FZ_RECS];
	int nrec;
	int pending; /* recs not yet completed */
	uint32_t rng;
};

/* PROACT_FUZZ_TRACE set: every submission and completion goes to stderr. */
extern bool fz_trace;
#define FZ_TRACE(...)                                                                              \
	do {                                                                                       \
		if (fz_trace)                                                                      \
			fprintf(stderr, __VA_ARGS__);                                              \
	} while (0)

void fz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));

/* The byte at offset i of the stream the peer of a slot sends. */
uint8_t fz_peer_byte(uint32_t seed, uint64_t i);

/* Slots. fz_init opens what lives as long as the process (a TCP listener). */
void fz_init(void);
void fz_slot_open(struct fz *m, int s, bool tcp, bool blocking);
void fz_slot_release(struct fz *m, int s);
void fz_peer_write(struct fz *m, int s, size_t n);
void fz_peer_read(struct fz *m, int s, size_t max);
void fz_peer_drain(struct fz *m, int s);
void fz_out_expect(struct fz_slot *sl, const uint8_t *p, size_t n);

/* Requests. */
struct fz_rec *fz_rec_new(struct fz *m, int s, uint8_t kind, uint8_t op);
int fz_rec_id(const struct fz *m, const struct fz_rec *r);
void *fz_ctx(const struct fz *m, const struct fz_rec *r);
bool fz_may_eagain(const struct fz *m, int s);
void fz_rec_drop(struct fz_rec *r);
void fz_submitted(struct fz *m, struct fz_rec *r, int rc, int expect);
void fz_refused(struct fz *m, struct fz_rec *r, int expect);
void fz_close_called(struct fz *m, struct fz_rec *r, int rc, bool detach);
void fz_timer_submitted(struct fz *m, struct fz_rec *r, int rc);
void fz_timer_cancelled(struct fz *m, struct fz_rec *r, int rc);

/* Completions. */
void fz_check_batch(struct fz *m, const struct proact_completion *c, int n);

#endif
