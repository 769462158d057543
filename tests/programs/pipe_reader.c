/*
 * pipe_reader ITERATIONS
 *
 * Reads stdin (fd 0; the harness connects it to a pipe) with plain read(2)
 * into its own buffer, so it sits blocked in read() nearly all the time.
 * Input: exactly ITERATIONS lines "line <i>\n", i = 0, 1, 2, ... in
 * order, then EOF (the writer closes its end). Lines may arrive split or
 * several per read. For each complete line it checks the text and the
 * sequence number and prints `tick <i> line=<i> sum=<hex>`. A partial line
 * stays in the program's buffer (memory) between reads.
 *
 * Fails on: a malformed or out-of-sequence line, a line longer than 63
 * bytes, a line after the ITERATIONS-th, EOF before ITERATIONS lines or in
 * the middle of a line, or a read error other than EINTR (EINTR just
 * retries). At EOF after ITERATIONS lines it prints `ok pipe_reader
 * lines=<n> sum=<hex>`.
 */
#include "common.h"

#define MAX_LINE 64

int main(int argc, char **argv)
{
	long iters = prog_init("pipe_reader", argc, argv, 0, "ITERATIONS");
	char buf[4096];
	size_t len = 0;
	long lines = 0;
	uint64_t h = FNV_INIT;

	ready_line();
	for (;;) {
		ssize_t n = read(0, buf + len, sizeof(buf) - len);
		size_t start = 0;

		if (n < 0) {
			CHECK(errno == EINTR, "read stdin: %s", strerror(errno));
			continue;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		for (size_t k = 0; k < len; k++) {
			char want[MAX_LINE];
			size_t ll;
			int wl;

			if (buf[k] != '\n')
				continue;
			ll = k - start;
			CHECK(lines < iters, "extra line after %ld lines: '%.*s'", iters,
			      (int)(ll < MAX_LINE ? ll : MAX_LINE), buf + start);
			wl = snprintf(want, sizeof(want), "line %ld", lines);
			CHECK((size_t)wl == ll && memcmp(buf + start, want, ll) == 0,
			      "line %ld is '%.*s', expected '%s'", lines,
			      (int)(ll < MAX_LINE ? ll : MAX_LINE), buf + start, want);
			h = fnv1a(h, buf + start, ll + 1);
			tick_line(lines, "line=%ld sum=%016llx", lines, (unsigned long long)h);
			lines++;
			start = k + 1;
		}
		memmove(buf, buf + start, len - start);
		len -= start;
		CHECK(len < MAX_LINE, "line %ld longer than %d bytes", lines, MAX_LINE - 1);
	}
	CHECK(len == 0, "EOF in the middle of line %ld ('%.*s')", lines, (int)len, buf);
	CHECK(lines == iters, "EOF after %ld lines, expected %ld", lines, iters);
	ok_line("lines=%ld sum=%016llx", lines, (unsigned long long)h);
	return 0;
}
