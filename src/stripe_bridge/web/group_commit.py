"""Group commit: concurrent deliveries share one INSERT and one COMMIT before they are answered.

Each request parks its event here and awaits a future; one writer thread stores everything
parked since its last flush in a single transaction, enqueues the new events, then resolves
every future. Under load the batches grow by themselves; at rest a batch is one event."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import structlog

from stripe_bridge.errors import StoreUnavailable
from stripe_bridge.failures import is_permanent
from stripe_bridge.inbox.parse import Incoming

log = structlog.get_logger(__name__)

Flush = Callable[[Sequence[Incoming]], set[str]]


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
            unique: dict[str, Incoming] = {}
            for item, _ in batch:
                unique.setdefault(item.id, item)
            inserted, failed = await self._store(loop, list(unique.values()))
            for item, future in batch:
                if future.done():
                    continue
                if item.id in failed:
                    future.set_exception(StoreUnavailable("the event could not be stored"))
                    continue
                first = unique.get(item.id) is item
                future.set_result(not (first and item.id in inserted))

    async def _store(
        self, loop: asyncio.AbstractEventLoop, items: list[Incoming]
    ) -> tuple[set[str], set[str]]:
        """Flush `items` together; when the database refuses a value, each alone, so that one
        event it refuses fails only its own delivery (an unreachable database fails them all at
        once). Answers (ids inserted, ids that failed)."""
        try:
            return await loop.run_in_executor(self._executor, self._flush, items), set()
        except Exception as exc:
            log.error("could not store events", count=len(items), error=type(exc).__name__)
            if len(items) == 1 or not is_permanent(exc):  # e.g. the database is unreachable
                return set(), {item.id for item in items}
        inserted: set[str] = set()
        failed: set[str] = set()
        for item in items:
            new, bad = await self._store(loop, [item])
            inserted |= new
            failed |= bad
        return inserted, failed
