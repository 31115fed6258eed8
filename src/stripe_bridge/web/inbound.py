"""The two signed endpoints: Stripe webhooks and Veles events. Each verifies, stores
durably (group commit), enqueues one job, and answers; no business logic runs here.

The signing secrets and mode come from `inbound_views.InboundConfig`, the web process's cached
view of the connections, so that the event loop never waits on the database for them (but the
first time)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import orjson
import structlog
from starlette.requests import Request
from starlette.responses import Response

from stripe_bridge.context import Context
from stripe_bridge.endpoints import MAX_WEBHOOK_SECRETS
from stripe_bridge.errors import (
    BadRequest,
    BridgeError,
    PayloadTooLarge,
)
from stripe_bridge.inbox.apply import Key
from stripe_bridge.inbox.door import Incoming, classify, parse_event, parse_veles_event, verify
from stripe_bridge.inbox.store import Flush, JobSender, store
from stripe_bridge.metrics import WEBHOOKS
from stripe_bridge.models import DEFAULT_WORKSPACE, IGNORED, RECEIVED, Inbox, StripeEvent
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

    def flush(batch: Sequence[Incoming]) -> set[Key]:
        with bridge.session_factory.begin() as session:
            inserted = store(session, inbox, batch)
        new = [item.key for item in batch if item.key in inserted and item.status == RECEIVED]
        if sender is not None:
            sender.add(new)
            sent = {"to_send": len(new)}  # the sender gathers them into a batch job
        else:
            by_workspace: dict[str, list[str]] = {}
            for workspace_id, event_id in new:
                by_workspace.setdefault(workspace_id, []).append(event_id)
            enqueued = sum(
                len(bridge.jobs.send_events(workspace_id, ids, inbox))
                for workspace_id, ids in by_workspace.items()
            )
            sent = {"enqueued": enqueued}
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
    """POST /webhooks/stripe[/{workspace_id}]: verify with the workspace's secrets, store
    durably (group commit), enqueue. Nothing else."""
    state = request.app.state
    bridge: Context = state.bridge
    workspace_id = str(request.path_params.get("workspace_id", DEFAULT_WORKSPACE))
    body = await read_body(request, bridge.settings.max_body_bytes)
    view = await state.inbound.view(workspace_id)
    verify(
        body,
        request.headers.get("stripe-signature"),
        view.secrets,
        bridge.settings.webhook_tolerance,
    )
    incoming = parse_event(body)
    incoming.workspace_id = workspace_id
    classify(incoming, handled=bridge.handlers)
    return bool(await state.group_commit.submit(incoming))


@delivery("stripe", status_code=200)
async def connect_webhook(request: Request) -> bool:
    """POST /webhooks/stripe/connect: the platform's endpoint, every connected account's
    events, verified with STRIPE_CONNECT_WEBHOOK_SECRET and routed by their `account` to the
    workspace connected to it. An account no workspace holds is stored in `default`'s inbox as
    ignored (`unknown_account`), its envelope only, and answered 200, so that Stripe stops
    retrying it."""
    state = request.app.state
    bridge: Context = state.bridge
    body = await read_body(request, bridge.settings.max_body_bytes)
    secrets = bridge.settings.stripe_connect_webhook_secrets[:MAX_WEBHOOK_SECRETS]
    verify(
        body, request.headers.get("stripe-signature"), secrets, bridge.settings.webhook_tolerance
    )
    incoming = parse_event(body)
    account = incoming.extra.get("account")
    workspace_id = await state.inbound.workspace_of(account) if account else None
    if workspace_id is None:
        incoming.status, incoming.reason = IGNORED, UNKNOWN_ACCOUNT
        incoming.payload = envelope(incoming)  # `default`'s readers must not see its data
    else:
        incoming.workspace_id = workspace_id
        classify(incoming, handled=bridge.handlers)
    return bool(await state.group_commit.submit(incoming))


UNKNOWN_ACCOUNT = "unknown_account"


def envelope(incoming: Incoming) -> bytes:
    """What is kept of an event no workspace may read: who sent what, when; not its object."""
    fields = {"id": incoming.id, "type": incoming.type, "created": incoming.created}
    return orjson.dumps({**fields, **incoming.extra})


@delivery("veles", status_code=202)
async def veles_event(request: Request) -> bool:
    """POST /veles/events: Veles' own events, signed like Stripe's with BRIDGE_VELES_SECRET."""
    state = request.app.state
    bridge: Context = state.bridge
    body = await read_body(request, bridge.settings.max_body_bytes)
    secrets = (bridge.settings.veles_secret,) if bridge.settings.veles_secret else ()
    verify(body, request.headers.get("veles-signature"), secrets, bridge.settings.webhook_tolerance)
    incoming = parse_veles_event(body, bridge.veles_handlers)
    await state.inbound.view(incoming.workspace_id)  # 404 for a workspace that does not exist
    return bool(await state.veles_commit.submit(incoming))
