"""The read side of /admin/api at the HTTP level: auth, list shapes, search, paging, filters."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.testclient import TestClient

from stripe_bridge.context import Context
from tests.support import (
    ADMIN_TOKEN,
    CONNECTION_FIELDS,
    admin_get,
    admin_headers,
    deliver,
    event,
    load_fixture,
    own_client,
)

LISTS = ("customers", "products", "prices", "subscriptions", "invoices", "events")

# The fields PRODUCT.md's contract promises on every object of each list (besides `id`).
CONTRACT_FIELDS = {
    "customers": {"name", "email", "domain", "deleted", "match_status", "veles_customer_id"},
    "products": {"name", "description", "active", "match_status", "veles_product_id", "prices"},
    "prices": {"product", "unit_amount", "currency", "recurring_interval", "active"},
    "subscriptions": {
        "customer",
        "status",
        "items",
        "current_period_end",
        "cancel_at_period_end",
        "veles_contract_id",
    },
    "invoices": {
        "customer",
        "subscription",
        "status",
        "amount_due",
        "amount_paid",
        "currency",
        "veles_order_id",
    },
    "events": {"type", "status", "attempts", "last_error"},
}

# The fixture story (fixtures/README.md): one product with a monthly price, Acme as customer
# (renamed), a subscription of 3 seats and its paid June invoice.
STORY = (
    "product.created",
    "price.created",
    "customer.created",
    "customer.updated",
    "customer.subscription.created",
    "invoice.paid",
)
PRODUCT_ID = "prod_QmR4ckT3stPro001"
CUSTOMER_ID = "cus_QmR4ckT3stAcme01"
SUBSCRIPTION_ID = "sub_1QmR4ckT3stSub001"
INVOICE_ID = "in_1QmR4ckT3stInv001"


def story(shape: str = "current") -> list[dict[str, Any]]:
    return [load_fixture(shape, event_type) for event_type in STORY]


def customer(customer_id: str, name: str, email: str | None = None) -> dict[str, Any]:
    return event(
        "customer.created", {"id": customer_id, "object": "customer", "name": name, "email": email}
    )


def product(product_id: str, name: str, *, active: bool = True) -> dict[str, Any]:
    obj = {"id": product_id, "object": "product", "name": name, "active": active}
    return event("product.created", obj)


def at(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


# --- auth ----------------------------------------------------------------------------------


def test_every_list_is_forbidden_when_no_admin_token_is_configured(
    database_url: str, redis_namespace: str
) -> None:
    with own_client(database_url, redis_namespace, BRIDGE_ADMIN_TOKEN=None) as client:
        answers = {
            (resource, headers_given): client.get(f"/admin/api/{resource}", headers=headers)
            for resource in LISTS
            for headers_given, headers in (
                ("none", {}),
                ("the test token", admin_headers()),
                ("an empty bearer", {"Authorization": "Bearer "}),
            )
        }

    for key, response in answers.items():
        assert response.status_code == 403, key
        assert response.json()["error"]["code"] == "forbidden", key
        assert response.json()["error"]["message"], key


@pytest.mark.parametrize("resource", LISTS)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-the-token"},
        {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
        {"Authorization": f"Basic {ADMIN_TOKEN}"},
        {"Authorization": ADMIN_TOKEN},
        {"Authorization": "Bearer "},
    ],
    ids=["missing", "wrong", "longer", "basic-scheme", "no-scheme", "empty"],
)
def test_missing_or_wrong_bearer_token_is_unauthorized(
    client: TestClient, resource: str, headers: dict[str, str]
) -> None:
    response = client.get(f"/admin/api/{resource}", headers=headers)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert set(response.json()) == {"error"}


def test_unauthorized_answer_reveals_no_mirrored_data(client: TestClient, bridge: Context) -> None:
    deliver(client, bridge, customer("cus_secret", "Hidden Ltd", "ceo@hidden.example"))

    response = client.get("/admin/api/customers", headers={"Authorization": "Bearer guess"})

    assert response.status_code == 401
    assert "cus_secret" not in response.text
    assert "Hidden Ltd" not in response.text


def test_bearer_scheme_is_case_insensitive(client: TestClient) -> None:
    response = client.get(
        "/admin/api/customers", headers={"Authorization": f"bearer {ADMIN_TOKEN}"}
    )

    assert response.status_code == 200
    assert response.json() == {"data": [], "next_cursor": None, "total": 0}


# --- list shapes ---------------------------------------------------------------------------


@pytest.mark.parametrize("resource", LISTS)
def test_every_list_object_carries_the_contract_fields(
    client: TestClient, bridge: Context, resource: str
) -> None:
    deliver(client, bridge, *story())

    body = admin_get(client, resource)

    assert set(body) == {"data", "next_cursor", "total"}
    assert body["data"], f"{resource} is empty after the story"
    for obj in body["data"]:
        missing = sorted((CONTRACT_FIELDS[resource] | {"id"}) - set(obj))
        assert missing == [], f"{resource} object {obj.get('id')} lacks {missing}"


def test_empty_lists_answer_no_data_and_no_cursor(client: TestClient) -> None:
    for resource in LISTS:
        assert admin_get(client, resource) == {"data": [], "next_cursor": None, "total": 0}, (
            resource
        )


@pytest.mark.parametrize("shape", ["current", "classic"])
def test_customer_mirror_shows_the_latest_stripe_state(
    client: TestClient, bridge: Context, shape: str
) -> None:
    deliver(client, bridge, *story(shape))

    body = admin_get(client, "customers")

    assert body["next_cursor"] is None
    [row] = body["data"]
    assert row["id"] == CUSTOMER_ID
    assert row["name"] == "Acme Corporation"
    assert row["email"] == "billing@acme.example"
    assert row["domain"] == "acme.example"
    assert row["deleted"] is False


def test_deleted_customer_stays_listed_with_the_deleted_flag(
    client: TestClient, bridge: Context
) -> None:
    deliver(client, bridge, *story(), load_fixture("current", "customer.deleted"))

    [row] = admin_get(client, "customers")["data"]

    assert (row["id"], row["deleted"], row["name"]) == (CUSTOMER_ID, True, "Acme Corporation")


def test_unmatched_records_are_listed_as_not_matched(client: TestClient, bridge: Context) -> None:
    deliver(client, bridge, *story())

    [customer_row] = admin_get(client, "customers")["data"]
    [product_row] = admin_get(client, "products")["data"]

    assert customer_row.get("match_status") == "not_matched"
    assert "veles_customer_id" in customer_row
    assert customer_row["veles_customer_id"] is None
    assert product_row.get("match_status") == "not_matched"
    assert "veles_product_id" in product_row
    assert product_row["veles_product_id"] is None


@pytest.mark.parametrize("shape", ["current", "classic"])
def test_product_mirror_includes_its_prices(
    client: TestClient, bridge: Context, shape: str
) -> None:
    deliver(client, bridge, *story(shape))

    [row] = admin_get(client, "products")["data"]

    assert row["id"] == PRODUCT_ID
    assert row["name"] == "Pro Plan"
    assert row["description"] == "Pro plan for growing teams"
    assert row["active"] is True
    [price] = row["prices"]
    assert price["id"] == "price_1QmR4ckT3stPro001"
    assert price["product"] == PRODUCT_ID
    assert (price["unit_amount"], price["currency"]) == (4900, "usd")
    assert price["recurring_interval"] == "month"
    assert price["active"] is True


def test_products_list_only_their_own_prices(client: TestClient, bridge: Context) -> None:
    def price(price_id: str, product_id: str, amount: int, recurring: str | None) -> dict[str, Any]:
        obj = {
            "id": price_id,
            "object": "price",
            "product": product_id,
            "currency": "eur",
            "unit_amount": amount,
            "type": "recurring" if recurring else "one_time",
            "recurring": {"interval": recurring, "interval_count": 1} if recurring else None,
            "active": True,
        }
        return event("price.created", obj)

    deliver(
        client,
        bridge,
        product("prod_a", "Alpha"),
        product("prod_b", "Beta"),
        product("prod_c", "Gamma"),
        price("price_a_setup", "prod_a", 10_000, None),
        price("price_a_year", "prod_a", 50_000, "year"),
        price("price_b_month", "prod_b", 900, "month"),
    )

    rows = {row["id"]: row for row in admin_get(client, "products")["data"]}

    assert [
        (p["id"], p["unit_amount"], p["recurring_interval"]) for p in rows["prod_a"]["prices"]
    ] == [
        ("price_a_setup", 10_000, None),
        ("price_a_year", 50_000, "year"),
    ]
    assert [p["id"] for p in rows["prod_b"]["prices"]] == ["price_b_month"]
    assert rows["prod_c"]["prices"] == []


def test_prices_list_mirrors_each_price(client: TestClient, bridge: Context) -> None:
    deliver(client, bridge, *story())

    body = admin_get(client, "prices")

    assert body["next_cursor"] is None
    [row] = body["data"]
    assert row["id"] == "price_1QmR4ckT3stPro001"
    assert (row["product"], row["unit_amount"], row["currency"]) == (PRODUCT_ID, 4900, "usd")
    assert (row["recurring_interval"], row["active"]) == ("month", True)


@pytest.mark.parametrize(
    ("shape", "price_id"),
    [("current", "price_1QmR4ckT3stPro001"), ("classic", "plan_QmR4ckT3stPro001")],
)
def test_subscription_mirror_shows_items_and_period(
    client: TestClient, bridge: Context, shape: str, price_id: str
) -> None:
    deliver(client, bridge, *story(shape))

    [row] = admin_get(client, "subscriptions")["data"]

    assert row["id"] == SUBSCRIPTION_ID
    assert (row["customer"], row["status"]) == (CUSTOMER_ID, "active")
    [item] = row["items"]
    assert {key: item[key] for key in ("price", "product", "quantity")} == {
        "price": price_id,
        "product": PRODUCT_ID,
        "quantity": 3,
    }
    assert item["product_name"] == "Pro Plan"  # from the product mirror, for the console
    assert at(row["current_period_end"]) == datetime(2025, 6, 1, tzinfo=UTC)
    assert row["cancel_at_period_end"] is False


@pytest.mark.parametrize("shape", ["current", "classic"])
def test_invoice_mirror_shows_amounts_and_payment(
    client: TestClient, bridge: Context, shape: str
) -> None:
    deliver(client, bridge, *story(shape))

    [row] = admin_get(client, "invoices")["data"]

    assert row["id"] == INVOICE_ID
    assert (row["customer"], row["subscription"]) == (CUSTOMER_ID, SUBSCRIPTION_ID)
    assert row["status"] == "paid"
    assert (row["amount_due"], row["amount_paid"], row["currency"]) == (14_700, 14_700, "usd")


def test_events_list_shows_each_stored_event_and_its_outcome(
    client: TestClient, bridge: Context
) -> None:
    payloads = story()
    deliver(client, bridge, *payloads)

    body = admin_get(client, "events")

    assert body["next_cursor"] is None
    rows = {row["id"]: row for row in body["data"]}
    assert set(rows) == {payload["id"] for payload in payloads}
    for payload in payloads:
        row = rows[payload["id"]]
        assert (row["type"], row["status"]) == (payload["type"], "processed")
        assert (row["attempts"], row["last_error"]) == (1, None)


# --- search --------------------------------------------------------------------------------


def test_customers_are_searched_by_name_or_email_ignoring_case(
    client: TestClient, bridge: Context
) -> None:
    deliver(
        client,
        bridge,
        customer("cus_1", "Acme Corporation", "billing@acme.example"),
        customer("cus_2", "Globex", "ops@globex.example"),
        customer("cus_3", "Initech", "finance@initrode.example"),
    )

    def ids(q: str) -> list[str]:
        return [row["id"] for row in admin_get(client, "customers", q=q)["data"]]

    assert ids("acme") == ["cus_1"]
    assert ids("GLOBEX") == ["cus_2"]
    assert ids("initrode.example") == ["cus_3"]
    assert ids(".example") == ["cus_1", "cus_2", "cus_3"]
    assert ids("umbrella") == []


def test_search_treats_sql_wildcards_literally(client: TestClient, bridge: Context) -> None:
    deliver(
        client,
        bridge,
        customer("cus_1", "100% Widgets", "a@widgets.example"),
        customer("cus_2", "Plain Widgets", "b_x@plain.example"),
    )

    def ids(q: str) -> list[str]:
        return [row["id"] for row in admin_get(client, "customers", q=q)["data"]]

    assert ids("%") == ["cus_1"]
    assert ids("b_x") == ["cus_2"]
    assert ids("a_x") == []


def test_products_are_searched_by_name(client: TestClient, bridge: Context) -> None:
    deliver(
        client,
        bridge,
        product("prod_1", "Starter Seat"),
        product("prod_2", "Enterprise Seat"),
        product("prod_3", "Onboarding"),
    )

    def ids(q: str) -> list[str]:
        return [row["id"] for row in admin_get(client, "products", q=q)["data"]]

    assert ids("starter") == ["prod_1"]
    assert ids("Seat") == ["prod_1", "prod_2"]
    assert ids("training") == []


def test_products_are_filtered_by_active(client: TestClient, bridge: Context) -> None:
    deliver(
        client,
        bridge,
        product("prod_1", "Current", active=True),
        product("prod_2", "Archived", active=False),
    )

    active = admin_get(client, "products", active="true")["data"]
    inactive = admin_get(client, "products", active="false")["data"]

    assert [(row["id"], row["active"]) for row in active] == [("prod_1", True)]
    assert [(row["id"], row["active"]) for row in inactive] == [("prod_2", False)]


# --- paging --------------------------------------------------------------------------------


def walk(client: TestClient, resource: str, **params: Any) -> list[list[str]]:
    """Every page's ids, following next_cursor until it is null (bounded)."""
    pages: list[list[str]] = []
    cursor: str | None = None
    for _ in range(20):
        query = dict(params, cursor=cursor) if cursor else dict(params)
        body = admin_get(client, resource, **query)
        pages.append([row["id"] for row in body["data"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
    raise AssertionError(f"{resource}: next_cursor never became null")


def test_paging_walks_every_customer_exactly_once(client: TestClient, bridge: Context) -> None:
    ids = [f"cus_page{n}" for n in range(7)]
    deliver(client, bridge, *(customer(cid, f"Company {cid}") for cid in reversed(ids)))

    pages = walk(client, "customers", limit=3)

    assert [len(page) for page in pages] == [3, 3, 1]
    assert [cid for page in pages for cid in page] == sorted(ids)


def test_last_full_page_has_no_cursor(client: TestClient, bridge: Context) -> None:
    ids = [f"cus_even{n}" for n in range(6)]
    deliver(client, bridge, *(customer(cid, f"Company {cid}") for cid in ids))

    pages = walk(client, "customers", limit=3)
    everything = admin_get(client, "customers", limit=6)

    assert pages == [ids[:3], ids[3:]]
    assert [row["id"] for row in everything["data"]] == ids
    assert everything["next_cursor"] is None


def test_paging_keeps_the_search_applied(client: TestClient, bridge: Context) -> None:
    deliver(
        client,
        bridge,
        *(customer(f"cus_acme{n}", f"Acme {n}") for n in range(5)),
        *(customer(f"cus_other{n}", f"Other {n}") for n in range(5)),
    )

    pages = walk(client, "customers", limit=2, q="acme")

    assert pages == [["cus_acme0", "cus_acme1"], ["cus_acme2", "cus_acme3"], ["cus_acme4"]]


def test_paging_walks_events(client: TestClient, bridge: Context) -> None:
    payloads = [customer(f"cus_ev{n}", f"Company {n}") for n in range(5)]
    deliver(client, bridge, *payloads)

    pages = walk(client, "events", limit=2)

    assert [len(page) for page in pages] == [2, 2, 1]
    assert sorted(eid for page in pages for eid in page) == sorted(p["id"] for p in payloads)


@pytest.mark.parametrize("resource", LISTS)
@pytest.mark.parametrize("limit", ["0", "101", "x", "-1", "2.5", ""])
def test_bad_limit_is_refused_with_an_error_body(
    client: TestClient, resource: str, limit: str
) -> None:
    response = client.get(
        f"/admin/api/{resource}", params={"limit": limit}, headers=admin_headers()
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"code", "message"}
    assert error["code"] == "bad_request"
    assert "limit" in error["message"]


def test_limit_bounds_are_inclusive(client: TestClient, bridge: Context) -> None:
    deliver(client, bridge, customer("cus_1", "One"), customer("cus_2", "Two"))

    one = admin_get(client, "customers", limit=1)
    hundred = admin_get(client, "customers", limit=100)

    assert [row["id"] for row in one["data"]] == ["cus_1"]
    assert one["next_cursor"] is not None
    assert [row["id"] for row in hundred["data"]] == ["cus_1", "cus_2"]
    assert hundred["next_cursor"] is None


# --- events filters ------------------------------------------------------------------------


def test_events_are_filtered_by_status_and_type(client: TestClient, bridge: Context) -> None:
    applied = customer("cus_1", "Applied")
    other_mode = event(
        "customer.created", {"id": "cus_2", "object": "customer", "name": "Live"}, livemode=True
    )
    unhandled = event("charge.refunded", {"id": "ch_1", "object": "charge"})
    unhandled_too = event("payout.paid", {"id": "po_1", "object": "payout"})
    deliver(client, bridge, applied, other_mode, unhandled, unhandled_too)

    def ids(**params: str) -> set[str]:
        return {row["id"] for row in admin_get(client, "events", **params)["data"]}

    assert ids(status="ignored") == {other_mode["id"], unhandled["id"], unhandled_too["id"]}
    assert ids(status="processed") == {applied["id"]}
    assert ids(status="ignored", type="charge.refunded") == {unhandled["id"]}
    assert ids(status="ignored", type="customer.created") == {other_mode["id"]}
    assert ids(type="customer.created") == {applied["id"], other_mode["id"]}
    assert ids(status="failed") == set()
    [ignored] = admin_get(client, "events", status="ignored", type="payout.paid")["data"]
    assert (ignored["type"], ignored["status"], ignored["attempts"]) == (
        "payout.paid",
        "ignored",
        0,
    )


# --- connection ----------------------------------------------------------------------------


def test_connection_answers_the_status_object(client: TestClient) -> None:
    response = client.get("/admin/api/connection", headers=admin_headers())

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) >= CONNECTION_FIELDS
    assert (body["status"], body["mode"], body["api_key_last4"]) == ("not_connected", "test", None)


def test_the_console_is_refused_when_no_admin_token_is_configured(
    database_url: str, redis_namespace: str
) -> None:
    with own_client(database_url, redis_namespace, BRIDGE_ADMIN_TOKEN=None) as client:
        response = client.get("/admin")

    assert response.status_code == 403


def test_nul_characters_in_parameters_and_bodies_are_refused_not_a_server_error(
    client: TestClient,
) -> None:
    # found by fault scenario 4: PostgreSQL refuses NUL in text, which answered 500
    nul_cursor = "YQA"  # base64 of "a\x00"
    for path in (
        "/admin/api/dead-letters?type=a%00b",
        "/admin/api/customers?q=%00",
        "/admin/api/events?status=x%00",
        f"/admin/api/customers?cursor={nul_cursor}",
        "/admin/api/orders/vo%00",
    ):
        response = client.get(path, headers=admin_headers())
        assert response.status_code == 400, path
        assert response.json()["error"]["code"] == "bad_request"
    for path, body in (
        ("/admin/api/customers/cus_1/link", {"veles_customer_id": "v\x00"}),
        ("/admin/api/dead-letters/replay", {"type": "invoice.paid\x00"}),
        ("/admin/api/dead-letters/replay", {"kind": 7}),
    ):
        response = client.post(path, json=body, headers=admin_headers())
        assert response.status_code == 400, (path, body)


def test_replay_refuses_a_dry_run_that_is_not_a_boolean(client: TestClient) -> None:
    # `bool("false")` is True: a string must not silently decide between real and dry
    response = client.post(
        "/admin/api/dead-letters/replay", json={"dry_run": "false"}, headers=admin_headers()
    )

    assert response.status_code == 400
    assert "dry_run" in response.json()["error"]["message"]


def test_the_routers_own_answers_are_json_errors_too(client: TestClient) -> None:
    # found by fault scenario 4: an id with a newline matches no route, answered text/plain
    not_routed = client.get("/admin/api/orders/a%0Ab", headers=admin_headers())
    wrong_method = client.delete("/admin/api/customers", headers=admin_headers())

    assert not_routed.status_code == 404
    assert not_routed.json() == {"error": {"code": "not_found", "message": "Not Found"}}
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
    assert "GET" in wrong_method.headers["allow"]


def test_ten_thousand_products_page_with_their_total(client: TestClient, bridge: Context) -> None:
    """The console pages every table: a page of 100 of 10,000 products, and the filtered
    total, answer like a page of 10 (one count, one keyset page)."""
    from sqlalchemy import insert

    from stripe_bridge.models import Product

    rows = [
        {
            "workspace_id": "default",
            "id": f"prod_{n:05d}",
            "name": f"Product {n:05d}",
            "match_status": "not_matched" if n % 10 else "ignored",
            "active": True,
        }
        for n in range(10_000)
    ]
    with bridge.session_factory.begin() as session:
        session.execute(insert(Product), rows)

    first = admin_get(client, "products", limit=100)
    ignored = admin_get(client, "products", limit=100, match_status="ignored")
    later = admin_get(client, "products", limit=100, cursor=first["next_cursor"])

    assert (first["total"], len(first["data"]), first["data"][-1]["id"]) == (
        10_000,
        100,
        "prod_00099",
    )
    assert (ignored["total"], len(ignored["data"])) == (1_000, 100)
    assert later["data"][0]["id"] == "prod_00100" and later["total"] == 10_000


def test_a_page_of_products_reads_their_prices_in_one_statement(
    client: TestClient, bridge: Context
) -> None:
    """A page of 100 products with two prices each costs the same few statements as a page of
    one: the prices come in one query for the page, not one per product."""
    from sqlalchemy import event as sa_event
    from sqlalchemy import insert

    from stripe_bridge.models import Price, Product

    with bridge.session_factory.begin() as session:
        session.execute(
            insert(Product),
            [{"workspace_id": "default", "id": f"prod_{n:03d}", "name": f"P {n}", "active": True,
              "match_status": "not_matched"} for n in range(100)],
        )  # fmt: skip
        session.execute(
            insert(Price),
            [{"workspace_id": "default", "id": f"price_{n:03d}_{k}", "product_id": f"prod_{n:03d}",
              "active": True, "currency": "usd", "unit_amount": 100 * k} for n in range(100)
             for k in (1, 2)],
        )  # fmt: skip
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])

    def statements_for(limit: int) -> tuple[int, dict[str, Any]]:
        seen.clear()
        sa_event.listen(bridge.engine, "before_cursor_execute", record)
        try:
            answer = admin_get(client, "products", limit=limit)
        finally:
            sa_event.remove(bridge.engine, "before_cursor_execute", record)
        return sum("prices" in s for s in seen), answer

    one, _ = statements_for(1)
    hundred, answer = statements_for(100)
    assert (one, hundred) == (1, 1)
    assert [p["unit_amount"] for p in answer["data"][42]["prices"]] == [100, 200]
    assert answer["data"][42]["prices"][0]["id"] == "price_042_1"
