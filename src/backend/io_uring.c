/* SPDX-License-Identifier: MIT */
/*
 * io_uring.c - the completion backend: io_uring through liburing.
 *
 * The core hands over the head request of a direction; this backend turns it
 * into one SQE (recv, send, sendmsg, read, write, writev) and reports the CQE
 * back. At most one receive and one send per fd are in the kernel at a time,
 * because only queue heads are ever handed over. NULL-buffer reads use a
 * provided-buffer ring: the kernel takes a pool buffer only when data comes.
 *
 * Only the thread holding the watcher lock touches the rings. The waiting
 * thread flushes SQEs under the lock, then blocks in io_uring_enter for
 * events without it; other threads wake it through an eventfd the ring reads.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <liburing.h>

#include "../internal.h"
#include "io_uring_fault.h"

#define RING_ENTRIES 4096u
#define CQ_ENTRIES   32768u
#define BUF_GROUP    0

/* user_data: fd in bits 0-31, the registration's generation in 32-47, the
   direction's op number in 48-55, the kind above: a late cancel or CQE can
   never be taken for the op that follows it on the same fd. */
enum {
	KIND_READ = 0,
	KIND_WRITE = 1,
	KIND_CANCEL = 2, /* a cancel or no-op whose result does not matter */
	KIND_WAKE = 3,
	KIND_ACCEPT = 4,
	KIND_ASK_BACK = 5, /* the cancel of one head: bits 48-55 name its direction */
};

struct uring_state {
	struct io_uring ring;
	int evfd;
	uint64_t evbuf;       /* the wakeup read lands here */
	bool wake_armed;      /* a read of evfd is in the ring */
	uint32_t outstanding; /* SQEs whose CQE has not been reaped */
	struct io_uring_buf_ring *br;
	size_t br_bytes;
	unsigned br_entries;
	/* Free buffers in the ring, and how many it should hold; the others
	   wait on the pool's stack, where their pages can be given back. */
	uint32_t in_ring, ring_target;
	bool ring_down;      /* unregistered by ring_reset, not yet registered again */
	bool ring_grew;      /* since the last trim */
	struct msghdr *msgs; /* one per SQ slot: stable until submission */
	struct iovec *iovs;  /* one per SQ slot, for single-buffer sendmsg */
	/* Per-fd state of datagram sockets and listeners, made on first use. */
	struct fd_extra **extra;
	uint32_t nextra;
	bool single_accept; /* the kernel has no multishot accept */
	bool poll_first;    /* NULL-buffer reads of idle fds poll before the receive */
	bool link_reads;    /* ...with the receive linked to the poll (see arm_read) */
	/* Results of parked reads that found no memory for their node: each
	   holds a pool buffer, so there are at most as many as buffers. */
	struct held_result *held;
	uint32_t nheld;
	uint32_t direct_sends;       /* sends made at once since the ring was last entered */
	struct proact__ufault fault; /* tests only: PROACT_URING_FAULTS (io_uring_fault.c) */
	struct proact_stats *stats;  /* the watcher's counters */
};

struct fd_extra {
	/* recvmsg writes the sender's address length back into its msghdr at
	   completion, so a datagram receive keeps its own until then. */
	struct msghdr m;
	struct iovec iov;
	/* A listener's multishot accept: armed while accept requests wait. The
	   kernel may still hand over a connection before a disarm takes effect:
	   it waits in the stash for the next accept request. */
	bool armed, disarming;
	uint32_t nstash, stash_head, stash_cap; /* a ring of accepted fds */
	int *stash;
};

struct held_result {
	int fd;
	uint32_t gen;
	int32_t bid;
	int32_t res;
};

/* f->ready[PROACT__RD] here: 0 idle (poll first), 1 data likely, POLLING a
   poll is in flight, LINKED a poll with a receive linked to it, HELD a
   result waits in s->held, SURE a poll said data is there and no receive
   has run since, DRY a receive found the ring empty with no data known (it
   fails at once whether data is there or not): a poll comes first. */
#define POLLING 2
#define LINKED  3
#define HELD    4
#define SURE    5
#define DRY     6

/* What a pool receive of at most cap bytes says of the data left: a stream
   that gave less than asked is drained (0); the end of the stream, a full
   buffer or a datagram leave more only likely (1), never SURE. */
static uint8_t after_receive(const struct proact__fd *f, ssize_t res, size_t cap)
{
	return !(f->flags & PROACT__F_STREAM) || res == 0 || res >= (ssize_t)cap;
}

static struct uring_state *state(struct proact_watcher *w)
{
	return w->bstate;
}

static uint64_t pack(int kind, const struct proact__fd *f)
{
	uint64_t seq = kind == KIND_READ || kind == KIND_WRITE ? f->seq[kind] : 0;
	return (uint64_t)kind << 56 | seq << 48 | (uint64_t)(f->gen & 0xffffu) << 32 |
	       (uint32_t)f->fd;
}

/* An SQE; a full submission queue is flushed to the kernel first. */
static struct io_uring_sqe *sqe_get(struct uring_state *s)
{
	struct io_uring_sqe *sqe = proact__ufault_on(&s->fault) && proact__ufault_sq_full(&s->fault)
	                               ? NULL
	                               : io_uring_get_sqe(&s->ring);
	if (!sqe) {
		s->stats->ring_enters++;
		io_uring_submit(&s->ring);
		sqe = io_uring_get_sqe(&s->ring);
	}
	if (sqe) {
		s->outstanding++;
		s->stats->ring_entries++;
	}
	return sqe;
}

/* ---- setup ---- */

static bool ops_supported(struct io_uring *ring)
{
	static const int needed[] = {IORING_OP_RECV,         IORING_OP_SEND,    IORING_OP_SENDMSG,
	                             IORING_OP_READ,         IORING_OP_WRITE,   IORING_OP_WRITEV,
	                             IORING_OP_ASYNC_CANCEL, IORING_OP_POLL_ADD};
	struct io_uring_probe *p = io_uring_get_probe_ring(ring);
	if (!p)
		return false;
	bool ok = true;
	for (size_t i = 0; i < sizeof(needed) / sizeof(needed[0]); i++)
		ok = ok && io_uring_opcode_supported(p, needed[i]);
	io_uring_free_probe(p);
	return ok;
}

static int ring_setup(struct uring_state *s)
{
	/* Newest flags first; an older kernel refuses unknown ones with EINVAL. */
	static const unsigned flag_sets[] = {
	    IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN |
	        IORING_SETUP_TASKRUN_FLAG,
	    IORING_SETUP_CQSIZE,
	};
	int rc = -EINVAL;
	for (size_t i = 0; i < sizeof(flag_sets) / sizeof(flag_sets[0]); i++) {
		struct io_uring_params p = {.flags = flag_sets[i], .cq_entries = CQ_ENTRIES};
		rc = io_uring_queue_init_params(RING_ENTRIES, &s->ring, &p);
		if (rc != -EINVAL)
			break;
	}
	if (rc)
		return rc;
	unsigned need = IORING_FEAT_NODROP | IORING_FEAT_SUBMIT_STABLE | IORING_FEAT_EXT_ARG;
	if ((s->ring.features & need) != need || !ops_supported(&s->ring)) {
		io_uring_queue_exit(&s->ring);
		return -ENOSYS;
	}
	return 0;
}

/* The ring starts with this many buffers, and grows when it runs dry. */
#define RING_MIN 16u

static void ring_add(struct proact_watcher *w, struct uring_state *s, uint32_t idx)
{
	io_uring_buf_ring_add(s->br, proact__pool_addr(&w->pool, (int32_t)idx),
	                      (unsigned)w->pool.size, (unsigned short)idx,
	                      io_uring_buf_ring_mask(s->br_entries), 0);
	io_uring_buf_ring_advance(s->br, 1);
	s->in_ring++;
}

/* Tops the ring up to its target from the stack, last freed first. */
static void ring_fill(struct proact_watcher *w, struct uring_state *s)
{
	while (!s->ring_down && s->in_ring < s->ring_target && w->pool.nstack > 0)
		ring_add(w, s, proact__pool_pop(&w->pool));
}

static void ring_target_set(struct proact_watcher *w, struct uring_state *s, uint32_t n)
{
	s->ring_target = n < RING_MIN ? RING_MIN : n > w->pool.count ? w->pool.count : n;
	w->pool.hot = s->ring_target + PROACT__POOL_HOT;
}

/* The ring ran dry while the stack has buffers: a twice larger ring. */
static bool ring_grow(struct proact_watcher *w, struct uring_state *s)
{
	if (w->pool.nstack == 0 || s->ring_down)
		return false;
	ring_target_set(w, s, s->ring_target * 2);
	ring_fill(w, s);
	/* A larger ring touches more buffers: a trim period must come to
	   shrink it again once the load is gone. */
	s->ring_grew = true;
	if (!w->pool.trim_at)
		w->pool.trim_at = proact_now() + PROACT__POOL_TRIM_NS;
	return true;
}

static PROACT__NOINLINE int ring_register(struct uring_state *s)
{
	struct io_uring_buf_reg reg = {
	    .ring_addr = (uintptr_t)s->br, .ring_entries = s->br_entries, .bgid = BUF_GROUP};
	return io_uring_register_buf_ring(&s->ring, &reg, 0);
}

/* After ring_reset: a new, empty ring with the target's buffers. Until it
   works, pool reads that find no buffer wait as for an empty pool. */
static void ring_up(struct proact_watcher *w, struct uring_state *s)
{
	io_uring_buf_ring_init(s->br);
	if (ring_register(s) != 0)
		return;
	s->ring_down = false;
	ring_fill(w, s);
	proact__pool_wake(w);
}

static void reap(struct proact_watcher *w);

/*
 * Takes every free buffer back from the kernel onto the stack, where the
 * trim can give its pages back: the ring's buffers cannot leave it one by
 * one. Once the kernel has forgotten the ring, the results it filled before
 * are all in the completion queue (a receive picks its buffer and completes
 * under the ring's lock), so after they are reaped the ring's entries from
 * the kernel's head to the tail are exactly the free buffers it held.
 */
static void ring_reset(struct proact_watcher *w, struct uring_state *s)
{
	if (io_uring_unregister_buf_ring(&s->ring, BUF_GROUP) != 0)
		return;
	s->ring_down = true;
	reap(w);
	unsigned mask = (unsigned)io_uring_buf_ring_mask(s->br_entries);
	unsigned short tail = s->br->tail;
	for (uint32_t k = 0; k < s->in_ring; k++)
		proact__pool_push(&w->pool,
		                  s->br->bufs[(unsigned short)(tail - s->in_ring + k) & mask].bid);
	s->in_ring = 0;
	ring_up(w, s);
}

/* A trim: a ring that did not run dry for a whole period goes back to its
   smallest size, one that did to half its size. */
static void ur_pool_shrink(struct proact_watcher *w)
{
	struct uring_state *s = state(w);
	ring_target_set(w, s, s->ring_grew ? s->ring_target / 2 : RING_MIN);
	s->ring_grew = false;
	if (s->in_ring > s->ring_target && !s->ring_down)
		ring_reset(w, s);
}

/*
 * The provided-buffer ring. It holds a part of the pool, the most recently
 * used buffers: it hands buffers out in ring order, so a ring holding every
 * buffer would touch them all under a light load, and a buffer in the ring
 * may be written by the kernel at any time, so its pages cannot be given
 * back. The rest wait on the pool's stack.
 */
static int bufring_setup(struct proact_watcher *w, struct uring_state *s)
{
	struct proact__pool *p = &w->pool;
	if (p->count == 0)
		return 0;
	unsigned entries = 1;
	while (entries < p->count)
		entries <<= 1;
	s->br_bytes = entries * sizeof(struct io_uring_buf);
	void *m =
	    mmap(NULL, s->br_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return -ENOMEM;
	s->br = m;
	s->br_entries = entries;
	io_uring_buf_ring_init(s->br);
	int rc = ring_register(s);
	if (rc) {
		munmap(m, s->br_bytes);
		s->br = NULL;
		return rc == -EINVAL ? -ENOSYS : rc;
	}
	p->kernel_managed = true;
	ring_target_set(w, s, RING_MIN);
	ring_fill(w, s);
	return 0;
}

static void stash_close(struct fd_extra *x)
{
	for (; x->nstash > 0; x->nstash--) {
		close(x->stash[x->stash_head]);
		x->stash_head = (x->stash_head + 1) % x->stash_cap;
	}
	free(x->stash);
}

/* Connections still stashed when the listener goes are closed, like a backlog. */
static void extra_free(struct uring_state *s, uint32_t fd)
{
	if (!s->extra[fd])
		return;
	stash_close(s->extra[fd]);
	free(s->extra[fd]);
	s->extra[fd] = NULL;
}

static void ur_destroy_state(struct uring_state *s)
{
	if (s->br) {
		io_uring_unregister_buf_ring(&s->ring, BUF_GROUP);
		munmap(s->br, s->br_bytes);
	}
	io_uring_queue_exit(&s->ring);
	if (s->evfd >= 0)
		close(s->evfd);
	for (uint32_t i = 0; i < s->nextra; i++)
		extra_free(s, i);
	free(s->extra);
	free(s->msgs);
	free(s->iovs);
	free(s->held);
	free(s);
}

/* Kernels before 5.19 refuse a multishot accept as invalid; newer ones
   refuse one on an eventfd as not a socket. */
static bool multishot_accept_works(struct uring_state *s)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);
	struct io_uring_cqe *cqe;
	if (!sqe)
		return false;
	io_uring_prep_multishot_accept(sqe, s->evfd, NULL, NULL, 0);
	io_uring_sqe_set_data64(sqe, (uint64_t)KIND_CANCEL << 56);
	if (io_uring_submit_and_wait(&s->ring, 1) < 1 || io_uring_wait_cqe(&s->ring, &cqe) != 0)
		return false;
	int res = cqe->res;
	io_uring_cqe_seen(&s->ring, cqe);
	return res != -EINVAL;
}

static int ur_init(struct proact_watcher *w)
{
	struct uring_state *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->evfd = -1;
	s->stats = &w->stats;
	int rc = ring_setup(s);
	if (rc) {
		free(s);
		return rc;
	}
	s->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	s->msgs = calloc(s->ring.sq.ring_entries, sizeof(*s->msgs));
	s->iovs = calloc(s->ring.sq.ring_entries, sizeof(*s->iovs));
	rc = s->evfd < 0 ? -errno : !s->msgs || !s->iovs ? -ENOMEM : bufring_setup(w, s);
	if (rc) {
		w->pool.kernel_managed = false;
		ur_destroy_state(s);
		return rc;
	}
	/* A pending poll costs the kernel far less memory than a pending
	   receive (README, "Memory per idle connection"). The receive linked to
	   the poll runs when the poll fires, in the same pass of the kernel, and
	   only its result comes back: one round trip per read. Tests and
	   measurements pick the others with PROACT_URING_POOL_READ: "recv" (a
	   pending receive, no poll) or "poll" (the poll's result, then the
	   receive). */
	const char *mode = proact__env("PROACT_URING_POOL_READ");
	s->poll_first = !(mode && strcmp(mode, "recv") == 0);
	s->link_reads = s->poll_first && !(mode && strcmp(mode, "poll") == 0) &&
	                (s->ring.features & IORING_FEAT_CQE_SKIP) && w->pool.count > 0;
	if (s->link_reads && !(s->held = calloc(w->pool.count, sizeof(*s->held)))) {
		w->pool.kernel_managed = false;
		ur_destroy_state(s);
		return -ENOMEM;
	}
	w->park_reads = s->poll_first;
	s->single_accept = !multishot_accept_works(s);
	proact__ufault_init(&s->fault);
	w->bstate = s;
	return 0;
}

static void ur_destroy(struct proact_watcher *w)
{
	ur_destroy_state(state(w));
	w->bstate = NULL;
}

static int ur_fd_add(struct proact_watcher *w, struct proact__fd *f)
{
	(void)w;
	f->ready[PROACT__RD] = 0; /* a new connection is idle until a poll says otherwise */
	return 0;
}

/* The kernel filled buffer bid from the ring: it is held from now on. */
static void ring_took(struct proact_watcher *w, int32_t bid)
{
	struct uring_state *s = state(w);
	proact__pool_claim(w, bid);
	/* Refilled in batches, below half: in a steady loop the buffers come
	   back to the ring straight from ur_pool_recycle, not by the stack. */
	if (--s->in_ring < s->ring_target / 2)
		ring_fill(w, s);
}

/*
 * No memory to give a parked read its node back: the receive's result waits
 * here until the core retries (it paused the fd). Only a result in a pool
 * buffer is kept; any other (end of stream, an error, an empty pool) is
 * asked for again then: the receive runs again and finds the same state,
 * except that an error the socket reported once (a reset) then reads as the
 * end of the stream.
 */
static void hold_result(struct proact_watcher *w, struct proact__fd *f, ssize_t res,
                        uint32_t cflags)
{
	struct uring_state *s = state(w);
	f->inflight[PROACT__RD] = 0;
	f->ready[PROACT__RD] = 1;
	if (!(cflags & IORING_CQE_F_BUFFER))
		return;
	int32_t bid = (int32_t)(cflags >> IORING_CQE_BUFFER_SHIFT);
	ring_took(w, bid);
	s->held[s->nheld++] =
	    (struct held_result){.fd = f->fd, .gen = f->gen, .bid = bid, .res = (int32_t)res};
	f->ready[PROACT__RD] = HELD;
}

/* The result hold_result kept for f, as if the kernel had just given it. */
static bool take_held(struct proact_watcher *w, struct proact__fd *f, struct proact__req *r,
                      ssize_t *res)
{
	struct uring_state *s = state(w);
	f->ready[PROACT__RD] = 1; /* asked for again, if nothing was kept */
	for (uint32_t i = 0; i < s->nheld; i++) {
		struct held_result *h = &s->held[i];
		if (h->fd != f->fd || h->gen != f->gen)
			continue;
		r->buf = proact__pool_addr(&w->pool, h->bid);
		r->pool = h->bid;
		*res = h->res;
		*h = s->held[--s->nheld];
		f->ready[PROACT__RD] = after_receive(f, *res, r->len);
		return true;
	}
	return false;
}

static void drop_held(struct proact_watcher *w, const struct proact__fd *f)
{
	struct uring_state *s = state(w);
	for (uint32_t i = 0; i < s->nheld;) {
		if (s->held[i].fd == f->fd) {
			proact__pool_unref(w, s->held[i].bid);
			s->held[i] = s->held[--s->nheld];
		} else {
			i++;
		}
	}
}

static void ur_fd_remove(struct proact_watcher *w, struct proact__fd *f)
{
	struct uring_state *s = state(w);
	if ((uint32_t)f->fd < s->nextra)
		extra_free(s, (uint32_t)f->fd);
	if (f->ready[PROACT__RD] == HELD)
		drop_held(w, f);
}

/* The extra state of fd, made on first use. */
static struct fd_extra *extra_of(struct uring_state *s, int fd)
{
	if ((uint32_t)fd >= s->nextra) {
		uint32_t n = (uint32_t)fd + 1 > s->nextra * 2 ? (uint32_t)fd + 1 : s->nextra * 2;
		struct fd_extra **t = realloc(s->extra, n * sizeof(*t));
		if (!t)
			return NULL;
		memset(t + s->nextra, 0, (n - s->nextra) * sizeof(*t));
		s->extra = t;
		s->nextra = n;
	}
	if (!s->extra[fd])
		s->extra[fd] = calloc(1, sizeof(struct fd_extra));
	return s->extra[fd];
}

/* ---- I/O ---- */

/* One datagram, its true length (MSG_TRUNC) and its sender; buf NULL: a pool buffer. */
static int prep_recvfrom(struct uring_state *s, struct io_uring_sqe *sqe,
                         const struct proact__fd *f, const struct proact__req *r)
{
	struct fd_extra *h = extra_of(s, f->fd);
	if (!h)
		return -ENOMEM;
	h->iov = (struct iovec){.iov_base = r->buf, .iov_len = r->len};
	h->m = (struct msghdr){.msg_name = r->addr,
	                       .msg_namelen = r->addr ? r->addrlen : 0,
	                       .msg_iov = &h->iov,
	                       .msg_iovlen = 1};
	io_uring_prep_recvmsg(sqe, f->fd, &h->m, MSG_TRUNC);
	if (!r->buf) {
		sqe->flags |= IOSQE_BUFFER_SELECT;
		sqe->buf_group = BUF_GROUP;
	}
	return 0;
}

/* The kernel picks a pool buffer when data is there. */
static void prep_pool_read(struct io_uring_sqe *sqe, const struct proact__fd *f, size_t len)
{
	if (f->flags & PROACT__F_SOCKET)
		io_uring_prep_recv(sqe, f->fd, NULL, len, 0);
	else
		io_uring_prep_read(sqe, f->fd, NULL, (unsigned)len, (__u64)-1);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = BUF_GROUP;
}

static void prep_read(struct io_uring_sqe *sqe, const struct proact__fd *f,
                      const struct proact__req *r)
{
	if (!r->buf) {
		prep_pool_read(sqe, f, r->len);
		return;
	}
	char *p = (char *)r->buf + r->done;
	size_t n = r->len - r->done;
	if (f->flags & PROACT__F_SOCKET)
		io_uring_prep_recv(sqe, f->fd, p, n, 0);
	else
		io_uring_prep_read(sqe, f->fd, p, (unsigned)n, (__u64)-1);
}

static void prep_send(struct io_uring_sqe *sqe, const struct proact__fd *f, const void *p, size_t n)
{
	if (f->flags & PROACT__F_SOCKET)
		io_uring_prep_send(sqe, f->fd, p, n, MSG_NOSIGNAL);
	else
		io_uring_prep_write(sqe, f->fd, p, (unsigned)n, (__u64)-1);
}

static void prep_writev(struct uring_state *s, struct io_uring_sqe *sqe, const struct proact__fd *f,
                        const struct proact__req *r)
{
	const struct iovec *iov = r->buf;
	size_t done;
	int k = proact__iov_resume(r, &done);
	if (done > 0) { /* inside a segment: finish it on its own */
		prep_send(sqe, f, (const char *)iov[k].iov_base + done, iov[k].iov_len - done);
		return;
	}
	int n = r->iovcnt - k < PROACT__IOV_SLICE ? r->iovcnt - k : PROACT__IOV_SLICE;
	if (!(f->flags & PROACT__F_SOCKET)) {
		io_uring_prep_writev(sqe, f->fd, iov + k, (unsigned)n, (__u64)-1);
		return;
	}
	struct msghdr *m = &s->msgs[sqe - s->ring.sq.sqes];
	*m = (struct msghdr){.msg_iov = (struct iovec *)(iov + k), .msg_iovlen = (size_t)n};
	io_uring_prep_sendmsg(sqe, f->fd, m, MSG_NOSIGNAL);
}

/* A datagram to an address: the msghdr and iovec are copied when submitted. */
static void prep_sendto(struct uring_state *s, struct io_uring_sqe *sqe, const struct proact__fd *f,
                        const struct proact__req *r)
{
	size_t slot = (size_t)(sqe - s->ring.sq.sqes);
	s->iovs[slot] = (struct iovec){.iov_base = r->buf, .iov_len = r->len};
	s->msgs[slot] = (struct msghdr){.msg_name = r->addr,
	                                .msg_namelen = r->addrlen,
	                                .msg_iov = &s->iovs[slot],
	                                .msg_iovlen = 1};
	io_uring_prep_sendmsg(sqe, f->fd, &s->msgs[slot], MSG_NOSIGNAL);
}

static int prep_io(struct uring_state *s, struct io_uring_sqe *sqe, struct proact__fd *f, int dir,
                   struct proact__req *r)
{
	if (r->op == PROACT_OP_ACCEPT) {
		io_uring_prep_accept(sqe, f->fd, r->addr, r->addr ? &r->addrlen : NULL,
		                     SOCK_NONBLOCK | SOCK_CLOEXEC);
	} else if (r->op == PROACT_OP_RECVFROM) {
		return prep_recvfrom(s, sqe, f, r);
	} else if (dir == PROACT__RD) {
		prep_read(sqe, f, r);
	} else if (r->op == PROACT_OP_CONNECT) {
		io_uring_prep_connect(sqe, f->fd, r->addr, r->addrlen);
	} else if (r->op == PROACT_OP_WRITEV) {
		prep_writev(s, sqe, f, r);
	} else if (r->op == PROACT_OP_SENDTO && r->addr) {
		prep_sendto(s, sqe, f, r);
	} else {
		prep_send(sqe, f, (const char *)r->buf + r->done, r->len - r->done);
	}
	return 0;
}

/* ---- accept: one multishot accept per listener, while requests wait ---- */

/* The kernel may take a whole listen backlog in one go: the stash grows. */
static bool stash_grow(struct fd_extra *x)
{
	uint32_t cap = x->stash_cap ? x->stash_cap * 2 : 16;
	int *t = malloc(cap * sizeof(*t));
	if (!t)
		return false;
	for (uint32_t i = 0; i < x->nstash; i++)
		t[i] = x->stash[(x->stash_head + i) % x->stash_cap];
	free(x->stash);
	x->stash = t;
	x->stash_cap = cap;
	x->stash_head = 0;
	return true;
}

static void stash_push(struct fd_extra *x, int fd)
{
	if (x->nstash == x->stash_cap && !stash_grow(x)) {
		close(fd); /* out of memory: the peer sees a reset */
		return;
	}
	x->stash[(x->stash_head + x->nstash) % x->stash_cap] = fd;
	x->nstash++;
}

static int stash_pop(struct fd_extra *x)
{
	int fd = x->stash[x->stash_head];
	x->stash_head = (x->stash_head + 1) % x->stash_cap;
	x->nstash--;
	return fd;
}

/* A multishot accept cannot share one address buffer: ask the socket. */
static PROACT__NOINLINE void peer_addr(struct proact__req *r, int fd)
{
	if (!r->addr)
		return;
	socklen_t len = r->addrlen;
	r->addrlen = getpeername(fd, r->addr, &len) == 0 ? len : 0;
}

static ssize_t accept_io(struct uring_state *s, struct proact__fd *f, struct proact__req *r)
{
	struct fd_extra *x = extra_of(s, f->fd);
	if (!x)
		return -ENOMEM;
	if (x->nstash) {
		int fd = stash_pop(x);
		peer_addr(r, fd);
		return fd;
	}
	if (x->armed) /* also while disarming: its last CQE arms it again */
		return PROACT__INFLIGHT;
	struct io_uring_sqe *sqe = sqe_get(s);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_multishot_accept(sqe, f->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, pack(KIND_ACCEPT, f));
	if (proact__ufault_on(&s->fault))
		proact__ufault_sqe(&s->fault, sqe, false);
	x->armed = true;
	return PROACT__INFLIGHT;
}

static void disarm(struct uring_state *s, struct proact__fd *f, struct fd_extra *x)
{
	if (!x->armed || x->disarming)
		return;
	struct io_uring_sqe *sqe = sqe_get(s);
	if (!sqe)
		return;
	io_uring_prep_cancel64(sqe, pack(KIND_ACCEPT, f), 0);
	io_uring_sqe_set_data64(sqe, (uint64_t)KIND_CANCEL << 56);
	x->disarming = true;
}

static bool accept_waiting(const struct proact__fd *f)
{
	const struct proact__req *r = f->head[PROACT__RD];
	return r && r->op == PROACT_OP_ACCEPT && f->inflight[PROACT__RD];
}

/* Errors after which the same accept simply goes on. */
static bool accept_transient(int res)
{
	return res == -ECONNABORTED || res == -EAGAIN || res == -EINTR || res == -ECANCELED;
}

/* Gives a connection to the waiting request, or to the stash. */
static void accept_conn(struct proact_watcher *w, struct proact__fd *f, struct fd_extra *x, int fd,
                        bool more)
{
	if (accept_waiting(f) && !f->cancel[PROACT__RD]) {
		peer_addr(f->head[PROACT__RD], fd);
		proact__io_done(w, f, PROACT__RD, fd);
		return;
	}
	stash_push(x, fd);
	if (accept_waiting(f) && !more) /* cancelled, and the kernel is done with it */
		proact__io_done(w, f, PROACT__RD, -ECANCELED);
}

static void accept_result(struct proact_watcher *w, uint64_t ud, const struct io_uring_cqe *cqe)
{
	struct uring_state *s = state(w);
	struct proact__fd *f = proact__fd_lookup(w, (int)(uint32_t)ud);
	int res = cqe->res;
	bool more = cqe->flags & IORING_CQE_F_MORE;
	if (!f || ud != pack(KIND_ACCEPT, f) || (uint32_t)f->fd >= s->nextra || !s->extra[f->fd]) {
		if (res >= 0)
			close(res); /* its listener is gone */
		return;
	}
	struct fd_extra *x = s->extra[f->fd];
	if (!more)
		x->armed = x->disarming = false;
	if (res >= 0) {
		accept_conn(w, f, x, res, more);
	} else if (accept_waiting(f) && (f->cancel[PROACT__RD] || !accept_transient(res))) {
		proact__io_done(w, f, PROACT__RD, res); /* EMFILE..., or the core's cancel */
	} else if (accept_waiting(f) && !more) {
		f->inflight[PROACT__RD] = 0; /* ended while a request waits: arm again */
		proact__progress(w, f, PROACT__RD);
	}
	/* Leave no multishot armed with nobody waiting: the kernel would accept on. */
	if (f->state == PROACT__FD_ACTIVE && s->extra[f->fd] && !accept_waiting(f))
		disarm(s, f, s->extra[f->fd]);
}

/*
 * A poll with a pool receive linked to it. The kernel starts the receive
 * when the poll fires, in the same pass, and posts only its result (the
 * poll's success is skipped): one round trip per read, while an idle fd still
 * holds no buffer and no receive. Both carry the same user_data: only one of
 * them is ever live in the kernel, so one cancel finds whichever it is, and a
 * failed poll (cancelled) posts its own result and skips the receive's.
 */
static ssize_t arm_linked_read(struct uring_state *s, struct proact__fd *f, size_t len)
{
	bool full = proact__ufault_on(&s->fault) && proact__ufault_sq_full(&s->fault);
	if (full || io_uring_sq_space_left(&s->ring) < 2) {
		s->stats->ring_enters++;
		io_uring_submit(&s->ring); /* the pair must reach the kernel together */
	}
	if (io_uring_sq_space_left(&s->ring) < 2)
		return -EBUSY;
	struct io_uring_sqe *poll = io_uring_get_sqe(&s->ring);
	struct io_uring_sqe *recv = io_uring_get_sqe(&s->ring);
	f->ready[PROACT__RD] = LINKED;
	f->seq[PROACT__RD]++;
	io_uring_prep_poll_add(poll, f->fd, POLLIN | POLLRDHUP);
	poll->flags |= IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
	io_uring_sqe_set_data64(poll, pack(KIND_READ, f));
	prep_pool_read(recv, f, len);
	io_uring_sqe_set_data64(recv, pack(KIND_READ, f));
	if (proact__ufault_on(&s->fault))
		proact__ufault_sqe(&s->fault, recv, f->flags & PROACT__F_STREAM);
	s->outstanding++; /* one result for the pair */
	s->stats->ring_entries += 2;
	return PROACT__ARMED;
}

/* Poll first: an idle fd's pool read holds no buffer and no receive in the
   kernel, and the core may park it (PROACT__ARMED). len: the read's cap, 0
   for a plain poll whose result comes first. */
static ssize_t arm_read(struct uring_state *s, struct proact__fd *f, size_t len)
{
	if (len)
		return arm_linked_read(s, f, len);
	struct io_uring_sqe *sqe = sqe_get(s);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_poll_add(sqe, f->fd, POLLIN | POLLRDHUP);
	f->ready[PROACT__RD] = POLLING;
	f->seq[PROACT__RD]++;
	io_uring_sqe_set_data64(sqe, pack(KIND_READ, f));
	if (proact__ufault_on(&s->fault))
		proact__ufault_sqe(&s->fault, sqe, f->flags & PROACT__F_STREAM);
	return PROACT__ARMED;
}

/* The core's hook: a parked read is always a whole-buffer pool READ. */
static ssize_t ur_arm_read(struct proact_watcher *w, struct proact__fd *f)
{
	struct uring_state *s = state(w);
	return arm_read(s, f, s->link_reads ? w->pool.size : 0);
}

/*
 * A send that finds room in the socket goes out at once: no SQE, no
 * completion round trip. What would block goes to the kernel (INFLIGHT
 * here: "submit it"), and sends stay there until one completes again.
 * f->ready[PROACT__WR]: the last send found room. Only a few per round of
 * the ring go at once: a burst (one message to thousands of connections)
 * is faster as SQEs in one io_uring_enter, which wakes the receivers in one
 * pass instead of one system call (and one wakeup) at a time.
 */
#define DIRECT_SENDS_PER_ROUND 16

static ssize_t send_now(struct uring_state *s, struct proact__fd *f, const struct proact__req *r)
{
	s->stats->io_calls++;
	struct proact__sent sent = proact__send_head(f, r);
	ssize_t n = sent.n;
	if (n >= 0) {
		if ((size_t)n < sent.asked)
			f->ready[PROACT__WR] = 0; /* full: the rest goes through the ring */
		return n;
	}
	if (errno != EAGAIN && errno != EWOULDBLOCK)
		return -errno;
	f->ready[PROACT__WR] = 0;
	return PROACT__INFLIGHT;
}

/*
 * A file's range goes out with sendfile(2) while the socket has room (the
 * kernel copies from the page cache, as a splice through a pipe would, with
 * no pipe per connection); when it is full a poll in the ring says when
 * there is room again, and its result comes back as the write's.
 */
static ssize_t sendfile_io(struct uring_state *s, struct proact__fd *f, struct proact__req *r)
{
	if (f->ready[PROACT__WR]) {
		ssize_t n = send_now(s, f, r);
		if (n != PROACT__INFLIGHT)
			return n;
	}
	struct io_uring_sqe *sqe = sqe_get(s);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_poll_add(sqe, f->fd, POLLOUT);
	f->seq[PROACT__WR]++;
	io_uring_sqe_set_data64(sqe, pack(KIND_WRITE, f));
	return PROACT__INFLIGHT;
}

/* The core's send_now: a send straight from the submitting call while the
   socket has room and this round's direct sends last; PROACT__WAIT sends
   it through the ring. */
static ssize_t ur_send_now(struct proact_watcher *w, struct proact__fd *f, struct proact__req *r)
{
	struct uring_state *s = state(w);
	if (!f->ready[PROACT__WR] || s->direct_sends >= DIRECT_SENDS_PER_ROUND ||
	    proact__ufault_on(&s->fault))
		return PROACT__WAIT;
	s->direct_sends++;
	ssize_t n = send_now(s, f, r);
	return n == PROACT__INFLIGHT ? PROACT__WAIT : n;
}

static ssize_t ur_io(struct proact_watcher *w, struct proact__fd *f, int dir, struct proact__req *r)
{
	struct uring_state *s = state(w);
	if (r->op == PROACT_OP_ACCEPT && !s->single_accept)
		return accept_io(s, f, r);
	if (r->op == PROACT_OP_SENDFILE)
		return sendfile_io(s, f, r);
	if (dir == PROACT__WR && r->op != PROACT_OP_CONNECT) {
		ssize_t n = ur_send_now(w, f, r);
		if (n != PROACT__WAIT)
			return n;
	}
	bool pool_read = dir == PROACT__RD && !r->buf && r->op != PROACT_OP_ACCEPT;
	ssize_t held;
	if (pool_read && f->ready[PROACT__RD] == HELD && take_held(w, f, r, &held))
		return held;
	if (pool_read &&
	    ((s->poll_first && f->ready[PROACT__RD] == 0) || f->ready[PROACT__RD] == DRY))
		return arm_read(s, f, s->link_reads && r->op == PROACT_OP_READ ? r->len : 0);
	/* Reads with data wait for a pool buffer in order: a receive that would
	   take one while others wait joins them instead of overtaking. Only a
	   read whose data a poll saw: one without could wait for data once
	   woken, holding the buffer reserved for it while reads with data wait. */
	if (pool_read && f->ready[PROACT__RD] == SURE && w->starved_head && !f->pool_try &&
	    w->pool.navail <= w->pool.trying)
		return PROACT__NOPOOL;
	struct io_uring_sqe *sqe = sqe_get(s);
	if (!sqe)
		return -EBUSY;
	int rc = prep_io(s, sqe, f, dir, r);
	if (rc) { /* the SQE is taken: make it a no-op nobody waits for */
		io_uring_prep_nop(sqe);
		io_uring_sqe_set_data64(sqe, (uint64_t)KIND_CANCEL << 56);
		return rc;
	}
	f->seq[dir]++;
	io_uring_sqe_set_data64(sqe, pack(dir == PROACT__RD ? KIND_READ : KIND_WRITE, f));
	if (proact__ufault_on(&s->fault))
		proact__ufault_sqe(&s->fault, sqe, f->flags & PROACT__F_STREAM);
	return PROACT__INFLIGHT;
}

static void ur_cancel(struct proact_watcher *w, struct proact__fd *f, int dir)
{
	struct uring_state *s = state(w);
	if (dir == PROACT__RD && f->head[dir]->op == PROACT_OP_ACCEPT && !s->single_accept) {
		if ((uint32_t)f->fd < s->nextra && s->extra[f->fd])
			disarm(s, f, s->extra[f->fd]);
		return;
	}
	struct io_uring_sqe *sqe = sqe_get(s);
	if (!sqe)
		return;
	io_uring_prep_cancel64(sqe, pack(dir == PROACT__RD ? KIND_READ : KIND_WRITE, f), 0);
	io_uring_sqe_set_data64(sqe, (uint64_t)KIND_ASK_BACK << 56 | (uint64_t)dir << 48 |
	                                 (uint64_t)(f->gen & 0xffffu) << 32 | (uint32_t)f->fd);
}

/*
 * A cancel that did not stop its request (EALREADY: running; ENOENT: a send
 * that a kernel worker finishes, which cancel does not find) leaves it to
 * block until the peer makes room, and a Unix-domain peer that stopped
 * reading never does. When the fd is being freed anyway, shutting the socket
 * down ends the wait (EPIPE) at once.
 */
static void asked_back(struct proact_watcher *w, uint64_t ud, int res)
{
	struct proact__fd *f = proact__fd_lookup(w, (int)(uint32_t)ud);
	int dir = (int)(ud >> 48) & 0xff;
	if (res == 0 || !f || (f->gen & 0xffffu) != ((ud >> 32) & 0xffffu))
		return;
	if (f->state == PROACT__FD_CLOSING && !(f->flags & PROACT__F_DETACH) &&
	    (f->flags & PROACT__F_SOCKET) && f->inflight[dir])
		shutdown(f->fd, SHUT_RDWR);
}

/* ---- completions ---- */

/* A poll found the fd ready: its request goes on, or ends if it was asked back. */
static void poll_ready(struct proact_watcher *w, struct proact__fd *f, int dir)
{
	if (f->cancel[dir]) {
		proact__io_done(w, f, dir, 0);
	} else {
		f->inflight[dir] = 0;
		proact__progress(w, f, dir);
	}
}

/* The linked receive of a parked read brought data, the end of the stream
   or an error: final, unless it was asked back. */
static bool parked_final(const struct proact__fd *f, ssize_t res, uint32_t cflags)
{
	if (f->cancel[PROACT__RD] || f->state != PROACT__FD_ACTIVE)
		return false;
	if (cflags & IORING_CQE_F_BUFFER)
		return true;
	return res <= 0 && res != -ENOBUFS && res != -EAGAIN && res != -EINTR;
}

/* A parked read's final result completes it at once, never queued; out of
   memory for its node, the result is kept until the fd is resumed. */
static void parked_result(struct proact_watcher *w, struct proact__fd *f, ssize_t res,
                          uint32_t cflags)
{
	bool buffer = cflags & IORING_CQE_F_BUFFER;
	int32_t bid = buffer ? (int32_t)(cflags >> IORING_CQE_BUFFER_SHIFT) : -1;
	if (!proact__parked_done(w, f, res, bid)) {
		hold_result(w, f, res, cflags);
		return;
	}
	if (buffer)
		ring_took(w, bid);
	f->inflight[PROACT__RD] = 0;
	f->ready[PROACT__RD] = after_receive(f, res, w->pool.size);
}

/* A receive found the ring empty and it cannot grow: a read whose data a
   poll saw waits for a buffer in line; any other is submitted again to poll
   first (-EAGAIN), as the kernel fails such a receive before it looks for
   data: woken without data, it would keep the buffer reserved for it from
   the reads that have some. */
static ssize_t dry(struct proact__fd *f, bool sure)
{
	if (sure)
		return PROACT__NOPOOL;
	f->ready[PROACT__RD] = DRY;
	return -EAGAIN;
}

static void io_result(struct proact_watcher *w, uint64_t ud, const struct io_uring_cqe *cqe)
{
	int dir = (int)(ud >> 56) == KIND_READ ? PROACT__RD : PROACT__WR;
	struct proact__fd *f = proact__fd_lookup(w, (int)(uint32_t)ud);
	ssize_t res = cqe->res;
	if (!f || ud != pack(dir, f) || !f->inflight[dir])
		return; /* cannot happen: an fd is released only once reaped */
	if (dir == PROACT__RD && f->ready[PROACT__RD] == POLLING) {
		f->ready[PROACT__RD] = SURE; /* data is there: now the receive */
		poll_ready(w, f, dir);
		return;
	}
	if (dir == PROACT__RD && f->ready[PROACT__RD] == LINKED) {
		/* as after a poll's result; what the receive found comes below */
		f->ready[PROACT__RD] = SURE;
		if ((f->flags & PROACT__F_PARKED) && parked_final(f, res, cqe->flags)) {
			parked_result(w, f, res, cqe->flags);
			return;
		}
		if ((f->flags & PROACT__F_PARKED) && !proact__unpark_for_result(w, f)) {
			hold_result(w, f, res, cqe->flags);
			return;
		}
	}
	struct proact__req *r = f->head[dir];
	if (r->op == PROACT_OP_SENDFILE && res >= 0) { /* the poll of sendfile_io: room */
		f->ready[PROACT__WR] = 1;
		poll_ready(w, f, dir);
		return;
	}
	if (dir == PROACT__WR && res >= 0)
		f->ready[PROACT__WR] = 1; /* the socket took it: the next send may go at once */
	bool sure = dir == PROACT__RD && f->ready[PROACT__RD] == SURE;
	if (sure && res != -ENOBUFS)
		f->ready[PROACT__RD] = 1; /* a receive ran: more data is only likely */
	if (r->op == PROACT_OP_READ && !r->buf && (f->flags & PROACT__F_STREAM) && res != -ENOBUFS)
		f->ready[PROACT__RD] = after_receive(f, res, r->len);
	if (cqe->flags & IORING_CQE_F_BUFFER) {
		int32_t bid = (int32_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
		ring_took(w, bid);
		r->buf = proact__pool_addr(&w->pool, bid);
		r->pool = bid;
	} else if (res == -ENOBUFS && dir == PROACT__RD && !r->buf) {
		res = ring_grow(w, state(w)) ? -EAGAIN : dry(f, sure);
	}
	if (r->op == PROACT_OP_RECVFROM && res >= 0 && r->addr)
		r->addrlen = state(w)->extra[f->fd]->m.msg_namelen;
	bool again = res == -EAGAIN || res == -EINTR;
	if (r->op == PROACT_OP_CONNECT)
		again = false; /* EAGAIN: a Unix-domain listener's backlog is full */
	else if (r->op == PROACT_OP_ACCEPT)
		again = again || res == -ECONNABORTED;
	if (again && !f->cancel[dir]) {
		f->inflight[dir] = 0; /* nothing final happened: submit it again */
		proact__progress(w, f, dir);
		return;
	}
	if (again)
		res = 0;
	proact__io_done(w, f, dir, res);
}

static void reap(struct proact_watcher *w)
{
	struct uring_state *s = state(w);
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0;
	io_uring_for_each_cqe(&s->ring, head, cqe)
	{
		struct io_uring_cqe copy; /* the loop sets cqe from head again each round */
		if (proact__ufault_on(&s->fault))
			cqe = proact__ufault_cqe(cqe, &copy);
		uint64_t ud = io_uring_cqe_get_data64(cqe);
		int kind = (int)(ud >> 56);
		seen++;
		/* Saturating: a kernel that posted both results of a linked pair
		   must not leave quiesce waiting for one that never comes. */
		if (!(cqe->flags & IORING_CQE_F_MORE) && s->outstanding > 0)
			s->outstanding--;
		if (kind == KIND_WAKE) {
			s->wake_armed = false;
			w->wake_sent = false;
		} else if (kind == KIND_READ || kind == KIND_WRITE) {
			if (!w->closed)
				io_result(w, ud, cqe);
		} else if (kind == KIND_ASK_BACK) {
			if (!w->closed)
				asked_back(w, ud, cqe->res);
		} else if (kind == KIND_ACCEPT) {
			if (!w->closed)
				accept_result(w, ud, cqe);
			else if (cqe->res >= 0)
				close(cqe->res);
		}
	}
	io_uring_cq_advance(&s->ring, seen);
}

static void arm_wakeup(struct uring_state *s)
{
	if (s->wake_armed)
		return;
	struct io_uring_sqe *sqe = sqe_get(s);
	if (!sqe)
		return;
	io_uring_prep_read(sqe, s->evfd, &s->evbuf, sizeof(s->evbuf), 0);
	io_uring_sqe_set_data64(sqe, (uint64_t)KIND_WAKE << 56);
	s->wake_armed = true;
}

/* Publishes the prepared SQEs to the kernel; returns how many it has not consumed. */
static unsigned flush_sq(struct io_uring *ring)
{
	struct io_uring_sq *sq = &ring->sq;
	unsigned tail = sq->sqe_tail;
	if (sq->sqe_head != tail) {
		sq->sqe_head = tail;
		io_uring_smp_store_release(sq->ktail, tail);
	}
	return tail - io_uring_smp_load_acquire(sq->khead);
}

/*
 * Submits the flushed SQEs and blocks for at least one CQE in one
 * io_uring_enter. Runs without the lock, so it touches no user-space ring
 * state: the SQ was flushed under the lock, and a thread shutting the watcher
 * down may use the rings meanwhile.
 */
static PROACT__NOINLINE int submit_and_wait(struct uring_state *s, unsigned to_submit,
                                            int64_t timeout_ns)
{
	struct __kernel_timespec ts = {.tv_sec = timeout_ns / 1000000000,
	                               .tv_nsec = timeout_ns % 1000000000};
	struct io_uring_getevents_arg arg = {
	    .sigmask_sz = _NSIG / 8,
	    .ts = timeout_ns < 0 ? 0 : (uint64_t)(uintptr_t)&ts,
	};
	int rc = io_uring_enter2((unsigned)s->ring.ring_fd, to_submit, 1,
	                         IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, (sigset_t *)&arg,
	                         sizeof(arg));
	return rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY ? rc : 0;
}

static int ur_poll(struct proact_watcher *w, int64_t timeout_ns)
{
	struct uring_state *s = state(w);
	s->direct_sends = 0;
	if (s->ring_down)
		ring_up(w, s);
	arm_wakeup(s);
	int rc;
	if (timeout_ns == 0 || io_uring_cq_ready(&s->ring) > 0) {
		s->stats->ring_enters += io_uring_sq_ready(&s->ring) > 0;
		rc = io_uring_submit(&s->ring);
		rc = rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY ? rc : 0;
	} else {
		unsigned to_submit = flush_sq(&s->ring);
		w->stats.kernel_waits++;
		w->stats.ring_enters++;
		w->sleeping = true;
		proact__unlock(w);
		rc = submit_and_wait(s, to_submit, timeout_ns);
		proact__lock(w);
		w->sleeping = false;
	}
	if (!w->closed)
		reap(w);
	return rc;
}

static void ur_wakeup(struct proact_watcher *w)
{
	uint64_t one = 1;
	ssize_t rc = write(state(w)->evfd, &one, sizeof(one));
	(void)rc; /* a full counter still wakes the ring's read */
}

/* Sockets with a request in the kernel that a cancel may not reach (see asked_back). */
static void shutdown_inflight(struct proact_watcher *w)
{
	for (uint32_t c = 0; c < w->fdtab_chunks; c++) {
		for (uint32_t i = 0; w->fdtab[c] && i < PROACT__FDTAB_CHUNK; i++) {
			struct proact__fd *f = &w->fdtab[c][i];
			if (f->state != PROACT__FD_UNUSED && (f->flags & PROACT__F_SOCKET) &&
			    (f->inflight[PROACT__RD] || f->inflight[PROACT__WR]))
				shutdown(f->fd, SHUT_RDWR);
		}
	}
}

/* Reaps what is there; the kernel holds nothing once outstanding is 0. */
static void quiesce_reap(struct uring_state *s)
{
	struct io_uring_cqe *cqe;
	while (io_uring_peek_cqe(&s->ring, &cqe) == 0) {
		uint64_t kind = io_uring_cqe_get_data64(cqe) >> 56;
		if (kind == KIND_WAKE)
			s->wake_armed = false;
		if (kind == KIND_ACCEPT && cqe->res >= 0)
			close(cqe->res); /* accepted while shutting down: nobody asked */
		if (!(cqe->flags & IORING_CQE_F_MORE) && s->outstanding > 0)
			s->outstanding--;
		io_uring_cqe_seen(&s->ring, cqe);
	}
}

/*
 * Shutdown: cancel everything in the ring and reap until the kernel holds
 * nothing. What the cancel cannot stop within 50 ms (a send blocked in a
 * kernel worker) is ended by shutting its socket down: every registered fd
 * is closed next anyway.
 */
static void ur_quiesce(struct proact_watcher *w)
{
	struct uring_state *s = state(w);
	struct io_uring_sqe *sqe = sqe_get(s);
	if (sqe) {
		io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
		io_uring_sqe_set_data64(sqe, (uint64_t)KIND_CANCEL << 56);
	}
	bool forced = false;
	while (s->outstanding > 0) {
		struct io_uring_cqe *cqe;
		struct __kernel_timespec ts = {.tv_nsec = 50 * 1000 * 1000};
		int rc = io_uring_submit_and_wait_timeout(&s->ring, &cqe, 1, &ts, NULL);
		if (rc == -ETIME && !forced) {
			shutdown_inflight(w);
			forced = true;
		} else if (rc < 0 && rc != -EINTR && rc != -ETIME) {
			break;
		}
		quiesce_reap(s);
	}
}

static void ur_pool_recycle(struct proact_watcher *w, uint32_t idx)
{
	struct uring_state *s = state(w);
	if (s->in_ring < s->ring_target && !s->ring_down)
		ring_add(w, s, idx);
	else
		proact__pool_push(&w->pool, idx);
}

const struct proact__backend proact__backend_uring = {
    .name = "io_uring",
    .init = ur_init,
    .destroy = ur_destroy,
    .fd_add = ur_fd_add,
    .fd_remove = ur_fd_remove,
    .io = ur_io,
    .send_now = ur_send_now,
    .arm_read = ur_arm_read,
    .cancel = ur_cancel,
    .poll = ur_poll,
    .wakeup = ur_wakeup,
    .quiesce = ur_quiesce,
    .pool_recycle = ur_pool_recycle,
    .pool_shrink = ur_pool_shrink,
};
