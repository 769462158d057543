// cflags: -mavx2 -pthread
/*
 * threads ITERATIONS [WORKERS]
 *
 * A multi-threaded process whose every thread keeps state that a restore
 * must give back to that thread, not to the process: WORKERS pthreads (4
 * by default, at most 8) beside the main thread. Each iteration every
 * worker sleeps 50 ms with all sixteen ymm registers live across the
 * syscall (thread-specific values: xstate is per thread), then checks and
 * meets the others at a barrier (a futex wait); the main thread prints the
 * tick once all have met. Each worker also checks every iteration:
 *
 *   - its TID (gettid) is the one it started with (TIDs are kept);
 *   - its thread-local counter (TLS through fs_base) equals the iteration;
 *   - its name (PR_GET_NAME) is "worker-K";
 *   - its signal mask blocks exactly the signals it blocked (per thread);
 *   - its alternate signal stack is its own;
 *   - its robust list head is the one glibc registered (get_robust_list);
 *   - its scheduling policy (SCHED_BATCH for odd workers);
 *   - its rseq area is registered with the kernel: registering it again
 *     fails with EBUSY (an unregistered thread would succeed).
 *
 * At the end the main thread joins every worker: pthread_join waits on the
 * kernel's clear_child_tid futex, so a thread whose clear_child_tid was not
 * restored makes the join hang.
 *
 * Prints `skip avx` and exits 0 when the CPU cannot run AVX2.
 */
#include "common.h"

#include <immintrin.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/rseq.h>
#include <sys/syscall.h>

#define MAX_WORKERS 8
#define NREG 16
#define LANES 4
#define NVAL (NREG * LANES)
#define ALTSTACK_SIZE (64 * 1024)
#define RSEQ_SIG_X86 0x53053053

struct worker {
	pthread_t thread;
	int k;
	pid_t tid;
	uint64_t hash;
	char altstack[ALTSTACK_SIZE];
};

static struct worker workers[MAX_WORKERS];
static int nworkers = 4;
static long iterations;
static pthread_barrier_t tick_start, tick_done;

static __thread long tls_count;
static __thread uint64_t tls_seed;

#define REP16(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) \
	M(8) M(9) M(10) M(11) M(12) M(13) M(14) M(15)
#define LOAD(n) "vmovupd " #n "*32(%[in]), %%ymm" #n "\n\t"
#define STORE(n) "vmovupd %%ymm" #n ", " #n "*32(%[raw])\n\t"

/* ymm0..15 = in; nanosleep via `syscall`; raw = ymm0..15. */
static long held_sleep(const double *in, double *raw, const struct timespec *req,
		       struct timespec *rem)
{
	long ret;

	asm volatile(REP16(LOAD)
		     "syscall\n\t"
		     REP16(STORE)
		     : "=a"(ret)
		     : "0"((long)SYS_nanosleep), "D"(req), "S"(rem), [in] "r"(in),
		       [raw] "r"(raw)
		     : "rcx", "r11", "cc", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4",
		       "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
		       "xmm13", "xmm14", "xmm15");
	return ret;
}

static void sleep_with_ymm(struct worker *w, long i)
{
	double in[NVAL] __attribute__((aligned(32)));
	double raw[NVAL] __attribute__((aligned(32)));
	struct timespec req = { 0, 50 * 1000000L }, rem = { 0, 0 };

	for (int k = 0; k < NVAL; k++)
		in[k] = (w->k + 1) * 1000.0 + i + k * 0.0625 * ((k % LANES) >= 2 ? -1 : 1);
	for (;;) {
		long ret;

		memset(raw, 0, sizeof(raw));
		ret = held_sleep(in, raw, &req, &rem);
		for (int k = 0; k < NVAL; k++)
			CHECK(memcmp(&in[k], &raw[k], sizeof(double)) == 0,
			      "worker %d tick %ld: ymm%d lane %d is %a, expected %a", w->k, i,
			      k / LANES, k % LANES, raw[k], in[k]);
		if (ret != -EINTR) {
			CHECK(ret == 0, "worker %d: nanosleep returned %ld", w->k, ret);
			return;
		}
		req = rem;
	}
}

static sigset_t worker_mask(int k)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGUSR1 + (k % 2));
	sigaddset(&set, SIGRTMIN + k);
	return set;
}

static void check_thread_state(struct worker *w, long i, void *robust0, const void *rseq_area)
{
	char name[16] = "", want[16];
	sigset_t now, mask = worker_mask(w->k);
	stack_t ss;
	struct robust_list_head *head = NULL;
	size_t len = 0;
	int policy;

	CHECK(syscall(SYS_gettid) == w->tid, "worker %d: TID is %ld, was %d", w->k,
	      (long)syscall(SYS_gettid), w->tid);
	CHECK(tls_count == i, "worker %d: TLS counter is %ld, expected %ld", w->k, tls_count, i);
	CHECK(tls_seed == mix64((uint64_t)w->k + 77), "worker %d: TLS seed changed", w->k);
	CHECK_SYS(prctl(PR_GET_NAME, name) == 0, "PR_GET_NAME");
	snprintf(want, sizeof(want), "worker-%d", w->k);
	CHECK(strcmp(name, want) == 0, "worker %d: name is '%s'", w->k, name);
	CHECK_SYS(pthread_sigmask(SIG_BLOCK, NULL, &now) == 0, "pthread_sigmask");
	for (int s = 1; s < SIGRTMIN + MAX_WORKERS; s++)
		CHECK(sigismember(&now, s) == sigismember(&mask, s),
		      "worker %d: signal %d is %sblocked", w->k, s, sigismember(&now, s) ? "" : "not ");
	CHECK_SYS(sigaltstack(NULL, &ss) == 0, "sigaltstack");
	CHECK(ss.ss_sp == w->altstack && ss.ss_size == ALTSTACK_SIZE,
	      "worker %d: alternate stack is %p+%zu", w->k, ss.ss_sp, ss.ss_size);
	CHECK_SYS(syscall(SYS_get_robust_list, 0, &head, &len) == 0, "get_robust_list");
	CHECK(head == robust0 && len == sizeof(*head), "worker %d: robust list is %p", w->k,
	      (void *)head);
	policy = sched_getscheduler(0);
	CHECK(policy == (w->k % 2 ? SCHED_BATCH : SCHED_OTHER), "worker %d: policy is %d", w->k,
	      policy);
	if (rseq_area) {
		/* glibc registers 32 bytes and may report fewer in __rseq_size */
		long r = syscall(SYS_rseq, rseq_area, 32, 0, RSEQ_SIG_X86);

		CHECK(r == -1 && errno == EBUSY,
		      "worker %d: its rseq area is not registered (registering it again: %ld, %s)",
		      w->k, r, r ? strerror(errno) : "succeeded");
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct robust_list_head *robust0 = NULL;
	size_t len = 0;
	sigset_t mask = worker_mask(w->k);
	stack_t ss = { .ss_sp = w->altstack, .ss_size = ALTSTACK_SIZE, .ss_flags = 0 };
	struct sched_param sp = { 0 };
	const void *rseq_area = NULL;
	char name[16];

	w->tid = (pid_t)syscall(SYS_gettid);
	tls_seed = mix64((uint64_t)w->k + 77);
	snprintf(name, sizeof(name), "worker-%d", w->k);
	CHECK_SYS(prctl(PR_SET_NAME, name) == 0, "PR_SET_NAME");
	CHECK_SYS(pthread_sigmask(SIG_SETMASK, &mask, NULL) == 0, "pthread_sigmask");
	CHECK_SYS(sigaltstack(&ss, NULL) == 0, "sigaltstack");
	CHECK_SYS(syscall(SYS_get_robust_list, 0, &robust0, &len) == 0, "get_robust_list");
	if (w->k % 2)
		CHECK_SYS(sched_setscheduler(0, SCHED_BATCH, &sp) == 0, "SCHED_BATCH");
	if (__rseq_size > 0)
		rseq_area = (const char *)__builtin_thread_pointer() + __rseq_offset;

	for (long i = 0; i < iterations; i++) {
		pthread_barrier_wait(&tick_start);
		sleep_with_ymm(w, i);
		check_thread_state(w, i, robust0, rseq_area);
		tls_seed = mix64((uint64_t)w->k + 77);
		tls_count++;
		w->hash = mix64(w->hash ^ (uint64_t)tls_count ^ ((uint64_t)w->k << 32));
		pthread_barrier_wait(&tick_done);
	}
	return (void *)(long)(w->k + 100);
}

__attribute__((noinline)) static int run(int argc, char **argv)
{
	iterations = prog_init("threads", argc, argv, argc - 2 > 0 ? argc - 2 : 0,
			       "ITERATIONS [WORKERS]");
	if (argc > 2) {
		nworkers = atoi(argv[2]);
		CHECK(nworkers >= 1 && nworkers <= MAX_WORKERS, "bad WORKERS '%s'", argv[2]);
	}
	CHECK(pthread_barrier_init(&tick_start, NULL, (unsigned)nworkers + 1) == 0, "barrier");
	CHECK(pthread_barrier_init(&tick_done, NULL, (unsigned)nworkers + 1) == 0, "barrier");
	for (int k = 0; k < nworkers; k++) {
		workers[k].k = k;
		CHECK(pthread_create(&workers[k].thread, NULL, worker_main, &workers[k]) == 0,
		      "pthread_create");
	}
	ready_line();
	for (long i = 0; i < iterations; i++) {
		uint64_t h = FNV_INIT;

		pthread_barrier_wait(&tick_start);
		pthread_barrier_wait(&tick_done);
		for (int k = 0; k < nworkers; k++)
			h = fnv1a(h, &workers[k].hash, sizeof(workers[k].hash));
		tick_line(i, "workers=%d hash=%016llx", nworkers, (unsigned long long)h);
	}
	for (int k = 0; k < nworkers; k++) {
		void *ret = NULL;

		CHECK(pthread_join(workers[k].thread, &ret) == 0, "pthread_join");
		CHECK(ret == (void *)(long)(k + 100), "worker %d returned %p", k, ret);
	}
	ok_line("workers=%d", nworkers);
	return 0;
}

__attribute__((target("no-avx"))) int main(int argc, char **argv)
{
	static const char skip[] = "skip avx\n";

	__builtin_cpu_init();
	if (!__builtin_cpu_supports("avx2")) {
		if (write(1, skip, sizeof(skip) - 1) < 0)
			return 1;
		return 0;
	}
	return run(argc, argv);
}
