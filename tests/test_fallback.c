/* SPDX-License-Identifier: MIT */
/*
 * Checks that the automatic backend choice falls back to epoll when the
 * kernel refuses io_uring (rule 11): a child process installs a seccomp
 * filter that makes io_uring_setup fail with EPERM (as container runtimes
 * do) or ENOSYS (a kernel without io_uring), then creates a watcher with no
 * backend named and moves bytes through it. Naming io_uring explicitly under
 * the filter fails with the kernel's errno instead of silently switching.
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

/* Makes io_uring_setup fail with err for this process and its children. */
static int refuse_io_uring(int err)
{
	struct sock_filter code[] = {
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (unsigned)err),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = sizeof(code) / sizeof(code[0]), .filter = code};
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		return -1;
	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

/* The child's exit status when it cannot install the filter. */
enum { NO_SECCOMP = 77 };

/* Child side: returns 0 when every check holds, else the number of the failed one. */
static int child_checks(int err)
{
	if (refuse_io_uring(err) != 0)
		return errno == EINVAL ? NO_SECCOMP : 1;
	unsetenv("PROACT_BACKEND");
	proact_watcher *w = NULL;
	if (proact_watcher_new(&w, NULL) != 0 || strcmp(proact_backend(w), "epoll") != 0)
		return 2;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
		return 3;
	if (proact_write(w, sv[0], "ping", 4, NULL) != 0)
		return 4;
	struct proact_completion c;
	if (proact_wait(w, &c, 1, 5000) != 1 || c.error != 0 || c.size != 4)
		return 5;
	char buf[4];
	if (read(sv[1], buf, 4) != 4 || memcmp(buf, "ping", 4) != 0)
		return 6;
	proact_watcher_destroy(w);

	struct proact_options named = {.backend = "io_uring"};
	int rc = proact_watcher_new(&w, &named);
	if (rc != -err && rc != -ENOSYS)
		return 7;
	return 0;
}

/* The fallback is io_uring's to epoll: a build without epoll (kqueue over
   a test double, standing in for a BSD) has nothing to fall back to. */
static void needs_epoll(void)
{
	struct proact_options o = {.backend = "epoll"};
	proact_watcher *w = NULL;
	if (proact_watcher_new(&w, &o) == -ENOSYS)
		skip();
	proact_watcher_destroy(w);
}

static void run_refused(int err)
{
	needs_epoll();
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(child_checks(err));
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	/* qemu-user refuses seccomp filters; it has no io_uring either, so
	   epoll:backend sees the fallback there. */
	if (WEXITSTATUS(status) == NO_SECCOMP)
		skip();
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void fallback_on_eperm(void **state)
{
	(void)state;
	run_refused(EPERM);
}

static void fallback_on_enosys(void **state)
{
	(void)state;
	run_refused(ENOSYS);
}

/* Without the filter, the environment variable alone picks the backend. */
static void env_override(void **state)
{
	(void)state;
	needs_epoll();
	const char *saved = getenv("PROACT_BACKEND");
	char *copy = saved ? strdup(saved) : NULL;
	setenv("PROACT_BACKEND", "epoll", 1);
	proact_watcher *w = NULL;
	assert_int_equal(proact_watcher_new(&w, NULL), 0);
	assert_string_equal(proact_backend(w), "epoll");
	proact_watcher_destroy(w);
	setenv("PROACT_BACKEND", "no-such-backend", 1);
	assert_int_equal(proact_watcher_new(&w, NULL), -EINVAL);
	if (copy)
		setenv("PROACT_BACKEND", copy, 1);
	else
		unsetenv("PROACT_BACKEND");
	free(copy);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(fallback_on_eperm),
	    cmocka_unit_test(fallback_on_enosys),
	    cmocka_unit_test(env_override),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
