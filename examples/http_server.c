/* SPDX-License-Identifier: MIT */
/*
 * http_server - an HTTP/1.1 server on proact: keep-alive, pipelining, HEAD,
 * a fixed reply at "/" and files from a directory, in bounded memory.
 *
 *   http_server [--host ADDR] [--port N] [--backend NAME] [--threads N]
 *               [--root DIR] [--keepalive-ms MS] [--header-timeout-ms MS]
 *               [--send-timeout-ms MS] [--cert FILE --key FILE]
 *
 * "/" answers "Hello, World!\n" (text/plain) from a reply built once a
 * second (its Date header); any other path is a file under --root (404
 * without one), with Content-Length, Content-Type by extension and
 * Last-Modified. GET and HEAD only.
 *
 * Memory per connection: an idle connection has a NULL-buffer read pending
 * and holds no buffer. A request that arrives in pieces is copied into a
 * per-connection buffer of at most 8 KiB, freed once it is whole; so are the
 * unanswered requests behind a file reply or a full gathered write (a read
 * brings 8 KiB at most). The replies to every request of one read go out in one gathered
 * write; the next read is queued only once that write completed, so a client
 * that pipelines without reading is slowed down by TCP, not buffered. A file
 * of up to 16 KiB is read into the write of its headers (one send); a larger
 * one follows them by proact_sendfile(), from the page cache at the pace the
 * client reads, through no buffer of ours.
 *
 * What it refuses, answering and then closing the connection:
 *   400  a malformed request line or header, a missing Host (HTTP/1.1),
 *        a target that is not a path or has a bad %-escape
 *   408  the header block not whole within --header-timeout-ms (default
 *        10 s) of its first byte
 *   413  any request body: a Content-Length above 0 or a Transfer-Encoding
 *        (no route takes one)
 *   414  a request line over 8 KiB;  431  a header block over 8 KiB
 *   501  any method but GET and HEAD;  505  an HTTP version but 1.0 and 1.1
 *   500  a file that cannot be opened for another reason (out of fds...)
 * and 403 (a ".." segment, a directory or other non-regular file, a file it
 * may not read) or 404, keeping the connection. After a last reply the
 * write side is shut and input is drained for up to 2 s, so that the client
 * reads the reply instead of a reset. An idle connection closes after
 * --keepalive-ms (default 60 s); a new one gets --header-timeout-ms for its
 * first request; a write that does not finish within --send-timeout-ms
 * (default 60 s; a file body gets a second more per 64 KiB) ends the
 * connection.
 *
 * Threads, listeners and stop signals work as in echo_server (util.c's
 * shards): --threads N runs a watcher per thread, each with its own
 * SO_REUSEPORT listener.
 *
 * HTTPS: with --cert and --key (PEM) every connection is TLS, through
 * proact's TLS layer (one per watcher; its proact_tls_wait() drives the
 * loop): the handshake gets --header-timeout-ms, then the requests are read,
 * parsed and answered by the same code as in the clear, on TLS reads and
 * writes. A file over 16 KiB cannot go by sendfile through TLS: it is read
 * in pieces of 64 KiB, each written once the one before went out, so a slow
 * client holds one piece of ours. A build without OpenSSL 3 refuses --cert.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef PROACT_PROG_HAVE_MALLOPT
#include <malloc.h>
#endif

#include "proact.h"
#include "util.h"
#ifdef PROACT_EXAMPLE_HAVE_TLS
#include "proact_tls.h"
#else
typedef struct proact_tls proact_tls;
typedef struct proact_tls_conn proact_tls_conn;
#endif

#define HEADER_MAX  8192       /* a request line and its headers, at most */
#define READ_SIZE   8192       /* pool buffer size: one read never outgrows HEADER_MAX */
#define POOL_COUNT  512        /* pool buffers per watcher */
#define OUT_IOV     64         /* segments of one gathered write */
#define OUT_TEXT    4096       /* header text of one gathered write */
#define REPLY_TEXT  512        /* header text one reply may take */
#define OUT_CACHE   64         /* idle gathered-write blocks kept per thread */
#define SMALL_FILE  16384      /* a file up to this size goes in the write of its headers */
#define FILE_PIECE  (1u << 30) /* the most one sendfile request sends (32-bit size_t) */
#define TLS_PIECE   65536      /* a piece of a file read and written over TLS */
#define ACCEPTS     16         /* accepts pending per listener */
#define MAX_THREADS 64
#define LINGER_MS   2000 /* input drained after a last reply, at most */
#define DATE_LEN    29   /* "Sun, 06 Nov 1994 08:49:37 GMT" */
#define MS          1000000ull
#define HELLO       "Hello, World!\n"

struct link {
	struct link *prev, *next;
};

/* The replies of "/", rebuilt when the second changes (their Date). Writes
   in flight point into it: a block they still use is retired, not
   rewritten, and freed by the last of them. */
struct canned {
	unsigned refs;
	bool retired;
	char date[DATE_LEN + 1];
	size_t len[2]; /* [0] keep-alive, [1] close */
	char text[2][256];
};

/* One gathered write: the replies to the requests of one read. */
struct out {
	struct out *next; /* the cache of idle blocks */
	int iovcnt;
	size_t text_len;
	struct iovec iov[OUT_IOV];
	char text[OUT_TEXT];
};

struct conn {
	struct link link; /* first: a struct link * of a conn is the conn */
	int fd;
	bool closing;     /* proact_free was called; wait for PROACT_OP_FREE */
	bool close_after; /* the reply being written is the last */
	bool lingering;   /* write side shut; input is drained until EOF */
	uint32_t stash_len, stash_cap;
	char *stash;           /* input not yet answered, NULL when none */
	uint64_t hdr_deadline; /* the stashed request must be whole by then */
	uint64_t linger_deadline;
	struct canned *canned; /* the write in flight points into it */
	struct out *out;       /* the write in flight, if gathered */
	char *body;            /* a small file's bytes, in the write in flight */
	int file;              /* a larger file, sent after the headers, or -1 */
	int writes;            /* writes in flight: the reply, and the file */
	uint64_t file_len;
	proact_tls_conn *tls; /* HTTPS: the connection's TLS; NULL in the clear */
	char *piece;          /* HTTPS: the piece of the file being written */
	uint64_t file_off;    /* HTTPS: the file's bytes read so far */
};

/* What one round of parsing answers, written at once. */
struct reply {
	struct out *out;  /* once there is more than one piece */
	const void *lone; /* else the one piece, a canned reply */
	size_t lone_len;
	bool canned; /* something points into the server's canned block */
	bool last;   /* the connection ends after these replies */
	bool stop;   /* parse no further for now */
	bool fail;   /* out of memory, or a file that changed: close at once */
};

struct request {
	bool head, http10, last;
	int status; /* 0, or the error to answer */
	const char *target;
	size_t target_len;
};

/* One per thread: a watcher, its listener and its connections. */
struct server {
	struct ex_shard sh; /* first: the shard's address is the server's */
	proact_tls *t;      /* HTTPS: the TLS layer on sh.w */
	struct link live;
	struct canned *canned;
	time_t date_sec;
	uint64_t now; /* proact_now() at the start of the loop round */
	struct out *outs;
	unsigned nouts;
	uint64_t accepted, requests, timeouts, resets, errors;
};

struct options {
	struct ex_server_options net;
	unsigned threads;
	const char *root, *cert, *key;
	uint64_t keepalive_ms, header_ms, send_ms;
};

static struct server sv[MAX_THREADS];
static int root_fd = -1;
static uint64_t keepalive_ns, header_ns, send_ns;
#ifdef PROACT_EXAMPLE_HAVE_TLS
static proact_tls_ctx *tls_ctx; /* --cert and --key: every connection is TLS */
#endif

static const char usage_text[] =
    "usage: http_server [--host ADDR] [--port N] [--backend NAME] [--threads N]\n"
    "                   [--root DIR] [--keepalive-ms MS] [--header-timeout-ms MS]\n"
    "                   [--send-timeout-ms MS] [--cert FILE --key FILE]\n";

static bool take_option(void *arg, const char *name, const char *v)
{
	struct options *o = arg;
	if (!strcmp(name, "--threads"))
		o->threads = (unsigned)ex_parse_num(v, 1, MAX_THREADS);
	else if (!strcmp(name, "--root"))
		o->root = v;
	else if (!strcmp(name, "--keepalive-ms"))
		o->keepalive_ms = ex_parse_num(v, 1, 86400000);
	else if (!strcmp(name, "--header-timeout-ms"))
		o->header_ms = ex_parse_num(v, 1, 86400000);
	else if (!strcmp(name, "--send-timeout-ms"))
		o->send_ms = ex_parse_num(v, 1, 86400000);
	else if (!strcmp(name, "--cert"))
		o->cert = v;
	else if (!strcmp(name, "--key"))
		o->key = v;
	else
		return ex_server_option(&o->net, "--port", name, v);
	return true;
}

/* ---- dates and the canned replies --------------------------------------- */

/* IMF-fixdate, the one format HTTP senders use. */
static void http_date(time_t t, char out[DATE_LEN + 1])
{
	static const char days[] = "SunMonTueWedThuFriSat";
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	struct tm tm;
	if (!gmtime_r(&t, &tm) || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 0)
		memset(&tm, 0, sizeof(tm)); /* 1900: only for a clock gone mad */
	char buf[64];
	snprintf(buf, sizeof(buf), "%.3s, %02d %.3s %04d %02d:%02d:%02d GMT",
	         days + 3 * (tm.tm_wday % 7), tm.tm_mday, months + 3 * (tm.tm_mon % 12),
	         tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
	memcpy(out, buf, DATE_LEN);
	out[DATE_LEN] = 0;
}

static void canned_fill(struct canned *k, time_t t)
{
	http_date(t, k->date);
	for (int last = 0; last < 2; last++) {
		int n = snprintf(k->text[last], sizeof(k->text[last]),
		                 "HTTP/1.1 200 OK\r\nServer: proact\r\nDate: %s\r\n"
		                 "Content-Type: text/plain\r\nContent-Length: %zu\r\n"
		                 "Connection: %s\r\n\r\n" HELLO,
		                 k->date, sizeof(HELLO) - 1, last ? "close" : "keep-alive");
		k->len[last] = (size_t)n;
	}
}

/* Once per loop round: a new second gets a new Date. */
static void refresh_date(struct server *s)
{
	time_t t = time(NULL);
	if (t == s->date_sec)
		return;
	struct canned *k = s->canned;
	if (k->refs) {
		struct canned *fresh = malloc(sizeof(*fresh));
		if (!fresh)
			return; /* keep the old date a little longer */
		k->retired = true;
		*fresh = (struct canned){0};
		s->canned = k = fresh;
	}
	s->date_sec = t;
	canned_fill(k, t);
}

static void canned_unref(struct canned *k)
{
	if (k && --k->refs == 0 && k->retired)
		free(k);
}

/* ---- replies ------------------------------------------------------------ */

static struct out *out_get(struct server *s)
{
	struct out *o = s->outs;
	if (o) {
		s->outs = o->next;
		s->nouts--;
	} else if (!(o = malloc(sizeof(*o)))) {
		return NULL;
	}
	o->iovcnt = 0;
	o->text_len = 0;
	return o;
}

static void out_put(struct server *s, struct out *o)
{
	if (!o)
		return;
	if (s->nouts >= OUT_CACHE) {
		free(o);
		return;
	}
	o->next = s->outs;
	s->outs = o;
	s->nouts++;
}

/* Room for one more reply of any kind. */
static bool reply_has_room(const struct reply *rp)
{
	return !rp->out ||
	       (rp->out->iovcnt + 3 <= OUT_IOV && rp->out->text_len + REPLY_TEXT <= OUT_TEXT);
}

/* The gathered write, made when a second piece or any text comes. */
static struct out *reply_out(struct server *s, struct reply *rp)
{
	if (rp->out)
		return rp->out;
	if (!(rp->out = out_get(s))) {
		rp->fail = rp->stop = true;
		return NULL;
	}
	if (rp->lone) {
		rp->out->iov[0] =
		    (struct iovec){.iov_base = (void *)rp->lone, .iov_len = rp->lone_len};
		rp->out->iovcnt = 1;
		rp->lone = NULL;
	}
	return rp->out;
}

static void reply_add(struct server *s, struct reply *rp, const void *p, size_t n)
{
	if (!rp->out && !rp->lone) {
		rp->lone = p;
		rp->lone_len = n;
		return;
	}
	struct out *o = reply_out(s, rp);
	if (!o)
		return;
	struct iovec *prev = o->iovcnt ? &o->iov[o->iovcnt - 1] : NULL;
	if (prev && (const char *)prev->iov_base + prev->iov_len == p) /* text after text */
		prev->iov_len += n;
	else
		o->iov[o->iovcnt++] = (struct iovec){.iov_base = (void *)p, .iov_len = n};
}

/* Formats header text into the gathered write and adds it. */
static bool reply_printf(struct server *s, struct reply *rp, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool reply_printf(struct server *s, struct reply *rp, const char *fmt, ...)
{
	struct out *o = reply_out(s, rp);
	if (!o)
		return false;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(o->text + o->text_len, REPLY_TEXT, fmt, ap);
	va_end(ap);
	if (n < 0 || n >= REPLY_TEXT) { /* cannot happen with our formats */
		rp->fail = rp->stop = true;
		return false;
	}
	char *t = o->text + o->text_len;
	o->text_len += (size_t)n;
	reply_add(s, rp, t, (size_t)n);
	return true;
}

static const char *reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 408:
		return "Request Timeout";
	case 413:
		return "Content Too Large";
	case 414:
		return "URI Too Long";
	case 431:
		return "Request Header Fields Too Large";
	case 501:
		return "Not Implemented";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "Internal Server Error";
	}
}

/* A status with a one-line text body ("404 Not Found\n"). */
static void reply_status(struct server *s, struct reply *rp, int status, bool head, bool last)
{
	char body[64];
	int n = snprintf(body, sizeof(body), "%d %s\n", status, reason(status));
	reply_printf(s, rp,
	             "HTTP/1.1 %d %s\r\nServer: proact\r\nDate: %s\r\nContent-Type: text/plain\r\n"
	             "Content-Length: %d\r\nConnection: %s\r\n\r\n%s",
	             status, reason(status), s->canned->date, n, last ? "close" : "keep-alive",
	             head ? "" : body);
	if (last)
		rp->last = rp->stop = true;
}

/* ---- requests ----------------------------------------------------------- */

/* Offset just past the blank line that ends a header block in buf[0..len),
   searching from @from; 0 while it has not come. */
static size_t header_end(const char *buf, size_t len, size_t from)
{
	const char *p = buf + from, *e = buf + len;
	while (p < e && (p = memchr(p, '\n', (size_t)(e - p))) != NULL) {
		p++;
		if (p < e && *p == '\n')
			return (size_t)(p + 1 - buf);
		if (p + 1 < e && p[0] == '\r' && p[1] == '\n')
			return (size_t)(p + 2 - buf);
	}
	return 0;
}

static bool is_tchar(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static bool all_tchars(const char *p, const char *e)
{
	for (; p < e; p++)
		if (!is_tchar((unsigned char)*p))
			return false;
	return true;
}

/* METHOD SP origin-form SP HTTP/1.x; 0 or the status to answer. */
static int parse_request_line(const char *p, const char *e, struct request *rq)
{
	const char *sp1 = memchr(p, ' ', (size_t)(e - p));
	if (!sp1 || sp1 == p || !all_tchars(p, sp1))
		return 400;
	const char *t = sp1 + 1, *sp2 = memchr(t, ' ', (size_t)(e - t));
	if (!sp2 || sp2 == t)
		return 400;
	for (const char *q = t; q < sp2; q++)
		if ((unsigned char)*q <= ' ' || *q == 0x7f)
			return 400;
	const char *v = sp2 + 1;
	if (e - v != 8 || memcmp(v, "HTTP/", 5) || v[5] < '0' || v[5] > '9' || v[6] != '.' ||
	    v[7] < '0' || v[7] > '9' || *t != '/')
		return 400;
	if (v[5] != '1' || v[7] > '1')
		return 505;
	rq->http10 = v[7] == '0';
	rq->target = t;
	rq->target_len = (size_t)(sp2 - t);
	size_t ml = (size_t)(sp1 - p);
	rq->head = ml == 4 && !memcmp(p, "HEAD", 4);
	if (!rq->head && !(ml == 3 && !memcmp(p, "GET", 3)))
		return 501;
	return 0;
}

struct headers {
	int hosts;
	bool close, keep_alive, body, have_length;
	unsigned long long length;
};

static bool name_is(const char *p, size_t n, const char *name)
{
	return n == strlen(name) && !strncasecmp(p, name, n);
}

static void connection_tokens(const char *v, const char *e, struct headers *h)
{
	while (v < e) {
		const char *comma = memchr(v, ',', (size_t)(e - v)), *te = comma ? comma : e;
		while (v < te && (*v == ' ' || *v == '\t'))
			v++;
		const char *tend = te;
		while (tend > v && (tend[-1] == ' ' || tend[-1] == '\t'))
			tend--;
		h->close |= name_is(v, (size_t)(tend - v), "close");
		h->keep_alive |= name_is(v, (size_t)(tend - v), "keep-alive");
		v = comma ? comma + 1 : e;
	}
}

static int content_length(const char *v, const char *e, struct headers *h)
{
	unsigned long long n = 0;
	if (v == e || e - v > 18)
		return 400;
	for (const char *q = v; q < e; q++) {
		if (*q < '0' || *q > '9')
			return 400;
		n = n * 10 + (unsigned)(*q - '0');
	}
	if (h->have_length && n != h->length)
		return 400;
	h->have_length = true;
	h->length = n;
	h->body |= n > 0;
	return 0;
}

/* One "Name: value" line in p[0..e); 0 or the status to answer. */
static int parse_header(const char *p, const char *e, struct headers *h)
{
	const char *colon = memchr(p, ':', (size_t)(e - p));
	/* a name of token characters only: no obsolete line folding, no space
	   before the colon */
	if (!colon || colon == p || !all_tchars(p, colon))
		return 400;
	const char *v = colon + 1, *ve = e;
	while (v < ve && (*v == ' ' || *v == '\t'))
		v++;
	while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
		ve--;
	for (const char *q = v; q < ve; q++)
		if (((unsigned char)*q < ' ' && *q != '\t') || *q == 0x7f)
			return 400;
	size_t nl = (size_t)(colon - p);
	if (name_is(p, nl, "host"))
		h->hosts++;
	else if (name_is(p, nl, "connection"))
		connection_tokens(v, ve, h);
	else if (name_is(p, nl, "content-length"))
		return content_length(v, ve, h);
	else if (name_is(p, nl, "transfer-encoding"))
		h->body = true;
	return 0;
}

/* The end of the line starting at p (its '\n'), and of its text (no '\r'). */
static const char *line_end(const char *p, const char *e, const char **text_end)
{
	const char *nl = memchr(p, '\n', (size_t)(e - p));
	*text_end = nl > p && nl[-1] == '\r' ? nl - 1 : nl;
	return nl;
}

/* Parses a whole header block buf[0..len) (it ends with a blank line). */
static void parse_request(const char *buf, size_t len, struct request *rq)
{
	*rq = (struct request){0};
	const char *e = buf + len, *te;
	const char *nl = line_end(buf, e, &te);
	struct headers h = {0};
	int st = parse_request_line(buf, te, rq);
	for (const char *p = nl + 1; !st && p < e; p = nl + 1) {
		nl = line_end(p, e, &te);
		if (te == p)
			break; /* the blank line */
		st = parse_header(p, te, &h);
	}
	if (!st && (h.hosts > 1 || (!rq->http10 && h.hosts != 1)))
		st = 400;
	if (!st && h.body)
		st = 413;
	rq->status = st;
	rq->last = st || h.close || (rq->http10 && !h.keep_alive);
}

/* ---- files -------------------------------------------------------------- */

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'f')
		return (ch | 0x20) - 'a' + 10;
	return -1;
}

/* The target's path, %-decoded, relative to the root: 0, 400 (a bad
   escape, a NUL) or 403 (a ".." segment). */
static int decode_path(const char *t, size_t n, char out[HEADER_MAX])
{
	size_t o = 0;
	for (size_t i = 0; i < n && t[i] != '?' && t[i] != '#'; i++) {
		char ch = t[i];
		if (ch == '%') {
			int hi = i + 2 < n ? hexval(t[i + 1]) : -1,
			    lo = hi >= 0 ? hexval(t[i + 2]) : -1;
			if (lo < 0 || (hi | lo) == 0)
				return 400;
			ch = (char)(hi << 4 | lo);
			i += 2;
		}
		if (o == 0 && ch == '/')
			continue; /* relative to the root */
		out[o++] = ch;
	}
	out[o] = 0;
	for (const char *seg = out; *seg; seg++) {
		if (seg[0] == '.' && seg[1] == '.' && (seg[2] == '/' || seg[2] == 0) &&
		    (seg == out || seg[-1] == '/'))
			return 403;
	}
	if (o == 0) {
		out[0] = '.';
		out[1] = 0;
	}
	return 0;
}

/* Opens a regular file under the root: 0, 403, 404 or 500. Blocking, like
   every file call here: the page cache makes it short. */
static int open_file(const char *path, int *fd, struct stat *sb)
{
	*fd =
	    root_fd < 0 ? -1 : openat(root_fd, path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (root_fd < 0 ||
	    (*fd < 0 && (errno == ENOENT || errno == ENOTDIR || errno == ENAMETOOLONG)))
		return 404;
	if (*fd < 0)
		return errno == EACCES || errno == EPERM || errno == ELOOP ? 403 : 500;
	if (fstat(*fd, sb) == 0 && S_ISREG(sb->st_mode))
		return 0;
	close(*fd);
	*fd = -1;
	return 403; /* a directory, a FIFO, a device */
}

static const char *content_type(const char *path)
{
	static const char *const types[][2] = {
	    {"html", "text/html"},
	    {"htm", "text/html"},
	    {"txt", "text/plain"},
	    {"css", "text/css"},
	    {"js", "application/javascript"},
	    {"json", "application/json"},
	    {"xml", "text/xml"},
	    {"svg", "image/svg+xml"},
	    {"png", "image/png"},
	    {"jpg", "image/jpeg"},
	    {"jpeg", "image/jpeg"},
	    {"gif", "image/gif"},
	    {"ico", "image/x-icon"},
	    {"webp", "image/webp"},
	    {"wasm", "application/wasm"},
	    {"pdf", "application/pdf"},
	};
	const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
	for (size_t i = 0; dot && (!slash || dot > slash) && i < sizeof(types) / sizeof(types[0]);
	     i++)
		if (!strcasecmp(dot + 1, types[i][0]))
			return types[i][1];
	return "application/octet-stream";
}

static void queue(struct server *s, struct proact_request r)
{
	ex_batch_queue(&s->sh.reqs, r);
}

/* Reads n bytes of @fd at @off into buf: false if they are not all there. */
static bool read_at(int fd, char *buf, size_t n, uint64_t off)
{
	size_t got = 0;
	while (got < n) {
		ssize_t k = pread(fd, buf + got, n - got, (off_t)(off + got));
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return false;
		got += (size_t)k;
	}
	return true;
}

/*
 * A file's body, after its headers in @rp (takes @fd): a small file is read
 * into the same gathered write, so the whole reply is one send; a larger
 * one is sent by proact_sendfile(), queued behind the headers by
 * send_reply(), straight from the page cache at the pace the client reads:
 * no buffer of ours, whatever its size. False if a small file could not be
 * read whole.
 */
static bool file_body(struct server *s, struct conn *c, struct reply *rp, int fd, uint64_t size)
{
	rp->stop = true; /* later requests wait for the body */
	if (size > SMALL_FILE) {
		c->file = fd;
		c->file_len = size;
		c->file_off = 0;
		return true;
	}
	size_t n = (size_t)size;
	c->body = malloc(n);
	bool whole = c->body && read_at(fd, c->body, n, 0);
	close(fd);
	if (!whole)
		return false;
	reply_add(s, rp, c->body, n);
	return true;
}

static void reply_file(struct server *s, struct conn *c, struct reply *rp, const struct request *rq)
{
	char path[HEADER_MAX + 2];
	struct stat sb;
	int fd = -1;
	int st = decode_path(rq->target, rq->target_len, path);
	if (!st)
		st = open_file(path, &fd, &sb);
	if (st) {
		reply_status(s, rp, st, rq->head, rq->last || st == 400 || st == 500);
		return;
	}
	char modified[DATE_LEN + 1];
	http_date(sb.st_mtime, modified);
	bool ok =
	    reply_printf(s, rp,
	                 "HTTP/1.1 200 OK\r\nServer: proact\r\nDate: %s\r\nContent-Type: %s\r\n"
	                 "Content-Length: %lld\r\nLast-Modified: %s\r\nConnection: %s\r\n\r\n",
	                 s->canned->date, content_type(path), (long long)sb.st_size, modified,
	                 rq->last ? "close" : "keep-alive");
	if (rq->last)
		rp->last = rp->stop = true;
	if (!ok || rq->head || sb.st_size == 0) {
		close(fd);
		return;
	}
	if (!file_body(s, c, rp, fd, (uint64_t)sb.st_size))
		rp->fail = true;
}

/* ---- parsing ------------------------------------------------------------ */

/* Answers the whole header block buf[0..len). */
static void answer(struct server *s, struct conn *c, struct reply *rp, const char *buf, size_t len)
{
	struct request rq;
	parse_request(buf, len, &rq);
	s->requests++;
	c->hdr_deadline = 0;
	if (rq.status) {
		reply_status(s, rp, rq.status, rq.head, true);
	} else if (rq.target_len == 1 || rq.target[1] == '?') { /* "/" */
		struct canned *k = s->canned;
		reply_add(s, rp, k->text[rq.last],
		          k->len[rq.last] - (rq.head ? sizeof(HELLO) - 1 : 0));
		rp->canned = true;
		if (rq.last)
			rp->last = rp->stop = true;
	} else {
		reply_file(s, c, rp, &rq);
	}
}

/* A header block that outgrew HEADER_MAX: 414 if the request line did. */
static void too_large(struct server *s, struct reply *rp, const char *buf)
{
	reply_status(s, rp, memchr(buf, '\n', HEADER_MAX) ? 431 : 414, false, true);
}

/* Answers the whole requests at the start of buf[0..len), and returns the
   bytes they took: up to an unfinished request, or where rp->stop was set
   (a file body, a last reply, a full gathered write). */
static size_t parse(struct server *s, struct conn *c, struct reply *rp, const char *buf, size_t len)
{
	size_t at = 0;
	while (!rp->stop) {
		while (at < len && (buf[at] == '\r' || buf[at] == '\n'))
			at++; /* empty lines before a request are allowed */
		if (at == len)
			break;
		if (!reply_has_room(rp)) {
			rp->stop = true;
			break;
		}
		size_t avail = len - at;
		size_t end = header_end(buf + at, avail < HEADER_MAX ? avail : HEADER_MAX, 0);
		if (!end) {
			if (avail >= HEADER_MAX)
				too_large(s, rp, buf + at);
			break;
		}
		answer(s, c, rp, buf + at, end);
		at += end;
	}
	return at;
}

/* Keeps p[0..n) (it may lie in the stash itself) as the unanswered input;
   n 0 frees the buffer. False when out of memory. */
static bool stash_set(struct server *s, struct conn *c, const char *p, size_t n)
{
	if (n == 0) {
		free(c->stash);
		c->stash = NULL;
		c->stash_len = c->stash_cap = 0;
		return true;
	}
	if (c->stash && p >= c->stash && p < c->stash + c->stash_cap) {
		memmove(c->stash, p, n);
	} else {
		if (n > c->stash_cap) {
			uint32_t cap = 256;
			while (cap < n)
				cap *= 2;
			char *bigger = realloc(c->stash, cap);
			if (!bigger)
				return false;
			c->stash = bigger;
			c->stash_cap = cap;
		}
		memcpy(c->stash, p, n);
	}
	c->stash_len = (uint32_t)n;
	if (!c->hdr_deadline)
		c->hdr_deadline = s->now + header_ns;
	return true;
}

/* The stash holds the start of a request and d[0..n) what came next: takes
   d's head until the header block is whole (at most HEADER_MAX in all) and
   answers it. Returns the bytes of d taken; the stash is left empty unless
   the block is still unfinished. */
static size_t stash_finish(struct server *s, struct conn *c, struct reply *rp, const char *d,
                           size_t n)
{
	size_t old = c->stash_len, take = HEADER_MAX - old < n ? HEADER_MAX - old : n;
	char keep[HEADER_MAX];
	memcpy(keep, c->stash, old);
	memcpy(keep + old, d, take);
	size_t end = header_end(keep, old + take, old > 2 ? old - 2 : 0);
	if (!end) {
		if (old + take >= HEADER_MAX)
			too_large(s, rp, keep);
		else if (!stash_set(s, c, keep, old + take))
			rp->fail = true;
		return n;
	}
	stash_set(s, c, NULL, 0);
	answer(s, c, rp, keep, end);
	return end - old;
}

/* ---- connections -------------------------------------------------------- */

static void conn_release(struct server *s, struct conn *c)
{
	c->link.prev->next = c->link.next;
	c->link.next->prev = c->link.prev;
	free(c->stash);
	out_put(s, c->out);
	canned_unref(c->canned);
	free(c->body);
	free(c->piece);
	if (c->file >= 0)
		close(c->file);
	free(c);
}

/* Hands the fd to proact_free; the state goes when PROACT_OP_FREE arrives. */
static void conn_close(struct server *s, struct conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
#ifdef PROACT_EXAMPLE_HAVE_TLS
	if (c->tls) { /* PROACT_TLS_OP_FREE follows */
		proact_tls_free(c->tls, c);
		return;
	}
#endif
	if (ex_free_fd(s->sh.w, c->fd, c) == -ENOENT) /* its first request was refused */
		conn_release(s, c);
}

/* ---- HTTPS: the same requests through the TLS layer ---------------------- */

#ifdef PROACT_EXAMPLE_HAVE_TLS
/* A TLS request refused at submission: no completion comes for it. */
static bool tls_check(struct server *s, struct conn *c, int rc)
{
	if (rc < 0 && !c->closing) {
		s->errors++;
		conn_close(s, c);
	}
	return rc >= 0;
}

/* The next piece of a file's body; the one after it is read only once this
   one went out (see on_write). False if none was queued. */
static bool tls_file_piece(struct server *s, struct conn *c)
{
	uint64_t left = c->file_len - c->file_off;
	size_t n = left < TLS_PIECE ? (size_t)left : TLS_PIECE;
	if (!c->piece)
		c->piece = malloc(TLS_PIECE);
	if (!c->piece ||
	    !read_at(c->file, c->piece, n, c->file_off)) { /* out of memory, or the file shrank */
		s->errors++;
		conn_close(s, c);
		return false;
	}
	c->file_off += n;
	return tls_check(s, c, proact_tls_write(c->tls, c->piece, n, s->now + send_ns, c));
}

static void tls_send_reply(struct server *s, struct conn *c, const struct reply *rp)
{
	uint64_t deadline = s->now + send_ns;
	tls_check(s, c,
	          rp->out ? proact_tls_writev(c->tls, rp->out->iov, rp->out->iovcnt, deadline, c)
	                  : proact_tls_write(c->tls, rp->lone, rp->lone_len, deadline, c));
	if (c->file >= 0 && tls_file_piece(s, c))
		c->writes++;
}
#endif

static void queue_read(struct server *s, struct conn *c, uint64_t deadline)
{
#ifdef PROACT_EXAMPLE_HAVE_TLS
	if (c->tls) {
		tls_check(s, c, proact_tls_read(c->tls, NULL, READ_SIZE, deadline, c));
		return;
	}
#endif
	queue(s, (struct proact_request){.fd = c->fd,
	                                 .op = PROACT_OP_READ,
	                                 .len = READ_SIZE,
	                                 .deadline = deadline,
	                                 .ctx = c});
}

static void send_reply(struct server *s, struct conn *c, struct reply *rp)
{
	if (rp->canned) {
		c->canned = s->canned;
		c->canned->refs++;
	}
	c->close_after = rp->last;
	c->out = rp->out;
	c->writes = 1;
#ifdef PROACT_EXAMPLE_HAVE_TLS
	if (c->tls) {
		tls_send_reply(s, c, rp);
		return;
	}
#endif
	struct proact_request r = {.fd = c->fd, .deadline = s->now + send_ns, .ctx = c};
	if (rp->out) {
		r.op = PROACT_OP_WRITEV;
		r.iov = rp->out->iov;
		r.iovcnt = rp->out->iovcnt;
	} else {
		r.op = PROACT_OP_WRITE;
		r.buf = (void *)rp->lone;
		r.len = rp->lone_len;
	}
	queue(s, r);
	/* The file in order behind the headers, in pieces a size_t holds. */
	for (uint64_t off = 0; c->file >= 0 && off < c->file_len; c->writes++) {
		uint64_t len = c->file_len - off < FILE_PIECE ? c->file_len - off : FILE_PIECE;
		queue(s, (struct proact_request){.fd = c->fd,
		                                 .op = PROACT_OP_SENDFILE,
		                                 .file = c->file,
		                                 .offset = off,
		                                 .len = (size_t)len,
		                                 .deadline = s->now + send_ns +
		                                             (off + len) / 65536 * 1000 * MS,
		                                 .ctx = c});
		off += len;
	}
}

/* After a round of parsing: write what it answered, or read for more. */
static void finish(struct server *s, struct conn *c, struct reply *rp)
{
	if (rp->fail) {
		out_put(s, rp->out);
		s->errors++;
		conn_close(s, c);
		return;
	}
	if (rp->last)
		stash_set(s, c, NULL, 0);
	if (rp->out || rp->lone)
		send_reply(s, c, rp);
	else /* the rest of a request, or the next one */
		queue_read(s, c, c->stash_len ? c->hdr_deadline : s->now + keepalive_ns);
}

static void on_data(struct server *s, struct conn *c, const char *d, size_t n)
{
	struct reply rp = {0};
	size_t at = c->stash_len ? stash_finish(s, c, &rp, d, n) : 0;
	if (!c->stash_len && !rp.last && !rp.fail) {
		at += parse(s, c, &rp, d + at, n - at);
		if (!rp.last && !stash_set(s, c, d + at, n - at))
			rp.fail = true;
	}
	finish(s, c, &rp);
}

/* The stash after a reply went out: requests that waited behind it. */
static void on_stash(struct server *s, struct conn *c)
{
	struct reply rp = {0};
	if (c->stash_len) {
		size_t at = parse(s, c, &rp, c->stash, c->stash_len);
		if (!rp.last && !stash_set(s, c, c->stash + at, c->stash_len - at))
			rp.fail = true;
	}
	finish(s, c, &rp);
}

/* A last reply went out: shut the write side, then drain input for a while
   so that the client reads the reply rather than a reset. */
static void linger(struct server *s, struct conn *c)
{
	c->lingering = true;
	c->linger_deadline = s->now + LINGER_MS * MS;
#ifdef PROACT_EXAMPLE_HAVE_TLS
	if (c->tls) /* close_notify, then the socket's shutdown */
		tls_check(s, c, proact_tls_shutdown(c->tls, 0, c));
	else
#endif
		queue(s, (struct proact_request){.fd = c->fd, .op = PROACT_OP_SHUTDOWN, .ctx = c});
	queue_read(s, c, c->linger_deadline);
}

static void on_read(struct server *s, struct conn *c, const struct proact_completion *r)
{
	if (c->closing)
		return;
	if (c->lingering) {
		if (r->error || r->size == 0)
			conn_close(s, c);
		else
			queue_read(s, c, c->linger_deadline);
		return;
	}
	if (r->error == ETIMEDOUT) {
		s->timeouts++;
		if (!c->stash_len) { /* idle: close quietly */
			conn_close(s, c);
			return;
		}
		struct reply rp = {0};
		reply_status(s, &rp, 408, false, true);
		finish(s, c, &rp);
		return;
	}
	if (r->error || r->size == 0) {
		ex_count_failure(r->error, &s->resets, &s->errors);
		conn_close(s, c);
		return;
	}
	on_data(s, c, r->buf, r->size);
}

/* A write, or a TLS handshake, that failed: counted, and the end. */
static void conn_failed(struct server *s, struct conn *c, int err)
{
	if (err == ETIMEDOUT)
		s->timeouts++;
	else
		ex_count_failure(err, &s->resets, &s->errors);
	conn_close(s, c);
}

static void on_write(struct server *s, struct conn *c, const struct proact_completion *r)
{
	if (r->op != PROACT_OP_SENDFILE && (!c->piece || r->buf != c->piece)) {
		canned_unref(c->canned);
		c->canned = NULL;
		out_put(s, c->out);
		c->out = NULL;
		free(c->body);
		c->body = NULL;
	}
#ifdef PROACT_EXAMPLE_HAVE_TLS
	else if (c->tls && !r->error && !c->closing && c->file_off < c->file_len &&
	         tls_file_piece(s, c))
		return; /* the next piece takes this one's place */
#endif
	if (--c->writes == 0 && c->file >= 0) { /* the last piece of the file */
		close(c->file);
		c->file = -1;
		free(c->piece);
		c->piece = NULL;
	}
	if (c->closing)
		return;
	if (r->error) {
		conn_failed(s, c, r->error);
		return;
	}
	if (c->writes) /* the file's body is still on its way */
		return;
	if (c->close_after)
		linger(s, c);
	else
		on_stash(s, c);
}

/* ---- the loop ----------------------------------------------------------- */

static void refused(void *arg, const struct proact_request *r, int err)
{
	struct server *s = arg;
	if (ex_shard_refused(&s->sh, r, err))
		return;
	if (err != -EALREADY)
		s->errors++;
	conn_close(s, r->ctx);
}

static void conn_open(struct ex_shard *sh, int fd)
{
	struct server *s = (struct server *)sh;
	struct conn *c = malloc(sizeof(*c));
	if (!c) {
		close(fd);
		s->errors++;
		return;
	}
	*c = (struct conn){.fd = fd, .file = -1, .link = {.prev = &s->live, .next = s->live.next}};
	s->live.next->prev = &c->link;
	s->live.next = &c->link;
	s->accepted++;
	/* A reply is one write: Nagle would only hold it back. */
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
#ifdef PROACT_EXAMPLE_HAVE_TLS
	if (tls_ctx) { /* the first read once the handshake is done */
		if (proact_tls_conn_new(s->t, &c->tls, fd, tls_ctx, NULL) < 0) {
			close(fd);
			s->errors++;
			conn_release(s, c);
			return;
		}
		tls_check(s, c, proact_tls_handshake(c->tls, s->now + header_ns, c));
		return;
	}
#endif
	queue_read(s, c, s->now + header_ns);
}

#ifdef PROACT_EXAMPLE_HAVE_TLS
static void on_handshake(struct server *s, struct conn *c, const struct proact_completion *r)
{
	if (c->closing)
		return;
	if (r->error) {
		conn_failed(s, c, r->error);
		return;
	}
	queue_read(s, c, s->now + header_ns);
}

static int tls_wait(struct ex_shard *sh, struct proact_completion *out, int max, int timeout_ms)
{
	return proact_tls_wait(((struct server *)sh)->t, out, max, timeout_ms);
}
#endif

static void on_completion(struct ex_shard *sh, const struct proact_completion *r)
{
	struct server *s = (struct server *)sh;
	switch (r->op) { /* a TLS completion goes where its plain twin does */
#ifdef PROACT_EXAMPLE_HAVE_TLS
	case PROACT_TLS_OP_HANDSHAKE:
		on_handshake(s, r->ctx, r);
		break;
	case PROACT_TLS_OP_READ:
#endif
	case PROACT_OP_READ:
		on_read(s, r->ctx, r);
		break;
#ifdef PROACT_EXAMPLE_HAVE_TLS
	case PROACT_TLS_OP_WRITE:
	case PROACT_TLS_OP_WRITEV:
#endif
	case PROACT_OP_WRITE:
	case PROACT_OP_WRITEV:
	case PROACT_OP_SENDFILE:
		on_write(s, r->ctx, r);
		break;
#ifdef PROACT_EXAMPLE_HAVE_TLS
	case PROACT_TLS_OP_FREE:
#endif
	case PROACT_OP_FREE:
		conn_release(s, r->ctx);
		break;
	default: /* SHUTDOWN: the linger read sees the end either way */
		break;
	}
}

/* Each round: the time for its deadlines, and a new Date once a second. */
static void on_round(struct ex_shard *sh)
{
	struct server *s = (struct server *)sh;
	s->now = proact_now();
	refresh_date(s);
}

/* ---- setup and exit ----------------------------------------------------- */

static int setup(struct server *s, const struct options *o)
{
	struct proact_options po = {.backend = o->net.backend,
	                            .pool_buffer_size = READ_SIZE,
	                            .pool_buffer_count = POOL_COUNT};
	s->live.next = s->live.prev = &s->live;
	s->canned = calloc(1, sizeof(*s->canned));
	if (!s->canned)
		return -1;
	s->now = proact_now();
	refresh_date(s);
	if (ex_shard_setup(&s->sh, &po, ACCEPTS, refused, s) < 0)
		return -1;
#ifdef PROACT_EXAMPLE_HAVE_TLS
	int rc = tls_ctx ? proact_tls_new(&s->t, s->sh.w, NULL) : 0;
	if (rc < 0) {
		fprintf(stderr, "http_server: proact_tls_new: %s\n", proact_strerror(rc));
		return -1;
	}
#endif
	return 0;
}

/* After shutdown nothing more is delivered: what is left is freed here. */
static void teardown(struct server *s)
{
	ex_shard_close(&s->sh);
#ifdef PROACT_EXAMPLE_HAVE_TLS
	proact_tls_destroy(s->t); /* and the TLS connections left */
#endif
	while (s->live.next && s->live.next != &s->live)
		conn_release(s, (struct conn *)s->live.next);
	free(s->canned);
	while (s->outs) {
		struct out *o = s->outs;
		s->outs = o->next;
		free(o);
	}
}

static bool report(unsigned n)
{
	uint64_t accepted = 0, requests = 0, timeouts = 0, resets = 0, errors = 0;
	bool failed = false;
	for (unsigned i = 0; i < n; i++) {
		accepted += sv[i].accepted;
		requests += sv[i].requests;
		timeouts += sv[i].timeouts;
		resets += sv[i].resets;
		errors += sv[i].errors;
		failed |= sv[i].sh.failed;
	}
	printf("http_server: accepted %" PRIu64 " connections, answered %" PRIu64
	       " requests, %" PRIu64 " timeouts, %" PRIu64 " resets, %" PRIu64 " errors\n",
	       accepted, requests, timeouts, resets, errors);
	fflush(stdout);
	return !failed;
}

/* The TLS context of --cert and --key, shared by every thread. */
static int tls_open(const struct options *o)
{
#ifdef PROACT_EXAMPLE_HAVE_TLS
	struct proact_tls_config cfg = {.flags = PROACT_TLS_SERVER,
	                                .cert_file = o->cert,
	                                .key_file = o->key,
	                                .alpn = "http/1.1"};
	int rc = proact_tls_ctx_new(&tls_ctx, &cfg);
	if (rc < 0)
		fprintf(stderr, "http_server: --cert %s --key %s: %s\n", o->cert, o->key,
		        proact_strerror(rc));
#if defined(PROACT_PROG_HAVE_MALLOPT) && defined(M_TRIM_THRESHOLD)
	/* OpenSSL takes a record buffer when a connection reads or writes and
	   frees it after (the layer's release-buffers mode keeps idle
	   connections small): with many connections glibc then gives the top of
	   its heap back and takes it again (brk) all the time. A higher trim
	   threshold keeps it: at 1,000 HTTPS connections 49 to 17 us of CPU per
	   request (bench/README.md). */
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
#endif
	return rc < 0 ? -1 : 0;
#else
	(void)o;
	fprintf(stderr, "http_server: --cert: this build has no TLS (OpenSSL 3 was not found)\n");
	return -1;
#endif
}

static void parse_args(int argc, char **argv, struct options *o)
{
	*o = (struct options){.net = {.host = "127.0.0.1", .port = "0"},
	                      .threads = 1,
	                      .keepalive_ms = 60000,
	                      .header_ms = 10000,
	                      .send_ms = 60000};
	ex_parse_options(argc, argv, take_option, o);
	if (!o->cert != !o->key)
		ex_usage();
	keepalive_ns = o->keepalive_ms * MS;
	header_ns = o->header_ms * MS;
	send_ns = o->send_ms * MS;
}

int main(int argc, char **argv)
{
	struct options o;
	ex_init("http_server", usage_text);
	parse_args(argc, argv, &o);
	if (o.root && (root_fd = open(o.root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		fprintf(stderr, "http_server: --root %s: %s\n", o.root, strerror(errno));
		return 1;
	}
	if (o.cert && tls_open(&o) < 0)
		return 1;
	ex_raise_fd_limit();
	unsigned n = o.threads;
	struct ex_shard *shards[MAX_THREADS];
	for (unsigned i = 0; i < n; i++)
		shards[i] = &sv[i].sh;
	bool ok = ex_shards_open(shards, n, o.net.host, o.net.port, 4096) == 0;
	for (unsigned i = 0; ok && i < n; i++)
		ok = setup(&sv[i], &o) == 0;
	if (ok) {
		fprintf(stderr, "http_server: backend %s, %u thread%s, root %s%s\n",
		        proact_backend(sv[0].sh.w), n, n == 1 ? "" : "s",
		        o.root ? o.root : "(none)", o.cert ? ", HTTPS" : "");
		ex_print_listening(sv[0].sh.lfd);
		struct ex_shard_ops ops = {
		    .round = on_round, .accepted = conn_open, .completion = on_completion};
#ifdef PROACT_EXAMPLE_HAVE_TLS
		if (tls_ctx)
			ops.wait = tls_wait;
#endif
		ok = ex_shards_run(shards, n, &ops);
		ok = report(n) && ok;
	}
	for (unsigned i = 0; i < n; i++)
		teardown(&sv[i]);
	if (root_fd >= 0)
		close(root_fd);
#ifdef PROACT_EXAMPLE_HAVE_TLS
	proact_tls_ctx_free(tls_ctx);
#endif
	return ok ? 0 : 1;
}
