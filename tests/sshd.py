"""A real OpenSSH server on 127.0.0.1 for the ssh runner's tests: throwaway keys, its own
sshd_config, run as the tests' own child and stopped by its PID (never by name)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def sshd_missing() -> str | None:
    """Why the tests cannot start an sshd here, or None."""
    for tool in (SSHD, "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/install-test-deps.sh installs openssh-server)"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children_of(pid: int) -> list[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True
    ).stdout
    return [int(word) for word in out.split()]


@dataclass
class Sshd:
    folder: Path
    port: int
    process: subprocess.Popen[bytes]
    client_key: Path
    known_hosts: Path
    host_public_key: str

    @property
    def host(self) -> str:
        return f"root@127.0.0.1:{self.port}"

    @property
    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {self.host_public_key}"

    def drop_connections(self) -> int:
        """Kills the server side of every open connection (as a network drop would)."""
        pids = children_of(self.process.pid)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(pids)

    def stop(self) -> None:
        self.drop_connections()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ratchet-test", "-f", str(path)],
        check=True,
        capture_output=True,
    )


def start_sshd(folder: Path) -> Sshd:
    folder.mkdir(parents=True, exist_ok=True)
    host_key, client_key = folder / "host_key", folder / "client_key"
    _keygen(host_key)
    _keygen(client_key)
    authorized = folder / "authorized_keys"
    authorized.write_text(client_key.with_suffix(".pub").read_text())
    os.chmod(authorized, 0o600)
    host_public = " ".join(host_key.with_suffix(".pub").read_text().split()[:2])
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    for _ in range(5):
        port = free_port()
        config = folder / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {host_key}",
                    f"PidFile {folder / 'sshd.pid'}",
                    f"AuthorizedKeysFile {authorized}",
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",
                    "MaxSessions 64",
                    "MaxStartups 64",
                    "Subsystem sftp internal-sftp",
                    "",
                ]
            )
        )
        log = folder / "sshd.log"
        process = subprocess.Popen(
            [SSHD, "-f", str(config), "-D", "-E", str(log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                known_hosts = folder / "known_hosts"
                known_hosts.write_text(f"[127.0.0.1]:{port} {host_public}\n")
                return Sshd(folder, port, process, client_key, known_hosts, host_public)
            time.sleep(0.05)
        if process.poll() is None:
            process.kill()
        process.wait()
    raise RuntimeError(f"sshd did not start; see {folder / 'sshd.log'}")
