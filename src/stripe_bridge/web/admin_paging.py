"""The admin API's lists: keyset pages by id with the filtered total, search, and the
thread each list's queries run in."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from stripe_bridge.context import Context
from stripe_bridge.errors import BadRequest
from stripe_bridge.web.admin_auth import refuse_nul, scope

MAX_LIMIT = 100


def _encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        last_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("malformed cursor") from None
    return refuse_nul(last_id, "cursor")


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}")
    return int(raw)


def page(
    session: Session,
    request: Request,
    query: Select[Any],
    id_column: InstrumentedAttribute[str],
    render: Callable[[Any], dict[str, Any]] | None = None,
    *,
    render_all: Callable[[list[Any]], list[dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """Keyset pagination by Stripe id: `{"data": [...], "next_cursor": …, "total": n}`; each
    row rendered by `render`, or the page's rows at once by `render_all` (one query for what
    they need)."""
    limit = _limit(request)
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    if cursor := request.query_params.get("cursor"):
        query = query.where(id_column > _decode_cursor(cursor))
    rows = list(session.scalars(query.order_by(id_column).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    if render_all is None:
        assert render is not None, "page() needs a way to render rows"
        render_all = lambda rows: [render(row) for row in rows]  # noqa: E731
    return {
        "data": render_all(rows),
        "next_cursor": _encode_cursor(rows[-1].id) if more and rows else None,
        "total": total or 0,
    }


def within(model: Any, workspace_id: str) -> Select[Any]:
    return select(model).where(model.workspace_id == workspace_id)


def searched(
    query: Select[Any],
    request: Request,
    *columns: InstrumentedAttribute[Any],
    also: Callable[[str], ColumnElement[bool]] | None = None,
) -> Select[Any]:
    """`?q=` as a case-insensitive substring of any of `columns` (or what `also` makes of the
    LIKE pattern, e.g. a related row's name)."""
    if q := request.query_params.get("q", "").strip():
        escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        matches = [column.ilike(pattern, escape="\\") for column in columns]
        query = query.where(or_(*matches, *([also(pattern)] if also else [])))
    return query


async def listed(request: Request, build: Callable[[Session, str], dict[str, Any]]) -> Any:
    workspace_id = await scope(request)
    bridge: Context = request.app.state.bridge

    def work() -> dict[str, Any]:
        with bridge.session_factory() as session:
            return build(session, workspace_id)

    return await run_in_threadpool(work)
