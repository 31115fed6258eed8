"""A small, stateful fake of Stripe's v1 API for tests (see ``server`` for what it models)."""

from tests.fake_stripe.server import (
    FakeStripe,
    RequestRecord,
    add_interval,
    decode_params,
    mask_key,
)

__all__ = ["FakeStripe", "RequestRecord", "add_interval", "decode_params", "mask_key"]
