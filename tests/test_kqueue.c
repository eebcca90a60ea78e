/* SPDX-License-Identifier: MIT */
/*
 * Checks what only the kqueue backend does (rule 11): registrations wait in
 * a changelist that goes to the kernel with the next kevent() call, so a
 * change the kernel refuses comes back as an EV_ERROR entry and must fail
 * the requests waiting on that fd; a round with more changes than the event
 * list has slots goes in slices, and none of them is lost. Skipped on the
 * other backends.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

#define WAIT_MS 10000

static void needs_kqueue(void)
{
	if (strcmp(t_backend(), "kqueue") != 0)
		skip();
}

/*
 * The fd is closed behind the watcher's back after its first request (rule 1
 * forbids it; the kernel's answer must still reach the request): the
 * registration reaches the kernel with the next wait, comes back refused
 * (EBADF), and the waiting read completes with that errno instead of
 * waiting forever. Another fd of the same watcher goes on working.
 */
static void test_refused_registration_fails_requests(void **state)
{
	(void)state;
	needs_kqueue();
	proact_watcher *w = t_watcher(NULL);
	int a[2], b[2];
	t_unix_pair(a);
	t_unix_pair(b);
	uint8_t buf[16];
	struct proact_completion c[2];
	/* this thread waits, so its read is tried inside proact_read: nothing
	   to read, and the registration waits for the next kevent() call */
	assert_int_equal(proact_wait(w, c, 2, 0), 0);
	assert_int_equal(proact_read(w, a[0], buf, sizeof(buf), (void *)1), 0);
	close(a[0]); /* before any kevent() call carried the registration */
	assert_int_equal(t_collect(w, c, 1, WAIT_MS), 1);
	assert_ptr_equal(c[0].ctx, (void *)1);
	assert_int_equal(c[0].op, PROACT_OP_READ);
	assert_int_equal(c[0].error, EBADF);
	assert_int_equal(c[0].size, 0);

	assert_int_equal(proact_read(w, b[0], NULL, 0, (void *)2), 0);
	t_write_all(b[1], "ok", 2);
	assert_int_equal(t_collect(w, c, 1, WAIT_MS), 1);
	assert_ptr_equal(c[0].ctx, (void *)2);
	assert_int_equal(c[0].size, 2);
	assert_memory_equal(c[0].buf, "ok", 2);

	/* the closed number is still registered: free forgets it (its close
	   fails quietly) and delivers the FREE completion */
	assert_int_equal(proact_free(w, a[0], (void *)3), 0);
	assert_int_equal(t_collect(w, c, 1, WAIT_MS), 1);
	assert_int_equal(c[0].op, PROACT_OP_FREE);
	close(a[1]);
	close(b[1]);
	proact_watcher_destroy(w);
}

/*
 * 1,500 pairs registered in one round: 3,000 knotes, six times the event
 * list's 512 slots, go to the kernel in slices. Every read completes once
 * its peer writes, none twice, none lost.
 */
#define MANY 1500
static void test_many_registrations_in_one_round(void **state)
{
	(void)state;
	needs_kqueue();
	int base = t_fd_count();
	proact_watcher *w = t_watcher(NULL);
	int *fds = malloc(sizeof(int) * 2 * MANY);
	uint8_t *seen = calloc(MANY, 1);
	assert_non_null(fds);
	assert_non_null(seen);
	for (int i = 0; i < MANY; i++)
		t_unix_pair(&fds[2 * i]);
	for (int i = 0; i < MANY; i++)
		assert_int_equal(proact_read(w, fds[2 * i], NULL, 0, (void *)(uintptr_t)(i + 1)),
		                 0);
	struct proact_completion c[64];
	assert_int_equal(proact_wait(w, c, 64, 0), 0); /* the registrations go in */
	for (int i = 0; i < MANY; i++)
		t_write_all(fds[2 * i + 1], &i, sizeof(i));
	int done = 0;
	uint64_t end = proact_deadline_in(WAIT_MS * 3);
	while (done < MANY && proact_now() < end) {
		int n = proact_wait(w, c, 64, 100);
		assert_true(n >= 0);
		for (int k = 0; k < n; k++) {
			uintptr_t i = (uintptr_t)c[k].ctx - 1;
			assert_true(i < MANY);
			assert_int_equal(c[k].error, 0);
			assert_int_equal(c[k].size, sizeof(int));
			int v;
			memcpy(&v, c[k].buf, sizeof(v));
			assert_int_equal(v, (int)i);
			assert_int_equal(seen[i], 0);
			seen[i] = 1;
			done++;
		}
	}
	assert_int_equal(done, MANY);
	proact_watcher_destroy(w); /* closes the watcher's ends */
	for (int i = 0; i < MANY; i++)
		close(fds[2 * i + 1]);
	assert_int_equal(t_fd_count(), base);
	free(fds);
	free(seen);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_refused_registration_fails_requests),
	    cmocka_unit_test(test_many_registrations_in_one_round),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
