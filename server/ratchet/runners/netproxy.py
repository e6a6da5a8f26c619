"""The only way out of a sandbox without a network: one unix socket per declared host.

A run with `[sandbox] hosts = ["api.example.com:443"]` has no network of its own
(`--unshare-net`). Ratchet, outside, listens on one unix socket per declared host and
connects whatever arrives there to that host and port, and to nothing else: there is no
address in the protocol for the run to choose. Inside, the sandbox's first process listens
on 127.0.0.1:<port> and forwards to the socket, and /etc/hosts names each declared host
127.0.0.1, so the run's client connects as it would anywhere (TLS stays end to end).

The proxy also notes when a declared host fails the run: it cannot be reached, or (over plain
HTTP, where the proxy can read it) it answers 429 or 5xx. A run that fails while its host did
is no evidence against the edit (measure.failure). Over TLS only the first is seen.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import shutil
import socket
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

_BUFFER = 65536
_TROUBLES_KEPT = 64  # the latest; a run asks only for those since it began


def split_host(host: str) -> tuple[str, int]:
    name, _, port = host.rpartition(":")
    return name.strip("[]"), int(port)


class HostProxy:
    """Forwards each unix socket in `folder` to its one host, in threads of its own."""

    def __init__(self, hosts: tuple[str, ...]) -> None:
        self.hosts = hosts
        self.folder = Path(tempfile.mkdtemp(prefix="ratchet-net-"))
        self.sockets: dict[str, str] = {}  # "host:port" -> socket path
        self._listeners: list[socket.socket] = []
        self._closed = threading.Event()
        self._troubles: deque[tuple[float, str]] = deque(maxlen=_TROUBLES_KEPT)
        ports = [split_host(h)[1] for h in hosts]
        if len(set(ports)) != len(ports):
            raise ValueError("two [sandbox] hosts share a port; a run can reach one per port")
        for number, host in enumerate(hosts):
            path = str(self.folder / f"h{number}.sock")
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(path)
            listener.listen(64)
            self._listeners.append(listener)
            self.sockets[host] = path
            threading.Thread(target=self._serve, args=(listener, host), daemon=True).start()
        self.hosts_file = self._write_hosts_file()

    def forwards(self) -> str:
        """The sandbox's first process's argument: `port=socket,...`."""
        return ",".join(f"{split_host(h)[1]}={p}" for h, p in self.sockets.items()) or "-"

    def troubles_since(self, since: float) -> str | None:
        """What went wrong with a declared host since `since` (time.monotonic), in words."""
        said = list(dict.fromkeys(what for when, what in list(self._troubles) if when >= since))
        return "; ".join(said) or None

    def _trouble(self, what: str) -> None:
        self._troubles.append((time.monotonic(), what))

    def _answered(self, host: str, chunk: bytes) -> None:
        """A chunk from the host that opens an HTTP response (each does, on a connection used
        one request at a time): a refusal to serve (429) or the host's own failure (5xx)."""
        if chunk.startswith(b"HTTP/1.") and chunk[12:13] in (b" ", b"\r"):
            status = chunk[9:12].decode(errors="replace")
            if status == "429" or status.startswith("5"):
                self._trouble(f"the declared host {host} answered {status}")

    def _write_hosts_file(self) -> str:
        lines = ["127.0.0.1 localhost", "::1 localhost"]
        for host in self.hosts:
            name = split_host(host)[0]
            with contextlib.suppress(ValueError):
                ipaddress.ip_address(name)
                continue  # an address needs no name
            lines.append(f"127.0.0.1 {name}")
        path = self.folder / "hosts"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return str(path)

    def _serve(self, listener: socket.socket, host: str) -> None:
        name, port = split_host(host)
        while not self._closed.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection((name, port), timeout=10)
                upstream.settimeout(None)
            except OSError as error:
                self._trouble(f"the declared host {host} could not be reached ({error})")
                client.close()
                continue
            threading.Thread(target=_pipe, args=(client, upstream), daemon=True).start()
            heard = functools.partial(self._answered, host)
            threading.Thread(target=_pipe, args=(upstream, client, heard), daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        for listener in self._listeners:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def _pipe(
    src: socket.socket, dst: socket.socket, heard: Callable[[bytes], None] | None = None
) -> None:
    try:
        while data := src.recv(_BUFFER):
            if heard is not None:
                heard(data)
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for end in (src, dst):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
