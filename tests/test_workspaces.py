"""Workspaces: two tenants in one deployment, each with its own Stripe account, holding the
same Veles ids and the same Stripe ids, and nothing crossing between them: reads, matching,
applying, pushing, counts, dead letters, replays, tokens."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import dramatiq
import orjson
import pytest
from starlette.testclient import TestClient
from stripe import StripeClient

from stripe_bridge import workspaces
from stripe_bridge.context import Context
from stripe_bridge.inbox.door import Incoming, parse_event, sign
from stripe_bridge.inbox.store import store
from stripe_bridge.jobs import APPLY_BULK_EVENTS
from stripe_bridge.models import Customer, OutboxRow, StripeEvent, VelesOrder, utcnow
from stripe_bridge.outbox.relay import claim
from stripe_bridge.roles.threads import worker
from stripe_bridge.sync import run_sync
from stripe_bridge.web.app import create_app
from tests.fake_stripe import FakeStripe
from tests.support import (
    LIVE_KEY,
    OTHER_ACCOUNT_KEY,
    SECRET,
    TEST_KEY,
    VELES_SECRET,
    admin_headers,
    count_rows,
    event,
    own_bridge,
    queued_event_ids,
    queued_jobs,
    relay_for,
    run_jobs,
    signed_headers,
    veles_event,
    wait_until,
)

SECRET_B = "whsec_test_workspace_b_0123456789"


def api(client: TestClient, method: str, path: str, token: str | None = None, **kw: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else admin_headers()
    return client.request(method, f"/admin/api{path}", headers=headers, **kw)


def create(client: TestClient, workspace_id: str) -> None:
    response = api(client, "POST", "/workspaces", json={"id": workspace_id, "name": workspace_id})
    assert response.status_code == 201, response.text


def connect(client: TestClient, workspace_id: str, api_key: str, secret: str) -> dict[str, Any]:
    response = api(
        client,
        "PUT",
        f"/workspaces/{workspace_id}/connection",
        json={"api_key": api_key, "webhook_secret": secret},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def post_to(client: TestClient, workspace_id: str, payload: dict[str, Any], secret: str) -> Any:
    body = orjson.dumps(payload)
    return client.post(
        f"/webhooks/stripe/{workspace_id}", content=body, headers=signed_headers(body, secret)
    )


def post_veles(client: TestClient, payload: dict[str, Any]) -> Any:
    body = orjson.dumps(payload)
    headers = {"Veles-Signature": sign(body, VELES_SECRET, int(time.time()))}
    return client.post("/veles/events", content=body, headers=headers)


def customer_event(customer_id: str, name: str, email: str) -> dict[str, Any]:
    obj = {"id": customer_id, "object": "customer", "name": name, "email": email, "metadata": {}}
    return event("customer.created", obj)


@pytest.fixture
def two(client: TestClient, bridge: Context) -> TestClient:
    """Workspaces `acme` and `globex`, connected to two different Stripe accounts."""
    for workspace_id, key, secret in (
        ("acme", TEST_KEY, SECRET),
        ("globex", OTHER_ACCOUNT_KEY, SECRET_B),
    ):
        create(client, workspace_id)
        connect(client, workspace_id, key, secret)
    return client


def test_the_same_ids_in_two_workspaces_stay_apart(two: TestClient, bridge: Context) -> None:
    # Given: the same Veles customer id and the same Stripe customer id in both workspaces
    for workspace_id, email in (("acme", "ann@acme.example"), ("globex", "gus@globex.example")):
        veles = veles_event("customer.upserted", {"id": "v_1", "name": "Hooli", "email": email})
        assert post_veles(two, {**veles, "workspace_id": workspace_id}).status_code == 202
    run_jobs(bridge)
    acme = customer_event("cus_same", "Hooli (Acme's)", "ann@acme.example")
    globex = customer_event("cus_same", "Hooli (Globex's)", "nobody@elsewhere.example")

    # When: each workspace's Stripe account delivers to its own endpoint
    assert post_to(two, "acme", acme, SECRET).status_code == 200
    assert post_to(two, "globex", globex, SECRET_B).status_code == 200
    run_jobs(bridge)

    # Then: each reads its own record, matched against its own Veles customers only
    [a] = api(two, "GET", "/workspaces/acme/customers").json()["data"]
    [g] = api(two, "GET", "/workspaces/globex/customers").json()["data"]
    assert (a["name"], a["match_status"], a["veles_customer_id"]) == (
        "Hooli (Acme's)",
        "matched",
        "v_1",
    )
    # globex's Stripe customer has Acme's Veles customer's email in no workspace of its own
    assert (g["name"], g["match_status"]) == ("Hooli (Globex's)", "not_matched")
    assert api(two, "GET", "/workspaces/acme/connection").json()["unmatched_customers"] == 0
    assert api(two, "GET", "/workspaces/globex/connection").json()["unmatched_customers"] == 1
    # the default workspace holds nothing of either
    assert api(two, "GET", "/customers").json()["data"] == []
    assert count_rows(bridge, Customer) == 2


def test_one_job_applies_several_workspaces_events_each_in_its_own(
    two: TestClient, bridge: Context, database_url: str, redis_namespace: str
) -> None:
    # Given: the web's job sender holds deliveries of both workspaces, for the same Stripe id
    acme = customer_event("cus_same", "Hooli (Acme's)", "ann@acme.example")
    globex = customer_event("cus_same", "Hooli (Globex's)", "gus@globex.example")
    lingering = own_bridge(database_url, redis_namespace, BRIDGE_ENQUEUE_LINGER_MS="60000")
    with lingering as web, TestClient(create_app(web)) as client:
        assert post_to(client, "acme", acme, SECRET).status_code == 200
        assert post_to(client, "globex", globex, SECRET_B).status_code == 200
    # the app stopped: what waited went out as one job carrying both workspaces' keys
    assert queued_jobs(bridge) == 1
    assert sorted(queued_event_ids(bridge)) == sorted([acme["id"], globex["id"]])

    # When: a worker runs it
    run_jobs(bridge)

    # Then: each event is applied in its own workspace, in one transaction
    [a] = api(two, "GET", "/workspaces/acme/customers").json()["data"]
    [g] = api(two, "GET", "/workspaces/globex/customers").json()["data"]
    assert (a["name"], g["name"]) == ("Hooli (Acme's)", "Hooli (Globex's)")
    for workspace_id in ("acme", "globex"):
        events = api(two, "GET", f"/workspaces/{workspace_id}/events").json()["data"]
        assert [event["status"] for event in events] == ["processed"]


def test_a_workspace_secret_does_not_open_another_workspace(
    two: TestClient, bridge: Context
) -> None:
    payload = customer_event("cus_x", "X", "x@example.com")

    wrong = post_to(two, "globex", payload, SECRET)  # acme's secret at globex's door
    unknown = post_to(two, "initech", payload, SECRET)

    assert wrong.status_code == 400
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "unknown_workspace"
    assert count_rows(bridge, StripeEvent) == 0


def test_veles_events_name_their_workspace(two: TestClient, bridge: Context) -> None:
    data = {"id": "v_2", "name": "Initech"}
    unknown = post_veles(two, {**veles_event("customer.upserted", data), "workspace_id": "initech"})
    same_id = veles_event("customer.upserted", data)

    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "unknown_workspace"
    # one event id is unique within its workspace: the same id in two workspaces is two events
    assert post_veles(two, {**same_id, "workspace_id": "acme"}).json()["duplicate"] is False
    assert post_veles(two, {**same_id, "workspace_id": "globex"}).json()["duplicate"] is False
    assert post_veles(two, {**same_id, "workspace_id": "globex"}).json()["duplicate"] is True
    assert post_veles(two, same_id).json()["duplicate"] is False  # absent: `default`
    run_jobs(bridge)
    for workspace_id in ("acme", "globex", "default"):
        [record] = api(two, "GET", f"/workspaces/{workspace_id}/veles/customers").json()["data"]
        assert record["name"] == "Initech"


def test_an_order_is_pushed_to_its_own_workspace_account(
    two: TestClient, bridge: Context, fake_stripe: FakeStripe
) -> None:
    # Given: both workspaces know Veles customer v_1 and product vp_1; only acme's product is
    # imported from its Stripe account, so only acme can push an order for it
    for workspace_id in ("acme", "globex"):
        for event_type, data in (
            ("customer.upserted", {"id": "v_1", "name": "Hooli", "email": "h@hooli.example"}),
            ("product.upserted", {"id": "vp_1", "name": "Seats"}),
        ):
            body = {**veles_event(event_type, data), "workspace_id": workspace_id}
            assert post_veles(two, body).status_code == 202
    run_jobs(bridge)
    stripe = StripeClient(TEST_KEY, base_addresses={"api": fake_stripe.url}, max_network_retries=0)
    stripe.v1.products.create(params={"name": "Seats"})
    assert run_sync(bridge, "acme", "products").seen == 1  # with acme's key, into acme's mirror
    assert run_sync(bridge, "globex", "products").seen == 0
    order = {
        "id": "ord_1",
        "customer_id": "v_1",
        "currency": "usd",
        "lines": [{"product_id": "vp_1", "quantity": 2, "unit_amount": 500}],
    }

    # When: the same order id is committed in both
    for workspace_id in ("acme", "globex"):
        body = {**veles_event("order.committed", order), "workspace_id": workspace_id}
        assert post_veles(two, body).status_code == 202
    run_jobs(bridge)
    relay_for(bridge).drain()

    # Then: acme's order became an invoice in acme's account; globex's is a dead letter of
    # globex alone (its product has no Stripe link there), and nothing went to globex's account
    acme = api(two, "GET", "/workspaces/acme/orders/ord_1").json()
    globex = api(two, "GET", "/workspaces/globex/orders/ord_1").json()
    assert acme["invoice_status"] == "open"
    assert globex["stripe_invoice_id"] is None
    invoices = fake_stripe.objects("invoice")
    assert (
        len(invoices) == 1 and fake_stripe.objects("invoice", account="acct_1SomeoneElse00") == []
    )
    assert [d["id"] for d in api(two, "GET", "/workspaces/globex/dead-letters").json()["data"]] == [
        f"outbox:{globex['outbox'][0]['id']}"
    ]
    assert api(two, "GET", "/workspaces/acme/dead-letters").json()["data"] == []
    # a workspace cannot replay another's dead letter: it does not exist there
    ref = f"outbox:{globex['outbox'][0]['id']}"
    assert api(two, "POST", f"/workspaces/acme/dead-letters/{ref}/replay").status_code == 404
    assert count_rows(bridge, VelesOrder) == 2


def test_a_workspace_token_sees_only_its_workspace(two: TestClient) -> None:
    response = api(two, "POST", "/workspaces/acme/tokens")
    assert response.status_code == 201
    token = response.json()["token"]

    assert api(two, "GET", "/workspaces/acme/customers", token).status_code == 200
    assert api(two, "GET", "/workspaces/globex/customers", token).status_code == 404
    assert api(two, "GET", "/customers", token).status_code == 404  # `default` is another's
    assert [w["id"] for w in api(two, "GET", "/workspaces", token).json()["data"]] == ["acme"]
    assert api(two, "POST", "/workspaces", token, json={"id": "mine"}).status_code == 401
    assert api(two, "GET", "/workspaces/acme/customers", "sbw_not-a-token").status_code == 401


def test_one_account_belongs_to_one_workspace(two: TestClient) -> None:
    create(two, "initech")

    response = api(
        two,
        "PUT",
        "/workspaces/initech/connection",
        json={"api_key": TEST_KEY, "webhook_secret": SECRET_B},
    )  # acme holds this account

    assert response.status_code == 409
    assert "another workspace" in response.json()["error"]["message"]
    # disconnected, the account may move
    assert api(two, "DELETE", "/workspaces/acme/connection").status_code == 200
    moved = api(
        two,
        "PUT",
        "/workspaces/initech/connection",
        json={"api_key": TEST_KEY, "webhook_secret": SECRET_B},
    )
    assert moved.status_code == 200 and moved.json()["workspace_id"] == "initech"


def test_workspaces_are_created_listed_and_deleted_only_while_disconnected(
    two: TestClient, bridge: Context
) -> None:
    assert (
        post_to(two, "globex", customer_event("cus_g", "G", "g@g.example"), SECRET_B).status_code
        == 200
    )
    run_jobs(bridge)

    listed = {w["id"]: w["status"] for w in api(two, "GET", "/workspaces").json()["data"]}
    duplicate = api(two, "POST", "/workspaces", json={"id": "acme"})
    reserved = api(two, "POST", "/workspaces", json={"id": "connect"})
    malformed = api(two, "POST", "/workspaces", json={"id": "no spaces"})
    connected = api(two, "DELETE", "/workspaces/globex")
    api(two, "DELETE", "/workspaces/globex/connection")
    deleted = api(two, "DELETE", "/workspaces/globex")

    assert listed == {"acme": "connected", "default": "not_connected", "globex": "connected"}
    assert (duplicate.status_code, reserved.status_code, malformed.status_code) == (409, 400, 400)
    assert connected.status_code == 409
    assert deleted.status_code == 200
    assert api(two, "GET", "/workspaces/globex/customers").status_code == 404
    assert count_rows(bridge, Customer) == 0  # its records went with it
    assert api(two, "DELETE", "/workspaces/default").status_code == 409


def test_the_cli_acts_on_the_workspace_it_is_given(cli: Any, fake_stripe: FakeStripe) -> None:
    assert cli("workspaces", "create", "acme", "--name", "Acme Inc")[0] == 0
    before = cli(
        "--workspace", "acme", "connect", "--api-key", TEST_KEY, "--webhook-secret", SECRET
    )
    after = cli("status", "--json", "--workspace", "acme")
    default = cli("status", "--json")
    unknown = cli("status", "--workspace", "initech")
    listed = cli("workspaces", "list", "--json")
    token = cli("workspaces", "token", "acme")

    assert before[0] == 0, before
    assert orjson.loads(after[1])["status"] == "connected"
    assert orjson.loads(after[1])["workspace_id"] == "acme"
    assert orjson.loads(default[1])["status"] == "not_connected"
    assert unknown[0] == 1 and "no workspace 'initech'" in unknown[2]
    assert {w["id"]: w["status"] for w in orjson.loads(listed[1])} == {
        "acme": "connected",
        "default": "not_connected",
    }
    assert token[0] == 0 and token[1].startswith("sbw_")
    assert cli("workspaces", "delete", "acme")[0] == 1  # still connected


def test_a_workspace_connected_without_a_secret_or_public_url_is_refused(two: TestClient) -> None:
    create(two, "initech")

    response = api(two, "PUT", "/workspaces/initech/connection", json={"api_key": LIVE_KEY})

    assert response.status_code == 400
    assert "BRIDGE_PUBLIC_URL" in response.json()["error"]["message"]
    assert api(two, "GET", "/workspaces/initech/connection").json()["status"] == "not_connected"


def test_replays_of_one_workspace_do_not_hold_back_anothers_live_events(bridge: Context) -> None:
    # Given: 2,000 of acme's events replayed (bulk), then one live delivery of globex's
    with bridge.session_factory.begin() as session:
        for workspace_id in ("acme", "globex"):
            workspaces.create(session, workspace_id)
        bulk = [incoming("acme", customer_event(f"cus_{n}", f"C{n}", f"c{n}@acme.example"))
                for n in range(2000)]  # fmt: skip
        live = incoming("globex", customer_event("cus_live", "Live", "l@globex.example"))
        store(session, StripeEvent, [*bulk, live])
    for start in range(0, len(bulk), 100):
        ids = [item.id for item in bulk[start : start + 100]]
        bridge.jobs.send_events("acme", ids, bulk=True)
    bridge.jobs.send_events("globex", [live.id])

    # When: one worker thread takes the jobs
    worker = dramatiq.Worker(bridge.broker, worker_threads=1, worker_timeout=10)
    worker.start()
    try:
        assert wait_until(lambda: status_of(bridge, "globex", live.id) == "processed", 30)
        applied_of_acme = count_rows(bridge, Customer, Customer.workspace_id == "acme")
    finally:
        worker.stop()

    # Then: globex's event went ahead of most of acme's backlog (one job of it at most before)
    assert applied_of_acme <= 200


def incoming(workspace_id: str, payload: dict[str, Any]) -> Incoming:
    item = parse_event(orjson.dumps(payload))
    item.workspace_id = workspace_id
    return item


def status_of(bridge: Context, workspace_id: str, event_id: str) -> str | None:
    with bridge.session_factory() as session:
        row = session.get(StripeEvent, (workspace_id, event_id))
        return row.status if row is not None else None


def test_the_relay_lets_workspaces_take_turns(two: TestClient, bridge: Context) -> None:
    # Given: 30 rows of acme waiting, then one of globex
    with bridge.session_factory.begin() as session:
        for workspace_id, count in (("acme", 30), ("globex", 1)):
            for n in range(count):
                session.add(outbox_row(workspace_id, n))

    # When: the relay claims rows one after another
    order: list[str] = []
    with bridge.session_factory.begin() as session:
        served = ""
        for _ in range(4):
            row = claim(session, timedelta(minutes=5), served)
            assert row is not None
            order.append(served := row.workspace_id)

    # Then: globex's one row is the second taken, not the 31st
    assert order == ["acme", "globex", "acme", "acme"]


def outbox_row(workspace_id: str, n: int) -> OutboxRow:
    return OutboxRow(
        workspace_id=workspace_id,
        aggregate_type="order",
        aggregate_id=f"ord_{n}",
        kind="order.invoice",
        payload={},
        status="pending",
        attempts=0,
        next_attempt_at=utcnow(),
        created_at=utcnow(),
    )


def test_a_worker_takes_only_the_queues_it_is_given(cli: Any) -> None:
    code, _out, err = cli("worker", "--queues", "sync,nope")

    assert code == 1
    assert "unknown queue(s) nope" in err and "stripe-events-bulk" in err


def test_an_operator_revokes_a_workspaces_tokens(two: TestClient) -> None:
    token = api(two, "POST", "/workspaces/acme/tokens").json()["token"]
    assert api(two, "GET", "/workspaces/acme/customers", token).status_code == 200

    revoked = api(two, "DELETE", "/workspaces/acme/tokens")

    assert revoked.json() == {"revoked": 1}
    assert api(two, "GET", "/workspaces/acme/customers", token).status_code == 401
    assert api(two, "DELETE", "/workspaces/acme/tokens", token).status_code == 401


def test_an_event_of_a_deleted_workspace_is_not_applied(two: TestClient, bridge: Context) -> None:
    create(two, "initech")
    with bridge.session_factory.begin() as session:
        store(session, StripeEvent, [incoming("initech", customer_event("cus_i", "I", "i@i.ex"))])
    assert api(two, "DELETE", "/workspaces/initech").status_code == 200
    with bridge.session_factory.begin() as session:  # stored after the delete (a stale cache)
        late = incoming("initech", customer_event("cus_late", "Late", "l@i.ex"))
        store(session, StripeEvent, [late])

    bridge.jobs.send_events("initech", [late.id])
    run_jobs(bridge)

    assert status_of(bridge, "initech", late.id) == "ignored"
    assert count_rows(bridge, Customer, Customer.workspace_id == "initech") == 0


def test_an_event_of_another_account_at_a_workspaces_door_is_not_applied(
    two: TestClient, bridge: Context
) -> None:
    """A key-mode endpoint that also listens to connected accounts (Connect) delivers their
    events with `account`: their objects are not the workspace's, and are not mirrored."""
    acme_account = api(two, "GET", "/workspaces/acme/connection").json()["account_id"]
    own = {**customer_event("cus_own", "Own", "o@acme.example"), "account": acme_account}
    other = {**customer_event("cus_theirs", "Theirs", "t@else.example"), "account": "acct_else"}

    assert post_to(two, "acme", own, SECRET).status_code == 200
    assert post_to(two, "acme", other, SECRET).status_code == 200
    run_jobs(bridge)

    assert status_of(bridge, "acme", own["id"]) == "processed"
    assert status_of(bridge, "acme", other["id"]) == "ignored"
    with bridge.session_factory() as session:
        row = session.get(StripeEvent, ("acme", other["id"]))
        assert row is not None
        assert row.reason == f"other account: acct_else, workspace is connected to {acme_account}"
        assert session.get(Customer, ("acme", "cus_theirs")) is None
        assert session.get(Customer, ("acme", "cus_own")) is not None


def test_bulk_work_never_takes_every_thread_of_a_worker(
    database_url: str, redis_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given: a worker of 2 threads (1 for bulk work), and bulk jobs that take long
    with own_bridge(database_url, redis_namespace, BRIDGE_BULK_THREADS="1") as bridge:
        with bridge.session_factory.begin() as session:
            workspaces.create(session, "globex")
            live = [
                incoming("globex", customer_event(f"cus_{n}", f"L{n}", f"l{n}@globex.example"))
                for n in range(3)
            ]
            store(session, StripeEvent, live)
        release, running, most, done = threading.Event(), [0], [0], [0]
        guard = threading.Lock()

        def long_bulk_job(event_ids: list[Any], workspace_id: str = "default") -> None:
            with guard:
                running[0] += 1
                most[0] = max(most[0], running[0])
            release.wait(20)
            with guard:
                running[0] -= 1
                done[0] += 1

        monkeypatch.setattr(bridge.broker.get_actor(APPLY_BULK_EVENTS), "fn", long_bulk_job)
        for n in range(6):
            bridge.jobs.send_events("acme", [f"evt_bulk_{n}"], bulk=True)

        # When: the worker runs, and live deliveries come while the bulk jobs hold on
        with worker(bridge, threads=2):
            assert wait_until(lambda: running[0] == 1, 10)
            for item in live:
                bridge.jobs.send_events("globex", [item.id])
            applied = wait_until(
                lambda: all(status_of(bridge, "globex", i.id) == "processed" for i in live), 10
            )
            bulk_still_running = running[0]
            release.set()
            assert wait_until(lambda: done[0] == 6, 20)  # then the bulk work goes on

        # Then: the live events were applied while bulk work held its one thread
        assert applied
        assert bulk_still_running == 1
        assert most[0] == 1
