"""`GET /oauth/stripe/callback`: where Stripe sends the user back after installing the app
(platform mode). The `state` names the workspace the install was started for (sealed by the
bridge); the code is exchanged for the account's tokens and the workspace is connected."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from stripe_bridge import oauth
from stripe_bridge.context import Context
from stripe_bridge.errors import BadRequest
from stripe_bridge.web.responses import JSON


async def oauth_callback(request: Request) -> Response:
    bridge: Context = request.app.state.bridge
    query = request.query_params
    if query.get("error"):
        raise BadRequest(f"the install was not completed: {query.get('error_description')}")
    code, state = query.get("code"), query.get("state")
    if not code or not state:
        raise BadRequest("the callback needs code and state")
    workspace_id = oauth.workspace_of_state(bridge.box, state)

    def work() -> dict[str, Any]:
        with bridge.session_factory.begin() as session:
            row = oauth.complete_install(session, bridge.box, bridge.gateway, workspace_id, code)
            return {"connected": True, "workspace_id": workspace_id, "account_id": row.account_id}

    return JSON(await run_in_threadpool(work))
