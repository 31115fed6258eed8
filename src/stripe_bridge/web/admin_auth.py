"""Who may ask the admin API what, and about which workspace.

The operator token (`BRIDGE_ADMIN_TOKEN`) sees every workspace; a workspace token (issued by an
operator, kept as a hash) sees only its own: any other workspace answers 404, as if it did not
exist. A route under `/admin/api/workspaces/{workspace_id}/…` acts on that workspace; the
unscoped form acts on `default`.

A caller comes with `Authorization: Bearer <token>`, or with the console's session cookie
(`console_session`), which stands for the token given at login; a cookie's request that
changes something must repeat the session's CSRF token in `X-CSRF-Token`."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from stripe_bridge.context import Context
from stripe_bridge.errors import BadRequest, Forbidden, Unauthorized, UnknownWorkspace
from stripe_bridge.models import DEFAULT_WORKSPACE
from stripe_bridge.web import console_session
from stripe_bridge.web.console_session import Login
from stripe_bridge.workspaces import exists, workspace_of_digest
from stripe_bridge.workspaces import token_digest as digest

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WRONG = "missing or wrong bearer token"


@dataclass(frozen=True)
class Caller:
    """The operator (`workspace_id` None) or the holder of one workspace's token."""

    operator: bool
    workspace_id: str | None


def admin_token(request: Request) -> str:
    """BRIDGE_ADMIN_TOKEN, or 403 for every admin request when it is not set."""
    token: str | None = request.app.state.bridge.settings.admin_token
    if not token:
        raise Forbidden("admin is disabled: BRIDGE_ADMIN_TOKEN is not set")
    return token


def login_of(request: Request) -> Login | None:
    """The console login the request's cookie stands for (None without a valid one)."""
    cookie = request.cookies.get(console_session.COOKIE)
    return console_session.opened(admin_token(request), cookie)


def credential(request: Request) -> str:
    """The digest of the caller's token, after the checks every admin request passes: admin
    enabled, text PostgreSQL can compare (a NUL in a query or path parameter would fail the
    query: a 500), and the CSRF token for a cookie's request that changes something."""
    admin_token(request)
    parameters = [*request.query_params.multi_items(), *request.path_params.items()]
    if any("\x00" in f"{name}{value}" for name, value in parameters):
        raise BadRequest("parameters may not contain NUL characters")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if given and scheme.lower() == "bearer":
        return digest(given)
    login = login_of(request)
    if login is None:
        raise Unauthorized(WRONG)
    if request.method not in SAFE_METHODS and not login.allows(
        request.headers.get(console_session.CSRF_HEADER)
    ):
        raise Forbidden("missing or wrong CSRF token (X-CSRF-Token): reload the console")
    return login.digest


def is_operator_digest(request: Request, token_digest: str) -> bool:
    expected = digest(admin_token(request))
    return hmac.compare_digest(token_digest.encode(), expected.encode())


def holder_of(request: Request, token_digest: str) -> Caller | None:
    """Whose token this is the digest of: the operator, a workspace, or nobody (None)."""
    if is_operator_digest(request, token_digest):
        return Caller(True, None)
    bridge: Context = request.app.state.bridge
    with bridge.session_factory() as session:
        workspace_id = workspace_of_digest(session, token_digest)
    return Caller(False, workspace_id) if workspace_id is not None else None


def _resolve(request: Request, token_digest: str) -> Caller:
    who = holder_of(request, token_digest)
    if who is None:
        raise Unauthorized(WRONG)
    return who


async def caller(request: Request) -> Caller:
    """Who is asking, or 401."""
    token_digest = credential(request)
    if is_operator_digest(request, token_digest):
        return Caller(True, None)
    return await run_in_threadpool(_resolve, request, token_digest)


def require_admin(request: Request) -> None:
    """Operator-only routes (the workspaces themselves)."""
    if not is_operator_digest(request, credential(request)):
        raise Unauthorized(WRONG)


async def scope(request: Request) -> str:
    """The workspace this request may act on (the path's, else `default`), or 401/404."""
    token_digest = credential(request)
    workspace_id = str(request.path_params.get("workspace_id", DEFAULT_WORKSPACE))
    bridge: Context = request.app.state.bridge

    def check() -> None:
        who = _resolve(request, token_digest)
        if who.operator:
            with bridge.session_factory() as session:
                if not exists(session, workspace_id):
                    raise UnknownWorkspace(f"no workspace {workspace_id!r}")
        elif who.workspace_id != workspace_id:  # another's token learns nothing, not even that
            raise UnknownWorkspace(f"no workspace {workspace_id!r}")

    await run_in_threadpool(check)
    return workspace_id


def refuse_nul(value: str, what: str) -> str:
    if "\x00" in value:
        raise BadRequest(f"{what} may not contain NUL characters")
    return value
