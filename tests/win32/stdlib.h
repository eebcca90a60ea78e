/* SPDX-License-Identifier: MIT */
/* setenv and unsetenv over the C runtime's _putenv_s, which the library's
   getenv reads (an empty value removes the variable there). */
#ifndef PROACT_TEST_WIN32_STDLIB_H
#define PROACT_TEST_WIN32_STDLIB_H

#include_next <stdlib.h>

static inline int t_win_setenv(const char *name, const char *value, int overwrite)
{
	if (!overwrite && getenv(name))
		return 0;
	return _putenv_s(name, value) == 0 ? 0 : -1;
}

static inline int t_win_unsetenv(const char *name)
{
	return _putenv_s(name, "") == 0 ? 0 : -1;
}

#define setenv   t_win_setenv
#define unsetenv t_win_unsetenv

#endif
