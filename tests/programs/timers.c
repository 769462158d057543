// cflags: -pthread
/*
 * timers ITERATIONS [target]
 *
 * A process whose timers must keep firing after a restore, with the right
 * ids, values and targets. A second thread (the worker) waits for its own
 * timer's signals; the main thread arms, in this order:
 *
 *   POSIX timer 0  CLOCK_MONOTONIC, SIGEV_SIGNAL SIGRTMIN, sival_ptr = a
 *                  page mapped at a fixed address (MARK), every 100 ms;
 *   POSIX timer 1  CLOCK_MONOTONIC, SIGEV_THREAD_ID to the worker,
 *                  SIGRTMIN+1, sival_int 0xb0b, every 150 ms;
 *   POSIX timer 2  made and deleted: a gap in the ids;
 *   POSIX timer 3  CLOCK_REALTIME, SIGEV_NONE, never armed;
 *   POSIX timer 4  CLOCK_BOOTTIME, SIGEV_NONE, 1000 s, then every 500 s;
 *   POSIX timer 5  CLOCK_PROCESS_CPUTIME_ID, SIGRTMIN+2, sival_int 0xf,
 *                  every 20 ms of CPU time;
 *   ITIMER_REAL    every 200 ms (SIGALRM);
 *   ITIMER_VIRTUAL 1000 s, then every 7 s (never fires here);
 *   ITIMER_PROF    every 30 ms of CPU time (SIGPROF).
 *
 * The kernel must give the POSIX timers ids 0..5 in that order (it does in
 * a fresh process). Each handler checks its signal's si_code (SI_TIMER for
 * the POSIX timers), the timer id and value it carries (si_timerid,
 * si_value, the MARK page's contents through the pointer) and the thread it
 * runs on (the worker for timer 1, the main thread for the others, which
 * the worker blocks).
 *
 * Each tick the main thread waits (10 ms sleeps, burning 2 ms of CPU time
 * between them for the CPU-time timers) until every firing timer has fired
 * at least once since the last tick, and checks through timer_gettime and
 * getitimer that every timer is there with its interval (a value no larger
 * than it, or for the long ones no larger than at the start), that timer 2
 * is not, that timer 3 is disarmed. Then `tick <i> timers=5 itimers=3`. At
 * the end it ends the worker, deletes the timers and prints
 * `ok timers ticks=<n>`. A timer that stops firing fails the tick after
 * 1500 rounds (about 20 s).
 *
 * With `target` it makes no timer: it maps MARK, installs the handlers,
 * starts the worker, prints `target worker=<TID>`, `ready`, stops itself
 * (SIGSTOP), and once continued runs ITERATIONS ticks like the above, on
 * the timers a test made in it meanwhile (the dump of a run without
 * `target`, with timer 1 aimed at this worker).
 */
#include "common.h"

#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>

#define MARK ((void *)0x5a5a00000000UL)
#define MARK_TEXT "timers: the page sival_ptr points to"
#define NTIMERS 6
#define ROUNDS 1500
/* A tick at HZ=100, the coarsest of Debian's kernels, and more. */
#define CPU_TICK_SLACK_MS 10

static pid_t main_tid, worker_tid;
static volatile sig_atomic_t stop;
static volatile sig_atomic_t count_real, count_prof, count_a, count_b, count_f;
/* The first thing a handler found wrong (a static string) and its value. */
static const char *volatile bad;
static volatile long bad_value;

static void wrong(const char *what, long value)
{
	if (!bad) {
		bad_value = value;
		bad = what;
	}
}

static pid_t gettid_raw(void)
{
	return (pid_t)syscall(SYS_gettid);
}

static void on_itimer(int sig, siginfo_t *si, void *uc)
{
	(void)si;
	(void)uc;
	if (gettid_raw() != main_tid)
		wrong("an interval timer's signal ran on the worker", sig);
	if (sig == SIGALRM)
		count_real++;
	else
		count_prof++;
}

static void on_posix(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (si->si_code != SI_TIMER) {
		wrong("a POSIX timer's signal has si_code", si->si_code);
		return;
	}
	if (sig == SIGRTMIN) {
		if (si->si_timerid != 0)
			wrong("SIGRTMIN came from timer", si->si_timerid);
		else if (si->si_value.sival_ptr != MARK)
			wrong("timer 0's sival_ptr is", (long)si->si_value.sival_ptr);
		else if (memcmp(si->si_value.sival_ptr, MARK_TEXT, sizeof(MARK_TEXT)) != 0)
			wrong("timer 0's sival_ptr points to something else", 0);
		else if (gettid_raw() != main_tid)
			wrong("timer 0's signal ran on thread", gettid_raw());
		count_a++;
	} else if (sig == SIGRTMIN + 1) {
		if (si->si_timerid != 1)
			wrong("SIGRTMIN+1 came from timer", si->si_timerid);
		else if (si->si_value.sival_int != 0xb0b)
			wrong("timer 1's sival_int is", si->si_value.sival_int);
		else if (gettid_raw() != worker_tid)
			wrong("timer 1's signal ran on thread", gettid_raw());
		count_b++;
	} else {
		if (si->si_timerid != 5)
			wrong("SIGRTMIN+2 came from timer", si->si_timerid);
		else if (si->si_value.sival_int != 0xf)
			wrong("timer 5's sival_int is", si->si_value.sival_int);
		else if (gettid_raw() != main_tid)
			wrong("timer 5's signal ran on thread", gettid_raw());
		count_f++;
	}
}

static void *worker_main(void *arg)
{
	sigset_t all;

	(void)arg;
	sigfillset(&all);
	sigdelset(&all, SIGRTMIN + 1);
	CHECK(pthread_sigmask(SIG_SETMASK, &all, NULL) == 0, "pthread_sigmask");
	worker_tid = gettid_raw();
	while (!stop)
		pause();
	return NULL;
}

static void handle(int sig, void (*fn)(int, siginfo_t *, void *))
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = fn;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	CHECK_SYS(sigaction(sig, &sa, NULL) == 0, "sigaction");
}

static int timer_create_raw(clockid_t clock, int notify, int sig, long value, pid_t tid)
{
	struct sigevent sev;
	int id = -1;

	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = notify;
	sev.sigev_signo = sig;
	sev.sigev_value.sival_ptr = (void *)value;
	sev._sigev_un._tid = tid;
	CHECK_SYS(syscall(SYS_timer_create, clock, &sev, &id) == 0, "timer_create");
	return id;
}

static struct timespec ms_ts(long ms)
{
	struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };

	return t;
}

static void arm(int id, long first_ms, long every_ms)
{
	struct itimerspec its = { ms_ts(every_ms), ms_ts(first_ms) };

	CHECK_SYS(syscall(SYS_timer_settime, id, 0, &its, NULL) == 0, "timer_settime");
}

static void arm_itimer(int which, long first_ms, long every_ms)
{
	struct itimerval v = { { every_ms / 1000, (every_ms % 1000) * 1000 },
			       { first_ms / 1000, (first_ms % 1000) * 1000 } };

	CHECK_SYS(setitimer(which, &v, NULL) == 0, "setitimer");
}

static void make_timers(void)
{
	static const int want[NTIMERS] = { 0, 1, 2, 3, 4, 5 };
	int got[NTIMERS];

	got[0] = timer_create_raw(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGRTMIN, (long)MARK, 0);
	got[1] = timer_create_raw(CLOCK_MONOTONIC, SIGEV_THREAD_ID, SIGRTMIN + 1, 0xb0b,
				  worker_tid);
	got[2] = timer_create_raw(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGRTMIN, 2, 0);
	CHECK_SYS(syscall(SYS_timer_delete, got[2]) == 0, "timer_delete");
	/* A SIGEV_NONE timer's signal number is never used: leave garbage there. */
	got[3] = timer_create_raw(CLOCK_REALTIME, SIGEV_NONE, 12345, 3, 0);
	got[4] = timer_create_raw(CLOCK_BOOTTIME, SIGEV_NONE, 0, 4, 0);
	got[5] = timer_create_raw(CLOCK_PROCESS_CPUTIME_ID, SIGEV_SIGNAL, SIGRTMIN + 2, 0xf, 0);
	for (int i = 0; i < NTIMERS; i++)
		CHECK(got[i] == want[i], "POSIX timer %d got id %d", i, got[i]);
	arm(0, 100, 100);
	arm(1, 150, 150);
	arm(4, 1000 * 1000, 500 * 1000);
	arm(5, 20, 20);
	arm_itimer(ITIMER_REAL, 200, 200);
	arm_itimer(ITIMER_VIRTUAL, 1000 * 1000, 7000);
	arm_itimer(ITIMER_PROF, 30, 30);
}

static long ts_ns(struct timespec t)
{
	return t.tv_sec * 1000000000L + t.tv_nsec;
}

static long tv_ns(struct timeval t)
{
	return t.tv_sec * 1000000000L + t.tv_usec * 1000L;
}

/* Timer `id` is there with this interval, its value at most `max_ns` (and not 0 when `armed`). */
static void check_posix(long i, int id, long interval_ms, long max_ms, int armed)
{
	struct itimerspec its;

	CHECK(syscall(SYS_timer_gettime, id, &its) == 0, "tick %ld: POSIX timer %d: %s", i, id,
	      strerror(errno));
	CHECK(ts_ns(its.it_interval) == interval_ms * 1000000L,
	      "tick %ld: POSIX timer %d has interval %ld ns", i, id, ts_ns(its.it_interval));
	CHECK(ts_ns(its.it_value) <= max_ms * 1000000L && (ts_ns(its.it_value) > 0) == armed,
	      "tick %ld: POSIX timer %d has %ld ns left", i, id, ts_ns(its.it_value));
}

/*
 * Interval timer `which` has this interval and no more than `max_ms` left. An ITIMER_REAL whose
 * SIGALRM is pending reads 0 left (the kernel restarts it when the signal is taken): that is
 * allowed, the signals being blocked meanwhile (check_timers).
 */
static void check_itimer(long i, int which, long interval_ms, long max_ms)
{
	struct itimerval v;
	sigset_t pending;

	CHECK_SYS(getitimer(which, &v) == 0, "getitimer");
	CHECK_SYS(sigpending(&pending) == 0, "sigpending");
	CHECK(tv_ns(v.it_interval) == interval_ms * 1000000L,
	      "tick %ld: interval timer %d has interval %ld ns", i, which, tv_ns(v.it_interval));
	CHECK((tv_ns(v.it_value) > 0 ||
	       (which == ITIMER_REAL && sigismember(&pending, SIGALRM))) &&
		      tv_ns(v.it_value) <= max_ms * 1000000L,
	      "tick %ld: interval timer %d has %ld ns left", i, which, tv_ns(v.it_value));
}

static void check_timers(long i)
{
	struct itimerspec its;
	sigset_t timer_signals, old;

	/* A timer that fires meanwhile keeps its signal pending until the checks are done. */
	sigemptyset(&timer_signals);
	sigaddset(&timer_signals, SIGALRM);
	sigaddset(&timer_signals, SIGPROF);
	sigaddset(&timer_signals, SIGRTMIN);
	sigaddset(&timer_signals, SIGRTMIN + 2);
	CHECK(pthread_sigmask(SIG_BLOCK, &timer_signals, &old) == 0, "pthread_sigmask");

	check_posix(i, 0, 100, 100, 1);
	check_posix(i, 1, 150, 150, 1);
	CHECK(syscall(SYS_timer_gettime, 2, &its) == -1 && errno == EINVAL,
	      "tick %ld: POSIX timer 2 is there", i);
	check_posix(i, 3, 0, 0, 0);
	check_posix(i, 4, 500 * 1000, 1000 * 1000, 1);
	check_posix(i, 5, 20, 20, 1);
	CHECK(syscall(SYS_timer_gettime, 6, &its) == -1 && errno == EINVAL,
	      "tick %ld: POSIX timer 6 is there", i);
	check_itimer(i, ITIMER_REAL, 200, 200);
	/*
	 * A CPU-time itimer may read up to a tick more than it was set to: the
	 * kernel reads it against a sample of the process's CPU time that can
	 * lag the one it was armed against (seen: 1000.004 s left of 1000 s).
	 */
	check_itimer(i, ITIMER_VIRTUAL, 7000, 1000 * 1000 + CPU_TICK_SLACK_MS);
	check_itimer(i, ITIMER_PROF, 30, 30 + CPU_TICK_SLACK_MS);
	CHECK(pthread_sigmask(SIG_SETMASK, &old, NULL) == 0, "pthread_sigmask");
}

static void burn_cpu(void)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
	do
		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	while (ts_ns(t) - ts_ns(t0) < 2000000L);
}

static void run_ticks(long iterations)
{
	for (long i = 0; i < iterations; i++) {
		long real = count_real, prof = count_prof, a = count_a, b = count_b,
		     f = count_f;

		for (long n = 0;; n++) {
			CHECK(!bad, "tick %ld: %s %ld", i, bad, (long)bad_value);
			if (count_real != real && count_a != a && count_b != b &&
			    count_prof != prof && count_f != f)
				break;
			CHECK(n < ROUNDS, "tick %ld: no signal from%s%s%s%s%s in %d rounds", i,
			      count_real == real ? " ITIMER_REAL" : "",
			      count_prof == prof ? " ITIMER_PROF" : "",
			      count_a == a ? " timer-0" : "", count_b == b ? " timer-1" : "",
			      count_f == f ? " timer-5" : "", ROUNDS);
			if (count_prof == prof || count_f == f)
				burn_cpu();
			sleep_ms(10);
		}
		check_timers(i);
		tick_line(i, "timers=5 itimers=3");
	}
}

int main(int argc, char **argv)
{
	long iterations = prog_init("timers", argc, argv, argc > 2 ? 1 : 0, "ITERATIONS [target]");
	int target = argc > 2;
	pthread_t worker;
	void *mark;

	CHECK(!target || strcmp(argv[2], "target") == 0, "unknown mode '%s'", argv[2]);
	main_tid = gettid_raw();
	mark = mmap(MARK, 4096, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	CHECK(mark == MARK, "mmap at %p: %s", MARK, strerror(errno));
	memcpy(mark, MARK_TEXT, sizeof(MARK_TEXT));
	handle(SIGALRM, on_itimer);
	handle(SIGPROF, on_itimer);
	handle(SIGRTMIN, on_posix);
	handle(SIGRTMIN + 1, on_posix);
	handle(SIGRTMIN + 2, on_posix);
	CHECK(pthread_create(&worker, NULL, worker_main, NULL) == 0, "pthread_create");
	while (!worker_tid)
		sleep_ms(1);
	if (target) {
		out("target worker=%d\n", (int)worker_tid);
		ready_line();
		raise(SIGSTOP);
	} else {
		make_timers();
		ready_line();
	}
	run_ticks(iterations);

	stop = 1;
	CHECK(pthread_join(worker, NULL) == 0, "pthread_join");
	for (int id = 0; id < NTIMERS; id++)
		if (id != 2)
			CHECK_SYS(syscall(SYS_timer_delete, id) == 0, "timer_delete");
	arm_itimer(ITIMER_REAL, 0, 0);
	arm_itimer(ITIMER_VIRTUAL, 0, 0);
	arm_itimer(ITIMER_PROF, 0, 0);
	CHECK(!bad, "%s %ld", bad, (long)bad_value);
	ok_line("ticks=%ld", iterations);
	return 0;
}
