/*
 * cpu_spin ITERATIONS [HOST PORT]
 *
 * CPU-bound: never sleeps. Every tick runs a fixed amount of arithmetic
 * over a 1 MiB heap table (2^20 rounds of mix64, each reading and writing
 * one table word), then prints `tick <i> sum=<16 hex>`, the hash of the
 * whole table. The table after tick i depends only on i, so every run gives
 * the same lines, wherever each tick ran.
 *
 * With HOST and PORT it connects to an echo server first and, after each
 * tick, sends the tick's line over the connection and reads it back: a
 * CPU-bound process with an established TCP connection. A connection that
 * breaks, or an echo that differs, is a FAIL.
 *
 * SIGUSR1 asks it to stop early: it finishes the current tick and prints
 * `ok cpu_spin ticks=<n> sum=<hex>` as after the last one (the balancing
 * test ends its copies this way, on whatever node each runs by then).
 */
#include "common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

#define WORDS (1u << 17) /* 1 MiB of uint64_t */
#define ROUNDS (1u << 20)

static volatile sig_atomic_t stop;

static void on_usr1(int sig)
{
	(void)sig;
	stop = 1;
}

static uint64_t table_sum(const uint64_t *t)
{
	uint64_t h = FNV_INIT;

	for (uint32_t k = 0; k < WORDS; k++)
		h = hash_u64(h, t[k]);
	return h;
}

/* Connects to HOST:PORT; -1 without them. */
static int dial(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	int fd;

	if (argc != 4)
		return -1;
	CHECK(inet_aton(argv[2], &a.sin_addr), "bad HOST '%s'", argv[2]);
	a.sin_port = htons((uint16_t)strtol(argv[3], NULL, 10));
	fd = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(fd >= 0, "socket: %s", strerror(errno));
	CHECK(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0, "connect %s:%s: %s", argv[2],
	      argv[3], strerror(errno));
	return fd;
}

/* Sends `line` on `fd` and checks that the same bytes come back. */
static void echo(int fd, const char *line, size_t len)
{
	char back[128];
	size_t got = 0;

	CHECK(write_all(fd, line, len) == 0, "send: %s", strerror(errno));
	while (got < len) {
		ssize_t n = read(fd, back + got, len - got);

		if (n < 0 && errno == EINTR)
			continue;
		CHECK(n > 0, "echo: %s", n == 0 ? "the connection ended" : strerror(errno));
		got += (size_t)n;
	}
	CHECK(memcmp(back, line, len) == 0, "echo: other bytes came back");
}

int main(int argc, char **argv)
{
	long iterations = prog_init("cpu_spin", argc, argv, argc == 4 ? 2 : 0,
				    "ITERATIONS [HOST PORT]");
	int conn = dial(argc, argv);
	struct sigaction sa = { .sa_handler = on_usr1 };
	uint64_t *t = malloc(WORDS * sizeof(uint64_t));
	uint64_t x = 1, sum = 0;
	long i;

	CHECK(t != NULL, "malloc: out of memory");
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction: %s", strerror(errno));
	for (uint32_t k = 0; k < WORDS; k++)
		t[k] = mix64(k);
	ready_line();
	for (i = 0; i < iterations && !stop; i++) {
		for (uint32_t r = 0; r < ROUNDS; r++) {
			uint32_t k = (uint32_t)x & (WORDS - 1);

			x = mix64(x ^ t[k]);
			t[k] = x;
		}
		sum = table_sum(t);
		tick_line(i, "sum=%016llx", (unsigned long long)sum);
		if (conn >= 0) {
			char line[64];
			int len = snprintf(line, sizeof(line), "tick %ld sum=%016llx\n", i,
					   (unsigned long long)sum);

			echo(conn, line, (size_t)len);
		}
	}
	ok_line("ticks=%ld sum=%016llx", i, (unsigned long long)sum);
	free(t);
	return 0;
}
