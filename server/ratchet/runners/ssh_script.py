"""The shell an ssh host runs for one run: the helpers (find, kill, hash by token), and the
wrapper that makes the run's folder afresh, runs the command (in the sandbox unless opted
out), and reports on stderr. Built here, run there; nothing in it trusts the run."""

from __future__ import annotations

import os
import shlex

from ..config import SandboxConfig
from .base import Job, Slot
from .processes import TOKEN_VARIABLE
from .remote_sandbox import RemoteFacts, limit_lines, run_lines, sandboxed_words

KILL_GRACE_S = 2.0

# --- remote shell pieces ----------------------------------------------------------------------

q = shlex.quote

# PIDs of live processes whose environment holds RATCHET_RUN_TOKEN=$1 (one grep, no python).
SHELL_FUNCTIONS = f"""
tokpids() {{
  grep -lzxF "{TOKEN_VARIABLE}=$1" /proc/[0-9]*/environ 2>/dev/null \
    | sed -e 's|^/proc/||' -e 's|/environ$||'
}}
killtok() {{
  pg=$(cat "$2" 2>/dev/null)
  if [ -n "$pg" ]; then kill -TERM -- "-$pg" 2>/dev/null; fi
  for p in $(tokpids "$1"); do kill -TERM "$p" 2>/dev/null; done
  i=0
  while [ $i -lt {int(KILL_GRACE_S * 10)} ] && [ -n "$(tokpids "$1")" ]; do
    sleep 0.1; i=$((i+1))
  done
  if [ -n "$pg" ]; then kill -KILL -- "-$pg" 2>/dev/null; fi
  for p in $(tokpids "$1"); do kill -KILL "$p" 2>/dev/null; done
  rm -f "$2"
}}
endrun() {{
  # a lost run ($1: its token, $2: the slot's run prefix): its wrapper, then all it started
  w=$(cat "$2.$1.wrapper" 2>/dev/null)
  if [ -n "$w" ] && grep -qF "$1" "/proc/$w/cmdline" 2>/dev/null; then kill -KILL "$w"; fi
  killtok "$1" "$2.$1.pgid"
  rm -f "$2.$1.wrapper" "$2.$1.pgid"
}}
hashone() {{
  if [ -L "$1" ]; then printf 'link:%s' "$(readlink "$1")" | sha256sum
  elif [ -f "$1" ]; then sha256sum < "$1"
  elif [ -d "$1" ]; then
    (cd "$1" && find . -type f | LC_ALL=C sort | while IFS= read -r f; do
      printf '%s\\n' "$f"; sha256sum < "$f"; done) | sha256sum
  else echo missing
  fi
}}
"""


def shell_path(path: str) -> str:
    """A remote path for the shell: `~` is the remote user's home."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + q(path[2:])
    return q(path)


def hash_lines(locked: tuple[str, ...], label: str) -> str:
    """Shell lines that report each locked file's hash on stderr, by its index in `locked`."""
    return "".join(
        f'echo "ratchet: {label} {index} $(hashone {q(path)} | cut -d" " -f1)" >&2\n'
        for index, path in enumerate(locked)
    )


def carry_line(folder: str, workdir: str, path: str) -> str:
    """Copies one declared artefact from the command's folder to the evaluator's, unless it
    is missing or a symbolic link (which could point anywhere)."""
    source, target = f"{folder}/{q(path)}", f"{workdir}/{q(path)}"
    return (
        f'if [ -e {source} ] && [ ! -L {source} ]; then mkdir -p "$(dirname {target})" && '
        f"rm -rf {target} && cp -a {source} {target} && "
        f"find {target} -type l -delete; fi"
    )


def by_name(hashes: dict[str, str], locked: tuple[str, ...]) -> dict[str, str]:
    return {locked[int(i)]: h for i, h in hashes.items() if i.isdigit() and int(i) < len(locked)}


def slot_paths(root: str, slot_folder: str) -> tuple[str, str]:
    """(the slot's folder, the prefix of its run files) as shell expressions."""
    return f"{root}/slots/{q(slot_folder)}", f"{root}/run/{q(slot_folder)}"


def wrapper_script(
    root: str,
    slot_folder: str,
    job: Job,
    slot: Slot,
    token: str,
    sandbox: SandboxConfig,
    facts: RemoteFacts | None,
) -> str:
    """One remote shell per run: end what a lost run left, make the run's folder afresh
    (a copy of the base and the editable file from stdin; for an evaluator, a copy of its
    own plus the declared artefacts), hash the locked files, run the command (in the
    sandbox unless opted out) in a session of its own, then count and kill what it left
    and hash again. Its reports go to stderr as `ratchet: ...` lines; the command's
    output alone goes to stdout."""
    folder, run = slot_paths(root, slot_folder)
    workdir = folder if job.carry is None else f"{folder}.eval"
    own = f"{run}.{token}"  # this run's files: its wrapper's PID and its process group
    lines = [
        SHELL_FUNCTIONS,
        'fail() { echo "ratchet: fail $*" >&2; exit 97; }',
        f"mkdir -p {root}/run {root}/slots || fail cannot create {root}",
        # a run this slot lost earlier (a dropped connection) may still be going: end it
        f"old=$(cat {run}.token 2>/dev/null)",
        f'if [ -n "$old" ] && [ "$old" != {token} ]; then endrun "$old" {run}; fi',
        f"printf %s {token} > {run}.token",
        f"echo $$ > {own}.wrapper",
        f"rm -rf {workdir} && cp -a {root}/base {workdir} || fail cannot copy the base",
        f"cat > {workdir}/{q(job.editable)} || fail cannot write {q(job.editable)}"
        if job.editable
        else "cat > /dev/null",
        *(f"rm -rf {workdir}/{q(path)}" for path in job.drop),
        *(carry_line(folder, workdir, path) for path in job.carry or ()),
        f"cd {workdir} || fail no folder {workdir}",
        hash_lines(job.locked, "before"),
        "echo 'ratchet: started' >&2",
        *_command_lines(slot_folder, job, slot, token, own, sandbox, facts),
        "rc=$?",
        'echo "ratchet: exit $rc" >&2',
        f'echo "ratchet: leftovers $(tokpids {token} | wc -l)" >&2',
        f"killtok {token} {own}.pgid",
        hash_lines(tuple(p for p in job.locked if p not in job.consumable), "after"),
        f"rm -f {own}.wrapper {own}.pgid",
        f'if [ "$(cat {run}.token 2>/dev/null)" = {token} ]; then rm -f {run}.token; fi',
        "echo 'ratchet: done' >&2",
        "exit $rc",
    ]
    return "\n".join(lines) + "\n"


def _command_lines(
    slot_folder: str,
    job: Job,
    slot: Slot,
    token: str,
    own: str,
    sandbox: SandboxConfig,
    facts: RemoteFacts | None,
) -> list[str]:
    env = dict(job.env)
    env.update(
        RATCHET_TIME_BUDGET=f"{job.budget_s:g}",
        RATCHET_EXPERIMENT=str(job.experiment),
        PYTHONUNBUFFERED="1",
        CUDA_VISIBLE_DEVICES="" if slot.gpu is None else str(slot.gpu),
    )
    if sandbox.kind == "bwrap" and facts is not None:
        env.update({k: v for k in sandbox.env if (v := os.environ.get(k))})
        env[TOKEN_VARIABLE] = token
        absolute = f"{facts.root}/slots/{slot_folder}" + (".eval" if job.carry is not None else "")
        words = sandboxed_words(facts, sandbox, absolute, job.command)
        return [
            limit_lines(token, sandbox.max_processes),
            run_lines(words, env, job.timeout_s, f"{own}.status", f"{own}.pgid"),
            "rc=$?",
            f'echo "ratchet: sandbox $(wc -l < {own}.status) $(head -n1 {own}.status)" >&2',
            f"rm -f {own}.status",
            'if [ -n "$cg" ]; then for i in 1 2 3 4 5 6 7 8 9 10; do '
            'rmdir "$cg" 2>/dev/null && break; sleep 0.1; done; fi',
            "(exit $rc)",
        ]
    exports = "".join(
        f"export {name}={q(value)}\n" for name, value in env.items() if name.isidentifier()
    )
    token_env = f"{TOKEN_VARIABLE}={token}"
    # The token is given to the command only (not exported here): the helpers that look
    # for it must not find themselves.
    inner = 'echo $$ > "$0"; exec sh -c "$1"'
    return [
        exports,
        "if command -v setsid >/dev/null 2>&1; then",
        f"  setsid -w env {q(token_env)} sh -c {q(inner)} {own}.pgid {q(job.command)} "
        "</dev/null 2>&1",
        "else",
        f"  env {q(token_env)} sh -c {q(job.command)} </dev/null 2>&1",
        "fi",
    ]
