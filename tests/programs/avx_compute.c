// cflags: -mavx2
/*
 * avx_compute ITERATIONS
 *
 * Keeps all sixteen AVX ymm registers (256 bits each, both halves distinct)
 * live across the nanosleep syscall, which is where the program spends
 * nearly all of its time and so where a checkpoint freezes it.
 *
 * How the ymm state is guaranteed to be live across the syscall: C code
 * cannot promise that (ymm0-15 are caller-saved in the SysV ABI, so a
 * `__m256d` variable is spilled to the stack around a libc nanosleep()
 * call, and `register ... asm("ymm8")` only binds the register at asm
 * operands). Instead a single `asm volatile` block (held_nanosleep) loads
 * ymm0..ymm15 from memory, issues the nanosleep system call itself with the
 * `syscall` instruction, and only then stores ymm0..ymm15 back (`raw`) and
 * computes with them (out = reg * mul + add, in the registers, still inside
 * the same asm block). The compiler cannot spill or reload anything in the
 * middle of one asm statement, and the Linux syscall ABI preserves every
 * vector register (only rax, rcx and r11 change), so the values that come
 * out are exactly what the registers held while the task slept - in the
 * kernel, frozen, dumped and restored. `raw` must equal `in` bit for bit and
 * `out` must equal a scalar C recomputation of in * mul + add.
 *
 * The upper 128 bits of every ymm register hold values unlike the lower
 * ones, so a restore that only restores the legacy FXSAVE/xmm area (and
 * not the XSAVE AVX component) is caught. The program also runs with a
 * non-default MXCSR (FTZ|DAZ) and x87 control word (53-bit precision) and
 * checks both each tick.
 *
 * Prints `skip avx` and exits 0 when the CPU/OS cannot run AVX2.
 */
#include "common.h"

#include <immintrin.h>
#include <sys/syscall.h>

#define NREG 16
#define LANES 4
#define NVAL (NREG * LANES)

#define MXCSR_WANT_BITS 0x8040u /* FTZ | DAZ */
#define X87_CW_WANT 0x027f	/* default 0x037f with precision control = double */

struct vecs {
	double in[NVAL];  /* register contents loaded before the syscall */
	double raw[NVAL]; /* register contents stored right after it */
	double out[NVAL]; /* reg * mul + add, computed in the registers */
	double mul[NVAL];
	double add[NVAL];
} __attribute__((aligned(32)));

#define REP16(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) \
	M(8) M(9) M(10) M(11) M(12) M(13) M(14) M(15)
#define LOAD(n) "vmovupd " #n "*32(%[in]), %%ymm" #n "\n\t"
#define STORE_RAW(n) "vmovupd %%ymm" #n ", " #n "*32(%[raw])\n\t"
#define COMPUTE(n)                                                           \
	"vmulpd " #n "*32(%[mul]), %%ymm" #n ", %%ymm" #n "\n\t"               \
	"vaddpd " #n "*32(%[add]), %%ymm" #n ", %%ymm" #n "\n\t"
#define STORE_OUT(n) "vmovupd %%ymm" #n ", " #n "*32(%[out])\n\t"

/*
 * ymm0..15 = in; nanosleep(req, rem) via `syscall`; raw = ymm0..15;
 * ymm = ymm * mul + add; out = ymm0..15. Returns the raw syscall result
 * (0 or -errno).
 */
static long held_nanosleep(struct vecs *v, const struct timespec *req, struct timespec *rem)
{
	long ret;

	asm volatile(REP16(LOAD)
		     "syscall\n\t"
		     REP16(STORE_RAW)
		     REP16(COMPUTE)
		     REP16(STORE_OUT)
		     : "=a"(ret)
		     : "0"((long)SYS_nanosleep), "D"(req), "S"(rem), [in] "r"(v->in),
		       [raw] "r"(v->raw), [out] "r"(v->out), [mul] "r"(v->mul),
		       [add] "r"(v->add)
		     : "rcx", "r11", "cc", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4",
		       "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
		       "xmm13", "xmm14", "xmm15");
	return ret;
}

/* Scalar reference for out: one double at a time, never vectorized. */
__attribute__((noinline, optimize("no-tree-vectorize")))
static void scalar_expect(const struct vecs *v, double *expect)
{
	for (int k = 0; k < NVAL; k++) {
		volatile double prod = v->in[k] * v->mul[k];

		expect[k] = prod + v->add[k];
	}
}

static void check_control_words(const char *when)
{
	unsigned int mxcsr = _mm_getcsr();
	unsigned short cw;

	asm volatile("fnstcw %0" : "=m"(cw));
	CHECK((mxcsr & MXCSR_WANT_BITS) == MXCSR_WANT_BITS && (mxcsr & 0x6000) == 0,
	      "%s: MXCSR is %#x, expected FTZ|DAZ and round-to-nearest", when, mxcsr);
	CHECK(cw == X87_CW_WANT, "%s: x87 control word is %#x, expected %#x", when, cw,
	      X87_CW_WANT);
}

static void check_bits(const double *got, const double *want, const char *what, long i,
		       int call)
{
	for (int k = 0; k < NVAL; k++)
		CHECK(memcmp(&got[k], &want[k], sizeof(double)) == 0,
		      "tick %ld call %d: %s ymm%d lane %d is %a, expected %a", i, call, what,
		      k / LANES, k % LANES, got[k], want[k]);
}

__attribute__((noinline)) static int run(int argc, char **argv)
{
	long iters = prog_init("avx_compute", argc, argv, 0, "ITERATIONS");
	static struct vecs v;
	double expect[NVAL];
	unsigned short cw = X87_CW_WANT;

	for (int k = 0; k < NVAL; k++) {
		int reg = k / LANES, lane = k % LANES;

		/* lanes 2..3 (the upper 128 bits) differ in sign and scale */
		v.in[k] = (reg + 1) * 1.0009765625 + lane * 0.03125;
		if (lane >= 2)
			v.in[k] = -v.in[k] * 1024.0;
		v.mul[k] = 0.5 + (k % 7) * 0.0625;
		v.add[k] = k * 0.25 - 3.0;
	}
	_mm_setcsr((_mm_getcsr() & ~0x6000u) | MXCSR_WANT_BITS);
	asm volatile("fldcw %0" : : "m"(cw));
	check_control_words("start");

	ready_line();
	for (long i = 0; i < iters; i++) {
		struct timespec req = { 0, 100 * 1000000L }, rem = { 0, 0 };
		uint64_t h = FNV_INIT;
		int call = 0;
		long ret;

		for (int k = 0; k < NVAL; k++)
			v.add[k] += 1.0;
		scalar_expect(&v, expect);
		for (;;) {
			memset(v.raw, 0, sizeof(v.raw));
			memset(v.out, 0, sizeof(v.out));
			ret = held_nanosleep(&v, &req, &rem);
			check_bits(v.raw, v.in, "register after syscall:", i, call);
			check_bits(v.out, expect, "computed", i, call);
			if (ret != -EINTR)
				break;
			/* interrupted (e.g. a restorer turned the restart into EINTR) */
			CHECK(rem.tv_sec >= 0 && rem.tv_nsec >= 0 && rem.tv_nsec < 1000000000L &&
				      rem.tv_sec <= req.tv_sec,
			      "nanosleep remainder out of range");
			req = rem;
			call++;
		}
		CHECK(ret == 0, "nanosleep returned %ld", ret);
		check_control_words("tick");
		memcpy(v.in, v.out, sizeof(v.in));
		h = fnv1a(h, v.in, sizeof(v.in));
		tick_line(i, "hash=%016llx", (unsigned long long)h);
	}
	ok_line("hash=%016llx", (unsigned long long)fnv1a(FNV_INIT, v.in, sizeof(v.in)));
	return 0;
}

/*
 * Built without AVX so nothing in it can fault on an older CPU before the
 * check; everything that may use AVX lives in run().
 */
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
