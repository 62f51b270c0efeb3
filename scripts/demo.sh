#!/usr/bin/env bash
# Sets up .venv (scripts/setup.sh), then starts trainq locally (an embedded Ray, SQLite and a
# storage folder under ~/.trainq) with a demo job: a tiny GPT-2 trained on 2 CPU workers.
# Extra arguments go to `trainq serve` (see `trainq serve --help`). Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/trainq serve --demo "$@"
