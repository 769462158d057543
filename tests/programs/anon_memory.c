// SPDX-License-Identifier: GPL-2.0
/*
 * anon_memory: writes MIB mebibytes of anonymous memory (one mmap, every
 * byte a pattern that is never zero) and checks all of it each tick.  Used
 * for the image-size bound: its image must be close to MIB MiB plus the
 * libraries' written pages, since file pages and untouched memory are not
 * carried.
 *
 *   anon_memory ITERATIONS MIB
 */
#include <sys/mman.h>

#include "common.h"

int main(int argc, char **argv)
{
	long n = prog_init("anon_memory", argc, argv, 1, "ITERATIONS MIB");
	long mib = strtol(argv[2], NULL, 10);
	size_t len, words;
	uint64_t *mem;

	CHECK(mib > 0 && mib <= 4096, "bad MIB '%s'", argv[2]);
	len = (size_t)mib << 20;
	words = len / sizeof(uint64_t);
	mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(mem != MAP_FAILED, "mmap: %s", strerror(errno));
	for (size_t i = 0; i < words; i++)
		mem[i] = mix64(i) | 1;
	ready_line();
	for (long t = 0; t < n; t++) {
		uint64_t sum = 0;

		for (size_t i = 0; i < words; i++) {
			CHECK(mem[i] == (mix64(i + (uint64_t)t) | 1), "word %zu wrong at tick %ld", i, t);
			mem[i] = mix64(i + (uint64_t)t + 1) | 1;
			sum += mem[i];
		}
		tick_line(t, "mib=%ld sum=%016llx", mib, (unsigned long long)sum);
		sleep_ms(100);
	}
	ok_line("mib=%ld", mib);
	return 0;
}
