# Shared helpers for the set-up scripts; sourced, not run.
# shellcheck shell=bash

# A failing command inside $(...) fails the script too.
shopt -s inherit_errexit

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC2034  # used by the scripts that source this file
VENV="${REPO_ROOT}/.venv"

step() { printf '==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# sha256 of the given files, concatenated, as one hex string.
hash_files() { cat "$@" | sha256sum | cut -d' ' -f1; }

# True when the stamp file holds exactly the given hash.
stamp_matches() { [[ -f "$1" && "$(cat "$1")" == "$2" ]]; }

# Install Debian packages. `apt-get update` runs only when the package lists are missing or the
# first attempt fails (the lists may be stale on a machine that has not updated for a while).
apt_install() {
    command -v apt-get >/dev/null || die "apt-get not found: install $* by hand"
    [[ "$(id -u)" == 0 ]] || die "installing $* needs root (apt-get)"
    export DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes
    if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
        step "apt-get update"
        apt-get update -qq
    fi
    step "installing $* (apt-get)"
    if ! apt-get install -y -qq --no-install-recommends "$@" >/dev/null; then
        step "apt-get update (install failed; retrying with fresh package lists)"
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    fi
}

# apt_install for a server package whose own system service we do not want: Debian's maintainer
# scripts ask /usr/sbin/policy-rc.d whether they may start services, and exit code 101 means no.
# One is put in place only for this install, and only if none exists.
apt_install_without_starting() {
    local policy=/usr/sbin/policy-rc.d own_policy=0 status=0
    if [[ ! -e "${policy}" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"${policy}"
        chmod +x "${policy}"
        own_policy=1
    fi
    apt_install "$@" || status=$?
    if [[ "${own_policy}" == 1 ]]; then rm -f "${policy}"; fi
    return "${status}"
}
