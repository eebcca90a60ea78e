/* SPDX-License-Identifier: MIT */
/*
 * check - helpers shared by the example checkers; see check.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "check.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proact.h"

#define MAX_SERVERS 8

static const char *progname = "check";
static const char *emulator_var;
static pid_t servers[MAX_SERVERS]; /* killed on failure */
static void (*fail_hook)(void);

void ck_init(const char *name, const char *emulator_env)
{
	progname = name;
	emulator_var = emulator_env;
	signal(SIGPIPE, SIG_IGN);
}

void ck_on_fail(void (*hook)(void))
{
	fail_hook = hook;
}

void ck_fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "%s: FAIL: ", progname);
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	for (int i = 0; i < MAX_SERVERS; i++)
		if (servers[i] > 0)
			kill(servers[i], SIGKILL);
	if (fail_hook)
		fail_hook();
	exit(1);
}

void ck_skip_if_unavailable(void)
{
	proact_watcher *w;
	int rc = proact_watcher_new(&w, NULL);
	if (rc == -ENOSYS) {
		printf("%s: SKIP: backend %s not available\n", progname, getenv("PROACT_BACKEND"));
		exit(77);
	}
	if (rc < 0)
		ck_fail("proact_watcher_new: %s", proact_strerror(rc));
	printf("%s: backend %s\n", progname, proact_backend(w));
	proact_watcher_destroy(w);
}

double ck_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void ck_sleep(double s)
{
	struct timespec ts = {.tv_sec = (time_t)s,
	                      .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
	nanosleep(&ts, NULL);
}

void ck_fill_pattern(unsigned char *buf, size_t n)
{
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		buf[i] = (unsigned char)(x >> 32);
	}
}

/* ---- sockets ----------------------------------------------------------- */

/* Close-on-exec descriptors (servers are forked while other threads run):
   atomically where the calls take the flag, else with fcntl afterwards. */
#if !defined(SOCK_CLOEXEC) || !defined(PROACT_PROG_HAVE_ACCEPT4) || !defined(PROACT_PROG_HAVE_PIPE2)
static int cloexec(int fd)
{
	if (fd >= 0)
		(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
	return fd;
}
#endif

int ck_tcp_socket(void)
{
#ifdef SOCK_CLOEXEC
	return socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
#else
	return cloexec(socket(AF_INET, SOCK_STREAM, 0));
#endif
}

static int accept_cloexec(int lfd)
{
#ifdef PROACT_PROG_HAVE_ACCEPT4
	return accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
#else
	return cloexec(accept(lfd, NULL, NULL));
#endif
}

int ck_pipe(int p[2])
{
#ifdef PROACT_PROG_HAVE_PIPE2
	return pipe2(p, O_CLOEXEC);
#else
	if (pipe(p) < 0)
		return -1;
	cloexec(p[0]);
	cloexec(p[1]);
	return 0;
#endif
}

void ck_set_timeouts(int fd)
{
	struct timeval tv = {.tv_sec = CK_IO_TIMEOUT_S};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

int ck_listen_local(int *port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int fd = ck_tcp_socket();
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, len) < 0 || listen(fd, 64) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
		ck_fail("listen: %s", strerror(errno));
	*port = ntohs(sa.sin_port);
	return fd;
}

int ck_accept(int lfd)
{
	struct pollfd p = {.fd = lfd, .events = POLLIN};
	if (poll(&p, 1, CK_IO_TIMEOUT_S * 1000) != 1)
		ck_fail("no connection within %d s", CK_IO_TIMEOUT_S);
	int fd = accept_cloexec(lfd);
	if (fd < 0)
		ck_fail("accept: %s", strerror(errno));
	ck_set_timeouts(fd);
	return fd;
}

int ck_connect_local(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons((uint16_t)port),
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = ck_tcp_socket();
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		ck_fail("connect to port %d: %s", port, strerror(errno));
	ck_set_timeouts(fd);
	return fd;
}

void ck_write_all(int fd, const void *buf, size_t n, const char *who)
{
	const unsigned char *p = buf;
	while (n) {
		ssize_t k = write(fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			ck_fail("%s: write: %s", who, k < 0 ? strerror(errno) : "0");
		p += k;
		n -= (size_t)k;
	}
}

void ck_read_all(int fd, void *buf, size_t n, const char *who)
{
	unsigned char *p = buf;
	while (n) {
		ssize_t k = read(fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			ck_fail("%s: read: %s", who,
			        k < 0 ? strerror(errno) : "early end of stream");
		p += k;
		n -= (size_t)k;
	}
}

void ck_expect_eof(int fd, const char *who)
{
	char c;
	ssize_t k;
	while ((k = read(fd, &c, 1)) < 0 && errno == EINTR)
		;
	if (k != 0)
		ck_fail("%s: expected end of stream, got %s", who,
		        k < 0 ? strerror(errno) : "data");
}

/* ---- servers ----------------------------------------------------------- */

static void remember(pid_t pid)
{
	for (int i = 0; i < MAX_SERVERS; i++) {
		if (servers[i] <= 0) {
			servers[i] = pid;
			return;
		}
	}
}

static void forget(pid_t pid)
{
	for (int i = 0; i < MAX_SERVERS; i++)
		if (servers[i] == pid)
			servers[i] = 0;
}

/* Appends what the server printed, waiting up to @ms for more. */
static bool server_read(struct ck_server *sv, int ms)
{
	struct pollfd pf = {.fd = sv->out, .events = POLLIN};
	if (sv->len + 1 >= sizeof(sv->text) || poll(&pf, 1, ms) != 1)
		return false;
	ssize_t k = read(sv->out, sv->text + sv->len, sizeof(sv->text) - 1 - sv->len);
	if (k <= 0)
		return false;
	sv->len += (size_t)k;
	sv->text[sv->len] = 0;
	return true;
}

/* In the child: the emulator's words (under qemu-user an exec of a foreign
   binary fails unless binfmt_misc knows it), then argv. SIGPIPE back to its
   default: an ignored signal stays ignored across exec, and the server must
   be tested as it runs elsewhere. */
static _Noreturn void exec_server(char *const argv[])
{
	signal(SIGPIPE, SIG_DFL);
	char *args[64];
	int n = 0;
	char *emulator = emulator_var ? getenv(emulator_var) : NULL;
	for (char *save = NULL, *word = emulator ? strtok_r(emulator, " ", &save) : NULL;
	     word && n < 16; word = strtok_r(NULL, " ", &save))
		args[n++] = word;
	for (int i = 0; argv[i] && n < 63; i++)
		args[n++] = argv[i];
	args[n] = NULL;
	execvp(args[0], args);
	_exit(127);
}

void ck_server_start(struct ck_server *sv, char *const argv[])
{
	int pipefd[2];
	if (ck_pipe(pipefd) < 0)
		ck_fail("pipe: %s", strerror(errno));
	*sv = (struct ck_server){.out = pipefd[0]};
	sv->pid = fork();
	if (sv->pid < 0)
		ck_fail("fork: %s", strerror(errno));
	if (sv->pid == 0) {
		dup2(pipefd[1], STDOUT_FILENO);
		exec_server(argv);
	}
	remember(sv->pid);
	close(pipefd[1]);
	double end = ck_now() + CK_IO_TIMEOUT_S;
	char *nl;
	while (!(nl = strchr(sv->text, '\n')) && ck_now() < end)
		server_read(sv, 100);
	if (!nl || sscanf(sv->text, "listening on 127.0.0.1:%d", &sv->port) != 1)
		ck_fail("%s did not start: '%s'", argv[0], sv->text);
}

const char *ck_server_stop(struct ck_server *sv, const char *summary)
{
	kill(sv->pid, SIGTERM);
	int status = 0;
	double end = ck_now() + CK_IO_TIMEOUT_S;
	pid_t r;
	while ((r = waitpid(sv->pid, &status, WNOHANG)) == 0 && ck_now() < end)
		ck_sleep(0.01);
	if (r != sv->pid)
		ck_fail("server did not exit within %d s of SIGTERM", CK_IO_TIMEOUT_S);
	forget(sv->pid);
	while (server_read(sv, 1000))
		;
	close(sv->out);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		ck_fail("server exited with status %#x", status);
	const char *line = strstr(sv->text, summary);
	if (!line)
		ck_fail("no summary line in '%s'", sv->text);
	return line;
}

int ck_run(char *const argv[], char **out, double limit_s)
{
	int pipefd[2];
	if (ck_pipe(pipefd) < 0)
		return -1;
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		dup2(pipefd[1], STDOUT_FILENO);
		dup2(pipefd[1], STDERR_FILENO);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(pipefd[1]);
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);
	double end = ck_now() + limit_s;
	bool killed = false;
	for (;;) {
		struct pollfd pf = {.fd = pipefd[0], .events = POLLIN};
		int left_ms = (int)((end - ck_now()) * 1000);
		if (left_ms <= 0 || poll(&pf, 1, left_ms) == 0) {
			kill(pid, SIGKILL);
			killed = true;
			break;
		}
		if (len + 1 >= cap && buf)
			buf = realloc(buf, cap *= 2);
		if (!buf)
			ck_fail("out of memory");
		ssize_t k = read(pipefd[0], buf + len, cap - 1 - len);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		len += (size_t)k;
	}
	buf[len] = 0;
	close(pipefd[0]);
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	*out = buf;
	return killed ? -1 : status;
}

bool ck_find_program(const char *prog, char *buf, size_t len)
{
	const char *path = getenv("PATH");
	while (path && *path) {
		const char *colon = strchr(path, ':');
		size_t n = colon ? (size_t)(colon - path) : strlen(path);
		if (n && (size_t)snprintf(buf, len, "%.*s/%s", (int)n, path, prog) < len &&
		    access(buf, X_OK) == 0)
			return true;
		path = colon ? colon + 1 : NULL;
	}
	return false;
}
