# The Open MPI test's stand-in for sshd on a guest (tests/guest/mpi_test.ts):
# `python3 exec_server.py PORT PREFIX` listens on PORT; each connection sends
# one command line (what mpirun's launcher agent got: orted and its
# arguments, already quoted for a shell), which runs as `sh -c PREFIX+LINE`
# in its own session with its output in /tmp/orted.log; the answer is "ok".
# Test only: it runs whatever it is sent, on a guest the test owns.
import socket
import subprocess
import sys

port, prefix = int(sys.argv[1]), sys.argv[2]
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", port))
srv.listen(8)
print("ready", flush=True)
while True:
    conn, _ = srv.accept()
    with conn:
        line = conn.makefile("rb").readline().decode().strip()
        with open("/tmp/orted.log", "ab") as log:
            subprocess.Popen(["sh", "-c", prefix + line], stdin=subprocess.DEVNULL,
                             stdout=log, stderr=log, start_new_session=True)
        conn.sendall(b"ok\n")
