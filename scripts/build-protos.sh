#!/usr/bin/env bash
# Generates Python code (messages, type stubs, gRPC stubs) from proto/ into build/gen, and the
# descriptor set build/proto/exchange.pb (with imports and source info) for Envoy's transcoder.
# The google/api protos our files import are copied from googleapis-common-protos into
# build/third_party, where buf also finds them. Skipped when no input changed since the last build.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SELF="${REPO_ROOT}/scripts/build-protos.sh"
PY="${VENV}/bin/python"
PROTO_DIR="${REPO_ROOT}/proto"
BUILD="${REPO_ROOT}/build"
GEN="${BUILD}/gen"
THIRD_PARTY="${BUILD}/third_party"
DESCRIPTOR_SET="${BUILD}/proto/exchange.pb"
STAMP="${BUILD}/proto/.inputs.sha256"

[[ -x "${PY}" ]] || die "no .venv: run scripts/setup-python.sh (or make setup)"
mapfile -t protos < <(cd "${PROTO_DIR}" && find exchange -name '*.proto' | LC_ALL=C sort)
[[ ${#protos[@]} -gt 0 ]] || die "no .proto files under proto/exchange"

read -r site_packages grpc_tools_include < <("${PY}" -c '
import pathlib, sysconfig, grpc_tools
print(sysconfig.get_paths()["purelib"], pathlib.Path(grpc_tools.__file__).parent / "_proto")')
pth="${site_packages}/mockex-generated.pth"

want="$(
    cd "${PROTO_DIR}"
    { printf '%s\n' "${protos[@]}"; cat "${protos[@]}" "${SELF}" "${REPO_ROOT}/mockex/openapi.py"
      "${PY}" -m grpc_tools.protoc --version; } |
        sha256sum | cut -d' ' -f1
)"
if stamp_matches "${STAMP}" "${want}" && [[ -f "${DESCRIPTOR_SET}" && -f "${pth}" && -f "${BUILD}/openapi.json" ]]; then
    step "protos up to date (build/gen, build/proto/exchange.pb, build/openapi.json)"
    exit 0
fi

step "copying imported google/* protos into build/third_party (googleapis-common-protos)"
rm -rf "${THIRD_PARTY}"
# Follow imports from our files: whatever grpc_tools does not bundle (google/protobuf/*) is taken
# from site-packages, where googleapis-common-protos ships google/api/*.proto.
"${PY}" - "${PROTO_DIR}" "${site_packages}" "${grpc_tools_include}" "${THIRD_PARTY}" "${protos[@]}" <<'PYTHON'
import pathlib
import re
import shutil
import sys

proto_dir, site_packages, bundled, third_party = map(pathlib.Path, sys.argv[1:5])
import_line = re.compile(r'^\s*import\s+(?:public\s+|weak\s+)?"([^"]+)"\s*;', re.MULTILINE)
pending = [proto_dir / name for name in sys.argv[5:]]
seen = set()
while pending:
    for name in import_line.findall(pending.pop().read_text()):
        if name in seen or (proto_dir / name).exists() or (bundled / name).exists():
            continue
        seen.add(name)
        source = site_packages / name
        if not source.exists():
            sys.exit(f"error: imported {name} is in neither proto/, grpc_tools nor {site_packages}")
        target = third_party / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        print(f"    {name}")
        pending.append(source)
PYTHON
mkdir -p "${THIRD_PARTY}"

step "generating Python from ${#protos[@]} proto files into build/gen (grpc_tools.protoc)"
rm -rf "${GEN}" "${BUILD}/proto"
mkdir -p "${GEN}" "${BUILD}/proto"
(
    cd "${PROTO_DIR}"
    "${PY}" -m grpc_tools.protoc \
        -I "${PROTO_DIR}" -I "${THIRD_PARTY}" -I "${grpc_tools_include}" \
        --python_out="${GEN}" --pyi_out="${GEN}" --grpc_python_out="${GEN}" \
        --descriptor_set_out="${DESCRIPTOR_SET}" --include_imports --include_source_info \
        "${protos[@]}"
)
# Generated code is imported as `exchange.v1`; make every generated directory a package.
find "${GEN}" -mindepth 1 -type d -exec sh -c 'for d; do [ -f "$d/__init__.py" ] || : >"$d/__init__.py"; done' _ {} +

step "linking build/gen into .venv ($(basename "${pth}"))"
printf '%s\n' "${GEN}" >"${pth}"
"${PY}" -c 'import exchange.v1' || die "build/gen is not importable from .venv"

step "writing the REST API description build/openapi.json (mockex.openapi)"
"${PY}" -m mockex.openapi "${DESCRIPTOR_SET}" "${BUILD}/openapi.json"
printf '%s\n' "${want}" >"${STAMP}"
