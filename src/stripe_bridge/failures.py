"""How a failure is recorded on an inbox event or an outbox row (for dead letters)."""

from __future__ import annotations

import traceback
from typing import Any

import psycopg
from sqlalchemy import func
from sqlalchemy.exc import DataError, StatementError

from stripe_bridge.errors import PermanentError
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


def record_error(row: Any, exc: BaseException) -> None:
    """The error on a loaded row, for an attempt that will be retried."""
    row.last_error, row.error_type = describe(exc), error_type(exc)
    row.error_traceback = "".join(traceback.format_exception(exc))[-MAX_TRACEBACK:]


def mark_failed(row: Any, exc: BaseException) -> None:
    """The same on a loaded row that failed for good, with the failure times."""
    now = utcnow()
    record_error(row, exc)
    row.first_failed_at = row.first_failed_at or now
    row.last_failed_at = now


# What a handler raises when the payload itself is wrong (a missing field, a wrong type, a
# value out of range): retrying cannot help.
PAYLOAD_ERRORS = (LookupError, TypeError, ValueError, ArithmeticError, AttributeError)


def is_permanent(exc: BaseException) -> bool:
    """Whether applying the same stored payload again must fail again: a `PermanentError`, an
    error from the payload's values, or a value the database refused to store (SQLSTATE class
    22, or one the driver could not send). Everything else (connections, locks, timeouts) is
    transient."""
    if isinstance(exc, (PermanentError, DataError, *PAYLOAD_ERRORS)):
        return True
    if isinstance(exc, StatementError):
        orig = exc.orig
        if isinstance(orig, PAYLOAD_ERRORS):
            return True
        # psycopg refuses to adapt a value (e.g. an object for a text column) before sending
        # it; such errors carry no SQLSTATE, unlike every error the server answers
        return isinstance(orig, psycopg.ProgrammingError) and orig.sqlstate is None
    return False
