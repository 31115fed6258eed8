"""The Starlette app factory: routes, error mapping, and the lifespan that owns shared objects."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from stripe_bridge import oauth
from stripe_bridge.context import Context
from stripe_bridge.errors import BridgeError
from stripe_bridge.inbox.store import GroupCommit, JobSender
from stripe_bridge.models import VelesEvent
from stripe_bridge.web import admin_api, admin_operations, admin_review, admin_workspaces, console
from stripe_bridge.web.health import healthz, metrics, readyz
from stripe_bridge.web.inbound import (
    connect_webhook,
    make_flush,
    stripe_webhook,
    veles_event,
)
from stripe_bridge.web.inbound_views import InboundConfig
from stripe_bridge.web.oauth_callback import oauth_callback
from stripe_bridge.web.responses import bridge_error, http_error, unexpected_error


def create_app(bridge: Context) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        linger = bridge.settings.enqueue_linger_ms / 1000
        sender = JobSender(bridge.jobs.send_keys, linger=linger) if linger > 0 else None
        group_commit = GroupCommit(make_flush(bridge, sender=sender))
        veles_commit = GroupCommit(make_flush(bridge, VelesEvent))
        if sender is not None:
            sender.start()
        group_commit.start()
        veles_commit.start()
        app.state.group_commit, app.state.veles_commit = group_commit, veles_commit
        try:
            yield
        finally:
            await group_commit.stop()
            await veles_commit.stop()
            if sender is not None:
                await asyncio.to_thread(sender.stop)

    # every admin route, for `default` unscoped and for any workspace under its own prefix
    scoped = [*admin_api.routes, *admin_operations.routes, *admin_review.routes]
    app = Starlette(
        routes=[
            Route("/webhooks/stripe", stripe_webhook, methods=["POST"]),
            Route("/webhooks/stripe/connect", connect_webhook, methods=["POST"]),
            Route("/webhooks/stripe/{workspace_id}", stripe_webhook, methods=["POST"]),
            Route("/veles/events", veles_event, methods=["POST"]),
            Route(oauth.CALLBACK_PATH, oauth_callback, methods=["GET"]),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            Mount(
                "/admin/api",
                routes=[
                    Route("/session", console.session_info, methods=["GET"]),
                    *admin_workspaces.routes,
                    Mount("/workspaces/{workspace_id}", routes=scoped),
                    *scoped,
                ],
            ),
            *console.routes,
            Mount("/admin/static", StaticFiles(packages=[("stripe_bridge.web", "static")])),
        ],
        exception_handlers={
            BridgeError: bridge_error,
            HTTPException: http_error,
            Exception: unexpected_error,
        },
        lifespan=lifespan,
    )
    app.state.bridge = bridge
    app.state.inbound = InboundConfig(bridge.session_factory, bridge.box, bridge.settings)
    return app
