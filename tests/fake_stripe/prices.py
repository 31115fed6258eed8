"""Prices: create (with ``product_data``), retrieve, update, list; and ``price_from_data``,
which invoice items, subscription items and products use for their ``price_data``."""

from __future__ import annotations

import copy

from tests.fake_stripe.context import Ctx
from tests.fake_stripe.params import Params, invalid
from tests.fake_stripe.records import Obj
from tests.fake_stripe.shapes import new_price, new_product


def price_from_data(
    ctx: Ctx, p: Params, recurring_required: bool | None, active: bool = False
) -> Obj:
    """Create a price from ``price_data``-like params (a standalone one: ``active=True``)."""
    currency = p.required("currency").lower()
    product = ctx.need("product", p, "product")
    amount = p.integer("unit_amount", minimum=0)
    decimal = p.decimal("unit_amount_decimal")
    if amount is None and decimal is None and "custom_unit_amount" not in p:
        raise invalid(
            f"Missing required param: {p.name('unit_amount')}.",
            p.name("unit_amount"),
            "parameter_missing",
        )
    recurring = p.sub("recurring", required=bool(recurring_required))
    if recurring is not None and recurring_required is False:
        raise invalid(
            f"Received unknown parameter: {p.name('recurring')}",
            p.name("recurring"),
            "parameter_unknown",
        )
    if recurring is not None:
        recurring.only(
            "interval",
            "interval_count",
            "meter",
            "usage_type",
            "trial_period_days",
            "aggregate_usage",
        )
        recurring_obj: Obj | None = {
            "interval": recurring.choice(
                "interval", ("day", "week", "month", "year"), required=True
            ),
            "interval_count": recurring.integer("interval_count", minimum=1) or 1,
            "meter": recurring.text("meter"),
            "trial_period_days": recurring.integer("trial_period_days"),
            "usage_type": recurring.choice("usage_type", ("licensed", "metered")) or "licensed",
        }
    else:
        recurring_obj = None
    obj = new_price(
        ctx.account,
        ctx.now(),
        product["id"],
        currency,
        amount if amount is not None else int(decimal or 0),
        recurring_obj,
    )
    if decimal is not None:
        obj["unit_amount_decimal"] = str(decimal)
    obj["active"] = active if p.boolean("active") is None else p.boolean("active")
    for key in ("nickname", "lookup_key"):
        obj[key] = p.text(key) or None
    obj["tax_behavior"] = (
        p.choice("tax_behavior", ("exclusive", "inclusive", "unspecified")) or "unspecified"
    )
    obj["metadata"] = p.metadata()
    ctx.put("price", obj)
    ctx.emit("price.created", obj)
    return obj


def create(ctx: Ctx) -> Obj:
    p = ctx.params
    p.only(
        "active",
        "billing_scheme",
        "currency",
        "currency_options",
        "custom_unit_amount",
        "expand",
        "lookup_key",
        "metadata",
        "nickname",
        "product",
        "product_data",
        "recurring",
        "tax_behavior",
        "tiers",
        "tiers_mode",
        "transfer_lookup_key",
        "transform_quantity",
        "unit_amount",
        "unit_amount_decimal",
    )
    product_data = p.sub("product_data")
    if product_data is None and "product" not in p:
        raise invalid("Missing required param: product.", "product", "parameter_missing")
    if product_data is not None:
        if "product" in p:
            raise invalid(
                "You may only specify one of these parameters: product, product_data.",
                "product",
                "parameters_exclusive",
            )
        product_data.only(
            "active", "id", "metadata", "name", "statement_descriptor", "tax_code", "unit_label"
        )
        product = new_product(ctx.account, ctx.now())
        product["name"] = product_data.required("name")
        product["metadata"] = product_data.metadata()
        ctx.put("product", product)
        ctx.emit("product.created", product)
        p = Params({**p.data, "product": product["id"]})
    obj = price_from_data(ctx, p, None, active=True)
    return ctx.answer(obj)


def retrieve(ctx: Ctx) -> Obj:
    ctx.params.only("expand")
    return ctx.answer(ctx.find("price", ctx.args["id"]))


def update(ctx: Ctx) -> Obj:
    p = ctx.params
    p.only(
        "active",
        "currency_options",
        "expand",
        "lookup_key",
        "metadata",
        "nickname",
        "tax_behavior",
        "transfer_lookup_key",
    )
    obj = ctx.find("price", ctx.args["id"])
    before = copy.deepcopy(obj)
    if "active" in p:
        obj["active"] = p.boolean("active")
    for key in ("nickname", "lookup_key"):
        if key in p:
            obj[key] = p.nullable(key)
    if "tax_behavior" in p:
        obj["tax_behavior"] = p.choice("tax_behavior", ("exclusive", "inclusive", "unspecified"))
    obj["metadata"] = p.metadata(obj["metadata"])
    return ctx.updated("price", obj, before)


def list_prices(ctx: Ctx) -> Obj:
    p = ctx.params
    active, product = p.boolean("active"), p.text("product")
    currency, kind = p.text("currency"), p.choice("type", ("one_time", "recurring"))
    items = [
        o
        for o in ctx.all("price")
        if (active is None or o["active"] == active)
        and (product is None or o["product"] == product)
        and (currency is None or o["currency"] == currency)
        and (kind is None or o["type"] == kind)
    ]
    return ctx.page(
        items, "/v1/prices", ("active", "currency", "lookup_keys", "product", "recurring", "type")
    )


ROUTES = [
    ("POST", "/v1/prices", create),
    ("GET", "/v1/prices", list_prices),
    ("GET", "/v1/prices/{id}", retrieve),
    ("POST", "/v1/prices/{id}", update),
]
