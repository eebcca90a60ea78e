/* SPDX-License-Identifier: MIT */
/*
 * Checks that the basic request cycle works on the backend under test: a
 * write completes with its size, a NULL-buffer read gets a pool buffer with
 * the peer's bytes, and proact_free cancels a pending read and ends with the
 * FREE completion (rules 2, 3, 5, 7).
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

static void basic_cycle(void **state)
{
	(void)state;
	proact_watcher *w = t_watcher(NULL);
	int sv[2];
	t_unix_pair(sv);
	struct proact_completion c[4];

	assert_int_equal(proact_read(w, sv[0], NULL, 0, (void *)1), 0);
	assert_int_equal(proact_write(w, sv[0], "hello", 5, (void *)2), 0);
	assert_int_equal(t_collect(w, c, 1, 5000), 1);
	assert_int_equal(c[0].op, PROACT_OP_WRITE);
	assert_int_equal(c[0].size, 5);
	assert_int_equal(c[0].error, 0);

	char buf[8];
	t_read_all(sv[1], buf, 5);
	assert_memory_equal(buf, "hello", 5);
	t_write_all(sv[1], "world!", 6);
	assert_int_equal(t_collect(w, c, 1, 5000), 1);
	assert_int_equal(c[0].op, PROACT_OP_READ);
	assert_ptr_equal(c[0].ctx, (void *)1);
	assert_int_equal(c[0].size, 6);
	assert_true(c[0].flags & PROACT_COMP_POOL);
	assert_memory_equal(c[0].buf, "world!", 6);

	assert_int_equal(proact_read(w, sv[0], buf, sizeof(buf), (void *)3), 0);
	assert_int_equal(proact_free(w, sv[0], (void *)9), 0);
	assert_int_equal(t_collect(w, c, 2, 5000), 2);
	assert_int_equal(c[0].error, ECANCELED);
	assert_int_equal(c[1].op, PROACT_OP_FREE);
	assert_ptr_equal(c[1].ctx, (void *)9);
	assert_int_equal(read(sv[1], buf, 1), 0); /* closed: the peer sees EOF */

	close(sv[1]);
	proact_watcher_destroy(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(basic_cycle)};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
