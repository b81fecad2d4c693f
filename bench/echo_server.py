"""`python -m bench.echo_server`: a bare grpc.aio server answering the standard health Check, the
baseline the end-to-end benchmark measures the order path against.

Nothing but grpc.aio with its default options and one trivial unary method (no interceptors, no
Redis, no logging per call), in a process of its own, so the same load generator shows what a
Python gRPC server costs per call before any exchange work. It listens on
$MOCKEX_BENCH_ECHO_ADDRESS (127.0.0.1:50070 by default) until SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


class EchoHealth(health_pb2_grpc.HealthServicer):
    """Check answers SERVING at once: the least work a unary call can do."""

    async def Check(self, request, context) -> health_pb2.HealthCheckResponse:
        return SERVING


async def serve(address: str) -> None:
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(EchoHealth(), server)
    server.add_insecure_port(address)
    await server.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    await server.stop(1)


def main() -> None:
    asyncio.run(serve(os.environ.get("MOCKEX_BENCH_ECHO_ADDRESS", "127.0.0.1:50070")))


if __name__ == "__main__":
    main()
