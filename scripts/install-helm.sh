#!/usr/bin/env bash
# Installs helm (for `make lint-deploy`) into var/tools/bin with `go install` from the Go module
# proxy: helm.sh/helm/v3 is a Go module, so no prebuilt download is needed. Go's module and build
# caches stay where `go env` puts them, so a second install after `rm -rf var` is quick.
# Re-runs are no-ops while var/tools/bin/helm is the pinned version.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HELM_VERSION="v3.22.0"
BIN_DIR="${REPO_ROOT}/var/tools/bin"
HELM="${BIN_DIR}/helm"

if [[ -x "${HELM}" ]] && [[ "$("${HELM}" version --template '{{.Version}}' 2>/dev/null)" == "${HELM_VERSION}" ]]; then
    step "helm ${HELM_VERSION} up to date (var/tools/bin/helm)"
    exit 0
fi
if ! command -v go >/dev/null; then
    apt_install golang-go
fi
step "installing helm ${HELM_VERSION} (go install helm.sh/helm/v3/cmd/helm) into var/tools/bin"
mkdir -p "${BIN_DIR}"
# The version is stamped the way helm's own Makefile does, so `helm version` names it.
GOBIN="${BIN_DIR}" GOFLAGS="-buildvcs=false -mod=mod" CGO_ENABLED=0 \
    go install -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}" \
    "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
note "$("${HELM}" version --short)"
