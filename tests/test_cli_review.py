"""`stripe-bridge customers …` and `products …`: exit codes, one-line errors, --json output."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.testclient import TestClient

from stripe_bridge.context import Context
from tests.support import event, post_event, post_veles, run_jobs, veles_event


@pytest.fixture
def records(client: TestClient, bridge: Context) -> None:
    """Two Stripe customers and products (one matches), and Veles records to link to."""
    for cus_id, name, email in (
        ("cus_1", "Acme", "ap@acme.example"),
        ("cus_2", "Hooli", "x@hooli.example"),
    ):
        post_event(client, event("customer.created", {"id": cus_id, "name": name, "email": email}))
    for prod_id, name in (("prod_pro", "Pro"), ("prod_x", "Xylophone")):
        post_event(client, event("product.created", {"id": prod_id, "name": name, "active": True}))
    post_veles(client, veles_event("customer.upserted", {"id": "v_acme", "name": "Acme Inc"}))
    post_veles(client, veles_event("customer.upserted", {"id": "v_other", "name": "Other"}))
    post_veles(client, veles_event("product.upserted", {"id": "vp_pro", "name": "Pro"}))
    post_veles(client, veles_event("product.upserted", {"id": "vp_x", "name": "Marimba"}))
    run_jobs(bridge)


def test_customers_list_json_and_unmatched_filter(cli: Any, records: None) -> None:
    code, out, _ = cli("customers", "list", "--json")
    assert code == 0
    rows = {row["id"]: row for row in json.loads(out)}
    assert (rows["cus_1"]["match_status"], rows["cus_1"]["veles_customer_id"]) == (
        "matched",
        "v_acme",
    )

    code, out, _ = cli("customers", "list", "--unmatched", "--json")
    assert [row["id"] for row in json.loads(out)] == ["cus_2"]

    code, out, _ = cli("customers", "list")
    assert code == 0
    assert "MATCH_STATUS" in out and "cus_2" in out and "not_matched" in out


def test_customers_link_create_unlink(cli: Any, records: None) -> None:
    code, out, _ = cli("customers", "link", "cus_2", "v_other", "--json")
    assert code == 0
    assert json.loads(out)["veles_customer_id"] == "v_other"

    code, out, err = cli("customers", "link", "cus_2", "v_other")
    assert code == 1
    assert err.count("\n") == 1 and "already linked" in err

    code, out, _ = cli("customers", "unlink", "cus_2")
    assert (code, out.strip()) == (0, "cus_2: not_matched")

    code, out, _ = cli("customers", "create", "cus_2", "--json")
    assert code == 0
    created = json.loads(out)
    assert created["veles_customer"]["name"] == "Hooli"
    assert created["match_status"] == "matched"


@pytest.mark.parametrize(
    "argv",
    [
        ("customers", "link", "cus_nope", "v_acme"),
        ("customers", "link", "cus_2", "v_nope"),
        ("customers", "create", "cus_nope"),
        ("customers", "unlink", "cus_2"),
        ("products", "match", "prod_nope", "vp_x"),
        ("products", "import", "prod_pro"),
        ("products", "ignore", "prod_nope"),
        ("products", "unlink", "prod_x"),
    ],
)
def test_review_errors_exit_non_zero_with_one_line(
    cli: Any, records: None, argv: tuple[str, ...]
) -> None:
    code, out, err = cli(*argv)

    assert code == 1
    assert out == ""
    assert err.startswith("stripe-bridge: ") and err.count("\n") == 1


def test_products_list_match_import_ignore_unlink(cli: Any, records: None) -> None:
    code, out, _ = cli("products", "list", "--unmatched", "--json")
    assert (code, [row["id"] for row in json.loads(out)]) == (0, ["prod_x"])
    code, out, _ = cli("products", "list", "--q", "pro", "--json")
    assert [(row["id"], row["match_status"]) for row in json.loads(out)] == [
        ("prod_pro", "name_match")
    ]

    code, out, _ = cli("products", "match", "prod_x", "vp_x")
    assert (code, out.strip()) == (0, "prod_x: manual vp_x")
    code, out, _ = cli("products", "unlink", "prod_x")
    assert (code, out.strip()) == (0, "prod_x: not_matched")
    code, out, _ = cli("products", "import", "prod_x", "--json")
    assert code == 0
    body = json.loads(out)
    assert (
        body["match_status"],
        body["veles_product"]["name"],
        body["veles_product"]["unit_label"],
    ) == ("import", "Xylophone", None)
    code, out, _ = cli("products", "unlink", "prod_x")
    code, out, _ = cli("products", "ignore", "prod_x")
    assert (code, out.strip()) == (0, "prod_x: ignored")
    code, out, _ = cli("products", "list", "--unmatched", "--json")
    assert json.loads(out) == []


def test_status_reports_unmatched_counts(cli: Any, records: None) -> None:
    code, out, _ = cli("status", "--json")

    assert code == 0
    status = json.loads(out)
    assert (status["unmatched_customers"], status["unmatched_products"]) == (1, 1)
