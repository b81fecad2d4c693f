"""Builds a grpc.aio server with the standard health and reflection services beside ours.

Health answers two questions. Service "" is readiness: SERVING only while the process can do
its work (its dependencies answer); it goes NOT_SERVING during an outage and back by itself.
Service "liveness" is SERVING while the process runs, whatever Redis or Kafka do, so a probe of
it never gets a healthy process restarted because a dependency is down.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

LIVENESS = "liveness"
"""Health service name of the liveness check."""


class GrpcServer:
    """A started server and its bound port; `stop` is graceful."""

    def __init__(
        self, server: grpc.aio.Server, port: int, health_servicer: health.aio.HealthServicer
    ):
        self.server = server
        self.port = port
        self.health = health_servicer

    async def set_serving(self, serving: bool) -> None:
        """Readiness (health service "")."""
        await self.health.set("", _status(serving))

    async def stop(self, grace: float = 2.0) -> None:
        await self.set_serving(False)
        await self.health.set(LIVENESS, _status(False))
        await self.server.stop(grace)


def _status(serving: bool) -> health_pb2.HealthCheckResponse.ServingStatus:
    if serving:
        return health_pb2.HealthCheckResponse.SERVING
    return health_pb2.HealthCheckResponse.NOT_SERVING


class _Undecodable:
    """Stands in for a request whose bytes did not parse."""

    def __init__(self, error: Exception) -> None:
        self.error = error


class UndecodableRequestInterceptor(grpc.aio.ServerInterceptor):
    """Answers INVALID_ARGUMENT, not UNKNOWN, when a request's bytes do not parse.

    grpc.aio fails such a call with UNKNOWN (HTTP 500 at the edge) before any servicer runs; a
    malformed request is the client's fault, so say so.
    """

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        deserialize = handler.request_deserializer

        def safe_deserialize(data: bytes) -> Any:
            try:
                return deserialize(data)
            except DecodeError as error:
                return _Undecodable(error)

        async def refuse(request: _Undecodable, context: grpc.aio.ServicerContext) -> None:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the request could not be decoded ({request.error}); check field types",
            )

        if handler.unary_unary is not None:
            behavior = handler.unary_unary

            async def unary_unary(request, context):
                if isinstance(request, _Undecodable):
                    return await refuse(request, context)
                return await behavior(request, context)

            return handler._replace(request_deserializer=safe_deserialize, unary_unary=unary_unary)
        if handler.unary_stream is not None:
            stream = handler.unary_stream
            if inspect.isasyncgenfunction(stream):

                async def unary_stream(request, context):
                    if isinstance(request, _Undecodable):
                        await refuse(request, context)
                        return
                    async for response in stream(request, context):
                        yield response

            else:  # a servicer that writes with context.write()

                async def unary_stream(request, context):
                    if isinstance(request, _Undecodable):
                        return await refuse(request, context)
                    return await stream(request, context)

            return handler._replace(
                request_deserializer=safe_deserialize, unary_stream=unary_stream
            )
        return handler


CONNECTION_LIMITS = (
    ("grpc.max_receive_message_length", 1024 * 1024),
    # Envoy forwards up to 32 KiB of headers (envoy/envoy.yaml max_request_headers_kb): accept
    # all of it, so a large header is Envoy's 431 or an answer, never grpc's RESOURCE_EXHAUSTED.
    ("grpc.max_metadata_size", 48 * 1024),
    ("grpc.absolute_max_metadata_size", 48 * 1024),
    # Streams per connection: a bot's channel, or one of Envoy's 64 upstream connections
    # (10,000 concurrent requests over them, about 160 each).
    ("grpc.max_concurrent_streams", 1000),
    # Keepalive pings more often than every 10 s without data are strikes; two, and the
    # connection is closed (GOAWAY too_many_pings). Envoy pings every 30 s.
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 2),
    # A connection without a call for 10 minutes is closed; channels reconnect by themselves.
    ("grpc.max_connection_idle_ms", 600_000),
)
"""What one client connection may take of any of our gRPC servers (the gateway's port is
public: bots and order sessions connect there)."""


async def start_grpc_server(
    address: str,
    register: Callable[[grpc.aio.Server], None],
    service_names: Iterable[str],
    interceptors: Iterable[grpc.aio.ServerInterceptor] = (),
    serving: bool = True,
    share_port: bool = False,
    process_address: str = "",
) -> GrpcServer:
    """Bind `address` (port 0 picks a free one), register our servicers, start; liveness is
    SERVING at once, readiness as `serving` says (a service that must first reach its
    dependencies starts NOT_SERVING and calls set_serving later).

    grpc turns SO_REUSEPORT on by default, which lets a second process (an earlier run, a test
    of another stack) bind the same port and silently take half the connections; so it stays
    off unless `share_port` says that several processes of one service serve this port. Such a
    process also listens on `process_address` (a path `unix:...`, or host:port), its own, so
    that its health check reaches that very process and not whichever the kernel picks."""
    server = grpc.aio.server(
        interceptors=[UndecodableRequestInterceptor(), *interceptors],
        options=[("grpc.so_reuseport", 1 if share_port else 0), *CONNECTION_LIMITS],
    )
    register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = list(service_names)
    reflection.enable_server_reflection(
        [
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    port = server.add_insecure_port(address)
    if port == 0:
        raise RuntimeError(f"could not bind gRPC server to {address}")
    if process_address and server.add_insecure_port(process_address) == 0:
        raise RuntimeError(f"could not bind gRPC server to {process_address}")
    await server.start()
    started = GrpcServer(server, port, health_servicer)
    await health_servicer.set(LIVENESS, _status(True))
    await started.set_serving(serving)
    return started
