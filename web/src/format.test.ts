import { describe, expect, it } from "vitest";
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

describe("decimalsFor", () => {
  it.each([
    [0.01, 2],
    [0.05, 2],
    [0.5, 1],
    [1, 0],
    [5, 0],
    [0.001, 3],
    [0.0025, 4],
    [0.1 + 0.2 - 0.2, 1],
  ])("tick %s has %s decimals", (tick, decimals) => {
    expect(decimalsFor(tick)).toBe(decimals);
  });

  it("falls back to 2 for a tick that is not a positive number", () => {
    expect(decimalsFor(0)).toBe(2);
    expect(decimalsFor(Number.NaN)).toBe(2);
  });
});

describe("formatting", () => {
  it("gives prices fixed decimals and thousands separators", () => {
    expect(formatPrice(101.5, 2)).toBe("101.50");
    expect(formatPrice(1234.5, 2)).toBe("1,234.50");
    expect(formatPrice(7, 0)).toBe("7");
    expect(formatPrice(0.1 + 0.2, 2)).toBe("0.30");
  });

  it("formats money, signed amounts and quantities", () => {
    expect(formatMoney(1_000_405)).toBe("1,000,405.00");
    expect(formatSigned(12.5)).toBe("+12.50");
    expect(formatSigned(-3)).toBe("-3.00");
    expect(formatSigned(0)).toBe("0.00");
    expect(formatQuantity(1000)).toBe("1,000");
    expect(formatQuantity(10n)).toBe("10");
  });

  it("shows the change against a reference, nothing without one", () => {
    expect(formatChangePercent(105, 100)).toBe("+5.00%");
    expect(formatChangePercent(99, 100)).toBe("-1.00%");
    expect(formatChangePercent(100, 100)).toBe("0.00%");
    expect(formatChangePercent(100, 0)).toBe("");
    expect(formatChangePercent(0, 100)).toBe("");
  });

  it("tells the direction for colouring", () => {
    expect(direction(0.5)).toBe(1);
    expect(direction(-2)).toBe(-1);
    expect(direction(0)).toBe(0);
  });

  it("counts down in minutes, or hours when above one, never below zero", () => {
    expect(formatCountdown(125_000)).toBe("2:05");
    expect(formatCountdown(3_723_400)).toBe("1:02:03");
    expect(formatCountdown(-5_000)).toBe("0:00");
  });

  it("shows times of day in UTC", () => {
    expect(formatTime(new Date("2026-12-02T14:03:07.891Z"))).toBe("14:03:07");
  });
});
