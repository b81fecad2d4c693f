#!/usr/bin/env bash
# Installs the PostgreSQL server binaries from Debian's packages, for store_svc's PostgreSQL tests
# (they start a throwaway server of their own with /usr/lib/postgresql/*/bin/initdb). The
# package's system service is kept from starting (policy-rc.d) and any cluster it started anyway
# is stopped; store_svc itself defaults to SQLite and needs none of this.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

find_initdb() { compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -n 1; }

if initdb="$(find_initdb)"; then
    step "PostgreSQL present ($("${initdb}" --version))"
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

apt_install postgresql

if command -v pg_lsclusters >/dev/null; then
    while read -r version cluster _port status _rest; do
        if [[ "${status}" == online ]]; then
            step "stopping the PostgreSQL cluster ${version}/${cluster} the package started"
            pg_ctlcluster "${version}" "${cluster}" stop || true
        fi
    done < <(pg_lsclusters --no-header)
fi
initdb="$(find_initdb)" || die "postgresql installed but no /usr/lib/postgresql/*/bin/initdb found"
step "PostgreSQL installed ($("${initdb}" --version))"
