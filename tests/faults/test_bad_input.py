"""Scenario 3, bad input: thousands of wrong deliveries to both signed endpoints.

Given the web app on real PostgreSQL and Redis, when hand-written and hypothesis-generated
deliveries (bad signatures, bodies that are not events, absurd field values, unknown types,
oversize bodies) are posted to `POST /webhooks/stripe` and `POST /veles/events`, then no answer
is a 5xx, nothing without a valid signature is stored, every stored event settles (processed,
ignored or failed) within seconds once a worker runs, and the service stays healthy and applies
a good event sent afterwards.

Hypothesis is derandomized at the CI size, so a red build is caused by the change, not by luck,
and anyone can reproduce it; the full size draws a fresh seed each run (recorded with the
figures; `BRIDGE_FAULTS_SEED` replays one) to explore new inputs."""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import dramatiq
import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from sqlalchemy import func, select
from starlette.testclient import TestClient

from stripe_bridge.context import Context
from stripe_bridge.models import RECEIVED, Customer, StripeEvent, VelesCustomer, VelesEvent
from stripe_bridge.web.app import create_app
from tests.faults.bad_inputs import Delivery, deliveries, hand_written
from tests.faults.figures import FULL, record, size
from tests.support import event, post_event, post_veles, veles_event

pytestmark = [pytest.mark.faults]

GENERATED = size(ci=600, full=10_000)
SETTLE_SECONDS = 30
SETTLE_PER_EVENT = 0.05  # seconds a stored event may take on top (4,500 at full size)


@dataclass
class Door:
    """Sends deliveries and keeps what came back."""

    client: TestClient
    answers: Counter[int] = field(default_factory=Counter)
    five_xx: list[str] = field(default_factory=list)
    unsigned_accepted: list[str] = field(default_factory=list)
    unsigned_ids: set[str] = field(default_factory=set)
    new: int = 0

    def send(self, delivery: Delivery) -> None:
        body, headers = delivery.fill()
        content: bytes | Iterator[bytes] = iter([body]) if delivery.chunked else body
        response = self.client.post(delivery.path, content=content, headers=headers)
        self.answers[response.status_code] += 1
        what = f"{delivery.kind} → {delivery.path} {response.status_code} {response.text[:160]}"
        if response.status_code >= 500:
            self.five_xx.append(what)
        if not delivery.verifiable:
            self.unsigned_ids.add(_event_id(body))
            if response.status_code < 400:
                self.unsigned_accepted.append(what)
        elif response.status_code < 300 and not response.json()["duplicate"]:
            self.new += 1

    @property
    def requests(self) -> int:
        return sum(self.answers.values())


def _event_id(body: bytes) -> str:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    return str(doc.get("id")) if isinstance(doc, dict) else ""


def inbox_counts(bridge: Context) -> dict[str, Counter[str]]:
    with bridge.session_factory() as session:
        return {
            inbox.__tablename__: Counter(
                {
                    status: count
                    for status, count in session.execute(
                        select(inbox.status, func.count()).group_by(inbox.status)
                    )
                }
            )
            for inbox in (StripeEvent, VelesEvent)
        }


def settle(bridge: Context, seconds: float) -> float:
    """Run a real worker until no stored event is left `received` (or `seconds` pass)."""
    worker = dramatiq.Worker(bridge.broker, worker_threads=4, worker_timeout=50)
    started = time.monotonic()
    worker.start()
    try:
        while time.monotonic() - started < seconds:
            if not any(counts[RECEIVED] for counts in inbox_counts(bridge).values()):
                break
            time.sleep(0.2)
    finally:
        worker.stop()
    return time.monotonic() - started


def unsettled(bridge: Context) -> list[tuple[str, str, int, str | None]]:
    with bridge.session_factory() as session:
        return [
            (row.id[:60], row.type[:40], row.attempts, (row.last_error or "")[:160])
            for inbox in (StripeEvent, VelesEvent)
            for row in session.scalars(select(inbox).where(inbox.status == RECEIVED).limit(20))
        ]


def stored_unsigned(bridge: Context, ids: set[str]) -> list[str]:
    with bridge.session_factory() as session:
        return [
            found
            for inbox in (StripeEvent, VelesEvent)
            for found in session.scalars(select(inbox.id).where(inbox.id.in_(ids - {""})))
        ]


def examples(answers: list[str]) -> str:
    """One line per kind of answer (the kind is the text before the arrow), with its count."""
    kinds = Counter(answer.split(" → ")[0] for answer in answers)
    first = {answer.split(" → ")[0]: answer for answer in reversed(answers)}
    return "\n" + "\n".join(f"{count} x {first[kind]}" for kind, count in kinds.most_common())


def hypothesis_seed() -> int | None:
    if given_seed := os.environ.get("BRIDGE_FAULTS_SEED"):
        return int(given_seed)
    return random.randrange(2**32) if FULL else None


def send_generated(door: Door, examples: int, chosen_seed: int | None) -> None:
    @settings(
        max_examples=examples,
        derandomize=chosen_seed is None,
        database=None,
        deadline=None,
        phases=[Phase.generate],  # every answer is kept and judged afterwards: no shrinking
        suppress_health_check=list(HealthCheck),
    )
    @given(delivery=deliveries)
    def run(delivery: Delivery) -> None:
        door.send(delivery)

    (seed(chosen_seed)(run) if chosen_seed is not None else run)()


@pytest.fixture
def door_client(bridge: Context) -> Iterator[TestClient]:
    """Like `client`, but a 5xx is an answer to count, not an exception in the test."""
    with TestClient(create_app(bridge), raise_server_exceptions=False) as test_client:
        yield test_client


def test_bad_input_gets_clear_answers_and_changes_nothing(door_client: TestClient, bridge: Context):
    client = door_client
    started = time.monotonic()
    door = Door(client)
    for delivery in hand_written():
        door.send(delivery)
    chosen_seed = hypothesis_seed()
    send_generated(door, GENERATED, chosen_seed)
    sent_seconds = time.monotonic() - started

    # a bad event fails its batch, whose events then go one by one: allow for that per event
    waiting = sum(sum(c.values()) for c in inbox_counts(bridge).values())
    settle_seconds = settle(bridge, SETTLE_SECONDS + SETTLE_PER_EVENT * waiting)
    counts = inbox_counts(bridge)
    stored = sum(sum(c.values()) for c in counts.values())
    left = sum(c[RECEIVED] for c in counts.values())
    leaked = stored_unsigned(bridge, door.unsigned_ids)

    # and afterwards the service is healthy and applies a good event of each kind
    health = [client.get(path).status_code for path in ("/healthz", "/readyz")]
    good = event(
        "customer.created",
        {
            "id": "cus_after_bad_input",
            "object": "customer",
            "name": "Still Works Ltd",
            "email": "ok@works.example",
        },
    )
    good_answers = [post_event(client, good).status_code]
    good_answers.append(
        post_veles(
            client,
            veles_event(
                "customer.upserted", {"id": "vc_after_bad_input", "name": "Still Works Ltd"}
            ),
        ).status_code
    )
    settle(bridge, SETTLE_SECONDS)
    with bridge.session_factory() as session:
        applied = (
            session.get(Customer, ("default", "cus_after_bad_input")),
            session.get(VelesCustomer, ("default", "vc_after_bad_input")),
        )
    record(
        "bad input",
        requests=door.requests,
        generated=GENERATED,
        five_xx=len(door.five_xx),
        answers={str(code): n for code, n in sorted(door.answers.items())},
        stored=stored,
        settled=stored - left,
        unsettled=left,
        by_status={name: dict(c) for name, c in counts.items()},
        unsigned_stored=len(leaked),
        send_seconds=round(sent_seconds, 1),
        settle_seconds=round(settle_seconds, 1),
        seed=chosen_seed,
    )

    print("5xx:", examples(door.five_xx), "\nunsettled:", *unsettled(bridge), sep="\n")
    assert door.five_xx == [], f"{len(door.five_xx)} answers 5xx: {examples(door.five_xx)}"
    assert door.unsigned_accepted == [], examples(door.unsigned_accepted)
    assert leaked == [], leaked[:8]
    assert stored == door.new, "every accepted delivery (and only those) is stored"
    assert left == 0, f"{left} events never settled: {unsettled(bridge)}"
    assert health == [200, 200]
    assert good_answers == [200, 202]
    assert applied[0] is not None and applied[0].name == "Still Works Ltd"
    assert applied[1] is not None
