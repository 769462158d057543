// SPDX-License-Identifier: GPL-2.0
/*
 * bench_anon: the memory workload of the benchmark (bench/). Writes MIB
 * mebibytes of anonymous memory once (one mmap, a pattern that is never
 * zero), then each tick sleeps 200 ms, checks one 1 MiB stripe and writes
 * it anew, round robin, so the memory is checked across a migration
 * without the process keeping a CPU busy (anon_memory rewrites all of it
 * every tick, too slow under TCG at 256 MiB). Before the `ok` line it
 * checks every word.
 *
 *   bench_anon ITERATIONS MIB
 *
 * tick: `tick <i> mib=<MIB> stripe=<s>`; end: `ok bench_anon mib=<MIB>`.
 */
#include <sys/mman.h>

#include "common.h"

#define STRIPE_WORDS ((size_t)(1 << 20) / sizeof(uint64_t))

/* The value of word i after stripe generation g was written. */
static uint64_t word(size_t i, uint64_t g)
{
	return mix64(i ^ (g << 40)) | 1;
}

int main(int argc, char **argv)
{
	long n = prog_init("bench_anon", argc, argv, 1, "ITERATIONS MIB");
	long mib = strtol(argv[2], NULL, 10);
	uint64_t *mem, *gen;
	size_t len;

	CHECK(mib > 0 && mib <= 4096, "bad MIB '%s'", argv[2]);
	len = (size_t)mib << 20;
	mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(mem != MAP_FAILED, "mmap %ld MiB: %s", mib, strerror(errno));
	gen = calloc((size_t)mib, sizeof(*gen));
	CHECK(gen != NULL, "calloc: %s", strerror(errno));
	for (size_t i = 0; i < len / sizeof(uint64_t); i++)
		mem[i] = word(i, 0);
	ready_line();
	for (long t = 0; t < n; t++) {
		size_t s = (size_t)t % (size_t)mib;
		uint64_t *p = mem + s * STRIPE_WORDS;

		for (size_t i = 0; i < STRIPE_WORDS; i++) {
			size_t w = s * STRIPE_WORDS + i;

			CHECK(p[i] == word(w, gen[s]), "word %zu wrong at tick %ld", w, t);
			p[i] = word(w, gen[s] + 1);
		}
		gen[s]++;
		tick_line(t, "mib=%ld stripe=%zu", mib, s);
		sleep_ms(200);
	}
	for (size_t s = 0; s < (size_t)mib; s++)
		for (size_t i = 0; i < STRIPE_WORDS; i++) {
			size_t w = s * STRIPE_WORDS + i;

			CHECK(mem[w] == word(w, gen[s]), "word %zu wrong at the end", w);
		}
	ok_line("mib=%ld", mib);
	return 0;
}
