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

# Debian's maintainer scripts ask /usr/sbin/policy-rc.d whether they may start services;
# exit code 101 means no. Put one in place only for this install, and only if none exists.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [[ ! -e "${policy}" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"${policy}"
    chmod +x "${policy}"
    own_policy=1
fi
remove_own_policy() { if [[ "${own_policy}" == 1 ]]; then rm -f "${policy}"; fi; }
trap remove_own_policy EXIT

apt_install redis-server

if [[ -x /etc/init.d/redis-server ]] && /etc/init.d/redis-server status >/dev/null 2>&1; then
    step "stopping the system redis-server the package started"
    /etc/init.d/redis-server stop >/dev/null || true
fi
step "redis-server installed ($(redis-server --version | grep -o 'v=[0-9.]*'))"
