"""Running the roles: the in-process Dramatiq worker, the sweeper thread, and `serve`."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import partial

import dramatiq
import structlog

from stripe_bridge.context import Context
from stripe_bridge.outbox.relay import Relay, relay_options
from stripe_bridge.roles.scheduler import Scheduler, sweep

log = structlog.get_logger(__name__)


@contextmanager
def worker(
    bridge: Context, threads: int | None = None, queues: set[str] | None = None
) -> Iterator[dramatiq.Worker]:
    """A Dramatiq worker consuming the bridge's queues (or `queues`) in this process."""
    instance = dramatiq.Worker(
        bridge.broker,
        queues=queues,
        worker_threads=threads or bridge.settings.worker_threads,
        worker_timeout=100,
    )
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


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
