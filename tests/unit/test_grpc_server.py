"""Requests whose bytes do not parse get INVALID_ARGUMENT, not UNKNOWN."""

import grpc
import pytest

from exchange.v1 import accounts_pb2, accounts_pb2_grpc
from mockex.grpc_server import start_grpc_server


class Health(accounts_pb2_grpc.HealthServiceServicer):
    async def GetHealth(self, request, context):
        return accounts_pb2.GetHealthResponse(status="SERVING")


@pytest.fixture
async def server():
    started = await start_grpc_server(
        "127.0.0.1:0",
        lambda s: accounts_pb2_grpc.add_HealthServiceServicer_to_server(Health(), s),
        ["exchange.v1.HealthService"],
    )
    yield started
    await started.stop(0)


async def test_undecodable_request_is_invalid_argument(server):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        call = channel.unary_unary(
            "/exchange.v1.HealthService/GetHealth",
            request_serializer=lambda raw: raw,
            response_deserializer=accounts_pb2.GetHealthResponse.FromString,
        )
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await call(b"\xff\xff\xff")
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "could not be decoded" in error.value.details()
        good = await accounts_pb2_grpc.HealthServiceStub(channel).GetHealth(
            accounts_pb2.GetHealthRequest()
        )
        assert good.status == "SERVING"
