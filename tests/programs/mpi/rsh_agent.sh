#!/bin/sh
# Open MPI's launcher agent in the guests (--mca plm_rsh_agent): what ssh
# would do, through the exec server on HOST (exec_server.py, port 7999).
# mpirun runs `rsh_agent.sh HOST WORDS...`, the words quoted for a shell.
host=$1
shift
exec python3 -c '
import socket, sys
s = socket.create_connection((sys.argv[1], 7999), timeout=30)
s.sendall(sys.argv[2].encode() + b"\n")
sys.exit(0 if s.makefile().readline().strip() == "ok" else 1)
' "$host" "$*"
