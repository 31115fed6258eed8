"""`/admin/api/workspaces`: list (operator: all; a workspace token: its own), create, delete
while disconnected, and issue a workspace token (shown once). Every other admin route exists
under `/admin/api/workspaces/{workspace_id}/…` too (`web/app.py` mounts them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from stripe_bridge import workspaces
from stripe_bridge.context import Context
from stripe_bridge.errors import BadRequest
from stripe_bridge.models import NOT_CONNECTED, Connection, Workspace
from stripe_bridge.operators.views import iso
from stripe_bridge.web.admin_auth import caller, refuse_nul, require_admin
from stripe_bridge.web.admin_paging import page, searched
from stripe_bridge.web.openapi import PAGING, declare
from stripe_bridge.web.openapi_schemas import obj, ref, string
from stripe_bridge.web.openapi_schemas import page as page_of
from stripe_bridge.web.responses import JSON


def workspace_json(row: Workspace, connection: Connection | None) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "created_at": iso(row.created_at),
        "status": connection.status if connection is not None else NOT_CONNECTED,
        "account_id": connection.account_id if connection is not None else None,
        "mode": connection.mode if connection is not None else None,
    }


def _render(session: Session) -> Any:
    def render(row: Workspace) -> dict[str, Any]:
        return workspace_json(row, session.get(Connection, row.id))

    return render


@declare(
    "Workspaces (a workspace token sees its own)",
    answers={200: page_of("Workspace"), 400: None},
    query=PAGING,
)
async def list_workspaces(request: Request) -> Response:
    who = await caller(request)
    bridge: Context = request.app.state.bridge

    def work() -> dict[str, Any]:
        with bridge.session_factory() as session:
            query = select(Workspace)
            if not who.operator:
                query = query.where(Workspace.id == who.workspace_id)
            query = searched(query, request, Workspace.id, Workspace.name)
            return page(session, request, query, Workspace.id, _render(session))

    return JSON(await run_in_threadpool(work))


@declare(
    "Create a workspace (operator token)",
    answers={201: ref("Workspace"), 400: None, 409: None},
    body=obj({"id": string(minLength=1), "name": string()}, optional=["name"]),
)
async def create_workspace(request: Request) -> Response:
    require_admin(request)
    bridge: Context = request.app.state.bridge
    try:
        body = orjson.loads(await request.body() or b"{}")
    except orjson.JSONDecodeError:
        raise BadRequest("body is not valid JSON") from None
    workspace_id = body.get("id") if isinstance(body, dict) else None
    name = body.get("name") if isinstance(body, dict) else None
    if not isinstance(workspace_id, str) or (name is not None and not isinstance(name, str)):
        raise BadRequest('body must be {"id": "…", "name"?: "…"}')
    refuse_nul(name or "", "name")

    def work() -> dict[str, Any]:
        with bridge.session_factory.begin() as session:
            return workspace_json(workspaces.create(session, workspace_id, name), None)

    return JSON(await run_in_threadpool(work), status_code=201)


T = TypeVar("T")


async def _on_workspace(request: Request, action: Callable[[Session, str], T]) -> tuple[str, T]:
    """An operator's action on the path's workspace, in one transaction."""
    require_admin(request)
    bridge: Context = request.app.state.bridge
    workspace_id = str(request.path_params["workspace_id"])

    def work() -> T:
        with bridge.session_factory.begin() as session:
            return action(session, workspace_id)

    return workspace_id, await run_in_threadpool(work)


@declare(
    "Delete a disconnected workspace and its records (operator token)",
    answers={200: obj({"id": string(), "deleted": {"type": "boolean"}}), 409: None},
)
async def delete_workspace(request: Request) -> Response:
    workspace_id, _ = await _on_workspace(request, workspaces.delete_workspace)
    return JSON({"id": workspace_id, "deleted": True})


@declare(
    "Issue a workspace token: shown once, kept only as a hash (operator token)",
    answers={201: obj({"token": string()})},
)
async def issue_token(request: Request) -> Response:
    _, token = await _on_workspace(request, workspaces.issue_token)
    return JSON({"token": token}, status_code=201)


@declare(
    "Revoke every token of the workspace (operator token)",
    answers={200: obj({"revoked": {"type": "integer"}})},
)
async def revoke_tokens(request: Request) -> Response:
    _, revoked = await _on_workspace(request, workspaces.revoke_tokens)
    return JSON({"revoked": revoked})


routes = [
    Route("/workspaces", list_workspaces, methods=["GET"]),
    Route("/workspaces", create_workspace, methods=["POST"]),
    Route("/workspaces/{workspace_id}", delete_workspace, methods=["DELETE"]),
    Route("/workspaces/{workspace_id}/tokens", issue_token, methods=["POST"]),
    Route("/workspaces/{workspace_id}/tokens", revoke_tokens, methods=["DELETE"]),
]
