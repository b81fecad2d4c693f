"""Every Kafka topic and Redis key of the exchange, in one place.

Kafka topics are keyed by symbol. exchange.v1.events has ONE partition on purpose: accounts span
symbols, so the engine's log must be totally ordered to be replayable.
"""

EVENTS_TOPIC = "exchange.v1.events"
"""EngineBatch per command: the command and every event it produced (the engine's log)."""
SNAPSHOTS_TOPIC = "exchange.v1.snapshots"
"""EngineSnapshot, periodically; the newest one plus the events after it rebuild the engine."""
MAX_RECORD_BYTES = 64 * 1024 * 1024
"""Largest Kafka record of ours (the broker's default is 1 MiB): a snapshot holds every open
order, and a day close expires every resting GFD order in one batch."""

COMMANDS_STREAM = "exchange:v1:commands"
"""Redis stream of EngineCommand: the engine's input queue."""
ENGINE_GROUP = "engine"
"""Consumer group of the engine on COMMANDS_STREAM."""
EVENTS_CHANNEL = "exchange:v1:events"
"""Redis pub/sub: every EngineBatch, after it is durable in Kafka (fan-out to stream_svc)."""
EXCHANGE_EVENTS_CHANNEL = "exchange:v1:exchange-events"
"""Redis pub/sub: ExchangeEvent from other services (news, leaderboard) for the events streams."""
SYMBOLS_KEY = "exchange:v1:symbols"
"""Hash symbol -> SymbolInfo."""
ACCOUNTS_KEY = "exchange:v1:accounts"
"""Hash user id -> GetAccountResponse (cash and positions, not marked to market)."""
USERS_KEY = "exchange:v1:users"
"""Hash sha256(api key) -> UserRecord."""
ENGINE_STATUS_KEY = "exchange:v1:engine:status"
"""EngineStatus, written by the engine every second with a short expiry: missing or not serving,
the gateway refuses orders (UNAVAILABLE) instead of queueing them for an engine that cannot
take them."""
ENGINE_STATUS_TTL_SECONDS = 5
SCHEDULE_KEY = "exchange:v1:schedule"
"""GetScheduleResponse (without its timestamp): where the event stands, for GET /schedule."""
SETTINGS_KEY = "exchange:v1:settings"
"""ExchangeSettings as the log holds them (the gateway reads the message rate limit there)."""
VIEWS_KEY = "exchange:v1:views"
"""Set by the engine, last, when it has written every cache (after its start, or when Redis came
back empty). Missing: the caches may be incomplete, so readers answer UNAVAILABLE rather than
"unknown key" or an empty book."""
ORDER_TTL_SECONDS = 24 * 3600
FINISHED_ORDER_TTL_SECONDS = 600
"""A filled, cancelled, expired or rejected order stays cached this long, not a day: the cache
otherwise grows with every order (about 300 bytes each: 7 GiB a day at 300 orders/s). Readers
fall back to the store, which answers every order the log holds."""


def reply_channel(gateway_id: str) -> str:
    """Redis pub/sub channel where the engine answers one gateway instance."""
    return f"exchange:v1:replies:{gateway_id}"


def order_key(order_id: str) -> str:
    """Public Order (with fills) as the engine last saw it; expires after ORDER_TTL_SECONDS
    (FINISHED_ORDER_TTL_SECONDS once it is finished)."""
    return f"exchange:v1:order:{order_id}"


def conversion_key(conversion_id: str) -> str:
    """Public Conversion (executed or rejected); expires after ORDER_TTL_SECONDS. A gateway
    answers a resend of a conversion the engine had applied from it."""
    return f"exchange:v1:conversion:{conversion_id}"


def quote_key(symbol: str) -> str:
    return f"exchange:v1:quote:{symbol}"


def book_key(symbol: str) -> str:
    """Full-depth OrderBook of the symbol."""
    return f"exchange:v1:book:{symbol}"


def client_order_key(user_id: str, client_order_id: str) -> str:
    """The order id a user's clientOrderId was first given to; expires after ORDER_TTL_SECONDS."""
    return f"exchange:v1:client-order:{user_id}:{client_order_id}"
