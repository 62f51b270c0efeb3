#!/usr/bin/env bash
# Sets up .venv (scripts/setup.sh) and Chromium for the page's tests (scripts/setup-browser.sh),
# checks the code (ruff; mypy, strict on the pure core), then runs the whole test suite. Extra
# arguments go to pytest, e.g. `scripts/test.sh -m "not slow"` for the fast layers only.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/setup-browser.sh
echo "trainq: ruff check and mypy"
.venv/bin/ruff check scheduler api tests benchmarks
.venv/bin/mypy
exec .venv/bin/python -m pytest -p no:cacheprovider --durations=30 "$@"
