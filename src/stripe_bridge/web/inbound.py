"""The two signed endpoints: Stripe webhooks and Veles events. Each verifies, stores
durably (group commit), enqueues one job, and answers; no business logic runs here.

The signing secrets and mode come from `InboundConfig`, the web process's cached view of the
connection, so that the event loop never waits on the database for them (but the first time)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial

import structlog
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request
from starlette.responses import Response

from stripe_bridge.connection import get, platform_workspace, status_of
from stripe_bridge.context import Context
from stripe_bridge.endpoints import MAX_WEBHOOK_SECRETS, webhook_secrets
from stripe_bridge.errors import (
    BadRequest,
    BridgeError,
    PayloadTooLarge,
    StoreUnavailable,
    UnknownWorkspace,
)
from stripe_bridge.inbox.apply import Key
from stripe_bridge.inbox.door import Incoming, classify, parse_event, parse_veles_event, verify
from stripe_bridge.inbox.store import Flush, JobSender, store
from stripe_bridge.metrics import WEBHOOKS
from stripe_bridge.models import DEFAULT_WORKSPACE, IGNORED, RECEIVED, Inbox, StripeEvent
from stripe_bridge.secrets_box import SecretBox
from stripe_bridge.settings import Settings
from stripe_bridge.web.responses import JSON
from stripe_bridge.workspaces import exists

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
    ignored (`unknown_account`) and answered 200, so that Stripe stops retrying it."""
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
    else:
        incoming.workspace_id = workspace_id
        classify(incoming, handled=bridge.handlers)
    return bool(await state.group_commit.submit(incoming))


UNKNOWN_ACCOUNT = "unknown_account"


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


@dataclass(frozen=True)
class InboundView:
    """What the webhook door and the handlers need: secrets, mode, and whether to apply."""

    secrets: tuple[str, ...]
    mode: str
    status: str


def inbound_view(
    session: Session, box: SecretBox, settings: Settings, workspace_id: str
) -> InboundView | None:
    """The workspace's view, None when it does not exist. The box opens only stored secrets:
    an inbound-only bridge (a signing secret in the environment, no API key) needs no
    encryption key. The environment's secrets are the `default` workspace's."""
    if not exists(session, workspace_id):
        return None
    row = get(session, workspace_id)
    stored = webhook_secrets(row, box) if row and row.webhook_secrets_encrypted else ()
    environment = settings.stripe_webhook_secrets if workspace_id == DEFAULT_WORKSPACE else ()
    secrets = stored or environment[:MAX_WEBHOOK_SECRETS]
    mode = row.mode if row is not None else settings.inbound_mode
    return InboundView(secrets, mode, status_of(row))


@dataclass
class _Cached:
    view: InboundView | None = None
    read_at: float = 0.0
    refreshing: asyncio.Future[InboundView | None] | None = None
    read_once: bool = False


class InboundConfig:
    """The web process's view of each workspace's connection: read on first use, then
    refreshed in a thread at most every `ttl` seconds while requests keep using the last view
    (the event loop never waits on the database for it, except for the very first read). A
    workspace that does not exist is remembered too (404 without a query each time)."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        box: SecretBox,
        settings: Settings,
        ttl: float = 1.0,
    ) -> None:
        self._session_factory, self._box, self._settings, self._ttl = (
            session_factory,
            box,
            settings,
            ttl,
        )
        self._cache: dict[str, _Cached] = {}
        self._accounts: dict[str, tuple[float, str | None]] = {}

    async def workspace_of(self, account_id: str) -> str | None:
        """The workspace a connected account's events go to (read at most every `ttl`)."""
        read_at, workspace_id = self._accounts.get(account_id, (-self._ttl - 1, None))
        if time.monotonic() - read_at > self._ttl:
            loop = asyncio.get_running_loop()
            workspace_id = await loop.run_in_executor(None, self._read_account, account_id)
            if len(self._accounts) >= MAX_CACHED:
                self._accounts.clear()
            if workspace_id is not None:  # one just connected must not wait a ttl to be seen
                self._accounts[account_id] = (time.monotonic(), workspace_id)
        return workspace_id

    def _read_account(self, account_id: str) -> str | None:
        try:
            with self._session_factory() as session:
                return platform_workspace(session, account_id)
        except SQLAlchemyError as exc:
            raise StoreUnavailable("the database is unavailable") from exc

    def _read(self, workspace_id: str) -> InboundView | None:
        try:
            with self._session_factory() as session:
                return inbound_view(session, self._box, self._settings, workspace_id)
        except SQLAlchemyError as exc:
            raise StoreUnavailable("the database is unavailable") from exc

    async def view(self, workspace_id: str = DEFAULT_WORKSPACE) -> InboundView:
        """The workspace's view, or UnknownWorkspace (404)."""
        cached = self._cache.get(workspace_id)
        if cached is None:
            if len(self._cache) >= MAX_CACHED:  # ids nobody holds must not grow it forever
                self._cache = {ws: c for ws, c in self._cache.items() if c.view is not None}
            cached = self._cache[workspace_id] = _Cached()
        if cached.read_once and time.monotonic() - cached.read_at <= self._ttl:
            return _known(workspace_id, cached.view)
        if cached.refreshing is None or cached.refreshing.done():
            loop = asyncio.get_running_loop()
            cached.refreshing = loop.run_in_executor(None, self._read, workspace_id)
            cached.refreshing.add_done_callback(partial(_store, cached))
        if cached.read_once and time.monotonic() - cached.read_at <= 2 * self._ttl:
            return _known(workspace_id, cached.view)  # stale by at most one refresh
        return _known(workspace_id, await asyncio.shield(cached.refreshing))


MAX_CACHED = 10_000


def _known(workspace_id: str, view: InboundView | None) -> InboundView:
    if view is None:
        raise UnknownWorkspace(f"no workspace {workspace_id!r}")
    return view


def _store(cached: _Cached, future: asyncio.Future[InboundView | None]) -> None:
    if not future.cancelled() and future.exception() is None:
        cached.view, cached.read_at, cached.read_once = future.result(), time.monotonic(), True
