#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian machine (pip, npm and Debian packages),
# then runs the linters, the type checkers and every test. This is the README's test command.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
started=$SECONDS

say "Python packages, pinned by constraints.txt"
# The versions the tests last passed with, for this install and for every pip a test starts
# (the wheel installed into a clean venv): a release made since cannot change the outcome.
# `bash scripts/check-newest.sh` is how the newest are tried (README, "Dependencies and drift").
export PIP_CONSTRAINT="$PWD/constraints.txt"
python3 -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,examples]'

say "Debian packages for the ssh runner's tests"
bash scripts/install-test-deps.sh
# Node 24, code-server, Chromium; the extension built, type-checked, unit-tested and packaged.
say "the VS Code extension and a real VS Code for its end-to-end test"
bash scripts/install-vscode-deps.sh

say "ruff and mypy"
python3 -m ruff check server tests bench examples
python3 -m mypy

say "pytest"
python3 -m pytest -q -p no:cacheprovider "$@"
say "all done in $((SECONDS - started)) s"
