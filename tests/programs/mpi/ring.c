/*
 * ring.c: 3+ ranks pass a checksum around a ring, N times, deterministic.
 * Arguments: N, the pause between iterations in ms (100), the MiB of memory
 * each rank holds and folds into its checksum every iteration (0), and
 * "busy" to spend the pause computing instead of sleeping (a CPU-bound
 * rank). The result depends on N and the memory alone.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 50;
    int ms = argc > 2 ? atoi(argv[2]) : 100;
    size_t mib = argc > 3 ? (size_t)atoi(argv[3]) : 0;
    int busy = argc > 4 && argv[4][0] == 'b';
    int rank, size;
    char host[64];
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    gethostname(host, sizeof host);
    /* Touch every pair in both directions so that UCX opens all its TCP
       connections now: a connection first opened inside MPI_Finalize can hang
       (MPICH 4.0.2 does ucp_disconnect_nb then PMI barrier). */
    int *a2a = calloc(2 * size, sizeof(int));
    if (!getenv("RING_NO_WARMUP"))
        MPI_Alltoall(a2a, 1, MPI_INT, a2a + size, 1, MPI_INT, MPI_COMM_WORLD);
    fprintf(stderr, "rank %d/%d pid %d host %s\n", rank, size, (int)getpid(), host);
    int next = (rank + 1) % size, prev = (rank + size - 1) % size;
    /* The rank's memory: every word written once, a few read every iteration. */
    size_t words = mib * (1 << 20) / sizeof(uint64_t);
    uint64_t *mem = words ? malloc(words * sizeof(uint64_t)) : NULL;
    if (words && !mem) { perror("malloc"); MPI_Abort(MPI_COMM_WORLD, 2); }
    for (size_t w = 0; w < words; w++) mem[w] = (w + 1) * 0x9e3779b97f4a7c15ULL ^ (uint64_t)rank;
    uint64_t sum = 0;
    for (int i = 0; i < n; i++) {
        uint64_t out = sum * 6364136223846793005ULL + 1442695040888963407ULL + (uint64_t)(rank + 1) * (i + 1), in = 0;
        for (size_t w = (size_t)i * 4099; words && w < words; w += words / 64 + 1)
            out += mem[w % words];
        MPI_Sendrecv(&out, 1, MPI_UINT64_T, next, i, &in, 1, MPI_UINT64_T, prev, i,
                     MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        sum ^= in + (uint64_t)i;
        uint64_t tot = 0;
        MPI_Allreduce(&sum, &tot, 1, MPI_UINT64_T, MPI_BXOR, MPI_COMM_WORLD);
        if (rank == 0) { printf("tick %d %016llx\n", i, (unsigned long long)tot); fflush(stdout); }
        if (busy) {
            struct timespec t0, t1;
            volatile uint64_t spin = 0;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            do {
                for (int k = 0; k < 100000; k++) spin += (uint64_t)k;
                clock_gettime(CLOCK_MONOTONIC, &t1);
            } while ((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 < ms);
        } else {
            struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
            nanosleep(&ts, NULL);
        }
    }
    uint64_t fin = 0;
    MPI_Allreduce(&sum, &fin, 1, MPI_UINT64_T, MPI_BXOR, MPI_COMM_WORLD);
    if (rank == 0) { printf("done %d %016llx\n", n, (unsigned long long)fin); fflush(stdout); }
    if (!getenv("RING_NO_WARMUP"))
        MPI_Alltoall(a2a, 1, MPI_INT, a2a + size, 1, MPI_INT, MPI_COMM_WORLD);
    MPI_Finalize();
    return 0;
}
