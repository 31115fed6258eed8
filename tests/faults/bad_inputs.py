"""What scenario 3 sends: deliveries that are wrong in every way a sender (or an attacker) can
make them wrong, as hand-written cases and as hypothesis strategies.

A `Delivery` is one request. `signed` says whether it carries a valid signature of its body
(only those may ever be stored); `kind` names the fault, for the figures and for messages.
Event ids are handed out when the delivery is sent (`fill`), so that hypothesis never sends the
same event twice unless the case is about the id itself."""

from __future__ import annotations

import copy
import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from hypothesis import strategies as st

from stripe_bridge.inbox.door import sign
from tests.support import FIXTURES, OTHER_SECRET, SECRET, VELES_SECRET

STRIPE, VELES = "/webhooks/stripe", "/veles/events"
MIB = 1024 * 1024
ID = "{id}"  # replaced by a fresh event id when the delivery is sent
_ids = itertools.count()
_NO_LINE_BREAKS = str.maketrans("", "", "\r\n\x00")

# Values no field of a Stripe or Veles object should ever hold. orjson reads 2**64 and beyond
# (and below -2**63) as floats, 2**63..2**64-1 as ints that overflow a BIGINT.
HUGE = (2**70, 2**63, 2**64 - 1, -(2**63) - 1, 10**30)
ABSURD: tuple[Any, ...] = (
    *HUGE,
    -1,
    -4900,
    0,
    1e308,
    -1e308,
    0.5,
    "4900",
    "not a number",
    "",
    None,
    True,
    [],
    {},
    [1, 2, 3],
    {"nested": {"deeper": None}},
    "x" * 100_000,
    "nul\u0000byte",
    "\ud7ff\ue000\U0010ffff",
)

HANDLED_FIXTURES = sorted(
    path for path in FIXTURES.glob("*/*.json") if not path.name.startswith("plan.")
) + sorted(FIXTURES.glob("*/plan.*.json"))

VELES_DATA: dict[str, dict[str, Any]] = {
    "customer.upserted": {"id": "vc_1", "name": "Acme", "email": "a@acme.example", "domain": None},
    "product.upserted": {"id": "vp_1", "name": "Pro Plan", "sku": "PRO", "unit_label": None},
    "order.committed": {
        "id": "vo_1",
        "customer_id": "vc_1",
        "currency": "usd",
        "lines": [{"product_id": "vp_1", "description": "Pro", "quantity": 3, "unit_amount": 4900}],
    },
    "contract.activated": {
        "id": "vk_1",
        "customer_id": "vc_1",
        "currency": "usd",
        "interval": "month",
        "start_date": "2026-12-01",
        "lines": [{"product_id": "vp_1", "quantity": 3, "unit_amount": 4900}],
    },
    "contract.amended": {
        "id": "vk_1",
        "customer_id": "vc_1",
        "currency": "usd",
        "interval": "year",
        "start_date": "2026-12-01",
        "lines": [{"product_id": "vp_1", "quantity": 5, "unit_amount": 4900}],
    },
    "contract.cancelled": {"id": "vk_1", "at_period_end": True},
}


@dataclass
class Delivery:
    kind: str
    path: str
    body: bytes | dict[str, Any] | list[Any] | Any  # a document is serialised when sent
    signed: bool = True
    secret: str | None = None  # None: the endpoint's own secret
    signature: str | None = None  # a literal header value instead of a computed one
    age: int = 0  # seconds the signature's timestamp lies in the past (negative: future)
    content_type: str | None = "application/json"
    chunked: bool = False  # stream the body without Content-Length
    headers: dict[str, str] = field(default_factory=dict)

    def fill(self) -> tuple[bytes, dict[str, str]]:
        """The bytes and headers to send, with fresh ids in place of `{id}`."""
        if isinstance(self.body, bytes):
            body = self.body
            if b'"{id}"' in body:
                body = body.replace(b'"{id}"', orjson.dumps(_fresh_ids(ID, self.path)), 1)
        else:
            # the standard library writes integers of any size (orjson stops at 64 bits)
            body = json.dumps(_fresh_ids(self.body, self.path), separators=(",", ":")).encode()
        headers = dict(self.headers)
        if self.content_type is not None:
            headers["Content-Type"] = self.content_type
        header = "Veles-Signature" if self.path == VELES else "Stripe-Signature"
        if self.signature is not None:  # raw bytes on the wire, as a careless sender sends them
            headers[header] = self.signature.translate(_NO_LINE_BREAKS).encode()  # type: ignore[assignment]
        elif self.signed or self.secret is not None or self.age:
            secret = self.secret or (VELES_SECRET if self.path == VELES else SECRET)
            headers[header] = sign(body, secret, int(time.time()) - self.age)
        return body, headers

    @property
    def verifiable(self) -> bool:
        """Whether the endpoint can verify it: a signature by its own secret, not older than the
        tolerance (a timestamp in the future is accepted, as Stripe's own check does)."""
        return self.signed and self.signature is None and self.secret is None and self.age <= 300


def _fresh_ids(doc: Any, path: str) -> Any:
    if doc == ID:
        return f"evt_bad_{next(_ids)}" if path == STRIPE else f"vev_bad_{next(_ids)}"
    if isinstance(doc, dict):
        return {key: _fresh_ids(value, path) for key, value in doc.items()}
    if isinstance(doc, list):
        return [_fresh_ids(value, path) for value in doc]
    return doc


def stripe_fixture(path_index: int) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(HANDLED_FIXTURES[path_index].read_bytes())
    doc["id"] = ID
    return doc


def veles_event(event_type: str) -> dict[str, Any]:
    return {
        "id": ID,
        "type": event_type,
        "created": 1_790_000_000,
        "data": copy.deepcopy(VELES_DATA[event_type]),
    }


def good(path: str) -> dict[str, Any]:
    return stripe_fixture(0) if path == STRIPE else veles_event("customer.upserted")


def leaf_paths(doc: Any, prefix: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """Every key path in `doc` (objects and list items), the containers' own included."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield (*prefix, key)
            yield from leaf_paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield (*prefix, index)
            yield from leaf_paths(value, (*prefix, index))


def replaced(doc: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    target: Any = out
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return out


def nested(event: dict[str, Any], depth: int) -> bytes:
    """`event` with a list nested `depth` deep in its object (orjson refuses over 1024)."""
    marker = b'"__nested__"'
    body = orjson.dumps(replaced(event, (*_object_root(event), "nested"), "__nested__"))
    return body.replace(marker, b"[" * depth + b"]" * depth)


def _object_root(event: dict[str, Any]) -> tuple[str, ...]:
    return ("data", "object") if isinstance(event["data"].get("object"), dict) else ("data",)


def hand_written() -> list[Delivery]:
    """The cases named in the issue, each sent once to both endpoints."""
    cases: list[Delivery] = []
    for path in (STRIPE, VELES):
        event = good(path)
        other = OTHER_SECRET if path == STRIPE else SECRET
        cases += [
            Delivery("missing signature", path, event, signed=False),
            Delivery("empty signature", path, event, signature=""),
            Delivery("garbled signature", path, event, signature="t=abc,v1=zz"),
            Delivery("signature without v1", path, event, signature=f"t={int(time.time())}"),
            Delivery(
                "non-ASCII signature",
                path,
                event,
                signature=f"t={int(time.time())},v1=f00990777\u00e0\u00a7\u00a7",
            ),
            Delivery("expired signature", path, event, age=301),
            Delivery("signature from the future", path, event, age=-3600),
            Delivery("wrong secret", path, event, secret=other + "-wrong"),
            Delivery("not JSON", path, b"{not json"),
            Delivery("empty body", path, b""),
            Delivery("not an object", path, [event]),
            Delivery("a bare string", path, "evt_1"),
            Delivery("invalid UTF-8", path, b'{"id": "\xff\xfe", "type": "customer.created"}'),
            Delivery("lone surrogate", path, b'{"id": "\\ud800", "type": "x", "data": {}}'),
            Delivery("id of 100,000 characters", path, {**event, "id": "evt_" + "a" * 99_996}),
            Delivery("deep nesting", path, nested(event, 5000)),
            Delivery("nesting just under orjson's limit", path, nested(event, 1010)),
            Delivery("huge number", path, b'{"id":"evt_x","created":1' + b"0" * 5000 + b"}"),
            Delivery("over 1 MiB", path, b"{" + b" " * MIB + b"}"),
            Delivery("over 1 MiB, chunked", path, b"{" + b" " * MIB + b"}", chunked=True),
            Delivery("over 1 MiB, unsigned", path, b"x" * (MIB + 1), signed=False),
            Delivery("text/plain", path, event, content_type="text/plain"),
            Delivery("form encoded", path, event, content_type="application/x-www-form-urlencoded"),
            Delivery("no content type", path, event, content_type=None),
            Delivery("bad Content-Length", path, event, headers={"Content-Length": "12x"}),
        ]
        for key in ("id", "type", "data", "created"):
            cases.append(
                Delivery(f"missing {key}", path, {k: v for k, v in event.items() if k != key})
            )
        for value in HUGE:
            cases.append(Delivery(f"event created {value}", path, {**event, "created": value}))
        cases.append(Delivery("unknown type", path, {**event, "type": "quote.exploded"}))
    for index, fixture in enumerate(HANDLED_FIXTURES):
        doc = stripe_fixture(index)
        for key in ("created", "id"):
            for value in (2**70, 2**63, None, "x" * 100_000):
                cases.append(
                    Delivery(
                        f"{fixture.stem}: object {key} {str(value)[:12]}",
                        STRIPE,
                        replaced(doc, ("data", "object", key), value),
                    )
                )
        cases.append(
            Delivery(
                f"{fixture.stem}: null object", STRIPE, replaced(doc, ("data", "object"), None)
            )
        )
        cases.append(
            Delivery(
                f"{fixture.stem}: account too long",
                STRIPE,
                {**doc, "account": "acct_" + "z" * 1000},
            )
        )
    for event_type in VELES_DATA:
        doc = veles_event(event_type)
        for key in ("id", "customer_id", "lines", "quantity"):
            for value in (None, 2**70, "x" * 100_000, "nul\u0000"):
                where = ("data", "lines", 0, key) if key == "quantity" else ("data", key)
                if key in ("lines", "quantity", "customer_id") and "lines" not in doc["data"]:
                    continue
                cases.append(
                    Delivery(
                        f"veles {event_type}: {key} {str(value)[:12]}",
                        VELES,
                        replaced(doc, where, value),
                    )
                )
    return cases


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
absurd = st.sampled_from(ABSURD) | json_values
paths = st.sampled_from((STRIPE, VELES))


@st.composite
def bad_signatures(draw: st.DrawFn) -> Delivery:
    path = draw(paths)
    event = good(path)
    fault = draw(st.sampled_from(("garbled", "expired", "future", "wrong secret", "missing")))
    if fault == "garbled":
        header = draw(st.text(max_size=200) | st.from_regex(r"t=\d{1,12},v1=[0-9a-f]{0,70}"))
        return Delivery("garbled signature", path, event, signature=header)
    if fault == "expired":
        return Delivery(fault, path, event, age=draw(st.integers(301, 10**9)))
    if fault == "future":
        return Delivery(fault, path, event, age=-draw(st.integers(301, 10**9)))
    if fault == "wrong secret":
        return Delivery(fault, path, event, secret=draw(st.text(min_size=1, max_size=40)))
    return Delivery(fault, path, event, signed=False)


@st.composite
def signed_garbage(draw: st.DrawFn) -> Delivery:
    """Signed bodies that are not events: bytes, JSON of any shape, objects missing fields."""
    path = draw(paths)
    choice = draw(st.integers(0, 2))
    if choice == 0:
        return Delivery("signed bytes", path, draw(st.binary(max_size=300)))
    if choice == 1:
        return Delivery("signed JSON value", path, draw(json_values))
    event = good(path)
    keep = draw(st.sets(st.sampled_from(sorted(event))))
    doc = {key: value for key, value in event.items() if key in keep}
    for key in draw(st.sets(st.sampled_from(("id", "type", "created", "data", "livemode")))):
        doc[key] = draw(absurd)
    return Delivery("signed partial event", path, doc)


@st.composite
def absurd_objects(draw: st.DrawFn) -> Delivery:
    """A signed event of a handled type with one to three fields given absurd values."""
    if draw(st.booleans()):
        doc = stripe_fixture(draw(st.integers(0, len(HANDLED_FIXTURES) - 1)))
        path, root = STRIPE, ("data", "object")
    else:
        doc = veles_event(draw(st.sampled_from(sorted(VELES_DATA))))
        path, root = VELES, ("data",)
    for _ in range(draw(st.integers(1, 3))):
        inside = [p for p in leaf_paths(doc) if p[: len(root)] == root and len(p) > len(root)]
        target = draw(st.sampled_from([*inside, root, ("created",)]))
        doc = replaced(doc, target, draw(absurd))
    return Delivery("absurd field values", path, doc)


@st.composite
def unknown_types(draw: st.DrawFn) -> Delivery:
    path = draw(paths)
    event = {**good(path), "type": draw(st.text(min_size=1, max_size=300))}
    return Delivery("unknown type", path, event)


deliveries = st.one_of(
    bad_signatures(), signed_garbage(), absurd_objects(), absurd_objects(), unknown_types()
)
