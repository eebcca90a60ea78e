/* SPDX-License-Identifier: MIT */
/* Winsock has it all (see sys/socket.h here). */
#include <sys/socket.h>
