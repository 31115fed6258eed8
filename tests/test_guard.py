"""The stale-event guard, rule by rule (handlers/guard.py).

`decide(row, event, siblings)` is the pure rule: `siblings` are the object's other events of
the second as the inbox holds them (the stored one among them while it is kept), and the
answer is the event whose snapshot the row must now hold, or None to leave it."""

from __future__ import annotations

import itertools
from typing import Any, cast

import pytest
from sqlalchemy.orm import Session

from stripe_bridge.event import Event
from stripe_bridge.handlers.guard import Progress, decide, event_to_apply, rank_of, stamp
from stripe_bridge.handlers.invoices import PROGRESS
from stripe_bridge.models import Customer, Invoice


def ev(
    event_type: str = "customer.updated",
    created: int = 100,
    obj: dict[str, Any] | None = None,
    prev: dict[str, Any] | None = None,
    event_id: str = "evt_in",
) -> Event:
    return Event(event_id, event_type, created, False, None, obj or {"id": "x"}, prev)


def empty_row() -> Customer:
    return Customer(id="x", deleted=False, src_created=-1, src_rank=0)


def row_after(event: Event, *, deleted: bool = False) -> Customer:
    row = Customer(id="x", deleted=deleted, src_created=-1, src_rank=0)
    stamp(row, event)
    return row


def is_stale(stored: Event, incoming: Event, *siblings: Event) -> bool:
    """Two events of the inbox (plus `siblings`): the stored one applied, the incoming one not."""
    return decide(row_after(stored), incoming, [stored, *siblings]) is None


def test_an_empty_row_takes_any_event() -> None:
    incoming = ev()
    assert decide(empty_row(), incoming) is incoming


@pytest.mark.parametrize(
    ("stored", "incoming", "stale"),
    [
        (ev(created=100), ev(created=99, event_id="evt_b"), True),
        (ev(created=100), ev(created=101, event_id="evt_b"), False),
        (ev("customer.updated", 100), ev("customer.created", 100, event_id="evt_b"), True),
        (ev("customer.created", 100), ev("customer.updated", 100, event_id="evt_b"), False),
        (ev("customer.updated", 100), ev("customer.deleted", 100, event_id="evt_b"), False),
        (ev(created=100), ev(created=100), True),  # the same event again
    ],
    ids=["older", "newer", "created-after-update", "update-after-created", "delete-wins", "same"],
)
def test_time_then_lifecycle_decide(stored: Event, incoming: Event, stale: bool) -> None:
    assert is_stale(stored, incoming) is stale


def test_deleted_is_terminal_even_for_newer_events() -> None:
    row = row_after(ev("customer.deleted", 100), deleted=True)

    assert decide(row, ev("customer.updated", 500, event_id="evt_b")) is None
    assert decide(row, ev("customer.deleted", 500, event_id="evt_b")) is None


class NoQueries:
    """A session that fails the test if the guard reads anything."""

    def execute(self, *_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("the guard queried the inbox outside a tie")


@pytest.mark.parametrize(
    "incoming",
    [
        ev(created=101, event_id="evt_b"),
        ev(created=99, event_id="evt_b"),
        ev("customer.deleted", event_id="evt_b"),
        ev(event_id="evt_a"),  # the stored event again
    ],
    ids=["later-second", "earlier-second", "other-rank", "same-event"],
)
def test_outside_a_tie_the_inbox_is_not_read(incoming: Event) -> None:
    row = row_after(ev(obj={"id": "x", "name": "B"}, prev={"name": "A"}, event_id="evt_a"))

    event_to_apply(cast(Session, NoQueries()), row, incoming)


# ------------------------------------------------------------------ two events of one second


def test_same_second_chain_skips_the_event_the_stored_one_was_applied_on() -> None:
    first = ev(obj={"id": "x", "name": "B"}, prev={"name": "A"}, event_id="evt_1")
    second = ev(obj={"id": "x", "name": "C"}, prev={"name": "B"}, event_id="evt_2")

    assert is_stale(second, first)  # first left name B, which second changed from
    assert not is_stale(first, second)


def test_same_second_chain_compares_nested_previous_attributes_by_key() -> None:
    first = ev(obj={"id": "x", "metadata": {"tier": "gold", "x": "1"}}, event_id="evt_1")
    second = ev(
        obj={"id": "x", "metadata": {"tier": "platinum", "x": "1"}},
        prev={"metadata": {"tier": "gold"}},
        event_id="evt_2",
    )

    assert is_stale(second, first)
    assert not is_stale(first, second)


def test_same_second_unrelated_update_on_top_of_the_stored_one_applies() -> None:
    # other changed email from None, which first's object still had: other came after first
    first = ev(obj={"id": "x", "name": "B"}, prev={"name": "A"}, event_id="evt_1")
    other = ev(obj={"id": "x", "name": "B", "email": "e"}, prev={"email": None}, event_id="evt_2")

    assert not is_stale(first, other)
    assert is_stale(other, first)


def test_same_second_incomparable_updates_keep_the_stored_state() -> None:
    # Given: two updates whose link (the update between them) is not in the inbox yet
    first = ev(obj={"id": "x", "name": "B", "email": "a"}, prev={"name": "A"}, event_id="evt_1")
    third = ev(obj={"id": "x", "name": "B", "email": "c"}, prev={"email": "b"}, event_id="evt_3")

    # Then: neither is known to be newer; whichever was applied stays
    assert is_stale(first, third)
    assert is_stale(third, first)


def test_same_second_events_without_previous_attributes_apply_in_processing_order() -> None:
    first = ev("customer.subscription.paused", obj={"id": "x", "status": "paused"}, event_id="e1")
    second = ev("customer.subscription.resumed", obj={"id": "x", "status": "active"}, event_id="e2")

    assert not is_stale(first, second)
    assert not is_stale(second, first)


def test_a_change_and_its_reversal_in_one_second_keep_the_first_applied() -> None:
    # The documented ambiguous case: each object holds what the other changed from (a cycle);
    # the next list sync repairs it.
    change = ev(obj={"id": "x", "name": "B"}, prev={"name": "A"}, event_id="evt_change")
    reversal = ev(obj={"id": "x", "name": "A"}, prev={"name": "B"}, event_id="evt_reversal")

    assert is_stale(change, reversal)
    assert is_stale(reversal, change)


def test_the_stored_event_gone_from_the_inbox_is_judged_by_its_previous_attributes() -> None:
    first = ev(obj={"id": "x", "name": "B"}, prev={"name": "A"}, event_id="evt_1")
    second = ev(obj={"id": "x", "name": "C"}, prev={"name": "B"}, event_id="evt_2")

    assert decide(row_after(second), first, []) is None  # first holds what second changed from
    assert decide(row_after(first), second, []) is second  # its object unknown: the later wins


# ------------------------------------------------------------------ invoices: progress


def invoice_row(event: Event, status: str) -> Invoice:
    row = Invoice(id="in", deleted=False, status=status, src_created=-1, src_rank=0)
    stamp(row, event)
    return row


def test_progress_rank_breaks_same_second_ties() -> None:
    paid = ev("invoice.paid", obj={"id": "in", "status": "paid"}, event_id="evt_paid")
    finalized = ev("invoice.finalized", obj={"id": "in", "status": "open"}, event_id="evt_fin")

    assert decide(invoice_row(paid, "paid"), finalized, [paid], progress=PROGRESS) is None
    assert decide(invoice_row(finalized, "open"), paid, [finalized], progress=PROGRESS) is paid


def test_progress_rank_of_the_stored_row_counts_when_its_event_is_gone() -> None:
    paid = ev("invoice.paid", obj={"id": "in", "status": "paid"}, event_id="evt_paid")
    finalized = ev("invoice.finalized", obj={"id": "in", "status": "open"}, event_id="evt_fin")

    assert decide(invoice_row(paid, "paid"), finalized, [], progress=PROGRESS) is None


def test_the_chain_decides_before_the_progress_rank() -> None:
    # finalized's object holds what paid changed from: paid is later, whatever progress says
    obj = {"id": "in", "amount_paid": 0}
    finalized = ev(
        "invoice.finalized", obj={**obj, "status": "open"}, prev={"status": "draft"}, event_id="f"
    )
    paid = ev(
        "invoice.paid",
        obj={**obj, "status": "paid", "amount_paid": 5},
        prev={"status": "open", "amount_paid": 0},
        event_id="p",
    )
    backwards = Progress(
        of_row=lambda row: 2, of_event=lambda event: 2 if event.object["status"] == "open" else 0
    )

    assert decide(invoice_row(finalized, "open"), paid, [finalized], progress=backwards) is paid


# ------------------------------------------------------------------ three updates in one second

# name A → B, email a → b, email b → c, all in second 100
A = ev(obj={"id": "x", "name": "B", "email": "a"}, prev={"name": "A"}, event_id="evt_1")
B = ev(obj={"id": "x", "name": "B", "email": "b"}, prev={"email": "a"}, event_id="evt_2")
C = ev(obj={"id": "x", "name": "B", "email": "c"}, prev={"email": "b"}, event_id="evt_3")


def test_the_oldest_of_three_updates_in_one_second_arriving_last_is_stale() -> None:
    # Given: the third applied first; the second has not arrived yet
    first, third = A, C

    # Then: the first, delivered afterwards, must not overwrite the third
    assert decide(row_after(third), first, [third]) is None


def test_the_middle_update_arriving_last_brings_the_newest_snapshot_back() -> None:
    # Given: the first applied, the third arrived and kept out (incomparable to the first)
    row = row_after(A)
    assert decide(row, C, [A]) is None

    # When: the middle one arrives, the chain is whole: the third is the latest
    assert decide(row, B, [A, C]) is C


def apply_in_arrival_order(events: tuple[Event, ...]) -> Customer:
    """Each event stored when it arrives and applied at once (one job each, in turn)."""
    row, inbox = empty_row(), []
    for event in events:
        applied = decide(row, event, inbox)
        inbox.append(event)
        if applied is not None:
            stamp(row, applied)
            row.email = applied.object["email"]
    return row


def apply_after_all_arrived(events: tuple[Event, ...]) -> Customer:
    """Everything stored first, then applied in this order (a backlog, or one batch)."""
    row = empty_row()
    for event in events:
        applied = decide(row, event, [other for other in events if other is not event])
        if applied is not None:
            stamp(row, applied)
            row.email = applied.object["email"]
    return row


@pytest.mark.parametrize(
    "order",
    list(itertools.permutations((A, B, C))),
    ids=lambda order: "".join("ABC"[int(event.id[-1]) - 1] for event in order),
)
@pytest.mark.parametrize("apply", [apply_in_arrival_order, apply_after_all_arrived])
def test_three_updates_in_one_second_end_in_the_latest_state_in_any_order(
    order: tuple[Event, ...], apply: Any
) -> None:
    row = apply(order)

    assert (row.src_event_id, row.email, row.src_prev) == ("evt_3", "c", {"email": "b"})


def test_four_updates_in_any_order_end_in_the_latest_state() -> None:
    # phone 1 → 2, name A → B, email a → b, email b → c
    states = [(2, "A", "a"), (2, "B", "a"), (2, "B", "b"), (2, "B", "c")]
    changes = [{"phone": 1}, {"name": "A"}, {"email": "a"}, {"email": "b"}]
    story = [
        ev(obj={"id": "x", "phone": p, "name": n, "email": e}, prev=prev, event_id=f"evt_{i}")
        for i, ((p, n, e), prev) in enumerate(zip(states, changes, strict=True), start=1)
    ]
    for order in itertools.permutations(story):
        for apply in (apply_in_arrival_order, apply_after_all_arrived):
            assert apply(order).src_event_id == "evt_4", [event.id for event in order]


@pytest.mark.parametrize(
    ("event_type", "rank"),
    [
        ("customer.created", 0),
        ("invoice.paid", 1),
        ("customer.subscription.paused", 1),
        ("product.deleted", 2),
    ],
)
def test_rank_of(event_type: str, rank: int) -> None:
    assert rank_of(event_type) == rank
