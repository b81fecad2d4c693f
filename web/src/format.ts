// Number formatting for the terminal: fixed decimals per tick size, so columns of prices line up
// and a price never changes width as it updates.

const MAX_DECIMALS = 8;

/** Decimals a tick size needs: 0.01 -> 2, 0.05 -> 2, 0.5 -> 1, 1 -> 0, 0.001 -> 3. */
export function decimalsFor(tickSize: number): number {
  if (!Number.isFinite(tickSize) || tickSize <= 0) return 2;
  for (let decimals = 0; decimals < MAX_DECIMALS; decimals++) {
    const scaled = tickSize * 10 ** decimals;
    if (Math.abs(scaled - Math.round(scaled)) < 1e-9 * Math.max(1, scaled)) return decimals;
  }
  return MAX_DECIMALS;
}

const formatters = new Map<string, Intl.NumberFormat>();

function formatter(decimals: number, signed: boolean): Intl.NumberFormat {
  const key = `${decimals}:${signed}`;
  let found = formatters.get(key);
  if (!found) {
    found = new Intl.NumberFormat("en-US", {
      minimumFractionDigits: decimals,
      maximumFractionDigits: decimals,
      signDisplay: signed ? "exceptZero" : "auto",
    });
    formatters.set(key, found);
  }
  return found;
}

/** A price with the symbol's decimals and thousands separators: 1,234.50. */
export function formatPrice(price: number, decimals: number): string {
  return formatter(decimals, false).format(price);
}

/** Cash, equity: two decimals. */
export function formatMoney(amount: number): string {
  return formatter(2, false).format(amount);
}

/** P&L and changes: an explicit sign except for zero (+12.50, -3.00, 0.00). */
export function formatSigned(amount: number, decimals = 2): string {
  return formatter(decimals, true).format(amount);
}

/** Quantities are whole numbers: 1,000. */
export function formatQuantity(quantity: number | bigint): string {
  return formatter(0, false).format(quantity);
}

/** The change from a reference price as a percentage; "" without a reference. */
export function formatChangePercent(last: number, reference: number): string {
  if (!(reference > 0) || !(last > 0)) return "";
  return `${formatSigned(((last - reference) / reference) * 100, 2)}%`;
}

/** -1, 0 or 1: the direction of a change, for up/down colouring. */
export function direction(value: number): -1 | 0 | 1 {
  return value > 0 ? 1 : value < 0 ? -1 : 0;
}

/** A countdown: 1:02:03 above an hour, else 2:03; never negative. */
export function formatCountdown(milliseconds: number): string {
  const total = Math.max(0, Math.floor(milliseconds / 1000));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = total % 60;
  const pad = (value: number) => String(value).padStart(2, "0");
  return hours > 0 ? `${hours}:${pad(minutes)}:${pad(seconds)}` : `${minutes}:${pad(seconds)}`;
}

/** A time of day in UTC, as the exchange's timestamps are: 14:03:07. */
export function formatTime(date: Date): string {
  return date.toISOString().slice(11, 19);
}
