"""py_threads ITERATIONS: Python threading under checkpoint and restore.

Four threads and the main one meet at a barrier twice per iteration; each
thread keeps a running SHA-256 in thread-local state and sleeps 50 ms per
iteration. The main thread prints `tick I of N` per iteration and at the
end `ok py_threads DIGEST`, the same in every run, interrupted or not.
"""
import hashlib
import os
import sys
import threading
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 120
K = 4
barrier = threading.Barrier(K + 1)
local = threading.local()
digests = [b""] * K


def work(k):
    local.h = hashlib.sha256(str(k).encode())
    for i in range(N):
        barrier.wait()
        time.sleep(0.05)
        local.h.update(str(i).encode())
        digests[k] = local.h.digest()
        barrier.wait()


print("ready", os.getpid(), flush=True)
threads = [threading.Thread(target=work, args=(k,)) for k in range(K)]
for t in threads:
    t.start()
for i in range(N):
    barrier.wait()
    barrier.wait()
    print("tick", i, "of", N, hashlib.sha256(b"".join(digests)).hexdigest()[:16], flush=True)
for t in threads:
    t.join()
print("ok py_threads", hashlib.sha256(b"".join(digests)).hexdigest(), flush=True)
