"""Products: create (with ``default_price_data``), retrieve, update, list."""

from __future__ import annotations

import copy

from tests.fake_stripe.context import Ctx
from tests.fake_stripe.params import ApiError, Params, invalid
from tests.fake_stripe.prices import price_from_data
from tests.fake_stripe.records import Obj
from tests.fake_stripe.shapes import new_product

PRODUCT_PARAMS = (
    "active",
    "default_price_data",
    "description",
    "expand",
    "id",
    "images",
    "marketing_features",
    "metadata",
    "name",
    "package_dimensions",
    "shippable",
    "statement_descriptor",
    "tax_code",
    "unit_label",
    "url",
    "default_price",
)


def _apply(ctx: Ctx, obj: Obj, p: Params) -> None:
    if "name" in p:
        obj["name"] = p.required("name")
    for key in ("description", "statement_descriptor", "unit_label", "url", "tax_code"):
        if key in p:
            obj[key] = p.nullable(key)
    if "active" in p:
        obj["active"] = p.boolean("active")
    if "shippable" in p:
        obj["shippable"] = p.boolean("shippable")
    if "images" in p:
        obj["images"] = p.strings("images")
    if "default_price" in p:
        price = ctx.ref("price", p, "default_price")
        if price is not None and price["product"] != obj["id"]:
            raise invalid("The price must belong to this product.", "default_price")
        obj["default_price"] = price["id"] if price else None
    obj["metadata"] = p.metadata(obj["metadata"])


def create(ctx: Ctx) -> Obj:
    p = ctx.params
    p.only(*PRODUCT_PARAMS)
    p.required("name")
    obj = new_product(ctx.account, ctx.now())
    if "id" in p:
        obj["id"] = p.required("id")
        if obj["id"] in ctx.account.objects["product"]:
            raise ApiError(
                400, "Product already exists.", code="resource_already_exists", param="id"
            )
    _apply(ctx, obj, p)
    ctx.put("product", obj)
    ctx.emit("product.created", obj)
    price_data = p.sub("default_price_data")
    if price_data is not None:
        price_data.data = {**price_data.data, "product": obj["id"]}
        obj["default_price"] = price_from_data(ctx, price_data, None, active=True)["id"]
    return ctx.answer(obj)


def retrieve(ctx: Ctx) -> Obj:
    ctx.params.only("expand")
    return ctx.answer(ctx.find("product", ctx.args["id"]))


def update(ctx: Ctx) -> Obj:
    ctx.params.only(*(k for k in PRODUCT_PARAMS if k not in ("id", "default_price_data")))
    obj = ctx.find("product", ctx.args["id"])
    before = copy.deepcopy(obj)
    _apply(ctx, obj, ctx.params)
    if obj != before:
        obj["updated"] = ctx.now()
    return ctx.updated("product", obj, before)


def list_products(ctx: Ctx) -> Obj:
    active, ids = ctx.params.boolean("active"), ctx.params.strings("ids")
    items = [
        o
        for o in ctx.all("product")
        if (active is None or o["active"] == active) and (not ids or o["id"] in ids)
    ]
    return ctx.page(items, "/v1/products", ("active", "ids", "shippable", "url"))


ROUTES = [
    ("POST", "/v1/products", create),
    ("GET", "/v1/products", list_products),
    ("GET", "/v1/products/{id}", retrieve),
    ("POST", "/v1/products/{id}", update),
]
