"""CompetitionService: the news (from the store) and where the event stands (the engine's
schedule cache): what a bot that connects mid-round needs to know."""

from __future__ import annotations

import time

from exchange.internal.v1 import engine_pb2, store_pb2
from exchange.v1 import competition_pb2, competition_pb2_grpc
from gateway_svc.exchange import Exchange
from gateway_svc.validation import invalid
from mockex import names, participant
from mockex.caches import check_complete

MAX_NEWS = 500


class CompetitionServicer(competition_pb2_grpc.CompetitionServiceServicer):
    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange

    async def ListNews(self, request, context):
        if request.limit > MAX_NEWS:
            raise invalid(f"limit {request.limit} is over the maximum of {MAX_NEWS}")
        answer = await self.exchange.store.ListNews(
            store_pb2.ListNewsRequest(limit=request.limit),
            timeout=self.exchange.config.store_timeout_seconds,
        )
        return competition_pb2.ListNewsResponse(news=answer.news)

    async def GetSchedule(self, request, context):
        raw = await self.exchange.redis.get(names.SCHEDULE_KEY)
        if raw is None:
            await check_complete(self.exchange.redis)
        cached = engine_pb2.CachedSchedule.FromString(raw or b"")
        schedule = cached.schedule
        if not schedule.state:
            schedule.state = competition_pb2.NOT_STARTED
        now = time.time_ns()
        running = now - cached.running_since_ns if cached.running_since_ns else 0
        schedule.scenario_seconds = (cached.elapsed_ns + max(0, running)) / 1e9
        schedule.timestamp.CopyFrom(participant.timestamp(now))
        return schedule
