#!/usr/bin/env bash
# Writes the secret files deploy/compose.yaml reads (deploy/secrets/, git-ignored): the admin
# key, the Redis password and the PostgreSQL password, random, each only if missing, so the
# exchange keeps its admin key across runs. MOCKEX_ADMIN_KEY, when set, is the admin key.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DIR="${REPO_ROOT}/deploy/secrets"
# The folder is the user's alone; the files are readable by all, since compose (without swarm)
# bind-mounts them as they are and each container reads them as its own non-root user.
mkdir -p "${DIR}"
chmod 700 "${DIR}"
random() { "${VENV}/bin/python" -c 'import secrets; print(secrets.token_urlsafe(24))'; }
write() {
    local file="${DIR}/$1" value="$2"
    if [[ -s "${file}" ]]; then
        return
    fi
    (umask 022 && printf '%s' "${value}" >"${file}")
    note "wrote deploy/secrets/$1"
}
step "compose secrets (deploy/secrets)"
write admin_key "${MOCKEX_ADMIN_KEY:-mx_$(random)}"
write redis_password "$(random)"
write postgres_password "$(random)"
