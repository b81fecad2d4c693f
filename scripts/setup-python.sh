#!/usr/bin/env bash
# Creates .venv and installs requirements.txt into it, then the project itself in editable mode.
# Each install step runs again only when its input changed (sha256 stamps inside .venv).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PYTHON="${PYTHON:-python3}"
REQUIREMENTS="${REPO_ROOT}/requirements.txt"
REQ_STAMP="${VENV}/.requirements.stamp"
PROJECT_STAMP="${VENV}/.project.stamp"

if [[ ! -x "${VENV}/bin/python" ]]; then
    step "creating .venv ($(${PYTHON} --version))"
    "${PYTHON}" -m venv "${VENV}"
fi

want="$(hash_files "${REQUIREMENTS}")"
if stamp_matches "${REQ_STAMP}" "${want}"; then
    step "Python requirements up to date"
else
    step "installing Python requirements (pip install -r requirements.txt)"
    rm -f "${REQ_STAMP}"
    "${VENV}/bin/pip" install --quiet --disable-pip-version-check -r "${REQUIREMENTS}"
    printf '%s\n' "${want}" >"${REQ_STAMP}"
fi

# The editable install maps each top-level package to its folder, so it has to be redone when the
# packaging metadata changes or a top-level package appears or goes.
want="$(
    cd "${REPO_ROOT}"
    { cat pyproject.toml; printf '%s\n' */__init__.py; } | sha256sum | cut -d' ' -f1
)"
if stamp_matches "${PROJECT_STAMP}" "${want}"; then
    step "mockex (editable) up to date"
else
    step "installing mockex in editable mode (pip install -e .)"
    rm -f "${PROJECT_STAMP}"
    # setuptools comes with requirements.txt (grpcio-tools needs it), so no isolated build env.
    "${VENV}/bin/pip" install --quiet --disable-pip-version-check \
        --no-deps --no-build-isolation -e "${REPO_ROOT}"
    printf '%s\n' "${want}" >"${PROJECT_STAMP}"
fi
