#!/usr/bin/env bash
# Runs a single-node Kafka broker in KRaft mode (broker and controller in one process) on loopback.
#   scripts/start-kafka.sh PORT CONTROLLER_PORT DATA_DIR
# The first run writes DATA_DIR/server.properties and formats DATA_DIR/logs; later runs reuse them.
# The script execs java, so the caller's process id is the broker's: stop it with SIGTERM.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $# -eq 3 ]] || die "usage: $0 PORT CONTROLLER_PORT DATA_DIR"
port="$1"
controller_port="$2"
mkdir -p "$3"
data_dir="$(cd "$3" && pwd)"

libs="${REPO_ROOT}/var/kafka/libs"
[[ -d "${libs}" ]] || die "no Kafka jars in ${libs}: run scripts/install-kafka.sh (or make setup)"
classpath="${libs}/*"
config="${data_dir}/server.properties"
listeners="PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controller_port}"

if [[ ! -f "${config}" ]]; then
    cat >"${config}" <<PROPERTIES
# Written by scripts/start-kafka.sh: one KRaft node on loopback for Mockex.
process.roles=broker,controller
node.id=1
listeners=${listeners}
advertised.listeners=${listeners}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
controller.quorum.bootstrap.servers=127.0.0.1:${controller_port}
log.dirs=${data_dir}/logs
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPERTIES
elif ! grep -qxF "listeners=${listeners}" "${config}"; then
    die "${config} was written for other ports (the controller's address is part of the formatted storage): remove ${data_dir} or use its ports"
fi

if [[ ! -f "${data_dir}/logs/meta.properties" ]]; then
    # A Kafka Uuid: 16 random bytes, URL-safe base64 without padding, not starting with '-'.
    cluster_id="$(python3 -c '
import base64, uuid
while (s := base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")).startswith("-"):
    pass
print(s)')"
    step "formatting Kafka storage in ${data_dir}/logs (cluster ${cluster_id})"
    java -cp "${classpath}" -Dlog4j2.configurationFile="${REPO_ROOT}/deploy/kafka/log4j2.yaml" \
        kafka.tools.StorageTool format --standalone -t "${cluster_id}" -c "${config}" >/dev/null
fi

step "starting Kafka broker on 127.0.0.1:${port} (controller ${controller_port}, data ${data_dir})"
exec java -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="${REPO_ROOT}/deploy/kafka/log4j2.yaml" \
    -cp "${classpath}" kafka.Kafka "${config}"
