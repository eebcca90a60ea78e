/* SPDX-License-Identifier: MIT */
/* Windows has no alarm(): ctest's timeout is the bound on a stuck test
   there. */
#ifndef PROACT_TEST_WIN32_UNISTD_H
#define PROACT_TEST_WIN32_UNISTD_H

#include_next <unistd.h>

static inline unsigned t_win_alarm(unsigned sec)
{
	(void)sec;
	return 0;
}
#define alarm t_win_alarm

#endif
