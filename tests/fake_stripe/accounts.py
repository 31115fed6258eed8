"""GET /v1/account: the account the key belongs to."""

from __future__ import annotations

from tests.fake_stripe.context import Ctx
from tests.fake_stripe.records import Obj
from tests.fake_stripe.shapes import account_object


def retrieve(ctx: Ctx) -> Obj:
    ctx.params.only("expand")
    return account_object(ctx.account)


ROUTES = [
    ("GET", "/v1/account", retrieve),
]
