"""The web process's view of the connection (signing secrets, mode), cached so that the
event loop never waits on the database for it, except for the very first read."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from stripe_bridge.connection import MAX_WEBHOOK_SECRETS, get, status_of, webhook_secrets
from stripe_bridge.errors import StoreUnavailable
from stripe_bridge.secrets_box import SecretBox
from stripe_bridge.settings import Settings


@dataclass(frozen=True)
class InboundView:
    """What the webhook door and the handlers need: secrets, mode, and whether to apply."""

    secrets: tuple[str, ...]
    mode: str
    status: str


def inbound_view(session: Session, box: Callable[[], SecretBox], settings: Settings) -> InboundView:
    """`box` is only called when secrets are stored: an inbound-only bridge (a signing secret
    in the environment, no API key) needs no encryption key."""
    row = get(session)
    stored = webhook_secrets(row, box()) if row and row.webhook_secrets_encrypted else ()
    secrets = stored or settings.stripe_webhook_secrets[:MAX_WEBHOOK_SECRETS]
    mode = row.mode if row is not None else settings.inbound_mode
    return InboundView(secrets, mode, status_of(row))


class InboundConfig:
    """The web process's view of the connection: read on first use, then refreshed in a
    thread at most every `ttl` seconds while requests keep using the last view (the event loop
    never waits on the database for it, except for the very first read)."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        box: Callable[[], SecretBox],
        settings: Settings,
        ttl: float = 1.0,
    ) -> None:
        self._session_factory, self._box, self._settings, self._ttl = (
            session_factory,
            box,
            settings,
            ttl,
        )
        self._view: InboundView | None = None
        self._read_at = 0.0
        self._refreshing: asyncio.Future[InboundView] | None = None

    def _read(self) -> InboundView:
        try:
            with self._session_factory() as session:
                return inbound_view(session, self._box, self._settings)
        except SQLAlchemyError as exc:
            raise StoreUnavailable("the database is unavailable") from exc

    async def view(self) -> InboundView:
        if self._view is not None and time.monotonic() - self._read_at <= self._ttl:
            return self._view
        if self._refreshing is None or self._refreshing.done():
            loop = asyncio.get_running_loop()
            self._refreshing = loop.run_in_executor(None, self._read)
            self._refreshing.add_done_callback(self._store)
        if self._view is not None:
            return self._view  # stale by at most one refresh
        return await asyncio.shield(self._refreshing)

    def _store(self, future: asyncio.Future[InboundView]) -> None:
        if not future.cancelled() and future.exception() is None:
            self._view, self._read_at = future.result(), time.monotonic()
