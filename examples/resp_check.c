/* SPDX-License-Identifier: MIT */
/*
 * resp_check - checks examples/resp_server over loopback, byte for byte.
 *
 *   resp_check SERVER_BINARY            the protocol, the keyspace, bad input
 *   resp_check SERVER_BINARY --clients  redis-cli and redis-benchmark
 *
 * The first form starts the server (the backend comes from PROACT_BACKEND,
 * as for the test suite) three times: plain, with a short --partial-timeout
 * (for a bulk length that lies), and with --threads 2. It checks the reply
 * of every command and its errors, SET's options and expiry (lazy, and the
 * periodic sweep), 1,000 pipelined commands in one write, commands sent a
 * byte at a time, inline commands with quotes, binary-safe keys and values,
 * 1 MiB values, every kind of bad input (the error text, then end of stream),
 * that a claimed length allocates nothing before its bytes come, and 500
 * connections at once on two threads sharing one keyspace. Each server must
 * exit 0 on SIGTERM with a summary that counts exactly the protocol errors
 * sent and no other error.
 *
 * The second form runs the real clients against the server: redis-cli's
 * replies checked, and redis-benchmark (-t ping,set,get -n 2000 -c 20, -P 1
 * and -P 16) completing without an error. Exit 77 when they are not
 * installed.
 *
 * A cross-built server runs under the command in RESP_CHECK_EMULATOR.
 * Nothing here asserts a time: a wait is bounded only to turn a hang into a
 * failure, and expiry is checked as "gone after more than its time".
 * Exit 0 pass, 1 fail, 77 skip.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"

#define BIG          (1u << 20) /* the large value */
#define PIPELINED    1000
#define CONNS        500
#define CONN_ROUNDS  5
#define CLAIMS       16          /* connections claiming a large bulk */
#define CLAIM_SIZE   60000000    /* under the 64 MiB cap */
#define CLAIM_GROWTH (256 << 20) /* VmSize growth allowed for all claims */

static unsigned protocol_errors; /* sent on purpose, counted by the server */

/* ---- replies ------------------------------------------------------------ */

/* Prints @n bytes with C escapes, for a failure message. */
static char *escaped(const char *p, size_t n)
{
	static char out[4][512];
	static int which;
	char *o = out[which++ & 3];
	size_t k = 0;
	for (size_t i = 0; i < n && k < sizeof(out[0]) - 8; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c == '\r' || c == '\n')
			k += (size_t)sprintf(o + k, "\\%c", c == '\r' ? 'r' : 'n');
		else if (c < 32 || c > 126)
			k += (size_t)sprintf(o + k, "\\x%02x", c);
		else
			o[k++] = (char)c;
	}
	if (k >= sizeof(out[0]) - 8)
		k += (size_t)sprintf(o + k, "...");
	o[k] = 0;
	return o;
}

/* Reads exactly the bytes of @want and compares them. */
static void expect_bytes(int fd, const char *want, size_t n, const char *what)
{
	char *got = malloc(n ? n : 1);
	if (!got)
		ck_fail("out of memory");
	ck_read_all(fd, got, n, what);
	if (memcmp(got, want, n) != 0)
		ck_fail("%s: got '%s', want '%s'", escaped(what, strlen(what)), escaped(got, n),
		        escaped(want, n));
	free(got);
}

/* Sends @req and expects exactly @want back. */
static void exchange(int fd, const char *req, size_t reqlen, const char *want, size_t wantlen)
{
	ck_write_all(fd, req, reqlen, "client");
	expect_bytes(fd, want, wantlen, req);
}

#define EX(fd, req, want) exchange(fd, req, sizeof(req) - 1, want, sizeof(want) - 1)

/* Reads one reply line (through its \n) into @buf. */
static void read_line(int fd, char *buf, size_t len)
{
	size_t n = 0;
	while (n + 1 < len) {
		ck_read_all(fd, buf + n, 1, "reply line");
		if (buf[n++] == '\n')
			break;
	}
	buf[n] = 0;
}

/* Sends @req and returns the integer of the ":N" reply. */
static long long integer_reply(int fd, const char *req)
{
	char line[64];
	long long v;
	ck_write_all(fd, req, strlen(req), "client");
	read_line(fd, line, sizeof(line));
	if (sscanf(line, ":%lld\r\n", &v) != 1)
		ck_fail("%s: got '%s', want an integer", escaped(req, strlen(req)),
		        escaped(line, strlen(line)));
	return v;
}

/* A multibulk command from @argc arguments of given lengths. */
static size_t multibulk(char *out, int argc, const char *const *argv, const size_t *lens)
{
	size_t n = (size_t)sprintf(out, "*%d\r\n", argc);
	for (int i = 0; i < argc; i++) {
		n += (size_t)sprintf(out + n, "$%zu\r\n", lens[i]);
		memcpy(out + n, argv[i], lens[i]);
		n += lens[i];
		memcpy(out + n, "\r\n", 2);
		n += 2;
	}
	return n;
}

static size_t bulk(char *out, const char *data, size_t len)
{
	size_t n = (size_t)sprintf(out, "$%zu\r\n", len);
	memcpy(out + n, data, len);
	memcpy(out + n + len, "\r\n", 2);
	return n + len + 2;
}

static int nodelay_connect(int port)
{
	int fd = ck_connect_local(port);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

/* ---- commands ------------------------------------------------------------ */

static void check_basics(int fd)
{
	EX(fd, "PING\r\n", "+PONG\r\n");
	EX(fd, "*2\r\n$4\r\nPING\r\n$5\r\nhello\r\n", "$5\r\nhello\r\n");
	EX(fd, "ping a b\r\n", "-ERR wrong number of arguments for 'ping' command\r\n");
	EX(fd, "ECHO hi\r\n", "$2\r\nhi\r\n");
	EX(fd, "ECHO\r\n", "-ERR wrong number of arguments for 'echo' command\r\n");
	EX(fd, "FLUSHALL\r\n", "+OK\r\n");
	EX(fd, "SET k v\r\nGET k\r\nGET nokey\r\n", "+OK\r\n$1\r\nv\r\n$-1\r\n");
	EX(fd, "SET k\r\n", "-ERR wrong number of arguments for 'set' command\r\n");
	EX(fd, "GET\r\n", "-ERR wrong number of arguments for 'get' command\r\n");
	EX(fd, "MSET a 1 b 2 c 3\r\nMGET a b nokey c\r\n",
	   "+OK\r\n*4\r\n$1\r\n1\r\n$1\r\n2\r\n$-1\r\n$1\r\n3\r\n");
	EX(fd, "MSET a\r\nMSET a 1 b\r\nMGET\r\n",
	   "-ERR wrong number of arguments for 'mset' command\r\n"
	   "-ERR wrong number of arguments for 'mset' command\r\n"
	   "-ERR wrong number of arguments for 'mget' command\r\n");
	EX(fd, "EXISTS a a nokey b\r\nDEL a a nokey b\r\nEXISTS a b c\r\n", ":3\r\n:2\r\n:1\r\n");
	EX(fd, "DEL\r\nEXISTS\r\n",
	   "-ERR wrong number of arguments for 'del' command\r\n"
	   "-ERR wrong number of arguments for 'exists' command\r\n");
	EX(fd, "DBSIZE\r\nSTRLEN k\r\nSTRLEN nokey\r\n", ":2\r\n:1\r\n:0\r\n");
	EX(fd, "FOO a b\r\n", "-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \r\n");
	EX(fd, "*2\r\n$3\r\nfoo\r\n$3\r\na\nb\r\n",
	   "-ERR unknown command 'foo', with args beginning with: 'a b' \r\n");
	EX(fd, "SELECT 0\r\nSELECT 1\r\nSELECT x\r\n",
	   "+OK\r\n-ERR DB index is out of range\r\n-ERR value is not an integer or out of "
	   "range\r\n");
}

static void check_incr(int fd)
{
	EX(fd, "INCR n\r\nINCR n\r\nINCRBY n 10\r\nDECR n\r\nDECRBY n 5\r\nGET n\r\n",
	   ":1\r\n:2\r\n:12\r\n:11\r\n:6\r\n$1\r\n6\r\n");
	EX(fd, "INCR k\r\n", "-ERR value is not an integer or out of range\r\n");
	EX(fd, "SET m 01\r\nINCR m\r\nSET m -0\r\nINCR m\r\nSET m +1\r\nINCR m\r\n",
	   "+OK\r\n-ERR value is not an integer or out of range\r\n"
	   "+OK\r\n-ERR value is not an integer or out of range\r\n"
	   "+OK\r\n-ERR value is not an integer or out of range\r\n");
	EX(fd, "SET m \" 1\"\r\nINCR m\r\nSET m 111111111111111111111\r\nINCR m\r\n",
	   "+OK\r\n-ERR value is not an integer or out of range\r\n"
	   "+OK\r\n-ERR value is not an integer or out of range\r\n");
	EX(fd, "SET m 9223372036854775807\r\nINCR m\r\nSET m -9223372036854775808\r\nDECR m\r\n",
	   "+OK\r\n-ERR increment or decrement would overflow\r\n"
	   "+OK\r\n-ERR increment or decrement would overflow\r\n");
	EX(fd, "DECR m\r\nINCRBY m x\r\nDECRBY n -9223372036854775808\r\nINCR\r\n",
	   "-ERR increment or decrement would overflow\r\n"
	   "-ERR value is not an integer or out of range\r\n"
	   "-ERR decrement would overflow\r\n"
	   "-ERR wrong number of arguments for 'incr' command\r\n");
	EX(fd, "SET m -9223372036854775807\r\nDECR m\r\n", "+OK\r\n:-9223372036854775808\r\n");
}

static void check_set_options(int fd)
{
	EX(fd, "SET s v NX\r\nSET s w NX\r\nGET s\r\n", "+OK\r\n$-1\r\n$1\r\nv\r\n");
	EX(fd, "SET s2 v XX\r\nSET s w XX\r\nGET s\r\n", "$-1\r\n+OK\r\n$1\r\nw\r\n");
	EX(fd, "SET s x GET\r\nSET s3 x GET\r\nSET s y NX GET\r\n",
	   "$1\r\nw\r\n$-1\r\n$1\r\nx\r\n");
	EX(fd, "SET s v EX\r\nSET s v NX XX\r\nSET s v EX 1 PX 1\r\nSET s v FOO\r\n",
	   "-ERR syntax error\r\n-ERR syntax error\r\n-ERR syntax error\r\n-ERR syntax error\r\n");
	EX(fd, "SET s v PX 100 KEEPTTL\r\nSET s v EX abc\r\n",
	   "-ERR syntax error\r\n-ERR value is not an integer or out of range\r\n");
	EX(fd, "SET s v EX 0\r\nSET s v PX -1\r\nSET s v EX 9223372036854775\r\n",
	   "-ERR invalid expire time in 'set' command\r\n"
	   "-ERR invalid expire time in 'set' command\r\n"
	   "-ERR invalid expire time in 'set' command\r\n");
	EX(fd, "SET s v\r\nTTL s\r\nPTTL nokey\r\n", "+OK\r\n:-1\r\n:-2\r\n");
	EX(fd, "SET t v EX 1000\r\nSET t w KEEPTTL\r\nGET t\r\n", "+OK\r\n+OK\r\n$1\r\nw\r\n");
	long long ttl = integer_reply(fd, "TTL t\r\n");
	if (ttl < 1 || ttl > 1000)
		ck_fail("TTL after EX 1000 and KEEPTTL: %lld", ttl);
	EX(fd, "SET t v\r\nTTL t\r\n", "+OK\r\n:-1\r\n");
	EX(fd, "SET t v EXAT 1\r\nGET t\r\nSET t v PXAT 99999999999999\r\nGET t\r\n",
	   "+OK\r\n$-1\r\n+OK\r\n$1\r\nv\r\n");
}

/* What redis-cli and redis-benchmark ask on connect. */
static void check_client_setup(int fd)
{
	EX(fd, "COMMAND\r\nCOMMAND DOCS\r\nCOMMAND DOCS get\r\n", "*0\r\n*0\r\n*0\r\n");
	EX(fd, "CONFIG GET save\r\nCONFIG GET appendonly\r\n",
	   "*2\r\n$4\r\nsave\r\n$0\r\n\r\n*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n");
	EX(fd, "CONFIG GET nothing\r\nCONFIG FOO\r\nCONFIG\r\n",
	   "*0\r\n-ERR unknown subcommand 'FOO'. Try CONFIG HELP.\r\n"
	   "-ERR wrong number of arguments for 'config' command\r\n");
}

/* Waits until the sweep left @keep keys (the rest expire unread). */
static void wait_swept(int fd, long long keep)
{
	double end = ck_now() + 20;
	long long left;
	while ((left = integer_reply(fd, "DBSIZE\r\n")) > keep && ck_now() < end)
		ck_sleep(0.1);
	if (left != keep)
		ck_fail("the sweep left %lld keys, %lld of them expired", left, left - keep);
}

/* Lazy expiry, then the periodic sweep (keys nobody asks for again). */
static void check_expiry(int fd)
{
	EX(fd, "SET e v PX 100\r\n", "+OK\r\n");
	long long pttl = integer_reply(fd, "PTTL e\r\n");
	if (pttl > 100 || (pttl < 0 && pttl != -2))
		ck_fail("PTTL after PX 100: %lld", pttl);
	ck_sleep(0.3);
	EX(fd, "GET e\r\nEXISTS e\r\nTTL e\r\n", "$-1\r\n:0\r\n:-2\r\n");

	EX(fd, "FLUSHALL\r\nSET keep 1\r\n", "+OK\r\n+OK\r\n");
	char cmd[64];
	for (int i = 0; i < 200; i++) {
		int n = snprintf(cmd, sizeof(cmd), "SET x%d v PX 50\r\n", i);
		exchange(fd, cmd, (size_t)n, "+OK\r\n", 5);
	}
	wait_swept(fd, 1);
	printf("expiry: lazy and swept (200 keys with PX 50 gone unread)\n");
}

/* ---- pipelining, splitting, inline, binary ----------------------------- */

/* 999 commands (SET inline, GET multibulk, INCR) and a DEL, in one write. */
static void check_pipeline(int fd)
{
	size_t cap = PIPELINED * 64;
	char *req = malloc(cap), *want = malloc(cap);
	if (!req || !want)
		ck_fail("out of memory");
	size_t rn = (size_t)sprintf(req, "DEL pc\r\n"), wn = (size_t)sprintf(want, ":0\r\n");
	for (int i = 0; i < (PIPELINED - 1) / 3; i++) {
		char key[16], val[16];
		size_t kl = (size_t)sprintf(key, "p:%d", i), vl = (size_t)sprintf(val, "%d", i * 7);
		rn += (size_t)sprintf(req + rn, "SET %s %s\r\n", key, val);
		rn += multibulk(req + rn, 2, (const char *[]){"GET", key}, (size_t[]){3, kl});
		rn += (size_t)sprintf(req + rn, "INCR pc\r\n");
		wn += (size_t)sprintf(want + wn, "+OK\r\n");
		wn += bulk(want + wn, val, vl);
		wn += (size_t)sprintf(want + wn, ":%d\r\n", i + 1);
	}
	exchange(fd, req, rn, want, wn);
	printf("pipelining: %d commands in one write, every reply in order\n", PIPELINED);
	free(req);
	free(want);
}

/* Writes @req a byte at a time (TCP_NODELAY: a segment each, mostly a
   read each), then expects @want. */
static void dribble(int fd, const char *req, size_t n, const char *want, size_t wn)
{
	for (size_t i = 0; i < n; i++) {
		ck_write_all(fd, req + i, 1, "client");
		ck_sleep(0.0002);
	}
	expect_bytes(fd, want, wn, "a command sent byte by byte");
}

static void check_split(int fd)
{
	static const char bin[] = "a\0b\r\nc";
	char req[256], want[256];
	size_t rn = multibulk(req, 3, (const char *[]){"SET", "split", bin},
	                      (size_t[]){3, 5, sizeof(bin) - 1});
	rn += (size_t)sprintf(req + rn, "GET split\r\nECHO \"x y\"\r\n\n");
	rn += multibulk(req + rn, 1, (const char *[]){"PING"}, (size_t[]){4});
	size_t wn = (size_t)sprintf(want, "+OK\r\n");
	wn += bulk(want + wn, bin, sizeof(bin) - 1);
	wn += (size_t)sprintf(want + wn, "$3\r\nx y\r\n+PONG\r\n");
	dribble(fd, req, rn, want, wn);
	/* A pipeline cut at every position: the first part, then the rest. */
	for (size_t cut = 1; cut < rn; cut++) {
		ck_write_all(fd, req, cut, "client");
		ck_sleep(0.001);
		ck_write_all(fd, req + cut, rn - cut, "client");
		expect_bytes(fd, want, wn, "a pipeline in two writes");
	}
	printf("split: commands byte by byte and cut at each of %zu places\n", rn - 1);
}

static void check_inline(int fd)
{
	EX(fd, "SET \"a b\" 'c d'\r\nGET \"a b\"\r\n", "+OK\r\n$3\r\nc d\r\n");
	EX(fd, "ECHO \"\\x41\\n\\\"\"\r\nECHO 'it\\'s'\r\n", "$3\r\nA\n\"\r\n$4\r\nit's\r\n");
	EX(fd, "ECHO a\"b c\"\r\n", "$4\r\nab c\r\n");
	EX(fd, "\r\n\n   \r\nPING\nping\r\n  PING  \t\r\n", "+PONG\r\n+PONG\r\n+PONG\r\n");
	EX(fd, "*0\r\n*-1\r\nPING\r\n", "+PONG\r\n");
	EX(fd, "FOO a\rb\r\n",
	   "-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \r\n");
}

/* Keys and values with NUL, CR and LF inside, and every byte value. */
static void check_binary(int fd)
{
	char value[256 + 8], req[1024], want[1024];
	for (int i = 0; i < 256; i++)
		value[i] = (char)i;
	memcpy(value + 256, "\r\n\0\r\n$1\r", 8);
	static const char key[] = "k\0\r\n*1\r\n";
	size_t kl = sizeof(key) - 1;
	size_t rn = multibulk(req, 3, (const char *[]){"SET", key, value},
	                      (size_t[]){3, kl, sizeof(value)});
	rn += multibulk(req + rn, 2, (const char *[]){"GET", key}, (size_t[]){3, kl});
	rn += multibulk(req + rn, 2, (const char *[]){"STRLEN", key}, (size_t[]){6, kl});
	rn += multibulk(req + rn, 2, (const char *[]){"ECHO", value}, (size_t[]){4, sizeof(value)});
	size_t wn = (size_t)sprintf(want, "+OK\r\n");
	wn += bulk(want + wn, value, sizeof(value));
	wn += (size_t)sprintf(want + wn, ":%zu\r\n", sizeof(value));
	wn += bulk(want + wn, value, sizeof(value));
	exchange(fd, req, rn, want, wn);
}

static void check_large(int fd)
{
	size_t cap = 2 * BIG + 256;
	char *value = malloc(BIG), *req = malloc(cap), *want = malloc(cap);
	if (!value || !req || !want)
		ck_fail("out of memory");
	uint32_t x = 12345;
	for (size_t i = 0; i < BIG; i++) {
		x = x * 1103515245u + 12345u;
		value[i] = (char)(x >> 16);
	}
	size_t rn = multibulk(req, 3, (const char *[]){"SET", "big", value}, (size_t[]){3, 3, BIG});
	exchange(fd, req, rn, "+OK\r\n", 5);
	size_t wn = (size_t)sprintf(want, "*2\r\n");
	wn += bulk(want + wn, value, BIG);
	wn += bulk(want + wn, value, BIG);
	EX(fd, "STRLEN big\r\n", ":1048576\r\n");
	exchange(fd, "MGET big big\r\n", 14, want, wn);
	printf("large values: 1 MiB in, 2 MiB out, byte for byte\n");
	free(value);
	free(req);
	free(want);
}

/* ---- bad input ------------------------------------------------------------ */

/* On a fresh connection: @req draws @error, then the end of the stream. */
static void expect_close(int port, const char *req, size_t n, const char *error)
{
	int fd = nodelay_connect(port);
	ck_write_all(fd, req, n, "client");
	expect_bytes(fd, error, strlen(error), escaped(req, n < 40 ? n : 40));
	ck_expect_eof(fd, "after a protocol error");
	close(fd);
	protocol_errors++;
}

#define BAD(port, req, error) expect_close(port, req, sizeof(req) - 1, error)

static void check_bad_input(int port)
{
	BAD(port, "*1\r\n$-1\r\n", "-ERR Protocol error: invalid bulk length\r\n");
	BAD(port, "*1\r\n$1099511627776\r\n", "-ERR Protocol error: invalid bulk length\r\n");
	BAD(port, "*1\r\n$67108865\r\n", "-ERR Protocol error: invalid bulk length\r\n");
	BAD(port, "*1\r\n$abc\r\n", "-ERR Protocol error: invalid bulk length\r\n");
	BAD(port, "*1048577\r\n", "-ERR Protocol error: invalid multibulk length\r\n");
	BAD(port, "*abc\r\n", "-ERR Protocol error: invalid multibulk length\r\n");
	BAD(port, "*2\r\n*1\r\n$4\r\nPING\r\n", "-ERR Protocol error: expected '$', got '*'\r\n");
	BAD(port, "*2\r\n:1\r\n", "-ERR Protocol error: expected '$', got ':'\r\n");
	BAD(port, "*1\r\n$3\r\nabcde\r\n",
	    "-ERR Protocol error: bulk data not followed by CRLF\r\n");
	BAD(port, "SET \"a b\r\n", "-ERR Protocol error: unbalanced quotes in request\r\n");
	BAD(port, "ECHO \"a\"b\r\n", "-ERR Protocol error: unbalanced quotes in request\r\n");
	/* Pipelined commands before the error are answered; none after it. */
	BAD(port, "PING\r\n*x\r\nPING\r\n",
	    "+PONG\r\n-ERR Protocol error: invalid multibulk length\r\n");
	BAD(port, "QUIT\r\nPING\r\n", "+OK\r\n");
	protocol_errors--; /* QUIT is no error */

	size_t n = 70000;
	char *junk = malloc(n + 8);
	if (!junk)
		ck_fail("out of memory");
	memset(junk, 'x', n);
	expect_close(port, junk, n, "-ERR Protocol error: too big inline request\r\n");
	junk[0] = '*';
	memset(junk + 1, '1', n - 1);
	expect_close(port, junk, n, "-ERR Protocol error: too big mbulk count string\r\n");
	memcpy(junk, "*1\r\n$", 5);
	expect_close(port, junk, n, "-ERR Protocol error: too big bulk count string\r\n");
	free(junk);
	printf("bad input: %u protocol errors, each answered and closed\n", protocol_errors);
}

/* A length that lies: the rest never comes, the partial-command deadline
   ends the connection. */
static void check_lying_length(int port)
{
	BAD(port, "*2\r\n$4\r\nECHO\r\n$100\r\nabc",
	    "-ERR Protocol error: timeout waiting for the rest of the command\r\n");
	BAD(port, "GET ab", "-ERR Protocol error: timeout waiting for the rest of the command\r\n");
}

static long vm_size_kib(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	long kib = -1;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmSize: %ld", &kib) == 1)
			break;
	if (f)
		fclose(f);
	return kib;
}

/* CLAIMS connections each announce a 60 MB value and send 3 bytes of it:
   the server's address space must not grow by the claims. */
static void check_claims(struct ck_server *sv)
{
	long before = vm_size_kib(sv->pid);
	if (before < 0) {
		printf("claims: no /proc/PID/status here, skipped\n");
		return;
	}
	int fd[CLAIMS];
	char req[64];
	/* A PING first, in the same segment: its answer says the claim was read. */
	int n = snprintf(req, sizeof(req), "PING\r\n*3\r\n$3\r\nSET\r\n$1\r\nc\r\n$%d\r\nabc",
	                 CLAIM_SIZE);
	for (int i = 0; i < CLAIMS; i++) {
		fd[i] = nodelay_connect(sv->port);
		exchange(fd[i], req, (size_t)n, "+PONG\r\n", 7);
	}
	long after = vm_size_kib(sv->pid);
	printf("claims: %d connections announced %d MB each; server VmSize %ld -> %ld KiB\n",
	       CLAIMS, CLAIM_SIZE / 1000000, before, after);
	if (after - before > CLAIM_GROWTH / 1024)
		ck_fail("the server's address space grew by %ld KiB for claimed lengths",
		        after - before);
	for (int i = 0; i < CLAIMS; i++)
		close(fd[i]);
}

/* ---- many connections, two threads --------------------------------------- */

static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* CONNS connections at once, each round every one sets, gets and counts. */
static void check_many(int port)
{
	static int fd[CONNS];
	for (int i = 0; i < CONNS; i++)
		fd[i] = ck_connect_local(port);
	EX(fd[0], "DEL ctr\r\n", ":0\r\n");
	for (int round = 0; round < CONN_ROUNDS; round++) {
		char req[128], want[128];
		for (int i = 0; i < CONNS; i++) {
			int n = snprintf(req, sizeof(req),
			                 "SET c:%d r%d\r\nGET c:%d\r\nINCR ctr\r\n", i, round, i);
			ck_write_all(fd[i], req, (size_t)n, "client");
		}
		for (int i = 0; i < CONNS; i++) {
			int n = snprintf(want, sizeof(want), "+OK\r\n$%d\r\nr%d\r\n",
			                 round < 10 ? 2 : 3, round);
			expect_bytes(fd[i], want, (size_t)n, "SET and GET on many connections");
			char line[32];
			read_line(fd[i], line, sizeof(line));
			if (line[0] != ':')
				ck_fail("INCR on many connections: '%s'",
				        escaped(line, strlen(line)));
		}
	}
	long long total = integer_reply(fd[0], "INCRBY ctr 0\r\n");
	if (total != (long long)CONNS * CONN_ROUNDS)
		ck_fail("%d connections x %d INCR made %lld", CONNS, CONN_ROUNDS, total);
	/* Keys with a time to live set through both threads: whichever arms
	   the sweep, it runs on the first watcher and empties both's share. */
	for (int i = 0; i < CONNS; i++) {
		char req[64];
		int n = snprintf(req, sizeof(req), "SET t:%d v PX 50\r\n", i);
		exchange(fd[i], req, (size_t)n, "+OK\r\n", 5);
	}
	wait_swept(fd[0], CONNS + 1);
	for (int i = 0; i < CONNS; i++)
		close(fd[i]);
	printf("many: %d connections x %d rounds on 2 threads, one keyspace (%lld INCR), "
	       "%d keys with PX 50 swept\n",
	       CONNS, CONN_ROUNDS, total, CONNS);
}

/* ---- servers ------------------------------------------------------------- */

static void start(struct ck_server *sv, const char *bin, const char *extra, const char *value)
{
	char *argv[] = {(char *)bin, "--port", "0", (char *)extra, (char *)value, NULL};
	ck_server_start(sv, argv);
}

/* SIGTERM: exit 0, with @perr protocol errors and no other error counted. */
static void stop(struct ck_server *sv, unsigned perr)
{
	const char *line = ck_server_stop(sv, "resp_server: accepted");
	char want[64];
	snprintf(want, sizeof(want), " %u protocol errors, ", perr);
	printf("%.*s", (int)strcspn(line, "\n") + 1, line);
	if (!strstr(line, want) || !strstr(line, " 0 errors"))
		ck_fail("unexpected summary, wanted '%s' and ' 0 errors'", want);
}

static void check_protocol(const char *bin)
{
	struct ck_server a, b, t;
	start(&a, bin, NULL, NULL);
	int fd = nodelay_connect(a.port);
	check_basics(fd);
	check_incr(fd);
	check_set_options(fd);
	check_client_setup(fd);
	check_inline(fd);
	check_binary(fd);
	check_pipeline(fd);
	check_split(fd);
	check_large(fd);
	check_expiry(fd);
	close(fd);
	check_bad_input(a.port);
	check_claims(&a);
	stop(&a, protocol_errors);

	unsigned before = protocol_errors;
	start(&b, bin, "--partial-timeout", "200");
	check_lying_length(b.port);
	stop(&b, protocol_errors - before);

	start(&t, bin, "--threads", "2");
	check_many(t.port);
	stop(&t, 0);
}

/* ---- the real clients ---------------------------------------------------- */

/* Runs a client; fails unless it exits 0 within @limit_s. */
static char *client(char *const argv[], double limit_s)
{
	char *out = NULL;
	int status = ck_run(argv, &out, limit_s);
	if (status != 0)
		ck_fail("%s %s %s: status %d, output '%s'", argv[0], argv[1], argv[2], status,
		        out ? escaped(out, strlen(out)) : "");
	return out;
}

static void cli(const char *prog, const char *port, const char *a, const char *b, const char *want)
{
	char *argv[] = {(char *)prog, "-p", (char *)port, (char *)a, (char *)b, NULL};
	char *out = client(argv, 60);
	if (!strstr(out, want))
		ck_fail("redis-cli %s %s: '%s', want '%s'", a, b ? b : "",
		        escaped(out, strlen(out)), want);
	free(out);
}

static void bench(const char *prog, const char *port, const char *depth)
{
	char *argv[] = {(char *)prog,  "-p",   (char *)port, "-t", "ping,set,get",
	                "-n",          "2000", "-c",         "20", "-P",
	                (char *)depth, "-q",   NULL};
	char *out = client(argv, 120);
	static const char *const tests[] = {"PING_INLINE: ", "PING_MBULK: ", "SET: ", "GET: "};
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		const char *at = strstr(out, tests[i]);
		if (!at || !strstr(at, "requests per second"))
			ck_fail("redis-benchmark -P %s: no result for %s in '%s'", depth, tests[i],
			        escaped(out, strlen(out)));
	}
	if (strstr(out, "rror"))
		ck_fail("redis-benchmark -P %s reported an error: '%s'", depth,
		        escaped(out, strlen(out)));
	printf("redis-benchmark -t ping,set,get -n 2000 -c 20 -P %s: done, no error\n", depth);
	free(out);
}

static void check_clients(const char *bin)
{
	char cli_path[4096], bench_path[4096];
	if (!ck_find_program("redis-cli", cli_path, sizeof(cli_path)) ||
	    !ck_find_program("redis-benchmark", bench_path, sizeof(bench_path))) {
		printf("resp_check: SKIP: redis-cli or redis-benchmark not installed "
		       "(Debian: redis-tools)\n");
		exit(77);
	}
	struct ck_server sv;
	start(&sv, bin, NULL, NULL);
	char port[16];
	snprintf(port, sizeof(port), "%d", sv.port);
	cli(cli_path, port, "PING", NULL, "PONG\n");
	char *argv[] = {cli_path, "-p", port, "SET", "k", "v v", NULL};
	char *out = client(argv, 60);
	if (strcmp(out, "OK\n"))
		ck_fail("redis-cli SET k 'v v': '%s'", escaped(out, strlen(out)));
	free(out);
	cli(cli_path, port, "GET", "k", "v v\n");
	cli(cli_path, port, "INCR", "n", "1\n");
	cli(cli_path, port, "INCR", "n", "2\n");
	cli(cli_path, port, "INCR", "k", "ERR value is not an integer or out of range");
	printf("redis-cli: PING, SET, GET and INCR replies as expected\n");
	bench(bench_path, port, "1");
	bench(bench_path, port, "16");
	stop(&sv, 0);
}

int main(int argc, char **argv)
{
	ck_init("resp_check", "RESP_CHECK_EMULATOR");
	if (argc < 2 || (argc == 3 && strcmp(argv[2], "--clients")) || argc > 3)
		ck_fail("usage: resp_check SERVER_BINARY [--clients]");
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();
	ck_skip_if_unavailable();
	if (argc == 3)
		check_clients(argv[1]);
	else
		check_protocol(argv[1]);
	printf("resp_check: PASS\n");
	return 0;
}
