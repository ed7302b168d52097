#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh Debian machine, then run it.
# Idempotent: a second run reuses the virtualenv and skips what is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
need_apt=()
[ -d /usr/share/datasets/fashion-mnist ] || need_apt+=(dataset-fashion-mnist)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v node >/dev/null || need_apt+=(nodejs npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need_apt[@]}"
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip
# The CPU build of torch first, so that nothing pulls the multi-GB CUDA build.
.venv/bin/python -c "import torch" 2>/dev/null || $PIP install -q "torch==2.13.0"
$PIP install -q -e ".[dev]"

# The embedding examples' npm packages (onnxruntime-node, onnxruntime-web).
if [ -f examples/package.json ]; then
  (cd examples && npm install --no-audit --no-fund --loglevel=error)
fi

# The type hints the package ships (py.typed) are checked: runtime and trainer, zero errors.
.venv/bin/python -m mypy gansample training

set +e
.venv/bin/python -m pytest -q "$@"
rc=$?
set -e
if [ $rc -eq 5 ]; then
  echo "pytest collected no tests: the suite is missing or broken" >&2
fi
exit $rc
