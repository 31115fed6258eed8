"""The relay: claims due outbox rows and pushes them to Stripe.

Claiming is one statement (`SELECT … FOR UPDATE SKIP LOCKED`) that only takes the head of each
aggregate: a row waits while an earlier row of the same order or contract is not sent (pending,
in flight, or dead), so one aggregate's rows go strictly in order and different aggregates go in
parallel, across threads and processes. A claimed row is leased; a relay that dies mid-row leaves
it to be taken again when the lease ends, and the push resumes from the row's progress.

Transient failures (network, 429, 5xx, database) retry with exponential backoff and jitter;
permanent ones (a 4xx, a product with no Stripe link) make the row dead, and the rows behind it
wait until it is replayed. While disconnected nothing is claimed."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import structlog
from sqlalchemy import and_, exists, or_, select, true, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from stripe_bridge import connection
from stripe_bridge.backoff import Backoff
from stripe_bridge.errors import PermanentError
from stripe_bridge.failures import failure_values
from stripe_bridge.metrics import OUTBOX
from stripe_bridge.models import (
    CONNECTED,
    DEAD,
    DISCARDED,
    IN_FLIGHT,
    PENDING,
    SENT,
    Connection,
    OutboxRow,
    utcnow,
)
from stripe_bridge.outbox import invoices, subscriptions
from stripe_bridge.outbox.push import Disconnected, Push, PushOptions
from stripe_bridge.outbox.writer import CHANNEL
from stripe_bridge.secrets_box import SecretBox
from stripe_bridge.settings import Settings
from stripe_bridge.stripe_api import GatewayFactory, StripeGateway, StripeRejected

log = structlog.get_logger(__name__)

OPEN = OutboxRow.status.in_((PENDING, IN_FLIGHT))  # the index `ix_outbox_open` holds these

# An outbox row's kind → its push (one module per Stripe object).
PUSHES: dict[str, Callable[[Push], None]] = {
    "order.invoice": invoices.push_order,
    "contract.activate": subscriptions.activate_contract,
    "contract.amend": subscriptions.amend_contract,
    "contract.cancel": subscriptions.cancel_contract,
}


def push_for(kind: str) -> Callable[[Push], None]:
    if kind not in PUSHES:
        raise StripeRejected(
            f"unknown outbox row kind {kind}", stripe_code=None, param=None, status=None
        )
    return PUSHES[kind]


@dataclass(frozen=True)
class RelayOptions:
    lease: timedelta = timedelta(minutes=5)
    backoff: Backoff = field(default_factory=lambda: Backoff(base=2.0, cap=3600.0, floor=0.5))
    max_attempts: int = 25
    poll_interval: float = 5.0
    push: PushOptions = field(default_factory=PushOptions)


def claim(session: Session, lease: timedelta, after: str = "") -> OutboxRow | None:
    """Lease the next due row that heads its aggregate, in a connected workspace, skipping rows
    other relays hold. Workspaces take turns: the oldest due row of the first workspace after
    `after` (the one served last), wrapping around, so that 50,000 rows of one workspace do
    not hold back another's one (on an index of open rows alone)."""
    now = utcnow()
    earlier = aliased(OutboxRow)
    blocked = exists().where(
        earlier.workspace_id == OutboxRow.workspace_id,
        earlier.aggregate_type == OutboxRow.aggregate_type,
        earlier.aggregate_id == OutboxRow.aggregate_id,
        earlier.id < OutboxRow.id,
        earlier.status.not_in((SENT, DISCARDED)),
    )
    due = or_(
        and_(OutboxRow.status == PENDING, OutboxRow.next_attempt_at <= now),
        and_(OutboxRow.status == IN_FLIGHT, OutboxRow.lease_until < now),
    )
    connected = select(Connection.workspace_id).where(Connection.status == CONNECTED)
    row = None
    for turn in (OutboxRow.workspace_id > after, true()) if after else (true(),):
        row = session.scalars(
            select(OutboxRow)
            .where(OPEN, due, ~blocked, OutboxRow.workspace_id.in_(connected), turn)
            .order_by(OutboxRow.workspace_id, OutboxRow.id)
            .limit(1)
            .with_for_update(skip_locked=True, of=OutboxRow)
        ).first()
        if row is not None:
            break
    if row is not None:
        row.status, row.lease_until = IN_FLIGHT, now + lease
        row.attempts += 1
    return row


class Relay:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        box: SecretBox,
        gateway: GatewayFactory,
        options: RelayOptions | None = None,
        after_step: Callable[[str], None] | None = None,
    ) -> None:
        """`after_step`: a test hook, called after each saved step (simulates a crash)."""
        self.session_factory, self.box, self.gateway = session_factory, box, gateway
        self.options = options or RelayOptions()
        self.after_step = after_step
        self.wakeup = threading.Event()
        self.listening = threading.Event()  # set while NOTIFY can wake it (PostgreSQL)
        self.served = ""  # the workspace served last: the next claim starts after it

    def run_once(self) -> bool:
        """Claim and push one row; answers whether a row was taken."""
        with self.session_factory.begin() as session:
            row = claim(session, self.options.lease, self.served)
            if row is None:
                return False
            self.served = row.workspace_id
            session.flush()  # the lease must be committed before the row leaves the session
            session.expunge(row)
            failure: Exception | None = None
            gateway: StripeGateway | None = None
            try:
                gateway = connection.gateway_for(
                    connection.get(session, row.workspace_id), self.box, self.gateway
                )
            except Exception as exc:  # its key cannot be read, no platform key: this row waits
                failure = exc
        if failure is not None:  # the other workspaces' rows go on meanwhile
            delay = self.options.backoff.delay(row.attempts)
            self._finish(row, status=PENDING, exc=failure, retry_in=delay)
            log.error("no Stripe client for the workspace", workspace_id=row.workspace_id)
            return True
        if gateway is None:  # disconnected since the claim: the row waits for a reconnect
            self._finish(row, status=PENDING, attempts_back=True)
            return True
        self.push(row, gateway)
        return True

    def drain(self) -> int:
        """Push until nothing is due (tests, and each wake-up)."""
        count = 0
        while self.run_once():
            count += 1
        return count

    def push(self, row: OutboxRow, gateway: StripeGateway) -> None:
        bound = log.bind(
            workspace_id=row.workspace_id,
            outbox_id=row.id,
            veles_id=row.aggregate_id,
            outbox_kind=row.kind,
        )
        push = Push(
            self.session_factory,
            gateway,
            row,
            self.options.push,
            self.after_step,
        )
        try:
            with structlog.contextvars.bound_contextvars(
                workspace_id=row.workspace_id, outbox_id=row.id, veles_id=row.aggregate_id
            ):
                push_for(row.kind)(push)
        except Disconnected:
            self._finish(row, status=PENDING, attempts_back=True)
            bound.info("disconnected; row left for later")
        except PermanentError as exc:
            self._finish(row, status=DEAD, exc=exc)
            OUTBOX.labels(row.kind, "dead").inc()
            bound.warning("outbox row dead", error=str(exc))
        except Exception as exc:
            if row.attempts >= self.options.max_attempts:
                self._finish(row, status=DEAD, exc=exc)
                OUTBOX.labels(row.kind, "dead").inc()
                bound.error("outbox row dead after retries", error=type(exc).__name__)
            else:
                delay = self.options.backoff.delay(row.attempts)
                self._finish(row, status=PENDING, exc=exc, retry_in=delay)
                OUTBOX.labels(row.kind, "retried").inc()
                bound.warning(
                    "outbox row failed; will retry",
                    error=type(exc).__name__,
                    retry_in=round(delay, 1),
                )
        else:
            self._finish(row, status=SENT)
            OUTBOX.labels(row.kind, "sent").inc()
            bound.info("outbox row sent")

    def _finish(
        self,
        row: OutboxRow,
        *,
        status: str,
        exc: BaseException | None = None,
        retry_in: float = 0.0,
        attempts_back: bool = False,
    ) -> None:
        now = utcnow()
        values: dict[str, object] = {"status": status, "lease_until": None}
        if status == SENT:
            values.update(sent_at=now, last_error=None)
        if exc is not None:
            values.update(failure_values(OutboxRow, exc, dead=status == DEAD))
        if status == PENDING:
            values["next_attempt_at"] = now + timedelta(seconds=retry_in)
        if attempts_back:
            values["attempts"] = OutboxRow.attempts - 1
        with self.session_factory.begin() as session:
            session.execute(
                update(OutboxRow)
                .where(OutboxRow.workspace_id == row.workspace_id, OutboxRow.id == row.id)
                .values(**values)
            )

    def run(self, stop: threading.Event, threads: int = 4) -> None:
        """The relay role: `threads` pushers, woken by NOTIFY (PostgreSQL) or the poll."""
        workers = [
            threading.Thread(target=self._loop, args=(stop,), name=f"relay-{n}", daemon=True)
            for n in range(threads)
        ]
        for worker in workers:
            worker.start()
        listener = threading.Thread(
            target=self._listen, args=(stop,), name="relay-listen", daemon=True
        )
        listener.start()
        stop.wait()
        self.wakeup.set()
        for worker in workers:
            worker.join(timeout=30)

    def _loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.drain()
            except Exception as exc:
                log.error("relay pass failed; will try again", error=repr(exc))
            self.wakeup.wait(self.options.poll_interval)
            self.wakeup.clear()

    def _listen(self, stop: threading.Event) -> None:
        with self.session_factory() as session:
            engine = session.get_bind().engine
        if engine.dialect.name != "postgresql":
            return  # the poll is the only wake-up on SQLite
        import psycopg

        conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while not stop.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True) as listen:
                    listen.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    while not stop.is_set():
                        for _ in listen.notifies(timeout=1.0, stop_after=1):
                            self.wakeup.set()
            except Exception as exc:
                self.listening.clear()
                log.warning(
                    "outbox listener lost its connection; polling meanwhile", error=repr(exc)
                )
                stop.wait(self.options.poll_interval)
        self.listening.clear()


def relay_options(settings: Settings) -> RelayOptions:
    return RelayOptions(
        lease=timedelta(seconds=settings.relay_lease),
        backoff=Backoff(base=settings.relay_retry_base, cap=3600.0, floor=0.5),
        push=PushOptions(
            collection_method=settings.invoice_collection_method,
            days_until_due=settings.invoice_days_until_due,
            proration_behavior=settings.proration_behavior,
        ),
    )
