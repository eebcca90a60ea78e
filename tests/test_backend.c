/* SPDX-License-Identifier: MIT */
/*
 * Checks DESIGN rule 11 (backends): the backend named by PROACT_BACKEND is the
 * one a default watcher runs on; proact_backend() names a known backend;
 * options.backend overrides the environment; each known name either works
 * or is refused with -ENOSYS (not in this build), and the one under test
 * works; the automatic choice prefers io_uring, then epoll, then kqueue, then
 * iocp; an unknown name is -EINVAL. Each watcher obtained moves real bytes.
 */
#include "common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WAIT_MS 10000

/* One write and one read over a TCP pair, then free: the watcher works. */
static void round_trip(proact_watcher *w)
{
	int fds[2];
	t_tcp_pair(fds);
	uint8_t tx[3000], rx[3000];
	t_fill(tx, sizeof(tx), 3, 0);
	assert_int_equal(proact_write(w, fds[0], tx, sizeof(tx), tx), 0);
	struct proact_completion out[2];
	assert_int_equal(t_collect(w, out, 1, WAIT_MS), 1);
	assert_int_equal(out[0].op, PROACT_OP_WRITE);
	assert_int_equal(out[0].error, 0);
	assert_int_equal(out[0].size, sizeof(tx));
	t_read_all(fds[1], rx, sizeof(rx));
	assert_int_equal(t_check(rx, sizeof(rx), 3, 0), -1);

	memset(rx, 0, sizeof(rx));
	assert_int_equal(proact_read_full(w, fds[0], rx, sizeof(rx), rx), 0);
	t_write_all(fds[1], tx, sizeof(tx));
	assert_int_equal(t_collect(w, out, 1, WAIT_MS), 1);
	assert_ptr_equal(out[0].ctx, rx);
	assert_int_equal(out[0].error, 0);
	assert_int_equal(out[0].size, sizeof(rx));
	assert_int_equal(t_check(rx, sizeof(rx), 3, 0), -1);

	assert_int_equal(proact_free(w, fds[0], NULL), 0);
	assert_int_equal(t_collect(w, out, 1, WAIT_MS), 1);
	assert_int_equal(out[0].op, PROACT_OP_FREE);
	close(fds[1]);
}

static int known_backend(const char *name)
{
	return name && (strcmp(name, "epoll") == 0 || strcmp(name, "io_uring") == 0 ||
	                strcmp(name, "kqueue") == 0 || strcmp(name, "iocp") == 0);
}

/* A default watcher runs on the backend PROACT_BACKEND names (t_watcher asserts it). */
static void test_env_backend_honored(void **state)
{
	(void)state;
	int base = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	const char *name = proact_backend(w);
	assert_true(known_backend(name));
	const char *want = getenv("PROACT_BACKEND");
	if (want && *want)
		assert_string_equal(name, want);
	/* options with a NULL backend also take the environment */
	struct proact_options o = {.max_pending_per_fd = 100};
	proact_watcher *w2 = t_watcher(&o);
	if (want && *want)
		assert_string_equal(proact_backend(w2), want);
	round_trip(w);
	round_trip(w2);
	proact_watcher_destroy(w2);
	proact_watcher_destroy(w);
	assert_int_equal(t_fd_count(), base);
}

/* A watcher on backend `name` from the options, or NULL when the build has
   none (-ENOSYS); any other failure fails the test. */
static proact_watcher *watcher_on(const char *name)
{
	struct proact_options o = {.backend = name};
	proact_watcher *w = NULL;
	int rc = proact_watcher_new(&w, &o);
	if (rc == -ENOSYS) {
		assert_null(w);
		return NULL;
	}
	assert_int_equal(rc, 0);
	assert_string_equal(proact_backend(w), name);
	return w;
}

/* The environment is read when the watcher is made: set it to the backend
   under test (or epoll when the suite runs on the automatic choice). */
static void test_env_variable_selects(void **state)
{
	(void)state;
	int base = t_fd_count();
	const char *prev = getenv("PROACT_BACKEND");
	char *saved = prev ? strdup(prev) : NULL;
	const char *want = saved && *saved ? saved : "epoll";
	assert_int_equal(setenv("PROACT_BACKEND", want, 1), 0);
	proact_watcher *w = NULL;
	int rc = proact_watcher_new(&w, NULL);
	if (saved) {
		setenv("PROACT_BACKEND", saved, 1);
	} else {
		unsetenv("PROACT_BACKEND");
	}
	assert_int_equal(rc, 0);
	assert_string_equal(proact_backend(w), want);
	free(saved);
	round_trip(w);
	proact_watcher_destroy(w);
	assert_int_equal(t_fd_count(), base);
}

/* Each known name: a working watcher of that backend, or -ENOSYS; the
   option wins over the environment, and the backend under test exists. */
static void test_option_names(void **state)
{
	(void)state;
	const char *names[] = {"epoll", "io_uring", "kqueue", "iocp"};
	const char *want = getenv("PROACT_BACKEND");
	int base = t_fd_count(), found = 0;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		proact_watcher *w = watcher_on(names[i]);
		if (want && strcmp(want, names[i]) == 0)
			assert_non_null(w);
		if (!w)
			continue;
		found++;
		round_trip(w);
		proact_watcher_destroy(w);
		assert_int_equal(t_fd_count(), base);
	}
	assert_true(found > 0);
}

/* With neither option nor environment: io_uring if it works, else epoll,
   else kqueue (a BSD, or a build that stands in for one), else iocp (Windows). */
static void test_automatic_choice(void **state)
{
	(void)state;
	const char *prev = getenv("PROACT_BACKEND");
	char *saved = prev ? strdup(prev) : NULL;
	unsetenv("PROACT_BACKEND");
	proact_watcher *w = NULL;
	int rc = proact_watcher_new(&w, NULL);
	if (saved) {
		setenv("PROACT_BACKEND", saved, 1);
		free(saved);
	}
	assert_int_equal(rc, 0);
	const char *order[] = {"io_uring", "epoll", "kqueue", "iocp"};
	const char *expect = NULL;
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]) && !expect; i++) {
		proact_watcher *probe = watcher_on(order[i]);
		if (probe) {
			expect = order[i];
			proact_watcher_destroy(probe);
		}
	}
	assert_non_null(expect);
	assert_string_equal(proact_backend(w), expect);
	round_trip(w);
	proact_watcher_destroy(w);
}

static void test_unknown_backend_name(void **state)
{
	(void)state;
	int base = t_fd_count();
	const char *names[] = {"nope", "select", "poll", "epoll ", "io-uring", "KQUEUE", ""};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		struct proact_options o = {.backend = names[i]};
		proact_watcher *w = NULL;
		int rc = proact_watcher_new(&w, &o);
		if (!*names[i]) { /* empty: the automatic choice */
			assert_int_equal(rc, 0);
			proact_watcher_destroy(w);
			continue;
		}
		assert_int_equal(rc, -EINVAL);
		assert_null(w);
	}
	assert_int_equal(t_fd_count(), base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_env_backend_honored),
	    cmocka_unit_test(test_env_variable_selects),
	    cmocka_unit_test(test_option_names),
	    cmocka_unit_test(test_automatic_choice),
	    cmocka_unit_test(test_unknown_backend_name),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
