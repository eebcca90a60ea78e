/* SPDX-License-Identifier: MIT */
/*
 * fuzz_ops.h - the input format of proact_fuzz, shared with the seed writer.
 *
 * An input is two configuration bytes, then a sequence of ops: one byte
 * names the op (its value modulo OP_COUNT; 0xff alone is OP_SHUTDOWN), and
 * each op takes the argument bytes listed below. Missing bytes read as 0.
 *
 * cfg0: bits 0-1 pool buffers - 1; bits 2-3 pool buffer size (64 << 2n);
 *       bits 4-5 max_pending_per_fd (default, 2, 4, 8); bits 6-7 both set:
 *       no pool.
 * cfg1: bit s (0-2) slot s is a TCP pair, else AF_UNIX; bit 3+s: the
 *       library end of slot s starts blocking.
 */
#ifndef PROACT_FUZZ_OPS_H
#define PROACT_FUZZ_OPS_H

enum fz_op {
	OP_READ,       /* slot, arg: len (bits 0-2), FULL (3), deadline (4-5), _deadline call (6) */
	OP_POOL,       /* slot, arg: cap (bits 0-2), deadline (4-5) */
	OP_WRITE,      /* slot, arg: len (bits 0-2), _deadline call (3), deadline (4-5) */
	OP_WRITEV,     /* slot, count - 1, then one length byte per segment */
	OP_SUBMIT,     /* count - 1, then per request: slot, arg (kind 0-1, len 2-4, bad 5-7) */
	OP_FREE,       /* slot */
	OP_DETACH,     /* slot */
	OP_WAIT,       /* arg: max - 1 (bits 0-2), timeout (3-4) */
	OP_WAKEUP,     /* arg: bit 0 then wait with no time limit */
	OP_PEER_WRITE, /* slot, length */
	OP_PEER_READ,  /* slot, length */
	OP_PEER_SHUT,  /* slot: shutdown(SHUT_WR) on the peer end */
	OP_PEER_CLOSE, /* slot: close the peer end */
	OP_BAD,        /* slot, variant: a call with bad input */
	OP_ECHO,       /* slot, arg: which pool buffer of the last wait (bits 0-6), half (7) */
	OP_REOPEN,     /* slot, arg: TCP (bit 0), blocking (bit 1) */
	OP_TIMER,      /* arg: deadline (bits 0-1: now, past, 2 ms, 60 s), by proact_submit (2) */
	OP_TIMER_CANCEL, /* which timer of this input (modulo their number, failed ones too) */
	OP_COUNT,
	OP_SHUTDOWN = 0xff, /* the watcher is shut down; the input ends there */
};

#endif
