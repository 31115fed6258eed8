"""The web's cached views of the workspaces' connections (signing secrets, mode, status): read
on first use, refreshed every ttl for all the workspaces in use together (one session, two
queries, a secret decrypted again only when it changed), and what changed meanwhile — a
rotated secret, a disconnect, a deleted workspace — is seen by the next refresh."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event as sa_event

from stripe_bridge import connection, workspaces
from stripe_bridge.context import Context
from stripe_bridge.endpoints import set_webhook_secrets
from stripe_bridge.errors import UnknownWorkspace
from stripe_bridge.secrets_box import SecretBox
from stripe_bridge.web.inbound_views import InboundConfig

TTL = 0.2
COUNT = 40
NAMES = [f"shop-{n:03d}" for n in range(COUNT)]


class CountingBox(SecretBox):
    def __init__(self, box: SecretBox) -> None:
        self._inner, self.opened = box, 0

    def open(self, token: bytes) -> str:
        self.opened += 1
        return self._inner.open(token)


@pytest.fixture
def shops(bridge: Context) -> Context:
    """40 workspaces, each connected to its own account with a secret of its own."""
    with bridge.session_factory.begin() as session:
        for n, workspace_id in enumerate(NAMES):
            workspaces.create(session, workspace_id)
            account = {"id": f"acct_shop{n:03d}", "settings": {}}
            row = connection.take(session, workspace_id, account, "test", platform=False)
            set_webhook_secrets(row, bridge.box, [f"whsec_shop{n:03d}"])
    return bridge


@contextmanager
def reads(bridge: Context) -> Iterator[list[str]]:
    """The SELECTs of the connection table the block made."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("SELECT") and "FROM stripe_connection" in statement:
            seen.append(statement)

    sa_event.listen(bridge.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa_event.remove(bridge.engine, "before_cursor_execute", record)


async def every_view(config: InboundConfig) -> dict[str, Any]:
    views = await asyncio.gather(*(config.view(name) for name in NAMES), return_exceptions=True)
    return dict(zip(NAMES, views, strict=True))


async def refreshed(config: InboundConfig) -> dict[str, Any]:
    """Every view after the ttl has passed and the refresh it started has finished."""
    await asyncio.sleep(2.5 * TTL)  # past the stale-but-usable window: the caller waits
    return await every_view(config)


def test_the_views_of_many_workspaces_are_read_together(shops: Context) -> None:
    box = CountingBox(shops.box)
    config = InboundConfig(shops.session_factory, box, shops.settings, ttl=TTL)

    async def scenario() -> tuple[dict[str, Any], int, int, dict[str, Any], int, int]:
        with reads(shops) as first:
            views = await every_view(config)
        opened_first = box.opened
        with reads(shops) as later:
            for _ in range(3):
                again = await refreshed(config)
        return views, len(first), opened_first, again, len(later), box.opened

    views, first, opened_first, again, later, opened = asyncio.run(scenario())

    assert {name: view.secrets for name, view in views.items()} == {
        name: (f"whsec_shop{n:03d}",) for n, name in enumerate(NAMES)
    }
    assert again == views
    # the first use: the one that came first is read alone, the rest together next
    assert first <= 2
    # three refreshes of 40 views: one query of the connections each (not 40)
    assert later <= 3
    # each stored secret decrypted once, not again while it is unchanged
    assert opened_first == opened == COUNT


def test_what_changed_is_seen_by_the_next_refresh(shops: Context) -> None:
    config = InboundConfig(shops.session_factory, shops.box, shops.settings, ttl=TTL)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        before = await every_view(config)
        with shops.session_factory.begin() as session:
            row = connection.get(session, "shop-001")
            assert row is not None
            set_webhook_secrets(row, shops.box, ["whsec_rotated", "whsec_shop001"])
            connection.disconnect(session, "shop-002")
            connection.disconnect(session, "shop-003")
        with shops.session_factory.begin() as session:
            workspaces.delete_workspace(session, "shop-003")
        return before, await refreshed(config)

    before, after = asyncio.run(scenario())

    assert before["shop-001"].secrets == ("whsec_shop001",)
    assert after["shop-001"].secrets == ("whsec_rotated", "whsec_shop001")
    assert (before["shop-002"].status, after["shop-002"].status) == ("connected", "disconnected")
    assert isinstance(after["shop-003"], UnknownWorkspace)
    assert after["shop-004"] == before["shop-004"]


def test_a_workspace_nobody_holds_is_unknown_and_remembered(shops: Context) -> None:
    config = InboundConfig(shops.session_factory, shops.box, shops.settings, ttl=TTL)

    async def scenario() -> int:
        for _ in range(2):
            with pytest.raises(UnknownWorkspace):
                await config.view("nobody")
        with reads(shops) as seen:
            for _ in range(20):
                with pytest.raises(UnknownWorkspace):
                    await config.view("nobody")
        return len(seen)

    assert asyncio.run(scenario()) == 0  # within the ttl: answered from memory
