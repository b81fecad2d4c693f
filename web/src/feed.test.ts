import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { MarketFeed } from "./feed";
import { StreamMarketDataResponseSchema } from "./gen/exchange/v1/streams_pb";
import { PriceLevelSchema } from "./gen/exchange/v1/types_pb";

const level = (price: number, quantity: number) =>
  create(PriceLevelSchema, { price, quantity, orders: 1 });

function book(symbol: string, sequence: number, bids: [number, number][], snapshot = false) {
  return create(StreamMarketDataResponseSchema, {
    payload: {
      case: "book",
      value: { symbol, sequence, snapshot, bids: bids.map(([p, q]) => level(p, q)), asks: [] },
    },
  }).payload;
}

function trade(symbol: string, sequence: number, price: number) {
  return create(StreamMarketDataResponseSchema, {
    payload: { case: "trade", value: { symbol, sequence, price, quantity: 1, tradeId: `t${sequence}` } },
  }).payload;
}

function quote(symbol: string, sequence: number) {
  return create(StreamMarketDataResponseSchema, {
    payload: { case: "quote", value: { symbol, sequence, ltp: 1 } },
  }).payload;
}

describe("MarketFeed", () => {
  it("uses messages in sequence after each symbol's snapshot", () => {
    const gaps: string[] = [];
    const feed = new MarketFeed((symbol) => gaps.push(symbol));
    feed.book("ACME");
    feed.book("GLOBX");
    expect(feed.apply(trade("ACME", 5, 100))).toEqual({ symbol: "ACME", kind: "trade", use: false });
    expect(feed.apply(book("ACME", 5, [[100, 3]], true))?.use).toBe(true);
    expect(feed.apply(book("GLOBX", 2, [], true))?.use).toBe(true);
    expect(feed.apply(trade("ACME", 6, 100))?.use).toBe(true);
    expect(feed.apply(book("ACME", 7, [[100, 2]]))?.use).toBe(true);
    expect(feed.apply(quote("GLOBX", 3))?.use).toBe(true);
    expect(feed.apply(quote("ACME", 8))?.use).toBe(true);
    expect(feed.book("ACME").levels("bid")).toEqual([{ price: 100, quantity: 2, orders: 1 }]);
    expect(gaps).toEqual([]);
    expect(feed.apply(trade("UNKNOWN", 1, 1))).toBeUndefined();
  });

  it("asks once for a resync on a gap, ignores the symbol until its new snapshot", () => {
    const gaps: string[] = [];
    const feed = new MarketFeed((symbol) => gaps.push(symbol));
    feed.book("ACME");
    feed.book("GLOBX");
    feed.apply(book("ACME", 5, [[100, 3]], true));
    feed.apply(book("GLOBX", 1, [[50, 1]], true));
    expect(feed.apply(book("ACME", 7, [[100, 9]]))).toEqual({ symbol: "ACME", kind: "book", use: false });
    expect(gaps).toEqual(["ACME"]);
    // The rest of this stream says nothing trustworthy about ACME; GLOBX goes on.
    expect(feed.apply(book("ACME", 8, [[101, 1]]))?.use).toBe(false);
    expect(feed.apply(trade("ACME", 9, 101))?.use).toBe(false);
    expect(feed.apply(quote("GLOBX", 2))?.use).toBe(true);
    expect(gaps).toEqual(["ACME"]);
    expect(feed.resyncs).toBe(1);
    expect(feed.book("ACME").levels("bid")).toEqual([{ price: 100, quantity: 3, orders: 1 }]);

    // The new stream: snapshots first, and the books are what they say.
    feed.reset();
    expect(feed.apply(quote("GLOBX", 3))?.use).toBe(false);
    feed.apply(book("ACME", 12, [[99, 4]], true));
    feed.apply(book("GLOBX", 3, [[50, 2]], true));
    expect(feed.apply(book("ACME", 13, [[98, 1]]))?.use).toBe(true);
    expect(feed.book("ACME").levels("bid").map((l) => [l.price, l.quantity])).toEqual([
      [99, 4],
      [98, 1],
    ]);
    expect(feed.book("GLOBX").levels("bid")).toEqual([{ price: 50, quantity: 2, orders: 1 }]);
    expect(gaps).toEqual(["ACME"]);
  });

  it("drops messages the snapshot already reflects without a resync", () => {
    const gaps: string[] = [];
    const feed = new MarketFeed((symbol) => gaps.push(symbol));
    feed.book("ACME");
    feed.apply(book("ACME", 10, [[100, 3]], true));
    expect(feed.apply(trade("ACME", 9, 100))?.use).toBe(false);
    expect(feed.apply(book("ACME", 10, [[100, 1]]))?.use).toBe(false);
    expect(feed.apply(trade("ACME", 11, 100))?.use).toBe(true);
    expect(gaps).toEqual([]);
  });
});
