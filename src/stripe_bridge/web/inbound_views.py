"""The web process's cached view of each workspace's connection (signing secrets, mode,
status), so that the event loop never waits on the database for them but the first time.

Views are refreshed together: when one is due, every view in use that is due within half a
`ttl` is read with it, in one thread, one session and two queries for all of them (and a
stored secret is decrypted again only when it changed). Read one by one, 200 workspaces'
views cost 200 sessions, 400 queries and 200 decryptions a second, on the web's GIL: a third
of its time when deliveries were spread over them (benchmarks/README.md)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from stripe_bridge.connection import platform_workspace, status_of
from stripe_bridge.endpoints import MAX_WEBHOOK_SECRETS, webhook_secrets
from stripe_bridge.errors import StoreUnavailable, UnknownWorkspace
from stripe_bridge.models import DEFAULT_WORKSPACE, Connection, Workspace
from stripe_bridge.secrets_box import SecretBox
from stripe_bridge.settings import Settings
from stripe_bridge.workspaces import ID_PATTERN

MAX_CACHED = 10_000
READ_CHUNK = 1_000  # workspace ids per query


@dataclass(frozen=True)
class InboundView:
    """What the webhook door and the handlers need: secrets, mode, and whether to apply."""

    secrets: tuple[str, ...]
    mode: str
    status: str


def inbound_views(
    session: Session,
    box: SecretBox,
    settings: Settings,
    workspace_ids: Collection[str],
    opened: dict[bytes, tuple[str, ...]] | None = None,
) -> dict[str, InboundView | None]:
    """The workspaces' views, None for one that does not exist, in two queries per
    `READ_CHUNK`. The box opens only stored secrets (an inbound-only bridge, with a signing
    secret in the environment and no API key, needs no encryption key); `opened` remembers
    what it opened, by ciphertext. The environment's secrets are the `default` workspace's."""
    ids = sorted(
        workspace_id for workspace_id in workspace_ids if ID_PATTERN.fullmatch(workspace_id)
    )
    existing: set[str] = set()
    rows: dict[str, Connection] = {}
    for start in range(0, len(ids), READ_CHUNK):
        chunk = ids[start : start + READ_CHUNK]
        existing.update(session.scalars(select(Workspace.id).where(Workspace.id.in_(chunk))))
        connections = session.scalars(select(Connection).where(Connection.workspace_id.in_(chunk)))
        rows.update((row.workspace_id, row) for row in connections)
    opened = {} if opened is None else opened
    views: dict[str, InboundView | None] = dict.fromkeys(workspace_ids)
    for workspace_id in existing:
        row = rows.get(workspace_id)
        stored: tuple[str, ...] = ()
        if row is not None and row.webhook_secrets_encrypted:
            sealed = row.webhook_secrets_encrypted
            if sealed not in opened:
                opened[sealed] = webhook_secrets(row, box)
            stored = opened[sealed]
        environment = settings.stripe_webhook_secrets if workspace_id == DEFAULT_WORKSPACE else ()
        secrets = stored or environment[:MAX_WEBHOOK_SECRETS]
        mode = row.mode if row is not None else settings.inbound_mode
        views[workspace_id] = InboundView(secrets, mode, status_of(row))
    return views


@dataclass
class _Cached:
    view: InboundView | None = None
    read_at: float = 0.0
    used_at: float = 0.0
    read_once: bool = False


Refresh = asyncio.Future[dict[str, InboundView | None]]


class InboundConfig:
    """The views, read on first use, then refreshed at most every `ttl` seconds while requests
    keep using the last one (stale by at most one refresh). A workspace that does not exist is
    remembered too (404 without a query each time). One refresh runs at a time; a view asked
    for meanwhile goes into the next."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        box: SecretBox,
        settings: Settings,
        ttl: float = 1.0,
    ) -> None:
        self._session_factory, self._box, self._settings = session_factory, box, settings
        self._ttl = ttl
        self._cache: dict[str, _Cached] = {}
        self._accounts: dict[str, tuple[float, str | None]] = {}
        self._opened: dict[bytes, tuple[str, ...]] = {}
        self._running: tuple[set[str], Refresh] | None = None
        self._next: tuple[set[str], Refresh] | None = None

    async def view(self, workspace_id: str = DEFAULT_WORKSPACE) -> InboundView:
        """The workspace's view, or UnknownWorkspace (404)."""
        now = time.monotonic()
        cached = self._cache.get(workspace_id)
        if cached is None:
            if len(self._cache) >= MAX_CACHED:  # ids nobody holds must not grow it forever
                self._cache = {ws: c for ws, c in self._cache.items() if c.view is not None}
            cached = self._cache[workspace_id] = _Cached()
        cached.used_at = now
        if cached.read_once and now - cached.read_at <= self._ttl:
            return _known(workspace_id, cached.view)
        refresh = self._refresh(workspace_id)
        if cached.read_once and now - cached.read_at <= 2 * self._ttl:
            return _known(workspace_id, cached.view)  # stale by at most one refresh
        views = await asyncio.shield(refresh)
        return _known(workspace_id, views.get(workspace_id, cached.view))

    def _refresh(self, workspace_id: str) -> Refresh:
        """The refresh that will read the workspace's view: the running one if it does, else
        the next (started now if none is running)."""
        if self._running is not None and workspace_id in self._running[0]:
            return self._running[1]
        if self._next is None:
            future: Refresh = asyncio.get_running_loop().create_future()
            # read here when no request awaits it (each used its last view)
            future.add_done_callback(lambda done: done.cancelled() or done.exception())
            self._next = (set(), future)
        self._next[0].add(workspace_id)
        next_refresh = self._next[1]
        if self._running is None:
            self._start()
        return next_refresh

    def _start(self) -> None:
        """Run the next refresh, with every view in use that is due within half a ttl."""
        assert self._next is not None
        ids, future = self._next
        self._next = None
        now = time.monotonic()
        ids |= {
            ws
            for ws, cached in self._cache.items()
            if now - cached.read_at > self._ttl / 2 and now - cached.used_at <= 10 * self._ttl
        }
        self._running = (ids, future)
        loop = asyncio.get_running_loop()
        reading = loop.run_in_executor(None, self._read, ids)
        reading.add_done_callback(lambda done: self._finish(done, future))

    def _finish(self, done: asyncio.Future[dict[str, InboundView | None]], future: Refresh) -> None:
        self._running = None
        if done.cancelled():
            future.cancel()
        elif (error := done.exception()) is not None:
            future.set_exception(error)
        else:
            views, now = done.result(), time.monotonic()
            for workspace_id, view in views.items():
                cached = self._cache.get(workspace_id)
                if cached is not None:
                    cached.view, cached.read_at, cached.read_once = view, now, True
            future.set_result(views)
        if self._next is not None:
            self._start()

    def _read(self, workspace_ids: Iterable[str]) -> dict[str, InboundView | None]:
        try:
            with self._session_factory() as session:
                views = inbound_views(
                    session, self._box, self._settings, set(workspace_ids), self._opened
                )
        except SQLAlchemyError as exc:
            raise StoreUnavailable("the database is unavailable") from exc
        if len(self._opened) > MAX_CACHED:
            self._opened.clear()
        return views

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


def _known(workspace_id: str, view: InboundView | None) -> InboundView:
    if view is None:
        raise UnknownWorkspace(f"no workspace {workspace_id!r}")
    return view
