"""The gateway's servicers, one module per proto service, and their registration."""

from __future__ import annotations

import grpc

from exchange.v1 import (
    accounts_pb2,
    accounts_pb2_grpc,
    admin_pb2,
    admin_pb2_grpc,
    competition_pb2,
    competition_pb2_grpc,
    market_pb2,
    market_pb2_grpc,
    orders_pb2,
    orders_pb2_grpc,
    streams_pb2,
    streams_pb2_grpc,
)
from gateway_svc.exchange import Exchange
from gateway_svc.servicer.accounts import AccountServicer, ExchangeHealthServicer
from gateway_svc.servicer.admin import AdminServicer
from gateway_svc.servicer.competition import CompetitionServicer
from gateway_svc.servicer.market import BookServicer, TradeServicer
from gateway_svc.servicer.orders import OrderServicer
from gateway_svc.servicer.streams import StreamProxy

SERVICE_NAMES = [
    orders_pb2.DESCRIPTOR.services_by_name["OrderService"].full_name,
    market_pb2.DESCRIPTOR.services_by_name["BookService"].full_name,
    market_pb2.DESCRIPTOR.services_by_name["TradeService"].full_name,
    accounts_pb2.DESCRIPTOR.services_by_name["AccountService"].full_name,
    accounts_pb2.DESCRIPTOR.services_by_name["HealthService"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
    competition_pb2.DESCRIPTOR.services_by_name["CompetitionService"].full_name,
    streams_pb2.DESCRIPTOR.services_by_name["StreamService"].full_name,
]


def register(server: grpc.aio.Server, exchange: Exchange, stream_channel: grpc.aio.Channel) -> None:
    orders_pb2_grpc.add_OrderServiceServicer_to_server(
        OrderServicer(exchange, streams_pb2_grpc.StreamServiceStub(stream_channel)), server
    )
    market_pb2_grpc.add_BookServiceServicer_to_server(BookServicer(exchange), server)
    market_pb2_grpc.add_TradeServiceServicer_to_server(TradeServicer(exchange), server)
    accounts_pb2_grpc.add_AccountServiceServicer_to_server(AccountServicer(exchange), server)
    accounts_pb2_grpc.add_HealthServiceServicer_to_server(ExchangeHealthServicer(exchange), server)
    admin_pb2_grpc.add_AdminServiceServicer_to_server(AdminServicer(exchange), server)
    competition_pb2_grpc.add_CompetitionServiceServicer_to_server(
        CompetitionServicer(exchange), server
    )
    streams_pb2_grpc.add_StreamServiceServicer_to_server(StreamProxy(stream_channel), server)
