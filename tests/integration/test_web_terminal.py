"""The web terminal (web/, built into build/web by `make web`) in a real browser, through Envoy on
the real stack with the simulator's default market trading alongside.

Chromium is Debian's (/usr/bin/chromium, `make setup-chromium`), driven by Playwright for Python;
Playwright's own browser download is never used. Without Chromium the browser tests are skipped.
Screenshots go to build/screenshots/web-terminal (git-ignored, like all of build/).
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
from tests.integration.conftest import ADMIN_KEY, running_stack
from tests.integration.test_rest_edge import Edge

# Two Chromium contexts beside the stack and its simulator on two cores: more than the default
# per-test guard (which also covers the module's stack start in the first test).
pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

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
WAIT_MS = 20_000
"""Longest wait for the page to show something (streams are live; the account is re-read after
each order update, the leaderboard after its change events)."""
SCREENSHOTS = edge.REPO_ROOT / "build" / "screenshots" / "web-terminal"


@pytest.fixture(scope="module")
def stack(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExchangeStack]:
    """An exchange playing the default scenario, as `make run` starts it."""
    with running_stack(
        kafka_bootstrap, tmp_path_factory.mktemp("web"), {"MOCKEX_SCENARIO": "default"}
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def rest(stack: ExchangeStack) -> Edge:
    return Edge(f"http://127.0.0.1:{stack.ports.edge}")


def new_user(rest: Edge, positions: dict[str, int] | None = None) -> tuple[str, str]:
    """(userId, apiKey) of a new participant with 1,000,000 cash."""
    user_id = "w" + uuid.uuid4().hex[:10]
    body = {"userId": user_id, "cash": 1_000_000.0, "positions": positions or {}}
    return user_id, rest.ok("POST", "/admin/users", body, ADMIN_KEY)["apiKey"]


def money(amount: float) -> str:
    return f"{amount:,.2f}"


# ---- Served by Envoy itself ----


def test_the_build_is_served_at_the_root_with_types_and_cache_headers(rest: Edge) -> None:
    index = (edge.WEB_ROOT / "index.html").read_bytes()
    for path in ("/", "/index.html", "/?symbol=ACME"):
        answer = rest.call("GET", path)
        assert answer.status == 200, path
        assert answer.headers["content-type"] == "text/html; charset=utf-8"
        assert answer.headers["cache-control"] == "no-cache"
        assert "script-src 'self'" in answer.headers["content-security-policy"]
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.body == index, f"{path}: not build/web/index.html byte for byte"
    assets = re.findall(rb'(?:src|href)="(/assets/[^"]+)"', index)
    kinds = {Path(asset.decode()).suffix for asset in assets}
    assert kinds == {".js", ".css"}, assets
    for asset in assets:
        path = asset.decode()
        answer = rest.call("GET", path)
        assert answer.status == 200, path
        assert answer.headers["content-type"] == edge.CONTENT_TYPES[Path(path).suffix]
        assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert answer.body == (edge.WEB_ROOT / path.lstrip("/")).read_bytes()
    # Only the build's files, at their exact paths: no listing, nothing else; the API's 404.
    for path in ("/assets/", "/assets/app.js", "/src/main.ts", "/index.htm", "/build/web/"):
        answer = rest.call("GET", path)
        assert answer.status == 404, path
        assert answer.body["code"] == 5, path
    # The API on the same port is untouched.
    assert rest.ok("GET", "/healthz") == {"status": "SERVING"}


# ---- Participants in Chromium ----


@pytest.fixture(scope="module")
def browser(stack: ExchangeStack) -> Iterator:
    """Chromium, started after the stack: Playwright's sync API runs an asyncio loop of its own
    meanwhile, and the stack's start-up (asyncio.run) cannot run inside one."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: `make setup-chromium` installs Debian's chromium")
    expect.set_options(timeout=WAIT_MS)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
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
    """What the pages reported: script errors, CSP violations, failed requests."""
    return []


@pytest.fixture
def open_page(browser, console: list[str], stack: ExchangeStack) -> Iterator:
    """Opens the terminal in a browser context of its own (its own session storage)."""
    contexts = []

    def open_page(name: str):
        context = browser.new_context(viewport={"width": 1440, "height": 1000})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.on("pageerror", lambda error: console.append(f"{name}: page error: {error}"))
        page.on(
            "console",
            lambda message: (
                console.append(f"{name}: console {message.type}: {message.text}")
                if message.type in ("error", "warning")
                else None
            ),
        )
        page.goto(f"http://127.0.0.1:{stack.ports.edge}/")
        expect(page).to_have_title("Mockex terminal")
        return page

    yield open_page
    for context in contexts:
        context.close()


def sign_in(page, user_id: str, key: str, symbol: str) -> None:
    expect(page.locator("#sign-in")).to_be_visible()
    page.fill("#api-key", key)
    page.press("#api-key", "Enter")
    expect(page.locator("#user-id")).to_have_text(user_id)
    page.locator(f"#symbols tr[data-symbol='{symbol}']").click()
    expect(page.locator("#chart-symbol")).to_have_text(symbol)
    expect(page.locator("#symbol-status")).to_have_text("OPEN")
    expect(page.locator("#feed-status")).to_have_text("live")


def ticket(page, side: str, quantity: int, price: float | None, order_type: str = "LIMIT") -> None:
    """Fills the ticket with the keyboard for the side, then sends it with Enter."""
    page.select_option("#order-type", order_type)
    page.fill("#quantity", str(quantity))
    if price is not None:
        page.fill("#price", str(price))
    page.press("#quantity", side[0].lower())  # B or S: the side, typed anywhere
    expect(page.locator(f"#side-{side.lower()}")).to_have_attribute("aria-pressed", "true")
    page.press("#quantity", "Enter")


def level(page, side: str, price: str):
    return page.locator(f"#ladder tr.level[data-side='{side}'][data-price='{price}']")


def test_two_participants_trade_with_each_other_on_live_streams(
    open_page, console: list[str], rest: Edge, stack: ExchangeStack
) -> None:
    symbol = rest.add_symbol(tick_size=0.05, reference_price=100.0)
    buyer_id, buyer_key = new_user(rest)
    seller_id, seller_key = new_user(rest, positions={symbol: 100})
    buyer = open_page("buyer")
    seller = open_page("seller")
    sign_in(buyer, buyer_id, buyer_key, symbol)
    sign_in(seller, seller_id, seller_key, symbol)
    expect(seller.locator(f"#positions tr[data-symbol='{symbol}'] .quantity")).to_have_text("100")
    expect(buyer.locator("#cash")).to_have_text("1,000,000.00")
    expect(buyer.locator("#ticket-rules")).to_have_text(f"{symbol}: tick 0.05, lot 1")

    # Off the tick: refused at the field before anything is sent.
    ticket(buyer, "BUY", 10, 101.27)
    expect(buyer.locator("#price-error")).to_have_text(
        "price: a whole number of ticks of 0.05 (e.g. 101.25 or 101.30)"
    )
    expect(buyer.locator("#price")).to_have_attribute("aria-invalid", "true")
    expect(buyer.locator("#ticket-result")).to_have_attribute("data-status", "INVALID")
    buyer.press("#price", "Escape")
    expect(buyer.locator("#price")).to_have_value("")
    expect(buyer.locator("#price-error")).to_have_text("")

    # The buyer rests a bid; both ladders show it, the buyer's marked as its own.
    ticket(buyer, "BUY", 10, 101.25)
    expect(buyer.locator("#ticket-result")).to_have_attribute("data-status", "NEW")
    order_id = buyer.locator("#ticket-result").get_attribute("data-order-id")
    assert order_id
    row = buyer.locator(f"#open-orders tr[data-order-id='{order_id}']")
    expect(row.locator(".status")).to_have_text("NEW")
    expect(row.locator(".price")).to_have_text("101.25")
    expect(level(buyer, "bid", "101.25").locator(".quantity")).to_have_text("10")
    expect(level(buyer, "bid", "101.25").locator(".mine")).to_have_text(["10", ""])
    expect(level(seller, "bid", "101.25").locator(".quantity")).to_have_text("10")
    expect(level(seller, "bid", "101.25").locator(".mine")).to_have_text(["", ""])
    expect(buyer.locator("#reserved")).not_to_have_text("0.00")
    expect(seller.locator("#open-orders tr.empty")).to_have_text("no open orders")

    # The seller takes the price from the ladder (a click) and sells 4 into the bid.
    level(seller, "bid", "101.25").click()
    expect(seller.locator("#price")).to_have_value("101.25")
    ticket(seller, "SELL", 4, None)
    expect(seller.locator("#ticket-result")).to_have_attribute("data-status", "FILLED")
    expect(seller.locator("#ticket-result")).to_contain_text("filled 4 @ 101.25")

    # Both see the trade on the tape, the book and their own orders and positions change.
    for page in (buyer, seller):
        first = page.locator("#tape tbody tr").first
        expect(first.locator(".price")).to_have_text("101.25")
        expect(first.locator(".quantity")).to_have_text("4")
        expect(level(page, "bid", "101.25").locator(".quantity")).to_have_text("6")
        expect(page.locator(f"#symbols tr[data-symbol='{symbol}'] .last")).to_have_text("101.25")
        expect(page.locator(f"#symbols tr[data-symbol='{symbol}'] .change")).to_have_text("+1.25%")
    expect(row.locator(".status")).to_have_text("PARTIALLY_FILLED")
    expect(row.locator(".filled")).to_have_text("4")
    expect(buyer.locator(f"#positions tr[data-symbol='{symbol}'] .quantity")).to_have_text("4")
    expect(seller.locator(f"#positions tr[data-symbol='{symbol}'] .quantity")).to_have_text("96")
    for page, key in ((buyer, buyer_key), (seller, seller_key)):
        account = rest.ok("GET", "/account", key=key)
        expect(page.locator("#cash")).to_have_text(money(account["cash"]))
    # The chart has drawn (canvas), and the leaderboard lists both without a reload.
    assert buyer.locator("#chart canvas").count() > 0
    for page in (buyer, seller):
        for user_id in (buyer_id, seller_id):
            expect(page.locator(f"#leaderboard tr[data-user-id='{user_id}']")).to_have_count(1)
    expect(buyer.locator(f"#leaderboard tr.me[data-user-id='{buyer_id}']")).to_have_count(1)
    buyer.screenshot(path=str(SCREENSHOTS / "buyer.png"), full_page=True)
    seller.screenshot(path=str(SCREENSHOTS / "seller.png"), full_page=True)

    # A second bid, then cancel one from its row and the rest with cancel-all.
    ticket(buyer, "BUY", 3, 100.5)
    expect(buyer.locator("#open-orders tbody tr")).to_have_count(2)
    row.locator("button.cancel").click()
    expect(row).to_have_count(0)
    expect(level(seller, "bid", "101.25")).to_have_count(0)
    buyer.click("#cancel-all")
    expect(buyer.locator("#open-orders tr.empty")).to_have_text("no open orders")
    expect(buyer.locator("#ticket-result")).to_have_text("cancelled 1 order")
    expect(seller.locator("#ladder tbody")).to_contain_text("no bids")
    assert rest.ok("GET", f"/order/status/{order_id}", key=buyer_key)["status"] == "CANCELLED"

    # Signed in for this tab only: a reload keeps the session, signing out forgets the key.
    buyer.reload()
    expect(buyer.locator("#user-id")).to_have_text(buyer_id)
    buyer.click("#sign-out")
    expect(buyer.locator("#sign-in")).to_be_visible()
    assert buyer.evaluate("sessionStorage.getItem('mockex.apiKey')") is None

    assert console == []


def test_a_halt_and_news_show_as_exchange_events(open_page, console: list[str], rest: Edge) -> None:
    symbol = rest.add_symbol()
    user_id, key = new_user(rest)
    page = open_page("participant")
    sign_in(page, user_id, key, symbol)
    expect(page.locator("#round")).not_to_have_text("–")
    expect(page.locator("#countdown")).to_have_text(re.compile(r"^\d+:\d\d(:\d\d)?$"))
    rest.ok("POST", "/admin/market/halt", {"symbol": symbol}, ADMIN_KEY)
    expect(page.locator("#symbol-status")).to_have_text("HALTED")
    expect(page.locator(f"#symbols tr[data-symbol='{symbol}'] .change")).to_have_text("HALTED")
    expect(page.locator("#events li.TRADING_HALTED")).to_have_count(1)
    headline = f"Web test news {uuid.uuid4().hex[:6]}"
    rest.ok("POST", "/admin/news", {"headline": headline, "symbols": [symbol]}, ADMIN_KEY)
    expect(page.locator("#events li.NEWS", has_text=headline)).to_have_count(1)
    rest.ok("POST", "/admin/market/resume", {"symbol": symbol}, ADMIN_KEY)
    expect(page.locator("#symbol-status")).to_have_text("OPEN")
    page.screenshot(path=str(SCREENSHOTS / "events.png"), full_page=True)
    assert console == []


def test_the_page_reconnects_and_resyncs_after_the_stream_service_restarts(
    open_page, console: list[str], rest: Edge, stack: ExchangeStack
) -> None:
    symbol = rest.add_symbol()
    user_id, key = new_user(rest)
    page = open_page("participant")
    sign_in(page, user_id, key, symbol)
    expect(page.locator("#banner")).to_be_hidden()

    stack.processes["stream"].stop()
    expect(page.locator("#banner")).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "disconnected.png"), full_page=True)
    # What happens while the page is away reaches it from the snapshot of the new stream.
    rest.place(key, symbol, "BUY", 7, 99.5)
    stack.start_service("stream")
    expect(page.locator("#banner")).to_be_hidden()
    expect(page.locator("#feed-status")).to_have_text("live")
    expect(level(page, "bid", "99.5").locator(".quantity")).to_have_text("7")
    expect(level(page, "bid", "99.5").locator(".mine")).to_have_text(["7", ""])
    book = rest.ok("GET", f"/market/orderbook/{symbol}")
    shown = page.locator("#ladder tr.level[data-side='bid']")
    assert [
        float(price) for price in shown.evaluate_all("rows => rows.map(r => r.dataset.price)")
    ] == [entry["price"] for entry in book["bids"]]
    # The browser logs the failed stream requests while the service was away; nothing else.
    assert all("net::ERR" in line or "Failed to load" in line for line in console), console
