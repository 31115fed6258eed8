"""`stripe-bridge web` with the changes README.md recommends, patched in at start-up, so their
effect can be measured before anyone edits src/ (an experiment, not a way to run the service).

    WHAT_IF=pipeline,unnest,switch .venv/bin/python -m benchmarks.run --servers '' --no-apply \\
        --web-cmd '{python} {root}/benchmarks/what_if.py web --host 127.0.0.1 --port {port}'

WHAT_IF, comma-separated:
- `pipeline`: a batch's jobs go to Redis in one pipelined round trip, not one round trip each
  (Bridge.enqueue_events).
- `late`: answer once the batch is committed; enqueue its jobs afterwards on another thread (the
  sweeper re-sends anything lost), so the ack waits for PostgreSQL only.
- `unnest`: store a batch with one fixed `INSERT … SELECT FROM unnest(arrays) ON CONFLICT DO
  NOTHING RETURNING id` (inbox.store), whose text does not change with the batch size.
- `switch`: `sys.setswitchinterval(0.0005)`: the inbox writer thread gets the GIL back sooner.
- `noenqueue`: no jobs at all (an upper bound; the events stay `received`).
- `gc`: `gc.freeze()` once imported and a higher gen-0 threshold (fewer, shorter collections).
- `async`: no writer thread: the batch is stored with psycopg's AsyncConnection (the `unnest`
  statement) and its jobs pipelined with redis.asyncio, on the event loop itself.

It patches the bridge's internals as they are at the commit measured in README.md, and reaches
into dramatiq's RedisBroker, so it may need adjusting (or become pointless) as src/ changes.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import uuid4

WHAT_IF = set(filter(None, os.environ.get("WHAT_IF", "").split(",")))

COLUMNS = {
    "id": "varchar",
    "type": "varchar",
    "api_version": "varchar",
    "livemode": "boolean",
    "account": "varchar",
    "created": "bigint",
    "object_id": "varchar",
    "payload": "bytea",
    "received_at": "timestamptz",
    "status": "varchar",
    "reason": "text",
    "attempts": "integer",
}


def pipelined_enqueue(self: Any, event_ids: Iterable[str], *args: Any) -> list[str]:
    from dramatiq.common import current_millis

    ids = list(event_ids)
    if not ids:
        return []
    actor = self.actor_for(*args) if args else self.actors.apply_stripe_event
    broker = actor.broker
    dispatch = broker.scripts["dispatch"]
    pipe = broker.client.pipeline(transaction=False)
    for event_id in ids:
        message = actor.message(event_id).copy(options={"redis_message_id": str(uuid4())})
        broker.emit_before("enqueue", message, None)
        dispatch(
            keys=[broker.namespace],
            args=[
                "enqueue", current_millis(), message.queue_name, broker.broker_id,
                broker.heartbeat_timeout, broker.dead_message_ttl,
                broker._should_do_maintenance("enqueue"), broker._max_unpack_size(),
                message.options["redis_message_id"], message.encode(),
            ],
            client=pipe,
        )  # fmt: skip
    pipe.execute()
    return ids


def patch() -> None:
    from sqlalchemy import text

    from stripe_bridge import bootstrap
    from stripe_bridge.models import RECEIVED, utcnow
    from stripe_bridge.web import app, inbound

    if "switch" in WHAT_IF:
        sys.setswitchinterval(0.0005)
    if "gc" in WHAT_IF:
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
    if "noenqueue" in WHAT_IF:
        bootstrap.Bridge.enqueue_events = lambda _self, ids, *_args: list(ids)  # type: ignore[method-assign]
    elif "pipeline" in WHAT_IF:
        bootstrap.Bridge.enqueue_events = pipelined_enqueue  # type: ignore[method-assign]

    if "unnest" in WHAT_IF:
        arrays = ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in COLUMNS.items())
        statement = text(
            f"INSERT INTO stripe_events ({', '.join(COLUMNS)}) SELECT * FROM unnest({arrays}) "
            "ON CONFLICT DO NOTHING RETURNING id"
        )
        store = inbound.store

        def store_unnest(session: Any, inbox: Any, batch: Sequence[Any]) -> set[str]:
            if inbox.__tablename__ != "stripe_events" or not batch:
                return set(store(session, inbox, batch))
            now = utcnow()
            rows = [
                {"api_version": None, "livemode": None, "account": None, "received_at": now,
                 "id": item.id, "type": item.type, "created": item.created,
                 "object_id": item.object_id, "payload": item.payload, "status": item.status,
                 "reason": item.reason, "attempts": 0, **item.extra}
                for item in batch
            ]  # fmt: skip
            columns = {name: [row[name] for row in rows] for name in COLUMNS}
            return set(session.scalars(statement, columns))

        inbound.store = store_unnest

    if "late" in WHAT_IF:
        later = ThreadPoolExecutor(1, thread_name_prefix="enqueue-after-answer")

        def make_flush(bridge: Any, inbox: Any = inbound.StripeEvent) -> Any:
            def flush(batch: Sequence[Any]) -> set[str]:
                with bridge.session_factory.begin() as session:
                    inserted: set[str] = inbound.store(session, inbox, batch)
                new = [item.id for item in batch if item.id in inserted and item.status == RECEIVED]
                later.submit(bridge.enqueue_events, new, inbox)
                return inserted

            return flush

        app.make_flush = make_flush


def patch_async() -> None:
    """The group commit's flush as a coroutine on the event loop: no thread, no GIL hand-offs."""
    import asyncio

    import psycopg
    import redis.asyncio
    from dramatiq.common import current_millis

    from stripe_bridge.errors import StoreUnavailable
    from stripe_bridge.models import RECEIVED, StripeEvent, utcnow
    from stripe_bridge.web import app, group_commit

    arrays = ", ".join(f"%s::{kind}[]" for kind in COLUMNS.values())
    statement = (
        f"INSERT INTO stripe_events ({', '.join(COLUMNS)}) SELECT * FROM unnest({arrays}) "
        "ON CONFLICT DO NOTHING RETURNING id"
    )
    sync_flush = app.make_flush

    def make_flush(bridge: Any, inbox: Any = StripeEvent) -> Any:
        if inbox is not StripeEvent:
            return sync_flush(bridge, inbox)
        actor = bridge.actors.apply_stripe_event
        broker = actor.broker
        url = bridge.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        state: dict[str, Any] = {}

        async def flush(batch: Sequence[Any]) -> set[str]:
            if "pg" not in state:
                state["pg"] = await psycopg.AsyncConnection.connect(url)
                state["redis"] = redis.asyncio.Redis.from_url(bridge.settings.redis_url)
                state["dispatch"] = state["redis"].register_script(
                    broker.scripts["dispatch"].script
                )
            now = utcnow()
            rows = [
                {"api_version": None, "livemode": None, "account": None, "received_at": now,
                 "id": item.id, "type": item.type, "created": item.created,
                 "object_id": item.object_id, "payload": item.payload, "status": item.status,
                 "reason": item.reason, "attempts": 0, **item.extra}
                for item in batch
            ]  # fmt: skip
            async with state["pg"].transaction():
                cursor = await state["pg"].execute(
                    statement, [[row[name] for row in rows] for name in COLUMNS]
                )
                inserted = {row[0] for row in await cursor.fetchall()}
            new = [item.id for item in batch if item.id in inserted and item.status == RECEIVED]
            if new:
                pipe = state["redis"].pipeline(transaction=False)
                for event_id in new:
                    message = actor.message(event_id).copy(
                        options={"redis_message_id": str(uuid4())}
                    )
                    await state["dispatch"](
                        keys=[broker.namespace],
                        args=[
                            "enqueue", current_millis(), message.queue_name, broker.broker_id,
                            broker.heartbeat_timeout, broker.dead_message_ttl,
                            broker._should_do_maintenance("enqueue"), broker._max_unpack_size(),
                            message.options["redis_message_id"], message.encode(),
                        ],
                        client=pipe,
                    )  # fmt: skip
                await pipe.execute()
            return inserted

        return flush

    async def drain(self: Any) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            unique: dict[str, Any] = {}
            for item, _ in batch:
                unique.setdefault(item.id, item)
            try:
                if asyncio.iscoroutinefunction(self._flush):
                    inserted = await self._flush(list(unique.values()))
                else:
                    inserted = await loop.run_in_executor(
                        self._executor, self._flush, list(unique.values())
                    )
            except Exception:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(StoreUnavailable("the event could not be stored"))
                continue
            for item, future in batch:
                if not future.done():
                    future.set_result(not (unique.get(item.id) is item and item.id in inserted))

    app.make_flush = make_flush
    group_commit.GroupCommit._drain = drain  # type: ignore[method-assign]


if __name__ == "__main__":
    patch()
    if "async" in WHAT_IF:
        patch_async()
    from stripe_bridge.cli import main

    sys.exit(main(sys.argv[1:]))
