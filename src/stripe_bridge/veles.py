"""Veles' own events (`POST /veles/events`): the contract, checked at the door, and decoding.

Body: `{"id", "type", "created", "data": {...}}`, signed like Stripe's webhooks with
`BRIDGE_VELES_SECRET` in the `Veles-Signature` header."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from stripe_bridge.errors import BadRequest, PermanentError
from stripe_bridge.handlers.base import Event
from stripe_bridge.inbox import Incoming, storable, unix_seconds
from stripe_bridge.models import IGNORED

# type → (required string fields, optional string fields) of `data`
_STRING_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "customer.upserted": (("id", "name"), ("email", "domain")),
    "product.upserted": (("id", "name"), ("sku", "unit_label")),
    "order.committed": (("id", "customer_id", "currency"), ()),
    "contract.activated": (("id", "customer_id", "currency", "interval", "start_date"), ()),
    "contract.amended": (("id", "customer_id", "currency", "interval", "start_date"), ()),
    "contract.cancelled": (("id",), ()),
}
VELES_TYPES = frozenset(_STRING_FIELDS)
_WITH_LINES = frozenset({"order.committed", "contract.activated", "contract.amended"})


def _check_data(event_type: str, data: Mapping[str, Any]) -> None:
    required, optional = _STRING_FIELDS[event_type]
    for key in required:
        value = data.get(key)
        if not storable(value) or not value.strip():
            raise BadRequest(f"{event_type}: data.{key} must be a non-empty string")
    for key in optional:
        if data.get(key) is not None and not storable(data[key], limit=10_000):
            raise BadRequest(f"{event_type}: data.{key} must be a string or null")


def parse_veles_event(body: bytes, handled: Mapping[str, Any]) -> Incoming:
    """The fields the Veles inbox stores, or BadRequest for anything outside the contract."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise BadRequest("body is not a JSON object")
    event_id, event_type, created, data = (doc.get(k) for k in ("id", "type", "created", "data"))
    if not storable(event_id) or not event_id.strip():
        raise BadRequest("body is not a Veles event: missing or malformed 'id'")
    if not isinstance(event_type, str) or event_type not in VELES_TYPES:  # a list: unhashable
        raise BadRequest(f"unknown Veles event type {event_type!r}")
    created = unix_seconds(created, "a Veles event")
    if not isinstance(data, dict):
        raise BadRequest("body is not a Veles event: missing 'data'")
    _check_data(event_type, data)
    if event_type in _WITH_LINES and (not isinstance(data.get("lines"), list) or not data["lines"]):
        raise BadRequest(f"{event_type}: data.lines must be a non-empty list")
    incoming = Incoming(
        id=event_id, type=event_type, created=created, object_id=data["id"], payload=body
    )
    if event_type not in handled:
        incoming.status, incoming.reason = IGNORED, f"{event_type} is not applied yet"
    return incoming


def decode_veles_event(payload: Any) -> Event:
    try:
        return Event(
            id=str(payload["id"]),
            type=str(payload["type"]),
            created=int(payload["created"]),
            livemode=False,
            api_version=None,
            object=payload["data"],
            previous_attributes=None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise PermanentError(f"malformed Veles event: {exc!r}") from exc
