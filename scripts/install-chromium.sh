#!/usr/bin/env bash
# Installs Chromium from Debian's packages, for the web terminal's browser test
# (tests/integration/test_web_terminal.py drives /usr/bin/chromium with Playwright for Python).
# Playwright's own browser download (`playwright install`) is never used: it fetches from outside
# the package registries.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CHROMIUM=/usr/bin/chromium

chromium_version() { "${CHROMIUM}" --version 2>/dev/null | grep -o '[0-9][0-9.]*' | head -n 1; }

if [[ -x "${CHROMIUM}" ]]; then
    step "chromium present ($(chromium_version))"
    exit 0
fi

apt_install chromium
[[ -x "${CHROMIUM}" ]] || die "the chromium package is installed but ${CHROMIUM} is missing"
step "chromium installed ($(chromium_version))"
