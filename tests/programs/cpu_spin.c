/*
 * cpu_spin ITERATIONS
 *
 * CPU-bound: never sleeps. Every tick runs a fixed amount of arithmetic
 * over a 1 MiB heap table (2^20 rounds of mix64, each reading and writing
 * one table word), then prints `tick <i> sum=<16 hex>`, the hash of the
 * whole table. The table after tick i depends only on i, so every run gives
 * the same lines, wherever each tick ran.
 *
 * SIGUSR1 asks it to stop early: it finishes the current tick and prints
 * `ok cpu_spin ticks=<n> sum=<hex>` as after the last one (the balancing
 * test ends its copies this way, on whatever node each runs by then).
 */
#include "common.h"
#include <signal.h>

#define WORDS (1u << 17) /* 1 MiB of uint64_t */
#define ROUNDS (1u << 20)

static volatile sig_atomic_t stop;

static void on_usr1(int sig)
{
	(void)sig;
	stop = 1;
}

static uint64_t table_sum(const uint64_t *t)
{
	uint64_t h = FNV_INIT;

	for (uint32_t k = 0; k < WORDS; k++)
		h = hash_u64(h, t[k]);
	return h;
}

int main(int argc, char **argv)
{
	long iterations = prog_init("cpu_spin", argc, argv, 0, "ITERATIONS");
	struct sigaction sa = { .sa_handler = on_usr1 };
	uint64_t *t = malloc(WORDS * sizeof(uint64_t));
	uint64_t x = 1, sum = 0;
	long i;

	CHECK(t != NULL, "malloc: out of memory");
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction: %s", strerror(errno));
	for (uint32_t k = 0; k < WORDS; k++)
		t[k] = mix64(k);
	ready_line();
	for (i = 0; i < iterations && !stop; i++) {
		for (uint32_t r = 0; r < ROUNDS; r++) {
			uint32_t k = (uint32_t)x & (WORDS - 1);

			x = mix64(x ^ t[k]);
			t[k] = x;
		}
		sum = table_sum(t);
		tick_line(i, "sum=%016llx", (unsigned long long)sum);
	}
	ok_line("ticks=%ld sum=%016llx", i, (unsigned long long)sum);
	free(t);
	return 0;
}
