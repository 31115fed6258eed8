"""CLI command groups beyond the process roles (each registers its own subcommands)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from dramatiq.brokers.stub import StubBroker

from stripe_bridge.bootstrap import bootstrap
from stripe_bridge.context import Context
from stripe_bridge.jobs import run_queued_jobs
from stripe_bridge.preflight import check_broker, check_database
from stripe_bridge.settings import Settings
from stripe_bridge.workspaces import require


@contextmanager
def opened(settings: Settings, *, sends_jobs: bool = False) -> Iterator[Context]:
    """The bridge of a one-shot command, once its database answers and is migrated (and, for a
    command that `sends_jobs`, Redis answers), so that it fails before changing anything.

    On the embedded default there is no broker to hand jobs to: the jobs the command queued
    in its own in-process broker are applied here, before the command exits, and counted."""
    with bootstrap(settings) as bridge:
        check_database(bridge.engine)
        if sends_jobs:
            check_broker(bridge.broker)
        yield bridge
        if isinstance(bridge.broker, StubBroker):
            applied, left = run_queued_jobs(bridge.broker)
            if applied or left:
                print(
                    f"applied {applied} queued event(s) in this process (no BRIDGE_REDIS_URL)"
                    + (f"; {left} failed for now and wait for the sweeper" if left else ""),
                    file=sys.stderr,
                )


def workspace_of(bridge: Context, workspace_id: str) -> str:
    """The workspace a command acts on (`--workspace`, else BRIDGE_WORKSPACE, else `default`),
    once it is known to exist."""
    with bridge.session_factory() as session:
        require(session, workspace_id)
    return workspace_id
