#!/usr/bin/env bash
# Installs redis-server from Debian's packages. Mockex starts its own Redis instances on ports of
# its choosing, so the package's system service is kept from starting (policy-rc.d) and any
# instance it started anyway is stopped.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if command -v redis-server >/dev/null; then
    step "redis-server present ($(redis-server --version | grep -o 'v=[0-9.]*'))"
    exit 0
fi

apt_install_without_starting redis-server

if [[ -x /etc/init.d/redis-server ]] && /etc/init.d/redis-server status >/dev/null 2>&1; then
    step "stopping the system redis-server the package started"
    /etc/init.d/redis-server stop >/dev/null || true
fi
step "redis-server installed ($(redis-server --version | grep -o 'v=[0-9.]*'))"
