"""Invoices: create, retrieve, update, delete (drafts), lines, finalize, pay, void, list.

A draft's lines and totals follow its invoice items (``refresh_invoice``); a zero total is
paid when finalized; ``pay`` just marks an invoice paid.
"""

from __future__ import annotations

import copy

from tests.fake_stripe.context import Ctx
from tests.fake_stripe.params import ApiError, invalid
from tests.fake_stripe.records import Obj, list_object, new_id
from tests.fake_stripe.shapes import line_for_item, new_invoice

INVOICE_PARAMS = (
    "account_tax_ids",
    "application_fee_amount",
    "auto_advance",
    "automatic_tax",
    "automatically_finalizes_at",
    "collection_method",
    "currency",
    "custom_fields",
    "customer",
    "days_until_due",
    "default_payment_method",
    "default_source",
    "default_tax_rates",
    "description",
    "discounts",
    "due_date",
    "effective_at",
    "expand",
    "footer",
    "issuer",
    "metadata",
    "number",
    "on_behalf_of",
    "payment_settings",
    "pending_invoice_items_behavior",
    "rendering",
    "shipping_cost",
    "shipping_details",
    "statement_descriptor",
    "subscription",
    "transfer_data",
)


def refresh_invoice(ctx: Ctx, invoice: Obj) -> None:
    """Recompute lines and totals of a draft from its invoice items."""
    order = ctx.store.order
    items = sorted(
        (o for o in ctx.all("invoiceitem") if o["invoice"] == invoice["id"]),
        key=lambda o: order[o["id"]],
    )
    lines = [line_for_item(item, invoice["id"]) for item in items]
    for item, line in zip(items, lines, strict=True):
        order.setdefault(line["id"], order[item["id"]])
    total = sum(line["amount"] for line in lines)
    invoice["lines"] = list_object(lines, f"/v1/invoices/{invoice['id']}/lines")
    invoice.update(
        subtotal=total,
        subtotal_excluding_tax=total,
        total=total,
        total_excluding_tax=total,
        amount_due=max(total, 0),
        amount_remaining=max(total, 0) - invoice["amount_paid"],
    )


def create(ctx: Ctx) -> Obj:
    p = ctx.params
    p.only(*INVOICE_PARAMS)
    p.required("customer")
    method = p.choice("collection_method", ("charge_automatically", "send_invoice"))
    days = p.integer("days_until_due", minimum=0)
    due_date = p.integer("due_date")
    behavior = p.choice("pending_invoice_items_behavior", ("exclude", "include"))
    if method == "send_invoice" and days is None and due_date is None:
        raise invalid(
            "Missing required param: days_until_due.", "days_until_due", "parameter_missing"
        )
    if method != "send_invoice" and (days is not None or due_date is not None):
        raise invalid(
            "days_until_due and due_date can only be set when collection_method=send_invoice.",
            "days_until_due",
        )
    customer = ctx.need("customer", p, "customer")
    obj = new_invoice(ctx.account, ctx.now(), customer)
    obj.update(
        collection_method=method or "charge_automatically",
        _days_until_due=days,
        due_date=due_date,
        auto_advance=bool(p.boolean("auto_advance")),
        automatically_finalizes_at=ctx.now() + 3600 if p.boolean("auto_advance") else None,
        currency=(
            p.text("currency") or customer["currency"] or ctx.account.default_currency
        ).lower(),
        description=p.text("description") or None,
        footer=p.text("footer") or None,
        number=p.text("number") or None,
        metadata=p.metadata(),
    )
    ctx.put("invoice", obj)
    if behavior == "include":
        for item in ctx.all("invoiceitem"):
            if (
                item["customer"] == customer["id"]
                and item["invoice"] is None
                and item["currency"] == obj["currency"]
            ):
                item["invoice"] = obj["id"]
    refresh_invoice(ctx, obj)
    ctx.emit("invoice.created", obj)
    return ctx.answer(obj)


def retrieve(ctx: Ctx) -> Obj:
    ctx.params.only("expand")
    return ctx.answer(ctx.find("invoice", ctx.args["id"]))


def update(ctx: Ctx) -> Obj:
    p = ctx.params
    p.only(
        *(
            k
            for k in INVOICE_PARAMS
            if k not in ("customer", "currency", "subscription", "pending_invoice_items_behavior")
        )
    )
    obj = ctx.find("invoice", ctx.args["id"])
    before = copy.deepcopy(obj)
    money = {"collection_method", "days_until_due", "due_date", "number"} & set(p.data)
    if obj["status"] != "draft" and money:
        raise ApiError(
            400,
            "Finalized invoices can't be updated in this way",
            code="invoice_not_editable",
            param=sorted(money)[0],
        )
    for key in ("description", "footer", "number"):
        if key in p:
            obj[key] = p.nullable(key)
    if "auto_advance" in p:
        obj["auto_advance"] = p.boolean("auto_advance")
    if "collection_method" in p:
        obj["collection_method"] = p.choice(
            "collection_method", ("charge_automatically", "send_invoice")
        )
    if "days_until_due" in p:  # kept, not shown: an invoice has only its due_date
        obj["_days_until_due"] = p.integer("days_until_due")
    if "due_date" in p:
        obj["due_date"] = p.integer("due_date")
    obj["metadata"] = p.metadata(obj["metadata"])
    return ctx.updated("invoice", obj, before)


def delete(ctx: Ctx) -> Obj:
    ctx.params.only()
    obj = ctx.find("invoice", ctx.args["id"])
    if obj["status"] != "draft":
        raise ApiError(400, "You can only delete draft invoices.", code="invoice_not_editable")
    for item in ctx.all("invoiceitem"):
        if item["invoice"] == obj["id"]:
            item["invoice"] = None
    del ctx.account.objects["invoice"][obj["id"]]
    ctx.emit("invoice.deleted", obj)
    return {"id": obj["id"], "object": "invoice", "deleted": True}


def lines(ctx: Ctx) -> Obj:
    invoice = ctx.find("invoice", ctx.args["id"])
    return ctx.page(invoice["lines"]["data"], invoice["lines"]["url"], (), newest_first=False)


def finalize(ctx: Ctx, obj: Obj) -> None:
    now = ctx.now()
    customer = ctx.account.objects["customer"][obj["customer"]]
    if obj["number"] is None:
        obj["number"] = f"{customer['invoice_prefix']}-{customer['next_invoice_sequence']:04d}"
        customer["next_invoice_sequence"] += 1
    token = new_id("test" if not ctx.account.livemode else "live", 40)
    obj.update(
        status="open",
        effective_at=now,
        customer_email=customer["email"],
        customer_name=customer["name"],
        customer_address=customer["address"],
        customer_phone=customer["phone"],
        automatically_finalizes_at=None,
        hosted_invoice_url=f"https://invoice.stripe.com/i/{ctx.account.id}/{token}",
        invoice_pdf=f"https://pay.stripe.com/invoice/{ctx.account.id}/{token}/pdf",
    )
    obj["status_transitions"]["finalized_at"] = now
    if obj["collection_method"] == "send_invoice" and obj["due_date"] is None:
        obj["due_date"] = now + 86400 * (obj.get("_days_until_due") or 0)
    ctx.emit("invoice.finalized", obj)
    if obj["amount_due"] == 0:
        mark_paid(ctx, obj, out_of_band=True)


def mark_paid(ctx: Ctx, obj: Obj, out_of_band: bool) -> None:
    obj.update(
        status="paid",
        amount_paid=obj["amount_due"],
        amount_remaining=0,
        attempted=not out_of_band,
        attempt_count=0 if out_of_band else 1,
        next_payment_attempt=None,
    )
    obj["status_transitions"]["paid_at"] = ctx.now()
    if not out_of_band and obj["amount_due"] > 0:
        ctx.emit("invoice.payment_succeeded", obj)
    ctx.emit("invoice.paid", obj)


def finalize_invoice(ctx: Ctx) -> Obj:
    ctx.params.only("auto_advance", "expand")
    obj = ctx.find("invoice", ctx.args["id"])
    if obj["status"] != "draft":
        raise ApiError(
            400,
            "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
            code="invoice_not_editable",
        )
    if "auto_advance" in ctx.params:
        obj["auto_advance"] = ctx.params.boolean("auto_advance")
    finalize(ctx, obj)
    return ctx.answer(obj)


def pay(ctx: Ctx) -> Obj:
    ctx.params.only(
        "expand",
        "forgive",
        "mandate",
        "off_session",
        "paid_out_of_band",
        "payment_method",
        "source",
    )
    out_of_band = bool(ctx.params.boolean("paid_out_of_band"))
    obj = ctx.find("invoice", ctx.args["id"])
    if obj["status"] == "paid":
        raise ApiError(400, "Invoice is already paid")
    if obj["status"] == "void":
        raise ApiError(400, "This invoice can no longer be paid because it is void.")
    if obj["status"] == "draft":
        finalize(ctx, obj)
    if obj["status"] != "paid":  # open or uncollectible (a zero total is paid already)
        mark_paid(ctx, obj, out_of_band)
    return ctx.answer(obj)


def void(ctx: Ctx) -> Obj:
    ctx.params.only("expand")
    obj = ctx.find("invoice", ctx.args["id"])
    if obj["status"] not in ("open", "uncollectible"):
        raise ApiError(
            400,
            f"You can only void open or uncollectible invoices; this invoice is {obj['status']}.",
        )
    obj["status"] = "void"
    obj["status_transitions"]["voided_at"] = ctx.now()
    ctx.emit("invoice.voided", obj)
    return ctx.answer(obj)


def _subscription_of(invoice: Obj) -> str | None:
    """The subscription an invoice bills, under ``parent`` (no top-level field since basil)."""
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    return details.get("subscription")


def list_invoices(ctx: Ctx) -> Obj:
    p = ctx.params
    customer, subscription = p.text("customer"), p.text("subscription")
    status = p.choice("status", ("draft", "open", "paid", "uncollectible", "void"))
    method = p.choice("collection_method", ("charge_automatically", "send_invoice"))
    items = [
        o
        for o in ctx.all("invoice")
        if (customer is None or o["customer"] == customer)
        and (status is None or o["status"] == status)
        and (method is None or o["collection_method"] == method)
        and (subscription is None or _subscription_of(o) == subscription)
    ]
    return ctx.page(
        items,
        "/v1/invoices",
        ("collection_method", "customer", "due_date", "status", "subscription"),
    )


ROUTES = [
    ("POST", "/v1/invoices", create),
    ("GET", "/v1/invoices", list_invoices),
    ("GET", "/v1/invoices/{id}", retrieve),
    ("POST", "/v1/invoices/{id}", update),
    ("DELETE", "/v1/invoices/{id}", delete),
    ("GET", "/v1/invoices/{id}/lines", lines),
    ("POST", "/v1/invoices/{id}/finalize", finalize_invoice),
    ("POST", "/v1/invoices/{id}/pay", pay),
    ("POST", "/v1/invoices/{id}/void", void),
]
