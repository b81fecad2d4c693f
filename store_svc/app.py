"""Composition root of store_svc: the database engine, the Kafka log consumer, the gRPC server."""

from __future__ import annotations

import asyncio
import logging
import signal

from sqlalchemy.ext.asyncio import AsyncEngine

from exchange.internal.v1 import store_pb2, store_pb2_grpc
from mockex.grpc_server import GrpcServer, start_grpc_server
from mockex.telemetry import setup_tracing
from store_svc.config import StoreConfig
from store_svc.consumer import LogConsumer
from store_svc.db import create_db_engine, display_url, upgrade_schema
from store_svc.servicer import StoreServicer

log = logging.getLogger(__name__)

SERVICE_NAME = store_pb2.DESCRIPTOR.services_by_name["StoreService"].full_name


class StoreApp:
    """Builds and owns the store's resources; tests start one in-process with gRPC on port 0."""

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self.engine: AsyncEngine | None = None
        self.consumer: LogConsumer | None = None
        self.grpc: GrpcServer | None = None

    @property
    def grpc_address(self) -> str:
        """HOST:PORT actually bound (the configured port may be 0)."""
        assert self.grpc is not None
        host = self.config.grpc_address.rsplit(":", 1)[0]
        return f"{host}:{self.grpc.port}"

    async def start(self) -> None:
        """Schema first, then the consumer, then the server: answers come from an upgraded DB."""
        self.engine = create_db_engine(self.config.database_url)
        await upgrade_schema(self.engine)
        self.consumer = LogConsumer(
            self.engine,
            self.config.kafka_bootstrap,
            self.config.events_topic,
            self.config.snapshots_topic,
        )
        await self.consumer.start()
        servicer = StoreServicer(self.engine)
        self.grpc = await start_grpc_server(
            self.config.grpc_address,
            lambda server: store_pb2_grpc.add_StoreServiceServicer_to_server(servicer, server),
            [SERVICE_NAME],
        )

    async def stop(self) -> None:
        """Stop answering, finish the poll in hand, then close the database."""
        if self.grpc is not None:
            await self.grpc.stop()
            self.grpc = None
        if self.consumer is not None:
            await self.consumer.stop()
            self.consumer = None
        if self.engine is not None:
            await self.engine.dispose()
            self.engine = None

    async def serve_until(self, stop: asyncio.Event) -> None:
        """Wait for `stop`; raises if the consumer fails first, so the process does not idle."""
        assert self.consumer is not None and self.consumer.task is not None
        stop_wait = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait(
            {stop_wait, self.consumer.task}, return_when=asyncio.FIRST_COMPLETED
        )
        stop_wait.cancel()
        if self.consumer.task in done:
            self.consumer.task.result()
            raise RuntimeError("store consumer stopped on its own")


async def run(config: StoreConfig) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully."""
    setup_tracing("store_svc")
    app = StoreApp(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await app.start()
        assert app.engine is not None
        log.info("store_svc serving grpc=%s db=%s", app.grpc_address, display_url(app.engine))
        await app.serve_until(stop)
    finally:
        await app.stop()
        log.info("store_svc stopped")
