"""What every call of the gateway goes through, in one server interceptor: the access table,
authentication, the rate limit and the mapping of errors to gRPC statuses.

Servicers then stay thin: they read the caller with `current_caller()` and raise RequestError
(or let a backing service's error through); the participant always gets a status with a
message in their words, never UNKNOWN.
"""

from __future__ import annotations

import enum
import logging
import math
import time
from contextvars import ContextVar
from typing import Any

import grpc
from redis.exceptions import RedisError

from exchange.v1 import (
    accounts_pb2,
    admin_pb2,
    competition_pb2,
    market_pb2,
    orders_pb2,
)
from gateway_svc.engine_client import EngineUnavailable
from gateway_svc.rate_limit import TokenBucketLimiter
from gateway_svc.validation import RequestError
from mockex.auth import ApiKeyAuthenticator, Caller, api_key_from_metadata
from mockex.caches import CachesIncomplete

log = logging.getLogger("gateway_svc")


class Access(enum.Enum):
    PUBLIC = "public"
    """Anybody; no key needed."""
    PARTICIPANT = "participant"
    """A valid API key; rate-limited (admins are not)."""
    ADMIN = "admin"
    """An API key with the admin role."""


def _methods(descriptor, service: str, access: Access) -> dict[str, Access]:
    full_name = descriptor.services_by_name[service].full_name
    return {
        f"/{full_name}/{method.name}": access
        for method in descriptor.services_by_name[service].methods
    }


ACCESS: dict[str, Access] = {
    **_methods(orders_pb2.DESCRIPTOR, "OrderService", Access.PARTICIPANT),
    **_methods(market_pb2.DESCRIPTOR, "BookService", Access.PUBLIC),
    **_methods(market_pb2.DESCRIPTOR, "TradeService", Access.PUBLIC),
    **_methods(accounts_pb2.DESCRIPTOR, "AccountService", Access.PUBLIC),
    **_methods(accounts_pb2.DESCRIPTOR, "HealthService", Access.PUBLIC),
    **_methods(admin_pb2.DESCRIPTOR, "AdminService", Access.ADMIN),
    **_methods(competition_pb2.DESCRIPTOR, "CompetitionService", Access.PUBLIC),
    "/exchange.v1.AccountService/GetAccount": Access.PARTICIPANT,
    "/exchange.v1.AccountService/GetReport": Access.PARTICIPANT,
}
"""Who may call each unary method of ours. The streams are forwarded to stream_svc, which
checks the key of StreamOrderUpdates itself; health and reflection are the stock services."""

PASSED_THROUGH = (
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAVAILABLE,
)
"""Statuses of a backing service (the store) that reach the participant as they are."""

_caller: ContextVar[Caller] = ContextVar("caller")


def current_caller() -> Caller:
    """The authenticated caller of the call being served (set for PARTICIPANT and ADMIN)."""
    return _caller.get()


class GatewayInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, authenticator: ApiKeyAuthenticator, limiter: TokenBucketLimiter) -> None:
        self._authenticator = authenticator
        self._limiter = limiter

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        access = ACCESS.get(handler_call_details.method)
        if handler is None or access is None or handler.unary_unary is None:
            return handler
        behavior = handler.unary_unary
        method = handler_call_details.method

        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                if access is not Access.PUBLIC:
                    _caller.set(await self._authorize(access, context))
                return await behavior(request, context)
            except RequestError as exc:
                await context.abort(exc.code, exc.message)
            except (CachesIncomplete, EngineUnavailable) as exc:
                await context.abort(grpc.StatusCode.UNAVAILABLE, _retry_message(str(exc)))
            except (RedisError, OSError) as exc:
                log.warning("redis error method=%s error=%r", method, exc)
                await context.abort(
                    grpc.StatusCode.UNAVAILABLE,
                    _retry_message("the exchange's cache is not answering right now"),
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() in PASSED_THROUGH:
                    await context.abort(exc.code(), exc.details() or exc.code().name)
                log.warning(
                    "upstream call failed method=%s code=%s details=%s",
                    method,
                    exc.code().name,
                    exc.details(),
                )
                await context.abort(
                    grpc.StatusCode.UNAVAILABLE,
                    _retry_message(f"a backing service is unavailable ({exc.code().name})"),
                )

        return handler._replace(unary_unary=guarded)

    async def _authorize(self, access: Access, context: grpc.aio.ServicerContext) -> Caller:
        caller = await self._authenticator.caller(
            api_key_from_metadata(context.invocation_metadata())
        )
        if caller is None:
            raise RequestError(
                grpc.StatusCode.UNAUTHENTICATED, "missing or unknown API key (x-api-key)"
            )
        if access is Access.ADMIN and not caller.admin:
            raise RequestError(grpc.StatusCode.PERMISSION_DENIED, "this call needs an admin key")
        if not caller.admin:
            wait = self._limiter.take(caller.user_id, time.monotonic())
            if wait:
                retry_after = max(1, math.ceil(wait))
                context.set_trailing_metadata((("retry-after", str(retry_after)),))
                raise RequestError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"rate limit of {self._limiter.rate:g} requests/s for this API key "
                    f"exceeded; retry after {retry_after}s",
                )
        return caller


def _retry_message(reason: str) -> str:
    return f"{reason}; retry shortly (repeating an order with the same clientOrderId is safe)"
