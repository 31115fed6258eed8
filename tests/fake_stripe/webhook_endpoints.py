"""Webhook endpoints: create (the only answer with ``secret``), retrieve, update, delete, list.

What an account's endpoints receive, and how, is ``webhooks``' part. The values Stripe accepts
for ``enabled_events[]`` and ``api_version`` are the ones stripe-python 16.1.0 (the bridge's
SDK, generated from the pinned version's spec) lists in ``WebhookEndpointCreateParams``.
Endpoints emit no events (Stripe has no ``webhook_endpoint.*`` event types).
"""

from __future__ import annotations

import copy
import typing
from urllib.parse import urlsplit

from stripe.params import WebhookEndpointCreateParams

from tests.fake_stripe.context import Ctx
from tests.fake_stripe.params import ApiError, Params, invalid
from tests.fake_stripe.records import Obj
from tests.fake_stripe.shapes import new_webhook_endpoint

MAX_ENDPOINTS = 16  # docs.stripe.com/webhooks: "You can register up to 16 webhook endpoints"
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")  # allowed here, refused by Stripe (see below)
CREATE_PARAMS = (
    "api_version",
    "connect",
    "description",
    "enabled_events",
    "expand",
    "metadata",
    "url",
)
UPDATE_PARAMS = ("description", "disabled", "enabled_events", "expand", "metadata", "url")


def _literals(annotation: object) -> tuple[str, ...]:
    found: list[str] = []
    for arg in typing.get_args(annotation):
        found.extend([arg] if isinstance(arg, str) else _literals(arg))
    return tuple(found)


EVENT_TYPES = frozenset(_literals(WebhookEndpointCreateParams.__annotations__["enabled_events"]))
API_VERSIONS = _literals(WebhookEndpointCreateParams.__annotations__["api_version"])


def _url(ctx: Ctx, p: Params) -> str:
    """Stripe's rule: an absolute http(s) URL, https in live mode ("Invalid URL: … URLs in
    livemode must begin with "https://"", as Stripe answers it). Deviation: Stripe also refuses
    hosts that are not publicly accessible, such as 127.0.0.1; the fake accepts them, so that
    tests can register the bridge's local server."""
    url = p.required("url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid(f"Invalid URL: {url}", "url", "url_invalid")
    if ctx.account.livemode and parts.scheme != "https":
        raise invalid(f'Invalid URL: {url}. URLs in livemode must begin with "https://"', "url")
    return url


def _events(p: Params) -> list[str]:
    events = p.strings("enabled_events")
    if not events:
        raise invalid(
            "Missing required param: enabled_events.", "enabled_events", "parameter_missing"
        )
    for index, name in enumerate(events):
        if name not in EVENT_TYPES:
            raise invalid(
                f"Invalid enabled_events[{index}]: must be one of {', '.join(sorted(EVENT_TYPES))}",
                f"enabled_events[{index}]",
            )
    return events


def _apply(ctx: Ctx, obj: Obj, p: Params) -> None:
    if "url" in p:
        obj["url"] = _url(ctx, p)
    if "enabled_events" in p:
        obj["enabled_events"] = _events(p)
    if "description" in p:
        obj["description"] = p.nullable("description")
    if "disabled" in p:
        obj["status"] = "disabled" if p.boolean("disabled") else "enabled"
    obj["metadata"] = p.metadata(obj["metadata"])


def create(ctx: Ctx) -> Obj:
    p = ctx.params
    p.only(*CREATE_PARAMS)
    p.required("url")
    if "enabled_events" not in p:
        _events(p)  # the missing-parameter error
    if len(ctx.all("webhook_endpoint")) >= MAX_ENDPOINTS:
        raise ApiError(
            400,
            f"You have reached the maximum of {MAX_ENDPOINTS} webhook endpoints on this account.",
            stored=False,
        )
    obj = new_webhook_endpoint(ctx.account, ctx.now())
    obj["api_version"] = p.choice("api_version", API_VERSIONS)
    obj["_connect"] = bool(p.boolean("connect"))
    obj["application"] = ctx.application
    _apply(ctx, obj, p)
    ctx.put("webhook_endpoint", obj)
    return {**ctx.answer(obj), "secret": obj["_secret"]}


def retrieve(ctx: Ctx) -> Obj:
    ctx.params.only("expand")
    return ctx.answer(ctx.find("webhook_endpoint", ctx.args["id"]))


def update(ctx: Ctx) -> Obj:
    ctx.params.only(*UPDATE_PARAMS)
    obj = ctx.find("webhook_endpoint", ctx.args["id"])
    changed = copy.deepcopy(obj)
    _apply(ctx, changed, ctx.params)
    obj.update(changed)
    return ctx.answer(obj)


def delete(ctx: Ctx) -> Obj:
    ctx.params.only()
    obj = ctx.find("webhook_endpoint", ctx.args["id"])
    ctx.account.deleted.add(obj["id"])
    return {"id": obj["id"], "object": "webhook_endpoint", "deleted": True}


def list_endpoints(ctx: Ctx) -> Obj:
    return ctx.page(ctx.all("webhook_endpoint"), "/v1/webhook_endpoints", ())


ROUTES = [
    ("POST", "/v1/webhook_endpoints", create),
    ("GET", "/v1/webhook_endpoints", list_endpoints),
    ("GET", "/v1/webhook_endpoints/{id}", retrieve),
    ("POST", "/v1/webhook_endpoints/{id}", update),
    ("DELETE", "/v1/webhook_endpoints/{id}", delete),
]
