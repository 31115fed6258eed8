"""What every handler shares: the event as handlers see it, row locking (and a batch's claimed
rows written back together), field helpers."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import bindparam, inspect, update
from sqlalchemy.orm import Session

from stripe_bridge.db import claim_row_statement, claim_rows_statement
from stripe_bridge.errors import PermanentError
from stripe_bridge.event import Event
from stripe_bridge.models import Versioned
from stripe_bridge.uow import UnitOfWork

Handler = Callable[[Event, UnitOfWork], None]


@dataclass(frozen=True, slots=True)
class Claim:
    """What a handler locks, so that a batch can lock it for all its events at once: the
    mirror table it writes, and the matching lock it takes first (customers, products)."""

    model: type[Versioned]
    matching_lock: str | None = None


M = TypeVar("M", bound=Versioned)


def lock_row(uow: UnitOfWork, model: type[M], object_id: str) -> M:
    """The mirror row for `object_id`, created empty if missing, locked for this transaction.

    Concurrent jobs for the same object serialise here, so the stale guard compares against
    the state the other job committed. In a batch (`claim_rows`), the row was claimed already."""
    claimed = uow.rows
    if claimed is not None:
        found = claimed.get((model, object_id))
        if found is not None:
            return found  # type: ignore[return-value]
    statement = claim_row_statement(uow.session, model)
    row: M = uow.session.scalars(
        statement,
        {"workspace_id": uow.workspace_id, "object_id": object_id},
        execution_options={"populate_existing": True},
    ).one()
    if claimed is not None:  # a batch: its next event on this object must not reload it
        claimed[(model, object_id)] = row
    return row


def claim_rows(
    session: Session,
    uows: Mapping[str, UnitOfWork],
    model: type[M],
    keys: Iterable[tuple[str, str]],
) -> None:
    """Claim (create if missing, lock, load) the mirror rows of a whole batch, `(workspace_id,
    object_id)` of any of `uows`' workspaces, in one statement, so the batch's `lock_row` calls
    need no round trip. PostgreSQL only: the embedded SQLite claims row by row (its writers are
    serial anyway)."""
    keys = sorted(set(keys))
    if not keys or session.get_bind().dialect.name != "postgresql":
        return
    rows = session.scalars(
        claim_rows_statement(model),
        {
            "workspace_ids": [workspace_id for workspace_id, _id in keys],
            "object_ids": [object_id for _workspace, object_id in keys],
        },
        execution_options={"populate_existing": True},
    )
    for row in rows:
        uow = uows[row.workspace_id]
        if uow.rows is None:
            uow.rows = {}
        uow.rows[(model, row.id)] = row


_WRITE_STATEMENTS: dict[type[Any], tuple[Any, list[tuple[str, str]]]] = {}


def _write_statement(model: type[Any]) -> tuple[Any, list[tuple[str, str]]]:
    """`UPDATE <table> SET <every column> WHERE workspace_id = … AND id = …` for executemany,
    and the (attribute, parameter) pairs that fill it from a row."""
    if model not in _WRITE_STATEMENTS:
        table = model.__table__
        pairs: list[tuple[str, str]] = []
        values: dict[str, Any] = {}
        for attr in inspect(model).column_attrs:
            column = attr.columns[0]
            if column.name not in ("workspace_id", "id"):
                pairs.append((attr.key, f"v_{column.name}"))
                values[column.name] = bindparam(f"v_{column.name}", type_=column.type)
        key = (table.c.workspace_id == bindparam("v_workspace_id")) & (
            table.c.id == bindparam("v_id")
        )
        statement = update(table).where(key).values(values)
        _WRITE_STATEMENTS[model] = (statement, pairs)
    return _WRITE_STATEMENTS[model]


def write_mirrors(session: Session, claimed: Iterable[Versioned]) -> None:
    """The mirror rows the handlers changed, written with one executemany per table (the ORM's
    flush would send one UPDATE per distinct set of changed columns), then let go by the
    session so that its flush does not write them again."""
    changed: dict[type[Any], list[Any]] = defaultdict(list)
    for row in claimed:
        if inspect(row).modified:
            changed[type(row)].append(row)
    for model, rows in changed.items():
        statement, pairs = _write_statement(model)
        params = [
            {
                "v_workspace_id": row.workspace_id,
                "v_id": row.id,
                **{param: getattr(row, key) for key, param in pairs},
            }
            for row in rows
        ]
        session.execute(statement, params)
        for row in rows:
            session.expunge(row)


# The range a unix timestamp or an amount may take: what Python's datetime and a 64-bit
# column hold. Anything outside comes from a malformed payload and can never be applied.
MAX_UNIX_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z
INT64 = 2**63


def timestamp(value: Any) -> datetime | None:
    """Stripe's unix seconds as an aware UTC datetime."""
    if value is None or isinstance(value, bool):
        return None
    if not isinstance(value, int | float):
        raise PermanentError(f"expected a unix timestamp, got {type(value).__name__}")
    if not -MAX_UNIX_SECONDS <= value <= MAX_UNIX_SECONDS:
        raise PermanentError(f"unix timestamp out of range: {value!r}")
    return datetime.fromtimestamp(value, UTC)


def integer(obj: Mapping[str, Any], key: str) -> int | None:
    """`obj[key]` as a whole number that fits a 64-bit column (amounts, counts), or None."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise PermanentError(f"{key}: expected an integer, got {type(value).__name__}")
    if not -INT64 <= value < INT64:
        raise PermanentError(f"{key}: integer out of range: {value}")
    return value


def text(obj: Mapping[str, Any], key: str) -> str | None:
    """`obj[key]` as a string, or None."""
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    raise PermanentError(f"{key}: expected a string, got {type(value).__name__}")


def mapping(obj: Mapping[str, Any], key: str) -> dict[str, Any]:
    """`obj[key]` as an object (metadata); missing or null is empty."""
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PermanentError(f"{key}: expected an object, got {type(value).__name__}")
    return dict(value)


def ref_id(value: Any) -> str | None:
    """An id whether Stripe sent it as a string or as an expanded object."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("id"), str):
        return str(value["id"])
    raise PermanentError(f"expected an id or an object with an id, got {type(value).__name__}")


def dig(obj: Mapping[str, Any], *path: str) -> Any:
    """`obj[a][b]…`, or None where any step is missing or null."""
    current: Any = obj
    for key in path:
        if not isinstance(current, Mapping):
            return None
        current = current.get(key)
    return current
