/* SPDX-License-Identifier: MIT */
/*
 * Windows raises no SIGPIPE: the tests' checks that none is raised hold
 * there by themselves. A signal set for those checks, always empty
 * (no mask to ask either), and signal() leaves SIGPIPE
 * alone, which the C runtime does not know.
 */
#ifndef PROACT_TEST_WIN32_SIGNAL_H
#define PROACT_TEST_WIN32_SIGNAL_H

#include <pthread.h>
#include_next <signal.h>
#include <sys/types.h>

#ifndef SIGPIPE
#define SIGPIPE 13
#endif
#ifndef _POSIX
typedef _sigset_t sigset_t;
#endif

static inline int sigemptyset(sigset_t *set)
{
	*set = 0;
	return 0;
}

static inline int sigpending(sigset_t *set)
{
	return sigemptyset(set);
}

static inline int sigismember(const sigset_t *set, int sig)
{
	return (int)(*set >> sig & 1);
}

static inline int t_win_sigmask(int how, const sigset_t *set, sigset_t *old)
{
	(void)how;
	(void)set;
	return old ? sigemptyset(old) : 0;
}
#undef pthread_sigmask
#define pthread_sigmask t_win_sigmask

static inline __p_sig_fn_t t_win_signal(int sig, __p_sig_fn_t fn)
{
	return sig == SIGPIPE ? SIG_DFL : signal(sig, fn);
}
#define signal t_win_signal

#endif
