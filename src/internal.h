/* SPDX-License-Identifier: MIT */
/*
 * internal.h - what the core and the backends share.
 *
 * The core (watcher.c, request.c, pool.c, timer.c) owns registrations,
 * per-fd queues, deadlines, the buffer pool and the completion list. A backend
 * (src/backend/) only moves bytes for the request at the head of a queue and
 * reports readiness or results back through the proact__* calls below. It
 * never sees the public API; the core never sees an epoll_event or an SQE.
 * ready.c and send.c hold the I/O the backends share (readiness I/O, sends).
 *
 * Locking: one mutex per watcher. Submitting threads hold it while queueing;
 * the waiting thread holds it while it performs I/O and releases it only
 * around the blocking kernel wait (backend poll). Every function here is
 * called with the lock held unless it says otherwise.
 */
#ifndef PROACT_INTERNAL_H
#define PROACT_INTERNAL_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lock.h"
#include "platform.h"
#include "proact.h"

enum { PROACT__RD = 0, PROACT__WR = 1 };

/* IOV_MAX is an XSI name that strict POSIX headers may hide; it is 1024 on
   Linux, the BSDs and macOS alike. */
#ifndef IOV_MAX
#define IOV_MAX 1024
#endif

/* Kept out of line: a path off the round trip whose locals live in memory
   (a msghdr, a struct stat) would otherwise, once inlined, give its hot
   caller the stack protector's check on every call. */
#if defined(__GNUC__) || defined(__clang__)
#define PROACT__NOINLINE __attribute__((noinline))
#else
#define PROACT__NOINLINE
#endif

/* Results of backend io() besides a byte count or a negative errno. */
#define PROACT__WAIT     (-100000) /* not ready: the backend reports readiness later */
#define PROACT__INFLIGHT (-100001) /* in the kernel: the result comes via proact__io_done */
#define PROACT__NOPOOL   (-100002) /* pool empty: retried when a buffer comes back */
#define PROACT__ARMED    (-100003) /* a readiness poll is in the kernel, the request is not */

/* A pool buffer no read took for this long gives its pages back. */
#define PROACT__POOL_TRIM_NS (250 * 1000000ull)

/*
 * The pool buffers a WRITEV holds, noted at submission: once its completion
 * is delivered the iov array is the program's again and may already name
 * other buffers when the references are dropped.
 */
#define PROACT__REFS_PER_BLOCK 12
struct proact__refs {
	struct proact__refs *next; /* more of this writev's, or the free list */
	struct proact__refs *all;  /* every block the watcher made */
	uint32_t n;
	int32_t idx[PROACT__REFS_PER_BLOCK];
};

/* One queued request; also the completion once it is done. */
struct proact__req {
	struct proact__req *next, *prev; /* fd queue, then completion list */
	struct proact__fd *f;            /* NULL once completed */
	void *ctx;
	void *buf;   /* READ/WRITE/RECVFROM/SENDTO buffer; WRITEV: the iov array */
	size_t len;  /* READ: room; WRITE/WRITEV: total bytes */
	size_t done; /* bytes moved so far; ACCEPT: the accepted fd */
	union {
		struct sockaddr *addr;     /* ACCEPT, CONNECT, RECVFROM, SENDTO: the address */
		struct proact__refs *refs; /* WRITEV: the pool buffers it holds */
		uint64_t offset;           /* SENDFILE: where the range starts in the file */
	};
	uint64_t deadline;
	uint32_t heap_idx; /* position in the deadline heap, or PROACT__NO_HEAP */
	int fdnum;
	union {
		int iovcnt;        /* WRITEV */
		socklen_t addrlen; /* room at addr; ACCEPT, RECVFROM: then its length */
		int file;          /* SENDFILE: the file */
		uint32_t slot;     /* TIMER: its entry in the timer table */
	};
	int error;    /* positive errno once completed */
	int32_t pool; /* READ: pool buffer index of buf, or -1 */
	uint8_t op;
	uint8_t flags;      /* PROACT_FULL and PROACT__R_* */
	uint8_t expired;    /* deadline passed while the kernel held it */
	uint8_t holds_pool; /* WRITE/WRITEV: holds pool buffer references */
};
#define PROACT__NO_HEAP UINT32_MAX

#define PROACT__R_STARTED 0x40 /* CONNECT: the kernel was asked (readiness backends) */
#define PROACT__R_TRUNC   0x80 /* RECVFROM: the datagram did not fit */

enum proact__fd_state { PROACT__FD_UNUSED = 0, PROACT__FD_ACTIVE, PROACT__FD_CLOSING };

#define PROACT__F_DIRTY    0x01  /* on the watcher's dirty list */
#define PROACT__F_STARVED  0x02  /* on the pool's starved list */
#define PROACT__F_CUT      0x04  /* a partial write expired: later writes fail */
#define PROACT__F_BLOCKING 0x08  /* O_NONBLOCK was clear at registration */
#define PROACT__F_DETACH   0x10  /* closing means detach, not close */
#define PROACT__F_STREAM   0x20  /* a stream socket: a short transfer means drained */
#define PROACT__F_SOCKET   0x40  /* a socket: use recv/send with MSG_NOSIGNAL */
#define PROACT__F_RDHUP    0x80  /* the peer closed or failed: reads go on to EOF */
#define PROACT__F_CONNECT  0x100 /* a CONNECT is queued: reads wait for it */
#define PROACT__F_PAUSED   0x200 /* out of fds or memory: on the paused list */
#define PROACT__F_PARKED   0x400 /* a pool read waits as parked_ctx, without a node */
#define PROACT__F_BACKEND  0x800 /* the backend's own mark (kqueue: watch again) */
/* The list links survive a release: the lists skip fds no longer active. */
#define PROACT__F_LISTS (PROACT__F_DIRTY | PROACT__F_STARVED | PROACT__F_PAUSED)

/*
 * One registered descriptor. Lives in the fd table; its address never moves.
 * 64 bytes: an idle connection whose pool read is parked costs this and no
 * request node. A queue is linked through next; its head's prev is its tail.
 * The lists link fd numbers (PROACT__NO_FD ends them), not pointers.
 */
struct proact__fd {
	struct proact__req *head[2];
	struct proact__req *close_req; /* the FREE/DETACH completion, made at call time */
	void *parked_ctx;              /* PROACT__F_PARKED: the ctx of the parked read */
	int32_t next_dirty;            /* the watcher's dirty list */
	int32_t next_starved;          /* the pool's starved list, or the paused list */
	int fd;
	uint32_t gen; /* bumped at every release: stale events are recognized */
	uint32_t pending;
	uint16_t flags;
	uint8_t state;
	uint8_t pool_try;    /* a starved read was handed to the kernel to try for a buffer */
	uint8_t inflight[2]; /* the backend holds the head request in the kernel */
	uint8_t ready[2];    /* the last attempt did not block (see each backend) */
	uint8_t cancel[2];   /* the in-flight head is being cancelled */
	uint8_t seq[2];      /* completion backends: numbers each kernel op of a direction */
};
#define PROACT__NO_FD (-1)
_Static_assert(sizeof(struct proact__fd) <= 64, "an idle connection costs one fd entry");

struct proact__heap {
	struct proact__req **v;
	uint32_t n, cap;
};

/*
 * Pending timers by id, for proact_timer_cancel: an id is the slot (low 32
 * bits) and the slot's generation (high 32 bits), which goes up each time the
 * slot is freed, so an old id never names a newer timer. A slot whose
 * generation would wrap is retired instead of reused.
 */
struct proact__timer_slot {
	struct proact__req *req; /* the pending timer, or NULL */
	uint32_t gen;            /* 1 on first use; 0: retired */
	uint32_t next_free;      /* while free: the next free slot + 1, or 0 */
};

struct proact__timers {
	struct proact__timer_slot *v;
	uint32_t n, cap;    /* slots ever used; room */
	uint32_t free_head; /* a free slot + 1, or 0: none (a zeroed watcher has none) */
};

struct proact__pool {
	uint8_t *base;
	size_t size;  /* bytes per buffer */
	size_t bytes; /* mapping length */
	uint32_t count;
	uint32_t navail; /* buffers with no reference */
	uint32_t trying; /* starved reads in the kernel, each counting on one free buffer */
	uint32_t *stack; /* free buffers the kernel does not hold, last freed on top */
	uint32_t nstack;
	uint32_t *refs;
	bool kernel_managed; /* the backend keeps free buffers (provided-buffer ring) */
	/* Trimming (proact__pool_trim): a buffer written since its pages were
	   last given back is dirty; stack[0..low) stayed untouched all through
	   the current period; trim_at ends the period (0: nothing to trim). */
	uint8_t *dirty;
	uint32_t ndirty;
	uint32_t low;
	uint32_t low_prev; /* low of the period before: a trim takes what both left alone */
	uint32_t hot;      /* dirty buffers that may stay: what a steady load keeps using */
	uint64_t trim_at;
	uint32_t high; /* the most buffers held at once (proact_stats) */
};
#define PROACT__POOL_HOT 4

struct proact_watcher;

/* The backend interface: about seven operations, each with private state. */
struct proact__backend {
	const char *name;
	/* A bit per op (1u << PROACT_OP_*) the backend cannot do: submissions
	   of it fail with -ENOTSUP. */
	uint32_t unsupported;
	int (*init)(struct proact_watcher *w);
	void (*destroy)(struct proact_watcher *w);
	/* Registers a descriptor; returns 0 or a negative errno. */
	int (*fd_add)(struct proact_watcher *w, struct proact__fd *f);
	/* Forgets a descriptor; nothing of it is in flight any more. */
	void (*fd_remove)(struct proact_watcher *w, struct proact__fd *f);
	/* Moves bytes for the head request of a direction (see PROACT__*). */
	ssize_t (*io)(struct proact_watcher *w, struct proact__fd *f, int dir,
	              struct proact__req *r);
	/* A parked pool read waits and no data is known: makes sure data on f
	   will be reported. PROACT__WAIT (nothing to do), PROACT__ARMED (a poll
	   went in; its result comes like a read's), or a negative errno. NULL
	   if the registration reports data by itself (epoll's edges). */
	ssize_t (*arm_read)(struct proact_watcher *w, struct proact__fd *f);
	/* Sends what it can of a WRITE, WRITEV or SENDTO that nothing queues
	   behind, without waiting: bytes sent, a negative errno, or
	   PROACT__WAIT (not tried, or no room). The core completes a send the
	   socket took whole without queueing it. NULL: never at once (iocp). */
	ssize_t (*send_now)(struct proact_watcher *w, struct proact__fd *f, struct proact__req *r);
	/* Asks the kernel to give back the in-flight head of a direction; its
	   result still arrives through proact__io_done. NULL if never in flight. */
	void (*cancel)(struct proact_watcher *w, struct proact__fd *f, int dir);
	/* Waits up to timeout_ns (-1: no limit) and dispatches what happened. */
	int (*poll)(struct proact_watcher *w, int64_t timeout_ns);
	/* Makes a poll that is blocked (w->sleeping) return. */
	void (*wakeup)(struct proact_watcher *w);
	/* Shutdown: cancel and reap everything in flight before fds close.
	   NULL if nothing is ever in flight between polls. */
	void (*quiesce)(struct proact_watcher *w);
	/* Kernel-managed pools: a buffer is free again. */
	void (*pool_recycle)(struct proact_watcher *w, uint32_t idx);
	/* Kernel-managed pools: the pool was trimmed; hand the kernel fewer
	   buffers at once from now on. NULL if nothing to do. */
	void (*pool_shrink)(struct proact_watcher *w);
};

#ifdef PROACT_HAVE_EPOLL
extern const struct proact__backend proact__backend_epoll;
#endif
#ifdef PROACT_HAVE_URING
extern const struct proact__backend proact__backend_uring;
int proact__uring_probe(void);
#endif
#ifdef PROACT_HAVE_KQUEUE
extern const struct proact__backend proact__backend_kqueue;
#endif
#ifdef PROACT_HAVE_IOCP
extern const struct proact__backend proact__backend_iocp;
#endif

#ifdef _WIN32
/* platform/win32.c: learns what kind of socket fd is and makes it
   non-blocking (Windows cannot tell whether it was: detach leaves it so). */
int proact__win_fd_prepare(struct proact__fd *f, int fd);
#endif

/* ready.c: a readiness backend's io(): the head request of dir, now, if
   f->ready[dir] says the kernel may have room or data. */
ssize_t proact__ready_io(struct proact_watcher *w, struct proact__fd *f, int dir,
                         struct proact__req *r);

/* ready.c: the send_now of the readiness backends (and their writes). */
ssize_t proact__ready_send(struct proact_watcher *w, struct proact__fd *f, struct proact__req *r);

/* ready.c: sets O_NONBLOCK and FD_CLOEXEC; 0, or -1 and errno. */
int proact__nonblock_cloexec(int fd);

/* An environment setting (PROACT_BACKEND, ...); ignored in set-user-ID
   programs where the platform can tell. */
const char *proact__env(const char *name);

/* send(2) flags: no SIGPIPE for a peer that went away. Where MSG_NOSIGNAL is
   missing, registration sets SO_NOSIGPIPE on the socket instead. */
#ifdef MSG_NOSIGNAL
#define PROACT__SEND_FLAGS MSG_NOSIGNAL
#else
#define PROACT__SEND_FLAGS 0
#endif

#define PROACT__FDTAB_SHIFT 8
#define PROACT__FDTAB_CHUNK (1u << PROACT__FDTAB_SHIFT)

struct proact__req_chunk;

struct proact_watcher {
	proact__mutex lock;
	const struct proact__backend *be;
	void *bstate;

	struct proact__fd **fdtab; /* chunks of PROACT__FDTAB_CHUNK entries */
	uint32_t fdtab_chunks;

	struct proact__fd *dirty_head, *dirty_tail;
	struct proact__fd *starved_head, *starved_tail;
	struct proact__fd *paused_head; /* listeners (and parked reads) out of fds or memory */
	uint64_t paused_until;          /* ...or for this time (0: none paused) */
	struct proact__req *done_head, *done_tail; /* completed, not yet delivered */
	struct proact__req *held;                  /* delivered, pool refs to drop */
	struct proact__req *spare;                 /* free request nodes */
	struct proact__req_chunk *chunks;
	struct proact__refs *refs_spare, *refs_all;

	struct proact__heap heap;
	struct proact__timers timers;
	struct proact__pool pool;

	uint32_t pending, max_pending, max_pending_fd;
	uint32_t nfds; /* registered descriptors */
	/* The counters of proact_stats: totals here, the "now" fields filled in
	   when read. Plain increments under the lock the watcher holds anyway. */
	struct proact_stats stats;
	/* Set by the backend: a pool read waiting for data holds nothing of its
	   request in the kernel (epoll; io_uring polling first), so it may park. */
	bool park_reads;
	/* The thread that last called proact_wait (see proact_submit). */
	proact__thread waiter;
	bool has_waiter;
	bool closed;
	bool waiting;   /* a thread is inside proact_wait */
	bool sleeping;  /* ...and blocked in the kernel without the lock */
	bool wake_sent; /* a wakeup is on its way to the sleeper */
	bool woken;     /* proact_wakeup was called */
	bool sooner;    /* a submission made the nearest deadline earlier */
	uint8_t poll_skips;
};

static inline void proact__lock(struct proact_watcher *w)
{
	proact__mutex_lock(&w->lock);
}

static inline void proact__unlock(struct proact_watcher *w)
{
	proact__mutex_unlock(&w->lock);
}

/* The registration slot of fd, or NULL if the table never reached it. */
static inline struct proact__fd *proact__fd_lookup(struct proact_watcher *w, int fd)
{
	uint32_t chunk = (uint32_t)fd >> PROACT__FDTAB_SHIFT;
	if (fd < 0 || chunk >= w->fdtab_chunks || !w->fdtab[chunk])
		return NULL;
	return &w->fdtab[chunk][(uint32_t)fd & (PROACT__FDTAB_CHUNK - 1)];
}

/* The entry a list link names, or NULL at the end of the list. */
static inline struct proact__fd *proact__fd_at(struct proact_watcher *w, int32_t fd)
{
	return fd == PROACT__NO_FD ? NULL : proact__fd_lookup(w, fd);
}

/* request.c: the engine the backends drive. */
void proact__progress(struct proact_watcher *w, struct proact__fd *f, int dir);
void proact__io_done(struct proact_watcher *w, struct proact__fd *f, int dir, ssize_t res);
/* The backend cannot watch one direction of f (the kernel refused): the
   requests waiting on that side fail with error. */
void proact__fd_fail(struct proact_watcher *w, struct proact__fd *f, int dir, int error);
/* A backend has the result of a parked read (a receive linked to its poll):
   gives the read its node back. False when out of memory: the fd is paused,
   retried later, and the backend keeps the result until then. */
bool proact__unpark_for_result(struct proact_watcher *w, struct proact__fd *f);
/* The final result of a parked read (res bytes in pool buffer idx, 0 at the
   end of the stream, or -errno; idx -1 if none): completed without being
   queued. False when out of memory for its node: the fd is paused, retried
   later, and the backend keeps the result until then. */
bool proact__parked_done(struct proact_watcher *w, struct proact__fd *f, ssize_t res, int32_t idx);
void proact__process_dirty(struct proact_watcher *w);
void proact__expire(struct proact_watcher *w, uint64_t now);
void proact__resume_paused(struct proact_watcher *w);
void proact__close_all(struct proact_watcher *w);
struct proact__req *proact__req_alloc(struct proact_watcher *w);
void proact__req_release(struct proact_watcher *w, struct proact__req *r);
void proact__reqs_destroy(struct proact_watcher *w);
void proact__refs_destroy(struct proact_watcher *w);
/* on_waiter: the caller is the thread that last called proact_wait. */
int proact__submit_locked(struct proact_watcher *w, const struct proact_request *q, bool on_waiter);
int proact__validate(const struct proact_watcher *w, const struct proact_request *q);
int proact__close_fd(struct proact_watcher *w, int fd, void *ctx, bool detach);
void proact__release_held(struct proact_watcher *w);
int proact__iov_resume(const struct proact__req *r, size_t *offset);
int proact__deliver(struct proact_watcher *w, struct proact_completion *out, int max);
void proact__done_push(struct proact_watcher *w, struct proact__req *r);
void proact__drop_all(struct proact_watcher *w);

/* send.c: sends what is left of WRITE, WRITEV, SENDFILE or SENDTO head r
   without blocking (EINTR retried), and says what it tried. */
#define PROACT__IOV_SLICE 1024 /* sendmsg takes at most IOV_MAX segments */
struct proact__sent {
	ssize_t n;    /* bytes sent, or -1 and errno */
	size_t asked; /* what it tried: less sent means the socket is full */
};
struct proact__sent proact__send_head(const struct proact__fd *f, const struct proact__req *r);

/* pool.c */
int proact__pool_init(struct proact__pool *p, uint32_t count, uint32_t size);
void proact__pool_destroy(struct proact__pool *p);
int32_t proact__pool_take(struct proact_watcher *w, void **ptr);
void proact__pool_untake(struct proact_watcher *w, int32_t idx);
void proact__pool_claim(struct proact_watcher *w, int32_t idx);
int32_t proact__pool_index(const struct proact__pool *p, const void *ptr);
void proact__pool_unref(struct proact_watcher *w, int32_t idx);
void proact__pool_wake(struct proact_watcher *w);
void proact__pool_tried(struct proact_watcher *w, struct proact__fd *f);
void *proact__pool_addr(const struct proact__pool *p, int32_t idx);
/* The free buffers off the kernel's hands, as a stack (last freed on top). */
uint32_t proact__pool_pop(struct proact__pool *p);
void proact__pool_push(struct proact__pool *p, uint32_t idx);
/* Notes that the kernel or a read wrote into buffer idx. */
void proact__pool_dirty(struct proact__pool *p, uint32_t idx);
/* Gives back to the system the pages of buffers no read took for a whole
   trim period (PROACT__POOL_TRIM_NS): an idle pool costs no memory. */
void proact__pool_trim(struct proact_watcher *w, uint64_t now);

/* timer.c */
int proact__heap_push(struct proact__heap *h, struct proact__req *r);
void proact__heap_remove(struct proact__heap *h, struct proact__req *r);
static inline struct proact__req *proact__heap_min(const struct proact__heap *h)
{
	return h->n ? h->v[0] : NULL;
}
void proact__heap_destroy(struct proact__heap *h);
/* Pushes r (deadline set) and notes whether it is now the nearest one. */
int proact__deadline_add(struct proact_watcher *w, struct proact__req *r);
/* Timer requests: no fd, only a deadline in the heap and a slot that names it. */
int proact__timer_add(struct proact_watcher *w, uint64_t deadline, void *ctx, uint64_t *id);
int proact__timer_cancel(struct proact_watcher *w, uint64_t id);
void proact__timer_finish(struct proact_watcher *w, struct proact__req *r, int error);
void proact__timers_destroy(struct proact__timers *t);

#endif
