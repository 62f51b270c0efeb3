#!/usr/bin/env bash
# Creates .venv (if needed) and installs trainq with its test extras.
# torch is installed first and pinned so pip does not pull a multi-GB CUDA build on a CPU
# machine; a GPU cluster sets TRAINQ_TORCH_SPEC (e.g. "torch" or "torch==2.5.1+cu124").
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "trainq: creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.trainq-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "trainq: installing dependencies (first time: a minute or two)"
  .venv/bin/pip install --quiet --upgrade pip 2>/dev/null || true
  .venv/bin/pip install --quiet "${TRAINQ_TORCH_SPEC:-torch==2.13.0}"
  .venv/bin/pip install --quiet -e ".[test]"
  touch "$stamp"
fi
