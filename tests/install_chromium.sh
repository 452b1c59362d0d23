#!/usr/bin/env bash
# Make sure Debian's headless-capable Chromium is installed for the browser tests
# (tests/api/test_dashboard_browser.py drives it with Playwright's Python package).
#
# Idempotent: returns at once when /usr/bin/chromium is there. Nothing downloads a
# browser of its own: this is the distribution's package, installed with apt like
# PostgreSQL in timescale/install.sh.
set -euo pipefail

CHROMIUM="${SENTINEL_CHROMIUM:-/usr/bin/chromium}"

say() { printf '[browser] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

[[ -x "$CHROMIUM" ]] && exit 0

if [[ ! -r /etc/debian_version ]] || ! command -v apt-get >/dev/null; then
    die "this is not a Debian-like system, so Chromium cannot be installed automatically.
  Install Chromium yourself and set SENTINEL_CHROMIUM to its path, or skip the browser
  test (it is skipped when no Chromium is found)."
fi

SUDO=""
if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null || die "installing packages needs root (or sudo)"
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive

install() { $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null; }

say "installing Debian's chromium (once)"
# On a fresh machine the package lists may be empty or out of date: then refresh them
# once and try again.
if ! apt-cache show chromium >/dev/null 2>&1 || ! install 2>/dev/null; then
    say "apt-get update"
    $SUDO apt-get update -qq
    install
fi
[[ -x "$CHROMIUM" ]] || die "chromium was installed but $CHROMIUM is missing"
say "$("$CHROMIUM" --version 2>/dev/null || echo chromium) installed"
