#!/usr/bin/env bash
# The static checks of the deployment files (`make lint-deploy`; no Docker engine or cluster
# needed): hadolint on the Dockerfile, deploy/compose.yaml against the compose specification's
# schema, helm lint, helm template with the default and the production values, every rendered
# manifest against the Kubernetes schemas of KUBERNETES_VERSION, and the Envoy configs of
# compose and of the chart's ConfigMap by the real Envoy binary (envoy --mode validate).
# Expects `make deploy-edge` to have rendered the Envoy configs (the Makefile runs it first).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KUBERNETES_VERSION="${KUBERNETES_VERSION:-1.33.0}"
HELM="${REPO_ROOT}/var/tools/bin/helm"
CHART="${REPO_ROOT}/helm/mockex"
OUT="${REPO_ROOT}/build/deploy"
BIN="${VENV}/bin"
mkdir -p "${OUT}"

step "hadolint Dockerfile"
"${BIN}/hadolint" "${REPO_ROOT}/Dockerfile"

step "deploy/compose.yaml against the compose specification's schema (check-jsonschema)"
"${BIN}/check-jsonschema" --builtin-schema vendor.compose-spec "${REPO_ROOT}/deploy/compose.yaml"

for values in default production; do
    args=()
    [[ "${values}" == default ]] || args=(-f "${CHART}/values-${values}.yaml")
    step "helm lint + helm template (${values} values)"
    "${HELM}" lint --strict --quiet "${CHART}" "${args[@]}"
    "${HELM}" template mockex "${CHART}" --namespace mockex "${args[@]}" \
        --kube-version "${KUBERNETES_VERSION}" >"${OUT}/chart-${values}.yaml"
    step "kubernetes-validate --strict (Kubernetes ${KUBERNETES_VERSION}): chart-${values}.yaml"
    "${BIN}/kubernetes-validate" --strict --quiet -k "${KUBERNETES_VERSION}" \
        "${OUT}/chart-${values}.yaml"
done

# Envoy reads its files from /etc/mockex-edge in the containers; here from a local copy.
validate_edge() {
    local dir="$1" name="$2"
    sed "s#/etc/mockex-edge/#${dir}/#g" "${dir}/envoy.yaml" >"${dir}/envoy.validate.yaml"
    step "envoy --mode validate (${name})"
    "${BIN}/envoy" --mode validate --config-path "${dir}/envoy.validate.yaml" \
        --disable-hot-restart --log-level warn >/dev/null
}
validate_edge "${OUT}/edge-compose" "deploy/compose.yaml's edge"

# The chart's ConfigMap exactly as `helm template` renders it (host names filled in).
chart_edge="${OUT}/edge-chart"
rm -rf "${chart_edge}"
"${BIN}/python" - "${OUT}/chart-default.yaml" "${chart_edge}" "${CHART}/files/edge" <<'PYTHON'
import base64
import pathlib
import sys

import yaml

manifests, out, rendered = map(pathlib.Path, sys.argv[1:4])
out.mkdir(parents=True)
(config_map,) = [
    doc for doc in yaml.safe_load_all(manifests.read_text())
    if doc and doc["kind"] == "ConfigMap" and doc["metadata"]["name"].endswith("-envoy")
]
for name, text in config_map["data"].items():
    (out / name).write_text(text)
for name, data in config_map.get("binaryData", {}).items():
    (out / name).write_bytes(base64.b64decode(data))
# The API server refuses a ConfigMap over 1 MiB (data and binaryData together).
size = sum(len(key) + len(value.encode()) for part in ("data", "binaryData")
           for key, value in config_map.get(part, {}).items())
# Each file as the renderer wrote it (a YAML block scalar may only add a final newline).
for source in rendered.iterdir():
    if source.name == "envoy.yaml":
        continue  # its host names are filled in by the chart
    copy = (out / source.name).read_bytes()
    if copy.rstrip(b"\n") != source.read_bytes().rstrip(b"\n"):
        sys.exit(f"error: {source.name} differs in the envoy ConfigMap")
if size > 1024 * 1024:
    sys.exit(f"error: the envoy ConfigMap is {size} bytes, over Kubernetes' 1 MiB")
print(f"    envoy ConfigMap: {size} bytes of 1048576")
PYTHON
validate_edge "${chart_edge}" "the chart's envoy ConfigMap"
