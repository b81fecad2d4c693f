"""store_svc.queries.build_candles: OHLCV per interval from trades in time order."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from store_svc.queries import CANDLE_INTERVALS_NS, build_candles

SECOND = CANDLE_INTERVALS_NS["1s"]
MINUTE = CANDLE_INTERVALS_NS["1m"]
T0 = 1_767_225_600 * SECOND  # 2026-01-01T00:00:00Z, a whole minute


def test_one_candle_per_interval_with_open_high_low_close_and_volume():
    trades = [
        (T0 + 100, 10100, 5),
        (T0 + 200, 10300, 1),
        (T0 + 300, 10000, 2),
        (T0 + 400, 10200, 3),
        (T0 + SECOND, 10250, 7),
    ]
    candles = build_candles(trades, SECOND, 0.01)
    assert [(c.start.seconds, c.open, c.high, c.low, c.close, c.volume) for c in candles] == [
        (T0 // SECOND, 101.0, 103.0, 100.0, 102.0, 11.0),
        (T0 // SECOND + 1, 102.5, 102.5, 102.5, 102.5, 7.0),
    ]


def test_interval_start_is_the_interval_boundary_not_the_first_trade():
    candles = build_candles([(T0 + 61 * SECOND + 5, 10000, 1)], MINUTE, 0.01)
    assert candles[0].start == Timestamp(seconds=T0 // SECOND + 60)


def test_intervals_without_trades_have_no_candle():
    candles = build_candles([(T0, 10000, 1), (T0 + 3 * MINUTE, 10100, 1)], MINUTE, 0.01)
    assert [c.start.seconds - T0 // SECOND for c in candles] == [0, 180]


def test_no_trades_no_candles():
    assert build_candles([], SECOND, 0.01) == []
