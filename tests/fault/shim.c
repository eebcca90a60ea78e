/* SPDX-License-Identifier: MIT */
/*
 * shim.c - an LD_PRELOAD library that makes system calls fail on purpose.
 *
 * It wraps the calls the epoll backend makes and injects, by a seeded
 * schedule, only results the kernel could really give at that moment:
 *
 *   eintr     a data call, accept4 or epoll_wait fails with EINTR before
 *             doing anything;
 *   eagain    a data call or accept4 on a non-blocking socket fails with EAGAIN;
 *   short     a read or write on a stream socket moves fewer bytes than asked
 *             (really: the call is made with a smaller length and its result
 *             returned); datagrams go whole or not at all, so never those;
 *   events    epoll_wait returns fewer events than are ready (the rest stay
 *             on the ready list for the next call, as in the kernel);
 *   spurious  epoll_wait reports readiness that is not there;
 *   enomem    epoll_ctl(ADD) fails with ENOMEM;
 *   enospc    epoll_ctl(ADD) fails with ENOSPC (max_user_watches reached);
 *   emfile    epoll_create1, eventfd and accept4 fail with EMFILE.
 *
 * EAGAIN and a short transfer on an edge-triggered fd stand for "the data (or
 * the room) arrived a moment after the call". The kernel then raises a new
 * edge, so the shim owes the fd one: the next epoll_wait reports it. Without
 * that, an injected fault would describe a timeline no kernel produces.
 *
 * Data-call faults hit only sockets registered edge-triggered in an epoll
 * set (the library's), so blocking peer sockets of a test are left alone.
 *
 * PROACT_FAULTS sets the schedule at load, e.g.
 *   PROACT_FAULTS="seed=7,eintr=10,eagain=10,short=30,events=20,spurious=5"
 * (percent of eligible calls). A test program changes it at run time through
 * proact_fault_shim_set() and reads counts with proact_fault_shim_hits(),
 * both found with dlsym(RTLD_DEFAULT, ...).
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define SHIM_API __attribute__((visibility("default")))
#define MAX_FDS  65536
#define MAX_OWED 4096
#define MAX_IOV  1024

enum kind { K_EINTR, K_EAGAIN, K_SHORT, K_EVENTS, K_SPURIOUS, K_ENOMEM, K_ENOSPC, K_EMFILE, K_N };
static const char *const kind_names[K_N] = {"eintr",    "eagain", "short",  "events",
                                            "spurious", "enomem", "enospc", "emfile"};

/* An fd's registration in an epoll set, as the shim saw it go by. */
struct reg {
	int epfd1; /* epfd + 1; 0: not registered */
	uint32_t events;
	uint64_t data;
	uint32_t owed; /* edges owed after an injected EAGAIN or short transfer */
	bool stream;   /* SOCK_STREAM: transfers may be short */
};

static struct {
	pthread_mutex_t lock;
	pthread_once_t once;
	uint64_t rng;
	unsigned pct[K_N];
	unsigned long hits[K_N];
	int owed[MAX_OWED]; /* fds with owed edges (may hold stale entries) */
	int nowed;
	struct reg regs[MAX_FDS];
} g = {.lock = PTHREAD_MUTEX_INITIALIZER, .once = PTHREAD_ONCE_INIT, .rng = 1};

/* ---- the real functions ---- */

static void *real_sym(void **slot, const char *name)
{
	void *p = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
	if (!p) {
		p = dlsym(RTLD_NEXT, name);
		if (!p) {
			fprintf(stderr, "fault shim: no next %s\n", name);
			abort();
		}
		__atomic_store_n(slot, p, __ATOMIC_RELEASE);
	}
	return p;
}

#define REAL(fn, type)                                                                             \
	static type real_##fn(void)                                                                \
	{                                                                                          \
		static void *slot;                                                                 \
		return (type)real_sym(&slot, #fn);                                                 \
	}

typedef ssize_t (*read_fn)(int, void *, size_t);
typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef ssize_t (*recv_fn)(int, void *, size_t, int);
typedef ssize_t (*send_fn)(int, const void *, size_t, int);
typedef ssize_t (*writev_fn)(int, const struct iovec *, int);
typedef ssize_t (*sendmsg_fn)(int, const struct msghdr *, int);
typedef ssize_t (*recvmsg_fn)(int, struct msghdr *, int);
typedef int (*accept4_fn)(int, struct sockaddr *, socklen_t *, int);
typedef int (*epoll_wait_fn)(int, struct epoll_event *, int, int);
typedef int (*epoll_ctl_fn)(int, int, int, struct epoll_event *);
typedef int (*epoll_create1_fn)(int);
typedef int (*eventfd_fn)(unsigned, int);
typedef int (*close_fn)(int);
REAL(read, read_fn)
REAL(write, write_fn)
REAL(recv, recv_fn)
REAL(send, send_fn)
REAL(writev, writev_fn)
REAL(sendmsg, sendmsg_fn)
REAL(recvmsg, recvmsg_fn)
REAL(accept4, accept4_fn)
REAL(epoll_wait, epoll_wait_fn)
REAL(epoll_ctl, epoll_ctl_fn)
REAL(epoll_create1, epoll_create1_fn)
REAL(eventfd, eventfd_fn)
REAL(close, close_fn)

/* ---- the schedule ---- */

static uint64_t next_random(void)
{
	/* xorshift64*: deterministic for a seed, good enough to spread faults */
	g.rng ^= g.rng >> 12;
	g.rng ^= g.rng << 25;
	g.rng ^= g.rng >> 27;
	return g.rng * 2685821657736338717ull;
}

static int kind_index(const char *name, size_t len)
{
	for (int k = 0; k < K_N; k++)
		if (strlen(kind_names[k]) == len && strncmp(kind_names[k], name, len) == 0)
			return k;
	return -1;
}

/* Parses "key=value,..."; the lock is held. Percentages not named become 0. */
static int apply_spec(const char *spec)
{
	unsigned pct[K_N] = {0};
	uint64_t seed = 0;
	for (const char *p = spec; p && *p;) {
		const char *eq = strchr(p, '='), *end = strchr(p, ',');
		if (!end)
			end = p + strlen(p);
		if (!eq || eq > end)
			return -EINVAL;
		unsigned long v = strtoul(eq + 1, NULL, 10);
		int k = kind_index(p, (size_t)(eq - p));
		if ((size_t)(eq - p) == 4 && strncmp(p, "seed", 4) == 0)
			seed = v;
		else if (k >= 0 && v <= 100)
			pct[k] = (unsigned)v;
		else
			return -EINVAL;
		p = *end ? end + 1 : end;
	}
	memcpy(g.pct, pct, sizeof(pct));
	if (seed)
		g.rng = seed * 0x9E3779B97F4A7C15ull | 1;
	return 0;
}

static void init_once(void)
{
	const char *spec = getenv("PROACT_FAULTS");
	if (spec && apply_spec(spec) != 0)
		fprintf(stderr, "fault shim: bad PROACT_FAULTS \"%s\", no faults\n", spec);
}

static void lock(void)
{
	pthread_once(&g.once, init_once);
	pthread_mutex_lock(&g.lock);
}

static void unlock(void)
{
	pthread_mutex_unlock(&g.lock);
}

/* Whether to inject a fault of kind k now; the lock is held. */
static bool roll(enum kind k)
{
	if (g.pct[k] == 0 || next_random() % 100 >= g.pct[k])
		return false;
	g.hits[k]++;
	return true;
}

SHIM_API int proact_fault_shim_set(const char *spec)
{
	lock();
	int rc = apply_spec(spec);
	unlock();
	return rc;
}

SHIM_API unsigned long proact_fault_shim_hits(const char *kind)
{
	int k = kind_index(kind, strlen(kind));
	lock();
	unsigned long n = k >= 0 ? g.hits[k] : 0;
	unlock();
	return n;
}

/* ---- registrations and owed edges ---- */

/* Sockets the library drives: registered edge-triggered. The lock is held. */
static bool target(int fd)
{
	return fd >= 0 && fd < MAX_FDS && g.regs[fd].epfd1 && (g.regs[fd].events & EPOLLET);
}

/* Whether an edge can be owed to fd: a fault that needs one is skipped if not. */
static bool can_owe(int fd)
{
	return g.regs[fd].owed || g.nowed < MAX_OWED;
}

static void owe(int fd, uint32_t events)
{
	struct reg *r = &g.regs[fd];
	if (r->owed == 0)
		g.owed[g.nowed++] = fd;
	r->owed |= events & r->events;
}

static bool owes(int epfd)
{
	for (int i = 0; i < g.nowed; i++) {
		const struct reg *r = &g.regs[g.owed[i]];
		if (r->owed && r->epfd1 == epfd + 1)
			return true;
	}
	return false;
}

/* Adds the owed edges of epfd's fds to the n events; returns the new count. */
static int pay_owed(int epfd, struct epoll_event *ev, int n, int max)
{
	int keep = 0;
	for (int i = 0; i < g.nowed; i++) {
		int fd = g.owed[i];
		struct reg *r = &g.regs[fd];
		if (!r->owed)
			continue; /* closed or deregistered meanwhile */
		int j = 0;
		while (j < n && ev[j].data.u64 != r->data)
			j++;
		if (r->epfd1 != epfd + 1 || (j == n && n == max)) {
			g.owed[keep++] = fd; /* another set's, or no room: next time */
			continue;
		}
		if (j == n)
			ev[n++] = (struct epoll_event){.events = 0, .data.u64 = r->data};
		ev[j].events |= r->owed;
		r->owed = 0;
	}
	g.nowed = keep;
	return n;
}

static void forget(int fd)
{
	if (fd >= 0 && fd < MAX_FDS)
		g.regs[fd] = (struct reg){0};
}

/* ---- data calls ---- */

/* A fault before the call: EINTR, or EAGAIN on a non-blocking fd. 0 if none. */
static int pre_fault(int fd, int flags, uint32_t dir)
{
	if (!target(fd) || !can_owe(fd))
		return 0;
	if (roll(K_SPURIOUS))
		owe(fd, EPOLLIN | EPOLLOUT);
	if (roll(K_EINTR))
		return EINTR;
	bool nonblock = (flags & MSG_DONTWAIT) || (fcntl(fd, F_GETFL) & O_NONBLOCK);
	if (nonblock && roll(K_EAGAIN)) {
		owe(fd, dir);
		return EAGAIN;
	}
	return 0;
}

/* The length to ask for: len, or less for a short transfer (an edge is owed). */
static size_t cut(int fd, size_t len, uint32_t dir)
{
	if (len < 2 || !target(fd) || !g.regs[fd].stream || !can_owe(fd) || !roll(K_SHORT))
		return len;
	owe(fd, dir);
	return 1 + (size_t)(next_random() % (len - 1));
}

/* Runs the fault schedule for one call; returns the errno to fail with or 0. */
static int schedule(int fd, int flags, uint32_t dir, size_t *len)
{
	lock();
	int err = pre_fault(fd, flags, dir);
	if (!err && len)
		*len = cut(fd, *len, dir);
	unlock();
	return err;
}

static ssize_t fail(int err)
{
	errno = err;
	return -1;
}

SHIM_API ssize_t read(int fd, void *buf, size_t len)
{
	int err = schedule(fd, 0, EPOLLIN, &len);
	return err ? fail(err) : real_read()(fd, buf, len);
}

SHIM_API ssize_t recv(int fd, void *buf, size_t len, int flags)
{
	int err = schedule(fd, flags, EPOLLIN, &len);
	return err ? fail(err) : real_recv()(fd, buf, len, flags);
}

SHIM_API ssize_t write(int fd, const void *buf, size_t len)
{
	int err = schedule(fd, 0, EPOLLOUT, &len);
	return err ? fail(err) : real_write()(fd, buf, len);
}

SHIM_API ssize_t send(int fd, const void *buf, size_t len, int flags)
{
	int err = schedule(fd, flags, EPOLLOUT, &len);
	return err ? fail(err) : real_send()(fd, buf, len, flags);
}

/* Copies the first `keep` bytes' worth of iov into out; returns the count. */
static int iov_trim(const struct iovec *iov, int cnt, size_t keep, struct iovec *out)
{
	int n = 0;
	for (int i = 0; i < cnt && keep > 0 && n < MAX_IOV; i++) {
		out[n] = iov[i];
		if (out[n].iov_len > keep)
			out[n].iov_len = keep;
		keep -= out[n].iov_len;
		n++;
	}
	return n;
}

static size_t iov_total(const struct iovec *iov, size_t cnt)
{
	size_t sum = 0;
	for (size_t i = 0; i < cnt; i++)
		sum += iov[i].iov_len;
	return sum;
}

SHIM_API ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	size_t total = cnt > 0 ? iov_total(iov, (size_t)cnt) : 0, len = total;
	int err = schedule(fd, 0, EPOLLOUT, &len);
	if (err)
		return fail(err);
	if (len == total)
		return real_writev()(fd, iov, cnt);
	struct iovec part[MAX_IOV];
	return real_writev()(fd, part, iov_trim(iov, cnt, len, part));
}

SHIM_API ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	size_t total = iov_total(msg->msg_iov, msg->msg_iovlen), len = total;
	int err = schedule(fd, flags, EPOLLIN, &len);
	if (err)
		return fail(err);
	if (len == total)
		return real_recvmsg()(fd, msg, flags);
	struct iovec part[MAX_IOV], *all = msg->msg_iov;
	size_t cnt = msg->msg_iovlen;
	msg->msg_iov = part;
	msg->msg_iovlen = (size_t)iov_trim(all, (int)cnt, len, part);
	ssize_t n = real_recvmsg()(fd, msg, flags);
	msg->msg_iov = all; /* the caller's array, as it gave it */
	msg->msg_iovlen = cnt;
	return n;
}

SHIM_API ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	size_t total = iov_total(msg->msg_iov, msg->msg_iovlen), len = total;
	int err = schedule(fd, flags, EPOLLOUT, &len);
	if (err)
		return fail(err);
	if (len == total)
		return real_sendmsg()(fd, msg, flags);
	struct iovec part[MAX_IOV];
	struct msghdr m = *msg;
	m.msg_iov = part;
	m.msg_iovlen = (size_t)iov_trim(msg->msg_iov, (int)msg->msg_iovlen, len, part);
	return real_sendmsg()(fd, &m, flags);
}

/* ---- epoll and descriptor creation ---- */

SHIM_API int epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout)
{
	lock();
	bool intr = roll(K_EINTR);
	if (!intr && max > 1 && roll(K_EVENTS))
		max = 1 + (int)(next_random() % (uint64_t)(max - 1));
	bool pending = owes(epfd);
	unlock();
	if (intr)
		return (int)fail(EINTR);
	int n = real_epoll_wait()(epfd, ev, max, pending ? 0 : timeout);
	if (n < 0 || !pending)
		return n;
	int err = errno;
	lock();
	n = pay_owed(epfd, ev, n, max);
	unlock();
	errno = err;
	return n;
}

SHIM_API int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	lock();
	int err = 0;
	if (op == EPOLL_CTL_ADD && roll(K_ENOMEM))
		err = ENOMEM;
	else if (op == EPOLL_CTL_ADD && roll(K_ENOSPC))
		err = ENOSPC;
	unlock();
	if (err)
		return (int)fail(err);
	int rc = real_epoll_ctl()(epfd, op, fd, ev);
	if (rc != 0 || fd < 0 || fd >= MAX_FDS)
		return rc;
	int type = 0;
	socklen_t tlen = sizeof(type);
	bool stream = op != EPOLL_CTL_DEL &&
	              getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) == 0 && type == SOCK_STREAM;
	lock();
	if (op == EPOLL_CTL_DEL) {
		forget(fd);
	} else {
		uint32_t owed = op == EPOLL_CTL_MOD ? g.regs[fd].owed : 0; /* MOD keeps a debt */
		g.regs[fd] = (struct reg){.epfd1 = epfd + 1,
		                          .events = ev->events,
		                          .data = ev->data.u64,
		                          .owed = owed,
		                          .stream = stream};
	}
	unlock();
	return rc;
}

static bool emfile(void)
{
	lock();
	bool hit = roll(K_EMFILE);
	unlock();
	return hit;
}

SHIM_API int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	lock();
	int err = pre_fault(fd, 0, EPOLLIN);
	if (!err && target(fd) && roll(K_EMFILE))
		err = EMFILE; /* the connection stays queued, as in the kernel */
	unlock();
	return err ? (int)fail(err) : real_accept4()(fd, addr, len, flags);
}

SHIM_API int epoll_create1(int flags)
{
	return emfile() ? (int)fail(EMFILE) : real_epoll_create1()(flags);
}

SHIM_API int eventfd(unsigned initval, int flags)
{
	return emfile() ? (int)fail(EMFILE) : real_eventfd()(initval, flags);
}

SHIM_API int close(int fd)
{
	lock();
	forget(fd); /* closing drops the fd from every epoll set */
	unlock();
	return real_close()(fd);
}
