"""Invoice items: create (an ``amount``, ``pricing[price]`` or ``price_data``), retrieve, list.

An item added to a draft invoice becomes one of its lines (``invoices.refresh_invoice``).
"""

from __future__ import annotations

from decimal import Decimal

from tests.fake_stripe.context import Ctx
from tests.fake_stripe.invoices import refresh_invoice
from tests.fake_stripe.params import ApiError, Params, invalid
from tests.fake_stripe.prices import price_from_data
from tests.fake_stripe.records import Obj
from tests.fake_stripe.shapes import new_invoiceitem

ITEM_PARAMS = (
    "amount",
    "currency",
    "customer",
    "description",
    "discountable",
    "discounts",
    "expand",
    "invoice",
    "metadata",
    "period",
    "price_data",
    "pricing",
    "quantity",
    "subscription",
    "tax_behavior",
    "tax_code",
    "tax_rates",
    "unit_amount_decimal",
)


def _checked(p: Params) -> tuple[int | None, int | None, Params | None, Params | None]:
    """Checks before anything is looked up: one amount source, and a currency with an amount.
    Returns ``quantity``, ``amount`` and the ``pricing`` and ``price_data`` parameters."""
    sources = [k for k in ("amount", "pricing", "price_data", "unit_amount_decimal") if k in p]
    if len(sources) > 1:
        raise invalid(
            f"You may only specify one of these parameters: {', '.join(sources)}.",
            sources[1],
            "parameters_exclusive",
        )
    if not sources:
        raise invalid("Missing required param: amount.", "amount", "parameter_missing")
    quantity = p.integer("quantity", minimum=0)
    amount = p.integer("amount")
    pricing = p.sub("pricing")
    if pricing is not None:
        pricing.only("price")
        pricing.required("price")
    price_data = p.sub("price_data")
    if price_data is not None:
        price_data.only("currency", "product", "tax_behavior", "unit_amount", "unit_amount_decimal")
    if ("amount" in p or "unit_amount_decimal" in p) and "currency" not in p:
        raise invalid("Missing required param: currency.", "currency", "parameter_missing")
    return quantity, amount, pricing, price_data


def _draft_invoice(ctx: Ctx, p: Params, customer: Obj) -> Obj | None:
    """The ``invoice`` to add the item to: a draft of the same customer."""
    invoice = ctx.ref("invoice", p, "invoice")
    if invoice is not None and invoice["status"] != "draft":
        raise ApiError(
            400,
            f"You can only add invoice items to draft invoices; invoice "
            f"'{invoice['id']}' is {invoice['status']}.",
            code="invoice_not_editable",
            param="invoice",
        )
    if invoice is not None and invoice["customer"] != customer["id"]:
        raise invalid("The invoice item's customer must match the invoice's customer.", "invoice")
    return invoice


def _price(ctx: Ctx, pricing: Params | None, price_data: Params | None) -> Obj | None:
    """The one-time price of ``pricing[price]``, or a new one from ``price_data``."""
    if pricing is not None:
        price = ctx.need("price", pricing, "price")
        if price["type"] != "one_time":
            raise invalid(
                "The price specified is set to `type=recurring` but this field "
                "only accepts prices with `type=one_time`.",
                "pricing[price]",
            )
        return price
    if price_data is not None:
        return price_from_data(ctx, price_data, False)
    return None


def _set_amount(
    ctx: Ctx, obj: Obj, price: Obj | None, quantity: int | None, amount: int | None
) -> None:
    p = ctx.params
    units = 1 if quantity is None else quantity
    if price is not None:
        obj.update(
            amount=int(Decimal(price["unit_amount_decimal"]) * units),
            currency=price["currency"],
            quantity=units,
            pricing={
                "price_details": {"price": price["id"], "product": price["product"]},
                "type": "price_details",
                "unit_amount_decimal": price["unit_amount_decimal"],
            },
        )
        if not p.text("description"):
            obj["description"] = ctx.account.objects["product"][price["product"]]["name"]
    else:
        total = (
            amount
            if amount is not None
            else int((p.decimal("unit_amount_decimal") or Decimal(0)) * units)
        )
        obj.update(amount=total, quantity=units, currency=p.required("currency").lower())
    obj["quantity_decimal"] = str(units)


def create(ctx: Ctx) -> Obj:
    p = ctx.params
    p.only(*ITEM_PARAMS)
    quantity, amount, pricing, price_data = _checked(p)
    customer = ctx.need("customer", p, "customer")
    invoice = _draft_invoice(ctx, p, customer)
    price = _price(ctx, pricing, price_data)
    obj = new_invoiceitem(ctx.account, ctx.now(), customer["id"])
    _set_amount(ctx, obj, price, quantity, amount)
    if invoice is not None and invoice["currency"] != obj["currency"]:
        raise invalid(
            f"The currency of the invoice item ({obj['currency']}) must match "
            f"the currency of the invoice ({invoice['currency']}).",
            "currency",
        )
    obj["description"] = p.text("description") or obj["description"]
    obj["discountable"] = p.boolean("discountable") is not False
    obj["net_amount"] = None if obj["discountable"] else obj["amount"]  # null when discountable
    obj["metadata"] = p.metadata()
    period = p.sub("period")
    if period is not None:
        obj["period"] = {
            "start": period.integer("start", required=True),
            "end": period.integer("end", required=True),
        }
    obj["invoice"] = invoice["id"] if invoice else None
    ctx.put("invoiceitem", obj)
    ctx.emit("invoiceitem.created", obj)
    if invoice is not None:
        refresh_invoice(ctx, invoice)
    return ctx.answer(obj)


def retrieve(ctx: Ctx) -> Obj:
    ctx.params.only("expand")
    return ctx.answer(ctx.find("invoiceitem", ctx.args["id"]))


def list_invoice_items(ctx: Ctx) -> Obj:
    p = ctx.params
    invoice, customer, pending = p.text("invoice"), p.text("customer"), p.boolean("pending")
    items = [
        o
        for o in ctx.all("invoiceitem")
        if (invoice is None or o["invoice"] == invoice)
        and (customer is None or o["customer"] == customer)
        and (pending is None or (o["invoice"] is None) == pending)
    ]
    return ctx.page(items, "/v1/invoiceitems", ("customer", "invoice", "pending"))


ROUTES = [
    ("POST", "/v1/invoiceitems", create),
    ("GET", "/v1/invoiceitems", list_invoice_items),
    ("GET", "/v1/invoiceitems/{id}", retrieve),
]
