"""Who may drive a loop through its control socket: its own user, in its own PID namespace."""

from __future__ import annotations

import os
import socket
import struct
from typing import Any


def refusal(sock: Any) -> str | None:
    """Why a client may not drive this loop (None: it may). It must be this loop's own user
    and in this loop's PID namespace: a sandboxed run shares the uid, never the namespace (its
    pid reads 0 here when the kernel cannot name it). Where SO_PEERCRED is missing (not
    Linux), the socket's mode 0600 is the only check."""
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, _gid = struct.unpack("3i", raw)
    except OSError as error:
        return f"refused a client whose identity could not be read ({error})"
    if uid != os.getuid():
        return f"refused a client of uid {uid}: this loop serves uid {os.getuid()} only"
    try:
        same = pid > 0 and os.readlink(f"/proc/{pid}/ns/pid") == os.readlink("/proc/self/ns/pid")
    except OSError:
        same = False
    if not same:
        return f"refused a client (pid {pid}) outside this loop's PID namespace: a sandboxed run"
    return None
