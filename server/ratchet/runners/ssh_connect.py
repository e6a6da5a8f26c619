"""The ssh runner's connections: options from ratchet.toml and ~/.ssh/config, host keys
checked against known_hosts and never accepted silently, and short helper commands."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from ..config import RunnerConfig
from ..errors import RatchetError
from .ssh_script import HostAddress

CONNECT_TIMEOUT_S = 15.0
COMMAND_TIMEOUT_S = 120.0  # a helper command (prepare, kill, collect) that hangs longer: lost


def asyncssh_module() -> Any:
    try:
        import asyncssh
    except ImportError:
        raise RatchetError(
            "the ssh runner needs asyncssh: `pip install 'ratchet[ssh]'` in Ratchet's environment"
        ) from None
    return asyncssh


class Lost(Exception):
    """The connection or the remote run went away; str() says how."""


class Connector:
    """Opens connections to the hosts of `[runner]`."""

    def __init__(self, config: RunnerConfig) -> None:
        self._config = config
        self._shown: dict[str, str] = {}  # the known_hosts file each host is checked against

    def _known_hosts(self) -> Any:
        if self._config.known_hosts:
            path = Path(self._config.known_hosts).expanduser()
            if not path.is_file():
                raise RatchetError(
                    f"known_hosts file {path} (from [runner] known_hosts) does not exist; create "
                    "it with `ssh-keyscan -p PORT HOST >> FILE` for each host, once you trust it"
                )
            return str(path)
        return ()  # ~/.ssh/config's UserKnownHostsFile, else ~/.ssh/known_hosts

    def known_hosts_shown(self, address: HostAddress | None = None) -> str:
        if address is not None and address.text in self._shown:
            return self._shown[address.text]
        if self._config.known_hosts:
            return str(Path(self._config.known_hosts).expanduser())
        return str(Path("~/.ssh/known_hosts").expanduser())

    async def _options(self, address: HostAddress) -> Any:
        asyncssh = asyncssh_module()
        kwargs: dict[str, Any] = {
            "host": address.host,
            "known_hosts": self._known_hosts(),
            "connect_timeout": CONNECT_TIMEOUT_S,
            "keepalive_interval": 15,
            "keepalive_count_max": 4,
        }
        if address.port is not None:
            kwargs["port"] = address.port
        if address.user is not None:
            kwargs["username"] = address.user
        if self._config.identity_file:
            identity = Path(self._config.identity_file).expanduser()
            if not identity.is_file():
                raise RatchetError(
                    f"identity_file {identity} in [runner] does not exist; give the private key "
                    "that logs in to the hosts, or remove the line to use ~/.ssh and the agent"
                )
            kwargs["client_keys"] = [str(identity)]
        try:
            options = await asyncio.to_thread(asyncssh.SSHClientConnectionOptions, **kwargs)
        except (OSError, ValueError, asyncssh.Error) as error:
            raise RatchetError(f"cannot set up ssh to {address.text}: {error}") from None
        if options.known_hosts is None:
            # ~/.ssh/config says `UserKnownHostsFile none`: never accept keys unchecked.
            kwargs["known_hosts"] = self.known_hosts_shown()
            if not Path(kwargs["known_hosts"]).is_file():
                kwargs["known_hosts"] = b""
            options = await asyncio.to_thread(asyncssh.SSHClientConnectionOptions, **kwargs)
        files = options.known_hosts
        if not self._config.known_hosts and isinstance(files, list | tuple) and files:
            self._shown[address.text] = str(files[0])  # ~/.ssh/config's UserKnownHostsFile
        return options

    async def connect(self, address: HostAddress) -> Any:
        """A fresh connection; RatchetError for what only the user can fix (host key, login),
        _Lost for what may pass (refused, unreachable, timed out)."""
        asyncssh = asyncssh_module()
        options = await self._options(address)
        try:
            return await asyncssh.connect(address.host, options=options)
        except asyncssh.HostKeyNotVerifiable:
            port = address.port or 22
            keyscan = f"ssh-keyscan {'-p ' + str(port) + ' ' if port != 22 else ''}{address.host}"
            raise RatchetError(
                f"the host key of {address.shown} is not trusted: it is not in "
                f"{self.known_hosts_shown(address)}, or it changed. If this is the right "
                f"machine, check its fingerprint and add its key with `{keyscan} >> "
                f"{self.known_hosts_shown(address)}`, then run again."
            ) from None
        except asyncssh.PermissionDenied:
            raise RatchetError(
                f"{address.text} refused the login: check the user, [runner] identity_file, the "
                "ssh agent and the host's authorized_keys"
            ) from None
        except (TimeoutError, OSError, asyncssh.Error) as error:
            raise Lost(f"cannot connect to {address.text}: {plain(error)}") from None


async def run_command(connection: Any, script: str, stdin: str = "") -> Any:
    """A short helper command on the host; Lost if the connection fails under it."""
    asyncssh = asyncssh_module()
    try:
        call: Awaitable[Any] = connection.run(script, input=stdin, check=False)
        return await asyncio.wait_for(call, COMMAND_TIMEOUT_S)
    except (TimeoutError, OSError, asyncssh.Error) as error:
        raise Lost(f"the connection failed: {plain(error)}") from None


def plain(error: BaseException | None) -> str:
    if error is None:
        return "unknown error"
    text = str(error).strip()
    return text or type(error).__name__
