"""Composition root of store_svc: the database engine, the Kafka log consumer, the freshness wait,
the gRPC server and its readiness."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from exchange.internal.v1 import store_pb2, store_pb2_grpc
from mockex.grpc_server import GrpcServer, start_grpc_server
from store_svc.config import StoreConfig
from store_svc.consumer import LOOKUP_TIMEOUT_MS, LogConsumer, LogEnd
from store_svc.db import create_db_engine, display_url, upgrade_schema
from store_svc.freshness import EndOffsetLookups, Freshness
from store_svc.health import Probe, Readiness
from store_svc.servicer import StoreServicer

log = logging.getLogger(__name__)

SERVICE_NAME = store_pb2.DESCRIPTOR.services_by_name["StoreService"].full_name


class StoreApp:
    """Builds and owns the store's resources; tests start one in-process with gRPC on port 0."""

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self.engine: AsyncEngine | None = None
        self.consumer: LogConsumer | None = None
        self.log_end: LogEnd | None = None
        self.lookups: EndOffsetLookups | None = None
        self.grpc: GrpcServer | None = None
        self.readiness: Readiness | None = None

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
        self.log_end = LogEnd(self.config.kafka_bootstrap, self.config.events_topic)
        await self.log_end.start()
        # A backstop only: aiokafka gives up on a lookup after LOOKUP_TIMEOUT_MS itself.
        self.lookups = EndOffsetLookups(self.log_end.end_offset, LOOKUP_TIMEOUT_MS / 1000 + 1)
        freshness = Freshness(
            self.lookups, self.consumer.written, self.config.freshness_timeout_seconds
        )
        servicer = StoreServicer(self.engine, freshness)
        self.grpc = await start_grpc_server(
            self.config.grpc_address,
            lambda server: store_pb2_grpc.add_StoreServiceServicer_to_server(servicer, server),
            [SERVICE_NAME],
            serving=False,
        )
        consumer, engine = self.consumer, self.engine
        self.readiness = Readiness(
            self.grpc.health,
            [
                Probe("the log", self.lookups.end_offset),
                Probe("the database", lambda: ping_database(engine)),
            ],
            lambda: consumer.writes_failing,
        )
        await self.readiness.start()
        log.info("store_svc serving grpc=%s db=%s", self.grpc_address, display_url(self.engine))

    async def stop(self) -> None:
        """Stop answering, finish the poll in hand, then close the database."""
        if self.readiness is not None:
            await self.readiness.stop()
            self.readiness = None
        if self.grpc is not None:
            await self.grpc.stop()
            self.grpc = None
        if self.lookups is not None:
            await self.lookups.close()
            self.lookups = None
        if self.log_end is not None:
            await self.log_end.stop()
            self.log_end = None
        if self.consumer is not None:
            await self.consumer.stop()
            self.consumer = None
        if self.engine is not None:
            await self.engine.dispose()
            self.engine = None

    async def wait(self) -> None:
        """Returns (raising) only if the consumer or the readiness watch ends by itself, which
        only a bug makes them do (both ride out Kafka and database outages), so the process
        does not idle with stale rows or a stale health answer."""
        assert self.consumer is not None and self.consumer.task is not None
        assert self.readiness is not None and self.readiness.task is not None
        workers = {self.consumer.task, self.readiness.task}
        done, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
            raise RuntimeError(f"{task.get_name()} stopped on its own")


async def ping_database(engine: AsyncEngine) -> None:
    """Readiness probe of the database: a connection that answers."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
