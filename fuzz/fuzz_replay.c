/* SPDX-License-Identifier: MIT */
/*
 * fuzz_replay.c - runs the fuzz harness without libFuzzer.
 *
 *   proact_fuzz_replay FILE|DIR...    runs each input (every file of a DIR)
 *   proact_fuzz_replay --seeds DIR    writes the hand-made seed corpus
 *
 * Replaying the corpus is a regular test; the seeds are written from the op
 * names in fuzz_ops.h, so they follow the input format if it changes.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_ops.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define S0 0
#define S1 1
#define S2 2

struct seed {
	const char *name;
	uint8_t bytes[64];
	size_t len;
};

#define SEED(n, ...)                                                                               \
	{                                                                                          \
		n, {__VA_ARGS__}, sizeof((uint8_t[]){__VA_ARGS__})                                 \
	}

/* Each one walks a rule group; the fuzzer mutates from there. */
static const struct seed seeds[] = {
    SEED("echo-unix", 0x01, 0x00, OP_PEER_WRITE, S0, 3, OP_READ, S0, 4, OP_WAIT, 0x17, OP_WRITE, S0,
         3, OP_PEER_READ, S0, 7, OP_WAIT, 0x17, OP_PEER_READ, S0, 7),
    SEED("pool-echo", 0x02, 0x00, OP_PEER_WRITE, S0, 2, OP_POOL, S0, 0, OP_POOL, S0, 0, OP_WAIT,
         0x0f, OP_PEER_WRITE, S0, 3, OP_WAIT, 0x0f, OP_ECHO, S0, 0, OP_ECHO, S1, 0x80, OP_WAIT,
         0x17, OP_PEER_READ, S0, 7, OP_PEER_READ, S1, 7, OP_WAIT, 0x17),
    SEED("full-eof", 0x05, 0x00, OP_READ, S1, 0x0c, OP_PEER_WRITE, S1, 2, OP_WAIT, 0x07,
         OP_PEER_SHUT, S1, OP_WAIT, 0x17, OP_READ, S1, 0x00, OP_WAIT, 0x17),
    SEED("deadline-cut", 0x00, 0x00, OP_WRITE, S0, 0x27, OP_WRITE, S0, 0x01, OP_READ, S0, 0x13,
         OP_WAIT, 0x17, OP_WAIT, 0x17, OP_WAIT, 0x17, OP_PEER_READ, S0, 7, OP_PEER_READ, S0, 7,
         OP_WRITE, S0, 0x00, OP_WAIT, 0x17),
    SEED("free-detach", 0x00, 0x08, OP_READ, S0, 0x04, OP_WRITE, S0, 0x07, OP_FREE, S0, OP_READ, S0,
         0x00, OP_WAIT, 0x07, OP_DETACH, S1, OP_READ, S1, 0x01, OP_PEER_WRITE, S1, 1, OP_DETACH, S1,
         OP_WAIT, 0x17, OP_READ, S1, 0x00, OP_WAIT, 0x17),
    SEED("tcp-writev", 0x03, 0x01, OP_WRITEV, S0, 3, 1, 3, 0, 4, OP_PEER_READ, S0, 7, OP_WAIT, 0x17,
         OP_PEER_WRITE, S0, 4, OP_POOL, S0, 4, OP_WAIT, 0x17, OP_PEER_CLOSE, S0, OP_WRITE, S0, 0x04,
         OP_WAIT, 0x17, OP_WAIT, 0x17),
    SEED("batch-limits", 0x10, 0x00, OP_SUBMIT, 3, S0, 0x00, S0, 0x02, S0, 0x05, S0, 0x01,
         OP_SUBMIT, 1, S1, 0x02, S1, 0xe2, OP_BAD, S0, 0, OP_BAD, S0, 4, OP_BAD, S1, 9, OP_BAD, S2,
         10, OP_PEER_WRITE, S0, 3, OP_WAIT, 0x0f, OP_WAIT, 0x0f),
    SEED("wakeup-shutdown", 0x00, 0x00, OP_WAKEUP, 1, OP_READ, S0, 0x00, OP_WRITE, S1, 0x07,
         OP_PEER_WRITE, S2, 1, OP_POOL, S2, 0, OP_WAIT, 0x00, OP_DETACH, S2, OP_SHUTDOWN),
    SEED("pool-none", 0xc0, 0x00, OP_POOL, S0, 0, OP_SUBMIT, 0, S0, 0x01, OP_READ, S0, 0x00,
         OP_PEER_WRITE, S0, 1, OP_WAIT, 0x07),
    SEED("reopen", 0x01, 0x04, OP_READ, S2, 0x00, OP_FREE, S2, OP_WAIT, 0x07, OP_WAIT, 0x17,
         OP_REOPEN, S2, 0x02, OP_READ, S2, 0x01, OP_PEER_WRITE, S2, 1, OP_WAIT, 0x07, OP_REOPEN, S1,
         0x01, OP_WRITE, S1, 0x02, OP_PEER_READ, S1, 2, OP_WAIT, 0x07),
    SEED("timers", 0x00, 0x00, OP_TIMER, 0x03, OP_TIMER, 0x02, OP_TIMER, 0x00, OP_TIMER, 0x06,
         OP_READ, S0, 0x02, OP_TIMER_CANCEL, 0, OP_WAIT, 0x07, OP_TIMER_CANCEL, 2, OP_PEER_WRITE,
         S0, 1, OP_TIMER, 0x01, OP_WAIT, 0x17, OP_TIMER_CANCEL, 0, OP_TIMER, 0x03, OP_WAIT, 0x17,
         OP_TIMER_CANCEL, 5, OP_TIMER, 0x03),
};

static int write_seeds(const char *dir)
{
	for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", dir, seeds[i].name);
		FILE *f = fopen(path, "wb");
		if (!f || fwrite(seeds[i].bytes, 1, seeds[i].len, f) != seeds[i].len) {
			perror(path);
			return 1;
		}
		fclose(f);
	}
	return 0;
}

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		return 1;
	}
	static uint8_t buf[1 << 20];
	size_t n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	/* libFuzzer hands over a heap copy of exactly the input's size. */
	uint8_t *copy = malloc(n ? n : 1);
	if (!copy)
		return 1;
	memcpy(copy, buf, n);
	LLVMFuzzerTestOneInput(copy, n);
	free(copy);
	return 0;
}

static int run_dir(const char *dir)
{
	struct dirent **names;
	int n = scandir(dir, &names, NULL, alphasort), rc = 0;
	if (n < 0) {
		perror(dir);
		return 1;
	}
	for (int i = 0; i < n; i++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
		struct stat st;
		if (names[i]->d_name[0] != '.' && stat(path, &st) == 0 && S_ISREG(st.st_mode))
			rc |= run_file(path);
		free(names[i]);
	}
	free(names);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--seeds") == 0)
		return write_seeds(argv[2]);
	int rc = 0;
	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode))
			rc |= run_dir(argv[i]);
		else
			rc |= run_file(argv[i]);
	}
	return rc;
}
