"""Nothing lost, nothing twice: concurrent deliveries, a broker outage, failing handlers."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from stripe_bridge.context import Context
from stripe_bridge.event import Event
from stripe_bridge.inbox.apply import apply_event
from stripe_bridge.models import Customer, StripeEvent, VelesEvent, utcnow
from stripe_bridge.roles.scheduler import sweep
from stripe_bridge.web.app import create_app
from tests.support import (
    all_rows,
    event,
    own_bridge,
    own_client,
    post_event,
    post_veles,
    queued_event_ids,
    queued_jobs,
    run_jobs,
    signed_headers,
    veles_event,
)

CUSTOMER = {"id": "cus_C", "object": "customer", "name": "Conc", "email": "c@conc.example"}


def deliver_concurrently(bridge: Context, bodies: list[bytes]) -> list[httpx.Response]:
    """Every body signed and posted at once to one app (its lifespan running), over ASGI."""
    app = create_app(bridge)

    async def deliver_all() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as http:
                return await asyncio.gather(
                    *(
                        http.post("/webhooks/stripe", content=body, headers=signed_headers(body))
                        for body in bodies
                    )
                )

    return asyncio.run(deliver_all())


def test_fifty_concurrent_deliveries_of_one_event_store_one_row_and_one_job(
    bridge: Context,
) -> None:
    body = orjson.dumps(event("customer.created", CUSTOMER))

    responses = deliver_concurrently(bridge, [body] * 50)

    assert [response.status_code for response in responses] == [200] * 50
    duplicates = [response.json()["duplicate"] for response in responses]
    assert duplicates.count(False) == 1
    assert len(all_rows(bridge, StripeEvent)) == 1
    assert queued_jobs(bridge) == 1
    assert queued_event_ids(bridge) == [all_rows(bridge, StripeEvent)[0].id]


def test_concurrent_deliveries_of_different_events_each_store_once(bridge: Context) -> None:
    payloads = [event("customer.created", {**CUSTOMER, "id": f"cus_{n}"}) for n in range(40)]
    bodies = [orjson.dumps(payload) for payload in payloads] * 2  # every event twice

    responses = deliver_concurrently(bridge, bodies)

    assert all(response.status_code == 200 for response in responses)
    assert sum(not response.json()["duplicate"] for response in responses) == 40
    assert len(all_rows(bridge, StripeEvent)) == 40
    # every event is in exactly one job; jobs carry whole group-commit batches
    assert sorted(queued_event_ids(bridge)) == sorted(payload["id"] for payload in payloads)
    assert queued_jobs(bridge) <= 40


def test_broker_down_during_delivery_is_answered_and_swept_later(
    database_url: str, redis_namespace: str, bridge: Context
) -> None:
    payload = event("customer.created", CUSTOMER)
    with own_client(
        database_url, redis_namespace, BRIDGE_REDIS_URL="redis://127.0.0.1:1/0"
    ) as client:
        response = post_event(client, payload)
    assert response.status_code == 200
    assert [row.status for row in all_rows(bridge, StripeEvent)] == ["received"]
    assert queued_jobs(bridge) == 0

    with own_bridge(database_url, redis_namespace, BRIDGE_SWEEP_GRACE="0") as recovered:
        swept = sweep(recovered)
        run_jobs(recovered)
        again = sweep(recovered)

    assert swept == 1
    assert again == 0
    [row] = all_rows(bridge, StripeEvent)
    assert row.status == "processed"
    with bridge.session_factory() as session:
        assert session.get(Customer, ("default", "cus_C")) is not None


def test_sweeper_leaves_fresh_events_to_their_own_job(client: TestClient, bridge: Context) -> None:
    post_event(client, event("customer.created", CUSTOMER))

    assert sweep(bridge) == 0  # default grace: 60 s
    assert queued_jobs(bridge) == 1


def test_a_sweep_while_the_broker_is_down_leaves_the_events_due_for_the_next_one(
    database_url: str, redis_namespace: str, bridge: Context, client: TestClient
) -> None:
    post_event(client, event("customer.created", CUSTOMER))
    lost = queued_event_ids(bridge)
    bridge.broker.flush_all()  # the job was lost
    assert len(lost) == 1

    with own_bridge(
        database_url,
        redis_namespace,
        BRIDGE_SWEEP_GRACE="0",
        BRIDGE_REDIS_URL="redis://127.0.0.1:1/0",
    ) as down:
        assert sweep(down) == 0
    [row] = all_rows(bridge, StripeEvent)
    assert (row.status, row.enqueued_at) == ("received", None)  # not waiting for a grace again

    with own_bridge(database_url, redis_namespace, BRIDGE_SWEEP_GRACE="0") as up:
        assert sweep(up) == 1
    assert queued_event_ids(bridge) == lost


def test_the_sweeper_marks_its_events_before_their_job_can_run(
    database_url: str, redis_namespace: str, bridge: Context, client: TestClient
) -> None:
    """A job that found its rows locked by the sweeper's bookkeeping would skip them as
    another job's; so by the time the job is sent, the marking is committed."""
    post_event(client, event("customer.created", CUSTOMER))
    bridge.broker.flush_all()
    seen: list[tuple[str, Any]] = []
    with own_bridge(database_url, redis_namespace, BRIDGE_SWEEP_GRACE="0") as sweeper:
        real_enqueue = sweeper.jobs.send_events

        def enqueue_and_look(workspace_id: str, ids: Any, inbox: Any = StripeEvent) -> list[str]:
            with bridge.engine.connect() as other:  # what a worker would see at this moment
                seen.extend(
                    other.execute(
                        select(StripeEvent.id, StripeEvent.enqueued_at).with_for_update(nowait=True)
                    ).all()
                )
            return real_enqueue(workspace_id, ids, inbox)

        sweeper.jobs.send_events = enqueue_and_look  # type: ignore[method-assign]
        assert sweep(sweeper) == 1
    [(_event_id, enqueued_at)] = seen  # not locked (NOWAIT would have raised), and marked
    assert enqueued_at is not None
    run_jobs(bridge)
    assert [row.status for row in all_rows(bridge, StripeEvent)] == ["processed"]


def test_malformed_object_fails_permanently_and_is_not_retried(
    client: TestClient, bridge: Context
) -> None:
    payload = event("customer.created", {**CUSTOMER, "created": "yesterday"})
    post_event(client, payload)

    run_jobs(bridge)

    [row] = all_rows(bridge, StripeEvent)
    assert row.status == "failed"
    assert row.attempts == 1
    assert "unix timestamp" in (row.last_error or "")
    assert queued_jobs(bridge) == 0
    with bridge.session_factory() as session:
        assert session.get(Customer, ("default", "cus_C")) is None  # nothing half-written


def test_transient_failure_is_retried_with_backoff_then_applied(
    client: TestClient, bridge: Context
) -> None:
    real = bridge.handlers["customer.created"]
    calls: list[str] = []

    def flaky(event: Event, session: Session) -> None:
        calls.append(event.id)
        if len(calls) <= 2:
            raise OperationalError("SELECT 1", {}, Exception("connection reset"))
        real(event, session)

    bridge.handlers["customer.created"] = flaky
    post_event(client, event("customer.created", CUSTOMER))

    run_jobs(bridge)

    # 1: the batch fails; 2: its events are tried one by one at once, this one fails again
    # and is recorded; 3: the job's retry, after its backoff, applies it
    [row] = all_rows(bridge, StripeEvent)
    assert len(calls) == 3
    assert (row.status, row.attempts, row.last_error) == ("processed", 2, None)


def test_transient_failure_on_the_last_attempt_marks_the_event_failed(
    client: TestClient, bridge: Context
) -> None:
    def broken(_event: Event, _session: Session) -> None:
        raise OperationalError("SELECT 1", {}, Exception("database went away"))

    bridge.handlers["customer.created"] = broken
    payload = event("customer.created", CUSTOMER)
    post_event(client, payload)

    with pytest.raises(OperationalError):
        apply_event(
            bridge.session_factory, bridge.handlers, "default", payload["id"], max_attempts=2
        )
    assert all_rows(bridge, StripeEvent)[0].status == "received"
    status = apply_event(
        bridge.session_factory, bridge.handlers, "default", payload["id"], max_attempts=2
    )

    [row] = all_rows(bridge, StripeEvent)
    assert status == row.status == "failed"
    assert row.attempts == 2
    assert "database went away" in (row.last_error or "")


def test_status_and_attempts_are_visible_in_the_inbox(client: TestClient, bridge: Context) -> None:
    post_event(client, event("customer.created", CUSTOMER))
    post_event(client, event("customer.created", {**CUSTOMER, "created": "bad"}))
    post_event(client, event("charge.succeeded", {"id": "ch_1"}))
    run_jobs(bridge)

    with bridge.session_factory() as session:
        counts = dict(
            session.execute(
                select(StripeEvent.status, func.count()).group_by(StripeEvent.status)
            ).all()
        )
    assert counts == {"processed": 1, "failed": 1, "ignored": 1}


@pytest.mark.parametrize(
    ("family", "obj", "reason"),
    [
        ("customer.created", {**CUSTOMER, "created": 2**70}, "timestamp"),
        (
            "invoice.created",
            {"id": "in_X", "object": "invoice", "status": "draft", "amount_due": 2**70},
            "amount_due",
        ),
        (
            "invoice.created",
            {"id": "in_X", "object": "invoice", "status": "draft", "amount_due": 2**63 + 7},
            "amount_due",
        ),
        (
            "invoice.created",
            {"id": "in_X", "object": "invoice", "status": "draft", "amount_due": "lots"},
            "amount",
        ),
        ("customer.created", {**CUSTOMER, "metadata": ["not", "an", "object"]}, "metadata"),
    ],
)
def test_a_payload_value_that_can_never_be_applied_fails_at_once_and_alone(
    client: TestClient, bridge: Context, family: str, obj: dict[str, Any], reason: str
) -> None:
    """Given a batch with one event whose value is out of range or of the wrong type, when its
    job runs, that event is failed at once with the reason and the others are applied."""
    bad = event(family, obj)
    good = event("customer.created", {**CUSTOMER, "id": "cus_Good"})
    for body in (json.dumps(bad).encode(), orjson.dumps(good)):  # orjson stops at 64 bits
        response = client.post("/webhooks/stripe", content=body, headers=signed_headers(body))
        assert response.status_code == 200

    run_jobs(bridge, timeout_ms=10_000)

    rows = {row.id: row for row in all_rows(bridge, StripeEvent)}
    assert (rows[bad["id"]].status, rows[bad["id"]].attempts) == ("failed", 1)
    assert reason in (rows[bad["id"]].last_error or "")
    assert rows[good["id"]].status == "processed"
    assert queued_jobs(bridge) == 0


def _always_down(_event: Event, _session: Session) -> None:
    raise OperationalError("SELECT 1", {}, Exception("database went away"))


@pytest.mark.parametrize("inbox", [StripeEvent, VelesEvent], ids=["stripe", "veles"])
def test_an_event_failing_transiently_is_a_dead_letter_after_its_attempts_even_when_resent(
    client: TestClient, bridge: Context, admin_engine: Any, inbox: type[Any]
) -> None:
    """Given an event that failed on every attempt but its last, whose job was lost, when the
    sweeper sends it again in a new job and it fails once more, it is failed for good (the
    attempts are counted on the event, not on the job's message), and never sent again."""
    if inbox is StripeEvent:
        bridge.handlers["customer.created"] = _always_down
        payload = event("customer.created", CUSTOMER)
        assert post_event(client, payload).status_code == 200
    else:
        bridge.veles_handlers["customer.upserted"] = _always_down
        payload = veles_event("customer.upserted", {"id": "v_1", "name": "Acme"})
        assert post_veles(client, payload).status_code == 202
    limit = bridge.settings.event_max_attempts
    with admin_engine.begin() as connection:
        connection.execute(
            inbox.__table__.update()
            .where(inbox.id == payload["id"])
            .values(attempts=limit - 1, enqueued_at=None, received_at=utcnow() - timedelta(hours=1))
        )
    bridge.broker.flush_all()

    assert sweep(bridge) == 1
    run_jobs(bridge, timeout_ms=10_000)

    with bridge.session_factory() as session:
        row = session.get(inbox, ("default", payload["id"]))
    assert row is not None
    assert (row.status, row.attempts) == ("failed", limit)
    assert "database went away" in (row.last_error or "")
    assert row.first_failed_at is not None
    assert sweep(bridge) == 0


def test_the_sweeper_skips_an_event_a_job_holds_instead_of_waiting_for_it(
    client: TestClient, bridge: Context, admin_engine: Any
) -> None:
    """Given two stored events whose jobs were lost, one of them locked by a job applying it,
    when the sweeper runs, it sends the other at once and leaves the held one to its job (it
    used to wait for the lock, which could deadlock with that job's bookkeeping)."""
    held, free = (event("customer.created", {**CUSTOMER, "id": f"cus_{n}"}) for n in (1, 2))
    for payload in (held, free):
        post_event(client, payload)
    with admin_engine.begin() as connection:
        connection.execute(
            StripeEvent.__table__.update().values(
                enqueued_at=None, received_at=utcnow() - timedelta(hours=1)
            )
        )
    bridge.broker.flush_all()
    swept: list[int] = []
    with admin_engine.connect() as job:
        job.execute(
            select(StripeEvent.id).where(StripeEvent.id == held["id"]).with_for_update()
        ).all()
        sweeper = threading.Thread(target=lambda: swept.append(sweep(bridge)), daemon=True)
        sweeper.start()
        sweeper.join(timeout=10)
        finished = not sweeper.is_alive()
        job.rollback()
    sweeper.join(timeout=10)

    assert finished, "the sweeper waited for the job's lock"
    assert swept == [1]
    assert queued_event_ids(bridge) == [free["id"]]
