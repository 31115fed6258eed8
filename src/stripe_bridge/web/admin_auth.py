"""Who may ask the admin API what, and about which workspace.

The operator token (`BRIDGE_ADMIN_TOKEN`) sees every workspace; a workspace token (issued by an
operator, kept as a hash) sees only its own: any other workspace answers 404, as if it did not
exist. A route under `/admin/api/workspaces/{workspace_id}/…` acts on that workspace; the
unscoped form acts on `default`."""

from __future__ import annotations

import hmac

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from stripe_bridge.context import Context
from stripe_bridge.errors import BadRequest, Forbidden, Unauthorized, UnknownWorkspace
from stripe_bridge.models import DEFAULT_WORKSPACE
from stripe_bridge.workspaces import exists, workspace_of_token


def bearer(request: Request) -> str:
    """The bearer token, after the checks every admin request passes: admin enabled, text
    PostgreSQL can compare (a NUL in a query or path parameter would fail the query: a 500)."""
    if not request.app.state.bridge.settings.admin_token:
        raise Forbidden("admin is disabled: BRIDGE_ADMIN_TOKEN is not set")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise Unauthorized("missing or wrong bearer token")
    parameters = [*request.query_params.multi_items(), *request.path_params.items()]
    if any("\x00" in f"{name}{value}" for name, value in parameters):
        raise BadRequest("parameters may not contain NUL characters")
    return given


def is_operator(request: Request, token: str) -> bool:
    expected: str = request.app.state.bridge.settings.admin_token
    return hmac.compare_digest(token.encode(), expected.encode())


def require_admin(request: Request) -> None:
    """Operator-only routes (the workspaces themselves)."""
    if not is_operator(request, bearer(request)):
        raise Unauthorized("missing or wrong bearer token")


async def scope(request: Request) -> str:
    """The workspace this request may act on (the path's, else `default`), or 401/404."""
    token = bearer(request)
    workspace_id = str(request.path_params.get("workspace_id", DEFAULT_WORKSPACE))
    bridge: Context = request.app.state.bridge

    def check() -> None:
        with bridge.session_factory() as session:
            if is_operator(request, token):
                if not exists(session, workspace_id):
                    raise UnknownWorkspace(f"no workspace {workspace_id!r}")
                return
            holder = workspace_of_token(session, token)
        if holder is None:
            raise Unauthorized("missing or wrong bearer token")
        if holder != workspace_id:  # another workspace's token learns nothing, not even that
            raise UnknownWorkspace(f"no workspace {workspace_id!r}")

    await run_in_threadpool(check)
    return workspace_id


def refuse_nul(value: str, what: str) -> str:
    if "\x00" in value:
        raise BadRequest(f"{what} may not contain NUL characters")
    return value
