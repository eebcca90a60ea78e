/* SPDX-License-Identifier: MIT */
/*
 * resp_server - a Redis-protocol server on proact: RESP2 and inline
 * commands over a string keyspace with expiry.
 *
 *   resp_server [--host ADDR] [--port N] [--backend NAME] [--threads N]
 *               [--partial-timeout MS]
 *
 * Commands: PING [msg], ECHO, SET key value [NX|XX] [GET]
 * [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL], GET, DEL and EXISTS (several keys),
 * INCR, DECR, INCRBY, DECRBY, MGET, MSET, STRLEN, TTL, PTTL, DBSIZE,
 * FLUSHDB, FLUSHALL, SELECT 0, QUIT; and minimal but valid answers to what
 * redis-cli and redis-benchmark send on connect: COMMAND (an empty table),
 * COMMAND DOCS/INFO/COUNT, CONFIG GET (save "" and appendonly "no"). Replies,
 * errors included, are worded as Redis 7 words them; an unknown command gets
 * "ERR unknown command 'NAME', with args beginning with: ...".
 *
 * I/O. Every connection keeps one NULL-buffer read pending: an idle
 * connection holds no read buffer, only its small struct. The commands of a
 * read are parsed and run straight from the pool buffer; only the tail of a
 * command that spans reads is copied into a buffer of the connection, which
 * grows as the bytes arrive (never to a size a header merely claims) and is
 * freed once the command is complete. The replies to all the commands of one
 * read are built into one output buffer and go out in one proact_write().
 * One write is in flight per connection; replies made meanwhile wait in a
 * second buffer and go out together when it completes. The next read is
 * queued at once, so a pipelining client is read while it is answered, but
 * while 1 MiB of replies waits behind the write in flight, reads pause: a
 * client that sends and never reads is held back by TCP, not by memory.
 * Output buffers of 16 KiB come from a per-thread free list, so a
 * connection holds one only while it has replies on their way.
 *
 * Bad input: a bulk longer than 64 MiB, a negative or malformed length, more
 * than 1,048,576 elements in a multibulk (Redis: INT_MAX), a header line or
 * an inline command over 64 KiB without its line end, an element that is not
 * a bulk string (a nested array), bulk data not followed by CRLF (Redis skips
 * two bytes unchecked), unbalanced quotes in an inline command, a command
 * larger than 64 MiB + 64 KiB in all, and a command that is not complete
 * --partial-timeout ms (default 30,000; 0: no limit) after its first byte
 * arrived (a length that lies) each get "-ERR Protocol error: ..." and the
 * connection ends: the reply goes out, the write side is shut down, and what
 * the client still sends is read and dropped until it closes (at most 5 s),
 * so that closing does not reset the connection before the client has read
 * the error.
 *
 * Keyspace. One chained hash table (SipHash-1-3 with a random key) that
 * grows and shrinks by incremental rehashing, as Redis's dict does: each
 * access moves one bucket, so no operation pays for the whole table. Keys
 * and values are binary safe. Expiry is lazy (an expired key found by a
 * command is deleted first) plus a bounded sweep every 100 ms while keys
 * with a time to live exist: a proact_timer() on the first watcher, armed by
 * whichever thread sees such keys and none armed, visits 64 buckets and goes
 * on (at most 16 rounds) while a quarter of what it saw had expired. Times
 * are CLOCK_MONOTONIC; EXAT and PXAT are converted from the wall clock when
 * the command runs.
 *
 * Threads. --threads N runs N watchers, one per thread, each with its own
 * SO_REUSEPORT listener on the same port. They share the one keyspace under
 * one mutex, taken once per read for all of that read's commands (with one
 * thread there is no lock at all). Measured simplicity over sharding: on two
 * cores the load generator needs one of them anyway.
 *
 * The threads, listeners, accepts and stop signals (SIGINT, SIGTERM) are
 * util.c's shards, as in echo_server; on exit one summary line is printed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "proact.h"
#include "util.h"

#define POOL_BUF_SIZE 16384 /* pool buffer size, the cap of each read */
#define ACCEPTS       16    /* accepts pending per listener */
#define MAX_THREADS   64

#define MAX_BULK     (64u << 20)             /* longest bulk string */
#define MAX_ARGS     (1024 * 1024)           /* elements of one multibulk */
#define INLINE_MAX   (64u << 10)             /* a header line or an inline command */
#define QUERY_MAX    (MAX_BULK + INLINE_MAX) /* a command spanning reads, in all */
#define OUT_CHUNK    16384                   /* output buffers on the free list */
#define OUT_SPARE    1024                    /* free-list length per thread */
#define OUT_PAUSE    (1u << 20)              /* replies waiting that pause reads */
#define LINGER_MS    5000                    /* reading after an error reply */
#define SWEEP_MS     100                     /* expiry sweep period */
#define SWEEP_SPAN   64                      /* buckets per sweep round */
#define SWEEP_ROUNDS 16
#define TABLE_MIN    16

/* ==== keyspace =========================================================== */

struct entry {
	struct entry *next;
	uint64_t hash;
	int64_t expire; /* CLOCK_MONOTONIC ms; 0: none */
	char *val;      /* NULL when vlen is 0 */
	uint32_t vlen, klen;
	char key[];
};

struct table {
	struct entry **b; /* NULL: no table */
	size_t mask;      /* buckets - 1 */
};

struct db {
	struct table t[2]; /* t[1]: the table being rehashed into */
	size_t rehash;     /* next bucket of t[0] to move while t[1] exists */
	size_t count, volatile_keys;
	size_t sweep;     /* the sweep's cursor */
	bool sweep_armed; /* its timer is pending */
	uint64_t k0, k1;
	bool shared; /* several threads: take the lock */
	pthread_mutex_t lock;
};

static struct db db = {.lock = PTHREAD_MUTEX_INITIALIZER};

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND(v0, v1, v2, v3)                                                                   \
	do {                                                                                       \
		v0 += v1;                                                                          \
		v1 = ROTL(v1, 13);                                                                 \
		v1 ^= v0;                                                                          \
		v0 = ROTL(v0, 32);                                                                 \
		v2 += v3;                                                                          \
		v3 = ROTL(v3, 16);                                                                 \
		v3 ^= v2;                                                                          \
		v0 += v3;                                                                          \
		v3 = ROTL(v3, 21);                                                                 \
		v3 ^= v0;                                                                          \
		v2 += v1;                                                                          \
		v1 = ROTL(v1, 17);                                                                 \
		v1 ^= v2;                                                                          \
		v2 = ROTL(v2, 32);                                                                 \
	} while (0)

/* Little-endian whatever the machine: the same key hashes the same on
   s390x, and no unaligned load. */
static uint64_t load_le64(const unsigned char *p, size_t n)
{
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* SipHash-1-3: a keyed hash, so clients cannot pick keys that collide. */
static uint64_t siphash(const void *data, size_t len, uint64_t k0, uint64_t k1)
{
	const unsigned char *p = data;
	uint64_t v0 = k0 ^ 0x736f6d6570736575ull, v1 = k1 ^ 0x646f72616e646f6dull;
	uint64_t v2 = k0 ^ 0x6c7967656e657261ull, v3 = k1 ^ 0x7465646279746573ull;
	size_t whole = len & ~(size_t)7;
	for (size_t i = 0; i < whole; i += 8) {
		uint64_t m = load_le64(p + i, 8);
		v3 ^= m;
		SIPROUND(v0, v1, v2, v3);
		v0 ^= m;
	}
	uint64_t b = ((uint64_t)len << 56) | load_le64(p + whole, len & 7);
	v3 ^= b;
	SIPROUND(v0, v1, v2, v3);
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND(v0, v1, v2, v3);
	SIPROUND(v0, v1, v2, v3);
	SIPROUND(v0, v1, v2, v3);
	return v0 ^ v1 ^ v2 ^ v3;
}

static void db_seed(struct db *d)
{
	unsigned char k[16];
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || read(fd, k, sizeof(k)) != (ssize_t)sizeof(k)) {
		/* No entropy device: still a key of this run, not a constant. */
		uint64_t t = proact_now() ^ ((uint64_t)getpid() << 32);
		memcpy(k, &t, 8);
		memcpy(k + 8, &(uint64_t){t * 0x9e3779b97f4a7c15ull}, 8);
	}
	if (fd >= 0)
		close(fd);
	d->k0 = load_le64(k, 8);
	d->k1 = load_le64(k + 8, 8);
}

static void db_lock(struct db *d)
{
	if (d->shared)
		pthread_mutex_lock(&d->lock);
}

static void db_unlock(struct db *d)
{
	if (d->shared)
		pthread_mutex_unlock(&d->lock);
}

static bool db_rehashing(const struct db *d)
{
	return d->t[1].b != NULL;
}

/* Starts moving every entry into a table of @size buckets; nothing happens
   if a move is under way or memory is short (the table just stays fuller). */
static void db_resize(struct db *d, size_t size)
{
	if (db_rehashing(d) || size > SIZE_MAX / sizeof(struct entry *))
		return;
	struct entry **b = calloc(size, sizeof(*b));
	if (!b)
		return;
	if (!d->t[0].b) {
		d->t[0] = (struct table){b, size - 1};
		return;
	}
	d->t[1] = (struct table){b, size - 1};
	d->rehash = 0;
}

/* One step of the incremental rehash: one bucket moved, or at most ten
   empty ones passed over. */
static void db_step(struct db *d)
{
	if (!db_rehashing(d))
		return;
	struct table *from = &d->t[0], *to = &d->t[1];
	for (int empty = 0; d->rehash <= from->mask && !from->b[d->rehash]; d->rehash++)
		if (++empty == 10)
			return;
	if (d->rehash <= from->mask) {
		struct entry *e = from->b[d->rehash], *next;
		from->b[d->rehash++] = NULL;
		for (; e; e = next) {
			next = e->next;
			e->next = to->b[e->hash & to->mask];
			to->b[e->hash & to->mask] = e;
		}
	}
	if (d->rehash > from->mask) {
		free(from->b);
		*from = *to;
		*to = (struct table){0};
	}
}

static uint64_t db_hash(const struct db *d, const char *k, size_t kl)
{
	return siphash(k, kl, d->k0, d->k1);
}

/* The link that points at @k's entry, or NULL. */
static struct entry **db_slot(struct db *d, const char *k, size_t kl, uint64_t h)
{
	for (int i = 0; i < 2 && d->t[i].b; i++) {
		struct entry **p = &d->t[i].b[h & d->t[i].mask];
		for (; *p; p = &(*p)->next)
			if ((*p)->hash == h && (*p)->klen == kl && !memcmp((*p)->key, k, kl))
				return p;
	}
	return NULL;
}

static void entry_free(struct entry *e)
{
	free(e->val);
	free(e);
}

static void db_shrink_maybe(struct db *d)
{
	size_t size = d->t[0].mask + 1;
	if (db_rehashing(d) || size <= TABLE_MIN || d->count >= size / 8)
		return;
	size_t want = TABLE_MIN;
	while (want < d->count * 2)
		want *= 2;
	db_resize(d, want);
}

static void db_unlink(struct db *d, struct entry **p)
{
	struct entry *e = *p;
	*p = e->next;
	d->count--;
	if (e->expire)
		d->volatile_keys--;
	entry_free(e);
	db_shrink_maybe(d);
}

static bool expired(const struct entry *e, int64_t now)
{
	return e->expire && e->expire <= now;
}

/* The live entry of @k (an expired one is deleted first), and its link. */
static struct entry *db_find(struct db *d, const char *k, size_t kl, int64_t now,
                             struct entry ***link)
{
	db_step(d);
	struct entry **p = db_slot(d, k, kl, db_hash(d, k, kl));
	if (p && expired(*p, now)) {
		db_unlink(d, p);
		p = NULL;
	}
	if (link)
		*link = p;
	return p ? *p : NULL;
}

static struct entry *db_get(struct db *d, const char *k, size_t kl, int64_t now)
{
	return db_find(d, k, kl, now, NULL);
}

static void set_expire(struct db *d, struct entry *e, int64_t expire)
{
	d->volatile_keys += (expire != 0) - (e->expire != 0);
	e->expire = expire;
}

/* Gives @e the value @v; false when out of memory (the old value stays). */
static bool entry_set(struct entry *e, const char *v, size_t vl)
{
	if (vl != e->vlen) {
		char *nv = vl ? malloc(vl) : NULL;
		if (vl && !nv)
			return false;
		free(e->val);
		e->val = nv;
		e->vlen = (uint32_t)vl;
	}
	if (vl)
		memcpy(e->val, v, vl);
	return true;
}

/* A new entry for @k (known absent) with value @v, no expiry; NULL when out
   of memory. */
static struct entry *db_add(struct db *d, const char *k, size_t kl, const char *v, size_t vl)
{
	if (!d->t[0].b)
		db_resize(d, TABLE_MIN);
	struct entry *e = malloc(sizeof(*e) + kl);
	if (!e || !d->t[0].b) {
		free(e);
		return NULL;
	}
	*e = (struct entry){.hash = db_hash(d, k, kl), .klen = (uint32_t)kl};
	memcpy(e->key, k, kl);
	if (!entry_set(e, v, vl)) {
		free(e);
		return NULL;
	}
	struct table *t = &d->t[db_rehashing(d)];
	e->next = t->b[e->hash & t->mask];
	t->b[e->hash & t->mask] = e;
	if (++d->count > d->t[0].mask)
		db_resize(d, (d->t[0].mask + 1) * 2);
	return e;
}

/* Sets @k to @v, clearing any time to live; NULL when out of memory. */
static struct entry *db_put(struct db *d, const char *k, size_t kl, const char *v, size_t vl,
                            int64_t now)
{
	struct entry *e = db_get(d, k, kl, now);
	if (!e)
		return db_add(d, k, kl, v, vl);
	if (!entry_set(e, v, vl))
		return NULL;
	set_expire(d, e, 0);
	return e;
}

static bool db_del(struct db *d, const char *k, size_t kl, int64_t now)
{
	struct entry **p;
	if (!db_find(d, k, kl, now, &p))
		return false;
	db_unlink(d, p);
	return true;
}

static void db_flush(struct db *d)
{
	for (int i = 0; i < 2; i++) {
		for (size_t j = 0; d->t[i].b && j <= d->t[i].mask; j++) {
			for (struct entry *e = d->t[i].b[j], *next; e; e = next) {
				next = e->next;
				entry_free(e);
			}
		}
		free(d->t[i].b);
		d->t[i] = (struct table){0};
	}
	d->count = d->volatile_keys = d->rehash = d->sweep = 0;
}

/* Deletes the expired entries of bucket @i of each table; counts what it
   saw and what it deleted. */
static void sweep_bucket(struct db *d, size_t i, size_t *seen, size_t *gone, int64_t now)
{
	for (int t = 0; t < 2 && d->t[t].b; t++) {
		struct entry **p = &d->t[t].b[i & d->t[t].mask];
		while (*p) {
			(*seen)++;
			if (expired(*p, now)) {
				struct entry *e = *p;
				*p = e->next;
				d->count--;
				d->volatile_keys--;
				entry_free(e);
				(*gone)++;
			} else {
				p = &(*p)->next;
			}
		}
	}
}

/* The periodic part of expiry: bounded, see the top of the file. */
static void db_sweep(struct db *d, int64_t now)
{
	for (int round = 0; round < SWEEP_ROUNDS && d->volatile_keys && d->t[0].b; round++) {
		size_t seen = 0, gone = 0;
		for (int i = 0; i < SWEEP_SPAN; i++)
			sweep_bucket(d, d->sweep++, &seen, &gone, now);
		if (gone * 4 < seen || seen == 0)
			break;
	}
	db_shrink_maybe(d);
}

/* ==== connections and servers ============================================ */

struct link {
	struct link *prev, *next;
};

struct obuf {
	char *data;
	size_t len, cap;
};

/* One argument: its place from the start of the command. */
struct arg {
	size_t off, len;
};

/* Where the parse of a command stopped, so that the next read resumes it
   instead of parsing the command again from its start. */
struct parse {
	size_t pos;       /* bytes of the command parsed (inline: scanned) */
	long long argc;   /* multibulk: elements announced; 0: not started */
	long long bulk;   /* length of the bulk awaited; -1: its $ line */
	uint32_t nargs;   /* elements parsed */
	uint32_t cap;     /* room in args */
	struct arg *args; /* owned while a command spans reads */
};

struct conn {
	struct link link; /* first: a struct link * of a conn is the conn */
	int fd;
	bool reading, writing; /* a read pending, a write in flight */
	bool quitting;         /* reply, then end the connection */
	bool shut;             /* the shutdown and the draining read are queued */
	bool closing;          /* proact_free was called */
	bool oom;              /* a reply did not fit in memory */
	struct obuf out;       /* replies not yet handed to a write */
	struct obuf wout;      /* the write in flight */
	struct obuf in;        /* a command spanning reads */
	struct parse ps;
	uint64_t deadline; /* ns: the partial command's, then the linger's */
};

/* One per thread: its watcher, listener and loop (the shard), its
   connections, and what it keeps to reuse. */
struct server {
	struct ex_shard sh; /* first: the shard's address is the server's */
	struct link live;
	int64_t now;            /* CLOCK_MONOTONIC ms, read once per wait */
	char *spare[OUT_SPARE]; /* free OUT_CHUNK buffers */
	int nspare;
	struct arg *args; /* the parse's arguments when no connection holds them */
	uint32_t args_cap;
	uint64_t accepted, commands, protocol_errors, resets, errors;
};

struct options {
	struct ex_server_options net;
	unsigned threads;
	uint64_t partial_ms;
};

static struct server sv[MAX_THREADS];
static uint64_t partial_ns;

static const char usage_text[] = "usage: resp_server [--host ADDR] [--port N] [--backend NAME] "
                                 "[--threads N] [--partial-timeout MS]\n";

/* ---- output -------------------------------------------------------------- */

/* Room for @n more bytes at the end of @b, doubling from @first bytes;
   NULL when out of memory. */
static char *buf_room(struct obuf *b, size_t n, size_t first)
{
	if (b->cap - b->len >= n)
		return b->data + b->len;
	size_t cap = b->cap ? b->cap : first;
	while (cap - b->len < n) {
		if (cap > SIZE_MAX / 2)
			return NULL;
		cap *= 2;
	}
	char *p = realloc(b->data, cap);
	if (!p)
		return NULL;
	b->data = p;
	b->cap = cap;
	return p + b->len;
}

/* The same for replies: a first buffer from the thread's free list. */
static char *out_room(struct server *s, struct obuf *o, size_t n)
{
	if (!o->data && n <= OUT_CHUNK && s->nspare) {
		o->data = s->spare[--s->nspare];
		o->cap = OUT_CHUNK;
	}
	return buf_room(o, n, OUT_CHUNK);
}

static void out_release(struct server *s, struct obuf *o)
{
	if (o->cap == OUT_CHUNK && s->nspare < OUT_SPARE)
		s->spare[s->nspare++] = o->data;
	else
		free(o->data);
	*o = (struct obuf){0};
}

/* The reply context: the connection and its thread. */
struct reply {
	struct server *s;
	struct conn *c;
};

static char *room(struct reply *r, size_t n)
{
	char *p = out_room(r->s, &r->c->out, n);
	if (!p)
		r->c->oom = true;
	return p;
}

static void add(struct reply *r, const void *data, size_t n)
{
	char *p = room(r, n);
	if (p) {
		memcpy(p, data, n);
		r->c->out.len += n;
	}
}

#define ADD_LIT(r, lit) add(r, lit, sizeof(lit) - 1)

static size_t fmt_u64(char *dst, uint64_t v)
{
	char tmp[20];
	size_t n = 0;
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (size_t i = 0; i < n; i++)
		dst[i] = tmp[n - 1 - i];
	return n;
}

/* ":123\r\n", "$5\r\n", "*2\r\n": a type byte, a number, CRLF. */
static void add_num(struct reply *r, char type, long long v)
{
	char *p = room(r, 24);
	if (!p)
		return;
	size_t n = 0;
	p[n++] = type;
	if (v < 0)
		p[n++] = '-';
	n += fmt_u64(p + n, v < 0 ? 0 - (uint64_t)v : (uint64_t)v);
	p[n++] = '\r';
	p[n++] = '\n';
	r->c->out.len += n;
}

static void add_bulk(struct reply *r, const char *data, size_t len)
{
	char *p = room(r, len + 24);
	if (!p)
		return;
	size_t n = 0;
	p[n++] = '$';
	n += fmt_u64(p + n, len);
	p[n++] = '\r';
	p[n++] = '\n';
	memcpy(p + n, data, len);
	n += len;
	p[n++] = '\r';
	p[n++] = '\n';
	r->c->out.len += n;
}

static void add_nil(struct reply *r)
{
	ADD_LIT(r, "$-1\r\n");
}

static void add_entry(struct reply *r, const struct entry *e)
{
	if (e)
		add_bulk(r, e->val, e->vlen);
	else
		add_nil(r);
}

/* "-ERR " and the message; CR and LF inside become spaces, as in Redis, so
   the reply stays one line whatever the client sent. */
static void add_error(struct reply *r, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(msg))
		n = sizeof(msg) - 1;
	for (int i = 0; i < n; i++)
		if (msg[i] == '\r' || msg[i] == '\n')
			msg[i] = ' ';
	ADD_LIT(r, "-ERR ");
	add(r, msg, (size_t)n);
	ADD_LIT(r, "\r\n");
}

/* ==== commands ============================================================ */

/* A command being run: its arguments and where the reply goes. */
struct cmd {
	struct reply r;
	struct db *d;
	int64_t now;
	char *base;
	const struct arg *args;
	uint32_t argc;
};

static const char *A(const struct cmd *x, uint32_t i)
{
	return x->base + x->args[i].off;
}

static size_t L(const struct cmd *x, uint32_t i)
{
	return x->args[i].len;
}

/* Argument @i equals @word, ignoring case. */
static bool is(const struct cmd *x, uint32_t i, const char *word)
{
	size_t n = strlen(word);
	return L(x, i) == n && !strncasecmp(A(x, i), word, n);
}

/* Redis's string2ll: an optional '-', no '+', no leading zero, no
   space, at most 20 characters, within long long. */
static bool parse_ll(const char *p, size_t n, long long *out)
{
	if (n == 0 || n > 20)
		return false;
	if (n == 1 && p[0] == '0') {
		*out = 0;
		return true;
	}
	bool neg = p[0] == '-';
	size_t i = neg;
	if (i == n || p[i] < '1' || p[i] > '9')
		return false;
	unsigned long long v = 0;
	for (; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		unsigned d = (unsigned)(p[i] - '0');
		if (v > (ULLONG_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	if (neg) {
		if (v > (unsigned long long)LLONG_MAX + 1)
			return false;
		*out = v == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN : -(long long)v;
	} else {
		if (v > LLONG_MAX)
			return false;
		*out = (long long)v;
	}
	return true;
}

static bool arg_ll(struct cmd *x, uint32_t i, long long *v)
{
	if (parse_ll(A(x, i), L(x, i), v))
		return true;
	ADD_LIT(&x->r, "-ERR value is not an integer or out of range\r\n");
	return false;
}

static void reply_ok(struct cmd *x)
{
	ADD_LIT(&x->r, "+OK\r\n");
}

static void reply_oom(struct cmd *x)
{
	ADD_LIT(&x->r, "-OOM command not allowed when used memory > 'maxmemory'.\r\n");
}

static void cmd_ping(struct cmd *x)
{
	if (x->argc == 1)
		ADD_LIT(&x->r, "+PONG\r\n");
	else if (x->argc == 2)
		add_bulk(&x->r, A(x, 1), L(x, 1));
	else
		ADD_LIT(&x->r, "-ERR wrong number of arguments for 'ping' command\r\n");
}

static void cmd_echo(struct cmd *x)
{
	add_bulk(&x->r, A(x, 1), L(x, 1));
}

static void cmd_get(struct cmd *x)
{
	add_entry(&x->r, db_get(x->d, A(x, 1), L(x, 1), x->now));
}

static void cmd_strlen(struct cmd *x)
{
	struct entry *e = db_get(x->d, A(x, 1), L(x, 1), x->now);
	add_num(&x->r, ':', e ? e->vlen : 0);
}

/* SET's options, as Redis 7 takes them. */
enum {
	SET_NX = 1,
	SET_XX = 2,
	SET_GET = 4,
	SET_KEEPTTL = 8,
	SET_EX = 16,
	SET_PX = 32,
	SET_EXAT = 64,
	SET_PXAT = 128,
};
#define SET_EXPIRES (SET_EX | SET_PX | SET_EXAT | SET_PXAT)

/* Parses SET's options into *flags and the index of the time argument;
   false (after the reply) on a syntax error. */
static bool set_options(struct cmd *x, unsigned *flags, uint32_t *when)
{
	static const struct {
		const char *name;
		unsigned flag, excludes;
	} opts[] = {
	    {"nx", SET_NX, SET_XX},
	    {"xx", SET_XX, SET_NX},
	    {"get", SET_GET, 0},
	    {"keepttl", SET_KEEPTTL, SET_EXPIRES},
	    {"ex", SET_EX, SET_KEEPTTL | (SET_EXPIRES & ~SET_EX)},
	    {"px", SET_PX, SET_KEEPTTL | (SET_EXPIRES & ~SET_PX)},
	    {"exat", SET_EXAT, SET_KEEPTTL | (SET_EXPIRES & ~SET_EXAT)},
	    {"pxat", SET_PXAT, SET_KEEPTTL | (SET_EXPIRES & ~SET_PXAT)},
	};
	for (uint32_t i = 3; i < x->argc; i++) {
		size_t k = 0;
		while (k < sizeof(opts) / sizeof(opts[0]) && !is(x, i, opts[k].name))
			k++;
		bool timed = k < sizeof(opts) / sizeof(opts[0]) && (opts[k].flag & SET_EXPIRES);
		if (k == sizeof(opts) / sizeof(opts[0]) || (*flags & opts[k].excludes) ||
		    (timed && i + 1 == x->argc)) {
			ADD_LIT(&x->r, "-ERR syntax error\r\n");
			return false;
		}
		*flags |= opts[k].flag;
		if (timed)
			*when = ++i;
	}
	return true;
}

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The expiry time SET asks for, in CLOCK_MONOTONIC ms, with Redis's
   checks; false after the error reply. */
static bool set_expire_time(struct cmd *x, unsigned flags, uint32_t when, int64_t *out)
{
	long long v;
	if (!arg_ll(x, when, &v))
		return false;
	bool secs = flags & (SET_EX | SET_EXAT);
	int64_t wall = wall_ms();
	if (v <= 0 || (secs && v > LLONG_MAX / 1000)) {
		ADD_LIT(&x->r, "-ERR invalid expire time in 'set' command\r\n");
		return false;
	}
	if (secs)
		v *= 1000;
	if (flags & (SET_EX | SET_PX)) {
		if (v > LLONG_MAX - wall) {
			ADD_LIT(&x->r, "-ERR invalid expire time in 'set' command\r\n");
			return false;
		}
		*out = x->now + v;
	} else {
		/* An absolute time: as far from now as it is from the wall clock;
		   in the past it expires at once. */
		long long left = v - wall;
		*out = left <= 0 ? x->now : x->now + left;
	}
	if (*out <= 0)
		*out = 1; /* 0 means "no expiry" */
	return true;
}

static void cmd_set(struct cmd *x)
{
	unsigned flags = 0;
	uint32_t when = 0;
	int64_t expire = 0;
	if (!set_options(x, &flags, &when) ||
	    ((flags & SET_EXPIRES) && !set_expire_time(x, flags, when, &expire)))
		return;
	struct entry *e = db_get(x->d, A(x, 1), L(x, 1), x->now);
	bool skip = ((flags & SET_NX) && e) || ((flags & SET_XX) && !e);
	if (flags & SET_GET)
		add_entry(&x->r, e); /* the old value, before it is replaced */
	if (skip) {
		if (!(flags & SET_GET))
			add_nil(&x->r);
		return;
	}
	if (!e)
		e = db_add(x->d, A(x, 1), L(x, 1), A(x, 2), L(x, 2));
	else if (!entry_set(e, A(x, 2), L(x, 2)))
		e = NULL;
	if (!e) {
		reply_oom(x);
		return;
	}
	if (!(flags & SET_KEEPTTL))
		set_expire(x->d, e, expire);
	if (!(flags & SET_GET))
		reply_ok(x);
}

static void cmd_del(struct cmd *x)
{
	long long n = 0;
	for (uint32_t i = 1; i < x->argc; i++)
		n += db_del(x->d, A(x, i), L(x, i), x->now);
	add_num(&x->r, ':', n);
}

static void cmd_exists(struct cmd *x)
{
	long long n = 0;
	for (uint32_t i = 1; i < x->argc; i++)
		n += db_get(x->d, A(x, i), L(x, i), x->now) != NULL;
	add_num(&x->r, ':', n);
}

static void cmd_mget(struct cmd *x)
{
	add_num(&x->r, '*', x->argc - 1);
	for (uint32_t i = 1; i < x->argc; i++)
		add_entry(&x->r, db_get(x->d, A(x, i), L(x, i), x->now));
}

static void cmd_mset(struct cmd *x)
{
	if (x->argc % 2 == 0) {
		ADD_LIT(&x->r, "-ERR wrong number of arguments for 'mset' command\r\n");
		return;
	}
	for (uint32_t i = 1; i < x->argc; i += 2) {
		if (!db_put(x->d, A(x, i), L(x, i), A(x, i + 1), L(x, i + 1), x->now)) {
			reply_oom(x);
			return;
		}
	}
	reply_ok(x);
}

/* INCR, DECR, INCRBY, DECRBY: adds @by to the integer at argument 1. */
static void incr_by(struct cmd *x, long long by)
{
	struct entry *e = db_get(x->d, A(x, 1), L(x, 1), x->now);
	long long v = 0;
	if (e && !parse_ll(e->val, e->vlen, &v)) {
		ADD_LIT(&x->r, "-ERR value is not an integer or out of range\r\n");
		return;
	}
	if ((by < 0 && v < LLONG_MIN - by) || (by > 0 && v > LLONG_MAX - by)) {
		ADD_LIT(&x->r, "-ERR increment or decrement would overflow\r\n");
		return;
	}
	v += by;
	char text[24];
	size_t n = 0;
	if (v < 0)
		text[n++] = '-';
	n += fmt_u64(text + n, v < 0 ? 0 - (uint64_t)v : (uint64_t)v);
	/* The time to live stays, as in Redis. */
	if (e ? !entry_set(e, text, n) : !db_add(x->d, A(x, 1), L(x, 1), text, n)) {
		reply_oom(x);
		return;
	}
	add_num(&x->r, ':', v);
}

static void cmd_incr(struct cmd *x)
{
	incr_by(x, 1);
}

static void cmd_decr(struct cmd *x)
{
	incr_by(x, -1);
}

static void cmd_incrby(struct cmd *x)
{
	long long by;
	if (arg_ll(x, 2, &by))
		incr_by(x, by);
}

static void cmd_decrby(struct cmd *x)
{
	long long by;
	if (!arg_ll(x, 2, &by))
		return;
	if (by == LLONG_MIN) {
		ADD_LIT(&x->r, "-ERR decrement would overflow\r\n");
		return;
	}
	incr_by(x, -by);
}

static void ttl(struct cmd *x, int64_t unit)
{
	struct entry *e = db_get(x->d, A(x, 1), L(x, 1), x->now);
	if (!e)
		add_num(&x->r, ':', -2);
	else if (!e->expire)
		add_num(&x->r, ':', -1);
	else
		add_num(&x->r, ':', (e->expire - x->now + unit / 2) / unit);
}

static void cmd_ttl(struct cmd *x)
{
	ttl(x, 1000);
}

static void cmd_pttl(struct cmd *x)
{
	ttl(x, 1);
}

static void cmd_dbsize(struct cmd *x)
{
	add_num(&x->r, ':', (long long)x->d->count);
}

static void cmd_flush(struct cmd *x)
{
	if (x->argc > 2 || (x->argc == 2 && !is(x, 1, "async") && !is(x, 1, "sync"))) {
		ADD_LIT(&x->r, "-ERR syntax error\r\n");
		return;
	}
	db_flush(x->d);
	reply_ok(x);
}

static void cmd_select(struct cmd *x)
{
	long long db_index;
	if (!arg_ll(x, 1, &db_index))
		return;
	if (db_index != 0)
		ADD_LIT(&x->r, "-ERR DB index is out of range\r\n");
	else
		reply_ok(x);
}

static void cmd_quit(struct cmd *x)
{
	reply_ok(x);
	x->r.c->quitting = true;
}

static void unknown_subcommand(struct cmd *x, const char *cmd)
{
	add_error(&x->r, "unknown subcommand '%.*s'. Try %s HELP.",
	          (int)(L(x, 1) < 128 ? L(x, 1) : 128), A(x, 1), cmd);
}

static size_t command_count(void);

/* COMMAND with no table: clients take an empty one and go on. */
static void cmd_command(struct cmd *x)
{
	if (x->argc == 1 || is(x, 1, "docs") || is(x, 1, "info") || is(x, 1, "list"))
		ADD_LIT(&x->r, "*0\r\n");
	else if (is(x, 1, "count"))
		add_num(&x->r, ':', (long long)command_count());
	else
		unknown_subcommand(x, "COMMAND");
}

/* CONFIG GET answers what redis-benchmark asks: nothing is saved. */
static void cmd_config(struct cmd *x)
{
	if (!is(x, 1, "get")) {
		unknown_subcommand(x, "CONFIG");
		return;
	}
	if (x->argc < 3) {
		ADD_LIT(&x->r, "-ERR wrong number of arguments for 'config|get' command\r\n");
		return;
	}
	uint32_t n = 0;
	for (uint32_t i = 2; i < x->argc; i++)
		n += is(x, i, "save") || is(x, i, "appendonly");
	add_num(&x->r, '*', 2 * n);
	for (uint32_t i = 2; i < x->argc; i++) {
		if (is(x, i, "save"))
			ADD_LIT(&x->r, "$4\r\nsave\r\n$0\r\n\r\n");
		else if (is(x, i, "appendonly"))
			ADD_LIT(&x->r, "$10\r\nappendonly\r\n$2\r\nno\r\n");
	}
}

/* The table: arity as in Redis (n: exactly n arguments with the name; -n:
   at least n). */
static const struct command {
	const char *name;
	size_t len;
	int arity;
	void (*run)(struct cmd *);
} commands[] = {
#define CMD(name, arity, run)                                                                      \
	{                                                                                          \
		name, sizeof(name) - 1, arity, run                                                 \
	}
    CMD("get", 2, cmd_get),        CMD("set", -3, cmd_set),       CMD("ping", -1, cmd_ping),
    CMD("incr", 2, cmd_incr),      CMD("mget", -2, cmd_mget),     CMD("mset", -3, cmd_mset),
    CMD("del", -2, cmd_del),       CMD("exists", -2, cmd_exists), CMD("echo", 2, cmd_echo),
    CMD("decr", 2, cmd_decr),      CMD("incrby", 3, cmd_incrby),  CMD("decrby", 3, cmd_decrby),
    CMD("strlen", 2, cmd_strlen),  CMD("ttl", 2, cmd_ttl),        CMD("pttl", 2, cmd_pttl),
    CMD("dbsize", 1, cmd_dbsize),  CMD("flushdb", -1, cmd_flush), CMD("flushall", -1, cmd_flush),
    CMD("select", 2, cmd_select),  CMD("quit", -1, cmd_quit),     CMD("command", -1, cmd_command),
    CMD("config", -2, cmd_config),
#undef CMD
};

static size_t command_count(void)
{
	return sizeof(commands) / sizeof(commands[0]);
}

static const struct command *lookup(const char *name, size_t len)
{
	for (size_t i = 0; i < command_count(); i++) {
		const struct command *c = &commands[i];
		if (c->len == len && !strncasecmp(c->name, name, len))
			return c;
	}
	return NULL;
}

/* Redis's text: the name, then the first arguments quoted, up to 128
   characters of them. */
static void unknown_command(struct cmd *x)
{
	char args[160];
	size_t n = 0;
	for (uint32_t i = 1; i < x->argc && n < 128; i++) {
		int k = snprintf(args + n, sizeof(args) - n, "'%.*s' ",
		                 (int)(L(x, i) < 128 - n ? L(x, i) : 128 - n), A(x, i));
		if (k > 0)
			n += (size_t)k < sizeof(args) - n ? (size_t)k : sizeof(args) - n - 1;
	}
	args[n] = 0;
	add_error(&x->r, "unknown command '%.*s', with args beginning with: %s",
	          (int)(L(x, 0) < 128 ? L(x, 0) : 128), A(x, 0), args);
}

static void run_command(struct cmd *x)
{
	const struct command *c = lookup(A(x, 0), L(x, 0));
	if (!c) {
		unknown_command(x);
		return;
	}
	if ((c->arity > 0 && x->argc != (uint32_t)c->arity) ||
	    (c->arity < 0 && x->argc < (uint32_t)-c->arity)) {
		add_error(&x->r, "wrong number of arguments for '%s' command", c->name);
		return;
	}
	c->run(x);
}

/* ==== the parser ========================================================== */

enum { P_DONE, P_MORE, P_ERROR };

#define ERR_MAX 48 /* a parse error's text */

static int parse_fail(char *err, const char *msg)
{
	snprintf(err, ERR_MAX, "%s", msg);
	return P_ERROR;
}

static bool add_arg(struct parse *ps, size_t off, size_t len)
{
	if (ps->nargs == ps->cap) {
		uint32_t cap = ps->cap ? ps->cap * 2 : 16;
		struct arg *a = realloc(ps->args, cap * sizeof(*a));
		if (!a)
			return false;
		ps->args = a;
		ps->cap = cap;
	}
	ps->args[ps->nargs++] = (struct arg){off, len};
	return true;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static int hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The byte of a backslash escape inside double quotes at p[0] = '\\';
 *used: how many bytes it took. */
static char unescape(const char *p, const char *end, size_t *used)
{
	if (end - p >= 4 && p[1] == 'x' && hex(p[2]) >= 0 && hex(p[3]) >= 0) {
		*used = 4;
		return (char)(hex(p[2]) * 16 + hex(p[3]));
	}
	*used = 2;
	switch (p[1]) {
	case 'n':
		return '\n';
	case 'r':
		return '\r';
	case 't':
		return '\t';
	case 'b':
		return '\b';
	case 'a':
		return '\a';
	default:
		return p[1];
	}
}

/* One inline argument starting at *pp (not a space), unquoted into place
   at @dst, as Redis's sdssplitargs does; false for unbalanced quotes. */
static bool inline_arg(char **pp, char *end, char *dst, size_t *len)
{
	char *p = *pp, *w = dst;
	char quote = 0;
	while (p < end) {
		if (!quote) {
			if (is_space(*p))
				break;
			if (*p == '"' || *p == '\'')
				quote = *p++;
			else
				*w++ = *p++;
			continue;
		}
		if (*p == quote) {
			/* A closing quote must end the argument. */
			if (p + 1 < end && !is_space(p[1]))
				return false;
			quote = 0;
			p++;
			break;
		}
		if (*p == '\\' && p + 1 < end && (quote == '"' || p[1] == '\'')) {
			size_t used = 2;
			*w++ = quote == '"' ? unescape(p, end, &used) : '\'';
			p += used;
		} else {
			*w++ = *p++;
		}
	}
	if (quote)
		return false;
	*pp = p;
	*len = (size_t)(w - dst);
	return true;
}

/* An inline command: one line of arguments separated by spaces. */
static int parse_inline(struct parse *ps, char *data, size_t len, char *err)
{
	char *nl = memchr(data + ps->pos, '\n', len - ps->pos);
	if (!nl) {
		ps->pos = len;
		return len > INLINE_MAX ? parse_fail(err, "too big inline request") : P_MORE;
	}
	char *p = data, *end = nl;
	while (p < end) {
		while (p < end && is_space(*p))
			p++;
		if (p == end)
			break;
		char *start = p;
		size_t n;
		if (!inline_arg(&p, end, start, &n))
			return parse_fail(err, "unbalanced quotes in request");
		if (!add_arg(ps, (size_t)(start - data), n))
			return parse_fail(err, "out of memory");
	}
	ps->pos = (size_t)(nl - data) + 1;
	return P_DONE;
}

/* A "*N" or "$N" line at data[ps->pos]: its number (LLONG_MIN if it is
   no number), P_MORE, or P_ERROR when 64 KiB came without a CR. */
static int parse_line(struct parse *ps, const char *data, size_t len, long long *v)
{
	const char *p = data + ps->pos + 1;
	size_t avail = len - ps->pos - 1;
	const char *cr = memchr(p, '\r', avail);
	if (!cr)
		return avail > INLINE_MAX ? P_ERROR : P_MORE;
	if ((size_t)(cr - p) + 2 > avail)
		return P_MORE; /* the \n is not there yet */
	if (cr[1] != '\n' || !parse_ll(p, (size_t)(cr - p), v))
		*v = LLONG_MIN; /* invalid: the caller words it */
	ps->pos = (size_t)(cr - data) + 2;
	return P_DONE;
}

/* A multibulk command (data[0] == '*'), resumed where ps stopped. */
static int parse_multibulk(struct parse *ps, char *data, size_t len, char *err)
{
	long long v;
	if (ps->argc == 0) {
		int rc = parse_line(ps, data, len, &v);
		if (rc != P_DONE)
			return rc == P_MORE ? rc : parse_fail(err, "too big mbulk count string");
		if (v == LLONG_MIN || v > MAX_ARGS)
			return parse_fail(err, "invalid multibulk length");
		if (v <= 0)
			return P_DONE; /* an empty command: skipped, as Redis does */
		ps->argc = v;
		ps->bulk = -1;
	}
	while (ps->nargs < ps->argc) {
		if (ps->bulk < 0) {
			if (ps->pos == len)
				return P_MORE;
			if (data[ps->pos] != '$') {
				snprintf(err, ERR_MAX, "expected '$', got '%c'", data[ps->pos]);
				return P_ERROR;
			}
			int rc = parse_line(ps, data, len, &v);
			if (rc != P_DONE)
				return rc == P_MORE ? rc
				                    : parse_fail(err, "too big bulk count string");
			if (v < 0 || v > MAX_BULK)
				return parse_fail(err, "invalid bulk length");
			ps->bulk = v;
		}
		size_t n = (size_t)ps->bulk;
		if (len - ps->pos < n + 2)
			return P_MORE;
		if (data[ps->pos + n] != '\r' || data[ps->pos + n + 1] != '\n')
			return parse_fail(err, "bulk data not followed by CRLF");
		if (!add_arg(ps, ps->pos, n))
			return parse_fail(err, "out of memory");
		ps->pos += n + 2;
		ps->bulk = -1;
	}
	return P_DONE;
}

/* Parses one command from data[0..len), resuming *ps. */
static int parse(struct parse *ps, char *data, size_t len, char *err)
{
	if (data[0] == '*')
		return parse_multibulk(ps, data, len, err);
	return parse_inline(ps, data, len, err);
}

static void parse_reset(struct parse *ps)
{
	ps->pos = 0;
	ps->argc = 0;
	ps->bulk = -1;
	ps->nargs = 0;
}

/* ==== requests ============================================================= */

static void conn_close(struct server *s, struct conn *c);

static void refused(void *arg, const struct proact_request *r, int err)
{
	struct server *s = arg;
	if (ex_shard_refused(&s->sh, r, err))
		return;
	struct conn *c = r->ctx;
	if (err != -EALREADY)
		s->errors++;
	conn_close(s, c);
}

static void queue(struct server *s, struct proact_request r)
{
	ex_batch_queue(&s->sh.reqs, r);
}

/* A pool read; while a command is partial, it must be whole by its
   deadline. */
static void queue_read(struct server *s, struct conn *c)
{
	uint64_t deadline = (c->in.len || c->quitting) ? c->deadline : 0;
	c->reading = true;
	queue(s, (struct proact_request){.fd = c->fd,
	                                 .op = PROACT_OP_READ,
	                                 .len = POOL_BUF_SIZE,
	                                 .deadline = deadline,
	                                 .ctx = c});
}

/* Hands the replies made so far to a write, unless one is in flight. */
static void flush(struct server *s, struct conn *c)
{
	if (c->writing || c->out.len == 0)
		return;
	c->wout = c->out;
	c->out = (struct obuf){0};
	c->writing = true;
	queue(s, (struct proact_request){.fd = c->fd,
	                                 .op = PROACT_OP_WRITE,
	                                 .buf = c->wout.data,
	                                 .len = c->wout.len,
	                                 .ctx = c});
}

/* Once every reply is handed to a write: shut the write side down behind
   them and read (and drop) what the client still sends until it closes. */
static void finish_quit(struct server *s, struct conn *c)
{
	if (!c->quitting || c->shut || c->out.len)
		return;
	c->shut = true;
	c->deadline = proact_deadline_in(LINGER_MS);
	queue(s, (struct proact_request){.fd = c->fd, .op = PROACT_OP_SHUTDOWN, .ctx = c});
	if (!c->reading)
		queue_read(s, c);
}

static bool paused(const struct conn *c)
{
	return c->out.len >= OUT_PAUSE;
}

/* ==== connections ========================================================= */

static void args_return(struct server *s, struct parse *ps)
{
	if (!s->args) {
		s->args = ps->args;
		s->args_cap = ps->cap;
	} else {
		free(ps->args);
	}
	ps->args = NULL;
	ps->cap = 0;
}

static void args_borrow(struct server *s, struct parse *ps)
{
	if (ps->args)
		return;
	ps->args = s->args;
	ps->cap = s->args_cap;
	s->args = NULL;
	s->args_cap = 0;
}

static void conn_release(struct server *s, struct conn *c)
{
	c->link.prev->next = c->link.next;
	c->link.next->prev = c->link.prev;
	out_release(s, &c->out);
	out_release(s, &c->wout);
	free(c->in.data);
	free(c->ps.args);
	free(c);
}

static void conn_close(struct server *s, struct conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	if (ex_free_fd(s->sh.w, c->fd, c) == -ENOENT)
		conn_release(s, c);
}

static void conn_open(struct ex_shard *sh, int fd)
{
	struct server *s = (struct server *)sh;
	struct conn *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		s->errors++;
		return;
	}
	c->fd = fd;
	c->ps.bulk = -1;
	c->link = (struct link){.prev = &s->live, .next = s->live.next};
	s->live.next->prev = &c->link;
	s->live.next = &c->link;
	s->accepted++;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	queue_read(s, c);
}

static void protocol_error(struct server *s, struct conn *c, const char *err)
{
	struct reply r = {s, c};
	add_error(&r, "Protocol error: %s", err);
	s->protocol_errors++;
	c->quitting = true;
}

/* Runs the whole commands at the start of data[0..len); returns the bytes
   they took. A partial command at the end stays parsed in c->ps. */
static size_t run_commands(struct server *s, struct conn *c, char *data, size_t len)
{
	size_t done = 0;
	struct cmd x = {.r = {s, c}, .d = &db, .now = s->now};
	while (done < len && !c->quitting && !c->oom) {
		char err[ERR_MAX];
		args_borrow(s, &c->ps);
		int rc = parse(&c->ps, data + done, len - done, err);
		if (rc == P_MORE)
			break;
		if (rc == P_ERROR) {
			protocol_error(s, c, err);
			break;
		}
		if (c->ps.nargs) {
			x.base = data + done;
			x.args = c->ps.args;
			x.argc = c->ps.nargs;
			run_command(&x);
			s->commands++;
		}
		done += c->ps.pos;
		parse_reset(&c->ps);
	}
	if (c->ps.pos == 0 && c->ps.argc == 0)
		args_return(s, &c->ps);
	return done;
}

static bool in_append(struct obuf *in, const char *data, size_t n)
{
	char *p = buf_room(in, n, 256);
	if (!p)
		return false;
	memcpy(p, data, n);
	in->len += n;
	return true;
}

/* After the commands of a read ran: keeps the partial command at
   data[done..len) for the next read. @buffered: data is c->in, whose tail
   moves to its front (and which goes once it holds nothing); else the tail
   of the pool buffer is copied into c->in, whose deadline starts now. */
static void keep_partial(struct server *s, struct conn *c, char *data, size_t done, size_t len,
                         bool buffered)
{
	size_t rest = len - done;
	if (rest > QUERY_MAX) {
		protocol_error(s, c, "command larger than the 64 MiB query buffer limit");
		return;
	}
	if (!buffered) {
		if (rest && partial_ns)
			c->deadline = proact_now() + partial_ns;
		if (rest && !in_append(&c->in, data + done, rest))
			c->oom = true;
		return;
	}
	memmove(c->in.data, c->in.data + done, rest);
	c->in.len = rest;
	if (rest == 0) {
		free(c->in.data);
		c->in = (struct obuf){0};
	}
}

/* The commands of one read: from the pool buffer itself, unless a partial
   command waits for these bytes. */
static void consume(struct server *s, struct conn *c, char *data, size_t len)
{
	bool buffered = c->in.len > 0;
	if (buffered) {
		if (!in_append(&c->in, data, len)) {
			c->oom = true;
			return;
		}
		data = c->in.data;
		len = c->in.len;
	}
	size_t done = run_commands(s, c, data, len);
	if (!c->quitting)
		keep_partial(s, c, data, done, len, buffered);
}

/* ==== completions ========================================================= */

/* After an error reply or QUIT: what comes is dropped until end of stream,
   an error or the linger deadline. */
static void on_drain(struct server *s, struct conn *c, const struct proact_completion *r)
{
	if (r->error || r->size == 0)
		conn_close(s, c);
	else
		queue_read(s, c);
}

/* The sweep's timer: its ctx, and no fd. */
static char sweep_tag;

/* Arms the sweep on the first watcher (any thread may: submissions are
   thread-safe) when keys with a time to live exist and it is not armed.
   Under the keyspace lock. A refused timer is tried again after the next
   read. */
static void arm_sweep(void)
{
	if (!db.volatile_keys || db.sweep_armed)
		return;
	db.sweep_armed =
	    proact_timer(sv[0].sh.w, proact_deadline_in(SWEEP_MS), &sweep_tag, NULL) == 0;
}

static void on_sweep(struct server *s, const struct proact_completion *r)
{
	db_lock(&db);
	db.sweep_armed = false;
	if (!r->error)
		db_sweep(&db, s->now);
	arm_sweep();
	db_unlock(&db);
}

static void on_read(struct server *s, struct conn *c, const struct proact_completion *r)
{
	c->reading = false;
	if (c->closing)
		return;
	if (c->shut) {
		on_drain(s, c, r);
		return;
	}
	if (r->error == ETIMEDOUT) {
		protocol_error(s, c, "timeout waiting for the rest of the command");
	} else if (r->error || r->size == 0) {
		ex_count_failure(r->error, &s->resets, &s->errors);
		conn_close(s, c);
		return;
	} else {
		db_lock(&db);
		consume(s, c, r->buf, r->size);
		arm_sweep();
		db_unlock(&db);
	}
	if (c->oom) {
		s->errors++;
		conn_close(s, c);
		return;
	}
	flush(s, c);
	finish_quit(s, c);
	if (!c->quitting && !paused(c))
		queue_read(s, c);
}

static void on_write(struct server *s, struct conn *c, const struct proact_completion *r)
{
	c->writing = false;
	out_release(s, &c->wout);
	if (c->closing)
		return;
	if (r->error) {
		ex_count_failure(r->error, &s->resets, &s->errors);
		conn_close(s, c);
		return;
	}
	flush(s, c);
	finish_quit(s, c);
	if (!c->reading && !c->quitting && !paused(c))
		queue_read(s, c);
}

static void on_shutdown(struct server *s, struct conn *c, const struct proact_completion *r)
{
	if (!c->closing && r->error)
		conn_close(s, c);
}

static void on_completion(struct ex_shard *sh, const struct proact_completion *r)
{
	struct server *s = (struct server *)sh;
	struct conn *c = r->ctx;
	switch (r->op) {
	case PROACT_OP_TIMER:
		on_sweep(s, r);
		break;
	case PROACT_OP_READ:
		on_read(s, c, r);
		break;
	case PROACT_OP_WRITE:
		on_write(s, c, r);
		break;
	case PROACT_OP_SHUTDOWN:
		on_shutdown(s, c, r);
		break;
	case PROACT_OP_FREE:
		conn_release(s, c);
		break;
	default:
		break;
	}
}

/* ==== the loop ============================================================ */

static int64_t now_ms(void)
{
	return (int64_t)(proact_now() / 1000000u);
}

/* Before each round's completions: the time commands and expiry go by. */
static void round_start(struct ex_shard *sh)
{
	((struct server *)sh)->now = now_ms();
}

/* ==== setup and exit ====================================================== */

static bool take_option(void *arg, const char *name, const char *v)
{
	struct options *o = arg;
	if (!strcmp(name, "--threads"))
		o->threads = (unsigned)ex_parse_num(v, 1, MAX_THREADS);
	else if (!strcmp(name, "--partial-timeout"))
		o->partial_ms = ex_parse_num(v, 0, 86400000);
	else
		return ex_server_option(&o->net, "--port", name, v);
	return true;
}

static int setup(struct server *s, const struct options *o)
{
	struct proact_options po = {.backend = o->net.backend, .pool_buffer_size = POOL_BUF_SIZE};
	s->live.next = s->live.prev = &s->live;
	s->now = now_ms();
	return ex_shard_setup(&s->sh, &po, ACCEPTS, refused, s);
}

/* After shutdown nothing more is delivered: what is left goes here. */
static void teardown(struct server *s)
{
	ex_shard_close(&s->sh);
	while (s->live.next && s->live.next != &s->live)
		conn_release(s, (struct conn *)s->live.next);
	while (s->nspare)
		free(s->spare[--s->nspare]);
	free(s->args);
}

static bool report(unsigned n)
{
	uint64_t accepted = 0, commands = 0, perr = 0, resets = 0, errors = 0;
	bool failed = false;
	for (unsigned i = 0; i < n; i++) {
		accepted += sv[i].accepted;
		commands += sv[i].commands;
		perr += sv[i].protocol_errors;
		resets += sv[i].resets;
		errors += sv[i].errors;
		failed |= sv[i].sh.failed;
	}
	printf("resp_server: accepted %" PRIu64 " connections, %" PRIu64
	       " commands, %zu keys, %" PRIu64 " protocol errors, %" PRIu64 " resets, %" PRIu64
	       " errors\n",
	       accepted, commands, db.count, perr, resets, errors);
	fflush(stdout);
	return !failed;
}

int main(int argc, char **argv)
{
	struct options o = {
	    .net = {.host = "127.0.0.1", .port = "0"}, .threads = 1, .partial_ms = 30000};
	ex_init("resp_server", usage_text);
	ex_parse_options(argc, argv, take_option, &o);
	ex_raise_fd_limit();
	partial_ns = o.partial_ms * 1000000u;
	unsigned n = o.threads;
	db.shared = n > 1;
	db_seed(&db);
	struct ex_shard *shards[MAX_THREADS];
	for (unsigned i = 0; i < n; i++)
		shards[i] = &sv[i].sh;
	bool ok = ex_shards_open(shards, n, o.net.host, o.net.port, 4096) == 0;
	for (unsigned i = 0; ok && i < n; i++)
		ok = setup(&sv[i], &o) == 0;
	if (ok) {
		fprintf(stderr, "resp_server: backend %s, %u thread%s\n",
		        proact_backend(sv[0].sh.w), n, n == 1 ? "" : "s");
		ex_print_listening(sv[0].sh.lfd);
		static const struct ex_shard_ops ops = {
		    .round = round_start, .accepted = conn_open, .completion = on_completion};
		ok = ex_shards_run(shards, n, &ops);
		ok = report(n) && ok;
	}
	for (unsigned i = 0; i < n; i++)
		teardown(&sv[i]);
	db_flush(&db);
	return ok ? 0 : 1;
}
