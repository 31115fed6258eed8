"""Signed, realistic deliveries: the fixture events in a weighted mix, each with its own event id
and object id, and 10 % re-deliveries of an earlier event (same body, like Stripe's retries).

Bodies are the fixture JSON with two placeholders substituted, so tens of thousands are made in
well under a second; signatures use the bridge's own `sign` and the current time (Stripe's
tolerance is 300 s, so a file is written just before the phase that sends it)."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from stripe_bridge.inbox.door import sign

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "events"

# Relative frequencies, roughly a B2B subscription business: invoices and subscription updates
# dominate, the catalogue changes rarely. Classic (2017-era) payload shapes are 15 % of the mix.
TYPE_WEIGHTS = {
    "invoice.created": 8,
    "invoice.finalized": 8,
    "invoice.paid": 10,
    "invoice.payment_succeeded": 10,
    "invoice.payment_failed": 2,
    "invoice.updated": 6,
    "invoice.voided": 1,
    "invoice.marked_uncollectible": 1,
    "customer.subscription.created": 4,
    "customer.subscription.updated": 10,
    "customer.subscription.deleted": 2,
    "customer.subscription.paused": 1,
    "customer.subscription.resumed": 1,
    "customer.created": 5,
    "customer.updated": 6,
    "customer.deleted": 1,
    "product.created": 2,
    "product.updated": 2,
    "product.deleted": 1,
    "price.created": 3,
    "price.updated": 2,
    "price.deleted": 1,
    "plan.created": 1,
    "plan.updated": 1,
    "plan.deleted": 1,
}
SHAPE_WEIGHTS = {"current": 0.85, "classic": 0.15}
EVENT_ID = b"@EVENT_ID@"
OBJECT_ID = b"@OBJECT_ID@"


@dataclass(frozen=True)
class Template:
    type: str
    body: bytes  # compact JSON with EVENT_ID and OBJECT_ID placeholders
    object_prefix: bytes  # "cus", "in", "sub", …


def load_templates() -> tuple[list[Template], list[float]]:
    templates: list[Template] = []
    weights: list[float] = []
    for shape, shape_weight in SHAPE_WEIGHTS.items():
        for event_type, type_weight in TYPE_WEIGHTS.items():
            doc = orjson.loads((FIXTURES / shape / f"{event_type}.json").read_bytes())
            old_object_id = doc["data"]["object"]["id"]
            prefix = old_object_id.split("_", 1)[0]
            doc["id"] = "evt_" + EVENT_ID.decode()
            body = orjson.dumps(doc).replace(
                orjson.dumps(old_object_id), orjson.dumps(f"{prefix}_{OBJECT_ID.decode()}")
            )
            templates.append(Template(event_type, body, prefix.encode()))
            weights.append(shape_weight * type_weight)
    return templates, weights


def make_deliveries(
    count: int,
    tag: str,
    secret: str,
    rng: random.Random,
    *,
    duplicate_share: float = 0.10,
    templates: Sequence[Template] | None = None,
    weights: Sequence[float] | None = None,
) -> tuple[list[bytes], int]:
    """`count` lines `<Stripe-Signature>\\t<body>`; answers them and the number of distinct
    events. A re-delivery follows its original by 1-200 deliveries (some arrive concurrently)."""
    if templates is None or weights is None:
        templates, weights = load_templates()
    distinct = count - round(count * duplicate_share)
    now = int(time.time())
    bodies: list[bytes] = []
    for index, template in enumerate(rng.choices(templates, weights, k=distinct)):
        suffix = f"{tag}{index:08d}".encode()
        bodies.append(template.body.replace(EVENT_ID, suffix).replace(OBJECT_ID, suffix))
    order: list[tuple[float, int]] = [(float(index), index) for index in range(distinct)]
    for _ in range(count - distinct):
        original = rng.randrange(distinct)
        order.append((original + rng.randint(1, 200) + 0.5, original))
    order.sort()
    lines = [
        sign(bodies[index], secret, now).encode() + b"\t" + bodies[index] for _, index in order
    ]
    return lines, distinct


def write_deliveries(path: Path, lines: Sequence[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path
