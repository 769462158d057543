/* LD_PRELOAD shim: hydra_pmi_proxy leaks its TCP control connection to
 * mpiexec into every rank it starts (not close-on-exec: fd 3 under the
 * manual launcher). The rank never uses it, but holds a copy of it, and a
 * migration carries a process's TCP connections away with it (TCP repair on
 * the socket, its flow redirected to the new node), while the proxy, which
 * stays, still needs this one to report the rank's end to mpiexec. Close the
 * rank's copy before main (the proxy keeps its own), and only in a rank
 * (PMI_FD set): mpiexec gets LD_PRELOAD too.
 * Build: gcc -O2 -shared -fPIC -o noleak.so noleak.c */
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

__attribute__((constructor)) static void close_leaked_tcp(void) {
    if (!getenv("PMI_FD")) return;
    for (int fd = 3; fd < 1024; fd++) {
        int type = 0;
        socklen_t len = sizeof type;
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) continue;
        struct sockaddr_storage a;
        socklen_t alen = sizeof a;
        if (getsockname(fd, (struct sockaddr *)&a, &alen) != 0) continue;
        if (a.ss_family == AF_INET || a.ss_family == AF_INET6) close(fd);
    }
}
