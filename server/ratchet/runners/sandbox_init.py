"""The first process inside a sandbox: a few lines of /bin/sh (a Python one would cost
every run ~50 ms), and for runs with declared hosts the forwarders, in Python (standard
library only; the text is passed to `python -I -S -c`, so no file needs to be inside).

The shell runs the command, and when it ends counts what it left running; that count and
the exit code go to the run wrapper (wrapper.py) on the status pipe, which the command never
holds. Then it exits, and the PID namespace, with everything still in it, dies. The count
is advisory (a run could forge it, gaining nothing: its survivors die with the namespace
either way); the exit code is checked against bubblewrap's own.
"""

from __future__ import annotations

import os
import socket
import sys
import threading

# The sandbox's first process ($1: the command, $2: python or "", $3: the forwarders'
# source, $4: their `port=socket,...`). Its stdin is the status pipe to the wrapper: it keeps it
# as fd 3 and the command never gets it. The leftover count skips PID 1 (bubblewrap's
# init), itself, the forwarders and zombies; a process's name cannot fake its state, which
# is read after the last ")" of /proc/<pid>/stat.
INIT_SH = r"""
exec 3>&0 </dev/null
ulimit -c 0 2>/dev/null
fwd=none
if [ -n "$2" ]; then fwd=$("$2" -I -S -c "$3" "$4" 3>&-) || exit 125; fi
/bin/sh -c "$1" 3>&-
code=$?
n=0
for d in /proc/[0-9]*; do
  p=${d#/proc/}
  if [ "$p" = 1 ] || [ "$p" = "$$" ] || [ "$p" = "$fwd" ]; then continue; fi
  { read -r s < "$d/stat"; } 2>/dev/null || continue
  case "${s##*)}" in " Z "*) continue;; esac
  n=$((n+1))
done
echo "exit $code leftovers $n" >&3
exit $code
"""


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for end in (src, dst):
            try:  # noqa: SIM105 (no contextlib: kept to what a bare `python -I -S` has)
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _serve(listener: socket.socket, socket_path: str) -> None:
    """Each connection to 127.0.0.1:port inside goes to the unix socket of Ratchet's proxy
    outside, which connects it to the one host it was declared for."""
    while True:
        client, _ = listener.accept()
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(socket_path)
        except OSError:
            client.close()
            continue
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


def main(argv: list[str]) -> int:
    """The forwarders' process: binds every listener, then serves in a child of its own
    while this one prints that child's PID and exits, so the command starts only once every
    declared port is listening."""
    listeners = []
    for item in argv[0].split(","):
        port, _, path = item.partition("=")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", int(port)))
        listener.listen(64)
        listeners.append((listener, path))
    child = os.fork()
    if child:
        print(child, flush=True)
        os._exit(0)
    os.close(1)
    for listener, path in listeners:  # threads only now: a fork keeps none of them
        threading.Thread(target=_serve, args=(listener, path), daemon=True).start()
    threading.Event().wait()  # serve until the namespace ends
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
