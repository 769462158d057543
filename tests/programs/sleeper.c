/*
 * sleeper ITERATIONS [nanosleep|mixed]
 *
 * Spends nearly all its time blocked in a sleeping system call, so a
 * checkpoint nearly always interrupts one. Each tick is one 300 ms sleep
 * run to completion by a remaining-time loop:
 *
 *   nanosleep (default): nanosleep(&req, &rem); on -1/EINTR continue with
 *     the remainder; any other errno fails; rem must be within 0..req.
 *   mixed: ticks rotate through nanosleep, clock_nanosleep(CLOCK_MONOTONIC,
 *     relative), poll(NULL, 0, ms) and select(0, ..., &tv) - the kernel
 *     restarts these differently (restart_syscall with a restart block for
 *     the first three, plain syscall restart with an updated timeout for
 *     select). poll's remainder is recomputed from the count of attempts
 *     (an EINTR there just sleeps the full 300 ms again).
 *
 * No clock readings are checked (CLOCK_MONOTONIC may jump across a
 * migration), only that the calls return what they may return, that the
 * remainders are sane and that the loop's state is intact: canaries around
 * the on-stack loop state, a copy of the tick number in a global and a
 * running hash of the requested durations. Interruption counts are not
 * printed, so the output does not depend on whether a checkpoint happened.
 */
#include "common.h"

#include <poll.h>
#include <sys/select.h>

#define SLEEP_NS (300 * 1000000L)
#define CANARY 0x5eed5eed5eed5eedULL

enum mode { MODE_NANOSLEEP, MODE_CLOCK_NANOSLEEP, MODE_POLL, MODE_SELECT, NMODES };

static const char *const mode_names[] = { "nanosleep", "clock_nanosleep", "poll", "select" };

static volatile long global_tick = -1;
static unsigned long interruptions; /* not printed: depends on checkpoints */

struct loop_state {
	uint64_t canary1;
	long tick;
	struct timespec req;
	struct timespec rem;
	long attempts;
	uint64_t canary2;
};

static void check_rem(const struct timespec *req, const struct timespec *rem, const char *what)
{
	CHECK(rem->tv_sec >= 0 && rem->tv_nsec >= 0 && rem->tv_nsec < 1000000000L,
	      "%s: remainder {%lld, %ld} malformed", what, (long long)rem->tv_sec,
	      rem->tv_nsec);
	CHECK(rem->tv_sec < req->tv_sec ||
		      (rem->tv_sec == req->tv_sec && rem->tv_nsec <= req->tv_nsec),
	      "%s: remainder longer than the request", what);
}

static void check_loop(const struct loop_state *st, long i, const char *when)
{
	CHECK(st->canary1 == CANARY && st->canary2 == ~CANARY, "%s: loop state canary smashed",
	      when);
	CHECK(st->tick == i && global_tick == i, "%s: tick copies disagree (%ld, %ld, %ld)",
	      when, st->tick, (long)global_tick, i);
	CHECK(st->req.tv_sec == 0 && st->req.tv_nsec > 0 && st->req.tv_nsec <= SLEEP_NS,
	      "%s: request {%lld, %ld} out of range", when, (long long)st->req.tv_sec,
	      st->req.tv_nsec);
}

static void sleep_tick(struct loop_state *st, long i, enum mode m)
{
	for (;;) {
		int r;

		check_loop(st, i, "before sleep");
		st->attempts++;
		st->rem.tv_sec = 0;
		st->rem.tv_nsec = 0;
		switch (m) {
		case MODE_NANOSLEEP:
			r = nanosleep(&st->req, &st->rem);
			if (r == 0)
				return;
			CHECK(r == -1 && errno == EINTR, "nanosleep returned %d (%s)", r,
			      strerror(errno));
			break;
		case MODE_CLOCK_NANOSLEEP:
			/* returns the error number itself, not -1/errno */
			r = clock_nanosleep(CLOCK_MONOTONIC, 0, &st->req, &st->rem);
			if (r == 0)
				return;
			CHECK(r == EINTR, "clock_nanosleep returned %d (%s)", r, strerror(r));
			break;
		case MODE_POLL:
			r = poll(NULL, 0, (int)(st->req.tv_nsec / 1000000L));
			if (r == 0)
				return;
			CHECK(r == -1 && errno == EINTR, "poll returned %d (%s)", r,
			      strerror(errno));
			st->rem = st->req; /* poll reports no remainder */
			break;
		case MODE_SELECT: {
			struct timeval tv = { 0, st->req.tv_nsec / 1000 };

			r = select(0, NULL, NULL, NULL, &tv);
			if (r == 0) {
				CHECK(tv.tv_sec == 0 && tv.tv_usec == 0,
				      "select timed out but left {%lld, %ld}", (long long)tv.tv_sec,
				      (long)tv.tv_usec);
				return;
			}
			CHECK(r == -1 && errno == EINTR, "select returned %d (%s)", r,
			      strerror(errno));
			CHECK(tv.tv_sec == 0 && tv.tv_usec >= 0 && tv.tv_usec < 1000000,
			      "select left a bad timeout");
			st->rem.tv_nsec = tv.tv_usec * 1000L;
			break;
		}
		default:
			fail("bad mode %d", m);
		}
		check_rem(&st->req, &st->rem, mode_names[m]);
		interruptions++;
		if (st->rem.tv_sec == 0 && st->rem.tv_nsec == 0)
			return;
		st->req = st->rem;
	}
}

int main(int argc, char **argv)
{
	long iters;
	int mixed = 0;
	uint64_t h = FNV_INIT;

	*prog_name_slot() = "sleeper";
	if (argc == 3) {
		CHECK(strcmp(argv[2], "nanosleep") == 0 || strcmp(argv[2], "mixed") == 0,
		      "mode must be nanosleep or mixed, not '%s'", argv[2]);
		mixed = strcmp(argv[2], "mixed") == 0;
		argc = 2;
	}
	iters = prog_init("sleeper", argc, argv, 0, "ITERATIONS [nanosleep|mixed]");

	ready_line();
	for (long i = 0; i < iters; i++) {
		enum mode m = mixed ? (enum mode)(i % NMODES) : MODE_NANOSLEEP;
		struct loop_state st = {
			.canary1 = CANARY,
			.tick = i,
			.req = { 0, SLEEP_NS },
			.canary2 = ~CANARY,
		};

		global_tick = i;
		sleep_tick(&st, i, m);
		check_loop(&st, i, "after sleep");
		CHECK(st.attempts >= 1, "no sleep attempted");
		h = hash_u64(h, (uint64_t)SLEEP_NS ^ ((uint64_t)m << 40) ^ (uint64_t)i);
		tick_line(i, "%s slept_ms=%ld sum=%016llx", mode_names[m], SLEEP_NS / 1000000L,
			  (unsigned long long)h);
	}
	ok_line("ticks=%ld sum=%016llx", iters, (unsigned long long)h);
	return 0;
}
