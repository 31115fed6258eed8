"""The stale-event guard: an older event never overwrites newer state.

Stripe delivers events in no particular order and its `created` has whole seconds, so the
rule has three steps, checked against what the mirror row remembers of the event that last
wrote it (`src_created`, `src_rank`, `src_event_id`, `src_prev`):

1. Deleted is terminal: once a row is deleted, only another delete may touch it.
2. A different second decides: a later `created` applies, an earlier one is skipped.
3. Within the same second, the lifecycle decides: `*.created` < anything else < `*.deleted`.
   Between two other events of the same second, the `previous_attributes` chain decides:
   if the incoming event's object still holds the values the stored event changed *from*,
   the stored event was applied on top of it, so the incoming one is older and is skipped.
   A family may add a progress rank (an invoice never goes from paid back to open in a tie).
   Otherwise the later-processed event wins.

The one case this cannot order is a change and its exact reversal inside one second; the
periodic list sync (a fresh snapshot) repairs it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from stripe_bridge.handlers.base import Event
from stripe_bridge.models import Versioned, utcnow

RANK_CREATED = 0
RANK_CHANGED = 1
RANK_DELETED = 2


def rank_of(event_type: str) -> int:
    if event_type.endswith(".created"):
        return RANK_CREATED
    if event_type.endswith(".deleted"):
        return RANK_DELETED
    return RANK_CHANGED


def _holds(obj: Any, expected: Any) -> bool:
    """Whether `obj` still carries every value of `expected` (nested mappings compared by key)."""
    if isinstance(expected, Mapping):
        if not isinstance(obj, Mapping):
            return False
        return all(_holds(obj.get(key), value) for key, value in expected.items())
    return bool(obj == expected)


def is_stale(
    row: Versioned,
    event: Event,
    *,
    progress: Callable[[Versioned], int] | None = None,
    incoming_progress: int | None = None,
) -> bool:
    """True when applying `event` to `row` would overwrite newer state."""
    rank = rank_of(event.type)
    if getattr(row, "deleted", False):
        return True
    if event.created != row.src_created:
        return event.created < row.src_created
    if event.id == row.src_event_id:
        return True  # the same event again: already applied
    if rank != row.src_rank:
        return rank < row.src_rank
    if row.src_prev and _holds(event.object, row.src_prev):
        return True
    if progress is not None and incoming_progress is not None:
        return incoming_progress < progress(row)
    return False


def stamp(row: Versioned, event: Event) -> None:
    """Remember which event wrote the row."""
    row.src_created = event.created
    row.src_rank = rank_of(event.type)
    row.src_event_id = event.id
    row.src_prev = dict(event.previous_attributes) if event.previous_attributes else None
    row.updated_at = utcnow()
