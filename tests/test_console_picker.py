"""The console's workspace picker, in a real browser (Debian's chromium through Playwright): an
operator picks a workspace and the console shows that workspace's connection; a workspace
token sees its own workspace and no picker."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from tests.fake_stripe import FakeStripe
from tests.support import (
    ADMIN_TOKEN,
    OTHER_ACCOUNT_KEY,
    free_port,
    own_bridge,
    wait_until,
)

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")


@pytest.fixture
def console_url(database_url: str, redis_namespace: str, fake_stripe: FakeStripe) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with own_bridge(database_url, redis_namespace, STRIPE_API_BASE=fake_stripe.url) as bridge:
        from stripe_bridge.web.app import create_app

        server = uvicorn.Server(
            uvicorn.Config(create_app(bridge), port=port, log_config=None, access_log=False)
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        assert wait_until(lambda: server.started)
        yield url
        server.should_exit = True
        thread.join(10)


def test_an_operator_picks_a_workspace_and_a_workspace_token_sees_only_its_own(
    console_url: str,
) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=console_url, headers=headers, timeout=10) as api:
        assert api.post("/admin/api/workspaces", json={"id": "acme", "name": "Acme"}).is_success
        connected = api.put(
            "/admin/api/workspaces/acme/connection",
            json={"api_key": OTHER_ACCOUNT_KEY, "webhook_secret": "whsec_acme_0123456789"},
        )
        assert connected.status_code == 200, connected.text
        acme_account = connected.json()["account_id"]
        token = api.post("/admin/api/workspaces/acme/tokens").json()["token"]

    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page()
            page.goto(f"{console_url}/admin")
            page.fill("#token", ADMIN_TOKEN)
            page.press("#token", "Enter")  # the login form submits on Enter
            picker = page.locator("#workspace-search")
            playwright.expect(page.locator("#picker")).to_be_visible()
            playwright.expect(picker).to_have_value("default")
            playwright.expect(page.locator("#connect-form")).to_be_visible()  # default: none
            playwright.expect(page.locator("#general")).not_to_contain_text(acme_account)

            picker.fill("acme")  # the list is searched as the operator types
            playwright.expect(page.locator("#g-account-id")).to_have_text(acme_account)

            other = browser.new_page()  # a workspace admin with acme's token, its own cookies
            other.goto(f"{console_url}/admin")
            other.fill("#token", token)
            other.press("#token", "Enter")
            playwright.expect(other.locator("#g-account-id")).to_have_text(acme_account)
            playwright.expect(other.locator("#picker")).to_be_hidden()
            playwright.expect(other.locator("#who")).to_have_text("Workspace acme")
            playwright.expect(other.locator("#error")).to_be_hidden()
        finally:
            browser.close()
