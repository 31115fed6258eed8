"""Prometheus metrics. Counters and histograms are kept per process; with several web and
worker processes set PROMETHEUS_MULTIPROC_DIR (an empty directory shared by them, cleared at
deploy) and /metrics aggregates them. Gauges that describe the database (inbox lag, outbox
backlog, dead letters, last sync) are read from it at scrape time (`operators.gauges`), so every
process agrees."""

from __future__ import annotations

import re

from prometheus_client import Counter, Histogram

WEBHOOKS = Counter(
    "bridge_webhooks_received_total",
    "Deliveries answered, by endpoint and result",
    ["source", "result"],
)
EVENTS = Counter(
    "bridge_events_total",
    "Events taken by a job, by source, type and outcome",
    ["source", "type", "outcome"],
)
HANDLER_SECONDS = Histogram(
    "bridge_handler_seconds",
    "Time to apply one event",
    ["source"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
)
STRIPE_CALLS = Counter(
    "bridge_stripe_calls_total", "Stripe API calls, by call and result", ["call", "result"]
)
STRIPE_SECONDS = Histogram(
    "bridge_stripe_call_seconds", "Stripe API call latency (with retries)", ["call"]
)
OUTBOX = Counter(
    "bridge_outbox_rows_total",
    "Outbox rows handled by the relay, by kind and outcome",
    ["kind", "outcome"],
)
SYNC_RUNS = Counter(
    "bridge_sync_runs_total", "Sync runs, by kind and final status", ["kind", "status"]
)

_NUMBERS = re.compile(r"\s*\d+$")


def call_name(what: str) -> str:
    """`create invoice item 3` → `create invoice item` (bounded label values)."""
    return _NUMBERS.sub("", what)
