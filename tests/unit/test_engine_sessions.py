"""The ledger of applied gateway commands (engine_svc.sessions) and the CommandHandler using it:
each (session, sequence) is applied once, whatever order the commands arrive in."""

from __future__ import annotations

from engine_svc.engine import MatchingEngine
from engine_svc.events import SymbolAdded
from engine_svc.servicer import CommandHandler
from engine_svc.sessions import IDLE_SESSION_NS, CommandLedger
from exchange.internal.v1 import engine_pb2

GW = "gw-1"


def recorded(*sequences: int, session: str = GW, now: int = 1) -> CommandLedger:
    ledger = CommandLedger()
    for sequence in sequences:
        ledger.record(session, sequence, now)
    return ledger


def watermark(ledger: CommandLedger, session: str = GW) -> tuple[int, list[int]]:
    state = ledger.sessions[session]
    return state.applied_through, sorted(state.applied_after)


# ---- CommandLedger --------------------------------------------------------------------------


def test_commands_in_order_advance_the_watermark():
    ledger = recorded(1, 2, 3)

    assert watermark(ledger) == (3, [])
    assert [ledger.is_applied(GW, n) for n in (1, 2, 3, 4)] == [True, True, True, False]


def test_a_command_beyond_a_gap_is_applied_but_the_gap_is_not():
    ledger = recorded(1, 2, 5)

    assert watermark(ledger) == (2, [5])
    assert [ledger.is_applied(GW, n) for n in (2, 3, 4, 5, 6)] == [True, False, False, True, False]


def test_the_missing_command_closes_the_gap_and_the_watermark_passes_what_came_after():
    ledger = recorded(1, 3, 4, 6)

    ledger.record(GW, 2, 2)

    assert watermark(ledger) == (4, [6])
    ledger.record(GW, 5, 3)
    assert watermark(ledger) == (6, [])


def test_gaps_close_in_any_order():
    ledger = recorded(4, 2, 3, 1)

    assert watermark(ledger) == (4, [])


def test_a_duplicate_is_reported_applied_below_the_watermark_and_beyond_it():
    ledger = recorded(1, 2, 7)

    assert ledger.is_applied(GW, 1) and ledger.is_applied(GW, 2)  # below the watermark
    assert ledger.is_applied(GW, 7)  # beyond it, in the gap's far side
    assert not ledger.is_applied(GW, 3)


def test_recording_an_applied_command_again_changes_nothing():
    ledger = recorded(1, 2, 3, 5)
    ledger.record(GW, 2, now=9)
    ledger.record(GW, 5, now=9)
    assert watermark(ledger) == (3, [5])


def test_sessions_are_independent():
    ledger = recorded(1, 2)
    ledger.record("gw-2", 1, 1)

    assert watermark(ledger, "gw-2") == (1, [])
    assert ledger.is_applied(GW, 2) and not ledger.is_applied("gw-2", 2)
    assert not ledger.is_applied("gw-3", 1)  # a session never seen has applied nothing


def test_a_command_without_session_is_never_a_resend():
    ledger = CommandLedger()

    ledger.record("", 1, 1)

    assert ledger.sessions == {}
    assert not ledger.is_applied("", 1) and not ledger.is_applied("", 0)


def test_forget_idle_drops_sessions_idle_for_the_idle_time_and_keeps_the_rest():
    ledger = CommandLedger()
    ledger.record("old", 1, 1_000)
    ledger.record("edge", 1, 2_000)
    ledger.record("recent", 1, 3_000)

    ledger.forget_idle(2_000 + IDLE_SESSION_NS)

    assert sorted(ledger.sessions) == ["recent"]  # idle for exactly the idle time: forgotten
    assert not ledger.is_applied("old", 1)


def test_forget_idle_measures_from_the_last_applied_command():
    ledger = CommandLedger()
    ledger.record(GW, 1, 0)
    ledger.record(GW, 3, IDLE_SESSION_NS // 2)  # out of order, later: still counts as activity

    ledger.forget_idle(IDLE_SESSION_NS)

    assert watermark(ledger) == (1, [3])


def test_a_forgotten_session_is_a_new_one_if_it_ever_sends_again():
    """Its gateway has moved on to a new session (sessions.py): what it applied is not known."""
    ledger = recorded(1, 2, 3, now=0)
    ledger.forget_idle(IDLE_SESSION_NS)

    ledger.record(GW, 4, IDLE_SESSION_NS + 1)

    assert not ledger.is_applied(GW, 3)
    assert watermark(ledger) == (0, [4])


# ---- through the CommandHandler -------------------------------------------------------------


def command(session: str, sequence: int, now: int, **oneof) -> engine_pb2.EngineCommand:
    return engine_pb2.EngineCommand(
        timestamp_ns=now, session_id=session, session_sequence=sequence, **oneof
    )


def add_symbol(symbol: str = "ACME") -> dict:
    return {"add_symbol": engine_pb2.AddSymbolCommand(symbol=symbol)}


def place(order_id: str) -> dict:
    return {
        "place_order": engine_pb2.PlaceOrderCommand(
            order_id=order_id, symbol="ACME", side=1, type=1, time_in_force=1, price_ticks=100,
            quantity=1,
        )
    }  # fmt: skip


def test_handler_records_each_applied_command_in_its_session():
    handler = CommandHandler(MatchingEngine())
    first = command(GW, 1, 10, **add_symbol())
    assert not handler.is_applied(first)

    events = handler.apply(first)

    assert [type(e) for e in events] == [SymbolAdded]
    assert handler.is_applied(first)
    assert watermark(handler.ledger) == (1, [])
    assert handler.ledger.sessions[GW].last_applied_ns == 10


def test_handler_knows_a_resend_of_the_same_session_and_sequence_only():
    handler = CommandHandler(MatchingEngine())
    handler.apply(command(GW, 1, 1, **add_symbol()))
    handler.apply(command(GW, 2, 2, **place("o1")))

    assert handler.is_applied(command(GW, 2, 3, **place("o1")))  # the same, sent again
    assert not handler.is_applied(command(GW, 3, 3, **place("o2")))
    assert not handler.is_applied(command("gw-2", 2, 3, **place("o1")))


def test_handler_applies_commands_of_no_session_every_time():
    handler = CommandHandler(MatchingEngine())
    handler.apply(command("", 0, 1, **add_symbol()))

    assert not handler.is_applied(command("", 0, 2, **add_symbol()))
    assert handler.ledger.sessions == {}


def test_handler_forgets_idle_sessions_at_day_close():
    handler = CommandHandler(MatchingEngine())
    handler.apply(command("idle", 1, 1, **add_symbol()))
    handler.apply(command(GW, 1, IDLE_SESSION_NS, **place("o1")))

    handler.apply(command("", 0, IDLE_SESSION_NS + 1, close_market=engine_pb2.CloseMarketCommand()))

    assert sorted(handler.ledger.sessions) == [GW]


def test_handler_batch_carries_the_command_and_its_events():
    handler = CommandHandler(MatchingEngine())
    handler.apply(command(GW, 1, 1, **add_symbol()))
    sent = command(GW, 2, 2, **place("o1"))

    batch = handler.batch(sent)

    assert batch.command == sent
    assert [event.WhichOneof("event") for event in batch.events] == [
        "order_accepted",
        "book_level_changed",
        "quote_changed",
    ]
    assert not batch.already_applied
    assert handler.is_applied(sent)
    assert "o1" in handler.engine.open_orders
