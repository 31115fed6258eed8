"""Into the inbox: deliveries stored durably before they are answered, and their jobs sent.

- Group commit (`GroupCommit`): each request parks its event and awaits a future; one writer
  thread stores everything parked since its last flush in a single transaction (`store`: one
  `INSERT … ON CONFLICT DO NOTHING`), then resolves every future. Under load the batches grow by
  themselves; at rest a batch is one event.
- Jobs across group commits (`JobSender`): a group commit stores whatever arrived together,
  often a handful of events; a worker applies a batch of a hundred for a fraction of the cost
  per event of a batch of five. So the sender collects the new ids and sends them `linger`
  seconds after the first one waits, or at once when a full batch waits, in one Redis round
  trip. The ids wait only in memory, like a job the broker has not acknowledged yet: if the
  process dies before sending them, they are still `received` in the inbox and the sweeper
  sends them after its grace period. Stopping the sender sends whatever waits.
- The sweeper's queries (`due_for_sweep`, `mark_enqueued`) and the counts by status."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import structlog
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from stripe_bridge.db import insert_ignoring_conflicts, key_is_one_of
from stripe_bridge.errors import StoreUnavailable
from stripe_bridge.failures import is_permanent
from stripe_bridge.inbox.apply import Key
from stripe_bridge.inbox.batch import BATCH_SIZE
from stripe_bridge.inbox.door import Incoming
from stripe_bridge.models import RECEIVED, Inbox, StripeEvent, utcnow

log = structlog.get_logger(__name__)


def store(session: Session, inbox: Inbox, batch: Sequence[Incoming]) -> set[Key]:
    """Insert a batch in the caller's transaction; answers the keys that were new."""
    if not batch:
        return set()
    now = utcnow()
    rows = [
        {
            "workspace_id": item.workspace_id,
            "id": item.id,
            "type": item.type,
            "created": item.created,
            "object_id": item.object_id,
            "payload": item.payload,
            "received_at": now,
            "status": item.status,
            "reason": item.reason,
            "attempts": 0,
            **item.extra,
        }
        for item in batch
    ]
    table = inbox.__table__
    statement = insert_ignoring_conflicts(session, table).returning(  # type: ignore[arg-type]
        table.c.workspace_id, table.c.id
    )
    return {(workspace_id, event_id) for workspace_id, event_id in session.execute(statement, rows)}


def due_for_sweep(
    session: Session, inbox: Inbox, *, grace: timedelta, limit: int = 1000
) -> list[Key]:
    """Events stored but still not applied after `grace`: their job was lost or never sent.

    Locked for the caller's transaction (`mark_enqueued`), skipping rows a job holds: that job
    is applying them, and waiting for it could deadlock with its own bookkeeping. One query
    for every workspace (on the inbox's index of what waits)."""
    cutoff = utcnow() - grace
    last_sent = func.coalesce(inbox.enqueued_at, inbox.received_at)
    query = (
        select(inbox.workspace_id, inbox.id)
        .where(inbox.status == RECEIVED, inbox.received_at < cutoff, last_sent < cutoff)
        .order_by(inbox.received_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [(workspace_id, event_id) for workspace_id, event_id in session.execute(query)]


def mark_enqueued(session: Session, inbox: Inbox, keys: Iterable[Key]) -> None:
    _set_enqueued(session, inbox, keys, utcnow())


def unmark_enqueued(session: Session, inbox: Inbox, keys: Iterable[Key]) -> None:
    """Sending failed: these are due for the next sweep again."""
    _set_enqueued(session, inbox, keys, None)


def _set_enqueued(session: Session, inbox: Inbox, keys: Iterable[Key], at: datetime | None) -> None:
    keys = list(keys)
    if keys:
        selected = key_is_one_of(session, inbox, keys)
        session.execute(
            update(inbox)
            .where(selected)
            .values(enqueued_at=at)
            .execution_options(synchronize_session=False)
        )


def counts_by_status(
    session: Session, inbox: Inbox = StripeEvent, workspace_id: str | None = None
) -> dict[str, int]:
    """Events by status, in one workspace or (None) in all."""
    query = select(inbox.status, func.count()).group_by(inbox.status)
    if workspace_id is not None:
        query = query.where(inbox.workspace_id == workspace_id)
    return {status: count for status, count in session.execute(query).all()}


Flush = Callable[[Sequence[Incoming]], set[Key]]


class GroupCommit:
    def __init__(self, flush: Flush, *, max_batch: int = 500) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._pending: list[tuple[Incoming, asyncio.Future[bool]]] = []
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="inbox-writer")
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: Incoming) -> bool:
        """Store `item` durably; answers True when it was already stored (a duplicate)."""
        if self._task is None or self._task.done():
            raise StoreUnavailable("the inbox writer is not running")
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._wakeup.set()
        return await asyncio.shield(future)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="inbox-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._drain()
        self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await self._drain()

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            unique: dict[Key, Incoming] = {}
            for item, _ in batch:
                unique.setdefault(item.key, item)
            inserted, failed = await self._store(loop, list(unique.values()))
            for item, future in batch:
                if future.done():
                    continue
                if item.key in failed:
                    future.set_exception(StoreUnavailable("the event could not be stored"))
                    continue
                first = unique.get(item.key) is item
                future.set_result(not (first and item.key in inserted))

    async def _store(
        self, loop: asyncio.AbstractEventLoop, items: list[Incoming]
    ) -> tuple[set[Key], set[Key]]:
        """Flush `items` together; when the database refuses a value, each alone, so that one
        event it refuses fails only its own delivery (an unreachable database fails them all at
        once). Answers (keys inserted, keys that failed)."""
        try:
            return await loop.run_in_executor(self._executor, self._flush, items), set()
        except Exception as exc:
            log.error("could not store events", count=len(items), error=type(exc).__name__)
            if len(items) == 1 or not is_permanent(exc):  # e.g. the database is unreachable
                return set(), {item.key for item in items}
        inserted: set[Key] = set()
        failed: set[Key] = set()
        for item in items:
            new, bad = await self._store(loop, [item])
            inserted |= new
            failed |= bad
        return inserted, failed


class JobSender:
    """Gathers new events' keys and sends them together (`send(keys)`), whatever their
    workspaces: a job applies the events of several workspaces in one transaction, so jobs stay
    full when deliveries are spread over many workspaces (one workspace's share of 50 ms is
    often a single event).

    A batch goes out when `size` keys wait, or `linger` after its first key — unless keys keep
    coming fast enough to make a quarter of `size` within `5 * linger`: then it waits for that
    quarter (at most `5 * linger`). A steady 200 deliveries/s then makes jobs of 25 instead of
    10: the per-job cost (a transaction and about twenty statements, whatever its size) is what
    the workers were short of (benchmarks/README.md, the quiet workspaces' delays); a trickle
    still goes out after `linger`."""

    def __init__(
        self, send: Callable[[list[Key]], object], *, linger: float, size: int = BATCH_SIZE
    ) -> None:
        self._send, self._linger, self._size = send, linger, size
        self._longest, self._fill = 5 * linger, max(1, size // 4)
        self._pending: list[Key] = []
        self._first_at = 0.0
        self._stopping = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="job-sender", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, keys: Iterable[Key]) -> None:
        keys = list(keys)
        if not keys:
            return
        with self._changed:
            if not self._pending:
                self._first_at = time.monotonic()
            self._pending.extend(keys)
            self._changed.notify()

    def stop(self, timeout: float = 10.0) -> None:
        """Send what waits, then stop the thread."""
        with self._changed:
            self._stopping = True
            self._changed.notify()
        self._thread.join(timeout)

    def _next_batch(self) -> list[Key] | None:
        """Wait until something is due (or stopping with nothing left: None)."""
        with self._changed:
            while True:
                if self._pending:
                    due = self._due(time.monotonic())
                    if due <= 0 or len(self._pending) >= self._size or self._stopping:
                        batch, self._pending = self._pending, []
                        return batch
                    self._changed.wait(due)
                elif self._stopping:
                    return None
                else:
                    self._changed.wait()

    def _due(self, now: float) -> float:
        """Seconds until the pending batch should go out (0 or less: now)."""
        waited, count = now - self._first_at, len(self._pending)
        if waited < self._linger:
            return self._linger - waited
        coming = count * self._longest / max(waited, 1e-6)  # at the rate they came so far
        if count >= self._fill or coming < self._fill:
            return 0.0
        return min(self._longest - waited, (self._fill - count) * waited / count)

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                self._send(batch)
            except Exception as exc:  # the sweeper sends them later; the thread lives on
                log.error("could not send jobs", events=len(batch), error=type(exc).__name__)
