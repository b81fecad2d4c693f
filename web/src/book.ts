// The client-side order book of one symbol, kept from the market-data stream: a snapshot, then
// deltas. Every market-data message of a symbol (book, trade, quote) carries the symbol's sequence,
// +1 each, gap-free on one stream: a message that skips one means something was missed, and the
// book is then resynchronised from a fresh snapshot (a new subscription).

export interface Level {
  price: number;
  quantity: number;
  orders: number;
}

export type Side = "bid" | "ask";

/** What a message did to the book: applied, already reflected (older), or a gap was found. */
export type Applied = "applied" | "stale" | "gap";

export class SymbolBook {
  readonly symbol: string;
  /** The sequence of the last message applied; 0 until the first snapshot. */
  sequence = 0;
  private readonly bids = new Map<number, Level>();
  private readonly asks = new Map<number, Level>();

  constructor(symbol: string) {
    this.symbol = symbol;
  }

  get synced(): boolean {
    return this.sequence > 0;
  }

  /** Replaces the whole book (a snapshot, from the stream or GetOrderBook). */
  snapshot(bids: Level[], asks: Level[], sequence: number): void {
    this.bids.clear();
    this.asks.clear();
    apply(this.bids, bids);
    apply(this.asks, asks);
    this.sequence = sequence;
  }

  /** Checks a market-data message's sequence against the book's and advances it. */
  advance(sequence: number): Applied {
    if (!this.synced || sequence <= this.sequence) return "stale";
    if (sequence !== this.sequence + 1) return "gap";
    this.sequence = sequence;
    return "applied";
  }

  /** A delta: the changed levels with their new totals, quantity 0 for a level that is gone. */
  delta(bids: Level[], asks: Level[], sequence: number): Applied {
    const applied = this.advance(sequence);
    if (applied !== "applied") return applied;
    apply(this.bids, bids);
    apply(this.asks, asks);
    return "applied";
  }

  /** Levels best first: bids highest first, asks lowest first. */
  levels(side: Side, depth = Infinity): Level[] {
    const levels = [...(side === "bid" ? this.bids : this.asks).values()];
    levels.sort((a, b) => (side === "bid" ? b.price - a.price : a.price - b.price));
    return levels.slice(0, depth);
  }

  best(side: Side): Level | undefined {
    return this.levels(side, 1)[0];
  }
}

/** Copies only the level's fields (a generated message carries more). */
function apply(levels: Map<number, Level>, changes: Level[]): void {
  for (const { price, quantity, orders } of changes) {
    if (quantity > 0) levels.set(price, { price, quantity, orders });
    else levels.delete(price);
  }
}

/**
 * Levels grouped into buckets of `ticks` ticks (1: one per price), best first: bids round down to
 * their bucket, asks up, so a bucket's price is never better than any order in it.
 */
export function aggregate(levels: Level[], side: Side, tickSize: number, ticks: number): Level[] {
  const bucket = tickSize * Math.max(1, ticks);
  const buckets = new Map<number, Level>();
  for (const level of levels) {
    const index = level.price / bucket;
    // A price a whole number of buckets away stays where it is despite float noise.
    const nearest = Math.round(index);
    const exact = Math.abs(index - nearest) < 1e-9;
    const steps = exact ? nearest : side === "bid" ? Math.floor(index) : Math.ceil(index);
    const price = Number((steps * bucket).toFixed(10));
    const found = buckets.get(price);
    if (found) {
      found.quantity += level.quantity;
      found.orders += level.orders;
    } else {
      buckets.set(price, { price, quantity: level.quantity, orders: level.orders });
    }
  }
  return [...buckets.values()].sort((a, b) =>
    side === "bid" ? b.price - a.price : a.price - b.price,
  );
}

/** My resting quantity per price on one side, for marking my orders in the ladder. */
export function myQuantities(
  orders: { price: number; remaining: number; side: Side }[],
  side: Side,
  tickSize: number,
  ticks: number,
): Map<number, number> {
  const mine = new Map<number, number>();
  const levels = orders
    .filter((order) => order.side === side && order.remaining > 0)
    .map((order) => ({ price: order.price, quantity: order.remaining, orders: 1 }));
  for (const level of aggregate(levels, side, tickSize, ticks)) {
    mine.set(level.price, level.quantity);
  }
  return mine;
}
