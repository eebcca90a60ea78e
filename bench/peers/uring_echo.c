/* SPDX-License-Identifier: MIT */
/*
 * uring_echo - the raw io_uring echo (and push) server: the practical limit
 * for a completion loop on Linux, in the idiom liburing's examples use.
 *
 *   uring_echo [--port N] [--push]
 *
 * One thread, one ring (SINGLE_ISSUER | DEFER_TASKRUN when the kernel takes
 * them), a multishot accept, and a multishot recv per connection that picks
 * its buffers from a provided-buffer ring: an idle connection holds no
 * buffer. Each received buffer is sent back as it is (zero copy) and goes
 * back to the ring once its send has completed; sends on one connection go
 * one at a time, in order, from a small per-connection FIFO of buffer ids.
 * When the ring runs dry the kernel ends the multishot recv with ENOBUFS;
 * the connection then waits on a list and is re-armed when a buffer returns.
 * SIGTERM/SIGINT are blocked and read from a signalfd through the ring, like
 * any other completion (a plain handler is not enough under valgrind, which
 * holds signals back while the thread sleeps in io_uring_enter).
 */
#include "peer.h"

#include <liburing.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/signalfd.h>

#define RING_ENTRIES 4096
#define NBUFS        1024 /* provided buffers (power of two) */
#define BUF_SIZE     16384
#define BGID         1
#define WAIT_MS      100 /* a safety net only: signals come through the ring */

enum { T_ACCEPT = 1, T_RECV, T_SEND, T_BSEND, T_SIGNAL };

/* user_data: type in bits 56..63, buffer id in 32..47, fd in 0..31 */
#define UD(t, bid, fd) (((uint64_t)(t) << 56) | ((uint64_t)(bid) << 32) | (uint32_t)(fd))

struct conn {
	bool open;
	bool recv_armed; /* a multishot recv is in the kernel */
	bool sending;    /* a send of head is in the kernel */
	bool eof;        /* recv ended: close once the sends drained */
	bool starved;    /* on the starved list */
	int head, tail;  /* FIFO of buffer ids to send, linked by next_bid; -1 empty */
	uint32_t head_off;
	int next_starved;
	int bsends; /* broadcast sends in the kernel */
};

/* One pushed message, shared by the sends to every connection. */
struct bcast {
	size_t refs, len;
	unsigned char data[];
};

static struct io_uring ring;
static struct io_uring_buf_ring *br;
static unsigned char *bufs;
static int next_bid[NBUFS];
static uint32_t buf_len[NBUFS];
static struct conn *conns;
static int nconns_cap, maxfd = -1;
static int starved_head = -1;
static bool push_mode;
static struct bcast *cur_bcast;

static struct io_uring_sqe *get_sqe(void)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
	while (!sqe) {
		io_uring_submit(&ring);
		sqe = io_uring_get_sqe(&ring);
	}
	return sqe;
}

static void arm_recv(int fd)
{
	struct io_uring_sqe *sqe = get_sqe();
	io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = BGID;
	io_uring_sqe_set_data64(sqe, UD(T_RECV, 0, fd));
	conns[fd].recv_armed = true;
}

static struct signalfd_siginfo siginfo;

static void arm_signal(int sfd)
{
	struct io_uring_sqe *sqe = get_sqe();
	io_uring_prep_read(sqe, sfd, &siginfo, sizeof(siginfo), 0);
	io_uring_sqe_set_data64(sqe, UD(T_SIGNAL, 0, sfd));
}

static void arm_accept(int lfd)
{
	struct io_uring_sqe *sqe = get_sqe();
	io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, UD(T_ACCEPT, 0, lfd));
}

static void send_head(int fd)
{
	struct conn *c = &conns[fd];
	int bid = c->head;
	struct io_uring_sqe *sqe = get_sqe();
	io_uring_prep_send(sqe, fd, bufs + (size_t)bid * BUF_SIZE + c->head_off,
	                   buf_len[bid] - c->head_off, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, UD(T_SEND, bid, fd));
	c->sending = true;
}

static void maybe_close(int fd)
{
	struct conn *c = &conns[fd];
	if (c->open && c->eof && !c->recv_armed && !c->sending && c->bsends == 0) {
		c->open = false;
		close(fd);
	}
}

static void recycle(int bid)
{
	io_uring_buf_ring_add(br, bufs + (size_t)bid * BUF_SIZE, BUF_SIZE, (unsigned short)bid,
	                      io_uring_buf_ring_mask(NBUFS), 0);
	io_uring_buf_ring_advance(br, 1);
	if (starved_head >= 0) { /* a buffer is back: re-arm one starved recv */
		int fd = starved_head;
		starved_head = conns[fd].next_starved;
		conns[fd].starved = false;
		if (conns[fd].open && !conns[fd].eof)
			arm_recv(fd);
	}
}

static void on_accept(int lfd, struct io_uring_cqe *cqe)
{
	if (!(cqe->flags & IORING_CQE_F_MORE))
		arm_accept(lfd);
	int fd = cqe->res;
	if (fd < 0)
		return;
	if (fd >= nconns_cap) {
		close(fd);
		return;
	}
	peer_nodelay(fd);
	conns[fd] = (struct conn){.open = true, .head = -1, .tail = -1};
	if (fd > maxfd)
		maxfd = fd;
	arm_recv(fd);
}

static void broadcast(const unsigned char *data, size_t len)
{
	struct bcast *b = malloc(sizeof(*b) + len);
	if (!b)
		return;
	b->refs = 1;
	b->len = len;
	memcpy(b->data, data, len);
	for (int fd = 0; fd <= maxfd; fd++) {
		if (!conns[fd].open || conns[fd].eof)
			continue;
		struct io_uring_sqe *sqe = get_sqe();
		io_uring_prep_send(sqe, fd, b->data, len, MSG_NOSIGNAL | MSG_WAITALL);
		/* The bcast is found through cur_bcast: one push at a time. */
		io_uring_sqe_set_data64(sqe, UD(T_BSEND, 0, fd));
		conns[fd].bsends++;
		b->refs++;
	}
	if (cur_bcast && --cur_bcast->refs == 0)
		free(cur_bcast);
	cur_bcast = b; /* the loop's reference moves to cur_bcast */
}

static void on_recv(int fd, struct io_uring_cqe *cqe)
{
	struct conn *c = &conns[fd];
	if (!(cqe->flags & IORING_CQE_F_MORE))
		c->recv_armed = false;
	if (cqe->res <= 0) {
		if (cqe->res == -ENOBUFS && !c->eof) {
			if (!c->starved) { /* re-armed when a buffer comes back */
				c->starved = true;
				c->next_starved = starved_head;
				starved_head = fd;
			}
			return;
		}
		c->eof = true; /* EOF or error */
		maybe_close(fd);
		return;
	}
	int bid = (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
	if (push_mode && bufs[(size_t)bid * BUF_SIZE] == PUSH_TRIGGER) {
		broadcast(bufs + (size_t)bid * BUF_SIZE, (size_t)cqe->res);
		recycle(bid);
	} else {
		buf_len[bid] = (uint32_t)cqe->res;
		next_bid[bid] = -1;
		if (c->tail >= 0)
			next_bid[c->tail] = bid;
		else
			c->head = bid, c->head_off = 0;
		c->tail = bid;
		if (!c->sending)
			send_head(fd);
	}
	if (!c->recv_armed && !c->eof && !c->starved)
		arm_recv(fd);
}

static void on_send(int fd, int bid, struct io_uring_cqe *cqe)
{
	struct conn *c = &conns[fd];
	c->sending = false;
	if (cqe->res > 0 && c->head_off + (uint32_t)cqe->res < buf_len[bid]) {
		c->head_off += (uint32_t)cqe->res; /* short send: the rest next */
		send_head(fd);
		return;
	}
	if (cqe->res < 0) { /* drop everything queued on this connection */
		c->eof = true;
		for (int b = c->head; b >= 0;) {
			int nb = next_bid[b];
			recycle(b);
			b = nb;
		}
		c->head = c->tail = -1;
		maybe_close(fd);
		return;
	}
	c->head = next_bid[bid];
	c->head_off = 0;
	if (c->head < 0)
		c->tail = -1;
	recycle(bid);
	if (c->head >= 0)
		send_head(fd);
	else
		maybe_close(fd);
}

static void on_bsend(int fd)
{
	conns[fd].bsends--;
	if (--cur_bcast->refs == 0) {
		free(cur_bcast);
		cur_bcast = NULL;
	}
	maybe_close(fd);
}

static int setup_ring(void)
{
	struct io_uring_params p = {.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER |
	                                     IORING_SETUP_DEFER_TASKRUN,
	                            .cq_entries = 4 * RING_ENTRIES};
	p.flags |= IORING_SETUP_CQSIZE;
	int rc = io_uring_queue_init_params(RING_ENTRIES, &ring, &p);
	if (rc < 0) { /* older kernel: plain ring */
		p = (struct io_uring_params){.flags = IORING_SETUP_CQSIZE,
		                             .cq_entries = 4 * RING_ENTRIES};
		rc = io_uring_queue_init_params(RING_ENTRIES, &ring, &p);
	}
	if (rc < 0)
		return rc;
	size_t rsize = NBUFS * sizeof(struct io_uring_buf);
	br = mmap(NULL, rsize, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	bufs = mmap(NULL, (size_t)NBUFS * BUF_SIZE, PROT_READ | PROT_WRITE,
	            MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (br == MAP_FAILED || bufs == MAP_FAILED)
		return -ENOMEM;
	struct io_uring_buf_reg reg = {
	    .ring_addr = (unsigned long)br, .ring_entries = NBUFS, .bgid = BGID};
	rc = io_uring_register_buf_ring(&ring, &reg, 0);
	if (rc < 0)
		return rc;
	io_uring_buf_ring_init(br);
	for (int i = 0; i < NBUFS; i++)
		io_uring_buf_ring_add(br, bufs + (size_t)i * BUF_SIZE, BUF_SIZE, (unsigned short)i,
		                      io_uring_buf_ring_mask(NBUFS), i);
	io_uring_buf_ring_advance(br, NBUFS);
	return 0;
}

int main(int argc, char **argv)
{
	struct peer_args a = peer_parse(argc, argv);
	push_mode = a.push;
	peer_raise_fd_limit();
	signal(SIGPIPE, SIG_IGN);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	int sfd = signalfd(-1, &set, SFD_CLOEXEC);
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	nconns_cap = rl.rlim_cur > 1000000 ? 1000000 : (int)rl.rlim_cur;
	conns = calloc((size_t)nconns_cap, sizeof(*conns));
	int rc = conns ? setup_ring() : -ENOMEM;
	if (rc == 0 && sfd < 0)
		rc = -errno;
	if (rc < 0) {
		fprintf(stderr, "uring_echo: setup: %s\n", strerror(-rc));
		return 1;
	}
	int lfd = peer_listen(a.port);
	arm_accept(lfd);
	arm_signal(sfd);
	peer_print_listening(lfd);
	struct __kernel_timespec ts = {.tv_nsec = WAIT_MS * 1000000L};
	while (!peer_stop) {
		struct io_uring_cqe *cqe;
		rc = io_uring_submit_and_wait_timeout(&ring, &cqe, 1, &ts, NULL);
		if (rc < 0 && rc != -ETIME && rc != -EINTR) {
			fprintf(stderr, "uring_echo: wait: %s\n", strerror(-rc));
			return 1;
		}
		unsigned head, seen = 0;
		io_uring_for_each_cqe(&ring, head, cqe)
		{
			uint64_t ud = io_uring_cqe_get_data64(cqe);
			int fd = (int)(uint32_t)ud;
			int bid = (int)((ud >> 32) & 0xffff);
			switch ((int)(ud >> 56)) {
			case T_ACCEPT:
				on_accept(fd, cqe);
				break;
			case T_RECV:
				on_recv(fd, cqe);
				break;
			case T_SEND:
				on_send(fd, bid, cqe);
				break;
			case T_BSEND:
				on_bsend(fd);
				break;
			case T_SIGNAL:
				peer_stop = 1;
				break;
			}
			seen++;
		}
		io_uring_cq_advance(&ring, seen);
	}
	io_uring_queue_exit(&ring); /* cancels everything still in the kernel */
	for (int fd = 0; fd <= maxfd; fd++)
		if (conns[fd].open)
			close(fd);
	close(lfd);
	free(conns);
	return 0;
}
