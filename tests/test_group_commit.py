"""Group commit: deliveries parked together share one flush, and one bad event fails alone."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from stripe_bridge.errors import StoreUnavailable
from stripe_bridge.inbox.door import Incoming
from stripe_bridge.inbox.store import GroupCommit


def incoming(event_id: str) -> Incoming:
    return Incoming(id=event_id, type="customer.created", created=1, object_id=None, payload=b"{}")


def test_an_event_the_database_refuses_fails_only_its_own_delivery() -> None:
    # seen reading the group commit behind scenario 3's 503s: an event with `created` 2**63
    # overflows BIGINT, and every delivery parked in the same batch was answered 503 with it
    flushed: list[list[str]] = []

    def flush(batch: Sequence[Incoming]) -> set[tuple[str, str]]:
        flushed.append([item.id for item in batch])
        if any(item.id == "evt_poison" for item in batch):
            raise ValueError("bigint out of range")
        return {item.key for item in batch}

    async def scenario() -> list[bool | BaseException]:
        group = GroupCommit(flush)
        group.start()
        try:
            return await asyncio.gather(
                *(group.submit(incoming(i)) for i in ("evt_a", "evt_poison", "evt_b", "evt_a")),
                return_exceptions=True,
            )
        finally:
            await group.stop()

    answers = asyncio.run(scenario())

    assert answers[0] is False and answers[2] is False  # stored
    assert answers[3] is True  # the same event twice in one batch: a duplicate
    assert isinstance(answers[1], StoreUnavailable)
    assert flushed[0] == ["evt_a", "evt_poison", "evt_b"]
    assert sorted(flushed[1:]) == [["evt_a"], ["evt_b"], ["evt_poison"]]


def test_when_the_database_is_down_every_delivery_of_the_batch_is_refused() -> None:
    def flush(batch: Sequence[Incoming]) -> set[str]:
        raise ConnectionError("database unreachable")

    async def scenario() -> list[bool | BaseException]:
        group = GroupCommit(flush)
        group.start()
        try:
            return await asyncio.gather(
                *(group.submit(incoming(i)) for i in ("evt_a", "evt_b")), return_exceptions=True
            )
        finally:
            await group.stop()

    assert all(isinstance(answer, StoreUnavailable) for answer in asyncio.run(scenario()))
