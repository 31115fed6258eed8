"""A/B: `enqueue_many` (a batch of messages in one Redis pipeline, what
`jobs.PipelinedRedisBroker` did until it was removed; copied below) against a loop of the public
`broker.enqueue(message)` (what the bridge does), on the shapes the bridge sends, against the
local Redis.

    .venv/bin/python -m benchmarks.enqueue_ab [--rounds 6] [--flushes 200] [--no-db]

Shapes: (i) one batch job of 100 Stripe ids (what the job sender sends for a group commit of
<= 100 events), (i+) two batch jobs of 113 ids (the sender at saturation: it sends as soon as
100 ids wait, i.e. 100 plus up to one group commit), (ii) three batch jobs (a flush of 300
ids: `batches.chunks`), (iii) 50 Veles jobs (one job per Veles event, sent inline by the Veles
group commit). Each round runs every shape with A and B in alternating order (A,B then B,A),
`--flushes` flushes each, so both variants see the same noise from a shared machine; the Redis
keys are deleted between blocks (untimed). Note that redis-py sends `SCRIPT EXISTS` before every
pipeline that runs a script, so A is two round trips whatever the number of messages.

With the database (default; `--no-db` skips it) each round also times what a group commit's
transaction costs (`inbox.store` + COMMIT) for 14 and 100 Stripe events and 50 Veles events, in
a scratch database `sb_bench_ab_<random>` that is dropped at the end, so the enqueue can be put
next to the flush it belongs to. Only ever talks to 127.0.0.1."""

from __future__ import annotations

import argparse
import random
import statistics
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any, cast

import dramatiq
import orjson
import psycopg
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis
from psycopg import sql

from benchmarks.deliveries import make_deliveries
from stripe_bridge.inbox.batch import chunks
from stripe_bridge.jobs import build_broker, declare_actors
from stripe_bridge.settings import Settings

REDIS_URL = "redis://127.0.0.1:6379/0"
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def enqueue_many(broker: RedisBroker, messages: list[dramatiq.Message[Any]]) -> None:
    """The removed `PipelinedRedisBroker.enqueue_many`, verbatim but for `self`: dramatiq's
    dispatch script called with the broker's private state (`scripts`, `broker_id`,
    `heartbeat_timeout`, `dead_message_ttl`, `_should_do_maintenance`, `_max_unpack_size`)."""
    if not messages:
        return
    dispatch = broker.scripts["dispatch"]
    prepared = []
    for message in messages:
        message = message.copy(options={"redis_message_id": str(uuid.uuid4())})
        broker.emit_before("enqueue", message, None)
        prepared.append(message)
    pipe = broker.client.pipeline(transaction=False)
    for message in prepared:
        args = [
            "enqueue",
            current_millis(),
            message.queue_name,
            broker.broker_id,
            broker.heartbeat_timeout,
            broker.dead_message_ttl,
            broker._should_do_maintenance("enqueue"),
            broker._max_unpack_size(),
            message.options["redis_message_id"],
            message.encode(),
        ]
        dispatch(args=args, keys=[broker.namespace], client=pipe)
    pipe.execute()
    for message in prepared:
        broker.emit_after("enqueue", message, None)


def event_ids(count: int) -> list[str]:
    return [f"evt_1Q{uuid.uuid4().hex[:22]}" for _ in range(count)]


def timed(fn: Callable[[], object], flushes: int) -> tuple[float, float]:
    """Median wall and CPU (this thread) seconds per call."""
    walls, cpus = [], []
    for _ in range(flushes):
        wall, cpu = time.perf_counter(), time.thread_time()
        fn()
        cpus.append(time.thread_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return statistics.median(walls), statistics.median(cpus)


@contextmanager
def scratch_database() -> Iterator[str]:
    from stripe_bridge.db import make_engine
    from stripe_bridge.migrate import upgrade

    name = f"sb_bench_ab_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    try:
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


class StoreTimer:
    """Group-commit transactions (`inbox.store` + COMMIT) of fresh, realistic events."""

    def __init__(self, url: str) -> None:
        from stripe_bridge.db import make_engine, make_session_factory
        from stripe_bridge.handlers import STRIPE_HANDLERS as REGISTRY
        from stripe_bridge.inbox.door import classify, parse_event

        self.engine = make_engine(url, pool_size=2)
        self.session_factory = make_session_factory(engine=self.engine)
        self._parse, self._classify, self._handled = parse_event, classify, REGISTRY
        self._rng = random.Random(7)
        self._tag = 0

    def stripe_batch(self, size: int) -> list[Any]:
        self._tag += 1
        lines, _ = make_deliveries(size, f"ab{self._tag}x", "whsec_x", self._rng, duplicate_share=0)
        batch = []
        for line in lines:
            incoming = self._parse(line.split(b"\t", 1)[1])
            self._classify(incoming, handled=self._handled)
            batch.append(incoming)
        return batch

    def veles_batch(self, size: int) -> list[Any]:
        from stripe_bridge.handlers import VELES_HANDLERS as VELES_REGISTRY
        from stripe_bridge.inbox.door import parse_veles_event

        out = []
        for _ in range(size):
            body = orjson.dumps(
                {
                    "id": f"vev_{uuid.uuid4().hex[:20]}",
                    "type": "customer.upserted",
                    "created": 1_750_000_000,
                    "data": {
                        "id": f"vc_{uuid.uuid4().hex[:12]}",
                        "name": "Acme GmbH",
                        "email": "billing@acme.example",
                        "domain": "acme.example",
                    },
                }
            )
            out.append(parse_veles_event(body, VELES_REGISTRY))
        return out

    def time_store(self, inbox: Any, make: Callable[[], list[Any]], flushes: int) -> float:
        from stripe_bridge.inbox.store import store

        walls = []
        for _ in range(flushes):
            batch = make()  # untimed: parsing happens on the event loop, not in the flush
            start = time.perf_counter()
            with self.session_factory.begin() as session:
                store(session, inbox, batch)
            walls.append(time.perf_counter() - start)
        return statistics.median(walls)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--flushes", type=int, default=200, help="flushes per shape and variant")
    parser.add_argument("--no-db", action="store_true", help="skip the group-commit timings")
    args = parser.parse_args(argv)

    namespace = f"sb-bench-ab-{uuid.uuid4().hex[:8]}"
    settings = cast(Settings, SimpleNamespace(redis_url=REDIS_URL, redis_namespace=namespace))
    broker = build_broker(settings)  # what production builds: RedisBroker + CurrentMessage
    assert isinstance(broker, RedisBroker)
    context = SimpleNamespace(broker=broker, settings=SimpleNamespace(event_max_attempts=8))
    declare_actors(cast(Any, context))  # declared only: never run here
    apply_stripe_events = broker.get_actor("apply_stripe_events")
    apply_veles_event = broker.get_actor("apply_veles_event")
    client: redis.Redis = broker.client

    def shape_messages(name: str, fixed: bool = False) -> Callable[[], list[dramatiq.Message[Any]]]:
        """Fresh ids for every flush; `fixed`: the same ids (to time building the messages
        without generating ids, which the bridge does not do)."""
        count = {"i": 100, "i+": 113, "ii": 300, "iii": 50}[name.split(":")[0]]
        ready = event_ids(count)

        def ids() -> list[str]:
            return ready if fixed else event_ids(count)

        if count == 50:
            return lambda: [apply_veles_event.message(i) for i in ids()]
        return lambda: [apply_stripe_events.message(b) for b in chunks(ids())]

    shapes = [
        "i: 1 job of 100 ids",
        "i+: 2 jobs (113 ids)",
        "ii: 3 jobs (300 ids)",
        "iii: 50 Veles jobs",
    ]

    def variant(letter: str, make: Callable[[], list[dramatiq.Message[Any]]]) -> Callable[[], None]:
        # the messages are built outside the timed call (the same work in A and B)
        pending = [make() for _ in range(args.flushes + 5)]

        def a() -> None:
            enqueue_many(broker, pending.pop())

        def b() -> None:
            for message in pending.pop():
                broker.enqueue(message)

        return a if letter == "A" else b

    def clear() -> None:
        keys = list(client.scan_iter(f"{namespace}*"))
        if keys:
            client.unlink(*keys)

    results: dict[str, dict[str, list[float]]] = {
        s: {"A": [], "B": [], "Acpu": [], "Bcpu": []} for s in shapes
    }
    build: dict[str, list[float]] = {s: [] for s in shapes}
    stores: dict[str, list[float]] = {"stripe 14": [], "stripe 100": [], "veles 50": []}
    pings: list[float] = []

    with scratch_database() if not args.no_db else _nothing() as url:
        timer = StoreTimer(url) if url else None
        try:
            for shape in shapes:  # warm-up: scripts loaded, max unpack size read, pools opened
                for letter in "AB":
                    timed(variant(letter, shape_messages(shape)), 20)
            clear()
            for round_no in range(args.rounds):
                order = "AB" if round_no % 2 == 0 else "BA"
                for shape in shapes:
                    make = shape_messages(shape)
                    build[shape].append(timed(shape_messages(shape, fixed=True), 50)[0])
                    for letter in order:
                        run = variant(letter, make)
                        wall, cpu = timed(run, args.flushes)
                        results[shape][letter].append(wall)
                        results[shape][letter + "cpu"].append(cpu)
                        clear()
                pings.append(timed(client.ping, 200)[0])
                if timer is not None:
                    from stripe_bridge.models import StripeEvent, VelesEvent

                    n = max(10, args.flushes // 10)
                    stores["stripe 14"].append(
                        timer.time_store(StripeEvent, lambda: timer.stripe_batch(14), n)
                    )
                    stores["stripe 100"].append(
                        timer.time_store(StripeEvent, lambda: timer.stripe_batch(100), n)
                    )
                    stores["veles 50"].append(
                        timer.time_store(VelesEvent, lambda: timer.veles_batch(50), n)
                    )
                print(f"round {round_no + 1}/{args.rounds} done ({order} first)", flush=True)
        finally:
            clear()
            if timer is not None:
                timer.engine.dispose()
            broker.close()

    us = 1e6
    print(f"\nRedis PING round trip: median {statistics.median(pings) * us:.0f} us")
    print(
        f"{args.rounds} rounds x {args.flushes} flushes per shape and variant; per flush, "
        "median of the rounds' medians (range)\n"
    )
    print(
        "| shape | A enqueue_many | B loop of enqueue | B/A (range over rounds) | "
        "CPU A | CPU B | building the messages |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for shape in shapes:
        r = results[shape]
        ratios = [b / a for a, b in zip(r["A"], r["B"], strict=True)]
        print(
            f"| {shape} | {statistics.median(r['A']) * us:,.0f} us | "
            f"{statistics.median(r['B']) * us:,.0f} us | {statistics.median(ratios):.2f}x "
            f"({min(ratios):.2f}-{max(ratios):.2f}) | {statistics.median(r['Acpu']) * us:,.0f} us"
            f" | {statistics.median(r['Bcpu']) * us:,.0f} us | "
            f"{statistics.median(build[shape]) * us:,.0f} us |"
        )
    if any(stores.values()):
        print("\nGroup commit transaction (inbox.store + COMMIT), median of the rounds' medians:")
        for name, values in stores.items():
            print(
                f"  {name} events: {statistics.median(values) * us:,.0f} us "
                f"({min(values) * us:,.0f}-{max(values) * us:,.0f})"
            )
    return 0


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


if __name__ == "__main__":
    raise SystemExit(main())
