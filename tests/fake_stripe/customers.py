"""Customers: create, retrieve (a deleted one as its stub), update, delete, list."""

from __future__ import annotations

import copy

from tests.fake_stripe.context import Ctx
from tests.fake_stripe.params import Params
from tests.fake_stripe.records import Obj
from tests.fake_stripe.shapes import new_customer
from tests.fake_stripe.subscriptions import cancel_subscription

CUSTOMER_PARAMS = (
    "address",
    "balance",
    "cash_balance",
    "description",
    "email",
    "expand",
    "invoice_prefix",
    "invoice_settings",
    "metadata",
    "name",
    "next_invoice_sequence",
    "payment_method",
    "phone",
    "preferred_locales",
    "shipping",
    "source",
    "tax",
    "tax_exempt",
    "tax_id_data",
    "test_clock",
    "validate",
    "default_source",
)


def _apply(obj: Obj, p: Params) -> None:
    for key in ("name", "email", "description", "phone"):
        if key in p:
            obj[key] = p.nullable(key)
    for key in ("address", "shipping"):
        if key in p:
            sub = p.sub(key)
            obj[key] = sub.data if sub else None
    settings = p.sub("invoice_settings")
    if settings is not None:
        obj["invoice_settings"].update(settings.data)
    if "invoice_prefix" in p:
        obj["invoice_prefix"] = p.required("invoice_prefix")
    if "balance" in p:
        obj["balance"] = p.integer("balance")
    if "next_invoice_sequence" in p:
        obj["next_invoice_sequence"] = p.integer("next_invoice_sequence", minimum=1)
    if "preferred_locales" in p:
        obj["preferred_locales"] = p.strings("preferred_locales")
    if "tax_exempt" in p:
        obj["tax_exempt"] = p.choice("tax_exempt", ("none", "exempt", "reverse"))
    obj["metadata"] = p.metadata(obj["metadata"])


def create(ctx: Ctx) -> Obj:
    ctx.params.only(*CUSTOMER_PARAMS)
    obj = new_customer(ctx.account, ctx.now())
    _apply(obj, ctx.params)
    ctx.put("customer", obj)
    ctx.emit("customer.created", obj)
    return ctx.answer(obj)


def retrieve(ctx: Ctx) -> Obj:
    ctx.params.only("expand")
    if ctx.args["id"] in ctx.account.deleted:
        return ctx.public("customer", ctx.args["id"])
    return ctx.answer(ctx.find("customer", ctx.args["id"]))


def update(ctx: Ctx) -> Obj:
    ctx.params.only(*CUSTOMER_PARAMS)
    obj = ctx.find("customer", ctx.args["id"])
    before = copy.deepcopy(obj)
    _apply(obj, ctx.params)
    return ctx.updated("customer", obj, before)


def delete(ctx: Ctx) -> Obj:
    ctx.params.only()
    obj = ctx.find("customer", ctx.args["id"])
    for sub in ctx.all("subscription"):
        if sub["customer"] == obj["id"] and sub["status"] not in ("canceled", "incomplete_expired"):
            cancel_subscription(ctx, sub)
    ctx.account.deleted.add(obj["id"])
    ctx.emit("customer.deleted", obj)
    return {"id": obj["id"], "object": "customer", "deleted": True}


def list_customers(ctx: Ctx) -> Obj:
    email = ctx.params.text("email")
    items = [o for o in ctx.all("customer") if email is None or o["email"] == email]
    return ctx.page(items, "/v1/customers", ("email", "test_clock"))


ROUTES = [
    ("POST", "/v1/customers", create),
    ("GET", "/v1/customers", list_customers),
    ("GET", "/v1/customers/{id}", retrieve),
    ("POST", "/v1/customers/{id}", update),
    ("DELETE", "/v1/customers/{id}", delete),
]
