"""The WebSocket channels' JSON (stream_svc.json_messages) and client messages (parse_op)."""

from __future__ import annotations

import json

import pytest

from exchange.v1 import streams_pb2, types_pb2
from mockex.participant import timestamp
from stream_svc.json_messages import JsonEncoder, error_json, to_json
from stream_svc.websocket import ClientMessageError, parse_op

NOW = 1_700_000_000_123_456_789


def test_a_trade_is_typed_camel_cased_with_names_numbers_and_rfc3339() -> None:
    trade = types_pb2.Trade(
        trade_id="ACME-7",
        price=101.25,
        quantity=3,
        aggressor_side=types_pb2.SELL,
        timestamp=timestamp(NOW),
        sequence=42,
        symbol="ACME",
    )

    text = to_json(streams_pb2.StreamMarketDataResponse(trade=trade))

    assert text == (
        '{"type":"trade","tradeId":"ACME-7","price":101.25,"quantity":3,'
        '"aggressorSide":"SELL","timestamp":"2023-11-14T22:13:20.123456789Z",'
        '"sequence":42,"symbol":"ACME"}'
    )


def test_every_field_is_present_even_when_zero() -> None:
    quote = json.loads(
        to_json(
            streams_pb2.StreamMarketDataResponse(
                quote=types_pb2.Quote(symbol="ACME", timestamp=timestamp(NOW))
            )
        )
    )

    assert quote == {
        "type": "quote",
        "symbol": "ACME",
        "ltp": 0.0,
        "lastQuantity": 0,
        "bid": 0.0,
        "bidSize": 0,
        "ask": 0.0,
        "askSize": 0,
        "volume": 0.0,
        "open": 0.0,
        "high": 0.0,
        "low": 0.0,
        "timestamp": "2023-11-14T22:13:20.123456789Z",
        "sequence": 0,
        "mark": 0.0,
    }


def test_an_orders_own_type_becomes_order_type() -> None:
    order = types_pb2.Order(order_id="o-1", type=types_pb2.MARKET, status=types_pb2.FILLED)

    body = json.loads(to_json(streams_pb2.StreamOrderUpdatesResponse(order=order)))

    assert (body["type"], body["orderType"], body["status"]) == ("order", "MARKET", "FILLED")


def test_exchange_events_and_errors() -> None:
    event = streams_pb2.ExchangeEvent(
        kind=streams_pb2.NEWS, message="ACME beats estimates", sequence=12
    )

    assert json.loads(to_json(streams_pb2.StreamExchangeEventsResponse(event=event))) == {
        "type": "event",
        "kind": "NEWS",
        "symbol": "",
        "message": "ACME beats estimates",
        "sequence": 12,
    }
    assert json.loads(error_json('op: unknown operation "x"')) == {
        "type": "error",
        "message": 'op: unknown operation "x"',
    }


def test_the_encoder_encodes_a_shared_message_once() -> None:
    encoder = JsonEncoder(size=2)
    first = streams_pb2.StreamExchangeEventsResponse(
        event=streams_pb2.ExchangeEvent(kind=streams_pb2.NEWS, message="one")
    )

    text = encoder.encode(first)
    first.event.message = "changed"  # a cached message is not encoded again

    assert encoder.encode(first) is text
    for message in ("two", "three"):
        encoder.encode(
            streams_pb2.StreamExchangeEventsResponse(
                event=streams_pb2.ExchangeEvent(message=message)
            )
        )
    assert '"changed"' in encoder.encode(first)  # evicted, so encoded afresh


def test_a_subscribe_op_is_parsed_with_its_symbols_once_each() -> None:
    assert parse_op('{"op":"subscribe","symbols":["ACME","GLOBX","ACME"]}') == (
        "subscribe",
        ["ACME", "GLOBX"],
    )
    assert parse_op(b'{"op":"unsubscribe","symbols":["ACME"]}') == ("unsubscribe", ["ACME"])


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("{", "message"),
        ("[]", "message"),
        ('{"op":"SUBSCRIBE","symbols":["ACME"]}', "op"),
        ('{"symbols":["ACME"]}', "op"),
        ('{"op":"subscribe"}', "symbols"),
        ('{"op":"subscribe","symbols":[""]}', "symbols"),
        ('{"op":"subscribe","symbols":[1]}', "symbols"),
    ],
)
def test_a_bad_op_names_the_field(text: str, field: str) -> None:
    with pytest.raises(ClientMessageError, match=f"^{field}: "):
        parse_op(text)
