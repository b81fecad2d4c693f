"""The web terminal (web/index.html) in a real browser, through Envoy on the real stack.

Chromium is Debian's (/usr/bin/chromium, `make setup-chromium`), driven by Playwright for Python;
Playwright's own browser download is never used. Without Chromium the browser test is skipped.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from mockex import edge
from mockex.stack import ExchangeStack
from tests.integration.conftest import ADMIN_KEY
from tests.integration.test_rest_edge import Edge

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 15_000
"""Longest wait for the page to show something (the store lags the engine; polls every 3 s)."""


@pytest.fixture(scope="module")
def rest(exchange_stack: ExchangeStack) -> Edge:
    return Edge(f"http://127.0.0.1:{exchange_stack.ports.edge}")


def new_user(rest: Edge, positions: dict[str, int] | None = None) -> tuple[str, str]:
    """(userId, apiKey) of a new participant with 1,000,000 cash."""
    user_id = "w" + uuid.uuid4().hex[:10]
    body = {"userId": user_id, "cash": 1_000_000.0, "positions": positions or {}}
    return user_id, rest.ok("POST", "/admin/users", body, ADMIN_KEY)["apiKey"]


# ---- Served by Envoy itself ----


def test_the_page_is_served_at_the_root_by_envoy(rest: Edge) -> None:
    page = edge.WEB_PAGE.read_bytes()
    for path in ("/", "/index.html", "/?symbol=ACME"):
        answer = rest.call("GET", path)
        assert answer.status == 200, path
        assert answer.headers["content-type"] == "text/html; charset=utf-8"
        assert answer.headers["cache-control"] == "max-age=60"
        assert "connect-src 'self'" in answer.headers["content-security-policy"]
        assert answer.body == page, f"{path}: not web/index.html byte for byte"
    # Self-contained: no URL of another origin anywhere in the page.
    assert re.search(rb"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", page, re.IGNORECASE) is None
    # Nothing else is served as a file: other paths are the API's 404.
    assert rest.call("GET", "/assets/app.js").status == 404


# ---- A participant in Chromium ----


@pytest.fixture(scope="module")
def browser(exchange_stack: ExchangeStack) -> Iterator:
    """Chromium, started after the stack: Playwright's sync API runs an asyncio loop of its own
    meanwhile, and the stack's start-up (asyncio.run) cannot run inside one."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: `make setup-chromium` installs Debian's chromium")
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def console() -> list[str]:
    """What the page reported: script errors, CSP violations, failed requests."""
    return []


@pytest.fixture
def page(browser, console: list[str]) -> Iterator:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.on("pageerror", lambda error: console.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            console.append(f"console error: {message.text}") if message.type == "error" else None
        ),
    )
    yield page
    context.close()


def use_key(page, user_id: str, key: str) -> None:
    page.fill("#api-key", key)
    page.click("#use-key")
    expect(page.locator("#user-id")).to_have_text(user_id)


def place(page, side: str, order_type: str, quantity: int, price: float | None, tif: str) -> None:
    page.locator("label", has=page.locator(f"#side-{side.lower()}")).click()
    page.select_option("#order-type", order_type)
    page.fill("#quantity", str(quantity))
    if price is not None:
        page.fill("#price", str(price))
    page.select_option("#tif", tif)
    page.click("#place")


def test_a_participant_trades_through_the_page(
    page, console: list[str], rest: Edge, exchange_stack: ExchangeStack, tmp_path: Path
) -> None:
    symbol = rest.add_symbol()
    seller_id, seller_key = new_user(rest, positions={symbol: 100})
    buyer_id, buyer_key = new_user(rest)
    page.goto(f"http://127.0.0.1:{exchange_stack.ports.edge}/")
    expect(page).to_have_title("Mockex terminal")

    # The key, then the symbol (the page lists them from GET /market/symbols).
    use_key(page, seller_id, seller_key)
    expect(page.locator(f"#symbol option[value='{symbol}']")).to_have_count(1)
    page.select_option("#symbol", symbol)
    expect(page.locator("#book-symbol")).to_have_text(symbol)
    expect(page.locator("#symbol-status")).to_have_text("OPEN")
    expect(page.locator("#feed-status")).to_have_text("live")  # /ws/marketdata through Envoy
    expect(page.locator(f"#positions tr[data-symbol='{symbol}'] .quantity")).to_have_text("100")
    expect(page.locator("#cash")).to_have_text("1,000,000.00")

    # A resting SELL LIMIT, placed from the page: its answer, the book, the open orders.
    place(page, "SELL", "LIMIT", 10, 101.25, "GFD")
    expect(page.locator("#order-result")).to_have_attribute("data-status", "NEW")
    expect(page.locator("#order-status")).to_have_text("NEW")
    order_id = page.locator("#order-id").inner_text()
    assert order_id
    ask = page.locator("#book-asks tr.level[data-price='101.25']")
    expect(ask.locator(".quantity")).to_have_text("10")
    expect(page.locator("#book-bids tr.empty")).to_have_text("no bids")
    row = page.locator(f"#open-orders tr[data-order-id='{order_id}']")
    expect(row.locator(".status")).to_have_text("NEW")
    expect(row.locator(".quantity")).to_have_text("10")

    # Another participant crosses it over REST: the page shows the fill.
    taker = rest.place(buyer_key, symbol, "BUY", 4, 101.25, timeInForce="IOC")
    assert taker["status"] == "FILLED", taker
    expect(ask.locator(".quantity")).to_have_text("6")
    expect(page.locator("#trades-body tr").first).to_contain_text("101.25")
    expect(page.locator("#trades-body tr").first).to_contain_text("4")
    expect(row.locator(".status")).to_have_text("PARTIALLY_FILLED")
    expect(row.locator(".filled")).to_have_text("4")
    expect(page.locator(f"#positions tr[data-symbol='{symbol}'] .quantity")).to_have_text("96")
    expect(page.locator("#cash")).to_have_text("1,000,405.00")
    page.screenshot(path=str(tmp_path / "web-terminal.png"), full_page=True)

    # The buyer on the same page: a MARKET order that fills against the rest of the SELL.
    use_key(page, buyer_id, buyer_key)
    expect(page.locator(f"#positions tr[data-symbol='{symbol}'] .quantity")).to_have_text("4")
    place(page, "BUY", "MARKET", 2, None, "IOC")
    expect(page.locator("#order-status")).to_have_text("FILLED")
    expect(page.locator("#order-fills li")).to_have_count(1)
    expect(page.locator("#order-fills li")).to_contain_text("2 @ 101.25")
    expect(ask.locator(".quantity")).to_have_text("4")
    expect(page.locator(f"#positions tr[data-symbol='{symbol}'] .quantity")).to_have_text("6")

    # A price off the tick: the API's error message, as the page shows it.
    place(page, "BUY", "LIMIT", 1, 101.255, "GFD")
    expect(page.locator("#order-result")).to_have_attribute("data-status", "ERROR")
    expect(page.locator("#order-error")).to_contain_text("ticks")
    expect(page.locator("#order-error")).to_contain_text("HTTP 400, code 3")
    expect(page.locator("#open-orders tr.empty")).to_have_text("no open orders")

    # Back to the seller, who cancels what is left from the open orders table.
    use_key(page, seller_id, seller_key)
    expect(row.locator(".filled")).to_have_text("6")
    row.locator("button.cancel").click()
    expect(page.locator("#order-status")).to_have_text("CANCELLED")
    expect(page.locator("#order-id")).to_have_text(order_id)
    expect(row).to_have_count(0)
    expect(page.locator("#open-orders tr.empty")).to_have_text("no open orders")
    expect(page.locator("#book-asks tr.empty")).to_have_text("no asks")
    assert rest.ok("GET", f"/order/status/{order_id}", key=seller_key)["status"] == "CANCELLED"

    # The one failed request is the order refused above: no script error, no CSP violation.
    assert console == [
        "console error: Failed to load resource: the server responded with a status of 400 "
        "(Bad Request)"
    ]
