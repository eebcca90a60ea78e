/* SPDX-License-Identifier: MIT */
/*
 * http_check - checks examples/http_server end to end over loopback sockets.
 *
 *   http_check SERVER_BINARY [--https]
 *
 * Starts three servers (the backend comes from PROACT_BACKEND, as for the
 * test suite) on a directory of test files made here: A with the defaults,
 * B with --threads 2, C with short header and keep-alive timeouts. Every
 * reply is compared byte for byte with what it must be (the Date header is
 * checked for its format and for being today, then taken as is):
 *
 *  1. keep-alive: several GETs and a HEAD on one connection;
 *  2. pipelining: 100 mixed requests in one write, then 300 in one write
 *     (more than one read and one gathered write of the server);
 *  3. requests split byte by byte, and at every offset in two writes;
 *  4. Connection: close, HTTP/1.0 with and without keep-alive;
 *  5. files: Content-Type, Content-Length, Last-Modified, bodies (one of
 *     1 MiB and more, sent in chunks), HEAD, %-escapes, 404 and 403 (".."
 *     segments, a directory, a FIFO, an unreadable file when not root);
 *  6. bad input, each answered and closed: 400, 413, 414, 431, 501, 505;
 *     random bytes and random header lines: a status line or nothing, then
 *     the end of the stream, and the server answers the next request;
 *  7. C: a header sent a byte every 100 ms gets 408 and a close; a silent
 *     new connection and an idle keep-alive one are closed;
 *  8. A and B: 500 connections at once, 5 requests each;
 *  9. curl, if installed: headers, bodies, HEAD, and two URLs on one
 *     connection; wrk, if installed: 2 s of "/" and 1 s of a file over 50
 *     connections (thousands of requests), no error and no status but 2xx;
 * 10. SIGTERM: every server exits 0 and reports no errors.
 *
 * With --https (skipped when openssl or curl is missing) it checks the
 * server's HTTPS mode instead, with a certificate made here by openssl:
 * A (one thread): curl --cacert fetches "/" twice on one connection, a
 * 1 MiB file (byte for byte), a small one and a 404; `openssl s_client`
 * sends pipelined requests in one go and every reply is compared byte for
 * byte; SIGTERM, exit 0, no errors. B (--threads 2): plain HTTP on the TLS
 * port is refused and closed, curl still gets "/", and wrk, if installed,
 * runs 1 s over TLS without an error.
 *
 * A cross-built server runs under the command in HTTP_CHECK_EMULATOR.
 * Exit 0 pass, 1 fail, 77 skip (backend not available, or with --https no
 * openssl or curl).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define HEAD_MAX    4096
#define BIG_SIZE    ((1 << 20) + 4321) /* a large file, not a multiple of anything */
#define MID_SIZE    20000              /* over the size the server reads itself */
#define MTIME       1000000000         /* the test files' modification time */
#define MTIME_TEXT  "Sun, 09 Sep 2001 01:46:40 GMT"
#define MANY_CONNS  500
#define MANY_ROUNDS 5
#define HELLO       "Hello, World!\n"
#define GET(path)   "GET " path " HTTP/1.1\r\nHost: x\r\n\r\n"
#define HEAD(path)  "HEAD " path " HTTP/1.1\r\nHost: x\r\n\r\n"

static char root[64];
static unsigned char big[BIG_SIZE];

/* ---- the test files ----------------------------------------------------- */

static void remove_root(void)
{
	static const char *const names[] = {
	    "hello.txt",  "page.html", "big.bin",  "mid.bin", "empty.txt", "sub/inner.txt", "fifo",
	    "secret.txt", "sub",       "cert.pem", "key.pem", "got.bin",   "pipeline.txt"};
	char path[128];
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", root, names[i]);
		if (unlink(path) < 0)
			rmdir(path);
	}
	rmdir(root);
}

static void make_file(const char *name, const void *data, size_t n, mode_t mode)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/%s", root, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		ck_fail("create %s: %s", path, strerror(errno));
	ck_write_all(fd, data, n, path);
	close(fd);
	struct timespec ts[2] = {{.tv_sec = MTIME}, {.tv_sec = MTIME}};
	if (utimensat(AT_FDCWD, path, ts, 0) < 0 || chmod(path, mode) < 0)
		ck_fail("%s: %s", path, strerror(errno));
}

static void make_root(void)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(root, sizeof(root), "%s/http_check.XXXXXX",
	         tmp && strlen(tmp) < 40 ? tmp : "/tmp");
	if (!mkdtemp(root))
		ck_fail("mkdtemp: %s", strerror(errno));
	ck_on_fail(remove_root);
	char path[128];
	snprintf(path, sizeof(path), "%s/sub", root);
	if (mkdir(path, 0755) < 0)
		ck_fail("mkdir: %s", strerror(errno));
	snprintf(path, sizeof(path), "%s/fifo", root);
	if (mkfifo(path, 0644) < 0)
		ck_fail("mkfifo: %s", strerror(errno));
	ck_fill_pattern(big, BIG_SIZE);
	make_file("hello.txt", "file body\n", 10, 0644);
	make_file("page.html", "<p>hi</p>\n", 10, 0644);
	make_file("big.bin", big, BIG_SIZE, 0644);
	make_file("mid.bin", big, MID_SIZE, 0644);
	make_file("empty.txt", "", 0, 0644);
	make_file("sub/inner.txt", "inner\n", 6, 0644);
	make_file("secret.txt", "secret\n", 7, 0);
}

/* ---- replies ------------------------------------------------------------ */

/* A buffered reader of one connection. */
struct client {
	int fd;
	char *buf;
	size_t len, cap;
	const char *who;
};

static void client_open(struct client *c, int port, const char *who)
{
	*c = (struct client){.fd = ck_connect_local(port), .who = who};
}

static void client_close(struct client *c)
{
	close(c->fd);
	free(c->buf);
	c->buf = NULL;
}

/* Reads until at least @want bytes are buffered. */
static void client_fill(struct client *c, size_t want)
{
	while (c->len < want) {
		if (c->cap - c->len < 65536) {
			c->cap = c->cap * 2 + 65536;
			if (!(c->buf = realloc(c->buf, c->cap)))
				ck_fail("out of memory");
		}
		ssize_t k = read(c->fd, c->buf + c->len, c->cap - c->len);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			ck_fail("%s: read: %s (after %zu bytes: '%.*s')", c->who,
			        k < 0 ? strerror(errno) : "early end of stream", c->len,
			        (int)(c->len < 300 ? c->len : 300), c->buf ? c->buf : "");
		c->len += (size_t)k;
	}
}

static void client_consume(struct client *c, size_t n)
{
	memmove(c->buf, c->buf + n, c->len - n);
	c->len -= n;
}

static void client_send(struct client *c, const void *p, size_t n)
{
	ck_write_all(c->fd, p, n, c->who);
}

static void client_expect_eof(struct client *c)
{
	if (c->len)
		ck_fail("%s: %zu bytes more than expected: '%.*s'", c->who, c->len,
		        (int)(c->len < 200 ? c->len : 200), c->buf);
	ck_expect_eof(c->fd, c->who);
}

static const char *reason(int status)
{
	static const struct {
		int status;
		const char *text;
	} r[] = {{200, "OK"},
	         {400, "Bad Request"},
	         {403, "Forbidden"},
	         {404, "Not Found"},
	         {408, "Request Timeout"},
	         {413, "Content Too Large"},
	         {414, "URI Too Long"},
	         {431, "Request Header Fields Too Large"},
	         {501, "Not Implemented"},
	         {505, "HTTP Version Not Supported"}};
	for (size_t i = 0; i < sizeof(r) / sizeof(r[0]); i++)
		if (r[i].status == status)
			return r[i].text;
	return "?";
}

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static long days_from_civil(long y, unsigned m, unsigned d)
{
	y -= m <= 2;
	long era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (long)doe - 719468;
}

/* "Sun, 06 Nov 1994 08:49:37 GMT", naming the right weekday, within a
   day of now (the server's clock is this machine's). */
static bool date_ok(const char *d)
{
	static const char days[] = "ThuFriSatSunMonTueWed",
	                  months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	char wd[4], mon[4];
	unsigned dd, yy, hh, mi, ss;
	int n = 0;
	if (strlen(d) != 29 ||
	    sscanf(d, "%3s, %2u %3s %4u %2u:%2u:%2u GMT%n", wd, &dd, mon, &yy, &hh, &mi, &ss, &n) !=
	        7 ||
	    n != 29)
		return false;
	const char *m = strstr(months, mon);
	if (!m || (m - months) % 3 || dd < 1 || dd > 31 || hh > 23 || mi > 59 || ss > 60)
		return false;
	long day = days_from_civil(yy, (unsigned)((m - months) / 3 + 1), dd);
	long t = day * 86400 + hh * 3600 + mi * 60 + ss;
	return !memcmp(wd, days + 3 * (day % 7), 3) && labs(t - (long)time(NULL)) < 86400;
}

/* What a reply must be. type NULL: text/plain. modified: a file's. */
struct want {
	int status;
	const char *type, *modified;
	const void *body;
	size_t body_len;
	bool close, head; /* Connection: close; no body (HEAD) */
};

/* The header block @w calls for, with @date. */
static size_t format_head(char *out, const struct want *w, const char *date)
{
	char modified[64] = "";
	if (w->modified)
		snprintf(modified, sizeof(modified), "Last-Modified: %s\r\n", w->modified);
	return (size_t)snprintf(out, HEAD_MAX,
	                        "HTTP/1.1 %d %s\r\nServer: proact\r\nDate: %s\r\nContent-Type: "
	                        "%s\r\nContent-Length: %zu\r\n%sConnection: %s\r\n\r\n",
	                        w->status, reason(w->status), date,
	                        w->type ? w->type : "text/plain", w->body_len, modified,
	                        w->close ? "close" : "keep-alive");
}

/* Reads one reply and compares it with @w, byte for byte. */
static void expect_reply(struct client *c, const struct want *w)
{
	size_t end = 0;
	for (size_t from = 0; !end;) {
		client_fill(c, from + 1);
		char *p = memmem(c->buf + (from > 3 ? from - 3 : 0),
		                 c->len - (from > 3 ? from - 3 : 0), "\r\n\r\n", 4);
		if (p)
			end = (size_t)(p + 4 - c->buf);
		else if (c->len > HEAD_MAX)
			ck_fail("%s: no end of headers in %zu bytes", c->who, c->len);
		from = c->len;
	}
	char date[64] = "", *d = memmem(c->buf, end, "\r\nDate: ", 8);
	if (d)
		sscanf(d + 8, "%63[^\r]", date);
	if (!date_ok(date))
		ck_fail("%s: bad Date '%s' in '%.*s'", c->who, date, (int)end, c->buf);
	char head[HEAD_MAX];
	size_t n = format_head(head, w, date);
	if (n != end || memcmp(head, c->buf, n))
		ck_fail("%s: reply\n%.*s\nwanted\n%s", c->who, (int)end, c->buf, head);
	size_t body = w->head ? 0 : w->body_len;
	client_fill(c, end + body);
	if (memcmp(c->buf + end, w->body, body))
		ck_fail("%s: the body of the %d reply differs", c->who, w->status);
	client_consume(c, end + body);
}

static const struct want hello = {.status = 200, .body = HELLO, .body_len = sizeof(HELLO) - 1};

static void expect_status(struct client *c, int status, bool close, bool head)
{
	char body[64];
	int n = snprintf(body, sizeof(body), "%d %s\n", status, reason(status));
	expect_reply(c, &(struct want){.status = status,
	                               .body = body,
	                               .body_len = (size_t)n,
	                               .close = close,
	                               .head = head});
}

static struct want file(const char *type, const void *body, size_t len)
{
	return (struct want){
	    .status = 200, .type = type, .modified = MTIME_TEXT, .body = body, .body_len = len};
}

static void expect_file(struct client *c, const char *type, const void *body, size_t len)
{
	struct want w = file(type, body, len);
	expect_reply(c, &w);
}

/* ---- 1..4: keep-alive, pipelining, splits, close ------------------------ */

static void check_keepalive(int port)
{
	struct client c;
	client_open(&c, port, "keep-alive");
	for (int i = 0; i < 5; i++) {
		client_send(&c, GET("/"), strlen(GET("/")));
		expect_reply(&c, &hello);
	}
	/* HEAD: the same headers, no body: the next reply follows at once. */
	client_send(&c, HEAD("/") GET("/?q=1"), strlen(HEAD("/") GET("/?q=1")));
	struct want h = hello;
	h.head = true;
	expect_reply(&c, &h);
	expect_reply(&c, &hello);
	client_close(&c);
	printf("keep-alive: 7 requests on one connection, HEAD without a body\n");
}

/* @n requests in one write; every 4th a HEAD, every 5th a file, every 7th a 404. */
static void check_pipeline(int port, int n)
{
	static char reqs[64 * 1024];
	size_t len = 0;
	for (int i = 0; i < n; i++) {
		const char *r = i % 7 == 6   ? GET("/missing")
		                : i % 5 == 4 ? GET("/hello.txt")
		                : i % 4 == 3 ? HEAD("/")
		                             : GET("/");
		memcpy(reqs + len, r, strlen(r));
		len += strlen(r);
	}
	struct client c;
	client_open(&c, port, "pipeline");
	client_send(&c, reqs, len);
	struct want h = hello, f = file("text/plain", "file body\n", 10);
	h.head = true;
	for (int i = 0; i < n; i++) {
		if (i % 7 == 6)
			expect_status(&c, 404, false, false);
		else
			expect_reply(&c, i % 5 == 4 ? &f : i % 4 == 3 ? &h : &hello);
	}
	client_send(&c, GET("/"), strlen(GET("/")));
	expect_reply(&c, &hello);
	client_close(&c);
	printf("pipelining: %d requests (%zu bytes) in one write, answered in order\n", n, len);
}

static void check_split(int port)
{
	static const char two[] = "GET /hello.txt HTTP/1.1\r\nHost: x\r\nX-A: b\r\n\r\n" GET("/");
	struct client c;
	client_open(&c, port, "split");
	struct want f = file("text/plain", "file body\n", 10);
	for (size_t i = 0; i + 1 < sizeof(two); i++) { /* byte by byte */
		client_send(&c, two + i, 1);
		ck_sleep(0.001);
	}
	expect_reply(&c, &f);
	expect_reply(&c, &hello);
	for (size_t at = 1; at + 1 < sizeof(two); at++) { /* in two writes, at every offset */
		client_send(&c, two, at);
		ck_sleep(0.002);
		client_send(&c, two + at, sizeof(two) - 1 - at);
		expect_reply(&c, &f);
		expect_reply(&c, &hello);
	}
	client_close(&c);
	printf("split: two requests byte by byte, and cut at each of %zu offsets\n",
	       sizeof(two) - 2);
}

static void check_close(int port)
{
	struct client c;
	struct want last = hello;
	last.close = true;
	static const char close_then_more[] =
	    "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" GET("/");
	client_open(&c, port, "Connection: close");
	client_send(&c, close_then_more, sizeof(close_then_more) - 1);
	expect_reply(&c, &last); /* and nothing for the request after it */
	client_expect_eof(&c);
	client_close(&c);

	static const char http10[] = "GET / HTTP/1.0\r\n\r\n";
	client_open(&c, port, "HTTP/1.0");
	client_send(&c, http10, sizeof(http10) - 1);
	expect_reply(&c, &last);
	client_expect_eof(&c);
	client_close(&c);

	static const char http10ka[] = "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
	client_open(&c, port, "HTTP/1.0 keep-alive");
	for (int i = 0; i < 2; i++) {
		client_send(&c, http10ka, sizeof(http10ka) - 1);
		expect_reply(&c, &hello);
	}
	client_close(&c);
	printf("close: Connection: close and HTTP/1.0 end the connection; HTTP/1.0 keep-alive does "
	       "not\n");
}

/* ---- 5. files ----------------------------------------------------------- */

static void get(struct client *c, const char *path, bool head)
{
	char req[256];
	int n = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: x\r\n\r\n",
	                 head ? "HEAD" : "GET", path);
	client_send(c, req, (size_t)n);
}

static void check_files(int port)
{
	struct client c;
	client_open(&c, port, "files");
	get(&c, "/hello.txt", false);
	expect_file(&c, "text/plain", "file body\n", 10);
	get(&c, "/page.html", false);
	expect_file(&c, "text/html", "<p>hi</p>\n", 10);
	get(&c, "/empty.txt", false);
	expect_file(&c, "text/plain", "", 0);
	get(&c, "/sub/inner.txt?v=2", false);
	expect_file(&c, "text/plain", "inner\n", 6);
	get(&c, "/%68ello%2Etxt", false);
	expect_file(&c, "text/plain", "file body\n", 10);
	struct want b = file("application/octet-stream", big, BIG_SIZE);
	get(&c, "/big.bin", false);
	get(&c, "/big.bin", true); /* pipelined behind the chunks */
	get(&c, "/", false);
	expect_reply(&c, &b);
	b.head = true;
	expect_reply(&c, &b);
	expect_reply(&c, &hello);

	static const char *const forbidden[] = {"/../etc/passwd",
	                                        "/sub/../hello.txt",
	                                        "/%2e%2e/hello.txt",
	                                        "/sub/%2E%2E",
	                                        "/sub",
	                                        "/sub/",
	                                        "/fifo"};
	for (size_t i = 0; i < sizeof(forbidden) / sizeof(forbidden[0]); i++) {
		get(&c, forbidden[i], false);
		expect_status(&c, 403, false, false);
	}
	get(&c, "/missing.txt", false);
	expect_status(&c, 404, false, false);
	get(&c, "/sub/missing/x", true);
	expect_status(&c, 404, false, true);
	get(&c, "/hello.txt/x", false);
	expect_status(&c, 404, false, false);
	if (geteuid() != 0) { /* root reads anything */
		get(&c, "/secret.txt", false);
		expect_status(&c, 403, false, false);
	}
	get(&c, "/", false);
	expect_reply(&c, &hello);
	client_close(&c);
	/* Clients that leave before or during file bodies. One that closes
	   before its replies came has the server's socket take the reset in
	   CLOSE_WAIT, after which a send fails with EPIPE, and sendfile(2)
	   has no MSG_NOSIGNAL: SIGPIPE. The server goes on. */
	for (int i = 0; i < 200; i++) {
		client_open(&c, port, "aborted download");
		for (int k = 0; k < 4; k++)
			get(&c, i % 4 < 2 ? "/mid.bin" : "/big.bin", false);
		if (i % 2)
			client_fill(&c, 1000);
		client_close(&c);
	}
	client_open(&c, port, "after aborted downloads");
	get(&c, "/", false);
	expect_reply(&c, &hello);
	client_close(&c);
	printf("files: types, lengths, Last-Modified, a %d-byte body; 403 for .., a directory, a "
	       "FIFO%s; 404; the connection kept; 200 downloads cut short\n",
	       BIG_SIZE, geteuid() != 0 ? ", an unreadable file" : "");
}

/* ---- 6. bad input ------------------------------------------------------- */

struct bad {
	const char *what;
	const char *req;
	int status;
	bool head;
};

static void check_bad_one(int port, const char *what, const void *req, size_t len, int status,
                          bool head)
{
	struct client c;
	client_open(&c, port, what);
	client_send(&c, req, len);
	expect_status(&c, status, true, head);
	client_expect_eof(&c);
	client_close(&c);
}

static void check_bad(int port)
{
	static const struct bad bad[] = {
	    {"garbage", "GARBAGE\r\n\r\n", 400, false},
	    {"no Host", "GET / HTTP/1.1\r\n\r\n", 400, false},
	    {"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, false},
	    {"folded header", "GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400, false},
	    {"space before colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400, false},
	    {"bad length", "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n", 400, false},
	    {"absolute form", "GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n", 400, false},
	    {"bad escape", "GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400, false},
	    {"NUL escape", "GET /a%00b HTTP/1.1\r\nHost: x\r\n\r\n", 400, false},
	    {"control in target", "GET /a\x01 HTTP/1.1\r\nHost: x\r\n\r\n", 400, false},
	    {"two spaces", "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400, false},
	    {"no version", "GET /\r\n\r\n", 400, false},
	    {"body", "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 413, false},
	    {"chunked body",
	     "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 413,
	     false},
	    {"HEAD with body", "HEAD / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx", 413,
	     true},
	    {"unknown method", "BREW / HTTP/1.1\r\nHost: x\r\n\r\n", 501, false},
	    {"POST", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", 501, false},
	    {"HTTP/2.0", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, false},
	    {"HTTP/1.2", "GET / HTTP/1.2\r\nHost: x\r\n\r\n", 505, false},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		check_bad_one(port, bad[i].what, bad[i].req, strlen(bad[i].req), bad[i].status,
		              bad[i].head);

	/* Over 8 KiB: a header block (431), a request line (414). */
	static char big_req[12000];
	int n = snprintf(big_req, sizeof(big_req),
	                 "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: %09000d\r\n\r\n", 0);
	check_bad_one(port, "header over 8 KiB", big_req, (size_t)n, 431, false);
	n = snprintf(big_req, sizeof(big_req), "GET /%09000d HTTP/1.1\r\nHost: x\r\n\r\n", 0);
	check_bad_one(port, "request line over 8 KiB", big_req, (size_t)n, 414, false);
	/* A block of exactly 8 KiB is taken; one byte more is not. */
	static const char pad_fmt[] = "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: %0*d\r\n\r\n";
	n = snprintf(big_req, sizeof(big_req), pad_fmt, 8192 - 36, 0);
	struct client c;
	client_open(&c, port, "header block of 8 KiB");
	client_send(&c, big_req, (size_t)n);
	expect_reply(&c, &hello);
	client_close(&c);
	n = snprintf(big_req, sizeof(big_req), pad_fmt, 8192 - 35, 0);
	check_bad_one(port, "header block of 8 KiB + 1", big_req, (size_t)n, 431, false);

	/* A good request, then a bad one behind it. */
	static const char good_bad[] = GET("/") "NOT HTTP\r\n\r\n";
	client_open(&c, port, "good then bad");
	client_send(&c, good_bad, sizeof(good_bad) - 1);
	expect_reply(&c, &hello);
	expect_status(&c, 400, true, false);
	client_expect_eof(&c);
	client_close(&c);
	printf("bad input: %zu kinds answered 400/413/414/431/501/505 and closed; a header "
	       "block of exactly 8 KiB taken\n",
	       sizeof(bad) / sizeof(bad[0]) + 4);
}

/* Random bytes, and requests with random header lines: each connection gets
   a reply starting with a status line, or none, and then the end of the
   stream; the server stays up and answers the next good request. */
static void check_junk(int port)
{
	static const char alphabet[] = "GET /HTP:1.\r\n\t \x00\x7f\xff"
	                               "aZ%2e-";
	uint64_t x = 0x2545f4914f6cdd1dull;
	char buf[4096];
	for (int i = 0; i < 40; i++) {
		size_t n = 0;
		if (i % 2)
			n = (size_t)snprintf(buf, sizeof(buf), "GET /x HTTP/1.1\r\nHost: y\r\n");
		size_t len = n + (x >> 40) % (sizeof(buf) - n);
		for (; n < len; n++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			buf[n] =
			    i % 4 == 1 ? alphabet[x % (sizeof(alphabet) - 1)] : (char)(x >> 24);
		}
		struct client c;
		client_open(&c, port, "junk");
		if (write(c.fd, buf, len) < 0 && errno != EPIPE && errno != ECONNRESET)
			ck_fail("junk: write: %s", strerror(errno));
		shutdown(c.fd, SHUT_WR);
		char reply[16];
		ssize_t k = read(c.fd, reply, sizeof(reply));
		if (k > 0 && (k < 9 || memcmp(reply, "HTTP/1.1 ", 9)))
			ck_fail("junk %d: a reply that is no status line: '%.*s'", i, (int)k,
			        reply);
		while (k > 0)
			k = read(c.fd, buf, sizeof(buf));
		if (k < 0 && errno != ECONNRESET)
			ck_fail("junk %d: read: %s", i, strerror(errno));
		client_close(&c);
	}
	struct client c;
	client_open(&c, port, "after junk");
	client_send(&c, GET("/"), strlen(GET("/")));
	expect_reply(&c, &hello);
	client_close(&c);
	printf("junk: 40 connections of random bytes and random headers, then a good request\n");
}

/* ---- 7. timeouts (server C) --------------------------------------------- */

static void check_timeouts(int port)
{
	/* A byte every 100 ms never finishes the header block: 408. */
	struct client c;
	client_open(&c, port, "slow header");
	static const char start[] = "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ";
	client_send(&c, start, sizeof(start) - 1);
	int bytes = 0;
	for (;; bytes++) {
		struct pollfd p = {.fd = c.fd, .events = POLLIN};
		if (poll(&p, 1, 100) == 1)
			break;
		if (bytes > CK_IO_TIMEOUT_S * 10)
			ck_fail("slow header: no reply after %d bytes", bytes);
		if (write(c.fd, "a", 1) != 1)
			break; /* closed meanwhile: the reply is there to read */
	}
	expect_status(&c, 408, true, false);
	client_expect_eof(&c);
	client_close(&c);

	client_open(&c, port, "silent connection");
	client_expect_eof(&c);
	client_close(&c);

	client_open(&c, port, "idle keep-alive");
	client_send(&c, GET("/"), strlen(GET("/")));
	expect_reply(&c, &hello);
	client_expect_eof(&c);
	client_close(&c);
	printf("timeouts: 408 after %d slow bytes; a silent and an idle connection closed\n",
	       bytes);
}

/* ---- 8. many connections ------------------------------------------------ */

struct many {
	int fd, done;
	size_t got;
	char buf[256];
};

static void many_read(struct many *m, size_t want, int *finished)
{
	ssize_t k = read(m->fd, m->buf + m->got, want - m->got);
	if (k < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (k <= 0)
		ck_fail("many: read: %s", k ? strerror(errno) : "end of stream");
	if ((m->got += (size_t)k) < want)
		return;
	struct client c = {.fd = -1, .buf = m->buf, .len = m->got, .who = "many"};
	expect_reply(&c, &hello); /* all buffered: no read */
	m->got = 0;
	if (++m->done < MANY_ROUNDS) {
		ck_write_all(m->fd, GET("/"), strlen(GET("/")), "many");
	} else {
		close(m->fd);
		m->fd = -1;
		(*finished)++;
	}
}

static void check_many(int port, const char *name)
{
	char head[HEAD_MAX];
	size_t want = format_head(head, &hello, MTIME_TEXT) + hello.body_len;
	struct many *m = calloc(MANY_CONNS, sizeof(*m));
	struct pollfd *p = calloc(MANY_CONNS, sizeof(*p));
	if (!m || !p)
		ck_fail("out of memory");
	for (int i = 0; i < MANY_CONNS; i++) {
		m[i].fd = ck_connect_local(port);
		ck_write_all(m[i].fd, GET("/"), strlen(GET("/")), "many");
		fcntl(m[i].fd, F_SETFL, O_NONBLOCK);
	}
	int finished = 0;
	double end = ck_now() + 60;
	while (finished < MANY_CONNS) {
		for (int i = 0; i < MANY_CONNS; i++)
			p[i] = (struct pollfd){.fd = m[i].fd, .events = POLLIN};
		if (ck_now() > end || poll(p, MANY_CONNS, 1000) < 0)
			ck_fail("many: %d of %d connections done after 60 s", finished, MANY_CONNS);
		for (int i = 0; i < MANY_CONNS; i++)
			if (p[i].revents)
				many_read(&m[i], want, &finished);
	}
	free(m);
	free(p);
	printf("many (%s): %d connections at once, %d requests each\n", name, MANY_CONNS,
	       MANY_ROUNDS);
}

/* ---- 9. curl and wrk ---------------------------------------------------- */

static char *run_or_fail(char *const argv[], const char *what)
{
	char *out;
	int st = ck_run(argv, &out, 60);
	if (st != 0)
		ck_fail("%s: status %#x, output:\n%s", what, st, out);
	return out;
}

static void expect_text(const char *out, const char *text, const char *what)
{
	if (!strstr(out, text))
		ck_fail("%s: no '%s' in:\n%s", what, text, out);
}

static void check_curl(int port)
{
	char curl[256], u1[64], u2[64];
	if (!ck_find_program("curl", curl, sizeof(curl))) {
		printf("curl: not installed, skipped (scripts/deps.sh installs it)\n");
		return;
	}
	snprintf(u1, sizeof(u1), "http://127.0.0.1:%d/", port);
	snprintf(u2, sizeof(u2), "http://127.0.0.1:%d/hello.txt", port);
	char *get_[] = {curl, "-sS", "--max-time", "20", "-D", "-", u1, NULL};
	char *out = run_or_fail(get_, "curl GET /");
	expect_text(out, "HTTP/1.1 200 OK\r\n", "curl GET /");
	expect_text(out, "Content-Length: 14\r\n", "curl GET /");
	expect_text(out, "\r\n\r\n" HELLO, "curl GET /");
	free(out);
	char *head[] = {curl, "-sS", "--max-time", "20", "-I", u2, NULL};
	out = run_or_fail(head, "curl -I");
	expect_text(out, "Last-Modified: " MTIME_TEXT "\r\n", "curl -I");
	expect_text(out, "Content-Length: 10\r\n", "curl -I");
	free(out);
	/* Two URLs on one connection: curl connects once. */
	char *two[] = {curl,
	               "-sS",
	               "--http1.1",
	               "--max-time",
	               "20",
	               "-w",
	               "%{num_connects} %{http_code} %{size_download}\n",
	               "-o",
	               "/dev/null",
	               "-o",
	               "/dev/null",
	               u1,
	               u2,
	               NULL};
	out = run_or_fail(two, "curl keep-alive");
	if (strcmp(out, "1 200 14\n0 200 10\n"))
		ck_fail("curl keep-alive: '%s', wanted one connect for two URLs", out);
	free(out);
	printf("curl: GET, HEAD, and two URLs on one connection\n");
}

/* wrk for @secs over 50 connections: it counts the replies that are not
   2xx or 3xx and the socket errors, and prints each only when not zero.
   (It runs its whole duration even when told to stop sooner, so the
   length is time, not a count; any count above zero passes.) */
static void wrk_run(const char *wrk, const char *scheme, int port, const char *path,
                    const char *secs)
{
	char url[128], what[160];
	snprintf(url, sizeof(url), "%s://127.0.0.1:%d%s", scheme, port, path);
	snprintf(what, sizeof(what), "wrk %s", path);
	char *argv[] = {(char *)wrk, "-t1", "-c50", "-d", (char *)secs, url, NULL};
	char *out = run_or_fail(argv, what);
	unsigned long long done = 0;
	const char *line = strstr(out, " requests in ");
	while (line && line > out && line[-1] >= '0' && line[-1] <= '9')
		line--;
	if (!line || sscanf(line, "%llu", &done) != 1 || done == 0)
		ck_fail("%s: no requests:\n%s", what, out);
	if (strstr(out, "Socket errors") || strstr(out, "Non-2xx"))
		ck_fail("%s: errors:\n%s", what, out);
	free(out);
	printf("wrk: %llu requests of %s in %s over 50 connections, all 200, no socket error\n",
	       done, path, secs);
}

static void check_wrk(int port)
{
	char wrk[256];
	if (!ck_find_program("wrk", wrk, sizeof(wrk))) {
		printf("wrk: not installed, skipped (scripts/deps.sh installs it)\n");
		return;
	}
	wrk_run(wrk, "http", port, "/", "2s");
	wrk_run(wrk, "http", port, "/hello.txt", "1s");
}

/* ---- main --------------------------------------------------------------- */

static void start(struct ck_server *sv, const char *bin, const char *extra[])
{
	char *argv[16] = {(char *)bin, "--port", "0", "--root", root};
	int n = 5;
	for (int i = 0; extra && extra[i]; i++)
		argv[n++] = (char *)extra[i];
	argv[n] = NULL;
	ck_server_start(sv, argv);
}

/* Stops @sv; with @clean its summary must count no errors. */
static void stop(struct ck_server *sv, const char *name, bool clean)
{
	const char *line = ck_server_stop(sv, "http_server: accepted");
	printf("%s: %s", name, line);
	if (clean && !strstr(line, " 0 errors"))
		ck_fail("server %s reported errors", name);
}

/* ---- HTTPS -------------------------------------------------------------- */

static char openssl[256], curl[256], cert[128], key[128];

/* A self-signed certificate for 127.0.0.1 and localhost, made now. */
static void make_cert(void)
{
	snprintf(cert, sizeof(cert), "%s/cert.pem", root);
	snprintf(key, sizeof(key), "%s/key.pem", root);
	char *argv[] = {openssl,
	                "req",
	                "-x509",
	                "-newkey",
	                "ec",
	                "-pkeyopt",
	                "ec_paramgen_curve:P-256",
	                "-nodes",
	                "-days",
	                "2",
	                "-subj",
	                "/CN=localhost",
	                "-addext",
	                "subjectAltName=DNS:localhost,IP:127.0.0.1",
	                "-keyout",
	                key,
	                "-out",
	                cert,
	                NULL};
	free(run_or_fail(argv, "openssl req"));
}

/* curl --cacert with @extra arguments (NULL-terminated), its output. */
static char *curl_tls(const char *what, const char *const extra[])
{
	char *argv[24] = {curl, "-sS", "--max-time", "20", "--cacert", cert};
	int n = 6;
	for (int i = 0; extra[i] && n < 23; i++)
		argv[n++] = (char *)extra[i];
	argv[n] = NULL;
	return run_or_fail(argv, what);
}

static void check_https_curl(int port)
{
	char u1[64], u2[64], u3[64], u4[64], got[128];
	snprintf(u1, sizeof(u1), "https://127.0.0.1:%d/", port);
	snprintf(u2, sizeof(u2), "https://127.0.0.1:%d/big.bin", port);
	snprintf(u3, sizeof(u3), "https://127.0.0.1:%d/hello.txt", port);
	snprintf(u4, sizeof(u4), "https://127.0.0.1:%d/nope.txt", port);
	snprintf(got, sizeof(got), "%s/got.bin", root);
	/* "/" twice on one connection: curl connects once. */
	const char *fmt = "%{num_connects} %{http_code} %{size_download}\n";
	char *out = curl_tls("curl https keep-alive",
	                     (const char *[]){"--http1.1", "-w", fmt, "-o", "/dev/null", "-o",
	                                      "/dev/null", u1, u1, NULL});
	if (strcmp(out, "1 200 14\n0 200 14\n"))
		ck_fail("curl https keep-alive: '%s', wanted one connect for two URLs", out);
	free(out);
	out = curl_tls("curl https GET /", (const char *[]){"-D", "-", u1, NULL});
	expect_text(out, "HTTP/1.1 200 OK\r\n", "curl https GET /");
	expect_text(out, "\r\n\r\n" HELLO, "curl https GET /");
	free(out);
	/* A file in pieces over TLS, then a small one, then a 404. */
	out = curl_tls("curl https big.bin", (const char *[]){"-o", got, u2, NULL});
	free(out);
	static unsigned char back[BIG_SIZE + 1];
	int fd = open(got, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, back, sizeof(back));
	if (fd >= 0)
		close(fd);
	if (n != BIG_SIZE || memcmp(back, big, BIG_SIZE))
		ck_fail("curl https big.bin: %zd bytes, or not the file's", n);
	out = curl_tls("curl https hello.txt", (const char *[]){u3, NULL});
	if (strcmp(out, "file body\n"))
		ck_fail("curl https hello.txt: '%s'", out);
	free(out);
	out = curl_tls("curl https 404", (const char *[]){"-w", "%{http_code}", u4, NULL});
	if (strcmp(out, "404 Not Found\n404"))
		ck_fail("curl https 404: '%s'", out);
	free(out);
	printf("https curl: \"/\" twice on one connection, a 1 MiB file, a small one, a 404\n");
}

/* Pipelined requests in one go through openssl s_client; the replies
   compared byte for byte. */
static void check_https_pipeline(int port)
{
	static const char reqs[] = GET("/") GET("/hello.txt") HEAD("/page.html") GET("/nope")
	    GET("/mid.bin") "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	char in[128], got[128], cmd[768];
	snprintf(in, sizeof(in), "%s/pipeline.txt", root);
	snprintf(got, sizeof(got), "%s/got.bin", root);
	make_file("pipeline.txt", reqs, sizeof(reqs) - 1, 0644);
	/* s_client -quiet sends its stdin, then writes the replies to the file
	   until the server closes; its messages go to /dev/null. */
	snprintf(cmd, sizeof(cmd),
	         "exec '%s' s_client -quiet -CAfile '%s' -connect 127.0.0.1:%d <'%s' >'%s' "
	         "2>/dev/null",
	         openssl, cert, port, in, got);
	char *argv[] = {"/bin/sh", "-c", cmd, NULL};
	free(run_or_fail(argv, "openssl s_client"));
	/* The replies, read from the file by a client without a socket. */
	struct client c = {.fd = open(got, O_RDONLY | O_CLOEXEC), .who = "https pipeline"};
	if (c.fd < 0)
		ck_fail("%s: %s", got, strerror(errno));
	expect_reply(&c, &hello);
	expect_file(&c, "text/plain", "file body\n", 10);
	struct want page = file("text/html", "<p>hi</p>\n", 10);
	page.head = true;
	expect_reply(&c, &page);
	expect_status(&c, 404, false, false);
	expect_file(&c, "application/octet-stream", big, MID_SIZE);
	expect_reply(
	    &c, &(struct want){
	            .status = 200, .body = HELLO, .body_len = sizeof(HELLO) - 1, .close = true});
	client_expect_eof(&c);
	client_close(&c);
	printf("https pipeline: 6 requests in one go through openssl s_client, byte for byte\n");
}

/* Plain HTTP on the TLS port: no HTTP reply, the connection closed. */
static void check_https_plain(int port)
{
	struct client c;
	client_open(&c, port, "plain text on https");
	client_send(&c, GET("/"), sizeof(GET("/")) - 1);
	char buf[512];
	ssize_t n, total = 0;
	while ((n = read(c.fd, buf, sizeof(buf))) > 0)
		if (memmem(buf, (size_t)n, "HTTP/1.1", 8) || (total += n) > 4096)
			ck_fail("plain text on https: an HTTP reply, or no end");
	if (n < 0 && errno != ECONNRESET)
		ck_fail("plain text on https: %s", strerror(errno));
	client_close(&c);
	printf("https: a plain HTTP request is refused and closed\n");
}

static int check_https(const char *bin)
{
	if (!ck_find_program("openssl", openssl, sizeof(openssl)) ||
	    !ck_find_program("curl", curl, sizeof(curl))) {
		printf("https: openssl or curl not installed, skipped\n");
		return 77;
	}
	make_root();
	make_cert();
	struct ck_server a, b;
	start(&a, bin, (const char *[]){"--cert", cert, "--key", key, NULL});
	start(&b, bin, (const char *[]){"--cert", cert, "--key", key, "--threads", "2", NULL});
	check_https_curl(a.port);
	check_https_pipeline(a.port);
	check_https_plain(b.port);
	char u[64], wrk[256];
	snprintf(u, sizeof(u), "https://127.0.0.1:%d/", b.port);
	free(curl_tls("curl https after plain text", (const char *[]){u, NULL}));
	if (ck_find_program("wrk", wrk, sizeof(wrk)))
		wrk_run(wrk, "https", b.port, "/", "1s");
	stop(&a, "A", true);
	stop(&b, "B", false); /* the plain-text client and wrk end without close_notify */
	remove_root();
	printf("http_check --https: PASS\n");
	return 0;
}

int main(int argc, char **argv)
{
	ck_init("http_check", "HTTP_CHECK_EMULATOR");
	bool https = argc == 3 && !strcmp(argv[2], "--https");
	if (argc != 2 && !https)
		ck_fail("usage: http_check SERVER_BINARY [--https]");
	ck_skip_if_unavailable();
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max; /* MANY_CONNS descriptors */
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (https)
		return check_https(argv[1]);
	make_root();
	struct ck_server a, b, c;
	start(&a, argv[1], NULL);
	start(&b, argv[1], (const char *[]){"--threads", "2", NULL});
	start(&c, argv[1],
	      (const char *[]){"--header-timeout-ms", "1000", "--keepalive-ms", "300", NULL});
	check_keepalive(a.port);
	check_pipeline(a.port, 100);
	check_pipeline(a.port, 300);
	check_split(a.port);
	check_close(a.port);
	check_files(a.port);
	check_bad(a.port);
	check_junk(a.port);
	check_timeouts(c.port);
	check_many(a.port, "1 thread");
	check_many(b.port, "2 threads");
	check_curl(a.port);
	check_wrk(a.port);
	stop(&a, "A", true);
	stop(&b, "B", true);
	stop(&c, "C", true);
	remove_root();
	printf("http_check: PASS\n");
	return 0;
}
