"""The storefront in a real browser (Debian's chromium, headless, driven by Playwright)
against the whole stack `spillway up` runs: nginx, gunicorn, redis, Celery, the gateway.

Every test waits on what the page shows, never on a fixed sleep, and saves a screenshot to
test-artifacts/screenshots/.
"""

import os
import re
import uuid
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect
from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
WAIT_MS = 30_000
SCREENSHOTS = Path(os.environ.get("SPILLWAY_TEST_ARTIFACTS", "test-artifacts")) / "screenshots"


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, headless; Playwright downloads no browser of its own."""
    expect.set_options(timeout=WAIT_MS)  # a loaded machine: wait long, never sleep
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, stack, request):
    """A fresh browser profile (empty localStorage) on the storefront; screenshot after."""
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    context.set_default_timeout(WAIT_MS)
    tab = context.new_page()
    problems = []
    tab.on("pageerror", lambda exc: problems.append(str(exc)))
    tab.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    yield tab
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=SCREENSHOTS / f"{request.node.name}-end.png", full_page=True)
    context.close()
    assert not [p for p in problems if "Content Security Policy" in p or "Uncaught" in p], problems


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


def buy_elsewhere(stack, sale: dict) -> None:
    """A purchase by another buyer, over plain HTTP, as if from another browser."""
    token = requests.post(
        f"{stack.base_url}/api/v1/users", json={"name": "elsewhere"}, timeout=10
    ).json()["token"]
    response = requests.post(
        f"{stack.base_url}/api/v1/sales/{sale['id']}/orders",
        json={"quantity": 1},
        timeout=10,
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex},
    )
    assert response.status_code == 202, response.text


def open_card(page, stack, sale: dict):
    page.goto(stack.base_url + "/")
    card = page.locator(f'li.sale[data-sale-id="{sale["id"]}"]')
    expect(card).to_be_visible()
    return card


def sign_up(page, name: str) -> None:
    page.get_by_label("Your name").fill(name)
    page.get_by_role("button", name="Sign up").click()
    expect(page.locator("#buyer-name")).to_have_text(name)


def test_page_lists_a_sale_and_stock_counts_down_live(page, stack):
    """The sale shows with its product and stock; purchases elsewhere count it down."""
    sale = stack.new_sale(5)
    card = open_card(page, stack, sale)
    expect(card.locator(".sale-name")).not_to_have_text(f"Sale {sale['id']}")  # product name
    expect(card.locator(".remaining")).to_have_text("5")
    expect(card.locator(".live")).to_be_visible()  # the stream is open
    expect(card).to_have_attribute("data-status", "active")
    expect(card.locator(".sale-clock")).to_have_text(re.compile(r"Ends in 00:5\d:\d\d"))
    shot(page, "live-before")
    buy_elsewhere(stack, sale)
    expect(card.locator(".remaining")).to_have_text("4")
    buy_elsewhere(stack, sale)
    expect(card.locator(".remaining")).to_have_text("3")
    shot(page, "live-after-two-purchases")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: one column
    shot(page, "phone")


def test_the_newest_sales_get_the_live_streams(page, stack):
    """Only four cards hold a stream (a browser's six connections); with more active sales
    than that, the ones that started last get them. Ids are random, so this is the order of
    the start times, not of the ids."""
    sales = [stack.new_sale(3) for _ in range(6)]
    page.goto(stack.base_url + "/")
    for sale in sales[-4:]:
        expect(page.locator(f'li.sale[data-sale-id="{sale["id"]}"] .live')).to_be_visible()
    first = page.locator("li.sale").first
    expect(first).to_have_attribute("data-sale-id", str(sales[-1]["id"]))


def test_buy_confirm_then_pay(page, stack):
    """Sign up, double-click Buy (one order), see it confirmed, pay, see it paid."""
    sale = stack.new_sale(3, per_user_limit=2)
    card = open_card(page, stack, sale)
    sign_up(page, "Alice")
    card.get_by_role("button", name="Buy now").dblclick()
    order = card.locator(".order")
    expect(order).to_have_attribute("data-order-status", "confirmed")
    shot(page, "order-confirmed")
    token = page.evaluate("JSON.parse(localStorage.getItem('spillway.buyer')).token")
    mine = requests.get(
        f"{stack.base_url}/api/v1/users/me/orders",
        timeout=10,
        headers={"Authorization": f"Bearer {token}"},
    ).json()["items"]
    assert len(mine) == 1, "a double click buys once"
    expect(card.locator(".remaining")).to_have_text("2")
    card.get_by_role("button", name="Pay").click()
    expect(order).to_have_attribute("data-order-status", "paid")
    expect(card.locator(".order-status")).to_contain_text("paid")
    status = requests.get(
        f"{stack.base_url}/api/v1/orders/{mine[0]['order_id']}",
        timeout=10,
        headers={"Authorization": f"Bearer {token}"},
    ).json()["status"]
    assert status == "paid"


def test_sold_out_state(page, stack):
    """When the last unit goes elsewhere the card says sold out and cannot be bought."""
    sale = stack.new_sale(1)
    card = open_card(page, stack, sale)
    sign_up(page, "Bob")
    expect(card.get_by_role("button", name="Buy now")).to_be_enabled()
    buy_elsewhere(stack, sale)
    expect(card).to_have_attribute("data-status", "sold_out")
    expect(card.locator(".badge")).to_have_text("Sold out")
    button = card.locator("button.buy")
    expect(button).to_have_text("Sold out")
    expect(button).to_be_disabled()
    expect(card.locator(".remaining")).to_have_text("0")


def test_not_started_shows_a_countdown_then_opens(page, stack):
    """An upcoming sale counts down by the server's clock and opens on time."""
    sale = stack.new_sale(2, starts_in_s=8)
    card = open_card(page, stack, sale)
    expect(card).to_have_attribute("data-status", "scheduled")
    expect(card.locator(".sale-clock")).to_have_text(re.compile(r"Starts in 00:00:0\d"))
    expect(card.locator("button.buy")).to_be_disabled()
    expect(card.locator("button.buy")).to_have_text("Not started yet")
    shot(page, "not-started-countdown")
    expect(card).to_have_attribute("data-status", "active")
    expect(card.locator("button.buy")).to_be_enabled()
    expect(card.locator(".sale-clock")).to_have_text(re.compile(r"Ends in "))
    shot(page, "started")


def test_unavailable_then_a_retry_reuses_the_key(page, stack):
    """With the app down the page says so (nginx's 503); a retry once it is back buys
    with the same Idempotency-Key, so the failed click and the retry make one order."""
    sale = stack.new_sale(5, per_user_limit=5)
    card = open_card(page, stack, sale)
    sign_up(page, "Carol")
    keys_sent = []
    page.on(
        "request",
        lambda r: (
            keys_sent.append(r.headers.get("idempotency-key"))
            if r.method == "POST" and r.url.endswith("/orders")
            else None
        ),
    )
    stack.supervisorctl("stop", "gunicorn")
    try:
        card.get_by_role("button", name="Buy now").click()
        expect(card.locator(".sale-message")).to_contain_text("unavailable")
        shot(page, "unavailable")
        key = page.evaluate(
            "Object.keys(localStorage).filter(k => k.startsWith('spillway.intent.'))"
            ".map(k => localStorage.getItem(k))"
        )
        assert len(key) == 1, "the failed attempt keeps its key for the retry"
    finally:
        stack.supervisorctl("start", "gunicorn")
        stack.wait_for_app(timeout=60)
    expect(card.get_by_role("button", name="Buy now")).to_be_enabled()
    card.get_by_role("button", name="Buy now").click()
    expect(card.locator(".order")).to_have_attribute("data-order-status", "confirmed")
    assert len(keys_sent) == 2 and keys_sent[0] == keys_sent[1] and keys_sent[0]
    assert (
        page.evaluate(
            "Object.keys(localStorage).filter(k => k.startsWith('spillway.intent.')).length"
        )
        == 0
    )


def test_page_works_under_a_strict_content_security_policy(page, stack):
    """No inline script or style: with `default-src 'self'` on the page (added to nginx's
    real answer here) it still shows a sale live, and the browser reports no violation."""
    sale = stack.new_sale(2)
    violations = []
    page.on(
        "console",
        lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None,
    )

    def with_policy(route):
        answer = route.fetch()
        route.fulfill(
            response=answer,
            headers={**answer.headers, "content-security-policy": "default-src 'self'"},
        )

    page.route(stack.base_url + "/", with_policy)
    card = open_card(page, stack, sale)
    expect(card.locator(".live")).to_be_visible()
    expect(card.locator(".remaining")).to_have_text("2")
    expect(page.locator("#products li").first).not_to_have_text("Loading…")
    assert violations == []
