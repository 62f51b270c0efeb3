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
  # (this machine's pip config lists index folders that may be absent; pip says so per package)
  quiet() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
  quiet .venv/bin/pip install --quiet "${TRAINQ_TORCH_SPEC:-torch==2.13.0}"
  quiet .venv/bin/pip install --quiet -e ".[test]"
  touch "$stamp"
fi
# Debian's postgresql for the Postgres registry tests and the store benchmark (tests/pg.py starts a
# throwaway server from its initdb and pg_ctl, as the postgres user). Needs root and apt, like
# Chromium in scripts/setup-browser.sh; elsewhere it says so and those tests skip with the same message.
if ! compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null && ! command -v pg_ctl >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "trainq: installing Debian's postgresql for the registry tests (once)"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }; then
      echo "trainq: could not install postgresql; the Postgres registry tests will skip" >&2
    fi
  else
    echo "trainq: no Postgres server binaries and not root with apt-get: the Postgres registry tests will skip" \
         "(install them with: apt-get install -y postgresql)" >&2
  fi
fi
