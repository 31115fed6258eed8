"""GET /v1/events (``type`` with ``*`` wildcards, or ``types``) and GET /v1/events/{id}.

Events themselves are emitted by the other resources through ``Ctx.emit``.
"""

from __future__ import annotations

import fnmatch

from tests.fake_stripe.context import Ctx
from tests.fake_stripe.params import invalid
from tests.fake_stripe.records import Obj


def list_events(ctx: Ctx) -> Obj:
    p = ctx.params
    single, types = p.text("type"), p.strings("types")
    if single and types:
        raise invalid(
            "You may only specify one of these parameters: type, types.",
            "types",
            "parameters_exclusive",
        )
    if len(types) > 20:
        raise invalid("types can contain at most 20 entries.", "types")
    items = [
        e
        for e in ctx.all("event")
        if (not types or e["type"] in types)
        and (single is None or fnmatch.fnmatchcase(e["type"], single))
    ]
    return ctx.page(items, "/v1/events", ("delivery_success", "type", "types"))


def retrieve(ctx: Ctx) -> Obj:
    ctx.params.only("expand")
    return ctx.answer(ctx.find("event", ctx.args["id"]))


ROUTES = [
    ("GET", "/v1/events", list_events),
    ("GET", "/v1/events/{id}", retrieve),
]
