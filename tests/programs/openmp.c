// cflags: -fopenmp
/*
 * openmp ITERATIONS
 *
 * An OpenMP (libgomp) computation: each iteration a parallel loop over
 * 1 << 18 doubles, split between the team's threads (OMP_NUM_THREADS,
 * default 4), with an order-independent reduction; then 50 ms of sleep in the main thread
 * while the team waits in libgomp (spinning, then in futex waits). The
 * tick's hash depends on every element, so a thread whose registers, stack
 * or TLS came back wrong changes the output. The team is made once, at
 * the first parallel region, before `ready`.
 */
#include "common.h"

#include <omp.h>

#define N (1 << 18)

static double a[N];

/* One step over every element; the XOR of their mixed bits does not depend on the threads' order. */
static uint64_t step(long it)
{
	uint64_t h = 0;

#pragma omp parallel for reduction(^ : h) schedule(static)
	for (long i = 0; i < N; i++) {
		uint64_t bits;

		a[i] = a[i] * 0.999 + (double)((i * 7 + it) % 1000) * 0.001;
		memcpy(&bits, &a[i], sizeof(bits));
		h ^= mix64(bits ^ (uint64_t)i);
	}
	return h;
}

int main(int argc, char **argv)
{
	long n = prog_init("openmp", argc, argv, 0, "ITERATIONS");
	int threads = 0;

#pragma omp parallel
	{
#pragma omp single
		threads = omp_get_num_threads();
	}
	CHECK(threads >= 1, "no OpenMP team");
	ready_line();
	for (long it = 0; it < n; it++) {
		uint64_t h = step(it);

		tick_line(it, "threads=%d hash=%016llx", threads, (unsigned long long)h);
		sleep_ms(50);
	}
	ok_line("threads=%d", threads);
	return 0;
}
