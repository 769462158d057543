// SPDX-License-Identifier: GPL-2.0
// cflags: -pthread
/*
 * bench_anon: the memory workload of the benchmark (bench/). Writes MIB
 * mebibytes of anonymous memory once (one mmap, a pattern that is never
 * zero), then each tick sleeps 200 ms, checks one 1 MiB stripe and writes
 * it anew, round robin, so the memory is checked across a migration
 * without the process keeping a CPU busy (anon_memory rewrites all of it
 * every tick, too slow under TCG at 256 MiB). Before the `ok` line it
 * checks every word.
 *
 *   bench_anon ITERATIONS MIB [THREADS [STRIPES]]
 *
 * STRIPES (default 1, at most 64) is the number of 1 MiB stripes each tick
 * checks and writes anew: STRIPES * 5 MiB/s written (the benchmark's
 * dirtying workload writes 1 % of its memory per second).
 *
 * THREADS (default 1, at most 64) is the number of threads: THREADS-1
 * pthreads beside the main thread, started before the `ready` line, each
 * with a small stack and no memory of its own to speak of (the process's
 * memory stays MIB). Each loops forever: checks its thread-local counter
 * against its own count and its TID against the one it started with,
 * steps the counter and a running hash, sleeps 200 ms (nanosleep) and
 * checks the counter, the hash and the TID again. A wrong one is the
 * usual `FAIL bench_anon: ...` (and exit 1, which ends every thread). They
 * print nothing: the main thread's lines and checks are those of a
 * one-thread run, and its `ok` line ends the process, threads and all.
 *
 * tick: `tick <i> mib=<MIB> stripe=<s>`; end: `ok bench_anon mib=<MIB>`.
 */
#include <pthread.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "common.h"

#define STRIPE_WORDS ((size_t)(1 << 20) / sizeof(uint64_t))
#define MAX_THREADS 64
#define THREAD_STACK (256 * 1024)

/* The value of word i after stripe generation g was written. */
static uint64_t word(size_t i, uint64_t g)
{
	return mix64(i ^ (g << 40)) | 1;
}

/* One extra thread: its number, and its running hash as it last stored it. */
struct worker {
	pthread_t thread;
	int k;
	volatile uint64_t hash;
};

static struct worker workers[MAX_THREADS];
static pthread_barrier_t started;
static __thread uint64_t tls_count;

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	long tid = syscall(SYS_gettid);
	uint64_t hash = mix64((uint64_t)w->k);

	w->hash = hash;
	pthread_barrier_wait(&started);
	for (uint64_t i = 0;; i++) {
		CHECK(tls_count == i, "thread %d: counter is %llu before sleep %llu", w->k,
		      (unsigned long long)tls_count, (unsigned long long)i);
		CHECK(syscall(SYS_gettid) == tid, "thread %d: TID is %ld, was %ld", w->k,
		      (long)syscall(SYS_gettid), tid);
		tls_count++;
		hash = mix64(hash ^ (tls_count * 0x9e3779b97f4a7c15ULL) ^ (uint64_t)w->k);
		w->hash = hash;
		sleep_ms(200);
		CHECK(tls_count == i + 1, "thread %d: counter is %llu after sleep %llu", w->k,
		      (unsigned long long)tls_count, (unsigned long long)i);
		CHECK(w->hash == hash, "thread %d: hash is %016llx, expected %016llx after sleep %llu",
		      w->k, (unsigned long long)w->hash, (unsigned long long)hash,
		      (unsigned long long)i);
		CHECK(syscall(SYS_gettid) == tid, "thread %d: TID is %ld after a sleep, was %ld",
		      w->k, (long)syscall(SYS_gettid), tid);
	}
	return NULL;
}

/* Starts threads-1 workers and returns once every one of them runs. */
static void start_threads(long threads)
{
	pthread_attr_t attr;

	if (threads <= 1)
		return;
	CHECK(pthread_barrier_init(&started, NULL, (unsigned)threads) == 0, "barrier");
	CHECK(pthread_attr_init(&attr) == 0, "pthread_attr_init");
	CHECK(pthread_attr_setstacksize(&attr, THREAD_STACK) == 0, "pthread_attr_setstacksize");
	for (int k = 1; k < threads; k++) {
		int err;

		workers[k].k = k;
		err = pthread_create(&workers[k].thread, &attr, worker_main, &workers[k]);
		CHECK(err == 0, "pthread_create of thread %d: %s", k, strerror(err));
	}
	pthread_attr_destroy(&attr);
	pthread_barrier_wait(&started);
}

int main(int argc, char **argv)
{
	long n = prog_init("bench_anon", argc, argv, argc == 4 || argc == 5 ? argc - 2 : 1,
			   "ITERATIONS MIB [THREADS [STRIPES]]");
	long mib = strtol(argv[2], NULL, 10);
	long threads = 1, stripes = 1;
	uint64_t *mem, *gen;
	size_t len;

	CHECK(mib > 0 && mib <= 4096, "bad MIB '%s'", argv[2]);
	if (argc >= 4) {
		char *end;

		errno = 0;
		threads = strtol(argv[3], &end, 10);
		CHECK(errno == 0 && *end == '\0' && end != argv[3] && threads >= 1 &&
			      threads <= MAX_THREADS,
		      "bad THREADS '%s' (1 to %d)", argv[3], MAX_THREADS);
	}
	if (argc == 5) {
		char *end;

		errno = 0;
		stripes = strtol(argv[4], &end, 10);
		CHECK(errno == 0 && *end == '\0' && end != argv[4] && stripes >= 1 &&
			      stripes <= 64,
		      "bad STRIPES '%s' (1 to 64)", argv[4]);
	}
	len = (size_t)mib << 20;
	mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(mem != MAP_FAILED, "mmap %ld MiB: %s", mib, strerror(errno));
	gen = calloc((size_t)mib, sizeof(*gen));
	CHECK(gen != NULL, "calloc: %s", strerror(errno));
	for (size_t i = 0; i < len / sizeof(uint64_t); i++)
		mem[i] = word(i, 0);
	start_threads(threads);
	ready_line();
	for (long t = 0; t < n; t++) {
		size_t s = 0;

		for (long k = 0; k < stripes; k++) {
			uint64_t *p;

			s = ((size_t)t * (size_t)stripes + (size_t)k) % (size_t)mib;
			p = mem + s * STRIPE_WORDS;
			for (size_t i = 0; i < STRIPE_WORDS; i++) {
				size_t w = s * STRIPE_WORDS + i;

				CHECK(p[i] == word(w, gen[s]), "word %zu wrong at tick %ld", w, t);
				p[i] = word(w, gen[s] + 1);
			}
			gen[s]++;
		}
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
