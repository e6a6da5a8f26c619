"""Where experiments run: `local` (this machine), `ssh` (GPU boxes), `ray` (a cluster)."""

from __future__ import annotations

from ..config import Config
from ..errors import RatchetError
from .base import Runner


def make_runner(config: Config) -> Runner:
    # Imported here: the package's light modules (safe_files, sandbox) are read by parts
    # that the runners themselves import, and a package import must not pull them all in.
    from .local import LocalRunner
    from .sandbox import make_non_dumpable

    if config.sandbox.kind == "bwrap":
        make_non_dumpable()  # no run, on any runner, reads our environ (the agent's key)
    kind = config.runner.kind
    if kind == "local":
        return LocalRunner(config.runner.gpus, config.sandbox)
    if kind == "ssh":
        from .ssh import SshRunner

        return SshRunner(config.runner, config.root, config.sandbox)
    if kind == "ray":
        from .ray import RayRunner

        return RayRunner(config.runner, config.root, config.sandbox)
    raise RatchetError(f'unknown runner `{kind}` in [runner]; use "local", "ssh" or "ray"')
