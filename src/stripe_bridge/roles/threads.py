"""Running the roles: the in-process Dramatiq worker, the sweeper thread, and `serve`."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import partial

import dramatiq
import structlog

from stripe_bridge.context import Context
from stripe_bridge.jobs import BULK_QUEUE
from stripe_bridge.outbox.relay import Relay, relay_options
from stripe_bridge.roles.scheduler import Scheduler, sweep

log = structlog.get_logger(__name__)


@contextmanager
def worker(
    bridge: Context, threads: int | None = None, queues: set[str] | None = None
) -> Iterator[dramatiq.Worker]:
    """A Dramatiq worker consuming the bridge's queues (or `queues`) in this process, with
    `threads` (BRIDGE_WORKER_THREADS) for live work. The bulk queue (replays, recoveries),
    when consumed with others, gets a worker of its own with BRIDGE_BULK_THREADS: however
    long one workspace's bulk backlog, it never takes the threads live deliveries need (a
    priority alone only orders what waits: every thread could still be on a bulk batch)."""
    consumed = set(queues or bridge.broker.get_declared_queues())
    live_threads = threads or bridge.settings.worker_threads
    split = BULK_QUEUE in consumed and len(consumed) > 1
    instances = [
        dramatiq.Worker(
            bridge.broker,
            queues=consumed - {BULK_QUEUE} if split else queues,
            worker_threads=live_threads,
            worker_timeout=100,
        )
    ]
    if split:
        bulk_threads = min(live_threads, bridge.settings.bulk_threads)
        instances.append(
            dramatiq.Worker(
                bridge.broker, queues={BULK_QUEUE}, worker_threads=bulk_threads, worker_timeout=100
            )
        )
    # the second worker adds dramatiq's worker middleware again: by design, not a mistake
    notice = logging.getLogger(f"dramatiq.broker.{type(bridge.broker).__name__}")
    quiet = _Without("same type twice")
    notice.addFilter(quiet)
    try:
        for instance in instances:
            instance.start()
    finally:
        notice.removeFilter(quiet)
    try:
        yield instances[0]
    finally:
        for instance in instances:
            instance.stop()


class _Without(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self._text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self._text not in record.getMessage()


def run_periodically(bridge: Context, stop: threading.Event) -> None:
    """The sweeper loop of the `worker` role (the scheduler runs it inside its own loop)."""
    while not stop.is_set():
        try:
            sweep(bridge)
        except Exception as exc:
            log.error("sweep failed; will try again", error=repr(exc))
        stop.wait(bridge.settings.sweep_interval)


@contextmanager
def _background(
    name: str, run: Callable[[threading.Event], object], join_seconds: float
) -> Iterator[threading.Event]:
    """`run(stop)` on a daemon thread until the block ends: then `stop` is set and the thread
    gets `join_seconds` to finish."""
    stop = threading.Event()
    thread = threading.Thread(target=run, args=(stop,), name=name, daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(timeout=join_seconds)


def periodic(bridge: Context, *, schedule_syncs: bool) -> AbstractContextManager[threading.Event]:
    """The sweeper, and with `schedule_syncs` the sync cadence, on a background thread."""
    run = Scheduler(bridge).run if schedule_syncs else partial(run_periodically, bridge)
    return _background("periodic", run, join_seconds=10)


def wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM."""
    done = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        log.info("stopping", signal=signal.Signals(signum).name)
        done.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    done.wait()


def relay(bridge: Context, threads: int | None = None) -> AbstractContextManager[threading.Event]:
    """The outbox relay on background threads (the `relay` role, and inside `serve`)."""
    pusher = Relay(
        bridge.session_factory, bridge.box, bridge.gateway, relay_options(bridge.settings)
    )
    count = threads or bridge.settings.relay_threads
    return _background("relay", lambda stop: pusher.run(stop, count), join_seconds=30)
