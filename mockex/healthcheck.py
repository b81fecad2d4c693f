"""A gRPC health probe for the image's HEALTHCHECK: `python -m mockex.healthcheck [--liveness]`.

Exits 0 when the service in this container answers SERVING on the standard health service:
readiness (service "", NOT_SERVING while a dependency is down) by default, or with
--liveness the check that does not depend on Redis or Kafka (mockex.grpc_server.LIVENESS).
Which service runs here is read from process 1's command line (mockex.container execs it), and
its address from the same variable and default port its config.py uses.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mockex.grpc_server import LIVENESS
from mockex.settings import local_address

ADDRESS_VARIABLES = {
    "engine_svc": ("MOCKEX_ENGINE_GRPC_ADDRESS", "engine"),
    "gateway_svc": ("MOCKEX_GATEWAY_GRPC_ADDRESS", "gateway"),
    "stream_svc": ("MOCKEX_STREAM_GRPC_ADDRESS", "stream"),
    "store_svc": ("MOCKEX_STORE_GRPC_ADDRESS", "store"),
    "data_svc": ("MOCKEX_DATA_GRPC_ADDRESS", "data"),
}
"""Service module -> (its gRPC listen address variable, its settings.PORTS name)."""


def running_service(cmdline: Path = Path("/proc/1/cmdline")) -> str:
    """The service module process 1 runs (`python -u -m gateway_svc`)."""
    argv = cmdline.read_bytes().split(b"\0")
    for flag, module in zip(argv, argv[1:], strict=False):
        if flag == b"-m" and module.decode() in ADDRESS_VARIABLES:
            return module.decode()
    raise SystemExit(f"process 1 runs none of {sorted(ADDRESS_VARIABLES)}")


def probe_target(service: str, env: dict[str, str]) -> str:
    """Where to reach `service` from inside its container: its listen address, a wildcard
    host replaced by loopback."""
    variable, port_name = ADDRESS_VARIABLES[service]
    address = env.get(variable) or local_address(port_name)
    host, _, port = address.rpartition(":")
    if host in ("0.0.0.0", "[::]", "::", ""):
        host = "127.0.0.1"
    return f"{host}:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--liveness", action="store_true", help="check liveness, not readiness")
    parser.add_argument("--service", choices=sorted(ADDRESS_VARIABLES), help="default: process 1's")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args()
    target = probe_target(args.service or running_service(), dict(os.environ))
    name = LIVENESS if args.liveness else ""
    with grpc.insecure_channel(target) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=name), timeout=args.timeout
            )
        except grpc.RpcError as error:
            sys.exit(f"{target}: {error.code().name}")
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    if answer.status != health_pb2.HealthCheckResponse.SERVING:
        sys.exit(f"{target}: {status}")


if __name__ == "__main__":
    main()
