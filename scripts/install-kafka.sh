#!/usr/bin/env bash
# Installs the Apache Kafka broker as jars from Maven Central into var/kafka/libs.
# Re-runs are no-ops until deploy/kafka/pom.xml changes.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

POM="${REPO_ROOT}/deploy/kafka/pom.xml"
LIBS="${REPO_ROOT}/var/kafka/libs"
STAMP="${LIBS}/.pom.sha256"

if ! command -v java >/dev/null; then
    apt_install openjdk-17-jre-headless
fi
want="$(hash_files "${POM}")"
if [[ -d "${LIBS}" ]] && stamp_matches "${STAMP}" "${want}"; then
    step "Kafka jars up to date (var/kafka/libs)"
    exit 0
fi
if ! command -v mvn >/dev/null; then
    apt_install maven
fi

step "installing Kafka broker jars (Maven Central -> var/kafka/libs)"
staging="${LIBS}.tmp"
rm -rf "${staging}"
mkdir -p "${staging}"
mvn_log="${REPO_ROOT}/var/kafka/mvn.log"
if ! mvn -B -f "${POM}" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="${staging}" >"${mvn_log}" 2>&1; then
    tail -n 40 "${mvn_log}" >&2
    die "mvn dependency:copy-dependencies failed (full log: ${mvn_log})"
fi
printf '%s\n' "${want}" >"${staging}/.pom.sha256"
rm -rf "${LIBS}"
mv "${staging}" "${LIBS}"
note "$(find "${LIBS}" -name '*.jar' | wc -l) jars, $(du -sh "${LIBS}" | cut -f1)"
