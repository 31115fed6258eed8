"""GET /healthz (process up) and GET /readyz (database, broker and schema ready)."""

from __future__ import annotations

from typing import Any

from dramatiq.brokers.redis import RedisBroker
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from stripe_bridge import __version__
from stripe_bridge.context import Context
from stripe_bridge.migrate import current_revision, head_revision
from stripe_bridge.operators.gauges import exposition
from stripe_bridge.web.responses import JSON


async def healthz(_request: Request) -> Response:
    return JSON({"status": "ok", "version": __version__})


def _checks(bridge: Context) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    try:
        with bridge.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        current = current_revision(bridge.engine)
        checks["database"] = "ok"
        checks["migrations"] = "ok" if current == head_revision() else f"at {current}, not head"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
        checks["migrations"] = "unknown"
    if isinstance(bridge.broker, RedisBroker):
        try:
            bridge.broker.client.ping()
            checks["broker"] = "ok"
        except Exception as exc:
            checks["broker"] = f"unreachable: {type(exc).__name__}"
    else:
        checks["broker"] = "ok"
    return checks


async def readyz(request: Request) -> Response:
    checks = await run_in_threadpool(_checks, request.app.state.bridge)
    ready = all(value == "ok" for value in checks.values())
    return JSON({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


async def metrics(request: Request) -> Response:
    bridge = request.app.state.bridge
    body = await run_in_threadpool(exposition, bridge.session_factory, bridge.settings.metrics_dir)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
