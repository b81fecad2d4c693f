// The market-data stream's books and their resync: each message is checked against its symbol's
// sequence; a gap throws that book's state away (nothing more of it is used) and asks for a new
// subscription, whose snapshots start every book afresh.

import { SymbolBook, type Applied } from "./book";
import type { StreamMarketDataResponse } from "./gen/exchange/v1/streams_pb";

export type Payload = StreamMarketDataResponse["payload"];

/** What a message was: for the caller to use (`use`), or already reflected, or dropped. */
export interface Outcome {
  symbol: string;
  kind: "book" | "trade" | "quote";
  use: boolean;
}

export class MarketFeed {
  readonly books = new Map<string, SymbolBook>();
  /** Gaps found, each answered by a resubscription. */
  resyncs = 0;
  private readonly onGap: (symbol: string) => void;

  constructor(onGap: (symbol: string) => void) {
    this.onGap = onGap;
  }

  book(symbol: string): SymbolBook {
    let book = this.books.get(symbol);
    if (!book) {
      book = new SymbolBook(symbol);
      this.books.set(symbol, book);
    }
    return book;
  }

  /** A new stream: every book waits for its snapshot again. */
  reset(): void {
    for (const book of this.books.values()) book.sequence = 0;
  }

  apply(payload: Payload): Outcome | undefined {
    switch (payload.case) {
      case "book": {
        const update = payload.value;
        const book = this.books.get(update.symbol);
        if (!book) return undefined;
        if (update.snapshot) {
          book.snapshot(update.bids, update.asks, update.sequence);
          return { symbol: update.symbol, kind: "book", use: true };
        }
        const applied = book.delta(update.bids, update.asks, update.sequence);
        return this.outcome(book, "book", applied);
      }
      case "trade":
      case "quote": {
        const book = this.books.get(payload.value.symbol);
        if (!book) return undefined;
        return this.outcome(book, payload.case, book.advance(payload.value.sequence));
      }
      default:
        return undefined;
    }
  }

  private outcome(book: SymbolBook, kind: Outcome["kind"], applied: Applied): Outcome {
    if (applied === "gap") {
      book.sequence = 0; // unsynced: the rest of this stream is not to be trusted for it
      this.resyncs++;
      this.onGap(book.symbol);
    }
    return { symbol: book.symbol, kind, use: applied === "applied" };
  }
}
