/*
 * brk_stack ITERATIONS
 *
 * The heap break and the stack must keep working after a restore.
 *
 * brk: the program never calls malloc, so it owns the break. Each tick it
 * first checks sbrk(0) is where it left it, then moves the break by one
 * 64 KiB step - up for 64 ticks (to 4 MiB), then down for 64, and so on -
 * checks the new memory reads as zeros before filling it with a pattern,
 * and verifies the pattern of every step still below the break.
 *
 * stack: each tick recurses through `levels` frames of ~64 KiB each
 * (levels = tick + 1, up to 64, i.e. 4 MiB; less if RLIMIT_STACK is
 * small), every frame filling its array with a pattern. The 100 ms sleep
 * happens at the deepest frame, so a checkpoint usually catches the stack
 * at its deepest; the frames verify their arrays on the way back up. The
 * depth increases every tick, so after a restore the stack has to grow
 * below anything the dump contained. main() also keeps a 64 KiB array
 * with a pattern that it checks every tick.
 *
 * Tick line: `tick <i> brk=<KiB above start> stack=<levels> sum=<hex>`.
 */
#include "common.h"

#include <stdint.h>
#include <sys/resource.h>

#define STEP (64 * 1024)
#define BRK_MAX_STEPS 64
#define LEVEL_BYTES (64 * 1024)
#define MAX_LEVELS 64
#define FRAME_WORDS ((LEVEL_BYTES - 512) / sizeof(uint64_t))
#define MAIN_WORDS (64 * 1024 / sizeof(uint64_t))

static char *brk_base;

static uint64_t brk_word(long step, size_t k)
{
	return mix64(((uint64_t)step << 32) | k);
}

static uint64_t stack_word(int level, long tick, size_t k)
{
	return mix64(((uint64_t)tick << 48) ^ ((uint64_t)level << 32) ^ k);
}

/* Number of 64 KiB steps above brk_base after tick i. */
static long brk_steps_after(long i)
{
	long c = i % (2 * BRK_MAX_STEPS);

	return c < BRK_MAX_STEPS ? c + 1 : 2 * BRK_MAX_STEPS - 1 - c;
}

static void check_brk(long steps, const char *when)
{
	char *cur = sbrk(0);

	CHECK(cur == brk_base + steps * STEP, "%s: break is %+lld bytes from its start, expected %+ld",
	      when, (long long)(cur - brk_base), steps * STEP);
	for (long s = 0; s < steps; s++) {
		const uint64_t *w = (const uint64_t *)(brk_base + s * STEP);

		for (size_t k = 0; k < STEP / sizeof(uint64_t); k++)
			CHECK(w[k] == brk_word(s, k), "%s: brk step %ld word %zu corrupted", when, s,
			      k);
	}
}

static void move_brk(long from, long to)
{
	if (to > from) {
		uint64_t *w = sbrk(STEP);

		CHECK_SYS(w != (void *)-1, "sbrk grow");
		CHECK((char *)w == brk_base + from * STEP, "sbrk returned an unexpected address");
		for (size_t k = 0; k < STEP / sizeof(uint64_t); k++)
			CHECK(w[k] == 0, "fresh brk memory (step %ld) is not zero", from);
		for (size_t k = 0; k < STEP / sizeof(uint64_t); k++)
			w[k] = brk_word(from, k);
	} else {
		CHECK_SYS(sbrk(-STEP) != (void *)-1, "sbrk shrink");
	}
}

/*
 * One ~64 KiB stack frame per level; sleeps at the deepest one. Returns a
 * hash of the levels below (deterministic: no addresses in it).
 */
__attribute__((noinline)) static uint64_t dive(int level, int levels, long tick,
					       uintptr_t above)
{
	volatile uint64_t buf[FRAME_WORDS];
	uint64_t h;

	CHECK((uintptr_t)buf < above, "stack does not grow down at level %d", level);
	for (size_t k = 0; k < FRAME_WORDS; k++)
		buf[k] = stack_word(level, tick, k);
	if (level + 1 < levels)
		h = dive(level + 1, levels, tick, (uintptr_t)buf);
	else {
		sleep_ms(100);
		h = FNV_INIT;
	}
	for (size_t k = 0; k < FRAME_WORDS; k++)
		CHECK(buf[k] == stack_word(level, tick, k),
		      "stack frame at level %d word %zu corrupted", level, k);
	return hash_u64(h, buf[level % FRAME_WORDS] ^ (uint64_t)level);
}

static int max_levels(void)
{
	struct rlimit rl;
	rlim_t room;

	CHECK_SYS(getrlimit(RLIMIT_STACK, &rl) == 0, "getrlimit");
	if (rl.rlim_cur == RLIM_INFINITY)
		return MAX_LEVELS;
	/* leave 1 MiB for main, the environment and the libc */
	room = rl.rlim_cur > (1u << 20) ? rl.rlim_cur - (1u << 20) : 0;
	if (room / LEVEL_BYTES < MAX_LEVELS)
		return (int)(room / LEVEL_BYTES) > 1 ? (int)(room / LEVEL_BYTES) : 1;
	return MAX_LEVELS;
}

int main(int argc, char **argv)
{
	long iters = prog_init("brk_stack", argc, argv, 0, "ITERATIONS");
	volatile uint64_t keep[MAIN_WORDS];
	int cap = max_levels();
	uint64_t h = FNV_INIT;
	long steps = 0;

	for (size_t k = 0; k < MAIN_WORDS; k++)
		keep[k] = stack_word(-1, 0, k);
	brk_base = sbrk(0);
	CHECK_SYS(brk_base != (void *)-1, "sbrk(0)");

	ready_line();
	for (long i = 0; i < iters; i++) {
		long next = brk_steps_after(i);
		int levels = i + 1 < cap ? (int)(i + 1) : cap;

		check_brk(steps, "before step");
		move_brk(steps, next);
		steps = next;
		check_brk(steps, "after step");
		h = hash_u64(h, (uint64_t)steps);
		h = hash_u64(h, dive(0, levels, i, (uintptr_t)&keep[0]));
		for (size_t k = 0; k < MAIN_WORDS; k++)
			CHECK(keep[k] == stack_word(-1, 0, k), "main's stack array word %zu corrupted",
			      k);
		tick_line(i, "brk=%ld stack=%d sum=%016llx", steps * STEP / 1024, levels,
			  (unsigned long long)h);
	}
	check_brk(steps, "end");
	ok_line("brk=%ld stack=%d sum=%016llx", steps * STEP / 1024,
		iters < cap ? (int)iters : cap, (unsigned long long)h);
	return 0;
}
