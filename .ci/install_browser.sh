#!/usr/bin/env bash
# Install what the headless-browser tests (tests/browser/) need, from the package
# registries only: Debian's chromium and chromium-driver, and the selenium
# Python package. Safe to run again: it installs only what is missing.
#
#   bash .ci/install_browser.sh [PYTHON]     (PYTHON, or $PYTHON: also pip-install selenium there)
#
# No browser is downloaded at run time: the tests drive /usr/bin/chromium
# through /usr/bin/chromedriver.
set -euo pipefail

PY="${1:-${PYTHON:-}}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "install_browser: apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    # recommends included on purpose: they bring the fonts the pages and screenshots use
    $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# selenium normally comes with the project's test extra (pip install -e ".[test]");
# only a PYTHON named explicitly gets it here.
if [ -n "$PY" ] && ! "$PY" -c "import selenium" >/dev/null 2>&1; then
    echo "install_browser: $PY -m pip install selenium"
    "$PY" -m pip install -q "selenium>=4.20"
fi

# The driver must match the browser's major version (both come from the same Debian source).
browser_version="$(chromium --version 2>/dev/null || true)"
driver_version="$(chromedriver --version 2>/dev/null || true)"
browser_major=""; driver_major=""
if [[ $browser_version =~ ([0-9]+)\. ]]; then browser_major="${BASH_REMATCH[1]}"; fi
if [[ $driver_version =~ ([0-9]+)\. ]]; then driver_major="${BASH_REMATCH[1]}"; fi
if [ -z "$browser_major" ] || [ "$browser_major" != "$driver_major" ]; then
    echo "install_browser: chromium $browser_major and chromedriver $driver_major differ;" \
         "run: apt-get install --only-upgrade chromium chromium-driver" >&2
    exit 1
fi

# Smoke test: headless start with the same switches as the tests (no background
# networking, so a closed network is not flooded), fresh profile, then exit.
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
dom="$(timeout 60 chromium --headless=new --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --dump-dom 'data:text/html,<p id=ok>ok</p>' 2>/dev/null || true)"
if [[ $dom != *'id="ok"'* ]]; then
    echo "install_browser: headless chromium did not render a page; try: chromium --headless=new --no-sandbox --dump-dom about:blank" >&2
    exit 1
fi
echo "install_browser: ok: $browser_version; $driver_version"
