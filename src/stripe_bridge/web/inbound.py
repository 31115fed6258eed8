"""The two signed endpoints: Stripe webhooks and Veles events. Each verifies, stores
durably (group commit), enqueues one job, and answers; no business logic runs here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import structlog
from starlette.requests import Request
from starlette.responses import Response

from stripe_bridge.context import Context
from stripe_bridge.errors import BadRequest, BridgeError, PayloadTooLarge
from stripe_bridge.inbox.parse import Incoming, classify, parse_event, parse_veles_event
from stripe_bridge.inbox.signatures import verify
from stripe_bridge.inbox.store import store
from stripe_bridge.metrics import WEBHOOKS
from stripe_bridge.models import RECEIVED, Inbox, StripeEvent
from stripe_bridge.web.group_commit import Flush
from stripe_bridge.web.job_sender import JobSender
from stripe_bridge.web.responses import JSON

log = structlog.get_logger(__name__)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing (413) anything over `limit` without reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise PayloadTooLarge(f"body over {limit} bytes")
        except ValueError:
            raise BadRequest("malformed Content-Length") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def make_flush(
    bridge: Context, inbox: Inbox = StripeEvent, sender: JobSender | None = None
) -> Flush:
    """The writer thread's work: one transaction for the batch, then jobs for the new events
    (sent now, or handed to `sender`, which gathers several batches into one job)."""

    def flush(batch: Sequence[Incoming]) -> set[str]:
        with bridge.session_factory.begin() as session:
            inserted = store(session, inbox, batch)
        new = [item.id for item in batch if item.id in inserted and item.status == RECEIVED]
        if sender is not None:
            sender.add(new)
            sent = {"to_send": len(new)}  # the sender gathers them into a batch job
        else:
            sent = {"enqueued": len(bridge.jobs.send_events(new, inbox))}
        log.info(
            "stored events",
            inbox=inbox.__tablename__,
            batch=len(batch),
            new=len(inserted),
            duplicates=len(batch) - len(inserted),
            **sent,
        )
        return inserted

    return flush


Endpoint = Callable[[Request], Awaitable[bool]]


def delivery(
    source: str, *, status_code: int
) -> Callable[[Endpoint], Callable[[Request], Awaitable[Response]]]:
    """Answer `{"received": true, "duplicate": …}` and count every delivery by its result."""

    def wrap(store_one: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                duplicate = await store_one(request)
            except BridgeError as exc:
                WEBHOOKS.labels(source, exc.code).inc()
                raise
            WEBHOOKS.labels(source, "duplicate" if duplicate else "stored").inc()
            return JSON({"received": True, "duplicate": duplicate}, status_code=status_code)

        return endpoint

    return wrap


@delivery("stripe", status_code=200)
async def stripe_webhook(request: Request) -> bool:
    """POST /webhooks/stripe: verify, store durably (group commit), enqueue. Nothing else."""
    state = request.app.state
    bridge: Context = state.bridge
    body = await read_body(request, bridge.settings.max_body_bytes)
    view = await state.inbound.view()
    verify(
        body,
        request.headers.get("stripe-signature"),
        view.secrets,
        bridge.settings.webhook_tolerance,
    )
    incoming = parse_event(body)
    classify(incoming, handled=bridge.handlers)
    return bool(await state.group_commit.submit(incoming))


@delivery("veles", status_code=202)
async def veles_event(request: Request) -> bool:
    """POST /veles/events: Veles' own events, signed like Stripe's with BRIDGE_VELES_SECRET."""
    state = request.app.state
    bridge: Context = state.bridge
    body = await read_body(request, bridge.settings.max_body_bytes)
    secrets = (bridge.settings.veles_secret,) if bridge.settings.veles_secret else ()
    verify(body, request.headers.get("veles-signature"), secrets, bridge.settings.webhook_tolerance)
    incoming = parse_veles_event(body, bridge.veles_handlers)
    return bool(await state.veles_commit.submit(incoming))
