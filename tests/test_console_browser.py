"""The console as an operator uses it, in a real browser (Debian's chromium through Playwright),
with realistic data: 121 Stripe products (one inactive), ambiguous customers, a customer whose
name is markup, and a dead letter. Each run saves a screenshot of every tab under
tests/artifacts/console/ (ignored by git)."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import uvicorn
from stripe import StripeClient

from stripe_bridge import connection
from stripe_bridge.context import Context
from stripe_bridge.inbox.door import sign
from stripe_bridge.sync import run_sync
from tests.fake_stripe import FakeStripe
from tests.support import (
    ACCOUNT_ID,
    ADMIN_TOKEN,
    TEST_KEY,
    VELES_SECRET,
    free_port,
    own_bridge,
    run_jobs,
    veles_event,
    wait_until,
)

playwright = pytest.importorskip("playwright.sync_api")
expect = playwright.expect
CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
ARTIFACTS = Path(__file__).parent / "artifacts" / "console"
MARKUP = "<img src=x onerror=alert(1)>"
DASH = "\u2013"  # the pager's range: 1-50
VELES_URL = "https://veles.example/{workspace}/products/{id}"


def veles(bridge: Context, *events: tuple[str, dict[str, Any]]) -> None:
    """Veles posts its records, as it would (signed), and the jobs apply them."""
    from starlette.testclient import TestClient

    from stripe_bridge.web.app import create_app

    with TestClient(create_app(bridge)) as client:
        for event_type, data in events:
            body = orjson.dumps(veles_event(event_type, data))
            headers = {"Veles-Signature": sign(body, VELES_SECRET, int(time.time()))}
            assert client.post("/veles/events", content=body, headers=headers).status_code == 202
    run_jobs(bridge)


@pytest.fixture
def console(
    database_url: str, redis_namespace: str, fake_stripe: FakeStripe
) -> Iterator[tuple[str, Context]]:
    with own_bridge(
        database_url, redis_namespace, STRIPE_API_BASE=fake_stripe.url, BRIDGE_VELES_URL=VELES_URL
    ) as bridge:
        from stripe_bridge.web.app import create_app

        with bridge.session_factory.begin() as session:
            connection.connect(session, bridge.box, bridge.gateway, "default", TEST_KEY)
        seed(bridge, fake_stripe)
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(bridge), port=port, log_config=None, access_log=False)
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        assert wait_until(lambda: server.started)
        yield f"http://127.0.0.1:{port}", bridge
        server.should_exit = True
        thread.join(10)


def seed(bridge: Context, fake_stripe: FakeStripe) -> None:
    made = [
        fake_stripe.seed("product", name=f"Product {n:03d}", description=f"Plan number {n}")
        for n in range(120)
    ]
    fake_stripe.seed("product", name="Legacy Widget", active=False)
    acme = fake_stripe.seed("customer", name="Acme", email="ap@acme.example")
    stripe = StripeClient(TEST_KEY, base_addresses={"api": fake_stripe.url})
    price = stripe.v1.prices.create(
        params={"product": made[0]["id"], "unit_amount": 4900, "currency": "usd",
                "recurring": {"interval": "month"}}
    )  # fmt: skip
    stripe.v1.subscriptions.create(
        params={"customer": acme["id"], "items": [{"price": price.id, "quantity": 3}],
                "metadata": {"veles_contract_id": "ct_acme"}}
    )  # fmt: skip
    fake_stripe.seed("customer", name="Hooli", email="someone@elsewhere.example")
    fake_stripe.seed("customer", name=MARKUP, email=None)
    veles(
        bridge,
        *[("product.upserted", {"id": f"vp_{n:03d}", "name": f"Product {n:03d}"})
          for n in range(100)],
        ("product.upserted", {"id": "vp_spare", "name": "Spare Seats", "sku": "SPARE"}),
        ("customer.upserted", {"id": "v_acme", "name": "Acme", "email": "ap@acme.example"}),
        ("customer.upserted", {"id": "v_hooli_1", "name": "Hooli", "email": "ap@hooli.example"}),
        ("customer.upserted", {"id": "v_hooli_2", "name": "Hooli", "email": "billing@hooli.io"}),
        (  # an order for a customer Veles has not sent yet: a dead letter
            "order.committed",
            {"id": "ord_early", "customer_id": "v_later", "currency": "usd", "lines": [
                {"product_id": "vp_000", "quantity": 1, "unit_amount": 500}]},
        ),
    )  # fmt: skip
    assert run_sync(bridge, "default", "products").status == "completed"
    assert run_sync(bridge, "default", "customers").status == "completed"
    assert run_sync(bridge, "default", "subscriptions").status == "completed"


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=False)


def test_an_operator_reviews_pages_syncs_and_replays_through_the_console(
    console: tuple[str, Context],
) -> None:
    url, bridge = console
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.goto(f"{url}/admin")
            page.fill("#token", ADMIN_TOKEN)
            page.press("#token", "Enter")
            general(page)
            customers(page)
            products(page)
            sync_with_progress(page, bridge)
            subscriptions(page)
            dead_letters(page, bridge)
        finally:
            browser.close()


def general(page: Any) -> None:
    expect(page.locator("#g-account-id")).to_have_text(ACCOUNT_ID)
    expect(page.locator("#g-account")).to_have_text("Context Test Co")
    expect(page.locator("#g-mode")).to_have_text("Test")
    expect(page.locator("#g-connected")).to_contain_text("UTC")  # the browser's zone, shown
    expect(page.locator("#g-customers-synced")).not_to_have_text("Never")
    expect(page.locator("#g-key")).to_have_text("…" + TEST_KEY[-4:])
    expect(page.get_by_role("tab", name="General")).to_have_attribute("aria-selected", "true")
    shot(page, "general")
    page.get_by_role("tab", name="General").focus()  # the tabs answer the arrow keys
    page.keyboard.press("ArrowLeft")
    expect(page.get_by_role("tab", name="Dead letters")).to_have_attribute("aria-selected", "true")
    expect(page.get_by_role("tab", name="Dead letters")).to_be_focused()
    page.keyboard.press("Home")
    expect(page.get_by_role("tab", name="General")).to_have_attribute("aria-selected", "true")


def customers(page: Any) -> None:
    page.get_by_role("tab", name="Customers").click()
    banner = page.locator("#customers-banner")
    expect(banner).to_contain_text("2 unmatched Stripe customers need review")
    markup_row = page.locator("#customers-rows tr", has_text="onerror")
    expect(markup_row.locator("td").first).to_have_text(MARKUP)  # text, not an element
    assert page.locator("#customers-rows img").count() == 0
    expect(page.locator("#customers-rows tr", has_text="Acme")).to_contain_text("Matched")
    shot(page, "customers")

    banner.get_by_role("button", name="Review").click()
    hooli = page.locator("#customers-cards article", has_text="someone@elsewhere.example")
    expect(hooli).to_contain_text("Hooli — ap@hooli.example")
    expect(hooli).to_contain_text("Hooli — billing@hooli.io")
    shot(page, "customers-review")
    hooli.locator("li", has_text="billing@hooli.io").get_by_role("button", name="Link").click()
    expect(banner).to_contain_text("1 unmatched Stripe customers need review")
    expect(page.locator("#status")).to_contain_text("Linked Hooli to Hooli")

    expect(page.locator("#customers-cards article")).to_have_count(1)  # redrawn without Hooli
    odd = page.locator("#customers-cards article", has_text="onerror")
    odd.get_by_role("button", name="Create in Veles").click()
    expect(banner).to_be_hidden()
    expect(page.locator("#customers-cards")).to_contain_text("Nothing to review")
    page.click("#customers-back")
    expect(page.locator("#customers-rows tr", has_text="someone@elsewhere")).to_contain_text(
        "Hooli"
    )


def products(page: Any) -> None:
    page.get_by_role("tab", name="Products").click()
    banner = page.locator("#products-banner")
    # the inactive one is listed for review but not counted: it cannot be matched until active
    expect(banner).to_contain_text("20 unmatched Stripe products need review")
    pager = page.locator("#products-pager")
    expect(pager).to_contain_text(f"1{DASH}50 of 121")
    shot(page, "products")
    pager.get_by_role("button", name="Next").click()
    expect(pager).to_contain_text(f"51{DASH}100 of 121")
    pager.get_by_role("button", name="Next").click()
    expect(pager).to_contain_text(f"101{DASH}121 of 121")
    expect(pager.get_by_role("button", name="Next")).to_be_disabled()
    expect(page.locator("#products-rows tr")).to_have_count(21)

    page.fill("#products-q", "Product 000")
    linked = page.locator("#products-rows tr", has_text="Product 000")
    expect(linked).to_contain_text("Matched: name_match")
    link = linked.get_by_role("link", name="Product 000")
    expect(link).to_have_attribute("href", "https://veles.example/default/products/vp_000")
    page.fill("#products-q", "Product 11")  # search as you type
    expect(pager).to_contain_text("of 10")
    page.fill("#products-q", "")
    expect(pager).to_contain_text("of 121")
    page.select_option("#products-active", "false")
    expect(page.locator("#products-rows tr")).to_have_count(1)
    expect(page.locator("#products-rows")).to_contain_text("Inactive")
    page.select_option("#products-active", "")
    expect(pager).to_contain_text("of 121")

    banner.get_by_role("button", name="Review").click()
    legacy = page.locator("#products-cards article", has_text="Legacy Widget")
    expect(legacy).to_contain_text("Inactive in Stripe")
    expect(legacy.get_by_role("button", name="Import")).to_be_disabled()
    shot(page, "products-review")
    page.locator("#products-cards article", has_text="Product 100").get_by_role(
        "button", name="Import"
    ).click()
    expect(banner).to_contain_text("19 unmatched")
    expect(page.locator("#status")).to_have_text("Imported Product 100 into the price book")
    page.locator("#products-cards article", has_text="Product 101").get_by_role(
        "button", name="Ignore"
    ).click()
    expect(banner).to_contain_text("18 unmatched")
    expect(page.locator("#status")).to_have_text("Ignored Product 101")  # the list is redrawn
    card = page.locator("#products-cards article", has_text="Product 102")
    card.get_by_label("Match to an existing Veles product").fill("Spare")
    card.get_by_role("button", name="Match Spare Seats").click()
    expect(banner).to_contain_text("17 unmatched")
    page.click("#products-back")
    page.fill("#products-q", "Product 102")
    expect(page.locator("#products-rows")).to_contain_text("Spare Seats")
    expect(page.locator("#products-rows")).to_contain_text("Matched: manual")
    page.fill("#products-q", "")


def sync_with_progress(page: Any, bridge: Context) -> None:
    """The Sync button queues a job; the page follows it until the worker has done it."""
    page.click("#products-sync")
    expect(page.locator("#products-progress")).to_contain_text("Queued")
    run_jobs(bridge)  # the worker takes it
    # 121 products and the one price
    expect(page.locator("#products-progress")).to_contain_text("Done: 122 seen")


def subscriptions(page: Any) -> None:
    page.get_by_role("tab", name="Subscriptions").click()
    row = page.locator("#subscriptions-rows tr").first
    expect(row).to_contain_text("Acme")  # the customer's name, not its id
    expect(row).to_contain_text("3 \u00d7 Product 000 at $49.00 / month")
    expect(row).to_contain_text("ct_acme")
    shot(page, "subscriptions")
    page.fill("#subscriptions-q", "acm")  # by the customer's name
    expect(page.locator("#subscriptions-pager")).to_contain_text("of 1")
    page.fill("#subscriptions-q", "hooli")
    expect(page.locator("#subscriptions-rows")).to_contain_text("No subscriptions here")
    page.fill("#subscriptions-q", "")
    page.select_option("#subscriptions-status", "canceled")
    expect(page.locator("#subscriptions-rows")).to_contain_text("No subscriptions here")
    page.select_option("#subscriptions-status", "")


def dead_letters(page: Any, bridge: Context) -> None:
    page.get_by_role("tab", name="Dead letters").click()
    row = page.locator("#dead-rows tr", has_text="ord_early")
    expect(row).to_contain_text("unknown Veles customer v_later")
    shot(page, "dead-letters")
    veles(bridge, ("customer.upserted", {"id": "v_later", "name": "Later Corp"}))

    row.get_by_role("button", name="Replay").click()
    expect(page.locator("#dead-rows")).to_contain_text("No dead letters")
    run_jobs(bridge)
    with bridge.session_factory() as session:
        from stripe_bridge.models import VelesOrder

        assert session.get(VelesOrder, ("default", "ord_early")) is not None
