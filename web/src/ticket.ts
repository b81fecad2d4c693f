// The order ticket's rules, checked before sending so that errors show at the field: quantity a
// positive whole multiple of the lot size (at most 1,000,000), a LIMIT price a whole number of
// ticks, MARKET orders IOC or FOK (SPEC.md section 2). The exchange checks again; its answer wins.

import { decimalsFor, formatPrice } from "./format";

export type TicketSide = "BUY" | "SELL";
export type TicketType = "LIMIT" | "MARKET";
export type TicketTif = "GFD" | "IOC" | "FOK" | "GTC";

export const MAX_QUANTITY = 1_000_000;
export const LIMIT_TIFS: TicketTif[] = ["GFD", "IOC", "FOK", "GTC"];
export const MARKET_TIFS: TicketTif[] = ["IOC", "FOK"];

export interface TicketInput {
  side: TicketSide;
  type: TicketType;
  timeInForce: TicketTif;
  price: string;
  quantity: string;
}

export interface SymbolRules {
  symbol: string;
  tickSize: number;
  lotSize: number;
}

export interface ValidOrder {
  symbol: string;
  side: TicketSide;
  type: TicketType;
  timeInForce: TicketTif;
  price: number;
  quantity: number;
}

export type FieldErrors = Partial<Record<"price" | "quantity" | "timeInForce", string>>;

export type Checked = { ok: true; order: ValidOrder } | { ok: false; errors: FieldErrors };

/** Whether `value` is a whole number of `step`s (within float noise). */
export function onGrid(value: number, step: number): boolean {
  const steps = value / step;
  return Math.abs(steps - Math.round(steps)) < 1e-7;
}

export function checkTicket(input: TicketInput, rules: SymbolRules): Checked {
  const errors: FieldErrors = {};
  const quantityText = input.quantity.trim().replaceAll(",", "");
  const quantity = Number(quantityText);
  const lot = Math.max(1, rules.lotSize);
  if (quantityText === "" || !Number.isInteger(quantity) || quantity <= 0) {
    errors.quantity = "quantity: a positive whole number";
  } else if (quantity > MAX_QUANTITY) {
    errors.quantity = `quantity: at most ${MAX_QUANTITY.toLocaleString("en-US")}`;
  } else if (quantity % lot !== 0) {
    const below = Math.max(lot, quantity - (quantity % lot));
    errors.quantity = `quantity: a multiple of the lot size ${lot} (e.g. ${below} or ${below + lot})`;
  }

  let price = 0;
  if (input.type === "LIMIT") {
    const priceText = input.price.trim().replaceAll(",", "");
    price = Number(priceText);
    const decimals = decimalsFor(rules.tickSize);
    if (priceText === "" || !Number.isFinite(price) || price <= 0) {
      errors.price = "price: a positive number (LIMIT orders need one)";
    } else if (!onGrid(price, rules.tickSize)) {
      const below = Math.floor(price / rules.tickSize) * rules.tickSize;
      const above = below + rules.tickSize;
      errors.price =
        `price: a whole number of ticks of ${formatPrice(rules.tickSize, decimals)} ` +
        `(e.g. ${below.toFixed(decimals)} or ${above.toFixed(decimals)})`;
    } else {
      price = Number(price.toFixed(decimals));
    }
    if (!LIMIT_TIFS.includes(input.timeInForce)) {
      errors.timeInForce = `timeInForce: one of ${LIMIT_TIFS.join(", ")}`;
    }
  } else if (!MARKET_TIFS.includes(input.timeInForce)) {
    errors.timeInForce = `timeInForce: MARKET orders take ${MARKET_TIFS.join(" or ")}`;
  }

  if (Object.keys(errors).length > 0) return { ok: false, errors };
  return {
    ok: true,
    order: {
      symbol: rules.symbol,
      side: input.side,
      type: input.type,
      timeInForce: input.timeInForce,
      price,
      quantity,
    },
  };
}

/** The field an error message of the exchange names ("price: ..."), if it is a ticket field. */
export function fieldOf(message: string): keyof FieldErrors | undefined {
  const match = /^\s*(price|quantity|timeInForce)\b/.exec(message);
  return match ? (match[1] as keyof FieldErrors) : undefined;
}
