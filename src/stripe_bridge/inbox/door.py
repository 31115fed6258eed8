"""The inbox's door: a delivery's signature verified, its body parsed into what the inbox stores
(`Incoming`), or a BadRequest naming what is wrong.

Signatures (`t=…,v1=…`, HMAC-SHA256 over "{t}.{body}") are Stripe's, and Veles' own with
`BRIDGE_VELES_SECRET` in the `Veles-Signature` header. Bodies are Stripe events (`parse_event`)
and Veles events (`parse_veles_event`: `{"id", "type", "created", "data": {...}}`)."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import orjson
from stripe import SignatureVerificationError, WebhookSignature

from stripe_bridge.errors import BadRequest, PermanentError
from stripe_bridge.event import Event
from stripe_bridge.models import DEFAULT_WORKSPACE, IGNORED, RECEIVED
from stripe_bridge.workspaces import ID_PATTERN


def verify(body: bytes, header: str | None, secrets: Sequence[str], tolerance: int) -> None:
    """Accept the body if any configured secret (two while rolling) signed it recently.

    The header's shape is checked here, read as the SDK reads it (items split on commas, no
    spaces); the SDK compares the signatures (`WebhookSignature.verify_header`, its own
    timestamp check off), so that its failure can only mean a signature that does not match;
    then the timestamp, with its own answer."""
    if not secrets:
        raise BadRequest("no signing secret is configured; refusing unverifiable events")
    timestamp = _timestamp(header)
    try:
        payload = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("body is not UTF-8") from None
    assert header is not None  # _timestamp refused a missing header
    if not any(_signed_by(payload, header, secret) for secret in secrets):
        raise BadRequest("signature does not match")
    # Only a sender holding the secret learns that its timestamp is stale.
    if timestamp < time.time() - tolerance:
        raise BadRequest("timestamp outside the tolerance window")


def _signed_by(payload: str, header: str, secret: str) -> bool:
    try:
        WebhookSignature.verify_header(payload, header, secret, tolerance=None)
    except SignatureVerificationError:
        return False
    return True


def _timestamp(header: str | None) -> int:
    """`t=<unix seconds>` of a header that also carries at least one `v1=` signature."""
    if not header:
        raise BadRequest("missing signature header")
    if not header.isascii():  # the SDK's compare_digest raises TypeError on such a value
        raise BadRequest("malformed signature header")
    timestamps, signatures = [], 0
    for item in header.split(","):
        key, sep, value = item.partition("=")
        if sep and key == "t" and value.isdigit():
            timestamps.append(int(value))
        elif sep and key == "v1" and value:
            signatures += 1
    if len(timestamps) != 1 or not signatures:
        raise BadRequest("malformed signature header")
    return timestamps[0]


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """A header value as the sender computes it (tests, benchmarks, the Veles client)."""
    signed = f"{timestamp}.".encode() + body
    signature = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={signature}"


@dataclass(slots=True)
class Incoming:
    """A verified delivery, parsed just enough to be stored (`extra`: inbox-specific columns)."""

    id: str
    type: str
    created: int
    object_id: str | None
    payload: bytes
    extra: dict[str, Any] = field(default_factory=dict)
    status: str = RECEIVED
    reason: str | None = None
    workspace_id: str = DEFAULT_WORKSPACE  # the door sets it: the route's, or the account's

    @property
    def key(self) -> tuple[str, str]:
        """The inbox row's primary key."""
        return self.workspace_id, self.id


MAX_CREATED = 253_402_300_799  # unix seconds of 9999-12-31: anything later is not a timestamp


def unix_seconds(value: Any, what: str) -> int:
    """An event's `created`: whole unix seconds in the range an inbox row holds."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRequest(f"body is not {what}: missing 'created' (unix seconds)")
    if not 0 <= value <= MAX_CREATED:
        raise BadRequest(f"body is not {what}: 'created' is out of range")
    return value


def storable(value: Any, limit: int = 255) -> TypeGuard[str]:
    """A string an inbox column can keep: at most `limit` characters, no NUL (PostgreSQL's text
    cannot hold one)."""
    return isinstance(value, str) and len(value) <= limit and "\x00" not in value


def _bounded(value: Any, name: str, limit: int) -> str | None:
    """An optional string field that an inbox column keeps."""
    if not isinstance(value, str):
        return None
    if not storable(value, limit):
        raise BadRequest(f"body is not a Stripe event: {name!r} is longer than {limit} or has NUL")
    return value


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or BadRequest (both doors)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise BadRequest("body is not a JSON object")
    return doc


def parse_event(body: bytes) -> Incoming:
    """The fields the inbox stores, or BadRequest for anything that is not a Stripe event."""
    doc = json_object(body)
    event_id, event_type, created = doc.get("id"), doc.get("type"), doc.get("created")
    if not storable(event_id) or not event_id.startswith("evt_"):
        raise BadRequest("body is not a Stripe event: missing or malformed 'id'")
    if not storable(event_type) or not event_type:
        raise BadRequest("body is not a Stripe event: missing 'type'")
    created = unix_seconds(created, "a Stripe event")
    data = doc.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise BadRequest("body is not a Stripe event: missing 'data.object'")
    livemode = doc.get("livemode")
    if not isinstance(livemode, bool):
        raise BadRequest("body is not a Stripe event: missing 'livemode'")
    return Incoming(
        id=event_id,
        type=event_type,
        created=created,
        object_id=_bounded(obj.get("id"), "data.object.id", 255),
        payload=body,
        extra={
            "livemode": livemode,
            "api_version": _bounded(doc.get("api_version"), "api_version", 64),
            "account": _bounded(doc.get("account"), "account", 255),
        },
    )


def classify(incoming: Incoming, *, handled: Container[str]) -> None:
    """Types the bridge does not handle are stored as ignored at the door. Whether a handled
    event may be applied (connected? the right mode?) is decided by its job, in the applying
    transaction: the web's view of the connection may be a second old."""
    if incoming.type not in handled:
        incoming.status, incoming.reason = IGNORED, f"unhandled event type {incoming.type}"


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
    doc = json_object(body)
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
    workspace_id = doc.get("workspace_id", DEFAULT_WORKSPACE)
    if not isinstance(workspace_id, str) or not ID_PATTERN.fullmatch(workspace_id):
        raise BadRequest("workspace_id must be 1-64 letters, digits, '-' or '_'")
    incoming = Incoming(
        id=event_id,
        type=event_type,
        created=created,
        object_id=data["id"],
        payload=body,
        workspace_id=workspace_id,
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
