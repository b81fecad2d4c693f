"""Who may call each method of the public API: one table, read by the gateway's interceptor
(which enforces it) and by the OpenAPI generator (which documents it), so the two cannot say
different things.

Built from the generated descriptors of proto/exchange/v1: a method added to a service gets its
service's access without an edit here.
"""

from __future__ import annotations

import enum

from exchange.v1 import accounts_pb2, admin_pb2, competition_pb2, market_pb2, orders_pb2


class Access(enum.Enum):
    PUBLIC = "public"
    """Anybody, no key; rate-limited per client address."""
    PARTICIPANT = "participant"
    """A valid API key; rate-limited per user (admins are not)."""
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
"""By gRPC method path (/exchange.v1.Service/Method): the gateway's unary calls and the
OrderSession stream. The StreamService streams are forwarded to stream_svc, which checks the
key of StreamOrderUpdates itself; health and reflection are the stock services."""


def access_of(service: str, method: str) -> Access | None:
    """The access of exchange.v1.`service`/`method`; None for a method the gateway does not
    serve itself."""
    return ACCESS.get(f"/exchange.v1.{service}/{method}")
