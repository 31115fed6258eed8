"""Logs: JSON lines with the event bound on every line of a job, and no secret or payload."""

from __future__ import annotations

import io

import orjson
from starlette.testclient import TestClient

from stripe_bridge import logs
from stripe_bridge.web.app import create_app
from tests.support import SECRET, admin_headers, event, own_bridge, post_event, run_jobs

API_KEY = "sk_test_51SuperSecretKeyValue"


def test_a_full_run_logs_bound_ids_and_no_secret_or_payload(
    database_url: str, redis_namespace: str
) -> None:
    stream = io.StringIO()
    logs.configure("json", stream=stream)
    good = event(
        "customer.created", {"id": "cus_L", "name": "Log Co", "email": "cfo@logco.example"}
    )
    bad = event("customer.updated", {"id": "cus_L", "email": "cfo@logco.example", "created": "x"})
    with (
        own_bridge(database_url, redis_namespace, STRIPE_API_KEY=API_KEY) as bridge,
        TestClient(create_app(bridge)) as client,
    ):
        post_event(client, good)
        post_event(client, bad)
        client.post("/webhooks/stripe", content=b"{}", headers={"Stripe-Signature": "t=1,v1=0"})
        client.get("/admin/api/customers", headers=admin_headers())
        run_jobs(bridge)

    text = stream.getvalue()
    lines = [orjson.loads(line) for line in text.splitlines() if line.startswith("{")]
    job_lines = [
        line
        for line in lines
        if line.get("logger") in ("stripe_bridge.inbox.apply", "stripe_bridge.inbox.batch")
    ]
    assert {line["event"] for line in job_lines} >= {"event applied", "event failed permanently"}
    for line in job_lines:
        # a line about one event names it; a line about a whole batch job names all of them
        if "stripe_event_ids" in line:
            assert set(line["stripe_event_ids"]) <= {good["id"], bad["id"]}
            assert set(line["event_types"]) <= {"customer.created", "customer.updated"}
        else:
            assert line["stripe_event_id"] in (good["id"], bad["id"])
            assert line["event_type"] in ("customer.created", "customer.updated")
    for secret in (API_KEY, SECRET, "test-admin-token", "cfo@logco.example", "Log Co"):
        assert secret not in text


def test_redaction_masks_keys_secrets_and_bearer_tokens_anywhere() -> None:
    event_dict = {
        "event": "calling with sk_live_abcdef123456 and rk_test_zzz999",
        "nested": {"header": "Bearer abc.def-ghi", "list": ["whsec_abcDEF123="]},
        "authorization": "anything",
    }

    masked = logs.redact(None, "info", event_dict)

    flat = orjson.dumps(masked).decode()
    for secret in ("abcdef123456", "zzz999", "abc.def-ghi", "abcDEF123", "anything"):
        assert secret not in flat
    assert "sk_live_" in flat  # the kind of secret stays visible
