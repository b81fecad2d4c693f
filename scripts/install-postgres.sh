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

apt_install_without_starting postgresql

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
