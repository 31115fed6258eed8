"""Scenario 1, inbound under faults: every Stripe event delivered three times, in shuffled
order, by 16 concurrent senders, while a worker is SIGKILLed (and replaced), Redis is stopped
for 15 s (its queued jobs are lost: no persistence), PostgreSQL is restarted with
`-m immediate`, and the web is SIGKILLed once (and restarted).

Then, once the inbox has drained: one stored row per distinct event, none lost, all applied,
and every mirror row equal to the generated truth (tests/faults/stories.py)."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stripe_bridge.db import make_engine
from stripe_bridge.models import Customer, Invoice, StripeEvent, Subscription
from tests.faults import figures
from tests.faults.cluster import Cluster, wait_for
from tests.faults.sender import Delivery, Sender
from tests.faults.stories import Story, Truth
from tests.support import SECRET

pytestmark = [pytest.mark.faults, pytest.mark.slow]

EVENTS = figures.size(1500, 8000)
DELIVERIES_PER_EVENT = 3
SPREAD_SECONDS = 40.0  # deliveries start over this long, so every fault lands during delivery
DRAIN_SECONDS = figures.size(120, 600)


def faults(cluster: Cluster) -> list[tuple[float, str, Callable[[], None]]]:
    """The timeline: (seconds after delivery starts, what, how)."""
    roles, pg, redis = cluster.roles, cluster.pg, cluster.redis
    return [
        (3, "SIGKILL worker-1", lambda: roles.kill("worker-1")),
        (6, "start a new worker-1", lambda: roles.start("worker-1", "worker")),
        (9, "stop redis (15 s)", redis.stop),
        (24, "start redis", redis.start),
        (28, "restart postgres -m immediate", pg.restart_immediate),
        (33, "SIGKILL web", lambda: roles.kill("web", signal.SIGKILL)),
        (35, "start web", roles.start_web),
    ]


def run_faults(
    timeline: list[tuple[float, str, Callable[[], None]]],
    started: float,
    log: list[str],
    errors: list[BaseException],
) -> None:
    try:
        for at, what, action in timeline:
            time.sleep(max(0.0, started + at - time.monotonic()))
            action()
            log.append(f"{time.monotonic() - started:5.1f} s  {what}")
    except BaseException as exc:
        errors.append(exc)


def mirror_of(story: Story, row: Any) -> dict[str, Any] | None:
    """What the mirror holds of the fields the story wrote (None: no row)."""
    if row is None:
        return None
    if story.kind == "customer":
        return {"name": row.name, "email": row.email, "deleted": row.deleted}
    if story.kind == "subscription":
        return {
            "status": row.status,
            "quantity": [i["quantity"] for i in row.items or []],
            "cancel_at_period_end": row.cancel_at_period_end,
            "deleted": row.deleted,
        }
    return {
        "status": row.status,
        "amount_due": row.amount_due,
        "amount_paid": row.amount_paid,
        "number": row.number,
    }


def truth_of(story: Story) -> dict[str, Any]:
    obj = story.final
    if story.kind == "customer":
        return {"name": obj["name"], "email": obj["email"], "deleted": story.deleted}
    if story.kind == "subscription":
        return {
            "status": obj["status"],
            "quantity": [i["quantity"] for i in obj["items"]["data"]],
            "cancel_at_period_end": obj["cancel_at_period_end"],
            "deleted": story.deleted,
        }
    return {
        "status": obj["status"],
        "amount_due": obj["amount_due"],
        "amount_paid": obj["amount_paid"],
        "number": obj["number"],
    }


@pytest.mark.timeout(figures.size(300, 1500))
def test_every_event_applied_once_in_order_through_kills_and_outages(
    cluster_factory: Callable[..., Cluster],
) -> None:
    # Given: the roles running against a Postgres and a Redis of their own (no Stripe key:
    # inbound needs only the signing secret), and a generated truth, each event 3 times
    cluster = cluster_factory()
    cluster.start_roles()
    truth = Truth(EVENTS, seed=20261201)
    deliveries = [
        Delivery("/webhooks/stripe", orjson.dumps(e), "Stripe-Signature", SECRET)
        for e in truth.events
        for _ in range(DELIVERIES_PER_EVENT)
    ]
    random.Random(1).shuffle(deliveries)

    # When: they are delivered while the faults happen
    log: list[str] = []
    errors: list[BaseException] = []
    started = time.monotonic()
    fault_thread = threading.Thread(
        target=run_faults, args=(faults(cluster), started, log, errors), daemon=True
    )
    fault_thread.start()
    tally = Sender(cluster.roles.web_url).deliver_all(deliveries, SPREAD_SECONDS)
    fault_thread.join(timeout=120)
    assert not fault_thread.is_alive(), "the fault timeline did not finish"
    assert not errors, f"a fault could not be injected: {errors[0]!r}\n{cluster.tails()}"
    delivered_at = time.monotonic()

    # Then: the inbox drains (bounded), every role still running
    engine = make_engine(cluster.pg.url, pool_size=1)
    try:

        def drained() -> tuple[int, int] | None:
            with engine.connect() as db:
                stored = db.scalar(select(func.count()).select_from(StripeEvent))
                waiting = db.scalar(select(func.count()).where(StripeEvent.status == "received"))
            return (stored, waiting) if waiting == 0 else None

        wait_for("drained inbox", DRAIN_SECONDS, drained, cluster.tails)
        drain_seconds = time.monotonic() - delivered_at
        with Session(engine) as db:
            statuses = dict(
                db.execute(
                    select(StripeEvent.status, func.count()).group_by(StripeEvent.status)
                ).all()
            )
            stored_ids = set(db.scalars(select(StripeEvent.id)))
            rows = {
                kind: {row.id: row for row in db.scalars(select(model))}
                for kind, model in (
                    ("customer", Customer),
                    ("subscription", Subscription),
                    ("invoice", Invoice),
                )
            }
    finally:
        engine.dispose()

    expected_ids = {e["id"] for e in truth.events}
    lost = expected_ids - stored_ids
    wrong = {
        story.object_id: (mirror_of(story, rows[story.kind].get(story.object_id)), truth_of(story))
        for story in truth.stories
        if mirror_of(story, rows[story.kind].get(story.object_id)) != truth_of(story)
    }
    figures.record(
        "inbound",
        events=len(expected_ids),
        deliveries=len(deliveries),
        delivered=tally.delivered,
        stored=len(stored_ids),
        lost=len(lost),
        wrong_rows=len(wrong),
        five_xx=tally.five_xx,
        transport_errors=tally.transport_errors,
        drain_seconds=round(drain_seconds, 1),
    )
    print("\n".join(["fault timeline:", *log, f"answers: {dict(tally.statuses)}"]))
    cluster.roles.assert_running()
    assert not tally.gave_up, f"{len(tally.gave_up)} deliveries never answered 2xx"
    assert tally.delivered == len(deliveries)
    assert not lost, f"{len(lost)} events lost, e.g. {sorted(lost)[:5]}"
    assert len(stored_ids) == len(expected_ids), "stored rows are not the distinct events"
    assert statuses == {"processed": len(expected_ids)}, statuses
    examples = dict(list(wrong.items())[:5])
    assert not wrong, f"{len(wrong)} mirror rows differ from the truth, e.g. {examples}"
