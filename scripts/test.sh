#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian machine (pip, npm and Debian packages),
# then runs the linters, the type checkers and every test. This is the README's test command.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
started=$SECONDS

say "Python packages"
python3 -m pip install --quiet --disable-pip-version-check -e '.[test,examples]'

for script in scripts/install-test-deps.sh scripts/install-vscode-deps.sh; do
  if [[ -f $script ]]; then
    say "$script"
    bash "$script"
  fi
done

say "ruff and mypy"
python3 -m ruff check server tests bench examples
python3 -m mypy

if [[ -f vscode-extension/package.json ]]; then
  say "extension: tsc and unit tests"
  export PATH="$PWD/.tools/node24/bin:$PATH"
  (cd vscode-extension && npm run --silent typecheck && npm test --silent)
fi

say "pytest"
python3 -m pytest -q -p no:cacheprovider "$@"
say "all done in $((SECONDS - started)) s"
