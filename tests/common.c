/* SPDX-License-Identifier: MIT */
#include "common.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#include <sys/resource.h>
#endif
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

const char *t_backend(void)
{
	const char *b = getenv("PROACT_BACKEND");
	return b && *b ? b : "auto";
}

proact_watcher *t_watcher(const struct proact_options *opts)
{
	proact_watcher *w = NULL;
	int rc = proact_watcher_new(&w, opts);
	const char *want = getenv("PROACT_BACKEND");
	/* The backend under test is built in but the kernel lacks it (io_uring
	   under qemu-user): the test is skipped, as ctest reports. */
	if (rc == -ENOSYS && want && *want && (!opts || !opts->backend)) {
		print_message("%s is not available here: skipped\n", want);
		skip();
	}
	if (rc != 0)
		fail_msg("proact_watcher_new: %s", proact_strerror(rc));
	if (want && *want && (!opts || !opts->backend))
		assert_string_equal(proact_backend(w), want);
	return w;
}

#ifdef _WIN32
/* Windows (tests/win32 maps the POSIX names): no fd flags, no socketpair;
   Winsock wants starting once per process, before the first socket.
   Winsock cannot tell whether a socket blocks: the sockets the tests made
   non-blocking are kept here, for F_GETFL and MSG_DONTWAIT. */
#define T_WIN_NONBLOCK_MAX 256
static void t_win_ignore(const wchar_t *expr, const wchar_t *fn, const wchar_t *file, unsigned line,
                         uintptr_t reserved)
{
	(void)expr, (void)fn, (void)file, (void)line, (void)reserved;
}

static int nonblocking[T_WIN_NONBLOCK_MAX];
static int n_nonblocking;

int t_win_is_socket(int fd)
{
	int type, len = sizeof(type);
	return getsockopt((SOCKET)fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0;
}

/* The handle of a C runtime descriptor, without the runtime's report of a
   bad one (which may end the process): a socket's number is no such
   descriptor. */
HANDLE t_win_file_handle(int fd)
{
	if (fd < 0 || t_win_is_socket(fd))
		return INVALID_HANDLE_VALUE;
	_invalid_parameter_handler old = _set_invalid_parameter_handler(t_win_ignore);
	HANDLE h = (HANDLE)_get_osfhandle(fd);
	_set_invalid_parameter_handler(old);
	return h;
}

int t_win_nonblocking(int fd)
{
	for (int i = 0; i < n_nonblocking; i++)
		if (nonblocking[i] == fd)
			return 1;
	return 0;
}

void t_win_forget(int fd)
{
	for (int i = 0; i < n_nonblocking; i++)
		if (nonblocking[i] == fd)
			nonblocking[i] = nonblocking[--n_nonblocking];
}

static int set_fd_flags(int fd, bool nonblock)
{
	u_long on = nonblock;
	if (ioctlsocket((SOCKET)fd, FIONBIO, &on) != 0)
		return -1;
	t_win_forget(fd);
	if (nonblock && n_nonblocking < T_WIN_NONBLOCK_MAX)
		nonblocking[n_nonblocking++] = fd;
	return fd;
}

int t_win_fcntl(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	int arg = cmd == F_SETFD || cmd == F_SETFL ? va_arg(ap, int) : 0;
	va_end(ap);
	DWORD info;
	HANDLE h = t_win_is_socket(fd) ? (HANDLE)(SOCKET)fd : t_win_file_handle(fd);
	if (h == INVALID_HANDLE_VALUE || !GetHandleInformation(h, &info)) {
		errno = EBADF;
		return -1;
	}
	switch (cmd) {
	case F_GETFD:
		return info & HANDLE_FLAG_INHERIT ? 0 : FD_CLOEXEC;
	case F_SETFD:
		return SetHandleInformation(h, HANDLE_FLAG_INHERIT,
		                            arg & FD_CLOEXEC ? 0 : HANDLE_FLAG_INHERIT)
		           ? 0
		           : -1;
	case F_GETFL:
		return O_RDWR | (t_win_nonblocking(fd) ? O_NONBLOCK : 0);
	case F_SETFL:
		return set_fd_flags(fd, arg & O_NONBLOCK) == fd ? 0 : -1;
	}
	errno = EINVAL;
	return -1;
}

int t_socket(int domain, int type, bool nonblock)
{
	WSADATA wd;
	if (WSAStartup(MAKEWORD(2, 2), &wd) != 0)
		return -1;
	SOCKET s = WSASocketW(domain, type, 0, NULL, 0, WSA_FLAG_OVERLAPPED);
	return s == INVALID_SOCKET ? -1 : set_fd_flags((int)s, nonblock);
}

int t_accept(int lfd)
{
	SOCKET s = accept((SOCKET)lfd, NULL, NULL);
	return s == INVALID_SOCKET ? -1 : (int)s;
}
#else
#if !defined(SOCK_CLOEXEC) || !defined(PROACT_PROG_HAVE_ACCEPT4)
static int set_fd_flags(int fd, bool nonblock)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || (nonblock && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
		int err = errno;
		close(fd);
		errno = err;
		return -1;
	}
	return fd;
}
#endif

int t_socket(int domain, int type, bool nonblock)
{
#ifdef SOCK_CLOEXEC
	return socket(domain, type | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
#else
	int fd = socket(domain, type, 0);
	return fd < 0 ? -1 : set_fd_flags(fd, nonblock);
#endif
}

int t_accept(int lfd)
{
#ifdef PROACT_PROG_HAVE_ACCEPT4
	return accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
#else
	int fd = accept(lfd, NULL, NULL);
	return fd < 0 ? -1 : set_fd_flags(fd, false);
#endif
}
#endif

int t_listener(int *port)
{
	int fd = t_socket(AF_INET, SOCK_STREAM, false);
	assert_true(fd >= 0);
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in a = {.sin_family = AF_INET};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 4096), 0);
	socklen_t len = sizeof(a);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

int t_connect(int port)
{
	int fd = t_socket(AF_INET, SOCK_STREAM, false);
	assert_true(fd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
		fail_msg("connect: %s", strerror(errno));
	return fd;
}

void t_tcp_pair(int fds[2])
{
	int port;
	int lfd = t_listener(&port);
	fds[0] = t_connect(port);
	fds[1] = t_accept(lfd);
	assert_true(fds[1] >= 0);
	int one = 1;
	setsockopt(fds[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fds[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	close(lfd);
}

void t_unix_pair(int fds[2])
{
#if defined(_WIN32)
	/* Windows has no socketpair: a loopback TCP pair, with buffers near
	   Linux's AF_UNIX ones, so a large write still waits for its reader. */
	t_tcp_pair(fds);
	t_set_bufs(fds[0], 64 * 1024, 64 * 1024);
	t_set_bufs(fds[1], 64 * 1024, 64 * 1024);
#elif defined(SOCK_CLOEXEC)
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
#else
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
	assert_true(set_fd_flags(fds[0], false) >= 0 && set_fd_flags(fds[1], false) >= 0);
#endif
}

int t_collect(proact_watcher *w, struct proact_completion *out, int want, int timeout_ms)
{
	uint64_t end = proact_deadline_in((uint64_t)timeout_ms);
	int got = 0;
	while (got < want) {
		uint64_t now = proact_now();
		if (now >= end)
			break;
		int left_ms = (int)((end - now) / 1000000u) + 1;
		int n = proact_wait(w, out + got, want - got, left_ms);
		if (n < 0)
			fail_msg("proact_wait: %s", proact_strerror(n));
		got += n;
	}
	return got;
}

uint8_t t_byte(uint32_t seed, uint64_t i)
{
	uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull ^ ((uint64_t)seed << 17);
	x ^= x >> 31;
	x *= 0xBF58476D1CE4E5B9ull;
	x ^= x >> 29;
	return (uint8_t)x;
}

void t_fill(uint8_t *buf, size_t len, uint32_t seed, uint64_t offset)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = t_byte(seed, offset + i);
}

long t_check(const uint8_t *buf, size_t len, uint32_t seed, uint64_t offset)
{
	for (size_t i = 0; i < len; i++)
		if (buf[i] != t_byte(seed, offset + i))
			return (long)i;
	return -1;
}

void t_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			fail_msg("send: %s", strerror(errno));
		p += n;
		len -= (size_t)n;
	}
}

void t_read_all(int fd, void *buf, size_t len)
{
	char *p = buf;
	while (len > 0) {
		ssize_t n = recv(fd, p, len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			fail_msg("recv: %s", n == 0 ? "EOF" : strerror(errno));
		p += n;
		len -= (size_t)n;
	}
}

int t_fd_count(void)
{
	/* An emulation of kqueue from outside the project (libkqueue) opens
	   descriptors of its own, some for the whole process and some per
	   kqueue that a thread of its own closes later: no count can be
	   compared. A run against it sets PROACT_TEST_FOREIGN_KQUEUE and the
	   descriptor accounting is left out (every count is 0). */
	const char *foreign = getenv("PROACT_TEST_FOREIGN_KQUEUE");
	if (foreign && *foreign == '1')
		return 0;
#if defined(_WIN32)
	return 0; /* handles, not descriptors: no count to compare (as above) */
#elif defined(__linux__)
	DIR *d = opendir("/proc/self/fd");
	assert_non_null(d);
	int n = 0;
	while (readdir(d))
		n++;
	closedir(d);
	return n - 3; /* ".", ".." and the DIR's own fd */
#else
	/* No /proc (and /dev/fd may list only 0-2): ask each descriptor below
	   the limit, which no open one can exceed (2^20 at most: no test opens
	   more, and the scan stays quick). */
	struct rlimit rl;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
	int max =
	    rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (1 << 20) ? 1 << 20 : (int)rl.rlim_cur;
	int n = 0;
	for (int fd = 0; fd < max; fd++)
		n += fcntl(fd, F_GETFD) != -1;
	return n;
#endif
}

long t_status_kb(const char *field)
{
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return -1;
	char line[256];
	size_t n = strlen(field);
	long kb = -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, field, n) == 0 && line[n] == ':') {
			kb = strtol(line + n + 1, NULL, 10);
			break;
		}
	fclose(f);
	return kb;
}

void t_linger_reset(int fd)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
}

void t_need_reset(void)
{
#ifdef _WIN32
	/* Wine (which exports wine_get_version from its ntdll) sends that reset
	   only sometimes, a FIN otherwise: the reader sees EOF. */
	if (GetProcAddress(GetModuleHandleA("ntdll.dll"), "wine_get_version")) {
		print_message("under Wine, closing with SO_LINGER 0 may send no reset: skipped\n");
		skip();
	}
#endif
}

void t_set_nonblock(int fd, int on)
{
#ifdef _WIN32
	assert_int_equal(set_fd_flags(fd, on), fd);
#else
	int fl = fcntl(fd, F_GETFL);
	assert_true(fl >= 0);
	fl = on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK;
	assert_int_equal(fcntl(fd, F_SETFL, fl), 0);
#endif
}

#ifdef _WIN32
int t_temp_file(const void *data, size_t len)
{
	char dir[MAX_PATH], path[MAX_PATH];
	assert_true(GetTempPathA(sizeof(dir), dir) > 0);
	assert_true(GetTempFileNameA(dir, "pro", 0, path) != 0);
	HANDLE h =
	    CreateFileA(path, GENERIC_READ | GENERIC_WRITE,
	                FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL, CREATE_ALWAYS,
	                FILE_ATTRIBUTE_TEMPORARY | FILE_FLAG_DELETE_ON_CLOSE, NULL);
	assert_true(h != INVALID_HANDLE_VALUE);
	for (size_t off = 0; off < len;) {
		DWORD n, want = len - off > (1u << 30) ? 1u << 30 : (DWORD)(len - off);
		assert_true(WriteFile(h, (const char *)data + off, want, &n, NULL) && n > 0);
		off += n;
	}
	int fd = _open_osfhandle((intptr_t)h, _O_RDWR | _O_BINARY);
	assert_true(fd >= 0);
	return fd;
}

int t_open_dir(void)
{
	char dir[MAX_PATH];
	assert_true(GetTempPathA(sizeof(dir), dir) > 0);
	HANDLE h = CreateFileA(dir, GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE, NULL,
	                       OPEN_EXISTING, FILE_FLAG_BACKUP_SEMANTICS, NULL);
	assert_true(h != INVALID_HANDLE_VALUE);
	int fd = _open_osfhandle((intptr_t)h, _O_RDONLY);
	assert_true(fd >= 0);
	return fd;
}

int t_file_as_socket(int d)
{
	return (int)(intptr_t)t_win_file_handle(d);
}
#else
int t_temp_file(const void *data, size_t len)
{
	char path[] = "/tmp/proact-test-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	for (size_t off = 0; off < len;) {
		ssize_t n = pwrite(fd, (const char *)data + off, len - off, (off_t)off);
		assert_true(n > 0);
		off += (size_t)n;
	}
	return fd;
}

int t_open_dir(void)
{
	int fd = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);
	return fd;
}

int t_file_as_socket(int d)
{
	return d;
}
#endif

long t_env_long(const char *name, long def)
{
	const char *s = getenv(name);
	if (!s || !*s)
		return def;
	char *end;
	long v = strtol(s, &end, 10);
	return *end == '\0' && v > 0 ? v : def;
}

#ifdef _WIN32
/* Winsock takes the timeouts in milliseconds, in a DWORD. */
void t_set_rcvtimeo(int fd, int sec)
{
	DWORD ms = (DWORD)sec * 1000;
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &ms, sizeof(ms)), 0);
}

void t_set_timeouts(int fd, int sec)
{
	DWORD ms = (DWORD)sec * 1000;
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &ms, sizeof(ms)), 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &ms, sizeof(ms)), 0);
}
#else
void t_set_rcvtimeo(int fd, int sec)
{
	struct timeval tv = {.tv_sec = sec};
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
}

void t_set_timeouts(int fd, int sec)
{
	struct timeval tv = {.tv_sec = sec};
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)), 0);
}
#endif

void t_small_bufs(int sender, int receiver)
{
	t_set_bufs(sender, 64 * 1024, 0);
	t_set_bufs(receiver, 0, 64 * 1024);
}

void t_set_bufs(int fd, int snd, int rcv)
{
	if (snd > 0)
		assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &snd, sizeof(snd)), 0);
	if (rcv > 0)
		assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv)), 0);
}

int t_fd_open(int fd)
{
#ifdef _WIN32
	return t_win_is_socket(fd) || t_win_file_handle(fd) != INVALID_HANDLE_VALUE;
#else
	return fcntl(fd, F_GETFD) != -1 || errno != EBADF;
#endif
}

struct t_thread {
	pthread_t th;
	void *(*fn)(void *);
	void *arg;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done; /* fn returned: the join cannot block for long */
};

static void *t_thread_main(void *arg)
{
	struct t_thread *t = arg;
	t->fn(t->arg);
	pthread_mutex_lock(&t->mu);
	t->done = true;
	pthread_cond_broadcast(&t->cv);
	pthread_mutex_unlock(&t->mu);
	return NULL;
}

t_thread *t_thread_start(void *(*fn)(void *), void *arg)
{
	/* On the heap: a thread that outlives a failed test still has it. */
	struct t_thread *t = calloc(1, sizeof(*t));
	assert_non_null(t);
	t->fn = fn;
	t->arg = arg;
	assert_int_equal(pthread_mutex_init(&t->mu, NULL), 0);
	assert_int_equal(pthread_cond_init(&t->cv, NULL), 0);
	assert_int_equal(pthread_create(&t->th, NULL, t_thread_main, t), 0);
	return t;
}

int t_thread_join_within(t_thread *t, int sec)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts); /* the condition variable's default clock */
	ts.tv_sec += sec;
	int rc = 0;
	pthread_mutex_lock(&t->mu);
	while (!t->done && rc == 0)
		rc = pthread_cond_timedwait(&t->cv, &t->mu, &ts);
	bool done = t->done;
	pthread_mutex_unlock(&t->mu);
	if (!done)
		return rc;
	rc = pthread_join(t->th, NULL);
	pthread_cond_destroy(&t->cv);
	pthread_mutex_destroy(&t->mu);
	free(t);
	return rc;
}
