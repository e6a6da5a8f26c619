#!/usr/bin/env bash
# The drift check, run by a person, never by CI: installs Ratchet and its test extra into a
# fresh venv from the newest releases (no constraints.txt, and past pyproject.toml's upper
# bounds), shows what moved against constraints.txt, and runs the tests that lean hardest on
# the dependencies (the Anthropic SDK, Optuna, pygls and lsprotocol, the config).
#
#   bash scripts/check-newest.sh              # the newest versions, the fast subset
#   bash scripts/check-newest.sh -k anthropic # pytest arguments narrow the subset
#   bash scripts/check-newest.sh --lock       # also the examples extra; once the subset
#                                             # passes, constraints.txt pins what it installed
#
# Passing: raise pyproject.toml's upper bounds to the new versions, --lock, and run
# `bash scripts/test.sh` before committing. Failing: that failure is the work to do first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

extras=test
lock=false
if [[ ${1:-} == --lock ]]; then
    extras=test,examples
    lock=true
    shift
fi

work=$(mktemp -d)
# The editable install leaves an egg-info beside the package; one left there would make
# `PYTHONPATH=server` look installed, so it goes with the venv unless it was there before.
leftover=server/ratchet.egg-info
[[ -e $leftover ]] && leftover=
trap 'rm -rf "$work" ${leftover:+"$leftover"}' EXIT
venv="$work/venv"
# Nothing from this shell may pin or shadow what the venv installs.
unset PIP_CONSTRAINT PYTHONPATH VIRTUAL_ENV

# pyproject.toml's requirements for the extras, each upper bound dropped (an exact pin such as
# torch's stays: it is a choice, not a bound).
requirements=$(python3 - "$extras" <<'PY'
import re
import sys
import tomllib

project = tomllib.load(open("pyproject.toml", "rb"))["project"]
extras = project["optional-dependencies"]
wanted, seen = list(sys.argv[1].split(",")), set()
found = list(project["dependencies"])
while wanted:
    extra = wanted.pop()
    if extra in seen:
        continue
    seen.add(extra)
    for requirement in extras[extra]:
        inner = re.fullmatch(r"ratchet\[(.+)\]", requirement)
        if inner:
            wanted.extend(inner.group(1).split(","))
        else:
            found.append(requirement)
for requirement in found:
    spec, _, marker = requirement.partition(";")
    name, clauses = re.fullmatch(r"\s*([\w.-]+(?:\[[^\]]*\])?)\s*(.*)", spec).groups()
    kept = [c.strip() for c in clauses.split(",") if c.strip() and not c.strip().startswith("<")]
    print(name + ",".join(kept) + (f"; {marker.strip()}" if marker else ""))
PY
)

say "a fresh venv with the newest releases (upper bounds dropped)"
python3 -m venv "$venv"
# setuptools is a dependency (of torch): the newest, not the one the venv came with.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip setuptools
mapfile -t listed <<<"$requirements"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${listed[@]}"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e .

say "what moved against constraints.txt"
# With --lock, the new pins are written beside it, to replace it once the subset passes.
"$venv/bin/python" - "$work/constraints.txt" <<'PY'
import importlib.metadata as metadata
import re
import sys

def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()

lines = open("constraints.txt").read().splitlines()
header = lines[: next(i for i, line in enumerate(lines) if not line.startswith("#"))]
pinned = dict(line.split("==") for line in lines if "==" in line and not line.startswith("#"))
installed: dict[str, str] = {}
for dist in metadata.distributions():  # the first found is the one imported
    # torch's +cpu is the wheel's build, not the release
    installed.setdefault(canonical(dist.metadata["Name"]), dist.version.split("+")[0])
installed = {n: v for n, v in installed.items() if n not in ("ratchet", "pip")}
moved = [
    f"  {name}: {pinned.get(name, '(not pinned)')} -> {version}"
    for name, version in sorted(installed.items())
    if version != pinned.get(name)
]
print("\n".join(moved) if moved else "  nothing: the pins are the newest releases")
pins = [f"{name}=={version}" for name, version in sorted(installed.items())]
open(sys.argv[1], "w").write("\n".join(header + pins) + "\n")
PY

say "the subset that leans on the dependencies"
"$venv/bin/python" -m pytest -q -p no:cacheprovider \
    tests/test_agent_anthropic.py tests/test_config.py tests/test_lsp_textops.py \
    tests/test_lsp.py tests/test_agent_optuna.py -k "not every_example" "$@"

if $lock; then
    mv "$work/constraints.txt" constraints.txt
    say "constraints.txt now pins what was installed"
    git --no-pager diff --stat -- constraints.txt
fi
say "the newest releases pass the subset"
