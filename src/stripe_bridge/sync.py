"""Backfill from Stripe's list API: customers, products (with prices), subscriptions.

Objects go through the handlers (same stale guard, same matching) as a snapshot taken when
the page was fetched. A run commits page by page and records its cursor, so an interrupted
pass resumes where it stopped; a unique index allows one running run per kind. "Last synced
at" moves only when a pass completes. A complete customer pass marks customers that Stripe no
longer lists as deleted."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import structlog
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from stripe_bridge import connection
from stripe_bridge.context import Context
from stripe_bridge.errors import BadRequest, Conflict
from stripe_bridge.event import Event
from stripe_bridge.metrics import SYNC_RUNS
from stripe_bridge.models import Customer, SyncRun, utcnow
from stripe_bridge.stripe_api import StripeGateway
from stripe_bridge.uow import UnitOfWork

log = structlog.get_logger(__name__)

KINDS = ("customers", "products", "subscriptions")
# kind → the list endpoints it walks, in order, with the event type their objects apply as
RESOURCES: dict[str, tuple[tuple[str, str, dict[str, str]], ...]] = {
    "customers": (("customers", "customer.updated", {}),),
    "products": (("products", "product.updated", {}), ("prices", "price.updated", {})),
    "subscriptions": (("subscriptions", "customer.subscription.updated", {"status": "all"}),),
}
RUNNING, COMPLETED, FAILED, INTERRUPTED = "running", "completed", "failed", "interrupted"
STALE_AFTER = timedelta(minutes=10)

Progress = Callable[[str, int], None]


class SyncBusy(Conflict):
    code = "sync_running"


@dataclass(frozen=True)
class SyncResult:
    run_id: int
    kind: str
    status: str
    seen: int
    resumed: bool
    seconds: float


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise BadRequest(f"unknown sync kind {kind!r}: one of {', '.join(KINDS)}")
    return kind


def _start(bridge: Context, workspace_id: str, kind: str, trigger: str) -> tuple[SyncRun, bool]:
    now = utcnow()
    mine = (SyncRun.workspace_id == workspace_id, SyncRun.kind == kind)
    try:
        with bridge.session_factory.begin() as session:
            session.execute(
                update(SyncRun)
                .where(*mine, SyncRun.status == RUNNING)
                .where(SyncRun.heartbeat_at < now - STALE_AFTER)
                .values(status=INTERRUPTED, error="no heartbeat: the process running it died")
            )
            last = session.scalars(
                select(SyncRun).where(*mine).order_by(SyncRun.id.desc()).limit(1)
            ).first()
            resume = last if last and last.status in (FAILED, INTERRUPTED) and last.cursor else None
            run = SyncRun(
                workspace_id=workspace_id,
                kind=kind,
                status=RUNNING,
                trigger=trigger,
                pass_started_at=resume.pass_started_at if resume else now,
                started_at=now,
                heartbeat_at=now,
                cursor=resume.cursor if resume else None,
                seen=resume.seen if resume else 0,
            )
            session.add(run)
            session.flush()
            return run, resume is not None
    except IntegrityError:
        raise SyncBusy(f"a {kind} sync is already running") from None


def run_sync(
    bridge: Context,
    workspace_id: str,
    kind: str,
    *,
    trigger: str = "manual",
    progress: Progress | None = None,
) -> SyncResult:
    """One sync pass (or the rest of an interrupted one) for the workspace. Raises Conflict
    when disconnected or when a run of the same kind is in progress."""
    check_kind(kind)
    gateway = connection.connected_gateway(
        bridge.session_factory, bridge.box, bridge.gateway, workspace_id, "sync"
    )
    run, resumed = _start(bridge, workspace_id, kind, trigger)
    began = time.monotonic()
    bound = log.bind(workspace_id=workspace_id, sync_run_id=run.id, sync_kind=kind)
    bound.info("sync started", resumed=resumed, cursor=run.cursor)
    try:
        _walk(bridge, gateway, run, progress)
        _finish(bridge, run)
    except BaseException as exc:
        status = INTERRUPTED if isinstance(exc, KeyboardInterrupt | SystemExit) else FAILED
        with bridge.session_factory.begin() as session:
            session.execute(
                update(SyncRun)
                .where(SyncRun.workspace_id == workspace_id, SyncRun.id == run.id)
                .values(
                    status=status, error=f"{type(exc).__name__}: {exc}"[:2000], finished_at=utcnow()
                )
            )
        bound.warning("sync stopped", status=status, error=type(exc).__name__, seen=run.seen)
        SYNC_RUNS.labels(kind, status).inc()
        raise
    seconds = time.monotonic() - began
    SYNC_RUNS.labels(kind, COMPLETED).inc()
    bound.info("sync completed", seen=run.seen, seconds=round(seconds, 2))
    return SyncResult(run.id, kind, COMPLETED, run.seen, resumed, seconds)


def _walk(bridge: Context, gateway: StripeGateway, run: SyncRun, progress: Progress | None) -> None:
    resources = RESOURCES[run.kind]
    names = [name for name, _, _ in resources]
    start_resource, _, start_after = (run.cursor or "").partition(":")
    index = names.index(start_resource) if start_resource in names else 0
    cursor: str | None = start_after or None
    for name, event_type, filters in resources[index:]:
        while True:
            fetched_at = int(time.time())
            items, has_more = gateway.list_page(name, starting_after=cursor, **filters)
            with bridge.session_factory.begin() as session:
                _still_connected(session, run.workspace_id)
                # in id order: batch jobs lock mirror rows in id order too, so the two cannot
                # deadlock (Stripe lists newest first)
                for obj in sorted(items, key=lambda item: str(item["id"])):
                    _apply(bridge, session, event_type, obj, fetched_at, run)
                cursor = items[-1]["id"] if items else cursor
                run.seen += len(items)
                run.cursor = f"{name}:{cursor}" if cursor else None
                run.heartbeat_at = utcnow()
                session.execute(
                    update(SyncRun)
                    .where(SyncRun.workspace_id == run.workspace_id, SyncRun.id == run.id)
                    .values(cursor=run.cursor, seen=run.seen, heartbeat_at=run.heartbeat_at)
                )
            if progress:
                progress(name, run.seen)
            if not has_more or not items:
                break
        cursor = None


def _still_connected(session: Session, workspace_id: str) -> None:
    row = connection.get(session, workspace_id)
    if not connection.is_connected(row):
        raise Conflict("sync stopped: the Stripe connection was disconnected")


def _apply(
    bridge: Context,
    session: Session,
    event_type: str,
    obj: dict[str, object],
    fetched_at: int,
    run: SyncRun,
) -> None:
    event = Event(
        id=f"sync_{run.id}",
        type=event_type,
        created=fetched_at,
        livemode=bool(obj.get("livemode", False)),
        api_version=None,
        object=obj,
        previous_attributes=None,
    )
    with session.begin_nested():
        bridge.handlers[event_type](event, UnitOfWork(session, run.workspace_id))
    if run.kind == "customers":
        session.execute(
            update(Customer)
            .where(Customer.workspace_id == run.workspace_id, Customer.id == obj["id"])
            .values(seen_in_sync_at=run.pass_started_at)
        )


def _finish(bridge: Context, run: SyncRun) -> None:
    now = utcnow()
    with bridge.session_factory.begin() as session:
        if run.kind == "customers":
            _mark_missing_customers_deleted(bridge, session, run)
        session.execute(
            update(SyncRun)
            .where(SyncRun.workspace_id == run.workspace_id, SyncRun.id == run.id)
            .values(status=COMPLETED, finished_at=now, heartbeat_at=now)
        )
        row = connection.get(session, run.workspace_id, lock=True)
        if row is not None:
            setattr(row, f"{run.kind}_last_synced_at", now)


def _mark_missing_customers_deleted(bridge: Context, session: Session, run: SyncRun) -> None:
    """Customers a complete list did not return (and that existed before the pass began)
    were deleted in Stripe; applied as a delete, so they also leave the review queue."""
    missing = session.scalars(
        select(Customer.id).where(
            Customer.workspace_id == run.workspace_id,
            Customer.deleted.is_(False),
            Customer.created < run.pass_started_at,
            (Customer.seen_in_sync_at.is_(None)) | (Customer.seen_in_sync_at < run.pass_started_at),
        )
    ).all()
    now = int(time.time())
    for customer_id in missing:
        event = Event(
            f"sync_{run.id}", "customer.deleted", now, False, None, {"id": customer_id}, None
        )
        bridge.handlers["customer.deleted"](event, UnitOfWork(session, run.workspace_id))
    if missing:
        log.info("customers missing from Stripe marked deleted", count=len(missing))


def latest_runs(session: Session, workspace_id: str) -> list[SyncRun]:
    """The workspace's newest run of each kind (progress for the admin API and status)."""
    runs = []
    for kind in KINDS:
        run = session.scalars(
            select(SyncRun)
            .where(SyncRun.workspace_id == workspace_id, SyncRun.kind == kind)
            .order_by(SyncRun.id.desc())
            .limit(1)
        ).first()
        if run is not None:
            runs.append(run)
    return runs
