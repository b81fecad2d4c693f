import { describe, expect, it } from "vitest";
import { aggregate, myQuantities, SymbolBook } from "./book";

const level = (price: number, quantity: number, orders = 1) => ({ price, quantity, orders });

describe("SymbolBook", () => {
  it("ignores everything until its first snapshot", () => {
    const book = new SymbolBook("ACME");
    expect(book.delta([level(100, 5)], [], 1)).toBe("stale");
    expect(book.levels("bid")).toEqual([]);
    expect(book.synced).toBe(false);
  });

  it("keeps levels best first and drops empty ones from a snapshot", () => {
    const book = new SymbolBook("ACME");
    book.snapshot([level(99.5, 3), level(100, 5), level(98, 0)], [level(101.5, 2), level(101, 4)], 7);
    expect(book.levels("bid").map((l) => l.price)).toEqual([100, 99.5]);
    expect(book.levels("ask").map((l) => l.price)).toEqual([101, 101.5]);
    expect(book.best("bid")).toEqual(level(100, 5));
    expect(book.levels("ask", 1)).toEqual([level(101, 4)]);
    expect(book.sequence).toBe(7);
  });

  it("applies deltas in sequence: new totals, quantity 0 removes the level", () => {
    const book = new SymbolBook("ACME");
    book.snapshot([level(100, 5)], [level(101, 4)], 7);
    expect(book.delta([level(100, 2, 1), level(99, 6, 2)], [level(101, 0)], 8)).toBe("applied");
    expect(book.levels("bid")).toEqual([level(100, 2), level(99, 6, 2)]);
    expect(book.levels("ask")).toEqual([]);
    expect(book.sequence).toBe(8);
  });

  it("drops what the snapshot already reflects", () => {
    const book = new SymbolBook("ACME");
    book.snapshot([level(100, 5)], [], 7);
    expect(book.delta([level(100, 1)], [], 7)).toBe("stale");
    expect(book.delta([level(100, 1)], [], 3)).toBe("stale");
    expect(book.levels("bid")).toEqual([level(100, 5)]);
  });

  it("reports a gap without applying it, and a new snapshot resynchronises", () => {
    const book = new SymbolBook("ACME");
    book.snapshot([level(100, 5)], [], 7);
    expect(book.delta([level(100, 1)], [], 9)).toBe("gap");
    expect(book.levels("bid")).toEqual([level(100, 5)]);
    expect(book.sequence).toBe(7);
    book.snapshot([level(100, 1), level(99, 2)], [], 12);
    expect(book.delta([], [level(102, 3)], 13)).toBe("applied");
    expect(book.levels("bid")).toEqual([level(100, 1), level(99, 2)]);
    expect(book.levels("ask")).toEqual([level(102, 3)]);
  });

  it("counts trades and quotes in the same sequence as book deltas", () => {
    const book = new SymbolBook("ACME");
    book.snapshot([], [], 1);
    expect(book.advance(2)).toBe("applied"); // a trade
    expect(book.delta([level(100, 1)], [], 3)).toBe("applied");
    expect(book.advance(4)).toBe("applied"); // a quote
    expect(book.advance(6)).toBe("gap");
  });

  it("does not share level objects with its input", () => {
    const book = new SymbolBook("ACME");
    const input = [level(100, 5)];
    book.snapshot(input, [], 1);
    input[0].quantity = 99;
    expect(book.best("bid")?.quantity).toBe(5);
  });
});

describe("aggregate", () => {
  const bids = [level(100.05, 1), level(100.0, 2), level(99.99, 3), level(99.95, 4, 2)];
  const asks = [level(100.06, 1), level(100.1, 2), level(100.11, 3)];

  it("leaves levels alone at one tick", () => {
    expect(aggregate(bids, "bid", 0.01, 1)).toEqual(bids);
  });

  it("rounds bids down and asks up to their bucket, summing quantities and orders", () => {
    expect(aggregate(bids, "bid", 0.01, 5)).toEqual([
      level(100.05, 1),
      level(100.0, 2),
      level(99.95, 7, 3),
    ]);
    expect(aggregate(asks, "ask", 0.01, 5)).toEqual([level(100.1, 3, 2), level(100.15, 3)]);
  });

  it("keeps prices on the bucket grid despite float noise", () => {
    const noisy = [level(0.1 + 0.2, 1)]; // 0.30000000000000004
    expect(aggregate(noisy, "bid", 0.1, 1)[0].price).toBeCloseTo(0.3);
    expect(aggregate(noisy, "ask", 0.05, 2)).toEqual([level(0.3, 1)]);
  });
});

describe("myQuantities", () => {
  it("sums my remaining quantity per level and side", () => {
    const orders = [
      { price: 100, remaining: 5, side: "bid" as const },
      { price: 100, remaining: 2, side: "bid" as const },
      { price: 99.97, remaining: 1, side: "bid" as const },
      { price: 101, remaining: 4, side: "ask" as const },
      { price: 98, remaining: 0, side: "bid" as const },
    ];
    expect(myQuantities(orders, "bid", 0.01, 1)).toEqual(
      new Map([
        [100, 7],
        [99.97, 1],
      ]),
    );
    expect(myQuantities(orders, "bid", 0.01, 5)).toEqual(
      new Map([
        [100, 7],
        [99.95, 1],
      ]),
    );
    expect(myQuantities(orders, "ask", 0.01, 1)).toEqual(new Map([[101, 4]]));
  });
});
