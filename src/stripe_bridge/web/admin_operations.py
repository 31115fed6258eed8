"""The admin API's operations: the connection (GET|PUT|DELETE), sync (start, progress), dead
letters (list, replay one, replay a filtered set)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from stripe_bridge import connection, oauth
from stripe_bridge.context import Context
from stripe_bridge.errors import BadRequest
from stripe_bridge.operators import deadletters
from stripe_bridge.operators.status import status_object
from stripe_bridge.settings import mode_of_key
from stripe_bridge.sync import check_kind
from stripe_bridge.web.admin_auth import refuse_nul, require_admin, scope
from stripe_bridge.web.admin_review import body_field
from stripe_bridge.web.openapi import Query, declare
from stripe_bridge.web.openapi_schemas import COMPONENTS, array, boolean, obj, ref, string
from stripe_bridge.web.responses import JSON

DEAD_LETTERS = obj({"data": array(ref("DeadLetter")), "next_cursor": {"nullable": True}})
assert "DeadLetter" in COMPONENTS


def _status(bridge: Context, workspace_id: str) -> dict[str, Any]:
    with bridge.session_factory() as session:
        return status_object(session, bridge.settings, workspace_id)


@declare("The connection and the inbox, as `status --json`", answers={200: ref("Connection")})
async def get_connection(request: Request) -> Response:
    workspace_id = await scope(request)
    return JSON(await run_in_threadpool(_status, request.app.state.bridge, workspace_id))


@declare(
    "Connect, or update the key of the connected account; in platform mode, connect an account",
    answers={200: ref("Connection"), 400: None, 409: None, 422: None},
    body=obj(
        {"api_key": string(minLength=1), "webhook_secret": string(), "account_id": string()},
        optional=["api_key", "webhook_secret", "account_id"],
    ),
)
async def put_connection(request: Request) -> Response:
    """`{"api_key", "webhook_secret"?}`: connect, or update the key of the connected account;
    `{"account_id"}` with STRIPE_PLATFORM_KEY: connect an account of the platform."""
    workspace_id = await scope(request)
    bridge: Context = request.app.state.bridge
    raw = await request.body()
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        raise BadRequest("body is not valid JSON") from None
    if isinstance(body, dict) and "account_id" in body:
        # the operator's alone: a workspace token proves no hold on an account of the platform
        # (a workspace admin connects by installing the app, which does)
        require_admin(request)
        account_id = await body_field(request, "account_id")
        return JSON(await run_in_threadpool(_connect_account, bridge, workspace_id, account_id))
    api_key = await body_field(request, "api_key")
    webhook_secret = body.get("webhook_secret")  # a dict: body_field checked
    if webhook_secret is not None and not isinstance(webhook_secret, str):
        raise BadRequest("webhook_secret must be a string")

    def work() -> dict[str, Any]:
        with bridge.session_factory.begin() as session:
            row = connection.get(session, workspace_id, lock=True)
            args = (session, bridge.box, bridge.gateway, workspace_id, api_key, webhook_secret)
            if connection.is_connected(row):
                connection.update_key(*args)
            else:
                connection.connect(*args, plan=bridge.endpoint_plan)
        return _status(bridge, workspace_id)

    return JSON(await run_in_threadpool(work))


def _connect_account(bridge: Context, workspace_id: str, account_id: str) -> dict[str, Any]:
    platform_key = bridge.settings.stripe_platform_key
    if not platform_key:
        raise BadRequest("connecting by account_id is platform mode: set STRIPE_PLATFORM_KEY")
    with bridge.session_factory.begin() as session:
        mode = mode_of_key(platform_key)
        connection.connect_account(session, bridge.gateway, workspace_id, account_id, mode)
    return _status(bridge, workspace_id)


@declare(
    "Disconnect: stop sync, pushes and applying events",
    answers={200: ref("Connection"), 409: None},
)
async def delete_connection(request: Request) -> Response:
    workspace_id = await scope(request)
    bridge: Context = request.app.state.bridge

    def work() -> dict[str, Any]:
        with bridge.session_factory.begin() as session:
            connection.disconnect(session, workspace_id, bridge.box, bridge.gateway)
        return _status(bridge, workspace_id)

    return JSON(await run_in_threadpool(work))


@declare(
    "Queue a sync of one kind (runs on a worker)",
    answers={202: obj({"kind": string(), "queued": boolean()}), 400: None, 409: None},
)
async def start_sync(request: Request) -> Response:
    """Queue a sync now; 409 when not connected. Progress: GET /admin/api/sync."""
    workspace_id = await scope(request)
    bridge: Context = request.app.state.bridge
    kind = check_kind(str(request.path_params["kind"]))

    def work() -> None:
        with bridge.session_factory() as session:
            connection.require_connected(session, workspace_id, "sync")
        bridge.jobs.send_sync(workspace_id, kind, "manual")

    await run_in_threadpool(work)
    return JSON({"kind": kind, "queued": True}, status_code=202)


@declare("The latest sync runs", answers={200: obj({"data": array(ref("SyncRun"))})})
async def sync_progress(request: Request) -> Response:
    workspace_id = await scope(request)
    status = await run_in_threadpool(_status, request.app.state.bridge, workspace_id)
    return JSON({"data": status["sync"]})


def _since(request: Request) -> datetime | None:
    raw = request.query_params.get("since")
    if not raw:
        return None
    return deadletters.moment(raw)


@declare(
    "Dead letters: events and outbox rows that failed for good",
    answers={200: DEAD_LETTERS, 400: None},
    query=(
        Query("kind", string(enum=["event", "veles", "outbox"])),
        Query("type", string()),
        Query("since", string(), "a date (2026-11-20) or a datetime"),
        Query("traceback", string(enum=["true", "false"])),
    ),
)
async def list_dead_letters(request: Request) -> Response:
    """`?kind=event|veles|outbox&type=&since=`; `?traceback=true` adds the tracebacks."""
    workspace_id = await scope(request)
    bridge: Context = request.app.state.bridge
    kind, event_type = request.query_params.get("kind"), request.query_params.get("type")
    since, with_traceback = _since(request), request.query_params.get("traceback") == "true"

    def work() -> dict[str, Any]:
        with bridge.session_factory() as session:
            letters = deadletters.list_dead(
                session, workspace_id, kind=kind, event_type=event_type, since=since
            )
        return {
            "data": [letter.as_json(with_traceback=with_traceback) for letter in letters],
            "next_cursor": None,
        }

    return JSON(await run_in_threadpool(work))


@declare(
    "Replay one dead letter (`event:evt_…`, `veles:…`, `outbox:12`)",
    answers={202: obj({"replayed": array(string())}), 404: None, 409: None},
)
async def replay_dead_letter(request: Request) -> Response:
    workspace_id = await scope(request)
    bridge: Context = request.app.state.bridge
    ref = str(request.path_params["id"])
    replayed = await run_in_threadpool(deadletters.replay, bridge, workspace_id, [ref])
    return JSON({"replayed": replayed}, status_code=202)


@declare(
    "Replay every dead letter matching the filter",
    answers={202: obj({"replayed": array(string()), "dry_run": boolean()}), 400: None},
    body=obj(
        {"kind": string(enum=["event", "veles", "outbox"]), "type": string(), "dry_run": boolean()},
        optional=["kind", "type", "dry_run"],
    ),
)
async def replay_dead_letters(request: Request) -> Response:
    """Replay every dead letter matching `{"kind"?, "type"?, "dry_run"?}`."""
    workspace_id = await scope(request)
    bridge: Context = request.app.state.bridge
    body = await _object(request)
    kind, event_type, dry_run = body.get("kind"), body.get("type"), body.get("dry_run", False)
    for name, value in (("kind", kind), ("type", event_type)):
        if value is not None and not isinstance(value, str):
            raise BadRequest(f"{name} must be a string")
        refuse_nul(value or "", name)
    if not isinstance(dry_run, bool):  # "false" must not mean a real replay
        raise BadRequest("dry_run must be true or false")
    replayed = await run_in_threadpool(
        lambda: deadletters.replay_matching(
            bridge, workspace_id, kind=kind, event_type=event_type, dry_run=dry_run
        )
    )
    return JSON({"replayed": replayed, "dry_run": dry_run}, status_code=202)


async def _object(request: Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.body() or b"{}")
    except orjson.JSONDecodeError:
        raise BadRequest("body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


@declare(
    "Discard one dead letter, with the reason kept (it leaves the list)",
    answers={200: ref("DeadLetter"), 400: None, 404: None},
    body=obj({"reason": string(minLength=1)}),
)
async def discard_dead_letter(request: Request) -> Response:
    workspace_id = await scope(request)
    bridge: Context = request.app.state.bridge
    reason = (await _object(request)).get("reason")
    if not isinstance(reason, str):
        raise BadRequest("reason must be a string")
    ref_ = str(request.path_params["id"])

    def work() -> dict[str, Any]:
        with bridge.session_factory.begin() as session:
            letter = deadletters.discard(session, workspace_id, ref_, refuse_nul(reason, "reason"))
            return letter.as_json()

    return JSON(await run_in_threadpool(work))


@declare(
    "Platform mode: the Stripe App's install link for this workspace (good for 10 minutes)",
    answers={200: obj({"url": string()}), 409: None},
)
async def install_link(request: Request) -> Response:
    workspace_id = await scope(request)
    bridge: Context = request.app.state.bridge
    settings = bridge.settings
    url = oauth.install_link(
        bridge.box,
        settings.stripe_install_url,
        settings.stripe_app_client_id,
        settings.public_url,
        workspace_id,
    )
    return JSON({"url": url})


routes = [
    Route("/dead-letters", list_dead_letters, methods=["GET"]),
    Route("/dead-letters/replay", replay_dead_letters, methods=["POST"]),
    Route("/dead-letters/{id}/replay", replay_dead_letter, methods=["POST"]),
    Route("/dead-letters/{id}/discard", discard_dead_letter, methods=["POST"]),
    Route("/connection", get_connection, methods=["GET"]),
    Route("/connection", put_connection, methods=["PUT"]),
    Route("/connection", delete_connection, methods=["DELETE"]),
    Route("/sync", sync_progress, methods=["GET"]),
    Route("/oauth/install", install_link, methods=["GET"]),
    Route("/sync/{kind}", start_sync, methods=["POST"]),
]
