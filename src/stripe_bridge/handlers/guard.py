"""The stale-event guard: the mirror holds the snapshot of the object's latest event.

Every Stripe event carries the whole object as it was then, so a handler never merges: it
applies one event's snapshot, chosen against what the mirror row remembers of the event that
last wrote it (`src_created`, `src_rank`, `src_event_id`, `src_prev`):

1. Deleted is terminal: once a row is deleted, no event touches it again.
2. A different second decides: a later `created` applies, an earlier one is skipped.
3. Within the same second, the lifecycle decides: `*.created` < anything else < `*.deleted`.
4. A tie (same second, same rank, another event) is decided by the object's events of that
   second, read from the inbox (`same_second`: received or processed, same mode, same rank),
   ordered by their `previous_attributes`: F follows E when E's object still holds the values
   F changed *from*. The latest is the one that no other follows, and its snapshot is applied,
   stamped with its id: it may be another event than the one being processed (one that came
   earlier, when the event linking it to the stored one was not in yet).
   When several have no successor (an event between them is not in yet, or some carry no
   `previous_attributes`): a family's progress rank keeps the furthest (an invoice never goes
   from paid back to open); then the stored state stays if the incoming event is not among
   them, or if both carry `previous_attributes` and neither object holds what the other
   changed from (neither is known to be newer); otherwise the incoming event wins (the later
   processed), or, when neither is among them, the last received of the others. A stored
   event the inbox no longer has (pruned, or a list-sync snapshot) is known by its
   `previous_attributes` only (`src_prev`): the incoming event wins unless it holds them.

Whatever order the updates of one second arrive and are applied in, the last one applied sees
them all (each is stored before its job is sent, and jobs of one object serialise on its row),
and then their chain has one end: the latest. Two cases stay ambiguous. Events without
`previous_attributes` are never known to follow another: between them, the later processed
wins (after the progress rank). A change and its exact reversal inside one second make the
chain a cycle (each object holds what the other changed from): then the stored and the
incoming event are compared alone (the incoming one is skipped if its object holds what the
stored one changed from, which a reversal's does; else progress; else it wins), so the first
applied stays. The periodic list sync (a fresh snapshot) repairs both.

Cost: rules 1-3 read only the row. A tie reads the object's events of that second with one
query on `ix_stripe_events_object_id_created`, without locks (a batch holds its own inbox rows
`FOR UPDATE`; a plain read never waits for them) and without touching the mirror tables.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from stripe_bridge.errors import PermanentError
from stripe_bridge.event import Event
from stripe_bridge.models import PROCESSED, RECEIVED, StripeEvent, Versioned, utcnow

RANK_CREATED = 0
RANK_CHANGED = 1
RANK_DELETED = 2


def rank_of(event_type: str) -> int:
    if event_type.endswith(".created"):
        return RANK_CREATED
    if event_type.endswith(".deleted"):
        return RANK_DELETED
    return RANK_CHANGED


@dataclass(frozen=True, slots=True)
class Progress:
    """A family's own order within a second, of the stored row and of an event's snapshot."""

    of_row: Callable[[Versioned], int]
    of_event: Callable[[Event], int]


def event_to_apply(
    session: Session, row: Versioned, event: Event, *, progress: Progress | None = None
) -> Event | None:
    """The event whose snapshot `row` must now hold (`event` or another event of its second),
    or None when the row already holds the latest. Queries the inbox only in a tie."""
    siblings = same_second(session, row.workspace_id, event) if is_tie(row, event) else []
    return decide(row, event, siblings, progress=progress)


def same_second(session: Session, workspace_id: str, event: Event) -> list[Event]:
    """The object's other events (in its workspace) of `event`'s second and rank that are or
    will be applied (received or processed, same mode), in the order they were received.
    Undecodable payloads are left out (they fail on their own)."""
    rows = session.execute(
        select(StripeEvent.type, StripeEvent.payload)
        .where(
            StripeEvent.workspace_id == workspace_id,
            StripeEvent.object_id == event.object["id"],
            StripeEvent.created == event.created,
            StripeEvent.id != event.id,
            StripeEvent.status.in_((RECEIVED, PROCESSED)),
            StripeEvent.livemode == event.livemode,
        )
        .order_by(StripeEvent.received_at, StripeEvent.id)
    ).all()
    rank = rank_of(event.type)
    siblings = []
    for event_type, payload in rows:
        if rank_of(event_type) != rank:
            continue
        try:
            siblings.append(Event.from_payload(orjson.loads(payload)))
        except (PermanentError, orjson.JSONDecodeError):
            continue
    return siblings


def is_tie(row: Versioned, event: Event) -> bool:
    """Whether rules 1-3 leave `event` undecided against `row`."""
    return (
        not getattr(row, "deleted", False)
        and event.created == row.src_created
        and event.id != row.src_event_id
        and rank_of(event.type) == row.src_rank
    )


def decide(
    row: Versioned,
    event: Event,
    siblings: Iterable[Event] = (),
    *,
    progress: Progress | None = None,
) -> Event | None:
    """The rules above, given the object's other events of a tie (`siblings`, which include
    the stored one while the inbox keeps it); None leaves the row as it is."""
    if getattr(row, "deleted", False) or event.id == row.src_event_id:
        return None
    if event.created != row.src_created:
        return event if event.created > row.src_created else None
    rank = rank_of(event.type)
    if rank != row.src_rank:
        return event if rank > row.src_rank else None
    return _latest_of_tie(row, event, list(siblings), progress)


@dataclass(frozen=True, slots=True, eq=False)
class _Version:
    """One event of a tie. The stored one's payload may be gone from the inbox (pruned, or a
    sync snapshot): then only its `previous_attributes` (the row's `src_prev`) are known."""

    id: str
    prev: Mapping[str, Any] | None
    event: Event | None
    rank: int = 0  # the family's progress rank (0 without one)

    @classmethod
    def of(cls, event: Event, progress: Progress | None) -> _Version:
        rank = progress.of_event(event) if progress else 0
        return cls(event.id, event.previous_attributes or None, event, rank)


def _follows(later: _Version, earlier: _Version) -> bool:
    """`earlier`'s object still holds the values `later` changed from."""
    return (
        later is not earlier
        and later.prev is not None
        and earlier.event is not None
        and _holds(earlier.event.object, later.prev)
    )


def _incomparable(stored: _Version, incoming: _Version) -> bool:
    """Both changed something and neither object holds what the other changed from (the
    caller checked the latter): neither is known to be the newer."""
    return stored.event is not None and bool(stored.prev) and bool(incoming.prev)


def _holds(obj: Any, expected: Any) -> bool:
    """Whether `obj` still carries every value of `expected` (nested mappings compared by key)."""
    if isinstance(expected, Mapping):
        if not isinstance(obj, Mapping):
            return False
        return all(_holds(obj.get(key), value) for key, value in expected.items())
    return bool(obj == expected)


def _latest_of_tie(
    row: Versioned, event: Event, siblings: list[Event], progress: Progress | None
) -> Event | None:
    found = next((sibling for sibling in siblings if sibling.id == row.src_event_id), None)
    stored_rank = progress.of_row(row) if progress else 0
    stored = _Version(row.src_event_id or "", row.src_prev, found, stored_rank)
    incoming = _Version.of(event, progress)
    others = [_Version.of(s, progress) for s in siblings if s.id not in (stored.id, event.id)]
    versions = [stored, *others, incoming]

    ends = [v for v in versions if not any(_follows(w, v) for w in versions)]
    if not ends:  # a change and its reversal: the chain is a cycle; the pairwise rule decides
        if stored.prev and _holds(event.object, stored.prev):
            return None
        return None if incoming.rank < stored.rank else event
    top = max(v.rank for v in ends)
    ends = [v for v in ends if v.rank == top]
    stored_is_end = any(v is stored for v in ends)
    incoming_is_end = any(v is incoming for v in ends)
    if len(ends) == 1:
        latest = ends[0]
    elif stored_is_end and (not incoming_is_end or _incomparable(stored, incoming)):
        latest = stored
    elif incoming_is_end:
        latest = incoming
    else:
        latest = ends[-1]
    return None if latest is stored else latest.event


def stamp(row: Versioned, event: Event) -> None:
    """Remember which event wrote the row (the one whose snapshot was applied)."""
    row.src_created = event.created
    row.src_rank = rank_of(event.type)
    row.src_event_id = event.id
    row.src_prev = dict(event.previous_attributes) if event.previous_attributes else None
    row.updated_at = utcnow()
