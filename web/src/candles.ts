// Candles for the chart: the history from GetCandles, then each live trade merged into the bar of
// its minute (or a new bar), as the exchange itself builds them.

export interface Bar {
  /** Seconds since the epoch, UTC, at the start of the bar. */
  time: number;
  open: number;
  high: number;
  low: number;
  close: number;
  volume: number;
}

export class BarSeries {
  private readonly seconds: number;
  private readonly items: Bar[] = [];

  constructor(intervalSeconds: number) {
    this.seconds = intervalSeconds;
  }

  get bars(): readonly Bar[] {
    return this.items;
  }

  /** Replaces the history (oldest first). */
  reset(bars: Bar[]): void {
    this.items.length = 0;
    this.items.push(...bars.map((bar) => ({ ...bar })).sort((a, b) => a.time - b.time));
  }

  /** Adds a trade; returns the bar it changed or made, or undefined for a trade before the last
   * bar (the chart only updates its newest bar). */
  trade(price: number, quantity: number, atSeconds: number): Bar | undefined {
    const time = Math.floor(atSeconds / this.seconds) * this.seconds;
    const last = this.items[this.items.length - 1];
    if (last && time < last.time) return undefined;
    if (last && time === last.time) {
      last.high = Math.max(last.high, price);
      last.low = Math.min(last.low, price);
      last.close = price;
      last.volume += quantity;
      return { ...last };
    }
    const bar = { time, open: price, high: price, low: price, close: price, volume: quantity };
    this.items.push(bar);
    return { ...bar };
  }
}
