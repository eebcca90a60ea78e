/* poll over WSAPoll, sockets only (see sys/socket.h here). WSAPoll refuses
   an empty set, which the tests use as a sleep. */
#ifndef PROACT_TEST_WIN32_POLL_H
#define PROACT_TEST_WIN32_POLL_H

#include <sys/socket.h>

static inline int t_win_poll(struct pollfd *fds, unsigned long n, int timeout_ms)
{
	if (n == 0) {
		Sleep(timeout_ms < 0 ? INFINITE : (DWORD)timeout_ms);
		return 0;
	}
	return t_win_result(WSAPoll(fds, n, timeout_ms));
}

#define poll(f, n, t) t_win_poll(f, n, t)

#endif
