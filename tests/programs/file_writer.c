/*
 * file_writer ITERATIONS DATA_FILE LOG_FILE
 *
 * Open file state that a restore must bring back:
 *  - fd A on DATA_FILE: O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC. Each tick writes
 *    one RECORD-byte record at the current file offset (never lseek()s to
 *    move it) and then checks lseek(fd, 0, SEEK_CUR) == (i + 1) * RECORD,
 *    fstat() size == the same, F_GETFL == O_WRONLY (no O_APPEND) and
 *    F_GETFD == FD_CLOEXEC.
 *  - fd B on LOG_FILE (created/truncated first, then reopened
 *    O_WRONLY|O_APPEND): each tick appends a `log <i> ...` line and checks
 *    F_GETFL still has O_APPEND, F_GETFD has no FD_CLOEXEC, and the offset
 *    and size equal the log's expected length.
 *  - both fds keep their numbers (the program only ever uses the ints it
 *    got from open()).
 * After the last tick both files are re-read through new descriptors and
 * must hold exactly the expected records and lines.
 */
#include "common.h"

#include <fcntl.h>
#include <sys/stat.h>

#define RECORD 64

static void make_record(char *rec, long i)
{
	int n = snprintf(rec, RECORD, "rec %08ld %016llx ", i,
			 (unsigned long long)mix64((uint64_t)i));

	for (int k = n; k < RECORD - 1; k++)
		rec[k] = (char)('a' + (i + k) % 26);
	rec[RECORD - 1] = '\n';
}

static int make_log_line(char *buf, size_t size, long i)
{
	/* lines of varying length, so offsets are not a multiple of anything */
	int n = snprintf(buf, size, "log %ld %.*s\n", i, (int)(i % 17),
			 "abcdefghijklmnopq");

	CHECK(n > 0 && (size_t)n < size, "log line too long");
	return n;
}

static off_t log_length(long lines)
{
	char buf[64];
	off_t len = 0;

	for (long i = 0; i < lines; i++)
		len += make_log_line(buf, sizeof(buf), i);
	return len;
}

static void check_fd(int fd, const char *what, off_t want_off, int want_fl, int want_fd)
{
	struct stat st;
	off_t off = lseek(fd, 0, SEEK_CUR);
	int fl = fcntl(fd, F_GETFL), fdfl = fcntl(fd, F_GETFD);

	CHECK_SYS(off >= 0, "lseek SEEK_CUR");
	CHECK_SYS(fl >= 0 && fdfl >= 0, "fcntl");
	CHECK_SYS(fstat(fd, &st) == 0, "fstat");
	CHECK(off == want_off, "%s: offset %lld, expected %lld", what, (long long)off,
	      (long long)want_off);
	CHECK(st.st_size == want_off, "%s: size %lld, expected %lld", what,
	      (long long)st.st_size, (long long)want_off);
	CHECK((fl & (O_ACCMODE | O_APPEND)) == want_fl, "%s: F_GETFL %#x, expected %#x", what,
	      fl & (O_ACCMODE | O_APPEND), want_fl);
	CHECK(fdfl == want_fd, "%s: F_GETFD %#x, expected %#x", what, fdfl, want_fd);
	CHECK(S_ISREG(st.st_mode), "%s: not a regular file", what);
}

static char *read_file(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *buf;
	size_t got = 0;

	CHECK_SYS(fd >= 0, path);
	CHECK_SYS(fstat(fd, &st) == 0, "fstat");
	buf = malloc((size_t)st.st_size + 1);
	CHECK_SYS(buf != NULL, "malloc");
	while (got < (size_t)st.st_size + 1) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size + 1 - got);

		if (n < 0 && errno == EINTR)
			continue;
		CHECK_SYS(n >= 0, "read");
		if (n == 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	*len = got;
	return buf;
}

int main(int argc, char **argv)
{
	long iters = prog_init("file_writer", argc, argv, 2, "ITERATIONS DATA_FILE LOG_FILE");
	const char *data_path = argv[2], *log_path = argv[3];
	char rec[RECORD], line[64];
	off_t log_off = 0;
	uint64_t h = FNV_INIT;
	size_t len;
	char *buf;
	int data_fd, log_fd;

	data_fd = open(data_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	CHECK_SYS(data_fd >= 0, data_path);
	log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK_SYS(log_fd >= 0, log_path);
	close(log_fd);
	log_fd = open(log_path, O_WRONLY | O_APPEND);
	CHECK_SYS(log_fd >= 0, log_path);
	check_fd(data_fd, "data fd", 0, O_WRONLY, FD_CLOEXEC);
	check_fd(log_fd, "log fd", 0, O_WRONLY | O_APPEND, 0);

	ready_line();
	for (long i = 0; i < iters; i++) {
		ssize_t n;
		int ll;

		check_fd(data_fd, "data fd before write", (off_t)i * RECORD, O_WRONLY, FD_CLOEXEC);
		check_fd(log_fd, "log fd before write", log_off, O_WRONLY | O_APPEND, 0);
		make_record(rec, i);
		n = write(data_fd, rec, RECORD);
		CHECK_SYS(n >= 0, "write data");
		CHECK(n == RECORD, "short write to data file: %zd", n);
		ll = make_log_line(line, sizeof(line), i);
		n = write(log_fd, line, (size_t)ll);
		CHECK_SYS(n >= 0, "write log");
		CHECK(n == ll, "short write to log file: %zd", n);
		log_off += ll;
		check_fd(data_fd, "data fd after write", (off_t)(i + 1) * RECORD, O_WRONLY,
			 FD_CLOEXEC);
		check_fd(log_fd, "log fd after write", log_off, O_WRONLY | O_APPEND, 0);
		h = fnv1a(h, rec, RECORD);
		h = fnv1a(h, line, (size_t)ll);
		tick_line(i, "data=%lld log=%lld hash=%016llx", (long long)(i + 1) * RECORD,
			  (long long)log_off, (unsigned long long)h);
		sleep_ms(100);
	}
	CHECK(log_off == log_length(iters), "log length bookkeeping is off");
	CHECK_SYS(close(data_fd) == 0, "close data fd");
	CHECK_SYS(close(log_fd) == 0, "close log fd");

	buf = read_file(data_path, &len);
	CHECK(len == (size_t)iters * RECORD, "data file has %zu bytes, expected %ld", len,
	      iters * RECORD);
	for (long i = 0; i < iters; i++) {
		make_record(rec, i);
		CHECK(memcmp(buf + i * RECORD, rec, RECORD) == 0, "data record %ld differs", i);
	}
	free(buf);

	buf = read_file(log_path, &len);
	CHECK((off_t)len == log_off, "log file has %zu bytes, expected %lld", len,
	      (long long)log_off);
	for (long i = 0, off = 0; i < iters; i++) {
		int ll = make_log_line(line, sizeof(line), i);

		CHECK(memcmp(buf + off, line, (size_t)ll) == 0, "log line %ld differs", i);
		off += ll;
	}
	free(buf);
	ok_line("data=%lld log=%lld hash=%016llx", (long long)iters * RECORD, (long long)log_off,
		(unsigned long long)h);
	return 0;
}
