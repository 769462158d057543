/*
 * stack_edge ITERATIONS
 *
 * Sleeps with its stack pointer 32 bytes above the lowest address of its
 * [stack] mapping, as a process whose stack had just grown when it was
 * frozen: there is no room below its stack pointer for the system calls ppm
 * runs in it while checkpointing and restoring. ppm must lend memory from
 * elsewhere in the process for them, and put that memory back as it was.
 *
 * The first 64 KiB of its heap (taken with sbrk before anything else, and
 * checked to be where [heap] starts: the memory ppm lends first) hold a
 * pattern that every tick checks: a lent byte not put back fails the run.
 *
 * Each tick: check the block, write the tick line, then sleep 100 ms in a
 * raw nanosleep(2) issued from the bottom of the stack (a remaining-time
 * loop; -EINTR continues with the remainder).
 *
 * Tick line: `tick <i> sum=<hex>`.
 */
#include "common.h"

#include <inttypes.h>
#include <sys/syscall.h>

#define BLOCK_WORDS (64 * 1024 / sizeof(uint64_t))

/* Where the mapping named `name` ([stack], [heap]) starts. */
static uint64_t mapping_start(const char *name)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	uint64_t lo = 0, hi;

	CHECK_SYS(f, "open /proc/self/maps");
	while (fgets(line, sizeof(line), f))
		if (strstr(line, name) && sscanf(line, "%" SCNx64 "-%" SCNx64, &lo, &hi) == 2)
			break;
	fclose(f);
	CHECK(lo != 0, "no %s mapping", name);
	return lo;
}

/* nanosleep(2) with the stack pointer at `sp`; the raw result (-errno on failure). */
static long edge_nanosleep(char *sp, const struct timespec *req, struct timespec *rem)
{
	long ret;

	__asm__ volatile("mov %%rsp, %%rbx\n\t"
			 "mov %[sp], %%rsp\n\t"
			 "syscall\n\t"
			 "mov %%rbx, %%rsp"
			 : "=a"(ret)
			 : "0"((long)SYS_nanosleep), "D"(req), "S"(rem), [sp] "r"(sp)
			 : "rbx", "rcx", "r11", "memory");
	return ret;
}

static struct timespec req, rem;

int main(int argc, char **argv)
{
	long iters = prog_init("stack_edge", argc, argv, 0, "ITERATIONS");
	uint64_t *block = sbrk(BLOCK_WORDS * sizeof(uint64_t));
	char *sp;
	uint64_t h = FNV_INIT;

	CHECK_SYS(block != (void *)-1, "sbrk");
	CHECK(mapping_start("[heap]") == (uintptr_t)block, "the block is not at the heap's start");
	/* 32 bytes above the stack's lowest address, 16-byte aligned. */
	sp = (char *)(uintptr_t)(mapping_start("[stack]") + 32);
	for (size_t k = 0; k < BLOCK_WORDS; k++)
		block[k] = mix64(k);
	ready_line();
	for (long i = 0; i < iters; i++) {
		long r;

		for (size_t k = 0; k < BLOCK_WORDS; k++)
			CHECK(block[k] == mix64(k), "tick %ld: heap word %zu changed", i, k);
		h = fnv1a(h, &i, sizeof(i));
		tick_line(i, "sum=%016llx", (unsigned long long)h);
		req = (struct timespec){ 0, 100 * 1000000L };
		while ((r = edge_nanosleep(sp, &req, &rem)) == -EINTR)
			req = rem;
		CHECK(r == 0, "nanosleep from the stack's bottom: %s", strerror((int)-r));
	}
	ok_line("ticks=%ld sum=%016llx", iters, (unsigned long long)h);
	return 0;
}
