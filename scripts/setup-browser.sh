#!/usr/bin/env bash
# Installs Debian's chromium for the page's browser tests (tests/test_page.py drives it with
# Playwright; Playwright's own browser download is not used). Needs root and apt; elsewhere it
# says so and the browser tests skip with the same message.
set -uo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "trainq: installing Debian's chromium for the browser tests (once)"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; then
    echo "trainq: could not install chromium; the browser tests will skip" >&2
  fi
else
  echo "trainq: no chromium and not root with apt-get: the browser tests will skip" \
       "(install it with: apt-get install -y chromium)" >&2
fi
exit 0
