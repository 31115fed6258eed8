"""Dead letters: one view of work that failed for good, and its replay or discard.

Three kinds, named `<kind>:<id>`: `event:evt_…` (a Stripe event whose handler failed),
`veles:…` (a Veles event that failed) and `outbox:<n>` (an outbox row that is dead). A replay
sends the work down its normal path again (the same handler and stale guard, the same
idempotency keys and saved progress), so replaying twice, or replaying an event that a newer
one has superseded, changes nothing wrongly. A replay that fails again is a dead letter again,
with the fresh error."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from stripe_bridge.context import Context
from stripe_bridge.db import key_is_one_of
from stripe_bridge.errors import BadRequest, NotFound
from stripe_bridge.models import (
    DEAD,
    DISCARDED,
    FAILED,
    PENDING,
    RECEIVED,
    OutboxRow,
    StripeEvent,
    VelesEvent,
    utcnow,
)
from stripe_bridge.outbox.writer import CHANNEL

log = structlog.get_logger(__name__)

MODELS: dict[str, Any] = {"event": StripeEvent, "veles": VelesEvent, "outbox": OutboxRow}
DEAD_STATUS = {"event": FAILED, "veles": FAILED, "outbox": DEAD}


@dataclass(frozen=True)
class DeadLetter:
    id: str
    kind: str
    type: str
    subject: str | None
    attempts: int
    first_failed_at: datetime | None
    last_failed_at: datetime | None
    error: str | None
    error_type: str | None
    replays: int
    replayed_at: datetime | None
    traceback: str | None = None

    def as_json(self, *, with_traceback: bool = False) -> dict[str, Any]:
        data = asdict(self)
        for key in ("first_failed_at", "last_failed_at", "replayed_at"):
            data[key] = data[key].isoformat() if data[key] else None
        if not with_traceback:
            data.pop("traceback")
        return data


def moment(value: str) -> datetime:
    """A `since` filter: `2026-11-20`, `2026-11-20T08:00`, with or without a zone (UTC
    assumed)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"not a date: {value!r} (use YYYY-MM-DD[THH:MM])") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_ref(ref: str) -> tuple[str, Any]:
    """`kind:id` → (kind, primary key)."""
    kind, _, object_id = ref.partition(":")
    if kind not in MODELS or not object_id or (kind == "outbox" and not object_id.isdigit()):
        raise NotFound(f"no dead letter {ref!r}: ids look like event:evt_…, veles:…, outbox:12")
    return kind, int(object_id) if kind == "outbox" else object_id


def _letter(kind: str, row: Any) -> DeadLetter:
    is_outbox = kind == "outbox"
    return DeadLetter(
        id=f"{kind}:{row.id}",
        kind=kind,
        type=row.kind if is_outbox else row.type,
        subject=f"{row.aggregate_type}:{row.aggregate_id}" if is_outbox else row.object_id,
        attempts=row.attempts,
        first_failed_at=row.first_failed_at,
        last_failed_at=row.last_failed_at,
        error=row.last_error,
        error_type=row.error_type,
        replays=row.replays,
        replayed_at=row.replayed_at,
        traceback=row.error_traceback,
    )


def _query(workspace_id: str, kind: str, event_type: str | None, since: datetime | None) -> Any:
    model = MODELS[kind]
    query = select(model).where(
        model.workspace_id == workspace_id, model.status == DEAD_STATUS[kind]
    )
    if event_type:
        query = query.where((model.kind if kind == "outbox" else model.type) == event_type)
    if since:
        query = query.where(model.last_failed_at >= since)
    return query.order_by(model.last_failed_at, model.id)


def list_dead(
    session: Session,
    workspace_id: str,
    *,
    kind: str | None = None,
    event_type: str | None = None,
    since: datetime | None = None,
) -> list[DeadLetter]:
    if kind is not None and kind not in MODELS:
        raise BadRequest(f"kind must be one of {', '.join(MODELS)}")
    kinds = [kind] if kind else list(MODELS)
    return [
        _letter(k, row)
        for k in kinds
        for row in session.scalars(_query(workspace_id, k, event_type, since))
    ]


def get_dead(session: Session, workspace_id: str, ref: str) -> DeadLetter:
    kind, key = parse_ref(ref)
    row = session.get(MODELS[kind], (workspace_id, key))
    if row is None or row.status != DEAD_STATUS[kind]:
        raise _not_dead(ref, row.status if row is not None else None)
    return _letter(kind, row)


def _not_dead(ref: str, status: str | None) -> NotFound:
    state = f"it is {status}" if status is not None else "no such record"
    return NotFound(f"{ref} is not a dead letter ({state})")


REPLAY_CHUNK = 500  # dead letters marked in one transaction, then sent as jobs


def replay(
    bridge: Context, workspace_id: str, refs: list[str], *, dry_run: bool = False
) -> list[str]:
    """Send each of the workspace's dead letters down its normal path again; answers the ids
    replayed. All must be dead letters, or nothing happens."""
    keys = [parse_ref(ref) for ref in refs]
    with bridge.session_factory() as session:
        _check_dead(session, workspace_id, refs, keys)
    if dry_run:
        return [f"{kind}:{key}" for kind, key in keys]
    return _replay(bridge, workspace_id, keys)


def replay_matching(
    bridge: Context,
    workspace_id: str,
    *,
    kind: str | None = None,
    event_type: str | None = None,
    dry_run: bool = False,
) -> list[str]:
    with bridge.session_factory() as session:
        letters = list_dead(session, workspace_id, kind=kind, event_type=event_type)
    if dry_run:
        return [letter.id for letter in letters]
    return _replay(bridge, workspace_id, [parse_ref(letter.id) for letter in letters])


def _check_dead(
    session: Session, workspace_id: str, refs: list[str], keys: list[tuple[str, Any]]
) -> None:
    """NotFound for the first of `refs` that is not a dead letter; a query per chunk."""
    found: dict[tuple[str, Any], str] = {}
    for kind, chunk in _chunks(keys):
        model = MODELS[kind]
        found.update(
            ((kind, key), status)
            for key, status in session.execute(
                select(model.id, model.status).where(_keys_of(session, model, workspace_id, chunk))
            )
        )
    for ref, key in zip(refs, keys, strict=True):
        status = found.get(key)
        if status != DEAD_STATUS[key[0]]:
            raise _not_dead(ref, status)


def _replay(bridge: Context, workspace_id: str, keys: list[tuple[str, Any]]) -> list[str]:
    """Mark the dead letters for a new round, a chunk a transaction, and send each chunk's
    Stripe and Veles events as bulk jobs as soon as it is committed (so that the workers
    start while the rest is marked). A letter replayed by someone else meanwhile is skipped."""
    replayed: list[str] = []
    for kind, chunk in _chunks(keys):
        model = MODELS[kind]
        # a replay is a new round: it gets every attempt again (`replays` counts the rounds)
        values: dict[str, Any] = {
            "replays": model.replays + 1,
            "replayed_at": utcnow(),
            "attempts": 0,
        }
        if kind == "outbox":
            values.update(status=PENDING, next_attempt_at=utcnow(), lease_until=None)
        else:
            values.update(status=RECEIVED, reason=None, enqueued_at=utcnow())
        with bridge.session_factory.begin() as session:
            marked = list(
                session.scalars(
                    update(model)
                    .where(
                        _keys_of(session, model, workspace_id, chunk),
                        model.status == DEAD_STATUS[kind],
                    )
                    .values(**values)
                    .returning(model.id)
                    .execution_options(synchronize_session=False)
                )
            )
            if marked and kind == "outbox" and session.get_bind().dialect.name == "postgresql":
                session.execute(text(f"NOTIFY {CHANNEL}"))
        if marked and kind != "outbox":  # Stripe events go out as batch jobs
            bridge.jobs.send_events(workspace_id, marked, model, bulk=True)
        for key in marked:
            log.info("dead letter replayed", workspace_id=workspace_id, dead_letter=f"{kind}:{key}")
        replayed += [f"{kind}:{key}" for key in marked]
    return replayed


def _chunks(keys: list[tuple[str, Any]]) -> list[tuple[str, list[Any]]]:
    """The keys by kind, in chunks of `REPLAY_CHUNK`, in the order given."""
    by_kind: dict[str, list[Any]] = {}
    for kind, key in keys:
        by_kind.setdefault(kind, []).append(key)
    return [
        (kind, ids[start : start + REPLAY_CHUNK])
        for kind, ids in by_kind.items()
        for start in range(0, len(ids), REPLAY_CHUNK)
    ]


def _keys_of(session: Session, model: Any, workspace_id: str, ids: list[Any]) -> Any:
    """The workspace's rows with these ids: through the primary key per id for the inboxes
    (`db.key_is_one_of`); the outbox's integer ids with `IN`."""
    if model is OutboxRow:
        return (model.workspace_id == workspace_id) & model.id.in_(ids)
    return key_is_one_of(session, model, [(workspace_id, id_) for id_ in ids])


def discard(session: Session, workspace_id: str, ref: str, reason: str) -> DeadLetter:
    """Give up on a dead letter, with the reason recorded; it leaves the list. A discarded
    outbox row no longer holds back the rows behind it (they run, and fail on their own if
    they needed it)."""
    if not reason.strip():
        raise BadRequest("a reason is required to discard a dead letter")
    letter = get_dead(session, workspace_id, ref)
    kind, key = parse_ref(ref)
    model = MODELS[kind]
    session.execute(
        update(model)
        .where(model.workspace_id == workspace_id, model.id == key)
        .values(status=DISCARDED, discard_reason=reason.strip())
    )
    log.info(
        "dead letter discarded", workspace_id=workspace_id, dead_letter=ref, reason=reason.strip()
    )
    return letter
