"""The embedded default (SQLite file, in-process broker) runs the same code paths: sync,
matching, the outbox relay and its claim query, against the fake Stripe."""

from __future__ import annotations

from pathlib import Path

from dramatiq.brokers.stub import StubBroker

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
