// SPDX-License-Identifier: GPL-2.0
/*
 * page_pattern: maps PAGES pages, writes page i full of the byte
 * (i % 251) + 1, except every third page, left zero; prints the mapping's
 * address and waits to be killed. The page stream's test reads it.
 *
 *   page_pattern PAGES
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long pages = argc > 1 ? strtol(argv[1], NULL, 10) : 0;
	unsigned char *mem;

	if (pages <= 0 || pages > 65536)
		return 2;
	mem = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return 1;
	for (long i = 0; i < pages; i++)
		if (i % 3 != 2)
			memset(mem + i * 4096, (int)(i % 251) + 1, 4096);
	printf("%p\n", (void *)mem);
	fflush(stdout);
	for (;;)
		pause();
}
