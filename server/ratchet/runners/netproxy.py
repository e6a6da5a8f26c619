"""The only way out of a sandbox without a network: one unix socket per declared host.

A run with `[sandbox] hosts = ["api.example.com:443"]` has no network of its own
(`--unshare-net`). Ratchet, outside, listens on one unix socket per declared host and
connects whatever arrives there to that host and port, and to nothing else: there is no
address in the protocol for the run to choose. Inside, the sandbox's first process listens
on 127.0.0.1:<port> and forwards to the socket, and /etc/hosts names each declared host
127.0.0.1, so the run's client connects as it would anywhere (TLS stays end to end).

Each run has a proxy of its own, which also says whether a declared host failed that run: the
host's last word to it was a failure to connect or, over plain HTTP where the proxy can read
it, a 429 or a 5xx. A run that fails while its host did is no evidence against the edit
(measure.failure). Over TLS only the first is seen. A run may hold MAX_CONNECTIONS at once;
more are refused, so no run can spend the loop's file descriptors.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

_BUFFER = 65536
MAX_CONNECTIONS = 64


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
        self._last: dict[str, str | None] = {}  # host -> its last word, if a failure
        self._lock = threading.Lock()
        self._connections = threading.BoundedSemaphore(MAX_CONNECTIONS)
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

    def trouble(self) -> str | None:
        """The declared hosts whose last word to this run was a failure, in words."""
        with self._lock:
            return "; ".join(what for what in self._last.values() if what) or None

    def _heard(self, host: str, failure: str | None) -> None:
        with self._lock:
            self._last[host] = failure

    def _answered(self, host: str, chunk: bytes) -> None:
        """A chunk from the host that opens an HTTP response (each does, on a connection used
        one request at a time): a refusal to serve (429) or the host's own failure (5xx) is
        its last word until it answers again."""
        if chunk.startswith(b"HTTP/1.") and chunk[12:13] in (b" ", b"\r"):
            status = chunk[9:12].decode(errors="replace")
            failed = status == "429" or status.startswith("5")
            self._heard(host, f"the declared host {host} answered {status}" if failed else None)

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
            if not self._connections.acquire(blocking=False):
                client.close()  # the run's own doing: not the host's failure
                continue
            try:
                upstream = socket.create_connection((name, port), timeout=10)
                upstream.settimeout(None)
            except OSError as error:
                self._connections.release()
                self._heard(host, f"the declared host {host} could not be reached ({error})")
                client.close()
                continue
            self._heard(host, None)
            threading.Thread(target=_pipe, args=(client, upstream), daemon=True).start()
            heard = functools.partial(self._answered, host)
            done = self._connections.release
            threading.Thread(
                target=_pipe, args=(upstream, client, heard, done), daemon=True
            ).start()

    def close(self) -> None:
        self._closed.set()
        for listener in self._listeners:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def _pipe(
    src: socket.socket,
    dst: socket.socket,
    heard: Callable[[bytes], None] | None = None,
    done: Callable[[], None] | None = None,
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
        if done is not None:
            done()
