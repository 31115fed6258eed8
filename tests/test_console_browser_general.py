"""The console's General tab and the rest of an operator's day, in a real browser: connect a
workspace that is not connected yet (key and signing secret), update the key in its masked
dialog (a key of another account refused in words), disconnect after a confirmation that says
what stops and what is kept, the failure states (the bridge unreachable, a 5xx), discard a dead
letter with a reason and replay a filtered set after its dry-run count, pick a workspace by
searching its name, and log out."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from sqlalchemy import select

from stripe_bridge import workspaces
from stripe_bridge.context import Context
from stripe_bridge.models import DISCARDED, Connection, VelesEvent, VelesOrder
from tests.fake_stripe import FakeStripe
from tests.support import (
    ACCOUNT_ID,
    ADMIN_TOKEN,
    OTHER_ACCOUNT_KEY,
    ROTATED_KEY,
    TEST_KEY,
    free_port,
    own_bridge,
    run_jobs,
    wait_until,
)
from tests.test_console_browser import CHROMIUM, playwright, shot, veles

expect = playwright.expect
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
SECRET = "whsec_console_connect_1234567890"
ORDER_LINES = [{"product_id": "vp_1", "quantity": 1, "unit_amount": 500}]


@pytest.fixture
def unconnected(
    database_url: str, redis_namespace: str, fake_stripe: FakeStripe
) -> Iterator[tuple[str, Context]]:
    """A bridge whose default workspace was never connected, with a second workspace and two
    orders for customers Veles has not sent (two dead letters)."""
    with own_bridge(database_url, redis_namespace, STRIPE_API_BASE=fake_stripe.url) as bridge:
        from stripe_bridge.web.app import create_app

        with bridge.session_factory.begin() as session:
            workspaces.create(session, "acme-eu", "Acme Europe")
        veles(
            bridge,
            ("product.upserted", {"id": "vp_1", "name": "Seats"}),
            *[("order.committed", {"id": f"ord_{n}", "customer_id": f"v_{n}", "currency": "usd",
                                   "lines": ORDER_LINES}) for n in ("dup", "late")],
        )  # fmt: skip
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


def test_an_operator_connects_rotates_disconnects_and_works_dead_letters(
    unconnected: tuple[str, Context],
) -> None:
    url, bridge = unconnected
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.goto(f"{url}/admin")
            page.fill("#token", ADMIN_TOKEN)
            page.press("#token", "Enter")
            connect(page)
            update_key(page)
            failures(page)
            disconnect(page, bridge)
            dead_letters(page, bridge)
            pick_workspace(page)
            log_out(page, url)
        finally:
            browser.close()


def connect(page: Any) -> None:
    form = page.locator("#connect-form")
    expect(form).to_be_visible()
    expect(page.locator("#connected-view")).to_be_hidden()
    expect(page.locator("#connect-note")).to_contain_text("signing secret")
    expect(page.locator("#connect-key")).to_have_attribute("type", "password")
    expect(page.locator("#connect-secret")).to_be_visible()  # no BRIDGE_PUBLIC_URL: asked for
    shot(page, "general-connect")
    page.fill("#connect-key", TEST_KEY)
    page.fill("#connect-secret", SECRET)
    page.press("#connect-secret", "Enter")
    expect(page.locator("#g-account-id")).to_have_text(ACCOUNT_ID)
    expect(form).to_be_hidden()
    expect(page.locator("#g-key")).to_have_text("…" + TEST_KEY[-4:])
    expect(page.locator("#connect-key")).to_have_value("")  # the key does not linger in the page


def update_key(page: Any) -> None:
    page.get_by_role("button", name="Update API Key").click()
    dialog = page.locator("#key-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#new-key")).to_have_attribute("type", "password")  # masked as typed
    expect(page.locator("#new-key")).to_be_focused()
    page.fill("#new-key", OTHER_ACCOUNT_KEY)
    page.press("#new-key", "Enter")
    error = page.locator("#error")
    expect(error).to_contain_text(f"not to the connected account {ACCOUNT_ID}")
    expect(page.locator("#g-key")).to_have_text("…" + TEST_KEY[-4:])  # the old key is kept

    page.get_by_role("button", name="Update API Key").click()
    expect(page.locator("#new-key")).to_have_value("")  # nothing of the last try is left
    page.fill("#new-key", ROTATED_KEY)
    page.get_by_role("button", name="Save key").click()
    expect(page.locator("#g-key")).to_have_text("…" + ROTATED_KEY[-4:])
    expect(error).to_be_hidden()
    expect(page.locator("#g-account-id")).to_have_text(ACCOUNT_ID)


def failures(page: Any) -> None:
    """The bridge unreachable, then answering 503: words an operator understands, never an
    exception's text; the next good answer clears them."""
    error = page.locator("#error")
    page.route("**/admin/api/**", lambda route: route.abort())
    page.get_by_role("tab", name="Customers").click()
    expect(error).to_have_text("The bridge could not be reached. Check your network and try again.")
    page.unroute("**/admin/api/**")
    page.route(
        "**/admin/api/**",
        lambda route: route.fulfill(
            status=503, content_type="application/json", body='{"error": {"message": "boom"}}'
        ),
    )
    page.get_by_role("tab", name="Products").click()
    expect(error).to_contain_text("could not do this just now")
    expect(error).not_to_contain_text("boom")
    shot(page, "error-state")
    page.unroute("**/admin/api/**")
    page.get_by_role("tab", name="General").click()
    expect(error).to_be_hidden()


def disconnect(page: Any, bridge: Context) -> None:
    page.get_by_role("button", name="Disconnect").click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#confirm-text")).to_contain_text("Syncing customers")
    expect(page.locator("#confirm-text")).to_contain_text("is kept")
    page.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#connected-view")).to_be_visible()  # Cancel changed nothing

    page.get_by_role("button", name="Disconnect").click()
    page.locator("#confirm-ok").click()
    expect(page.locator("#connect-form")).to_be_visible()
    expect(page.locator("#connect-note")).to_contain_text("Disconnected on")
    expect(page.locator("#connect-note")).to_contain_text("every record was kept")
    with bridge.session_factory() as session:
        row = session.get(Connection, "default")
        assert row is not None and row.status == "disconnected"


def dead_letters(page: Any, bridge: Context) -> None:
    page.get_by_role("tab", name="Dead letters").click()
    rows = page.locator("#dead-rows tr")
    expect(rows).to_have_count(2)
    rows.filter(has_text="ord_dup").get_by_role("button", name="Discard…").click()
    expect(page.locator("#confirm-reason")).to_be_focused()
    page.fill("#confirm-reason", "duplicate of ord_late")
    page.press("#confirm-reason", "Enter")
    expect(rows).to_have_count(1)
    expect(page.locator("#status")).to_contain_text("discarded")
    with bridge.session_factory() as session:
        reasons = session.scalars(
            select(VelesEvent.discard_reason).where(VelesEvent.status == DISCARDED)
        )
        assert "duplicate of ord_late" in list(reasons)

    veles(bridge, ("customer.upserted", {"id": "v_late", "name": "Late Corp"}))
    page.fill("#dead-type", "customer.upserted")  # matches none: said so, nothing replayed
    page.get_by_role("button", name="Replay these…").click()
    expect(page.locator("#status")).to_have_text("No dead letter matches these filters.")
    page.fill("#dead-type", "order.committed")
    page.get_by_role("button", name="Replay these…").click()
    expect(page.locator("#confirm-title")).to_have_text("Replay 1 dead letter?")
    page.locator("#confirm-ok").click()
    expect(page.locator("#dead-rows")).to_contain_text("No dead letters")
    expect(page.locator("#status")).to_have_text("1 sent to be tried again")
    run_jobs(bridge)
    with bridge.session_factory() as session:
        assert session.get(VelesOrder, ("default", "ord_late")) is not None
        assert session.get(VelesOrder, ("default", "ord_dup")) is None  # discarded stays out


def pick_workspace(page: Any) -> None:
    expect(page.locator("#picker")).to_be_visible()
    page.fill("#workspace-search", "europe")  # by its name, not only its id
    expect(page.locator('#workspace-list option[value="acme-eu"]')).to_have_count(1)
    expect(page.locator('#workspace-list option[value="default"]')).to_have_count(0)
    page.fill("#workspace-search", "acme-eu")
    page.get_by_role("tab", name="General").click()
    expect(page.locator("#connect-form")).to_be_visible()
    expect(page.locator("#connect-note")).not_to_contain_text("Disconnected")  # never connected


def log_out(page: Any, url: str) -> None:
    page.get_by_role("button", name="Log out").click()
    expect(page.locator("#token")).to_be_visible()
    answer = page.request.get(f"{url}/admin/api/session")
    assert answer.status == 401  # the session cookie is gone with the logout
    page.goto(f"{url}/admin")
    expect(page.locator("#token")).to_be_visible()
