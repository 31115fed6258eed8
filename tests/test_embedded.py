"""The embedded default (SQLite file, in-process broker) runs the same code paths: sync,
matching, the outbox relay and its claim query, against the fake Stripe."""

from __future__ import annotations

from pathlib import Path

from dramatiq.brokers.stub import StubBroker
from sqlalchemy import select

from stripe_bridge import connection, outbox
from stripe_bridge.bootstrap import bootstrap
from stripe_bridge.inbox.apply import apply_event
from stripe_bridge.migrate import upgrade
from stripe_bridge.models import OutboxRow, StripeEvent
from stripe_bridge.settings import Settings
from stripe_bridge.sync import run_sync
from tests.fake_stripe import FakeStripe
from tests.support import TEST_KEY, relay_for


def test_sqlite_embedded_default_syncs_matches_and_pushes_an_order(
    tmp_path: Path, fake_stripe: FakeStripe
) -> None:
    settings = Settings.from_env(
        {
            "BRIDGE_VAR_DIR": str(tmp_path / "var"),
            "STRIPE_API_BASE": fake_stripe.url,
            "BRIDGE_STRIPE_RETRY_BASE": "0.01",
        }
    )
    bridge = bootstrap(settings)
    try:
        assert settings.is_sqlite and isinstance(bridge.broker, StubBroker)
        upgrade(bridge.engine)
        with bridge.session_factory.begin() as session:
            connection.connect(session, bridge.box, bridge.gateway, "default", TEST_KEY)
        assert (tmp_path / "var" / "secret.key").exists()  # generated once for the embedded default
        fake_stripe.seed("product", name="Seats")
        fake_stripe.seed("customer", name="Acme", email="ap@acme.example")
        data = {"id": "vp_seats", "name": "Seats"}
        from stripe_bridge.event import Event
        from stripe_bridge.uow import UnitOfWork

        with bridge.session_factory.begin() as session:
            bridge.veles_handlers["product.upserted"](
                Event("v1", "product.upserted", 1, False, None, data, None),
                UnitOfWork(session, "default"),
            )
            customer = {"id": "v_acme", "name": "Acme", "email": "ap@acme.example"}
            bridge.veles_handlers["customer.upserted"](
                Event("v2", "customer.upserted", 1, False, None, customer, None),
                UnitOfWork(session, "default"),
            )
        assert run_sync(bridge, "default", "products").status == "completed"
        assert run_sync(bridge, "default", "customers").status == "completed"
        with bridge.session_factory.begin() as session:
            outbox.record_order(
                session,
                "default",
                {
                    "id": "ord_1",
                    "customer_id": "v_acme",
                    "currency": "usd",
                    "lines": [{"product_id": "vp_seats", "quantity": 3, "unit_amount": 1000}],
                },
            )

        assert relay_for(bridge).drain() == 1

        [invoice] = fake_stripe.objects("invoice")
        assert (invoice["status"], invoice["amount_due"], invoice["metadata"]) == (
            "open",
            3000,
            {"veles_order_id": "ord_1"},
        )
        with bridge.session_factory() as session:
            assert session.get(OutboxRow, ("default", 1)).status == "sent"
    finally:
        bridge.close()


def test_sqlite_applies_a_stored_event_like_postgresql(tmp_path: Path) -> None:
    settings = Settings.from_env({"BRIDGE_VAR_DIR": str(tmp_path / "var")})
    bridge = bootstrap(settings)
    try:
        upgrade(bridge.engine)
        import orjson

        from stripe_bridge.inbox.door import parse_event
        from stripe_bridge.inbox.store import store

        body = orjson.dumps(
            {
                "id": "evt_1",
                "type": "customer.created",
                "created": 1,
                "livemode": False,
                "data": {"object": {"id": "cus_1", "name": "Lite"}},
            }
        )
        with bridge.session_factory.begin() as session:
            assert store(session, StripeEvent, [parse_event(body)]) == {("default", "evt_1")}
            assert store(session, StripeEvent, [parse_event(body)]) == set()

        status = apply_event(
            bridge.session_factory, bridge.handlers, "default", "evt_1", max_attempts=1
        )

        assert status == "processed"
    finally:
        bridge.close()


def test_sqlite_never_hands_a_deleted_workspaces_outbox_ids_out_again(tmp_path: Path) -> None:
    """Outbox ids name the idempotency keys of pushes (`veles-outbox-{id}-{step}`), which
    Stripe remembers for 24 h: an id handed out again after a workspace is deleted could get
    the deleted workspace's stored answer if its account is connected again."""
    from stripe_bridge.models import utcnow
    from stripe_bridge.workspaces import create, delete_workspace

    def row(workspace_id: str) -> OutboxRow:
        return OutboxRow(
            workspace_id=workspace_id, aggregate_type="order", aggregate_id="ord", kind="order",
            payload={}, next_attempt_at=utcnow(), created_at=utcnow(),
        )  # fmt: skip

    bridge = bootstrap(Settings.from_env({"BRIDGE_VAR_DIR": str(tmp_path / "var")}))
    try:
        upgrade(bridge.engine)
        with bridge.session_factory.begin() as session:
            create(session, "gone")
            session.add_all([row("default"), row("gone")])
        with bridge.session_factory.begin() as session:
            [deleted] = session.scalars(select(OutboxRow.id).filter_by(workspace_id="gone"))
            delete_workspace(session, "gone")
        with bridge.session_factory.begin() as session:
            session.add(row("default"))
        with bridge.session_factory() as session:
            ids = list(session.scalars(select(OutboxRow.id).order_by(OutboxRow.id)))
        assert ids == [1, 3], f"id {deleted} handed out again: {ids}"
    finally:
        bridge.close()
