#!/usr/bin/env bash
# tools.sh — make sure the local world's tools are on hand, and print the PATH to use.
#
# The AWS emulator extension patches moto 5.2.1 exactly, and the template checks use cfn-lint 1.x.
# We use the ones on PATH when their versions fit; otherwise we install pinned versions into a
# git-ignored .venv with pip. Where neither works we stop with the exact line to run.
# Prints one line: the directory to put first on PATH ("" when PATH already has what we need).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
moto_pin="5.2.1"
install_line="python3 -m venv $venv && $venv/bin/pip install 'moto[server]==$moto_pin' 'cfn-lint>=1,<2'"

moto_ok() { # $1: python interpreter
  "$1" -c "import moto, sys; sys.exit(0 if moto.__version__ == '$moto_pin' else 1)" 2>/dev/null
}
cfnlint_ok() { # $1: cfn-lint binary
  "$1" --version 2>/dev/null | grep -qE '^cfn-lint 1\.'
}

# 1. What PATH already has.
if command -v moto_server >/dev/null && command -v cfn-lint >/dev/null; then
  # moto_server's own interpreter when its shebang names one; pyenv shims and the like: python3.
  py=$(head -n1 "$(command -v moto_server)" | sed -n 's/^#!//p' | awk '{print $1}')
  case "$py" in *python*) ;; *) py=python3 ;; esac
  if moto_ok "$py" && cfnlint_ok cfn-lint; then
    echo ""
    exit 0
  fi
fi

# 2. Our own .venv, made once.
if [ -x "$venv/bin/moto_server" ] && moto_ok "$venv/bin/python" && cfnlint_ok "$venv/bin/cfn-lint"; then
  echo "$venv/bin"
  exit 0
fi

if ! command -v python3 >/dev/null; then
  echo "tools.sh: python3 is needed for the AWS emulator. Install Python 3, then run: $install_line" >&2
  exit 1
fi
echo "tools.sh: installing moto[server]==$moto_pin and cfn-lint 1.x into $venv" >&2
if python3 -m venv "$venv" >&2 && "$venv/bin/pip" install --quiet "moto[server]==$moto_pin" 'cfn-lint>=1,<2' >&2; then
  echo "$venv/bin"
  exit 0
fi
echo "tools.sh: could not install the emulator's tools. Run this, then make again:" >&2
echo "  $install_line" >&2
exit 1
