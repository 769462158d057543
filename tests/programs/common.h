/*
 * Shared helpers for the checkpoint/restore test programs (static inline
 * only: every program is a single translation unit).
 *
 * Protocol (see README.md): `prog ITERATIONS [extra...]`; prints
 * `ready <pid>`, then one `tick <i> <summary>` line per iteration, then
 * `ok <name> <summary>` and exits 0. A failed check prints
 * `FAIL <name>: <reason>` to stderr and exits 1. Every line is written
 * with a single write(2), so no stdio buffer ever holds output across a
 * checkpoint.
 */
#ifndef PPM_TEST_COMMON_H
#define PPM_TEST_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The program's name, as used in `ok <name>` and `FAIL <name>:`. */
static inline const char **prog_name_slot(void)
{
	static const char *name = "?";

	return &name;
}

/* write(2) the whole buffer, retrying on EINTR and short writes. */
static inline int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Prints `FAIL <name>: <reason>` to stderr and exits 1. */
static inline __attribute__((noreturn, format(printf, 1, 2)))
void fail(const char *fmt, ...)
{
	char buf[1024];
	int n = snprintf(buf, sizeof(buf), "FAIL %s: ", *prog_name_slot());
	va_list ap;

	va_start(ap, fmt);
	if (n >= 0 && (size_t)n < sizeof(buf) - 2)
		n += vsnprintf(buf + n, sizeof(buf) - 2 - (size_t)n, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n > sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	write_all(2, buf, (size_t)n);
	_exit(1);
}

/* fail() unless cond holds. */
#define CHECK(cond, ...)                                                     \
	do {                                                                 \
		if (!(cond))                                                 \
			fail(__VA_ARGS__);                                   \
	} while (0)

/* fail() with errno's text when a call returned -1 / failed. */
#define CHECK_SYS(cond, what)                                                \
	do {                                                                 \
		if (!(cond))                                                 \
			fail("%s: %s", what, strerror(errno));               \
	} while (0)

/* Formats one line and writes it to stdout with a single write(2). */
static inline __attribute__((format(printf, 1, 2)))
void out(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	CHECK(n >= 0 && (size_t)n < sizeof(buf), "output line too long");
	if (write_all(1, buf, (size_t)n) < 0)
		fail("write to stdout: %s", strerror(errno));
}

/* `tick <i> <summary>` (summary formatted like printf). */
static inline __attribute__((format(printf, 2, 3)))
void tick_line(long i, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n = snprintf(buf, sizeof(buf), "tick %ld ", i);

	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - 1 - (size_t)n, fmt, ap);
	va_end(ap);
	CHECK((size_t)n < sizeof(buf) - 1, "tick line too long");
	buf[n++] = '\n';
	if (write_all(1, buf, (size_t)n) < 0)
		fail("write to stdout: %s", strerror(errno));
}

/* `ok <name> <summary>`. */
static inline __attribute__((format(printf, 1, 2)))
void ok_line(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n = snprintf(buf, sizeof(buf), "ok %s ", *prog_name_slot());

	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - 1 - (size_t)n, fmt, ap);
	va_end(ap);
	CHECK((size_t)n < sizeof(buf) - 1, "ok line too long");
	buf[n++] = '\n';
	if (write_all(1, buf, (size_t)n) < 0)
		fail("write to stdout: %s", strerror(errno));
}

/* `ready <pid>`: the only line that is allowed to differ between runs. */
static inline void ready_line(void)
{
	out("ready %ld\n", (long)getpid());
}

/*
 * Sets the program name and parses ITERATIONS (argv[1], 0..10000000).
 * `nargs` is the number of arguments after ITERATIONS that are required.
 */
static inline long prog_init(const char *name, int argc, char **argv, int nargs,
			     const char *usage)
{
	char *end;
	long n;

	*prog_name_slot() = name;
	if (argc != 2 + nargs) {
		char buf[256];
		int len = snprintf(buf, sizeof(buf), "usage: %s %s\n", name, usage);

		write_all(2, buf, (size_t)len);
		_exit(2);
	}
	errno = 0;
	n = strtol(argv[1], &end, 10);
	CHECK(errno == 0 && *end == '\0' && end != argv[1] && n >= 0 && n <= 10000000,
	      "bad ITERATIONS '%s'", argv[1]);
	return n;
}

/* nanosleep for `ms` milliseconds, continuing with the remainder on EINTR. */
static inline void sleep_ms(long ms)
{
	struct timespec req = { ms / 1000, (ms % 1000) * 1000000L }, rem;

	while (nanosleep(&req, &rem) != 0) {
		CHECK(errno == EINTR, "nanosleep: %s", strerror(errno));
		req = rem;
	}
}

/* splitmix64's finalizer: a cheap, well-mixed deterministic hash. */
static inline uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* FNV-1a 64 over a buffer, continuing from h (start with FNV_INIT). */
#define FNV_INIT 0xcbf29ce484222325ULL
static inline uint64_t fnv1a(uint64_t h, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* Folds one 64-bit word into a running hash. */
static inline uint64_t hash_u64(uint64_t h, uint64_t v)
{
	return mix64(h ^ v);
}

#endif /* PPM_TEST_COMMON_H */
