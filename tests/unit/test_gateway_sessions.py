"""The gateway's command numbering (gateway_svc.engine_client): one session per process, numbered
in send order, and a new session after an hour without commands, so the engine never meets a
session it has forgotten (engine_svc.sessions)."""

from __future__ import annotations

import pytest

from exchange.internal.v1 import engine_pb2
from gateway_svc import engine_client
from gateway_svc.engine_client import EngineClient


def place(order_id: str) -> engine_pb2.EngineCommand:
    return engine_pb2.EngineCommand(
        command_id=order_id, place_order=engine_pb2.PlaceOrderCommand(order_id=order_id)
    )


def client() -> EngineClient:
    return EngineClient(redis=None, commands_stream="s", gateway_id="gw", max_queued_commands=10)


async def test_commands_are_numbered_in_send_order_in_one_session() -> None:
    engine = client()
    sent = [engine._submit(place(f"o{i}")) for i in range(3)]
    assert [pending.sequence for pending in sent] == [1, 2, 3]
    commands = [engine_pb2.EngineCommand.FromString(pending.payload) for pending in sent]
    assert {command.session_id for command in commands} == {engine.session_id}
    assert all(command.reply_to for command in commands)


async def test_a_new_session_after_an_idle_hour_with_nothing_pending(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = client()
    clock = [1000.0]
    monkeypatch.setattr(engine_client.time, "monotonic", lambda: clock[0])
    engine._last_submit = clock[0]
    first = engine._submit(place("o1"))
    first_session = engine.session_id
    engine._resolve(
        engine_pb2.EngineBatch(
            command=engine_pb2.EngineCommand(command_id="o1")
        ).SerializeToString()
    )
    assert first.answer.done() and engine.pending_count == 0

    clock[0] += engine_client.SESSION_IDLE_SECONDS
    second = engine._submit(place("o2"))
    assert engine.session_id != first_session and second.sequence == 1


async def test_no_new_session_while_a_command_waits_for_its_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = client()
    clock = [1000.0]
    monkeypatch.setattr(engine_client.time, "monotonic", lambda: clock[0])
    engine._last_submit = clock[0]
    engine._submit(place("o1"))
    session = engine.session_id
    clock[0] += 2 * engine_client.SESSION_IDLE_SECONDS
    later = engine._submit(place("o2"))
    assert engine.session_id == session and later.sequence == 2
