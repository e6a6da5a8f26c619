"""How a Job becomes the wrapper's RunSpec (wrapper.py): the same data for every runner,
run in-process here or shipped as JSON to an ssh host or a Ray node."""

from __future__ import annotations

import os
import sys

from ..config import SandboxConfig
from .base import Job, Slot
from .netproxy import HostProxy
from .processes import TOKEN_VARIABLE
from .wrapper import RunSpec, SandboxRules, forwarder_source


def experiment_variables(job: Job, slot: Slot, token: str) -> dict[str, str]:
    """What Ratchet tells every run: the budget, its number, its GPU, the run token."""
    env = dict(job.env)
    env["RATCHET_TIME_BUDGET"] = f"{job.budget_s:g}"
    env["RATCHET_EXPERIMENT"] = str(job.experiment)
    env[TOKEN_VARIABLE] = token
    env["PYTHONUNBUFFERED"] = "1"
    # A CPU slot hides every GPU, so an experiment never grabs one it was not given.
    env["CUDA_VISIBLE_DEVICES"] = "" if slot.gpu is None else str(slot.gpu)
    return env


def run_spec(
    job: Job,
    slot: Slot,
    token: str,
    sandbox: SandboxConfig,
    *,
    run_dir: str = "",
    hide: tuple[str, ...] = (),
    timeout_s: float | None = None,
) -> RunSpec:
    """The run as the wrapper takes it; `run_dir` is left to a remote host to fill in."""
    variables = experiment_variables(job, slot, token)
    rules = None
    if sandbox.kind == "bwrap":
        # Declared variables, from Ratchet's environment; the agent's key never.
        variables.update(
            {k: v for k in sandbox.env if k not in job.hidden_env and (v := os.environ.get(k))}
        )
        # A judge sees the labels and runs the edited code it imports: a cache it could
        # write would carry them to the next run, or plant what the next judge trusts.
        read, write = list(sandbox.read), list(sandbox.write)
        if job.judging:
            read, write = read + write, []
        rules = SandboxRules(read, write, sandbox.network, sandbox.max_processes)
    return RunSpec(
        command=job.command,
        run_dir=run_dir,
        token=token,
        timeout_s=job.timeout_s if timeout_s is None else timeout_s,
        variables=variables,
        locked=list(job.locked),
        consumable=list(job.consumable),
        expected=None if job.expected_locked is None else dict(job.expected_locked),
        sandbox=rules,
        hide=list(hide),
        hidden_env=list(job.hidden_env),
    )


def with_proxy(spec: RunSpec, proxy: HostProxy) -> RunSpec:
    """A local run that reaches its declared hosts through Ratchet's proxy."""
    spec.binds = [(str(proxy.folder), str(proxy.folder))]
    spec.hosts_file = proxy.hosts_file
    spec.bind_low_ports = any(int(h.rsplit(":")[-1]) < 1024 for h in proxy.hosts)
    spec.forwarders = [sys.executable, forwarder_source(), proxy.forwards()]
    return spec
