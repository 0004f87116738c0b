"""dbsafe's archive_command: hand one WAL file to the dbsafe agent and wait for its verdict.

Installed as a file (with the agent's socket path filled in) where the postgres user can
read it, and run as ``python3 -I -S <this file> push %p``: standard library only, so it
starts in a few tens of milliseconds. Exit 0 only when the agent says the file is durable
in the vault; anything else exits 1 and PostgreSQL keeps the file and retries.
"""

import json
import os
import socket
import sys

SOCKET = "@SOCKET@"
TIMEOUT = 600


def main(argv):
    if len(argv) != 3 or argv[1] != "push":
        sys.stderr.write("usage: dbsafe-wal push <path of the WAL file>\n")
        return 2
    cwd = os.getcwd()
    path = os.path.join(cwd, argv[2])
    request = {"op": "push", "cwd": cwd, "path": path, "name": os.path.basename(path)}
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(TIMEOUT)
        conn.connect(SOCKET)
    except OSError as exc:
        sys.stderr.write(f"dbsafe: the agent is not reachable at {SOCKET} ({exc}); start it "
                         "with `dbsafe agent start` (PostgreSQL keeps the WAL and retries)\n")
        return 1
    try:
        conn.sendall(json.dumps(request).encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            reply += chunk
    except OSError as exc:
        sys.stderr.write(f"dbsafe: lost the agent while archiving {argv[2]}: {exc}\n")
        return 1
    finally:
        conn.close()
    try:
        answer = json.loads(reply)
    except ValueError:
        sys.stderr.write(f"dbsafe: no answer from the agent for {argv[2]}\n")
        return 1
    if answer.get("ok"):
        return 0
    sys.stderr.write(f"dbsafe: {argv[2]} not archived: {answer.get('error')}\n")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
