"""Where experiments run: `local` (this machine), `ssh` (GPU boxes), `ray` (a cluster)."""

from __future__ import annotations

from ..config import Config
from ..errors import RatchetError
from .base import Runner
from .local import LocalRunner


def make_runner(config: Config) -> Runner:
    kind = config.runner.kind
    if kind == "local":
        return LocalRunner(config.runner.gpus)
    raise RatchetError(f'the `{kind}` runner is not built yet; use kind = "local" in [runner]')
