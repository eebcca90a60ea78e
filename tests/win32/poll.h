/* SPDX-License-Identifier: MIT */
/* poll over WSAPoll, sockets only (see sys/socket.h here). WSAPoll refuses
   an empty set, which the tests use as a sleep, and poll skips negative
   fds, which WSAPoll may not: those are left out of the set it gets. */
#ifndef PROACT_TEST_WIN32_POLL_H
#define PROACT_TEST_WIN32_POLL_H

#include <sys/socket.h>

static inline int t_win_poll(struct pollfd *fds, unsigned long n, int timeout_ms)
{
	struct pollfd set[256];
	unsigned long k = 0;
	for (unsigned long i = 0; i < n; i++) {
		fds[i].revents = 0;
		if ((int)fds[i].fd >= 0 && k < sizeof(set) / sizeof(set[0]))
			set[k++] = fds[i];
	}
	if (k == 0) {
		Sleep(timeout_ms < 0 ? INFINITE : (DWORD)timeout_ms);
		return 0;
	}
	int rc = t_win_result(WSAPoll(set, k, timeout_ms));
	for (unsigned long i = 0, j = 0; i < n && j < k; i++)
		if ((int)fds[i].fd >= 0)
			fds[i].revents = set[j++].revents;
	return rc;
}

#define poll(f, n, t) t_win_poll(f, n, t)

#endif
