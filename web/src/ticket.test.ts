import { describe, expect, it } from "vitest";
import { checkTicket, fieldOf, onGrid, type TicketInput } from "./ticket";

const rules = { symbol: "ACME", tickSize: 0.05, lotSize: 10 };
const base: TicketInput = {
  side: "BUY",
  type: "LIMIT",
  timeInForce: "GFD",
  price: "101.25",
  quantity: "20",
};

describe("checkTicket", () => {
  it("accepts a LIMIT order on the tick and lot grid", () => {
    expect(checkTicket(base, rules)).toEqual({
      ok: true,
      order: { symbol: "ACME", side: "BUY", type: "LIMIT", timeInForce: "GFD", price: 101.25, quantity: 20 },
    });
  });

  it("names the field and suggests the nearest valid prices", () => {
    const checked = checkTicket({ ...base, price: "101.27" }, rules);
    expect(checked).toEqual({
      ok: false,
      errors: { price: "price: a whole number of ticks of 0.05 (e.g. 101.25 or 101.30)" },
    });
  });

  it("enforces the lot size and positive whole quantities", () => {
    const lot = checkTicket({ ...base, quantity: "25" }, rules);
    expect(lot.ok || lot.errors.quantity).toBe(
      "quantity: a multiple of the lot size 10 (e.g. 20 or 30)",
    );
    for (const quantity of ["", "0", "-10", "1.5", "abc"]) {
      const checked = checkTicket({ ...base, quantity }, rules);
      expect(checked.ok || checked.errors.quantity).toBe("quantity: a positive whole number");
    }
    const tooMany = checkTicket({ ...base, quantity: "1000010" }, rules);
    expect(tooMany.ok || tooMany.errors.quantity).toBe("quantity: at most 1,000,000");
  });

  it("reports every bad field at once", () => {
    const checked = checkTicket({ ...base, price: "0", quantity: "3" }, rules);
    expect(checked.ok).toBe(false);
    expect(checked.ok || Object.keys(checked.errors).sort()).toEqual(["price", "quantity"]);
  });

  it("takes no price for MARKET orders, and only IOC or FOK", () => {
    const market = checkTicket({ ...base, type: "MARKET", timeInForce: "IOC", price: "" }, rules);
    expect(market).toEqual({
      ok: true,
      order: { symbol: "ACME", side: "BUY", type: "MARKET", timeInForce: "IOC", price: 0, quantity: 20 },
    });
    const gfd = checkTicket({ ...base, type: "MARKET", timeInForce: "GFD" }, rules);
    expect(gfd.ok || gfd.errors).toEqual({ timeInForce: "timeInForce: MARKET orders take IOC or FOK" });
  });

  it("reads thousands separators and rounds float noise to the tick", () => {
    const checked = checkTicket({ ...base, price: "1,000.15", quantity: "1,000" }, rules);
    expect(checked.ok && checked.order).toMatchObject({ price: 1000.15, quantity: 1000 });
  });
});

describe("onGrid and fieldOf", () => {
  it("tells multiples of a step despite float noise", () => {
    expect(onGrid(0.3, 0.1)).toBe(true);
    expect(onGrid(101.255, 0.01)).toBe(false);
    expect(onGrid(100, 0.25)).toBe(true);
  });

  it("finds the ticket field an exchange error names", () => {
    expect(fieldOf("price: 101.255 is not a whole number of ticks (0.01)")).toBe("price");
    expect(fieldOf("quantity: must be positive")).toBe("quantity");
    expect(fieldOf("timeInForce: GFD is not valid for MARKET")).toBe("timeInForce");
    expect(fieldOf("market is closed")).toBeUndefined();
  });
});
