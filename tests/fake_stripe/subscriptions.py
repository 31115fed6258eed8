"""Subscriptions: create, retrieve, update (items, cancel flags), cancel, list.

Items keep their current period (``current_period_start``/``_end``, from the subscription's
start date and billing cycle anchor) and a ``plan`` mirror of their price.
"""

from __future__ import annotations

import copy

from tests.fake_stripe.context import Ctx
from tests.fake_stripe.params import ApiError, Params, invalid, missing
from tests.fake_stripe.prices import price_from_data
from tests.fake_stripe.records import Obj, add_interval, list_object, new_id
from tests.fake_stripe.shapes import new_subscription, plan_for

SUBSCRIPTION_PARAMS = (
    "add_invoice_items",
    "application_fee_percent",
    "automatic_tax",
    "backdate_start_date",
    "billing_cycle_anchor",
    "billing_cycle_anchor_config",
    "billing_mode",
    "billing_thresholds",
    "cancel_at",
    "cancel_at_period_end",
    "cancellation_details",
    "collection_method",
    "currency",
    "customer",
    "days_until_due",
    "default_payment_method",
    "default_source",
    "default_tax_rates",
    "description",
    "discounts",
    "expand",
    "invoice_settings",
    "items",
    "metadata",
    "off_session",
    "on_behalf_of",
    "pause_collection",
    "payment_behavior",
    "payment_settings",
    "pending_invoice_item_interval",
    "proration_behavior",
    "proration_date",
    "transfer_data",
    "trial_end",
    "trial_from_plan",
    "trial_period_days",
    "trial_settings",
)


def item_price(ctx: Ctx, item: Params) -> Obj:
    if "price" in item and "price_data" in item:
        raise invalid(
            f"You may only specify one of these parameters: "
            f"{item.name('price')}, {item.name('price_data')}.",
            item.name("price"),
            "parameters_exclusive",
        )
    price_data = item.sub("price_data")
    if price_data is not None:
        price_data.only(
            "currency", "product", "recurring", "tax_behavior", "unit_amount", "unit_amount_decimal"
        )
        return price_from_data(ctx, price_data, True)
    price = ctx.need("price", item, "price")
    if price["type"] != "recurring":
        raise invalid(
            "The price specified is set to `type=one_time` but this field only "
            "accepts prices with `type=recurring`.",
            item.name("price"),
        )
    return price


def new_item(ctx: Ctx, sub: Obj, item: Params) -> Obj:
    item.only(
        "billing_thresholds",
        "discounts",
        "metadata",
        "plan",
        "price",
        "price_data",
        "quantity",
        "tax_rates",
    )
    quantity = item.integer("quantity", minimum=0)
    price = item_price(ctx, item)
    obj = {
        "id": new_id("si", 14),
        "object": "subscription_item",
        "billing_thresholds": None,
        "created": ctx.now(),
        "current_trial": None,
        "discounts": [],
        "metadata": item.metadata(),
        "plan": plan_for(price),
        "price": copy.deepcopy(price),
        "quantity": 1 if quantity is None else quantity,
        "subscription": sub["id"],
        "tax_rates": [],
    }
    set_period(ctx, sub, obj)
    return obj


def set_period(ctx: Ctx, sub: Obj, item: Obj) -> None:
    """The item's current period from the subscription's start date and anchor."""
    recurring = item["price"]["recurring"]
    start, anchor, now = sub["start_date"], sub["billing_cycle_anchor"], ctx.now()
    if now < anchor:
        item["current_period_start"], item["current_period_end"] = start, anchor
        return
    step = 0
    while (
        add_interval(anchor, recurring["interval"], (step + 1) * recurring["interval_count"]) <= now
    ):
        step += 1
    begin = add_interval(anchor, recurring["interval"], step * recurring["interval_count"])
    item["current_period_start"] = begin
    item["current_period_end"] = add_interval(
        begin, recurring["interval"], recurring["interval_count"]
    )


def apply_cancel_flags(ctx: Ctx, sub: Obj, p: Params) -> None:
    if "cancel_at_period_end" in p:
        at_end = bool(p.boolean("cancel_at_period_end"))
        sub["cancel_at_period_end"] = at_end
        sub["cancel_at"] = (
            max(i["current_period_end"] for i in sub["items"]["data"]) if at_end else None
        )
        sub["canceled_at"] = ctx.now() if at_end else None
        sub["cancellation_details"]["reason"] = "cancellation_requested" if at_end else None
    if "cancel_at" in p and not sub["cancel_at_period_end"]:
        sub["cancel_at"] = p.integer("cancel_at") if p.text("cancel_at") else None


def create(ctx: Ctx) -> Obj:
    p = ctx.params
    p.only(*SUBSCRIPTION_PARAMS)
    p.required("customer")
    items = p.items("items")
    if not items:
        raise invalid("Missing required param: items.", "items", "parameter_missing")
    now = ctx.now()
    backdate = p.integer("backdate_start_date")
    anchor = p.integer("billing_cycle_anchor")
    trial_days = p.integer("trial_period_days", minimum=0)
    method = p.choice("collection_method", ("charge_automatically", "send_invoice"))
    p.choice("proration_behavior", ("always_invoice", "create_prorations", "none"))
    if backdate is not None and backdate > now:
        raise invalid("backdate_start_date must be in the past.", "backdate_start_date")
    if anchor is not None and anchor < (now - 300 if backdate is None else backdate):
        raise invalid("billing_cycle_anchor cannot be in the past.", "billing_cycle_anchor")
    customer = ctx.need("customer", p, "customer")
    start = backdate if backdate is not None else now
    obj = new_subscription(ctx.account, now, customer["id"])
    trial_end = now + 86400 * trial_days if trial_days else None
    obj.update(
        start_date=start,
        billing_cycle_anchor=anchor or trial_end or start,
        collection_method=method or "charge_automatically",
        days_until_due=p.integer("days_until_due"),
        description=p.text("description") or None,
        metadata=p.metadata(),
        default_payment_method=p.text("default_payment_method") or None,
        status="trialing" if trial_end else "active",
        trial_start=now if trial_end else None,
        trial_end=trial_end,
    )
    data = [new_item(ctx, obj, item) for item in items]
    obj["items"] = list_object(data, f"/v1/subscription_items?subscription={obj['id']}")
    obj["currency"] = data[0]["price"]["currency"]
    apply_cancel_flags(ctx, obj, p)
    ctx.put("subscription", obj)
    ctx.emit("customer.subscription.created", obj)
    return ctx.answer(obj)


def retrieve(ctx: Ctx) -> Obj:
    ctx.params.only("expand")
    return ctx.answer(ctx.find("subscription", ctx.args["id"]))


def update(ctx: Ctx) -> Obj:
    p = ctx.params
    p.only(
        *(
            k
            for k in SUBSCRIPTION_PARAMS
            if k not in ("customer", "currency", "backdate_start_date")
        )
    )
    obj = ctx.find("subscription", ctx.args["id"])
    if obj["status"] == "canceled" and set(p.data) - {"metadata", "cancellation_details", "expand"}:
        raise invalid(
            "A canceled subscription can only update its cancellation_details and metadata."
        )
    p.choice("proration_behavior", ("always_invoice", "create_prorations", "none"))
    before = copy.deepcopy(obj)
    data = copy.deepcopy(obj["items"]["data"])
    for item in p.items("items"):
        data = update_items(ctx, obj, data, item)
    if not data:
        raise invalid("A subscription must have at least one active item.", "items")
    obj["items"] = list_object(data, obj["items"]["url"])
    if "description" in p:
        obj["description"] = p.nullable("description")
    if "default_payment_method" in p:
        obj["default_payment_method"] = p.nullable("default_payment_method")
    if "collection_method" in p:
        obj["collection_method"] = p.choice(
            "collection_method", ("charge_automatically", "send_invoice")
        )
    if "days_until_due" in p:
        obj["days_until_due"] = p.integer("days_until_due")
    apply_cancel_flags(ctx, obj, p)
    obj["metadata"] = p.metadata(obj["metadata"])
    return ctx.updated("subscription", obj, before)


def update_items(ctx: Ctx, sub: Obj, data: list[Obj], item: Params) -> list[Obj]:
    item_id = item.text("id")
    if item_id is None:
        return [*data, new_item(ctx, sub, item)]
    current = next((i for i in data if i["id"] == item_id), None)
    if current is None:
        raise ApiError(
            400,
            f"No such subscription item: '{item_id}'",
            code="resource_missing",
            param=item.name("id"),
        )
    item.only(
        "billing_thresholds",
        "clear_usage",
        "deleted",
        "discounts",
        "id",
        "metadata",
        "plan",
        "price",
        "price_data",
        "quantity",
        "tax_rates",
    )
    if item.boolean("deleted"):
        return [i for i in data if i["id"] != item_id]
    if "price" in item or "price_data" in item:
        price = item_price(ctx, item)
        current.update(price=copy.deepcopy(price), plan=plan_for(price))
    if "quantity" in item:
        current["quantity"] = item.integer("quantity", minimum=0)
    current["metadata"] = item.metadata(current["metadata"])
    return data


def cancel_subscription(ctx: Ctx, sub: Obj) -> None:
    now = ctx.now()
    sub.update(status="canceled", canceled_at=now, ended_at=now, cancel_at=None)
    sub["cancellation_details"]["reason"] = "cancellation_requested"
    ctx.emit("customer.subscription.deleted", sub)


def cancel(ctx: Ctx) -> Obj:
    p = ctx.params
    p.only("cancellation_details", "expand", "invoice_now", "prorate")
    obj = ctx.find("subscription", ctx.args["id"])
    if obj["status"] == "canceled":
        raise missing("subscription", obj["id"])
    details = p.sub("cancellation_details")
    if details is not None:
        details.only("comment", "feedback")
        obj["cancellation_details"].update(
            comment=details.text("comment") or None, feedback=details.text("feedback") or None
        )
    cancel_subscription(ctx, obj)
    return ctx.answer(obj)


def list_subscriptions(ctx: Ctx) -> Obj:
    p = ctx.params
    customer, price = p.text("customer"), p.text("price")
    status = p.choice(
        "status",
        (
            "active",
            "all",
            "canceled",
            "ended",
            "incomplete",
            "incomplete_expired",
            "past_due",
            "paused",
            "trialing",
            "unpaid",
        ),
    )
    ended = ("canceled", "incomplete_expired")

    def wanted(sub: Obj) -> bool:
        if status is None:
            return sub["status"] not in ended
        if status == "ended":
            return sub["status"] in ended
        return status == "all" or sub["status"] == status

    items = [
        o
        for o in ctx.all("subscription")
        if wanted(o)
        and (customer is None or o["customer"] == customer)
        and (price is None or any(i["price"]["id"] == price for i in o["items"]["data"]))
    ]
    return ctx.page(
        items,
        "/v1/subscriptions",
        (
            "automatic_tax",
            "collection_method",
            "current_period_end",
            "current_period_start",
            "customer",
            "price",
            "status",
            "test_clock",
        ),
    )


ROUTES = [
    ("POST", "/v1/subscriptions", create),
    ("GET", "/v1/subscriptions", list_subscriptions),
    ("GET", "/v1/subscriptions/{id}", retrieve),
    ("POST", "/v1/subscriptions/{id}", update),
    ("DELETE", "/v1/subscriptions/{id}", cancel),
]
