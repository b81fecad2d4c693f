#!/usr/bin/env bash
# buf breaking (FILE rules): the working tree's proto/ against proto/ on a git branch (default main).
# `buf breaking --against .git#branch=main` cannot build that side on its own, because the
# google/api imports live in build/third_party, which git does not track. So the branch's proto/
# is compiled here, with today's build/third_party, into a descriptor set that buf compares against.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

branch="${1:-main}"
buf="${REPO_ROOT}/node_modules/.bin/buf"
base="${REPO_ROOT}/build/breaking"
cd "${REPO_ROOT}"

[[ -x "${buf}" ]] || die "no buf: run make setup"
[[ -d build/third_party ]] || die "no build/third_party: run make proto"
if ! git rev-parse --verify --quiet "refs/heads/${branch}^{commit}" >/dev/null; then
    step "buf breaking: branch ${branch} has no commit yet; nothing to compare against"
    exit 0
fi
mapfile -t base_protos < <(git ls-tree -r --name-only "${branch}" -- proto | grep '\.proto$' | sed 's|^proto/||')
if [[ ${#base_protos[@]} -eq 0 ]]; then
    step "buf breaking: ${branch} has no .proto files yet; nothing to compare against"
    exit 0
fi

step "buf breaking: proto/ against ${branch} ($(git rev-parse --short "${branch}"), ${#base_protos[@]} files)"
rm -rf "${base}"
mkdir -p "${base}"
git archive "${branch}" proto | tar -x -C "${base}"
grpc_tools_include="$("${VENV}/bin/python" -c '
import pathlib, grpc_tools
print(pathlib.Path(grpc_tools.__file__).parent / "_proto")')"
"${VENV}/bin/python" -m grpc_tools.protoc \
    -I "${base}/proto" -I build/third_party -I "${grpc_tools_include}" \
    --include_imports --descriptor_set_out="${base}/image.binpb" \
    "${base_protos[@]/#/${base}/proto/}"
"${buf}" breaking proto --against "${base}/image.binpb"
step "buf breaking: no breaking changes"
