// The participant's terminal: sign in with an API key, then live market data, the caller's order
// updates and exchange events on gRPC-Web server streams; orders and queries as unary calls.
// Plain DOM: a handful of tables updated in place needs no framework.

import "./style.css";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  CandlestickSeries,
  ColorType,
  createChart,
  HistogramSeries,
  type IChartApi,
  type ISeriesApi,
  type UTCTimestamp,
} from "lightweight-charts";
import { connect, errorText, isUnauthenticated, type Api } from "./api";
import { aggregate, myQuantities, type Level, type SymbolBook } from "./book";
import { BarSeries, type Bar } from "./candles";
import { MarketFeed } from "./feed";
import {
  decimalsFor,
  direction,
  formatChangePercent,
  formatCountdown,
  formatMoney,
  formatPrice,
  formatQuantity,
  formatSigned,
  formatTime,
} from "./format";
import type { GetAccountResponse, LeaderboardEntry } from "./gen/exchange/v1/accounts_pb";
import { EventState, type GetScheduleResponse } from "./gen/exchange/v1/competition_pb";
import type { StreamMarketDataResponse } from "./gen/exchange/v1/streams_pb";
import { ExchangeEventKind } from "./gen/exchange/v1/streams_pb";
import {
  OrderStatus,
  OrderType,
  Side,
  SymbolStatus,
  TimeInForce,
  type Order,
  type SymbolInfo,
  type Trade,
} from "./gen/exchange/v1/types_pb";
import { LiveStream } from "./live";
import {
  checkTicket,
  fieldOf,
  LIMIT_TIFS,
  MARKET_TIFS,
  type FieldErrors,
  type TicketSide,
  type TicketTif,
  type TicketType,
} from "./ticket";

const KEY_STORAGE = "mockex.apiKey";
const SYMBOL_STORAGE = "mockex.symbol";
const LADDER_LEVELS = 10;
const TAPE_LENGTH = 60;
const EVENTS_LENGTH = 100;
const CANDLE_SECONDS = 60;
const ACCOUNT_REFRESH_MS = 5_000;
const LEADERBOARD_REFRESH_MS = 15_000;

// ---- DOM helpers ----

function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`#${id} is missing from index.html`);
  return found as T;
}

function cell(text: string, className = ""): HTMLTableCellElement {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function row(cells: HTMLTableCellElement[], attributes: Record<string, string> = {}) {
  const tr = document.createElement("tr");
  tr.append(...cells);
  for (const [name, value] of Object.entries(attributes)) tr.setAttribute(name, value);
  return tr;
}

function emptyRow(columns: number, text: string): HTMLTableRowElement {
  const td = cell(text);
  td.colSpan = columns;
  return row([td], { class: "empty" });
}

function tone(value: number): string {
  const sign = direction(value);
  return sign > 0 ? "up" : sign < 0 ? "down" : "";
}

function seconds(timestamp: Timestamp | undefined): number {
  return timestamp ? timestampDate(timestamp).getTime() / 1000 : Date.now() / 1000;
}

function sideName(side: Side): string {
  return side === Side.BUY ? "BUY" : side === Side.SELL ? "SELL" : "";
}

/** Calls `work` at most once per `ms`, the last request winning (account, leaderboard). */
function debounce(work: () => void, ms: number): () => void {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(work, ms);
  };
}

// ---- State ----

interface SymbolState {
  info: SymbolInfo;
  decimals: number;
  book: SymbolBook;
  last: number;
  open: number;
  tape: Trade[];
}

class Terminal {
  private readonly api: Api;
  private readonly symbols = new Map<string, SymbolState>();
  private readonly orders = new Map<string, Order>();
  private selected = "";
  private userId = "";
  private schedule: GetScheduleResponse | undefined;
  private side: TicketSide = "BUY";
  private readonly feed = new MarketFeed((symbol) => this.resync(symbol));
  private readonly streams: LiveStream<unknown>[] = [];
  private market: LiveStream<StreamMarketDataResponse> | undefined;
  private readonly timers: ReturnType<typeof setInterval>[] = [];
  private renderQueued = false;
  private chart: IChartApi | undefined;
  private candles: ISeriesApi<"Candlestick"> | undefined;
  private volume: ISeriesApi<"Histogram"> | undefined;
  private bars = new BarSeries(CANDLE_SECONDS);
  private readonly refreshAccount = debounce(() => void this.loadAccount(), 200);
  private readonly refreshLeaderboard = debounce(() => void this.loadLeaderboard(), 500);
  private readonly refreshSchedule = debounce(() => void this.loadSchedule(), 200);

  constructor(api: Api) {
    this.api = api;
  }

  async start(): Promise<void> {
    const account = await this.api.accounts.getAccount({});
    this.userId = account.userId;
    byId("user-id").textContent = account.userId;
    this.showAccount(account);
    await this.loadSymbols();
    this.setupChart();
    this.setupTicket();
    this.setupOrders();
    await Promise.all([
      this.loadOrders(),
      this.loadLeaderboard(),
      this.loadSchedule(),
      this.loadNews(),
    ]);
    this.select(sessionStorage.getItem(SYMBOL_STORAGE) ?? "");
    this.startStreams();
    this.timers.push(setInterval(() => this.tickCountdown(), 1000));
    this.timers.push(setInterval(() => void this.loadAccount(), ACCOUNT_REFRESH_MS));
    this.timers.push(setInterval(() => void this.loadLeaderboard(), LEADERBOARD_REFRESH_MS));
  }

  stop(): void {
    for (const stream of this.streams) stream.stop();
    for (const timer of this.timers) clearInterval(timer);
    // Dropped, not only removed: a call still under way must find no chart to draw on.
    this.chart?.remove();
    this.chart = this.candles = this.volume = undefined;
  }

  // ---- Loading ----

  private async loadSymbols(): Promise<void> {
    const { symbols } = await this.api.book.listSymbols({});
    for (const info of symbols) {
      const known = this.symbols.get(info.symbol);
      if (known) {
        known.info = info;
        continue;
      }
      this.symbols.set(info.symbol, {
        info,
        decimals: decimalsFor(info.tickSize),
        book: this.feed.book(info.symbol),
        last: 0,
        open: 0,
        tape: [],
      });
    }
    await Promise.all(
      [...this.symbols.values()].map(async (state) => {
        const { quote } = await this.api.book.getQuote({ symbol: state.info.symbol });
        if (quote && quote.ltp > 0) state.last = quote.ltp;
        if (quote && quote.open > 0) state.open = quote.open;
      }),
    );
    this.renderSymbols();
  }

  private async loadAccount(): Promise<void> {
    try {
      this.showAccount(await this.api.accounts.getAccount({}));
    } catch {
      // The next refresh tries again; the banner shows when the exchange is away.
    }
  }

  private async loadOrders(): Promise<void> {
    const { orders } = await this.api.orders.listOrders({ status: "open" });
    this.orders.clear();
    for (const order of orders) this.orders.set(order.orderId, order);
    this.renderOrders();
  }

  private async loadLeaderboard(): Promise<void> {
    try {
      const { entries } = await this.api.accounts.getLeaderboard({});
      this.showLeaderboard(entries);
    } catch {
      // Kept as it was until the next refresh.
    }
  }

  private async loadSchedule(): Promise<void> {
    try {
      this.schedule = await this.api.competition.getSchedule({});
      byId("market-state").textContent = this.schedule.marketOpen ? "OPEN" : "CLOSED";
      const rounds = this.schedule.rounds ? `/${this.schedule.rounds}` : "";
      byId("round").textContent = this.schedule.round ? `${this.schedule.round}${rounds}` : "–";
      this.tickCountdown();
    } catch {
      // Kept as it was.
    }
  }

  private async loadNews(): Promise<void> {
    const { news } = await this.api.competition.listNews({ limit: 20 });
    for (const item of [...news].reverse()) {
      this.addEvent("NEWS", item.headline, item.timestamp, item.symbols.join(", "));
    }
  }

  private async loadSelected(symbol: string): Promise<void> {
    const state = this.symbols.get(symbol);
    if (!state) return;
    const [trades, candles] = await Promise.all([
      this.api.trades.listTrades({ symbol, limit: TAPE_LENGTH }),
      this.api.trades.getCandles({ symbol, interval: "1m", limit: 300 }),
    ]);
    if (symbol !== this.selected) return;
    const known = new Set(state.tape.map((trade) => trade.tradeId));
    const merged = [...state.tape, ...trades.trades.filter((t) => !known.has(t.tradeId))];
    merged.sort((a, b) => seconds(b.timestamp) - seconds(a.timestamp) || b.sequence - a.sequence);
    state.tape = merged.slice(0, TAPE_LENGTH);
    this.bars = new BarSeries(CANDLE_SECONDS);
    this.bars.reset(
      candles.candles.map((candle) => ({
        time: Math.floor(seconds(candle.start)),
        open: candle.open,
        high: candle.high,
        low: candle.low,
        close: candle.close,
        volume: candle.volume,
      })),
    );
    this.candles?.setData(this.bars.bars.map(candleData));
    this.volume?.setData(this.bars.bars.map(volumeData));
    this.candles?.applyOptions({
      priceFormat: { type: "price", precision: state.decimals, minMove: state.info.tickSize },
    });
    this.chart?.timeScale().scrollToRealTime();
    this.renderTape();
  }

  // ---- Streams ----

  private startStreams(): void {
    const market = new LiveStream<StreamMarketDataResponse>({
      name: "market data",
      open: (signal, connected) =>
        this.api.streams.streamMarketData(
          { symbols: [...this.symbols.keys()] },
          { signal, onHeader: connected },
        ),
      onOpen: () => this.feed.reset(),
      onMessage: (message) => this.onMarket(message),
      onState: () => this.onStreamState(),
    });
    const orders = new LiveStream({
      name: "order updates",
      open: (signal, connected) =>
        this.api.streams.streamOrderUpdates({}, { signal, onHeader: connected }),
      onMessage: (message) => {
        if (message.payload.case === "order") this.onOrder(message.payload.value);
        if (message.payload.case === "fill") this.refreshAccount();
        if (message.payload.case === "conversion") this.refreshAccount();
      },
      onState: (state, error) => {
        this.onStreamState();
        if (state === "down" && isUnauthenticated(error)) signOut("The API key is no longer valid.");
      },
      // Whatever changed while the stream was away: the open orders from a snapshot.
      onOpen: () => void this.loadOrders().catch(() => undefined),
    });
    const events = new LiveStream({
      name: "exchange events",
      open: (signal, connected) =>
        this.api.streams.streamExchangeEvents({}, { signal, onHeader: connected }),
      onMessage: (message) => {
        if (message.event) this.onExchangeEvent(message.event);
      },
      onState: () => this.onStreamState(),
    });
    this.market = market;
    this.streams.push(market as LiveStream<unknown>, orders as LiveStream<unknown>);
    this.streams.push(events as LiveStream<unknown>);
    for (const stream of this.streams) void stream.run();
  }

  /** The feed's state in the header; the banner while any stream is down. */
  private onStreamState(): void {
    const market = this.market;
    byId("feed-status").textContent = market?.state ?? "–";
    const down = this.streams.some(
      (stream) => stream.state === "down" || (stream === market && stream.failures > 0),
    );
    byId("banner").hidden = !down;
    document.body.classList.toggle("offline", down);
  }

  private resync(symbol: string): void {
    // Something was missed: a new subscription brings fresh snapshots of every symbol.
    byId("feed-status").dataset.resyncs = String(this.feed.resyncs);
    console.info(`market data: sequence gap in ${symbol}, resynchronising from a snapshot`);
    this.market?.restart();
  }

  private onMarket(message: StreamMarketDataResponse): void {
    const outcome = this.feed.apply(message.payload);
    const state = outcome?.use ? this.symbols.get(outcome.symbol) : undefined;
    if (!state) return;
    const payload = message.payload;
    if (payload.case === "book") {
      if (payload.value.symbol === this.selected) this.queueRender();
    } else if (payload.case === "trade") {
      const trade = payload.value;
      state.last = trade.price;
      state.tape.unshift(trade);
      if (state.tape.length > TAPE_LENGTH) state.tape.length = TAPE_LENGTH;
      if (trade.symbol === this.selected) {
        const bar = this.bars.trade(trade.price, trade.quantity, seconds(trade.timestamp));
        if (bar) {
          this.candles?.update(candleData(bar));
          this.volume?.update(volumeData(bar));
        }
        this.renderTape();
      }
      this.renderSymbolRow(state);
    } else if (payload.case === "quote") {
      const quote = payload.value;
      if (quote.ltp > 0) state.last = quote.ltp;
      if (quote.open > 0) state.open = quote.open;
      this.renderSymbolRow(state);
    }
  }

  private onOrder(order: Order): void {
    const open = order.status === OrderStatus.NEW || order.status === OrderStatus.PARTIALLY_FILLED;
    if (open) this.orders.set(order.orderId, order);
    else this.orders.delete(order.orderId);
    this.renderOrders();
    this.queueRender();
    this.refreshAccount();
  }

  private onExchangeEvent(event: {
    kind: ExchangeEventKind;
    symbol: string;
    message: string;
    timestamp?: Timestamp;
  }): void {
    const kind = ExchangeEventKind[event.kind] ?? "EVENT";
    switch (event.kind) {
      case ExchangeEventKind.LEADERBOARD_CHANGED:
        this.refreshLeaderboard();
        return; // frequent: not listed
      case ExchangeEventKind.ACCOUNT_CREATED:
        return;
      case ExchangeEventKind.TRADING_HALTED:
      case ExchangeEventKind.TRADING_RESUMED: {
        const state = this.symbols.get(event.symbol);
        if (state) {
          state.info.status =
            event.kind === ExchangeEventKind.TRADING_HALTED ? SymbolStatus.HALTED : SymbolStatus.OPEN;
          this.renderSymbolRow(state);
          if (event.symbol === this.selected) this.showSymbolStatus(state);
        }
        break;
      }
      case ExchangeEventKind.SYMBOL_ADDED:
        void this.loadSymbols().then(() => this.market?.restart());
        break;
      case ExchangeEventKind.MARKET_OPENED:
      case ExchangeEventKind.MARKET_CLOSED_FOR_DAY:
        void this.loadSymbols();
        this.refreshSchedule();
        break;
      default:
        this.refreshSchedule();
    }
    this.addEvent(kind, event.message, event.timestamp, event.symbol);
  }

  // ---- Rendering ----

  private queueRender(): void {
    if (this.renderQueued) return;
    this.renderQueued = true;
    requestAnimationFrame(() => {
      this.renderQueued = false;
      this.renderLadder();
    });
  }

  private renderSymbols(): void {
    const body = byId("symbols").querySelector("tbody")!;
    body.replaceChildren();
    for (const state of this.symbols.values()) {
      const tr = row([cell(state.info.symbol), cell("", "num last"), cell("", "num change")], {
        "data-symbol": state.info.symbol,
      });
      tr.addEventListener("click", () => this.select(state.info.symbol));
      body.append(tr);
      this.renderSymbolRow(state);
    }
  }

  private renderSymbolRow(state: SymbolState): void {
    const tr = byId("symbols").querySelector<HTMLElement>(`tr[data-symbol="${state.info.symbol}"]`);
    if (!tr) return;
    const reference = state.info.referencePrice > 0 ? state.info.referencePrice : state.open;
    const last = tr.querySelector(".last")!;
    const change = tr.querySelector(".change")!;
    last.textContent = state.last > 0 ? formatPrice(state.last, state.decimals) : "–";
    change.textContent =
      state.info.status === SymbolStatus.HALTED
        ? "HALTED"
        : formatChangePercent(state.last, reference);
    change.className = `num change ${tone(state.last - reference)}`;
    tr.classList.toggle("selected", state.info.symbol === this.selected);
  }

  private select(symbol: string): void {
    if (!this.symbols.has(symbol)) symbol = this.symbols.keys().next().value ?? "";
    if (!symbol) return;
    this.selected = symbol;
    sessionStorage.setItem(SYMBOL_STORAGE, symbol);
    const state = this.symbols.get(symbol)!;
    byId("chart-symbol").textContent = symbol;
    this.showSymbolStatus(state);
    for (const other of this.symbols.values()) this.renderSymbolRow(other);
    byId("ticket-rules").textContent =
      `${symbol}: tick ${formatPrice(state.info.tickSize, state.decimals)}, ` +
      `lot ${formatQuantity(state.info.lotSize || 1)}`;
    this.clearErrors();
    this.renderLadder();
    this.renderTape();
    void this.loadSelected(symbol).catch((error) => console.warn(errorText(error)));
  }

  private showSymbolStatus(state: SymbolState): void {
    const status = SymbolStatus[state.info.status] ?? "";
    const tag = byId("symbol-status");
    tag.textContent = status;
    tag.className = `tag ${status}`;
  }

  private renderLadder(): void {
    const body = byId("ladder").querySelector("tbody")!;
    const state = this.symbols.get(this.selected);
    if (!state) return;
    const ticks = Number(byId<HTMLSelectElement>("aggregate").value) || 1;
    const tick = state.info.tickSize;
    const asks = aggregate(state.book.levels("ask"), "ask", tick, ticks).slice(0, LADDER_LEVELS);
    const bids = aggregate(state.book.levels("bid"), "bid", tick, ticks).slice(0, LADDER_LEVELS);
    const mine = [...this.orders.values()]
      .filter((order) => order.symbol === state.info.symbol)
      .map((order) => ({
        price: order.price,
        remaining: order.remainingQuantity,
        side: order.side === Side.BUY ? ("bid" as const) : ("ask" as const),
      }));
    const myBids = myQuantities(mine, "bid", tick, ticks);
    const myAsks = myQuantities(mine, "ask", tick, ticks);
    const rows: HTMLTableRowElement[] = [];
    const price = (level: Level) => formatPrice(level.price, state.decimals);
    const quantity = (value: number | undefined) => (value ? formatQuantity(value) : "");
    for (let i = LADDER_LEVELS - 1; i >= 0; i--) {
      const level = asks[i];
      rows.push(
        level
          ? row(
              [
                cell("", "num mine"),
                cell("", "num"),
                cell(price(level), "num price ask"),
                cell(formatQuantity(level.quantity), "num quantity ask"),
                cell(quantity(myAsks.get(level.price)), "num mine"),
              ],
              { class: "level", "data-side": "ask", "data-price": String(level.price) },
            )
          : row([cell(""), cell(""), cell(i === 0 ? "no asks" : "", "num muted"), cell(""), cell("")], {
              class: "filler",
            }),
      );
    }
    for (let i = 0; i < LADDER_LEVELS; i++) {
      const level = bids[i];
      const best = i === 0 ? " best-bid" : "";
      rows.push(
        level
          ? row(
              [
                cell(quantity(myBids.get(level.price)), "num mine"),
                cell(formatQuantity(level.quantity), "num quantity bid"),
                cell(price(level), "num price bid"),
                cell("", "num"),
                cell("", "num mine"),
              ],
              { class: `level${best}`, "data-side": "bid", "data-price": String(level.price) },
            )
          : row([cell(""), cell(""), cell(i === 0 ? "no bids" : "", "num muted"), cell(""), cell("")], {
              class: `filler${best}`,
            }),
      );
    }
    for (const tr of rows) {
      const levelPrice = tr.dataset.price;
      if (levelPrice) tr.addEventListener("click", () => this.fillPrice(Number(levelPrice)));
    }
    body.replaceChildren(...rows);
  }

  private renderTape(): void {
    const body = byId("tape").querySelector("tbody")!;
    const state = this.symbols.get(this.selected);
    if (!state || state.tape.length === 0) {
      body.replaceChildren(emptyRow(3, "no trades yet"));
      return;
    }
    body.replaceChildren(
      ...state.tape.map((trade) =>
        row(
          [
            cell(formatTime(new Date(seconds(trade.timestamp) * 1000)), "time"),
            cell(
              formatPrice(trade.price, state.decimals),
              `num price ${trade.aggressorSide === Side.BUY ? "up" : "down"}`,
            ),
            cell(formatQuantity(trade.quantity), "num quantity"),
          ],
          { "data-trade-id": trade.tradeId },
        ),
      ),
    );
  }

  private renderOrders(): void {
    const body = byId("open-orders").querySelector("tbody")!;
    const orders = [...this.orders.values()].sort(
      (a, b) => seconds(b.createdAt) - seconds(a.createdAt),
    );
    if (orders.length === 0) {
      body.replaceChildren(emptyRow(8, "no open orders"));
      return;
    }
    body.replaceChildren(
      ...orders.map((order) => {
        const decimals = this.symbols.get(order.symbol)?.decimals ?? 2;
        const cancel = document.createElement("button");
        cancel.type = "button";
        cancel.className = "cancel";
        cancel.textContent = "Cancel";
        cancel.addEventListener("click", () => void this.cancel(order.orderId));
        const actions = cell("");
        actions.append(cancel);
        return row(
          [
            cell(order.symbol, "symbol"),
            cell(sideName(order.side), `side ${order.side === Side.BUY ? "up" : "down"}`),
            cell(TimeInForce[order.timeInForce] ?? "", "tif"),
            cell(formatPrice(order.price, decimals), "num price"),
            cell(formatQuantity(order.quantity), "num quantity"),
            cell(formatQuantity(order.filledQuantity), "num filled"),
            cell(OrderStatus[order.status] ?? "", "status"),
            actions,
          ],
          { "data-order-id": order.orderId, "data-symbol": order.symbol },
        );
      }),
    );
  }

  private showAccount(account: GetAccountResponse): void {
    byId("cash").textContent = formatMoney(account.cash);
    byId("reserved").textContent = formatMoney(account.reservedCash);
    byId("available").textContent = formatMoney(account.availableCash);
    byId("equity").textContent = formatMoney(account.equity);
    const pnl = byId("pnl");
    pnl.textContent = formatSigned(account.pnl);
    pnl.className = `num ${tone(account.pnl)}`;
    const body = byId("positions").querySelector("tbody")!;
    const positions = account.positions.filter((position) => position.quantity !== 0);
    if (positions.length === 0) {
      body.replaceChildren(emptyRow(4, "no positions"));
      return;
    }
    body.replaceChildren(
      ...positions.map((position) => {
        const decimals = this.symbols.get(position.symbol)?.decimals ?? 2;
        return row(
          [
            cell(position.symbol),
            cell(formatQuantity(position.quantity), "num quantity"),
            cell(formatPrice(position.avgPrice, decimals), "num avg"),
            cell(formatSigned(position.unrealizedPnl), `num unrealized ${tone(position.unrealizedPnl)}`),
          ],
          { "data-symbol": position.symbol },
        );
      }),
    );
  }

  private showLeaderboard(entries: LeaderboardEntry[]): void {
    const body = byId("leaderboard").querySelector("tbody")!;
    if (entries.length === 0) {
      body.replaceChildren(emptyRow(3, "nobody ranked yet"));
      return;
    }
    body.replaceChildren(
      ...entries.slice(0, 20).map((entry) =>
        row(
          [
            cell(String(entry.rank), "num rank"),
            cell(entry.userId, "user"),
            cell(formatSigned(entry.pnl), `num pnl ${tone(entry.pnl)}`),
          ],
          { "data-user-id": entry.userId, class: entry.userId === this.userId ? "me" : "" },
        ),
      ),
    );
  }

  private addEvent(kind: string, message: string, timestamp?: Timestamp, symbol = ""): void {
    const list = byId("events");
    const item = document.createElement("li");
    item.className = kind;
    const label = document.createElement("span");
    label.className = "kind";
    label.textContent = `${formatTime(new Date(seconds(timestamp) * 1000))} ${kind}${symbol ? ` ${symbol}` : ""}`;
    const text = document.createElement("span");
    text.className = "message";
    text.textContent = message;
    item.append(label, text);
    list.prepend(item);
    while (list.children.length > EVENTS_LENGTH) list.lastElementChild?.remove();
  }

  private tickCountdown(): void {
    const schedule = this.schedule;
    const countdown = byId("countdown");
    if (!schedule || !schedule.roundEndsAt || schedule.state !== EventState.RUNNING) {
      countdown.textContent = schedule ? (EventState[schedule.state] ?? "–") : "–";
      return;
    }
    countdown.textContent = formatCountdown(timestampDate(schedule.roundEndsAt).getTime() - Date.now());
  }

  // ---- Chart ----

  private setupChart(): void {
    const container = byId("chart");
    this.chart = createChart(container, {
      autoSize: true,
      // Its logo brings an inline <style>, which the page's CSP refuses; the chart's header
      // carries the attribution link instead (lightweight-charts' NOTICE).
      layout: {
        background: { type: ColorType.Solid, color: "#ffffff" },
        textColor: "#1d232b",
        attributionLogo: false,
      },
      grid: { vertLines: { color: "#f0f2f4" }, horzLines: { color: "#f0f2f4" } },
      timeScale: { timeVisible: true, secondsVisible: false },
    });
    this.candles = this.chart.addSeries(CandlestickSeries, {
      upColor: "#12805c",
      downColor: "#c0392b",
      borderVisible: false,
      wickUpColor: "#12805c",
      wickDownColor: "#c0392b",
    });
    this.volume = this.chart.addSeries(HistogramSeries, {
      priceScaleId: "",
      priceFormat: { type: "volume" },
      color: "#b8c2cc",
    });
    this.volume.priceScale().applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
    this.candles.priceScale().applyOptions({ scaleMargins: { top: 0.05, bottom: 0.25 } });
  }

  // ---- Ticket ----

  private setupTicket(): void {
    const form = byId<HTMLFormElement>("ticket");
    const type = byId<HTMLSelectElement>("order-type");
    byId("side-buy").addEventListener("click", () => this.setSide("BUY"));
    byId("side-sell").addEventListener("click", () => this.setSide("SELL"));
    type.addEventListener("change", () => this.setType(type.value as TicketType));
    this.setType("LIMIT");
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      void this.send();
    });
    for (const id of ["price", "quantity", "tif"]) {
      byId(id).addEventListener("input", () => this.showErrors({}, id));
    }
    byId<HTMLSelectElement>("aggregate").addEventListener("change", () => this.renderLadder());
    document.addEventListener("keydown", (event) => this.onKey(event));
  }

  private onKey(event: KeyboardEvent): void {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target as HTMLElement | null;
    if (target?.id === "api-key") return;
    const key = event.key.toLowerCase();
    if (key === "b" || key === "s") {
      // Letters mean nothing in the ticket's number fields: B and S choose the side anywhere.
      event.preventDefault();
      this.setSide(key === "b" ? "BUY" : "SELL");
    } else if (event.key === "Escape") {
      event.preventDefault();
      this.clearTicket();
    } else if (event.key === "Enter" && !target?.closest("#ticket") && target?.tagName !== "BUTTON") {
      event.preventDefault();
      void this.send();
    }
  }

  private setSide(side: TicketSide): void {
    this.side = side;
    byId("side-buy").setAttribute("aria-pressed", String(side === "BUY"));
    byId("side-sell").setAttribute("aria-pressed", String(side === "SELL"));
    const send = byId("send");
    send.textContent = side === "BUY" ? "Buy" : "Sell";
    send.className = side === "BUY" ? "buy" : "sell";
  }

  private setType(type: TicketType): void {
    byId<HTMLSelectElement>("order-type").value = type;
    const tif = byId<HTMLSelectElement>("tif");
    const allowed = type === "LIMIT" ? LIMIT_TIFS : MARKET_TIFS;
    const current = tif.value as TicketTif;
    tif.replaceChildren(
      ...allowed.map((value) => {
        const option = document.createElement("option");
        option.value = value;
        option.textContent = value;
        return option;
      }),
    );
    tif.value = allowed.includes(current) ? current : allowed[0];
    const price = byId<HTMLInputElement>("price");
    price.disabled = type === "MARKET";
    if (type === "MARKET") price.value = "";
    this.showErrors({}, "price");
  }

  private fillPrice(price: number): void {
    const state = this.symbols.get(this.selected);
    if (!state) return;
    this.setType("LIMIT");
    byId<HTMLInputElement>("price").value = price.toFixed(state.decimals);
  }

  private clearTicket(): void {
    byId<HTMLInputElement>("price").value = "";
    byId<HTMLInputElement>("quantity").value = "";
    this.clearErrors();
    const result = byId("ticket-result");
    result.textContent = "";
    result.dataset.status = "";
  }

  private clearErrors(): void {
    this.showErrors({});
  }

  /** Shows `errors` at their fields; with `only`, touches that field alone. */
  private showErrors(errors: FieldErrors, only?: string): void {
    const fields: [keyof FieldErrors, string][] = [
      ["price", "price"],
      ["quantity", "quantity"],
      ["timeInForce", "tif"],
    ];
    for (const [name, id] of fields) {
      if (only && only !== id) continue;
      const message = errors[name] ?? "";
      byId(`${id}-error`).textContent = message;
      byId(id).setAttribute("aria-invalid", String(message !== ""));
    }
  }

  private async send(): Promise<void> {
    const state = this.symbols.get(this.selected);
    if (!state) return;
    const checked = checkTicket(
      {
        side: this.side,
        type: byId<HTMLSelectElement>("order-type").value as TicketType,
        timeInForce: byId<HTMLSelectElement>("tif").value as TicketTif,
        price: byId<HTMLInputElement>("price").value,
        quantity: byId<HTMLInputElement>("quantity").value,
      },
      state.info,
    );
    const result = byId("ticket-result");
    if (!checked.ok) {
      this.showErrors(checked.errors);
      result.textContent = "";
      result.dataset.status = "INVALID";
      return;
    }
    this.clearErrors();
    const order = checked.order;
    result.textContent = "sending…";
    result.dataset.status = "SENDING";
    try {
      const answer = await this.api.orders.placeOrder({
        symbol: order.symbol,
        side: Side[order.side],
        type: OrderType[order.type],
        timeInForce: TimeInForce[order.timeInForce],
        price: order.price,
        quantity: BigInt(order.quantity),
      });
      this.showResult(answer.order);
      if (answer.order) this.onOrder(answer.order);
    } catch (error) {
      const message = errorText(error);
      const field = fieldOf(message);
      if (field) this.showErrors({ [field]: message });
      result.textContent = message;
      result.dataset.status = "ERROR";
    }
  }

  private showResult(order: Order | undefined): void {
    const result = byId("ticket-result");
    if (!order) return;
    const status = OrderStatus[order.status] ?? "";
    const decimals = this.symbols.get(order.symbol)?.decimals ?? 2;
    const filled = order.filledQuantity
      ? `, filled ${formatQuantity(order.filledQuantity)} @ ${formatPrice(order.avgFillPrice, decimals)}`
      : "";
    const reason = order.rejectReason || order.statusReason;
    result.textContent = `${status} ${sideName(order.side)} ${formatQuantity(order.quantity)} ${order.symbol}${filled}${reason ? ` (${reason})` : ""}`;
    result.dataset.status = status;
    result.dataset.orderId = order.orderId;
  }

  private async cancel(orderId: string): Promise<void> {
    try {
      const { order } = await this.api.orders.cancelOrder({ orderId });
      this.showResult(order);
      if (order) this.onOrder(order);
    } catch (error) {
      const result = byId("ticket-result");
      result.textContent = errorText(error);
      result.dataset.status = "ERROR";
    }
  }

  private setupOrders(): void {
    byId("cancel-all").addEventListener("click", async () => {
      try {
        const { orders } = await this.api.orders.cancelAllOrders({ symbol: "" });
        for (const order of orders) this.onOrder(order);
        const result = byId("ticket-result");
        result.textContent = `cancelled ${orders.length} order${orders.length === 1 ? "" : "s"}`;
        result.dataset.status = "CANCELLED";
      } catch (error) {
        byId("ticket-result").textContent = errorText(error);
      }
    });
  }
}

function candleData(bar: Bar) {
  return {
    time: bar.time as UTCTimestamp,
    open: bar.open,
    high: bar.high,
    low: bar.low,
    close: bar.close,
  };
}

function volumeData(bar: Bar) {
  return {
    time: bar.time as UTCTimestamp,
    value: bar.volume,
    color: bar.close >= bar.open ? "rgba(18, 128, 92, 0.45)" : "rgba(192, 57, 43, 0.45)",
  };
}

// ---- Signing in ----

let terminal: Terminal | undefined;

function signOut(message = ""): void {
  terminal?.stop();
  terminal = undefined;
  sessionStorage.removeItem(KEY_STORAGE);
  // A fresh page drops every stream and timer of the old session.
  if (message) sessionStorage.setItem("mockex.signInMessage", message);
  location.reload();
}

async function signIn(key: string): Promise<void> {
  const error = byId("sign-in-error");
  error.textContent = "";
  const candidate = new Terminal(connect(key));
  try {
    await candidate.start();
  } catch (caught) {
    candidate.stop();
    sessionStorage.removeItem(KEY_STORAGE);
    byId("sign-in").hidden = false;
    byId("terminal").hidden = true;
    error.textContent = isUnauthenticated(caught)
      ? "Unknown API key."
      : `Could not reach the exchange: ${errorText(caught)}`;
    return;
  }
  terminal = candidate;
  sessionStorage.setItem(KEY_STORAGE, key);
  byId("sign-out").hidden = false;
}

function main(): void {
  byId("sign-out").addEventListener("click", () => signOut());
  byId("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = byId<HTMLInputElement>("api-key").value.trim();
    if (!key) return;
    byId("sign-in").hidden = true;
    byId("terminal").hidden = false;
    void signIn(key);
  });
  const message = sessionStorage.getItem("mockex.signInMessage");
  sessionStorage.removeItem("mockex.signInMessage");
  byId("sign-in-error").textContent = message ?? "";
  const saved = sessionStorage.getItem(KEY_STORAGE);
  if (saved) {
    byId("terminal").hidden = false;
    void signIn(saved);
  } else {
    byId("sign-in").hidden = false;
  }
}

main();
