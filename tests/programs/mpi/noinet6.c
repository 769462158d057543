/* LD_PRELOAD shim: Open MPI 4.1's TCP transport opens a listener on [::]
 * whatever btl_tcp_disable_family says, and ppm moves IPv4 sockets only.
 * socket(AF_INET6, ...) fails with EAFNOSUPPORT here, which Open MPI takes
 * as "no IPv6" and goes on with IPv4 alone.
 * Build: gcc -O2 -shared -fPIC -o noinet6.so noinet6.c -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/socket.h>

int socket(int domain, int type, int protocol) {
    static int (*real)(int, int, int);
    if (domain == AF_INET6) {
        errno = EAFNOSUPPORT;
        return -1;
    }
    if (!real) real = (int (*)(int, int, int))dlsym(RTLD_NEXT, "socket");
    return real(domain, type, protocol);
}
