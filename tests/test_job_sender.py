"""The web's job sender: new events of several group commits go out as one batch job."""

from __future__ import annotations

import threading

import pytest
from starlette.testclient import TestClient

from stripe_bridge.context import Context
from stripe_bridge.errors import ConfigError
from stripe_bridge.inbox.store import JobSender
from stripe_bridge.web.app import create_app
from tests.support import (
    admin_headers,
    event,
    make_settings,
    own_bridge,
    post_event,
    queued_event_ids,
    queued_jobs,
    run_jobs,
)


class Recorder:
    """A `send` that records each call and can fail on demand."""

    def __init__(self, fail_first: int = 0) -> None:
        self.batches: list[list[str]] = []
        self.workspaces: list[str] = []
        self.fail_first = fail_first
        self.called = threading.Event()
        self.returned = threading.Event()  # the first call is over (recorded, or raised)

    def __call__(self, keys: list[tuple[str, str]]) -> None:
        self.called.set()
        try:
            if self.fail_first > 0:
                self.fail_first -= 1
                raise ConnectionError("broker down")
            self.batches.append([event_id for _workspace, event_id in keys])
            self.workspaces.append(",".join(workspace for workspace, _id in keys))
        finally:
            self.returned.set()


def keys(*ids: str, workspace_id: str = "default") -> list[tuple[str, str]]:
    return [(workspace_id, event_id) for event_id in ids]


def test_ids_added_close_together_go_out_as_one_batch_after_the_linger() -> None:
    send = Recorder()
    sender = JobSender(send, linger=0.3)
    sender.start()
    try:
        sender.add(keys("evt_1", "evt_2"))
        sender.add(keys("evt_3"))
        assert not send.called.wait(0.05)  # still lingering, 50 ms into its 300
        assert send.batches == []
        assert send.called.wait(5)
        assert send.returned.wait(5)
    finally:
        sender.stop()
    assert send.batches == [["evt_1", "evt_2", "evt_3"]]


def test_a_full_batch_is_sent_at_once_without_waiting_for_the_linger() -> None:
    send = Recorder()
    sender = JobSender(send, linger=60, size=3)
    sender.start()
    try:
        sender.add(keys("evt_1", "evt_2"))
        sender.add(keys("evt_3", "evt_4"))
        assert send.called.wait(5)
    finally:
        sender.stop()
    assert send.batches[0] == ["evt_1", "evt_2", "evt_3", "evt_4"]


def test_stopping_sends_whatever_waits() -> None:
    send = Recorder()
    sender = JobSender(send, linger=60)
    sender.start()
    sender.add(keys("evt_1"))

    sender.stop()

    assert send.batches == [["evt_1"]]


def test_a_failed_send_is_logged_and_later_batches_still_go_out() -> None:
    send = Recorder(fail_first=1)
    sender = JobSender(send, linger=0.01)
    sender.start()
    try:
        sender.add(keys("evt_lost"))  # stays `received` in the inbox: the sweeper's to send
        assert send.called.wait(5)
        assert send.returned.wait(5)  # the failure is over before the next batch waits
        sender.add(keys("evt_next"))
    finally:
        sender.stop()
    assert send.batches == [["evt_next"]]


def test_events_of_several_workspaces_go_out_together_with_their_workspaces() -> None:
    send = Recorder()
    sender = JobSender(send, linger=60)
    sender.start()
    sender.add(keys("evt_1", workspace_id="acme"))
    sender.add(keys("evt_2", workspace_id="globex") + keys("evt_3", workspace_id="acme"))

    sender.stop()

    assert send.batches == [["evt_1", "evt_2", "evt_3"]]
    assert send.workspaces == ["acme,globex,acme"]


def test_deliveries_of_several_group_commits_share_one_job(
    database_url: str, redis_namespace: str, bridge: Context
) -> None:
    payloads = [event("customer.created", {"id": f"cus_{n}", "name": f"Co {n}"}) for n in range(3)]
    with own_bridge(database_url, redis_namespace, BRIDGE_ENQUEUE_LINGER_MS="60000") as lingering:
        with TestClient(create_app(lingering)) as client:
            for payload in payloads:  # one after the other: three group commits
                assert post_event(client, payload).status_code == 200
            assert queued_jobs(bridge) == 0  # answered; the job waits for more events
        # the app stopped: what waited was sent, as one job
        assert queued_jobs(bridge) == 1
        assert queued_event_ids(bridge) == [payload["id"] for payload in payloads]
        run_jobs(bridge)
    with TestClient(create_app(bridge)) as client:
        listed = client.get("/admin/api/events?status=processed", headers=admin_headers())
    assert {row["id"] for row in listed.json()["data"]} == {payload["id"] for payload in payloads}


def test_the_linger_setting_must_not_be_negative(database_url: str, redis_namespace: str) -> None:
    with pytest.raises(ConfigError, match="BRIDGE_ENQUEUE_LINGER_MS"):
        make_settings(database_url, redis_namespace, BRIDGE_ENQUEUE_LINGER_MS="-1")


@pytest.mark.parametrize(
    ("pending", "waited", "due"),
    [
        (10, 0.02, 0.03),  # within the linger: its end
        (1, 0.06, 0.0),  # a trickle: out after the linger
        (4, 0.06, 0.0),  # at this rate 16 in 250 ms, short of 25: out
        (12, 0.06, 0.065),  # 200/s: 13 more take 65 ms, then 25 go out together
        (6, 0.06, 0.19),  # 100/s: 25 only at 250 ms, waited for
        (25, 0.06, 0.0),  # a quarter of the batch: out
        (24, 0.25, 0.0),  # five lingers: out, however many
    ],
)
def test_a_steady_stream_lingers_until_a_quarter_of_a_batch(
    pending: int, waited: float, due: float
) -> None:
    sender = JobSender(Recorder(), linger=0.05, size=100)
    sender._pending = keys(*(f"evt_{n}" for n in range(pending)))
    sender._first_at = 0.0
    if due:
        assert sender._due(waited) == pytest.approx(due)
    else:
        assert sender._due(waited) <= 0
