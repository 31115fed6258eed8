"""GET /admin: the console (General, Customers, Products, Subscriptions), a static page that
calls the admin API with the token the operator enters; refused when no token is configured."""

from __future__ import annotations

from importlib.resources import files

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from stripe_bridge.errors import Forbidden

_PAGE = files("stripe_bridge.web").joinpath("static/console.html")


async def console(request: Request) -> Response:
    if not request.app.state.bridge.settings.admin_token:
        raise Forbidden("admin is disabled: BRIDGE_ADMIN_TOKEN is not set")
    return HTMLResponse(
        _PAGE.read_text(encoding="utf-8"),
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; "
            "style-src 'unsafe-inline'; connect-src 'self'",
            "X-Frame-Options": "DENY",
        },
    )
