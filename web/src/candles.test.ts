import { describe, expect, it } from "vitest";
import { BarSeries } from "./candles";

describe("BarSeries", () => {
  it("merges trades into the bar of their minute and opens new bars", () => {
    const series = new BarSeries(60);
    series.reset([{ time: 120, open: 10, high: 11, low: 9, close: 10.5, volume: 7 }]);
    expect(series.trade(12, 3, 150)).toEqual({ time: 120, open: 10, high: 12, low: 9, close: 12, volume: 10 });
    expect(series.trade(8, 1, 179.9)).toEqual({ time: 120, open: 10, high: 12, low: 8, close: 8, volume: 11 });
    expect(series.trade(9, 2, 185)).toEqual({ time: 180, open: 9, high: 9, low: 9, close: 9, volume: 2 });
    expect(series.bars.map((bar) => bar.time)).toEqual([120, 180]);
  });

  it("ignores trades older than its newest bar and sorts the history", () => {
    const series = new BarSeries(60);
    series.reset([
      { time: 240, open: 1, high: 1, low: 1, close: 1, volume: 1 },
      { time: 180, open: 2, high: 2, low: 2, close: 2, volume: 1 },
    ]);
    expect(series.bars.map((bar) => bar.time)).toEqual([180, 240]);
    expect(series.trade(5, 1, 200)).toBeUndefined();
    expect(series.bars[0].close).toBe(2);
  });

  it("starts from an empty history", () => {
    const series = new BarSeries(60);
    expect(series.trade(3, 4, 61)).toEqual({ time: 60, open: 3, high: 3, low: 3, close: 3, volume: 4 });
  });
});
