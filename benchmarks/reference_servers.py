"""The two reference servers the benchmark measures next to stripe-bridge, on the same setup.

- `bare_app`: Starlette that reads the body and answers 200. Nothing is faster on this stack
  (uvicorn + uvloop + httptools), so it is the upper bound.
- `naive_app`: what most integrations do. Per request, in a worker thread: verify the
  signature with the Stripe SDK (`WebhookSignature.verify_header`), parse the event, commit one
  `INSERT … ON CONFLICT DO NOTHING` into `stripe_events` (the bridge's own table, so the row and
  its indexes are the same), and send one Dramatiq message when the row was new.

Both are uvicorn factories configured from the environment (run.py starts them):

    uvicorn --factory benchmarks.reference_servers:naive_app --loop uvloop --http httptools

BENCH_DATABASE_URL, BENCH_REDIS_URL, BENCH_REDIS_NAMESPACE, BENCH_WEBHOOK_SECRET (naive only).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import dramatiq
import orjson
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy import create_engine, inspect
from sqlalchemy.dialects import postgresql
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from stripe import SignatureVerificationError, WebhookSignature

from stripe_bridge.models import StripeEvent

TOLERANCE = 300
POOL_SIZE = 40  # anyio's default thread limiter: every worker thread may hold a connection


async def healthz(_request: Request) -> Response:
    return Response(b"ok")


def bare_app() -> Starlette:
    async def webhook(request: Request) -> Response:
        await request.body()
        return Response(b'{"received":true}', media_type="application/json")

    return Starlette(
        routes=[
            Route("/webhooks/stripe", webhook, methods=["POST"]),
            Route("/healthz", healthz),
        ]
    )


def naive_app() -> Starlette:
    secret = os.environ["BENCH_WEBHOOK_SECRET"]
    engine = create_engine(os.environ["BENCH_DATABASE_URL"], pool_size=POOL_SIZE, max_overflow=0)
    broker = RedisBroker(
        url=os.environ["BENCH_REDIS_URL"], namespace=os.environ["BENCH_REDIS_NAMESPACE"]
    )

    def apply_stripe_event(event_id: str) -> None:  # never consumed in the benchmark
        raise NotImplementedError(event_id)

    actor: dramatiq.Actor[[str], None] = dramatiq.Actor(
        apply_stripe_event,
        broker=broker,
        actor_name="apply_stripe_event",
        queue_name="stripe-events",
        priority=0,
        options={},
    )
    insert = (
        postgresql.insert(StripeEvent.__table__)  # type: ignore[arg-type]
        .on_conflict_do_nothing()
        .returning(StripeEvent.id)
    )
    # the database's own table (a `--ref` before workspaces has no workspace_id column)
    scoped = "workspace_id" in {
        column["name"] for column in inspect(engine).get_columns("stripe_events")
    }

    def handle(body: bytes, header: str) -> tuple[int, bytes]:
        try:
            WebhookSignature.verify_header(body.decode(), header, secret, TOLERANCE)
        except (SignatureVerificationError, UnicodeDecodeError):
            return 400, b'{"error":"bad signature"}'
        doc: dict[str, Any] = orjson.loads(body)
        obj = doc["data"]["object"]
        row = {
            "id": doc["id"],
            "type": doc["type"],
            "api_version": doc.get("api_version"),
            "livemode": doc["livemode"],
            "account": doc.get("account"),
            "created": doc["created"],
            "object_id": obj.get("id"),
            "payload": body,
            "received_at": datetime.now(UTC),
            "status": "received",
            "reason": None,
            "attempts": 0,
            **({"workspace_id": "default"} if scoped else {}),
        }
        with engine.begin() as connection:
            inserted = connection.execute(insert, row).first() is not None
        if inserted:
            actor.send(doc["id"])
        return 200, b'{"received":true,"duplicate":%s}' % (b"false" if inserted else b"true")

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            broker.close()
            engine.dispose()

    async def webhook(request: Request) -> Response:
        body = await request.body()
        status, answer = await run_in_threadpool(
            handle, body, request.headers.get("stripe-signature", "")
        )
        return Response(answer, status_code=status, media_type="application/json")

    return Starlette(
        routes=[
            Route("/webhooks/stripe", webhook, methods=["POST"]),
            Route("/healthz", healthz),
        ],
        lifespan=lifespan,
    )
