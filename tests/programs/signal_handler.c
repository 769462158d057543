/*
 * signal_handler ITERATIONS
 *
 * Signal state that a restore must bring back:
 *  - SIGUSR1 handler: SA_SIGINFO|SA_ONSTACK|SA_RESTART, sa_mask {SIGHUP,
 *    SIGWINCH}; SIGALRM handler: SA_ONSTACK|SA_RESTART, sa_mask {SIGQUIT};
 *    SIGPIPE ignored.
 *  - an alternate signal stack (sigaltstack) in a static buffer.
 *  - blocked mask {SIGUSR2, SIGRTMIN+1}.
 *  - pending signals: SIGUSR2 sent with raise() (thread-private pending,
 *    si_code SI_TKILL) and two queued SIGRTMIN+1 sent with sigqueue() to
 *    the process (shared pending, si_code SI_QUEUE, si_value 1001, 1002).
 *
 * Every tick: raise(SIGUSR1) and raise(SIGALRM) (no itimers: they are not
 * restored). The handlers check that they run on the altstack (a local's
 * address is inside it, sigaltstack() reports SS_ONSTACK) and that the mask
 * inside the handler holds their sa_mask bits, their own signal and the
 * process's blocked set; they count invocations. Then main checks the exact
 * counts, the sigaction of each signal, the altstack configuration (not
 * SS_ONSTACK outside a handler), the blocked mask and that sigpending()
 * shows exactly SIGUSR2 and SIGRTMIN+1. At the end, sigtimedwait() must
 * dequeue SIGUSR2 and the two SIGRTMIN+1 in order with their values and
 * codes, and nothing more (the raw rt_sigtimedwait syscall: glibc's wrapper
 * folds SI_TKILL into SI_USER). si_pid is not checked (a restore may change
 * pids).
 */
#include "common.h"

#include <signal.h>
#include <sys/syscall.h>

#define ALTSTACK_SIZE (64 * 1024)

static unsigned char altstack[ALTSTACK_SIZE] __attribute__((aligned(64)));
static volatile sig_atomic_t usr1_count, alrm_count;
static volatile sig_atomic_t handler_error; /* first failed check, 0 if none */

enum {
	ERR_USR1_NOT_ON_ALTSTACK = 1,
	ERR_USR1_SS_FLAGS,
	ERR_USR1_MASK,
	ERR_USR1_INFO,
	ERR_ALRM_NOT_ON_ALTSTACK,
	ERR_ALRM_MASK,
};

static const char *const handler_errors[] = {
	[ERR_USR1_NOT_ON_ALTSTACK] = "SIGUSR1 handler not running on the altstack",
	[ERR_USR1_SS_FLAGS] = "sigaltstack() in SIGUSR1 handler does not report SS_ONSTACK",
	[ERR_USR1_MASK] = "mask in SIGUSR1 handler lacks SIGUSR1/SIGHUP/SIGWINCH/SIGUSR2",
	[ERR_USR1_INFO] = "SIGUSR1 siginfo is not from raise() (si_code != SI_TKILL)",
	[ERR_ALRM_NOT_ON_ALTSTACK] = "SIGALRM handler not running on the altstack",
	[ERR_ALRM_MASK] = "mask in SIGALRM handler lacks SIGALRM/SIGQUIT/SIGUSR2",
};

static int on_altstack(const void *p)
{
	const unsigned char *c = p;

	return c >= altstack && c < altstack + ALTSTACK_SIZE;
}

static void set_error(int e)
{
	if (!handler_error)
		handler_error = e;
}

static void usr1_handler(int sig, siginfo_t *info, void *uctx)
{
	volatile int local = sig;
	sigset_t cur;
	stack_t ss;

	(void)uctx;
	if (!on_altstack((const void *)&local))
		set_error(ERR_USR1_NOT_ON_ALTSTACK);
	if (sigaltstack(NULL, &ss) != 0 || !(ss.ss_flags & SS_ONSTACK))
		set_error(ERR_USR1_SS_FLAGS);
	if (sigprocmask(SIG_BLOCK, NULL, &cur) != 0 || !sigismember(&cur, SIGUSR1) ||
	    !sigismember(&cur, SIGHUP) || !sigismember(&cur, SIGWINCH) ||
	    !sigismember(&cur, SIGUSR2) || sigismember(&cur, SIGALRM))
		set_error(ERR_USR1_MASK);
	if (info->si_signo != SIGUSR1 || info->si_code != SI_TKILL)
		set_error(ERR_USR1_INFO);
	usr1_count++;
}

static void alrm_handler(int sig)
{
	volatile int local = sig;
	sigset_t cur;

	if (!on_altstack((const void *)&local))
		set_error(ERR_ALRM_NOT_ON_ALTSTACK);
	if (sigprocmask(SIG_BLOCK, NULL, &cur) != 0 || !sigismember(&cur, SIGALRM) ||
	    !sigismember(&cur, SIGQUIT) || !sigismember(&cur, SIGUSR2) ||
	    sigismember(&cur, SIGUSR1))
		set_error(ERR_ALRM_MASK);
	alrm_count++;
}

static void check_action(int sig, void *handler, int flags, const int *mask_sigs, int nmask)
{
	struct sigaction sa;

	CHECK_SYS(sigaction(sig, NULL, &sa) == 0, "sigaction query");
	if (flags & SA_SIGINFO)
		CHECK((void *)sa.sa_sigaction == handler, "signal %d: handler changed", sig);
	else
		CHECK((void *)sa.sa_handler == handler, "signal %d: handler changed", sig);
	CHECK((sa.sa_flags & (SA_SIGINFO | SA_ONSTACK | SA_RESTART | SA_NODEFER |
			      SA_RESETHAND)) == flags,
	      "signal %d: sa_flags %#x, expected %#x", sig, (unsigned int)sa.sa_flags, flags);
	for (int s = 1; s < NSIG; s++) {
		int want = 0;

		if (s > SIGSYS && s < SIGRTMIN) /* glibc-internal signals */
			continue;
		for (int k = 0; k < nmask; k++)
			want |= mask_sigs[k] == s;
		CHECK(sigismember(&sa.sa_mask, s) == want, "signal %d: sa_mask bit %d is %d", sig,
		      s, !want);
	}
}

static const int usr1_mask[] = { SIGHUP, SIGWINCH };
static const int alrm_mask[] = { SIGQUIT };

static void check_state(const char *when)
{
	struct sigaction sa;
	sigset_t set;
	stack_t ss;

	if (handler_error)
		fail("%s: %s", when, handler_errors[handler_error]);
	check_action(SIGUSR1, (void *)usr1_handler, SA_SIGINFO | SA_ONSTACK | SA_RESTART,
		     usr1_mask, 2);
	check_action(SIGALRM, (void *)alrm_handler, SA_ONSTACK | SA_RESTART, alrm_mask, 1);
	CHECK_SYS(sigaction(SIGPIPE, NULL, &sa) == 0, "sigaction SIGPIPE");
	CHECK(sa.sa_handler == SIG_IGN, "%s: SIGPIPE no longer ignored", when);

	CHECK_SYS(sigaltstack(NULL, &ss) == 0, "sigaltstack query");
	CHECK(ss.ss_sp == altstack && ss.ss_size == ALTSTACK_SIZE && ss.ss_flags == 0,
	      "%s: altstack changed (size %zu, flags %#x)", when, ss.ss_size, ss.ss_flags);

	CHECK_SYS(sigprocmask(SIG_BLOCK, NULL, &set) == 0, "sigprocmask query");
	for (int s = 1; s < NSIG; s++) {
		if (s == SIGKILL || s == SIGSTOP || (s > SIGSYS && s < SIGRTMIN))
			continue;
		int want = s == SIGUSR2 || s == SIGRTMIN + 1;

		CHECK(sigismember(&set, s) == want, "%s: blocked bit for signal %d is %d", when,
		      s, !want);
	}
	CHECK_SYS(sigpending(&set) == 0, "sigpending");
	for (int s = 1; s < NSIG; s++) {
		if (s > SIGSYS && s < SIGRTMIN)
			continue;
		int want = s == SIGUSR2 || s == SIGRTMIN + 1;

		CHECK(sigismember(&set, s) == want, "%s: pending bit for signal %d is %d", when,
		      s, !want);
	}
}

static void dequeue(int sig, int code, int value, const char *what)
{
	struct timespec zero = { 0, 0 };
	siginfo_t info;
	sigset_t set;
	int got;

	sigemptyset(&set);
	sigaddset(&set, sig);
	memset(&info, 0, sizeof(info));
	got = (int)syscall(SYS_rt_sigtimedwait, &set, &info, &zero, (size_t)(_NSIG / 8));
	CHECK(got == sig, "%s: sigtimedwait returned %d (%s)", what, got,
	      got < 0 ? strerror(errno) : "wrong signal");
	CHECK(info.si_signo == sig && info.si_code == code,
	      "%s: siginfo signo %d code %d, expected %d/%d", what, info.si_signo,
	      info.si_code, sig, code);
	if (code == SI_QUEUE)
		CHECK(info.si_value.sival_int == value, "%s: si_value %d, expected %d", what,
		      info.si_value.sival_int, value);
}

int main(int argc, char **argv)
{
	long iters = prog_init("signal_handler", argc, argv, 0, "ITERATIONS");
	struct sigaction sa;
	sigset_t block;
	stack_t ss = { .ss_sp = altstack, .ss_size = ALTSTACK_SIZE, .ss_flags = 0 };
	union sigval val;
	struct timespec zero = { 0, 0 };

	CHECK_SYS(sigaltstack(&ss, NULL) == 0, "sigaltstack");

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = usr1_handler;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGHUP);
	sigaddset(&sa.sa_mask, SIGWINCH);
	CHECK_SYS(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction SIGUSR1");

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = alrm_handler;
	sa.sa_flags = SA_ONSTACK | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGQUIT);
	CHECK_SYS(sigaction(SIGALRM, &sa, NULL) == 0, "sigaction SIGALRM");

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	CHECK_SYS(sigaction(SIGPIPE, &sa, NULL) == 0, "sigaction SIGPIPE");

	sigemptyset(&block);
	sigaddset(&block, SIGUSR2);
	sigaddset(&block, SIGRTMIN + 1);
	CHECK_SYS(sigprocmask(SIG_SETMASK, &block, NULL) == 0, "sigprocmask");

	CHECK_SYS(raise(SIGUSR2) == 0, "raise SIGUSR2");
	val.sival_int = 1001;
	CHECK_SYS(sigqueue(getpid(), SIGRTMIN + 1, val) == 0, "sigqueue 1");
	val.sival_int = 1002;
	CHECK_SYS(sigqueue(getpid(), SIGRTMIN + 1, val) == 0, "sigqueue 2");
	check_state("start");

	ready_line();
	for (long i = 0; i < iters; i++) {
		CHECK_SYS(raise(SIGUSR1) == 0, "raise SIGUSR1");
		CHECK_SYS(raise(SIGALRM) == 0, "raise SIGALRM");
		CHECK(usr1_count == i + 1, "SIGUSR1 count %d, expected %ld", (int)usr1_count,
		      i + 1);
		CHECK(alrm_count == i + 1, "SIGALRM count %d, expected %ld", (int)alrm_count,
		      i + 1);
		check_state("tick");
		tick_line(i, "usr1=%d alrm=%d pending=usr2,rtmin+1", (int)usr1_count,
			  (int)alrm_count);
		sleep_ms(100);
	}
	check_state("end");

	dequeue(SIGUSR2, SI_TKILL, 0, "pending SIGUSR2");
	dequeue(SIGRTMIN + 1, SI_QUEUE, 1001, "first queued SIGRTMIN+1");
	dequeue(SIGRTMIN + 1, SI_QUEUE, 1002, "second queued SIGRTMIN+1");
	CHECK(sigtimedwait(&block, NULL, &zero) < 0 && errno == EAGAIN,
	      "more signals pending than were sent");
	CHECK_SYS(sigpending(&block) == 0, "sigpending");
	for (int s = 1; s < NSIG; s++)
		CHECK(!sigismember(&block, s), "signal %d still pending at the end", s);
	ok_line("usr1=%d alrm=%d dequeued=usr2,rtmin+1x2", (int)usr1_count, (int)alrm_count);
	return 0;
}
