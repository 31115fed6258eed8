"""The console's login: a token typed into a form becomes a signed, HttpOnly, SameSite=Strict
cookie that stands for it (the token itself is never in the browser), CSRF on every change,
logout; the pages allow scripts from the bridge only."""

from __future__ import annotations

import re
from typing import Any

from starlette.testclient import TestClient

from stripe_bridge.web import console_session
from tests.support import ADMIN_TOKEN, admin_headers, own_client


def log_in(client: TestClient, token: str, **headers: str) -> Any:
    return client.post(
        "/admin/login",
        content=f"token={token}",
        headers={"Content-Type": "application/x-www-form-urlencoded", **headers},
        follow_redirects=False,
    )


def csrf(client: TestClient) -> str:
    answer = client.get("/admin/api/session")
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["csrf"]
    return token


def test_the_console_asks_for_a_token_and_allows_no_inline_script(client: TestClient) -> None:
    page = client.get("/admin")

    assert page.status_code == 200 and 'action="/admin/login"' in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert "<script>" not in page.text and " onclick=" not in page.text
    assert client.get("/admin/api/connection").status_code == 401  # no cookie, no bearer


def test_an_operator_logs_in_and_the_cookie_stands_for_the_token(client: TestClient) -> None:
    answer = log_in(client, ADMIN_TOKEN)

    assert answer.status_code == 303 and answer.headers["location"] == "/admin"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{console_session.COOKIE}=")
    for attribute in ("HttpOnly", "Path=/admin", "SameSite=strict", "Max-Age=28800"):
        assert attribute.lower() in cookie.lower(), (attribute, cookie)
    assert ADMIN_TOKEN not in cookie
    console = client.get("/admin")
    assert '<script src="/admin/static/console.js" defer></script>' in console.text
    tabs = re.findall(r'role="tab"[^>]*>([\w ]+)</button>', console.text)
    assert tabs == ["General", "Customers", "Products", "Subscriptions", "Dead letters"]
    assert client.get("/admin/static/console.js").status_code == 200
    session = client.get("/admin/api/session").json()
    assert (session["operator"], session["workspace_id"]) == (True, None)
    assert session["registers_webhook_endpoint"] is False  # no BRIDGE_PUBLIC_URL here
    assert client.get("/admin/api/connection").status_code == 200


def test_a_wrong_token_gets_the_form_again_with_what_went_wrong(client: TestClient) -> None:
    answer = log_in(client, "not-the-token")

    assert answer.status_code == 401
    assert "That token is not valid" in answer.text and "set-cookie" not in answer.headers
    assert client.get("/admin/api/session").status_code == 401


def test_a_login_posted_from_another_site_is_refused(client: TestClient) -> None:
    answer = log_in(client, ADMIN_TOKEN, **{"Sec-Fetch-Site": "cross-site"})

    assert answer.status_code == 403 and "set-cookie" not in answer.headers


def test_a_change_through_the_cookie_needs_the_sessions_csrf_token(client: TestClient) -> None:
    log_in(client, ADMIN_TOKEN)
    created = {"id": "acme", "name": "Acme"}

    without = client.post("/admin/api/workspaces", json=created)
    forged = client.post("/admin/api/workspaces", json=created, headers={"X-CSRF-Token": "x"})
    with_it = client.post(
        "/admin/api/workspaces", json=created, headers={"X-CSRF-Token": csrf(client)}
    )

    assert (without.status_code, forged.status_code, with_it.status_code) == (403, 403, 201)
    assert "CSRF" in without.json()["error"]["message"]


def test_a_workspace_token_logs_in_to_its_own_workspace_until_its_tokens_are_revoked(
    client: TestClient,
) -> None:
    for workspace_id in ("acme", "globex"):
        client.post("/admin/api/workspaces", json={"id": workspace_id}, headers=admin_headers())
    token = client.post("/admin/api/workspaces/acme/tokens", headers=admin_headers()).json()

    assert log_in(client, token["token"]).status_code == 303
    session = client.get("/admin/api/session").json()
    assert (session["operator"], session["workspace_id"]) == (False, "acme")
    assert client.get("/admin/api/workspaces/acme/connection").status_code == 200
    assert client.get("/admin/api/workspaces/globex/connection").status_code == 404

    client.request("DELETE", "/admin/api/workspaces/acme/tokens", headers=admin_headers())
    assert client.get("/admin/api/workspaces/acme/connection").status_code == 401
    assert 'action="/admin/login"' in client.get("/admin").text


def test_logging_out_ends_the_session(client: TestClient) -> None:
    log_in(client, ADMIN_TOKEN)

    refused = client.post("/admin/logout")  # no CSRF token: a forged form cannot log you out
    answer = client.post("/admin/logout", headers={"X-CSRF-Token": csrf(client)})

    assert refused.status_code == 403 and answer.status_code == 204
    assert client.get("/admin/api/session").status_code == 401


def test_rotating_the_operator_token_ends_every_session(
    database_url: str, redis_namespace: str
) -> None:
    with own_client(database_url, redis_namespace) as before:
        log_in(before, ADMIN_TOKEN)
        cookie = before.cookies.get(console_session.COOKIE)
    with own_client(database_url, redis_namespace, BRIDGE_ADMIN_TOKEN="rotated-token") as after:
        after.cookies.set(console_session.COOKIE, cookie or "", path="/admin")
        assert after.get("/admin/api/session").status_code == 401
