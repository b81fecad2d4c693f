"""What every call of the gateway goes through, in one server interceptor: the access table,
authentication, the rate limit and the mapping of errors to gRPC statuses.

Servicers then stay thin: they read the caller with `current_caller()` and raise RequestError
(or let a backing service's error through); the participant always gets a status with a
message in their words, never UNKNOWN. The OrderSession stream is authenticated once when it
opens; its servicer spends the rate limit per message with `admit_message()` and turns each
request's error into an answer with `error_status()`, the mapping the unary calls get.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from typing import Any

import grpc
from opentelemetry import trace
from redis.exceptions import RedisError

from gateway_svc.client_address import AddressLimits
from gateway_svc.engine_client import EngineBusy, EngineUnavailable
from gateway_svc.rate_limit import TokenBucketLimiter
from gateway_svc.validation import RequestError
from mockex.access import ACCESS, Access
from mockex.auth import ApiKeyAuthenticator, Caller, api_key_from_metadata
from mockex.caches import CachesIncomplete

log = logging.getLogger("gateway_svc")
requests_log = logging.getLogger("gateway_svc.requests")

READ_PREFIXES = ("Get", "List", "Check")
"""Methods that only read: their successful calls are logged at DEBUG."""
REQUEST_LOG_LEVELS = ("writes", "errors")


PASSED_THROUGH = (
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAVAILABLE,
)
"""Statuses of a backing service (the store) that reach the participant as they are."""

MAPPED_ERRORS = (
    RequestError,
    CachesIncomplete,
    EngineUnavailable,
    EngineBusy,
    RedisError,
    OSError,
    grpc.aio.AioRpcError,
)
"""The errors a request may end with that become a status in the participant's words; any
other exception is a bug."""

_caller: ContextVar[Caller] = ContextVar("caller")
_admit: ContextVar[Callable[[], None]] = ContextVar("admit")


def current_caller() -> Caller:
    """The authenticated caller of the call being served (set for PARTICIPANT and ADMIN)."""
    return _caller.get()


def admit_message() -> None:
    """Spends the caller's rate limit on one message of a stream, as each unary call does;
    RequestError RESOURCE_EXHAUSTED (retry-after in the message) when it is spent."""
    _admit.get()()


def error_status(exc: BaseException, method: str) -> tuple[grpc.StatusCode, str]:
    """The status and message the participant gets for one of MAPPED_ERRORS."""
    if isinstance(exc, RequestError):
        return exc.code, exc.message
    if isinstance(exc, EngineBusy):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)
    if isinstance(exc, (CachesIncomplete, EngineUnavailable)):
        return grpc.StatusCode.UNAVAILABLE, _retry_message(str(exc))
    if isinstance(exc, grpc.aio.AioRpcError):
        if exc.code() in PASSED_THROUGH:
            return exc.code(), exc.details() or exc.code().name
        log.warning(
            "upstream call failed method=%s code=%s details=%s",
            method,
            exc.code().name,
            exc.details(),
        )
        return grpc.StatusCode.UNAVAILABLE, _retry_message(
            f"a backing service is unavailable ({exc.code().name})"
        )
    log.warning("redis error method=%s error=%r", method, exc)
    return grpc.StatusCode.UNAVAILABLE, _retry_message(
        "the exchange's cache is not answering right now"
    )


class GatewayInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        authenticator: ApiKeyAuthenticator,
        limiter: TokenBucketLimiter,
        address_limits: AddressLimits | None = None,
        request_log: str = "writes",
    ) -> None:
        if request_log not in REQUEST_LOG_LEVELS:
            raise ValueError(f"MOCKEX_REQUEST_LOG={request_log!r}: use writes or errors")
        self._request_log_level = request_log
        self._authenticator = authenticator
        self._limiter = limiter
        self._address_limits = address_limits
        """None: no per-address limits (public reads and failed sign-ins unlimited)."""

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        access = ACCESS.get(handler_call_details.method)
        if handler is None or access is None:
            return handler
        method = handler_call_details.method
        if handler.unary_unary is not None:
            return handler._replace(
                unary_unary=self._guard_unary(handler.unary_unary, access, method)
            )
        if handler.stream_stream is not None:
            return handler._replace(
                stream_stream=self._guard_stream(handler.stream_stream, access, method)
            )
        return handler

    def _guard_unary(self, behavior, access: Access, method: str):
        rpc = method.rsplit(".", 1)[-1]
        read = rpc.split("/", 1)[-1].startswith(READ_PREFIXES)

        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            code, user, response = grpc.StatusCode.OK, "", None
            try:
                if access is Access.PUBLIC:
                    self._spend_public(context)
                else:
                    caller = await self._authenticate(access, context)
                    user = caller.user_id
                    _caller.set(caller)
                    self._spend(caller, context)
                response = await behavior(request, context)
                return response
            except MAPPED_ERRORS as exc:
                if isinstance(exc, EngineBusy):
                    retry_after = str(EngineBusy.RETRY_AFTER_SECONDS)
                    context.set_trailing_metadata((("retry-after", retry_after),))
                code, message = error_status(exc, method)
                await context.abort(code, message)
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except BaseException:
                set_code = context.code()
                code = (
                    set_code if isinstance(set_code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN
                )
                raise
            finally:
                self._request_log(rpc, read, code, started, user, request, response, context)

        return guarded

    def _request_log(
        self,
        rpc: str,
        read: bool,
        code: grpc.StatusCode,
        started: float,
        user: str,
        request: Any,
        response: Any,
        context: grpc.aio.ServicerContext,
    ) -> None:
        """One line per call: what (and the HTTP method and path of a REST call through the
        edge), how it ended, how long, for whom, which order, which trace. Successful reads at
        DEBUG, so an event's log stays readable."""
        ok = code is grpc.StatusCode.OK
        level = (
            logging.DEBUG if ok and (read or self._request_log_level == "errors") else logging.INFO
        )
        if not requests_log.isEnabledFor(level):
            return
        order = getattr(response, "order", None)
        order_id = getattr(request, "order_id", "") or (order.order_id if order is not None else "")
        trace_id = trace.get_current_span().get_span_context().trace_id
        requests_log.log(
            level,
            "request rpc=%s http=%s code=%s ms=%.1f user=%s order=%s trace=%s",
            rpc,
            http_request(context.invocation_metadata() or ()),
            code.name,
            (time.perf_counter() - started) * 1000,
            user or "-",
            order_id or "-",
            format(trace_id, "032x") if trace_id else "-",
        )

    def _guard_stream(self, behavior, access: Access, method: str):
        """A session is authenticated once, when it opens; each of its messages spends the
        rate limit through admit_message(), so one request is refused, not the stream."""

        async def guarded(
            requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
        ) -> AsyncIterator[Any]:
            try:
                if access is not Access.PUBLIC:
                    caller = await self._authenticate(access, context)
                    _caller.set(caller)
                    _admit.set(functools.partial(self._spend, caller))
                async for response in behavior(requests, context):
                    yield response
            except MAPPED_ERRORS as exc:
                await context.abort(*error_status(exc, method))

        return guarded

    async def _authenticate(self, access: Access, context: grpc.aio.ServicerContext) -> Caller:
        caller = await self._authenticator.caller(
            api_key_from_metadata(context.invocation_metadata())
        )
        if caller is None:
            self._spend_address("failed_auth", context)
            raise RequestError(
                grpc.StatusCode.UNAUTHENTICATED, "missing or unknown API key (x-api-key)"
            )
        if access is Access.ADMIN and not caller.admin:
            raise RequestError(grpc.StatusCode.PERMISSION_DENIED, "this call needs an admin key")
        return caller

    def _spend(self, caller: Caller, context: grpc.aio.ServicerContext | None = None) -> None:
        """One token of the caller's bucket (admins are not limited); a unary call also gets
        the wait as its retry-after trailer."""
        if caller.admin:
            return
        wait = self._limiter.take(caller.user_id, time.monotonic())
        if not wait:
            return
        retry_after = max(1, math.ceil(wait))
        if context is not None:
            context.set_trailing_metadata((("retry-after", str(retry_after)),))
        raise RequestError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"rate limit of {self._limiter.rate:g} requests/s for this API key "
            f"exceeded; retry after {retry_after}s",
        )

    def _spend_public(self, context: grpc.aio.ServicerContext) -> None:
        self._spend_address("public", context)

    def _spend_address(self, kind: str, context: grpc.aio.ServicerContext) -> None:
        """One token of the client address's `kind` bucket (public reads or failed sign-ins)."""
        limits = self._address_limits
        if limits is None:
            return
        limiter = limits.public if kind == "public" else limits.failed_auth
        address = limits.address(context.peer(), context.invocation_metadata() or ())
        wait = limits.take(limiter, address, time.monotonic())
        if not wait:
            return
        retry_after = max(1, math.ceil(wait))
        context.set_trailing_metadata((("retry-after", str(retry_after)),))
        what = "public requests" if kind == "public" else "failed sign-ins (unknown API keys)"
        raise RequestError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"too many {what} from this address ({limiter.rate:g}/s); retry after {retry_after}s",
        )


def http_request(metadata) -> str:
    """`GET /order/status/o-1` for a REST call through the edge (Envoy's original path, and the
    method mockex.rest_json kept before the transcoder made it a POST); "-" for a gRPC call.
    Without the query string, which is no business of a log."""
    method = path = ""
    for key, value in metadata:
        if key == "x-mockex-http-method":
            method = value
        elif key == "x-envoy-original-path":
            path = value.split("?", 1)[0]
    return f"{method} {path}" if method and path else "-"


def _retry_message(reason: str) -> str:
    return f"{reason}; retry shortly (repeating an order with the same clientOrderId is safe)"
