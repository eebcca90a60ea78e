/* SPDX-License-Identifier: MIT */
/*
 * util - helpers shared by the example programs; see util.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>
#endif

static const char *progname = "example";
static const char *usage_text = "";

/* The servers with a watcher per thread (ex_shards_open). */
static atomic_bool stopping;
static struct ex_shard *const *shards;
static unsigned nshards;

/* ---- what differs per platform (defined at the end of the file) --------- */

static void platform_init(void); /* called by ex_init() */
/* The error of the last socket call that failed, as text. */
static const char *socket_error(void);
/* Sets a listener's options before bind; 0, or -1. */
static int listen_options(proact_socket fd, bool reuseport);
/* Whether each shard listens; else the first accepts for all. */
static bool listener_per_shard(void);
/* Sets up how a stop reaches the shards; 0, or -1 after printing why. */
static int stop_open(struct ex_shard *sh0);
/* Stops every shard; from any thread. */
static void stop_request(void);
/* Whether @r is the stop signal's completion; if so, handles it. */
static bool stop_completion(struct ex_shard *sh, const struct proact_completion *r);
/* Runs shard_loop(@sh) in a thread of its own; false if none started. */
static bool thread_start(struct ex_shard *sh);
static void thread_join(struct ex_shard *sh);
/* Around the loops: before they start, and once every one has ended. */
static void run_begin(void);
static void run_end(void);
/* Gives a connection @sh accepted to the program, on the shard whose turn
   it is; take_handed() gives @sh those that others accepted for it. */
static void hand_over(struct ex_shard *sh, proact_socket fd, const struct ex_shard_ops *ops);
static void take_handed(struct ex_shard *sh, const struct ex_shard_ops *ops);

/* ---- options ------------------------------------------------------------ */

void ex_init(const char *name, const char *usage)
{
	progname = name;
	usage_text = usage;
	platform_init();
}

void ex_usage(void)
{
	fputs(usage_text, stderr);
	exit(2);
}

unsigned long long ex_parse_num(const char *s, unsigned long long min, unsigned long long max)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	/* strtoull accepts "-1" as a huge value: refuse the sign outright. */
	if (errno || end == s || *end || v < min || v > max || s[0] == '-') {
		fprintf(stderr, "%s: bad number '%s'\n", progname, s);
		exit(2);
	}
	return v;
}

void ex_parse_options(int argc, char **argv, ex_option_fn *take, void *ctx)
{
	for (int i = 1; i < argc; i += 2) {
		if (i + 1 >= argc || !take(ctx, argv[i], argv[i + 1]))
			ex_usage();
	}
}

bool ex_server_option(struct ex_server_options *o, const char *port_name, const char *name,
                      const char *value)
{
	if (!strcmp(name, "--host")) {
		o->host = value;
	} else if (!strcmp(name, port_name)) {
		ex_parse_num(value, 0, 65535); /* exits unless a port */
		o->port = value;
	} else if (!strcmp(name, "--backend")) {
		o->backend = value;
	} else {
		return false;
	}
	return true;
}

/* ---- sockets and signals ------------------------------------------------ */

int ex_resolve(const char *host, const char *port, int ai_flags, struct sockaddr_storage *ss,
               socklen_t *len)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = ai_flags};
	struct addrinfo *ai;
	int rc = getaddrinfo(host, port, &hints, &ai);
	if (rc != 0)
		return rc;
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*len = ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
}

proact_socket ex_listen(const struct sockaddr *addr, socklen_t len, int backlog, bool reuseport)
{
	proact_socket fd = ex_socket(addr->sa_family, SOCK_STREAM);
	if (fd == EX_NO_SOCKET || listen_options(fd, reuseport) < 0 || bind(fd, addr, len) != 0 ||
	    listen(fd, backlog) != 0) {
		fprintf(stderr, "%s: listen: %s\n", progname, socket_error());
		if (fd != EX_NO_SOCKET)
			ex_close(fd);
		return EX_NO_SOCKET;
	}
	return fd;
}

proact_socket ex_open_listener(const char *host, const char *port, int backlog, bool reuseport)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int rc = ex_resolve(host, port, AI_PASSIVE, &ss, &len);
	if (rc != 0) {
		fprintf(stderr, "%s: %s: %s\n", progname, host, gai_strerror(rc));
		return EX_NO_SOCKET;
	}
	return ex_listen((struct sockaddr *)&ss, len, backlog, reuseport);
}

void ex_print_listening(proact_socket fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char host[NI_MAXHOST], port[NI_MAXSERV];
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0 ||
	    getnameinfo((struct sockaddr *)&ss, len, host, sizeof(host), port, sizeof(port),
	                NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
		fprintf(stderr, "%s: getsockname: %s\n", progname, socket_error());
		exit(1);
	}
	if (ss.ss_family == AF_INET6)
		printf("listening on [%s]:%s\n", host, port);
	else
		printf("listening on %s:%s\n", host, port);
	fflush(stdout);
}

struct proact_request ex_signal_read(int sfd, ex_siginfo *info, size_t len)
{
	return (struct proact_request){
	    .fd = sfd, .op = PROACT_OP_READ, .buf = info, .len = len, .ctx = info};
}

static const char *const op_names[PROACT_STATS_OPS] = {
    [PROACT_OP_READ] = "read",         [PROACT_OP_WRITE] = "write",
    [PROACT_OP_WRITEV] = "writev",     [PROACT_OP_FREE] = "free",
    [PROACT_OP_DETACH] = "detach",     [PROACT_OP_ACCEPT] = "accept",
    [PROACT_OP_CONNECT] = "connect",   [PROACT_OP_SHUTDOWN] = "shutdown",
    [PROACT_OP_RECVFROM] = "recvfrom", [PROACT_OP_SENDTO] = "sendto",
    [PROACT_OP_TIMER] = "timer",       [PROACT_OP_SENDFILE] = "sendfile",
};

/* "name=count" for each op with requests, the completed count after a slash. */
static void print_ops(FILE *out, const struct proact_stats *s)
{
	for (int op = 0; op < PROACT_STATS_OPS; op++)
		if (s->submitted[op] || s->completed[op])
			fprintf(out, " %s=%" PRIu64 "/%" PRIu64, op_names[op] ? op_names[op] : "op",
			        s->submitted[op], s->completed[op]);
}

void ex_print_stats(proact_watcher *w, unsigned idx)
{
	struct proact_stats s;
	int rc = proact_stats(w, &s);
	if (rc < 0) {
		fprintf(stderr, "%s: stats[%u]: %s\n", progname, idx, proact_strerror(rc));
		return;
	}
	fprintf(stderr, "%s: stats[%u]: submitted/completed", progname, idx);
	print_ops(stderr, &s);
	fprintf(stderr,
	        "; failed %" PRIu64 "; kernel waits %" PRIu64 ", io calls %" PRIu64
	        ", ring entries %" PRIu64 ", ring enters %" PRIu64 "; deadlines %" PRIu64
	        ", timers %" PRIu64 "; pauses %" PRIu64 " (%u now); fds %u (most %u); pending %u;"
	        " pool %u of %u in use (most %u)\n",
	        s.failed, s.kernel_waits, s.io_calls, s.ring_entries, s.ring_enters,
	        s.deadlines_fired, s.timers_fired, s.pauses, s.paused, s.fds, s.fds_high, s.pending,
	        s.pool_in_use, s.pool_buffers, s.pool_high);
}

/* ---- requests ----------------------------------------------------------- */

void ex_batch_queue(struct ex_batch *b, struct proact_request r)
{
	if (b->n == EX_BATCH)
		ex_batch_flush(b);
	b->req[b->n++] = r;
}

void ex_batch_flush(struct ex_batch *b)
{
	int i = 0;
	while (i < b->n) {
		int rc = proact_submit(b->w, b->req + i, b->n - i);
		if (rc > 0) {
			i += rc;
			continue;
		}
		/* The head was refused; a retry from it returns its errno. */
		b->refused(b->ctx, &b->req[i], rc);
		i++;
	}
	b->n = 0;
}

int ex_accept_first(proact_watcher *w, proact_socket lfd)
{
	int rc = proact_accept(w, lfd, NULL, 0, NULL);
	if (rc < 0)
		fprintf(stderr, "%s: proact_accept: %s\n", progname, proact_strerror(rc));
	return rc;
}

bool ex_accept_transient(int err)
{
	return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

int ex_free_fd(proact_watcher *w, proact_socket fd, void *ctx)
{
	int rc = proact_free(w, fd, ctx);
	if (rc == -ENOENT)
		ex_close(fd); /* proact never took it: still ours */
	else if (rc < 0)
		fprintf(stderr, "%s: proact_free(%lld): %s\n", progname, (long long)fd,
		        proact_strerror(rc));
	return rc;
}

void ex_count_failure(int err, uint64_t *resets, uint64_t *errors)
{
	if (err == ECONNRESET || err == EPIPE)
		(*resets)++;
	else if (err && err != ECANCELED)
		(*errors)++;
}

/* ---- servers with a watcher per thread ---------------------------------- */

int ex_shards_open(struct ex_shard *const sh[], unsigned n, const char *host, const char *port,
                   int backlog)
{
	shards = sh;
	nshards = n;
	for (unsigned i = 0; i < n; i++) {
		sh[i]->lfd = EX_NO_SOCKET;
		sh[i]->sfd = -1;
	}
	if (stop_open(sh[0]) < 0)
		return -1;
	bool reuseport = listener_per_shard();
	if ((sh[0]->lfd = ex_open_listener(host, port, backlog, reuseport)) == EX_NO_SOCKET)
		return -1;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (getsockname(sh[0]->lfd, (struct sockaddr *)&ss, &len) != 0)
		return -1;
	for (unsigned i = 1; i < n && reuseport; i++)
		if ((sh[i]->lfd = ex_listen((struct sockaddr *)&ss, len, backlog, true)) ==
		    EX_NO_SOCKET)
			return -1;
	return 0;
}

int ex_shard_setup(struct ex_shard *sh, const struct proact_options *po, int accepts,
                   void (*refused)(void *ctx, const struct proact_request *r, int err), void *ctx)
{
	int rc = proact_watcher_new(&sh->w, po);
	if (rc < 0) {
		fprintf(stderr, "%s: proact_watcher_new: %s\n", progname, proact_strerror(rc));
		return -1;
	}
	sh->reqs = (struct ex_batch){.w = sh->w, .refused = refused, .ctx = ctx};
	if (sh->lfd != EX_NO_SOCKET) {
		if (ex_accept_first(sh->w, sh->lfd) < 0)
			return -1;
		sh->lfd_registered = true;
		for (int i = 1; i < accepts; i++)
			ex_batch_queue(&sh->reqs, (struct proact_request){.fd = sh->lfd,
			                                                  .op = PROACT_OP_ACCEPT});
	}
	if (sh->sfd >= 0)
		ex_batch_queue(&sh->reqs, ex_signal_read(sh->sfd, sh->sig, sizeof(sh->sig)));
	ex_batch_flush(&sh->reqs);
	sh->sfd_registered = sh->sfd >= 0 && !sh->failed;
	return sh->failed ? -1 : 0;
}

void ex_shard_fail(struct ex_shard *sh, const char *what, int err)
{
	fprintf(stderr, "%s: %s: %s\n", progname, what, proact_strerror(err));
	sh->failed = true;
	stop_request();
}

/* The shard's own completions: the stop signal, accepts. False for any
   other; else *fd is a new connection, or EX_NO_SOCKET. */
static bool shard_completion(struct ex_shard *sh, const struct proact_completion *r,
                             proact_socket *fd)
{
	*fd = EX_NO_SOCKET;
	if (stop_completion(sh, r))
		return true;
	if (r->op != PROACT_OP_ACCEPT)
		return false;
	if (r->error == ECANCELED)
		return true;
	if (r->error && !ex_accept_transient(r->error)) {
		ex_shard_fail(sh, "accept", r->error);
		return true;
	}
	ex_batch_queue(&sh->reqs, (struct proact_request){.fd = sh->lfd, .op = PROACT_OP_ACCEPT});
	if (!r->error)
		*fd = r->newfd;
	return true;
}

bool ex_shard_refused(struct ex_shard *sh, const struct proact_request *r, int err)
{
	if (r->op != PROACT_OP_ACCEPT && r->ctx != sh->sig)
		return false;
	ex_shard_fail(sh, r->op == PROACT_OP_ACCEPT ? "proact_accept" : "signalfd read", err);
	atomic_store(&stopping, true); /* in case it was the signal read */
	return true;
}

static void shard_loop(struct ex_shard *sh, const struct ex_shard_ops *ops)
{
	struct proact_completion comp[256];
	while (!atomic_load(&stopping)) {
		int n =
		    ops->wait ? ops->wait(sh, comp, 256, -1) : proact_wait(sh->w, comp, 256, -1);
		if (n == -EINTR)
			continue;
		if (n < 0) {
			ex_shard_fail(sh, "proact_wait", n);
			break;
		}
		if (ops->round)
			ops->round(sh);
		for (int i = 0; i < n; i++) {
			proact_socket fd;
			if (!shard_completion(sh, &comp[i], &fd))
				ops->completion(sh, &comp[i]);
			else if (fd != EX_NO_SOCKET)
				hand_over(sh, fd, ops);
		}
		take_handed(sh, ops);
		/* Before the next wait, which releases the pool buffers that
		   queued writes may point into. */
		ex_batch_flush(&sh->reqs);
	}
}

static const struct ex_shard_ops *thread_ops;

bool ex_shards_run(struct ex_shard *const sh[], unsigned n, const struct ex_shard_ops *ops)
{
	unsigned started = 0;
	thread_ops = ops;
	run_begin();
	while (started + 1 < n && thread_start(sh[started + 1]))
		started++;
	if (started + 1 < n)
		fprintf(stderr, "%s: could not start a thread\n", progname);
	else
		shard_loop(sh[0], ops); /* until a stop */
	atomic_store(&stopping, true);
	for (unsigned i = 1; i <= started; i++)
		proact_wakeup(sh[i]->w);
	for (unsigned i = 1; i <= started; i++)
		thread_join(sh[i]);
	run_end();
	for (unsigned i = 0; i < n; i++)
		ex_print_stats(sh[i]->w, i);
	return started + 1 == n;
}

void ex_shard_close(struct ex_shard *sh)
{
	proact_watcher_destroy(sh->w);
	if (!sh->lfd_registered && sh->lfd != EX_NO_SOCKET)
		ex_close(sh->lfd);
	if (!sh->sfd_registered && sh->sfd >= 0)
		ex_close(sh->sfd);
}

/* ---- platforms ---------------------------------------------------------- */

#ifdef _WIN32
/*
 * Windows: Winsock, Win32 threads, the console's control handler for the
 * stop, and one listener for all shards (there is no SO_REUSEPORT, and a
 * socket joins one completion port for good): the first shard accepts and
 * hands the sockets to the shards in turn.
 */

static void platform_init(void)
{
	WSADATA wd;
	int rc = WSAStartup(MAKEWORD(2, 2), &wd);
	if (rc != 0) {
		fprintf(stderr, "%s: WSAStartup: error %d\n", progname, rc);
		exit(1);
	}
}

static const char *socket_error(void)
{
	static char text[256];
	DWORD err = (DWORD)WSAGetLastError();
	if (!FormatMessageA(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, NULL, err,
	                    0, text, sizeof(text), NULL))
		snprintf(text, sizeof(text), "error %lu", (unsigned long)err);
	text[strcspn(text, "\r\n")] = '\0';
	return text;
}

void ex_raise_fd_limit(void)
{
}

proact_socket ex_socket(int domain, int type)
{
	SOCKET fd =
	    WSASocketW(domain, type, 0, NULL, 0, WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
	u_long one = 1;
	if (fd != INVALID_SOCKET && ioctlsocket(fd, FIONBIO, &one) != 0) {
		int err = WSAGetLastError();
		closesocket(fd);
		WSASetLastError(err);
		return INVALID_SOCKET;
	}
	return fd;
}

void ex_close(proact_socket fd)
{
	closesocket(fd);
}

/* No SO_REUSEADDR: on Windows it lets another socket bind the same port. */
static int listen_options(proact_socket fd, bool reuseport)
{
	(void)fd;
	(void)reuseport;
	return 0;
}

static bool listener_per_shard(void)
{
	return false;
}

/* While the loops run, a stop wakes their watchers; outside of that it only
   raises the flag (the watchers are not made yet, or destroyed). */
static SRWLOCK run_lock = SRWLOCK_INIT;
static bool running;

static void stop_request(void)
{
	atomic_store(&stopping, true);
	AcquireSRWLockShared(&run_lock);
	for (unsigned i = 0; running && i < nshards; i++)
		proact_wakeup(shards[i]->w);
	ReleaseSRWLockShared(&run_lock);
}

/* Called in a thread the system starts for the event. */
static BOOL WINAPI on_console_event(DWORD type)
{
	stop_request();
	/* On a close, logoff or shutdown the process ends as this returns:
	   wait, so that main() ends it, stats printed (the system's own limit
	   ends the wait). */
	if (type != CTRL_C_EVENT && type != CTRL_BREAK_EVENT)
		Sleep(INFINITE);
	return TRUE;
}

static int stop_open(struct ex_shard *sh0)
{
	(void)sh0;
	if (!SetConsoleCtrlHandler(on_console_event, TRUE)) {
		fprintf(stderr, "%s: SetConsoleCtrlHandler: error %lu\n", progname,
		        (unsigned long)GetLastError());
		return -1;
	}
	return 0;
}

static bool stop_completion(struct ex_shard *sh, const struct proact_completion *r)
{
	(void)sh;
	(void)r;
	return false; /* no signal read: stop_request() wakes the loops */
}

static DWORD WINAPI shard_thread(LPVOID arg)
{
	shard_loop(arg, thread_ops);
	return 0;
}

static bool thread_start(struct ex_shard *sh)
{
	sh->thread = CreateThread(NULL, 0, shard_thread, sh, 0, NULL);
	return sh->thread != NULL;
}

static void thread_join(struct ex_shard *sh)
{
	WaitForSingleObject(sh->thread, INFINITE);
	CloseHandle(sh->thread);
}

/* The sockets handed to a shard that its loop has not taken yet. */
struct handed {
	SRWLOCK lock;
	SOCKET *fd;
	size_t n, room;
};
static struct handed *handed; /* one per shard; NULL: each keeps its own */
static unsigned turn;         /* the listening shard's alone */

static void run_begin(void)
{
	handed = calloc(nshards, sizeof(*handed)); /* zero is SRWLOCK_INIT */
	AcquireSRWLockExclusive(&run_lock);
	running = true;
	ReleaseSRWLockExclusive(&run_lock);
}

static void run_end(void)
{
	AcquireSRWLockExclusive(&run_lock);
	running = false;
	ReleaseSRWLockExclusive(&run_lock);
	for (unsigned i = 0; handed && i < nshards; i++) {
		for (size_t k = 0; k < handed[i].n; k++)
			closesocket(handed[i].fd[k]);
		free(handed[i].fd);
	}
	free(handed);
	handed = NULL;
}

static void hand_over(struct ex_shard *sh, proact_socket fd, const struct ex_shard_ops *ops)
{
	unsigned i = turn++ % nshards;
	if (!handed || shards[i] == sh) {
		ops->accepted(sh, fd);
		return;
	}
	struct handed *h = &handed[i];
	AcquireSRWLockExclusive(&h->lock);
	bool wake = h->n == 0; /* else a wakeup is on its way already */
	if (h->n == h->room) {
		size_t room = h->room ? 2 * h->room : 64;
		SOCKET *more = realloc(h->fd, room * sizeof(*more));
		if (!more) {
			ReleaseSRWLockExclusive(&h->lock);
			ops->accepted(sh, fd); /* out of memory: this shard keeps it */
			return;
		}
		h->fd = more;
		h->room = room;
	}
	h->fd[h->n++] = fd;
	ReleaseSRWLockExclusive(&h->lock);
	if (wake)
		proact_wakeup(shards[i]->w);
}

static void take_handed(struct ex_shard *sh, const struct ex_shard_ops *ops)
{
	for (unsigned i = 1; handed && i < nshards; i++) {
		if (shards[i] != sh)
			continue;
		struct handed *h = &handed[i];
		AcquireSRWLockExclusive(&h->lock);
		SOCKET *fd = h->fd;
		size_t n = h->n;
		h->fd = NULL;
		h->n = h->room = 0;
		ReleaseSRWLockExclusive(&h->lock);
		for (size_t k = 0; k < n; k++)
			ops->accepted(sh, fd[k]);
		free(fd);
	}
}

#else /* POSIX */

static void platform_init(void)
{
}

static const char *socket_error(void)
{
	return strerror(errno);
}

void ex_raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

#if !defined(SOCK_NONBLOCK) || !defined(PROACT_PROG_HAVE_SIGNALFD)
/* O_NONBLOCK and FD_CLOEXEC on @fd; closes it on failure. */
static int nonblock_cloexec(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
		int err = errno;
		close(fd);
		errno = err;
		return -1;
	}
	return fd;
}
#endif

proact_socket ex_socket(int domain, int type)
{
#ifdef SOCK_NONBLOCK
	return socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
#else
	int fd = socket(domain, type, 0);
	return fd < 0 ? -1 : nonblock_cloexec(fd);
#endif
}

void ex_close(proact_socket fd)
{
	close(fd);
}

static int listen_options(proact_socket fd, bool reuseport)
{
	int one = 1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0))
		return -1;
	return 0;
}

static bool listener_per_shard(void)
{
	return true;
}

#ifdef PROACT_PROG_HAVE_SIGNALFD
int ex_open_signalfd(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGUSR1); /* not a stop: a request for the counters */
	/* pthread_sigmask, not sigprocmask: the latter is unspecified once
	   there are threads, and echo_server starts some. */
	int rc = pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (rc != 0) {
		errno = rc; /* it returns the error instead of setting errno */
		return -1;
	}
	return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}
#else
static int stop_pipe = -1; /* the write end, for the handler */

static void on_stop_signal(int sig)
{
	int saved = errno;
	uint32_t signo = (uint32_t)sig;
	ssize_t rc = write(stop_pipe, &signo, sizeof(signo)); /* atomic: < PIPE_BUF */
	(void)rc;                                             /* a full pipe already holds a stop */
	errno = saved;
}

int ex_open_signalfd(void)
{
	int p[2];
	if (pipe(p) < 0)
		return -1;
	if (nonblock_cloexec(p[0]) < 0) {
		close(p[1]);
		return -1;
	}
	if (nonblock_cloexec(p[1]) < 0) {
		close(p[0]);
		return -1;
	}
	stop_pipe = p[1];
	struct sigaction sa = {.sa_handler = on_stop_signal, .sa_flags = SA_RESTART};
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0 ||
	    sigaction(SIGUSR1, &sa, NULL) < 0) {
		close(p[0]);
		return -1; /* the write end stays: a handler may already use it */
	}
	return p[0];
}
#endif

bool ex_stop_signal(const struct proact_completion *r)
{
	const ex_siginfo *info = r->buf;
	if (r->error || r->size < sizeof(*info))
		return true;
	for (size_t i = 0; i < r->size / sizeof(*info); i++)
		if (info[i].ssi_signo != SIGUSR1)
			return true;
	return false;
}

static int stop_open(struct ex_shard *sh0)
{
	if ((sh0->sfd = ex_open_signalfd()) < 0) {
		fprintf(stderr, "%s: signalfd: %s\n", progname, strerror(errno));
		return -1;
	}
	return 0;
}

static void stop_request(void)
{
	kill(getpid(), SIGTERM); /* the signal read stops every shard */
}

/* Raises the stop flag and wakes the other shards' waits (the first one
   stops on the completion that called this). */
static void stop_all(void)
{
	atomic_store(&stopping, true);
	for (unsigned i = 1; i < nshards; i++)
		proact_wakeup(shards[i]->w);
}

static bool stop_completion(struct ex_shard *sh, const struct proact_completion *r)
{
	if (r->ctx != sh->sig)
		return false;
	if (!ex_stop_signal(r)) { /* SIGUSR1: the counters */
		for (unsigned i = 0; i < nshards; i++)
			ex_print_stats(shards[i]->w, i);
		ex_batch_queue(&sh->reqs, ex_signal_read(sh->sfd, sh->sig, sizeof(sh->sig)));
		return true;
	}
	if (r->error) /* SIGINT or SIGTERM, or a failed read */
		ex_shard_fail(sh, "signalfd", r->error);
	stop_all();
	return true;
}

static void *shard_thread(void *arg)
{
	shard_loop(arg, thread_ops);
	return NULL;
}

static bool thread_start(struct ex_shard *sh)
{
	return pthread_create(&sh->thread, NULL, shard_thread, sh) == 0;
}

static void thread_join(struct ex_shard *sh)
{
	pthread_join(sh->thread, NULL);
}

static void run_begin(void)
{
}

static void run_end(void)
{
}

/* Each shard has a listener: a connection stays where it came. */
static void hand_over(struct ex_shard *sh, proact_socket fd, const struct ex_shard_ops *ops)
{
	ops->accepted(sh, fd);
}

static void take_handed(struct ex_shard *sh, const struct ex_shard_ops *ops)
{
	(void)sh;
	(void)ops;
}

#endif
