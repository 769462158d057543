/* LD_PRELOAD shim for Debian 12 MPICH 4.0.2 + UCX 1.13 over TCP: MPI_Finalize
 * calls ucp_disconnect_nb() (flush mode) for every endpoint and then a PMI
 * barrier; UCX's TCP flush sends a zero-length PUT and needs the peer's ACK,
 * but a peer already blocked in the PMI barrier never answers -> hang.
 * Skip the flush/disconnect: every MPI-level operation has completed by then,
 * and ucp_worker_destroy() after the barrier closes the endpoints anyway. */
#include <stddef.h>
void *ucp_disconnect_nb(void *ep) { (void)ep; return NULL; /* UCS_OK */ }
