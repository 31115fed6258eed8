"""Fixtures of the fault suite: a cluster of its own per scenario, torn down whatever happens.

The temporary directory is made under /tmp (not pytest's tmp_path, whose parents only root may
enter) and handed to the `postgres` OS user; it is removed at the end unless the test failed,
in which case its path and every log's tail are printed."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fake_stripe import FakeStripe
from tests.faults.cluster import Cluster
from tests.support import ADMIN_TOKEN, SECRET, SECRET_KEY, VELES_SECRET

# Short cadences so a lost job is swept within seconds and a killed relay's row resumes soon.
FAST = {
    "STRIPE_WEBHOOK_SECRET": SECRET,
    "BRIDGE_VELES_SECRET": VELES_SECRET,
    "BRIDGE_SECRET_KEY": SECRET_KEY,
    "BRIDGE_ADMIN_TOKEN": ADMIN_TOKEN,
    "STRIPE_MODE": "test",
    "BRIDGE_SWEEP_INTERVAL": "2",
    "BRIDGE_SWEEP_GRACE": "5",
    "BRIDGE_RELAY_LEASE": "5",
    "BRIDGE_STRIPE_TIMEOUT": "2",
    "BRIDGE_STRIPE_RETRY_BASE": "0.1",
    "BRIDGE_RELAY_RETRY_BASE": "0.2",
    "BRIDGE_WORKER_THREADS": "4",
}


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def cluster_factory(
    request: pytest.FixtureRequest, fake_stripe: FakeStripe
) -> Iterator[Callable[..., Cluster]]:
    """`cluster_factory(**env)`: Postgres and Redis of their own, started; the roles are
    started by the test (`cluster.start_roles()`), after it has set up what it needs."""
    made: list[tuple[Cluster, Path]] = []

    def make(**env: str) -> Cluster:
        root = Path(tempfile.mkdtemp(prefix="sb-faults-"))
        cluster = Cluster(root, fake_stripe.url, **{**FAST, **env})
        made.append((cluster, root))
        cluster.start_servers()
        return cluster

    try:
        yield make
    finally:
        failed = any(
            getattr(getattr(request.node, f"report_{when}", None), "failed", False)
            for when in ("setup", "call")
        )
        for cluster, root in made:
            try:
                if failed:
                    print(f"\n=== fault cluster in {root}\n{cluster.tails()}", file=sys.stderr)
            finally:
                cluster.stop()
                if not failed:
                    shutil.rmtree(root, ignore_errors=True)
