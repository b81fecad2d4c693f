"""The store's tables (SQLAlchemy Core), the database engine, the schema upgrade and the writes.

The schema itself is made by the alembic migrations in store_svc/migrations; these tables are
the same schema for building queries, and must change together with a new migration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Float,
    Index,
    Insert,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    event,
    make_url,
    select,
    tuple_,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from store_svc.records import ORDER_VERSION, PARTICIPANT_ROLE, Rows

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
DB_UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeoutError)
"""Errors of a database that is away (down, restarting, locked): retried or answered UNAVAILABLE;
any other database error is a bug."""

metadata = MetaData()

symbols = Table(
    "symbols",
    metadata,
    Column("symbol", Text, primary_key=True),
    # Decimal string as the engine has it ("0.01"), so the tick stays exact.
    Column("tick_size", Text, nullable=False),
    Column("lot_size", BigInteger, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("user_id", Text, primary_key=True),
    Column("admin", Boolean, nullable=False),
    Column("api_key_sha256", Text, nullable=False),
)

orders = Table(
    "orders",
    metadata,
    Column("order_id", Text, primary_key=True),
    Column("user_id", Text, nullable=False),
    Column("symbol", Text, nullable=False),
    Column("side", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("time_in_force", Text, nullable=False),
    Column("price_ticks", BigInteger, nullable=False),
    Column("quantity", BigInteger, nullable=False),
    Column("filled_quantity", BigInteger, nullable=False),
    Column("filled_notional_ticks", BigInteger, nullable=False),
    Column("status", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("client_order_id", Text, nullable=False),
    Column("created_ns", BigInteger, nullable=False),
    Column("updated_ns", BigInteger, nullable=False),
    # Where the stored state came from: the log offset and the event's index in its batch.
    Column("log_offset", BigInteger, nullable=False),
    Column("event_index", BigInteger, nullable=False),
    Index("ix_orders_user_created", "user_id", "created_ns"),
)

fills = Table(
    "fills",
    metadata,
    Column("order_id", Text, primary_key=True),
    Column("trade_id", Text, primary_key=True),
    Column("price_ticks", BigInteger, nullable=False),
    Column("quantity", BigInteger, nullable=False),
    Column("timestamp_ns", BigInteger, nullable=False),
    # The symbol sequence orders fills that share a timestamp (one order sweeping levels).
    Column("sequence", BigInteger, nullable=False),
    Column("fee_units", BigInteger, nullable=False, server_default="0"),
)

trades = Table(
    "trades",
    metadata,
    Column("trade_id", Text, primary_key=True),
    Column("symbol", Text, nullable=False),
    Column("price_ticks", BigInteger, nullable=False),
    Column("quantity", BigInteger, nullable=False),
    Column("aggressor_side", Text, nullable=False),
    Column("buy_order_id", Text, nullable=False),
    Column("sell_order_id", Text, nullable=False),
    Column("buyer_id", Text, nullable=False),
    Column("seller_id", Text, nullable=False),
    Column("timestamp_ns", BigInteger, nullable=False),
    Column("sequence", BigInteger, nullable=False),
    Index("ix_trades_symbol_time", "symbol", "timestamp_ns", "sequence"),
)

snapshots = Table(
    "snapshots",
    metadata,
    Column("log_offset", BigInteger, primary_key=True),
    Column("timestamp_ns", BigInteger, nullable=False),
    # The serialized EngineSnapshot.
    Column("payload", LargeBinary, nullable=False),
)

news = Table(
    "news",
    metadata,
    Column("news_id", Text, primary_key=True),
    Column("headline", Text, nullable=False),
    # Comma-separated symbols ("" for market-wide news).
    Column("symbols", Text, nullable=False),
    Column("timestamp_ns", BigInteger, nullable=False),
    Column("exchange_sequence", BigInteger, nullable=False),
    Index("ix_news_timestamp", "timestamp_ns"),
)

accounts = Table(
    "accounts",
    metadata,
    # Every account the log created, with its role (AccountRole name) and admin flag: reports
    # are for participants only.
    Column("user_id", Text, primary_key=True),
    Column("role", Text, nullable=False),
    Column("admin", Boolean, nullable=False),
    Column("created_ns", BigInteger, nullable=False),
)

report_activity = Table(
    "report_activity",
    metadata,
    # A participant's order placed (ACCEPTED or REJECTED with its reason), FILL or CONVERSION
    # (an ETF's, `quantity` its units), where the log first has it: its place decides the round
    # it counts in. Keyed by what it is (records.activity_id), so a batch the log holds twice
    # counts once.
    Column("activity_id", Text, primary_key=True),
    Column("log_offset", BigInteger, nullable=False),
    Column("event_index", BigInteger, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("symbol", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("quantity", BigInteger, nullable=False),
    # Price ticks times quantity of a fill (0 otherwise); the symbol's tick makes it cash.
    Column("notional_ticks", BigInteger, nullable=False),
    Column("fee_units", BigInteger, nullable=False),
    Index("ix_report_activity_user", "user_id", "log_offset"),
)

round_marks = Table(
    "round_marks",
    metadata,
    # LOADED (a scenario: a new event), STARTED or ENDED (a round), where the log first has it;
    # keyed by the event's exchange-wide sequence, so a batch the log holds twice counts once.
    Column("exchange_sequence", BigInteger, primary_key=True),
    Column("log_offset", BigInteger, nullable=False),
    Column("event_index", BigInteger, nullable=False),
    Column("kind", Text, nullable=False),
    Column("round", BigInteger, nullable=False),
    Column("scenario", Text, nullable=False),
    Column("timestamp_ns", BigInteger, nullable=False),
)

score_samples = Table(
    "score_samples",
    metadata,
    # One participant's score in one ScoresSampled event (keyed as round_marks).
    Column("exchange_sequence", BigInteger, primary_key=True),
    Column("user_id", Text, primary_key=True),
    Column("log_offset", BigInteger, nullable=False),
    Column("event_index", BigInteger, nullable=False),
    Column("timestamp_ns", BigInteger, nullable=False),
    Column("equity_units", BigInteger, nullable=False),
    Column("pnl_units", BigInteger, nullable=False),
    Column("max_drawdown_units", BigInteger, nullable=False),
    Column("sharpe", Float, nullable=False),
    # Comma-separated P&L of each round so far, the current one last ("" before the first).
    Column("round_pnl_units", Text, nullable=False),
)

rankings = Table(
    "rankings",
    metadata,
    # The rules' ranking (PNL or SHARPE) from each SettingsChanged on, keyed as round_marks; the
    # reports rank by the last one in the log.
    Column("exchange_sequence", BigInteger, primary_key=True),
    Column("log_offset", BigInteger, nullable=False),
    Column("event_index", BigInteger, nullable=False),
    Column("ranking", Text, nullable=False),
)

log_positions = Table(
    "log_positions",
    metadata,
    # Where the store resumes reading: kept with the rows, so a crash can never separate them.
    Column("topic", Text, primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),
)


def create_db_engine(url: str) -> AsyncEngine:
    """An async engine; SQLite files get their folder created and WAL mode on every connection."""
    parsed = make_url(url)
    engine = create_async_engine(parsed)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_wal(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    return engine


def display_url(engine: AsyncEngine) -> str:
    """The database URL for logs, password hidden."""
    return engine.url.render_as_string(hide_password=True)


async def upgrade_schema(engine: AsyncEngine) -> None:
    """alembic upgrade head, on one of the engine's own connections (alembic's asyncio recipe)."""
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)


def _upgrade(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _insert(conn: AsyncConnection, table: Table) -> Insert:
    """INSERT with ON CONFLICT support for the connection's dialect."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


async def write_rows(engine: AsyncEngine, rows: Rows) -> None:
    """Write one poll's rows in one transaction; every write is idempotent (at-least-once log)."""
    async with engine.begin() as conn:
        if rows.symbols:
            stmt = _insert(conn, symbols)
            stmt = stmt.on_conflict_do_update(
                index_elements=[symbols.c.symbol],
                set_={"tick_size": stmt.excluded.tick_size, "lot_size": stmt.excluded.lot_size},
            )
            await conn.execute(stmt, list(rows.symbols.values()))
        if rows.users:
            stmt = _insert(conn, users)
            stmt = stmt.on_conflict_do_update(
                index_elements=[users.c.user_id],
                set_={"admin": stmt.excluded.admin, "api_key_sha256": stmt.excluded.api_key_sha256},
            )
            await conn.execute(stmt, list(rows.users.values()))
        if rows.orders:
            stmt = _insert(conn, orders)
            stmt = stmt.on_conflict_do_update(
                index_elements=[orders.c.order_id],
                set_={c.name: stmt.excluded[c.name] for c in orders.c if not c.primary_key},
                where=tuple_(*(stmt.excluded[name] for name in ORDER_VERSION))
                > tuple_(*(orders.c[name] for name in ORDER_VERSION)),
            )
            await conn.execute(stmt, list(rows.orders.values()))
        for table, table_rows in (
            (fills, rows.fills),
            (trades, rows.trades),
            (snapshots, rows.snapshots),
            (news, rows.news),
            (accounts, rows.accounts),
            (report_activity, rows.activity),
            (round_marks, rows.round_marks),
            (score_samples, rows.score_samples),
            (rankings, rows.rankings),
        ):
            if table_rows:
                await conn.execute(_insert(conn, table).on_conflict_do_nothing(), table_rows)
        if rows.log_positions:
            stmt = _insert(conn, log_positions)
            stmt = stmt.on_conflict_do_update(
                index_elements=[log_positions.c.topic, log_positions.c.partition],
                set_={"next_offset": stmt.excluded.next_offset},
            )
            await conn.execute(
                stmt,
                [
                    {"topic": topic, "partition": partition, "next_offset": next_offset}
                    for (topic, partition), next_offset in rows.log_positions.items()
                ],
            )


async def read_participants(engine: AsyncEngine) -> set[str]:
    """User ids of the accounts reports are kept for, as of the last written poll."""
    async with engine.connect() as conn:
        result = await conn.execute(
            select(accounts.c.user_id).where(
                accounts.c.role == PARTICIPANT_ROLE, accounts.c.admin.is_(False)
            )
        )
        return set(result.scalars())


async def read_log_positions(engine: AsyncEngine) -> dict[tuple[str, int], int]:
    """(topic, partition) -> next offset to read, as of the last written poll."""
    async with engine.connect() as conn:
        result = await conn.execute(log_positions.select())
        return {(row.topic, row.partition): row.next_offset for row in result}
