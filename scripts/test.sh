#!/usr/bin/env bash
# Sets up .venv (scripts/setup.sh) and Chromium for the page's tests (scripts/setup-browser.sh),
# then runs the whole test suite. Extra arguments go to pytest,
# e.g. `scripts/test.sh -m "not slow"` for the fast layers only.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/setup-browser.sh
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
