"""How a failure is recorded on an inbox event or an outbox row (for dead letters)."""

from __future__ import annotations

import traceback
from typing import Any

from sqlalchemy import func

from stripe_bridge.models import utcnow

MAX_ERROR = 2000
MAX_TRACEBACK = 20000


def describe(exc: BaseException) -> str:
    """`ExceptionType: message`, one line, bounded."""
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()[:MAX_ERROR]


def error_type(exc: BaseException) -> str:
    kind = type(exc)
    return f"{kind.__module__}.{kind.__qualname__}"[:255]


def failure_values(model: Any, exc: BaseException, *, dead: bool) -> dict[str, Any]:
    """Column values for an UPDATE that records `exc`; `dead` also stamps the failure times."""
    values: dict[str, Any] = {
        "last_error": describe(exc),
        "error_type": error_type(exc),
        "error_traceback": "".join(traceback.format_exception(exc))[-MAX_TRACEBACK:],
    }
    if dead:
        now = utcnow()
        values["first_failed_at"] = func.coalesce(model.first_failed_at, now)
        values["last_failed_at"] = now
    return values


def mark_failed(row: Any, exc: BaseException) -> None:
    """The same on a loaded row."""
    now = utcnow()
    row.last_error, row.error_type = describe(exc), error_type(exc)
    row.error_traceback = "".join(traceback.format_exception(exc))[-MAX_TRACEBACK:]
    row.first_failed_at = row.first_failed_at or now
    row.last_failed_at = now
