"""A generated ground truth for the inbound scenario: Stripe objects and the events of their lives.

Each customer, subscription and invoice has a story of 2-5 events, as Stripe would send them:
created; updated with `previous_attributes` (the values the change replaced); for customers and
subscriptions sometimes deleted; invoices go draft → open → paid. Consecutive events of one
object are often in the same second (Stripe's `created` has whole seconds), which is where the
stale guard's tie rules (`src/stripe_bridge/handlers/guard.py`) are needed.

The one case the guard documents it cannot order — a change and its exact reversal within one
second — is never generated: every value an update writes is new for that object (names and
emails carry a version number, statuses only move forward, quantities only grow, cancellation
is set once), so a later snapshot never holds a value an earlier update replaced. Such a pair is
repaired by the next list sync, not by the webhook path this scenario exercises."""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from typing import Any

from tests.support import event

SUB_STATUSES = ("trialing", "active", "past_due", "unpaid")


@dataclass
class Story:
    kind: str  # customer | subscription | invoice
    object_id: str
    events: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)  # the last snapshot
    deleted: bool = False


class Truth:
    """Stories until `events` events exist; `seed` makes the run reproducible."""

    def __init__(self, events: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.base = 1_790_000_000
        self.stories: list[Story] = []
        self._seq = 0
        makers = (self._customer, self._subscription, self._invoice)
        n = 0
        while sum(len(s.events) for s in self.stories) < events:
            self.stories.append(makers[n % 3](n))
            n += 1

    @property
    def events(self) -> list[dict[str, Any]]:
        return [e for story in self.stories for e in story.events]

    def of(self, kind: str) -> dict[str, Story]:
        return {s.object_id: s for s in self.stories if s.kind == kind}

    # ------------------------------------------------------------ helpers

    def _times(self, count: int) -> list[int]:
        """`created` of a story's events: non-decreasing, often equal (same second); objects
        start within a span that grows with their number, so they share seconds too."""
        now = self.base + self.rng.randrange(max(1, len(self.stories) // 6 + 1))
        times = []
        for _ in range(count):
            times.append(now)
            now += self.rng.choice((0, 0, 1, 2))
        return times

    def _event(
        self,
        story: Story,
        event_type: str,
        obj: dict[str, Any],
        created: int,
        previous: dict[str, Any] | None = None,
    ) -> None:
        self._seq += 1
        story.events.append(
            event(
                event_type,
                copy.deepcopy(obj),
                created=created,
                event_id=f"evt_F{self._seq:07d}",
                previous_attributes=previous,
            )
        )
        story.final = copy.deepcopy(obj)

    # ------------------------------------------------------------ stories

    def _customer(self, n: int) -> Story:
        story = Story("customer", f"cus_F{n:06d}")
        updates = self.rng.randint(1, 3)
        delete = self.rng.random() < 0.3
        times = self._times(1 + updates + delete)
        obj = {
            "id": story.object_id,
            "object": "customer",
            "name": f"Customer {n} v0",
            "email": f"billing-v0@c{n}.example",
            "metadata": {},
            "created": times[0],
            "livemode": False,
        }
        self._event(story, "customer.created", obj, times[0])
        for version in range(1, updates + 1):
            key = self.rng.choice(("name", "email"))
            before = obj[key]
            obj[key] = (
                f"Customer {n} v{version}" if key == "name" else f"billing-v{version}@c{n}.example"
            )
            self._event(story, "customer.updated", obj, times[version], {key: before})
        if delete:
            story.deleted = True
            self._event(story, "customer.deleted", obj, times[-1])
        return story

    def _subscription(self, n: int) -> Story:
        story = Story("subscription", f"sub_F{n:06d}")
        changes = self.rng.randint(1, 3)
        delete = self.rng.random() < 0.3
        times = self._times(1 + changes + delete)
        item = {
            "id": f"si_F{n:06d}",
            "object": "subscription_item",
            "quantity": 1,
            "price": {"id": "price_Ffault", "object": "price", "product": "prod_Ffault"},
            "current_period_start": times[0],
            "current_period_end": times[0] + 2_592_000,
        }
        obj = {
            "id": story.object_id,
            "object": "subscription",
            "customer": f"cus_F{n:06d}",
            "status": "trialing",
            "cancel_at_period_end": False,
            "metadata": {},
            "items": {"object": "list", "data": [item]},
            "created": times[0],
            "livemode": False,
        }
        self._event(story, "customer.subscription.created", obj, times[0])
        for step in range(1, changes + 1):
            options = ["quantity"]
            if SUB_STATUSES.index(obj["status"]) < len(SUB_STATUSES) - 1:
                options.append("status")
            if not obj["cancel_at_period_end"]:
                options.append("cancel_at_period_end")
            change = self.rng.choice(options)
            if change == "quantity":
                previous = {"items": copy.deepcopy(obj["items"])}
                obj["items"]["data"][0]["quantity"] += self.rng.randint(1, 3)
            elif change == "status":
                previous = {"status": obj["status"]}
                obj["status"] = SUB_STATUSES[SUB_STATUSES.index(obj["status"]) + 1]
            else:
                previous = {"cancel_at_period_end": False}
                obj["cancel_at_period_end"] = True
            self._event(story, "customer.subscription.updated", obj, times[step], previous)
        if delete:
            story.deleted = True
            obj["status"] = "canceled"
            self._event(story, "customer.subscription.deleted", obj, times[-1])
        return story

    def _invoice(self, n: int) -> Story:
        story = Story("invoice", f"in_F{n:06d}")
        edit, pay = self.rng.random() < 0.4, self.rng.random() < 0.6
        times = self._times(2 + edit + pay)
        amount = 1000 + n
        obj = {
            "id": story.object_id,
            "object": "invoice",
            "customer": f"cus_F{n:06d}",
            "status": "draft",
            "amount_due": amount,
            "amount_paid": 0,
            "currency": "usd",
            "number": None,
            "metadata": {},
            "created": times[0],
            "livemode": False,
            "status_transitions": {"paid_at": None},
        }
        self._event(story, "invoice.created", obj, times[0])
        at = 1
        if edit:
            obj["amount_due"] = amount + 500
            self._event(story, "invoice.updated", obj, times[at], {"amount_due": amount})
            at += 1
        obj["status"], obj["number"] = "open", f"F-{n:06d}"
        self._event(story, "invoice.finalized", obj, times[at], {"status": "draft", "number": None})
        if pay:
            obj["status"], obj["amount_paid"] = "paid", obj["amount_due"]
            obj["status_transitions"] = {"paid_at": times[at + 1]}
            self._event(
                story,
                "invoice.paid",
                obj,
                times[at + 1],
                {"status": "open", "amount_paid": 0, "status_transitions": {"paid_at": None}},
            )
        return story
