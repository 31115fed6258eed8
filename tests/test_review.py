"""Matching and review at the HTTP level: Veles events in, Stripe events in, links out."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from stripe_bridge.context import Context
from tests.support import (
    admin_get,
    admin_headers,
    event,
    own_client,
    post_event,
    post_veles,
    run_jobs,
    veles_event,
)


def stripe_customer(
    client: TestClient, cus_id: str, name: str, email: str | None, **extra: Any
) -> None:
    obj = {"id": cus_id, "object": "customer", "name": name, "email": email, **extra}
    assert (
        post_event(
            client, event("customer.updated", obj, created=extra.pop("created", 1_750_000_000))
        ).status_code
        == 200
    )


def veles_customer(
    client: TestClient,
    veles_id: str,
    name: str,
    email: str | None = None,
    domain: str | None = None,
    created: int = 1_750_000_000,
) -> None:
    data = {"id": veles_id, "name": name, "email": email, "domain": domain}
    assert (
        post_veles(client, veles_event("customer.upserted", data, created=created)).status_code
        == 202
    )


def stripe_product(
    client: TestClient,
    prod_id: str,
    name: str,
    *,
    active: bool = True,
    created: int = 1_750_000_000,
    **extra: Any,
) -> None:
    obj = {"id": prod_id, "object": "product", "name": name, "active": active, **extra}
    assert post_event(client, event("product.updated", obj, created=created)).status_code == 200


def veles_product(
    client: TestClient, veles_id: str, name: str, created: int = 1_750_000_000
) -> None:
    data = {"id": veles_id, "name": name, "sku": f"SKU-{veles_id}"}
    assert (
        post_veles(client, veles_event("product.upserted", data, created=created)).status_code
        == 202
    )


def post(client: TestClient, path: str, body: dict[str, Any] | None = None) -> Any:
    return client.post(f"/admin/api/{path}", headers=admin_headers(), json=body)


def customer(client: TestClient, cus_id: str) -> dict[str, Any]:
    [row] = [
        row for row in admin_get(client, "customers", limit=100)["data"] if row["id"] == cus_id
    ]
    return row


def product(client: TestClient, prod_id: str) -> dict[str, Any]:
    [row] = [
        row for row in admin_get(client, "products", limit=100)["data"] if row["id"] == prod_id
    ]
    return row


# --- the Veles endpoint -------------------------------------------------------------------


def test_veles_event_is_stored_applied_and_duplicates_answered(
    client: TestClient, bridge: Context
) -> None:
    payload = veles_event("customer.upserted", {"id": "v1", "name": "Acme"})

    first = post_veles(client, payload)
    again = post_veles(client, payload)
    run_jobs(bridge)

    assert (first.status_code, first.json()) == (202, {"received": True, "duplicate": False})
    assert (again.status_code, again.json()["duplicate"]) == (202, True)
    assert [row["id"] for row in admin_get(client, "veles/customers")["data"]] == ["v1"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"id": "e1", "type": "invoice.paid", "created": 1, "data": {"id": "x"}},
            "unknown Veles event type",
        ),
        ({"id": "e1", "type": "customer.upserted", "created": 1, "data": {"id": "x"}}, "data.name"),
        ({"id": "e1", "type": "customer.upserted", "data": {"id": "x", "name": "n"}}, "created"),
        ({"type": "customer.upserted", "created": 1, "data": {"id": "x", "name": "n"}}, "'id'"),
        (
            {
                "id": "e1",
                "type": "product.upserted",
                "created": 1,
                "data": {"id": "x", "name": "n", "sku": 5},
            },
            "data.sku",
        ),
    ],
)
def test_veles_event_outside_the_contract_is_refused(
    client: TestClient, body: dict[str, Any], message: str
) -> None:
    response = post_veles(client, body)

    assert response.status_code == 400
    assert message in response.json()["error"]["message"]
    assert admin_get(client, "veles/customers")["data"] == []


def test_veles_event_with_a_bad_signature_is_refused(client: TestClient) -> None:
    response = post_veles(
        client, veles_event("customer.upserted", {"id": "v", "name": "n"}), secret="wrong"
    )

    assert response.status_code == 400


def test_veles_endpoint_refuses_everything_without_a_secret(
    database_url: str, redis_namespace: str
) -> None:
    with own_client(database_url, redis_namespace, BRIDGE_VELES_SECRET=None) as client:
        response = post_veles(client, veles_event("customer.upserted", {"id": "v", "name": "n"}))

    assert response.status_code == 400
    assert "no signing secret" in response.json()["error"]["message"]


# --- customer matching --------------------------------------------------------------------

CASES = {
    "email": (
        ("Someone Else", "Billing@Acme.example"),
        ("v_acme", "Acme", "billing@acme.example", None),
    ),
    "domain": (("Whoever", "cfo@acme.example"), ("v_acme", "Acme", "ops@acme.example", None)),
    "name": (("ACME, Inc.", "acme.billing@gmail.com"), ("v_acme", "Acme", None, None)),
}


@pytest.mark.parametrize("method", sorted(CASES))
@pytest.mark.parametrize("order", ["stripe_first", "veles_first"])
def test_either_order_leads_to_the_same_link(
    client: TestClient, bridge: Context, method: str, order: str
) -> None:
    (name, email), (veles_id, veles_name, veles_email, veles_domain) = CASES[method]
    steps = [
        lambda: stripe_customer(client, "cus_1", name, email),
        lambda: veles_customer(client, veles_id, veles_name, veles_email, veles_domain),
    ]
    for step in steps if order == "stripe_first" else reversed(steps):
        step()
        run_jobs(bridge)

    row = customer(client, "cus_1")
    assert (row["match_status"], row["veles_customer_id"], row["match_method"]) == (
        "matched",
        "v_acme",
        method,
    )


def test_stripe_and_veles_customers_applied_concurrently_still_link(
    client: TestClient, bridge: Context
) -> None:
    for n in range(20):
        stripe_customer(client, f"cus_{n}", f"Company {n}", f"billing@company{n}.example")
        veles_customer(client, f"v_{n}", f"Company {n} LLC")

    run_jobs(bridge)  # 4 worker threads, both queues at once

    rows = admin_get(client, "customers", limit=100)["data"]
    assert {row["id"]: row["veles_customer_id"] for row in rows} == {
        f"cus_{n}": f"v_{n}" for n in range(20)
    }


def test_two_candidates_leave_the_customer_for_review_with_both_kept(
    client: TestClient, bridge: Context
) -> None:
    veles_customer(client, "v_a", "Acme Europe", "eu@acme.example")
    veles_customer(client, "v_b", "Acme US", "us@acme.example")
    stripe_customer(client, "cus_1", "Acme", "ap@acme.example")
    run_jobs(bridge)

    row = customer(client, "cus_1")
    assert (row["match_status"], row["veles_customer_id"], row["candidates"]) == (
        "not_matched",
        None,
        ["v_a", "v_b"],
    )
    assert admin_get(client, "connection")["unmatched_customers"] == 1


def test_a_deleted_stripe_customer_is_not_matched(client: TestClient, bridge: Context) -> None:
    veles_customer(client, "v_acme", "Acme", "billing@acme.example")
    run_jobs(bridge)
    obj = {"id": "cus_1", "object": "customer", "name": "Acme", "email": "billing@acme.example"}
    post_event(client, event("customer.deleted", obj))
    run_jobs(bridge)

    row = customer(client, "cus_1")
    assert (row["deleted"], row["match_status"], row["veles_customer_id"]) == (
        True,
        "not_matched",
        None,
    )
    assert admin_get(client, "connection")["unmatched_customers"] == 0  # nothing to review


def test_a_veles_change_that_resolves_an_ambiguity_links_the_customer(
    client: TestClient, bridge: Context
) -> None:
    veles_customer(client, "v_a", "Acme Europe", "eu@acme.example", created=100)
    veles_customer(client, "v_b", "Acme US", "us@acme.example", created=100)
    stripe_customer(client, "cus_1", "Whoever", "ap@acme.example")
    run_jobs(bridge)

    veles_customer(client, "v_b", "Acme US", "us@acme-us.example", created=200)
    run_jobs(bridge)

    assert customer(client, "cus_1")["veles_customer_id"] == "v_a"


# --- customer review actions ----------------------------------------------------------------


def test_link_create_unlink_and_their_errors(client: TestClient, bridge: Context) -> None:
    stripe_customer(client, "cus_1", "Initech", "bill@initech.example")
    stripe_customer(client, "cus_2", "Hooli", "ap@hooli.example")
    veles_customer(client, "v_init", "Initrode")
    run_jobs(bridge)
    assert admin_get(client, "connection")["unmatched_customers"] == 2

    assert (
        post(client, "customers/cus_nope/link", {"veles_customer_id": "v_init"}).status_code == 404
    )
    assert post(client, "customers/cus_1/link", {"veles_customer_id": "v_nope"}).status_code == 404
    assert post(client, "customers/cus_1/link", {}).status_code == 400
    linked = post(client, "customers/cus_1/link", {"veles_customer_id": "v_init"})
    assert linked.status_code == 200
    assert (linked.json()["match_status"], linked.json()["veles_customer_id"]) == (
        "matched",
        "v_init",
    )
    again = post(client, "customers/cus_1/link", {"veles_customer_id": "v_init"})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"

    created = post(client, "customers/cus_2/create")
    assert created.status_code == 200
    new = created.json()["veles_customer"]
    assert (new["name"], new["email"], new["domain"]) == (
        "Hooli",
        "ap@hooli.example",
        "hooli.example",
    )
    assert created.json()["veles_customer_id"] == new["id"]
    assert post(client, "customers/cus_2/create").status_code == 409
    assert admin_get(client, "connection")["unmatched_customers"] == 0

    unlinked = post(client, "customers/cus_1/unlink")
    assert (unlinked.status_code, unlinked.json()["match_status"]) == (200, "not_matched")
    assert post(client, "customers/cus_1/unlink").status_code == 409
    assert post(client, "customers/cus_nope/unlink").status_code == 404


def test_a_manual_link_and_unlink_survive_later_syncs(client: TestClient, bridge: Context) -> None:
    stripe_customer(client, "cus_1", "Acme", "billing@acme.example", created=100)
    stripe_customer(client, "cus_2", "Globex", "ap@globex.example", created=100)
    veles_customer(client, "v_acme", "Acme", "billing@acme.example", created=100)
    veles_customer(client, "v_other", "Other")
    veles_customer(client, "v_globex", "Globex", "ap@globex.example", created=100)
    run_jobs(bridge)
    assert customer(client, "cus_1")["veles_customer_id"] == "v_acme"

    post(client, "customers/cus_1/unlink")
    post(client, "customers/cus_2/unlink")
    post(client, "customers/cus_2/link", {"veles_customer_id": "v_other"})
    stripe_customer(client, "cus_1", "Acme", "billing@acme.example", created=200)
    stripe_customer(client, "cus_2", "Globex", "ap@globex.example", created=200)
    veles_customer(client, "v_acme", "Acme", "billing@acme.example", created=200)
    veles_customer(client, "v_globex", "Globex", "ap@globex.example", created=200)
    run_jobs(bridge)

    assert (
        customer(client, "cus_1")["match_status"],
        customer(client, "cus_1")["veles_customer_id"],
    ) == ("not_matched", None)
    assert customer(client, "cus_2")["veles_customer_id"] == "v_other"


# --- product matching and review ----------------------------------------------------------


def test_products_match_by_name_and_a_rename_breaks_only_name_matches(
    client: TestClient, bridge: Context
) -> None:
    veles_product(client, "vp_pro", "Pro Plan")
    veles_product(client, "vp_team", "Team Plan")
    stripe_product(client, "prod_pro", "pro plan", created=100)
    stripe_product(client, "prod_team", "Team Plan", created=100)
    stripe_product(client, "prod_new", "Enterprise", created=100)
    run_jobs(bridge)
    assert (
        product(client, "prod_pro")["match_status"],
        product(client, "prod_pro")["veles_product_id"],
    ) == ("name_match", "vp_pro")
    assert post(client, "products/prod_new/import").status_code == 200
    post(client, "products/prod_team/unlink")
    assert (
        post(client, "products/prod_team/match", {"veles_product_id": "vp_team"}).status_code == 200
    )

    for prod_id in ("prod_pro", "prod_team", "prod_new"):
        stripe_product(client, prod_id, f"Renamed {prod_id}", created=200)
    run_jobs(bridge)

    assert (
        product(client, "prod_pro")["match_status"],
        product(client, "prod_pro")["veles_product_id"],
    ) == ("not_matched", None)
    assert (
        product(client, "prod_team")["match_status"],
        product(client, "prod_team")["veles_product_id"],
    ) == ("manual", "vp_team")
    assert product(client, "prod_new")["match_status"] == "import"
    assert admin_get(client, "connection")["unmatched_products"] == 1


def test_a_veles_product_added_later_name_matches_an_existing_stripe_product(
    client: TestClient, bridge: Context
) -> None:
    stripe_product(client, "prod_1", "Analytics Add-on")
    run_jobs(bridge)
    assert product(client, "prod_1")["match_status"] == "not_matched"

    veles_product(client, "vp_analytics", "analytics add on")
    run_jobs(bridge)

    assert product(client, "prod_1")["veles_product_id"] == "vp_analytics"


def test_import_builds_the_veles_product_from_the_stripe_product_and_its_prices(
    client: TestClient, bridge: Context
) -> None:
    stripe_product(client, "prod_1", "Widget", metadata={"sku": "WID-1"})
    for price_id, extra in (
        (
            "price_month",
            {
                "type": "recurring",
                "unit_amount": 1000,
                "recurring": {"interval": "month", "interval_count": 1},
            },
        ),
        ("price_once", {"type": "one_time", "unit_amount": 5000}),
        ("price_old", {"type": "one_time", "unit_amount": 1, "active": False}),
    ):
        obj = {
            "id": price_id,
            "object": "price",
            "product": "prod_1",
            "currency": "eur",
            "active": True,
            **extra,
        }
        post_event(client, event("price.created", obj))
    run_jobs(bridge)

    response = post(client, "products/prod_1/import")

    assert response.status_code == 200
    body = response.json()
    assert body["match_status"] == "import"
    veles = body["veles_product"]
    assert (veles["id"], veles["name"], veles["sku"], veles["unit_label"]) == (
        body["veles_product_id"],
        "Widget",
        "WID-1",
        None,
    )
    assert sorted((p["unit_amount"], p["currency"], p["interval"]) for p in veles["prices"]) == [
        (1000, "eur", "month"),
        (5000, "eur", None),
    ]
    assert post(client, "products/prod_1/import").status_code == 409


def test_import_without_a_sku_in_metadata_uses_the_stripe_id(
    client: TestClient, bridge: Context
) -> None:
    stripe_product(client, "prod_2", "Gadget")
    run_jobs(bridge)

    assert post(client, "products/prod_2/import").json()["veles_product"]["sku"] == "prod_2"


def test_inactive_products_cannot_be_matched_or_imported_until_reactivated(
    client: TestClient, bridge: Context
) -> None:
    veles_product(client, "vp_1", "Something Else")
    stripe_product(client, "prod_1", "Old Thing", active=False, created=100)
    run_jobs(bridge)

    match = post(client, "products/prod_1/match", {"veles_product_id": "vp_1"})
    imported = post(client, "products/prod_1/import")
    assert (match.status_code, imported.status_code) == (409, 409)
    assert "inactive" in match.json()["error"]["message"]
    assert admin_get(client, "connection")["unmatched_products"] == 0

    stripe_product(client, "prod_1", "Old Thing", active=True, created=200)
    run_jobs(bridge)
    assert post(client, "products/prod_1/import").status_code == 200


def test_an_inactive_product_is_not_matched_by_name(client: TestClient, bridge: Context) -> None:
    veles_product(client, "vp_1", "Legacy")
    stripe_product(client, "prod_1", "Legacy", active=False)
    run_jobs(bridge)

    assert product(client, "prod_1")["match_status"] == "not_matched"


def test_ignore_and_unignore(client: TestClient, bridge: Context) -> None:
    stripe_product(client, "prod_1", "Internal Test")
    veles_product(client, "vp_pro", "Pro")
    stripe_product(client, "prod_pro", "Pro")
    run_jobs(bridge)
    assert admin_get(client, "connection")["unmatched_products"] == 1

    assert post(client, "products/prod_pro/ignore").status_code == 409  # linked: unlink first
    ignored = post(client, "products/prod_1/ignore")
    assert (ignored.status_code, ignored.json()["match_status"]) == (200, "ignored")
    assert admin_get(client, "connection")["unmatched_products"] == 0
    assert [row["id"] for row in admin_get(client, "products", match_status="ignored")["data"]] == [
        "prod_1"
    ]

    unignored = post(client, "products/prod_1/unlink")
    assert (unignored.status_code, unignored.json()["match_status"]) == (200, "not_matched")
    assert post(client, "products/prod_1/unlink").status_code == 409
    assert admin_get(client, "connection")["unmatched_products"] == 1


def test_product_review_errors(client: TestClient, bridge: Context) -> None:
    stripe_product(client, "prod_1", "Thing")
    run_jobs(bridge)

    assert post(client, "products/prod_nope/match", {"veles_product_id": "vp"}).status_code == 404
    assert post(client, "products/prod_1/match", {"veles_product_id": "vp_nope"}).status_code == 404
    assert post(client, "products/prod_nope/import").status_code == 404
    assert post(client, "products/prod_nope/ignore").status_code == 404
    assert post(client, "products/prod_nope/unlink").status_code == 404
    assert post(client, "products/prod_1/match", {"wrong": 1}).status_code == 400


def test_lists_filter_by_match_status_and_search_by_name(
    client: TestClient, bridge: Context
) -> None:
    veles_product(client, "vp_pro", "Pro")
    stripe_product(client, "prod_pro", "Pro")
    stripe_product(client, "prod_x", "Xylophone")
    run_jobs(bridge)

    assert [r["id"] for r in admin_get(client, "products", match_status="name_match")["data"]] == [
        "prod_pro"
    ]
    assert [
        r["id"] for r in admin_get(client, "products", match_status="not_matched", q="xylo")["data"]
    ] == ["prod_x"]
    assert admin_get(client, "products", q="zzz")["data"] == []


def test_review_actions_need_the_admin_token(client: TestClient) -> None:
    response = client.post("/admin/api/products/prod_1/import")

    assert response.status_code == 401
