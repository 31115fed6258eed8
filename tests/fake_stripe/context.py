"""Where handlers keep objects: the store of every account, and the context of one request.

A handler is a plain function ``handler(ctx) -> dict``. Through ``ctx`` it reads its parameters
(``ctx.params``, ``ctx.args`` from the path), finds and stores objects of its account, emits
events and answers (with ``expand[]`` applied, or as one page of a list). Every change it makes
through ``ctx`` can be undone: a request that fails changes nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.fake_stripe.params import ApiError, Params, created_filter, invalid, missing
from tests.fake_stripe.records import (
    API_VERSION,
    Account,
    Obj,
    event_name,
    kind_of_id,
    new_id,
    previous_attributes,
    visible,
)
from tests.fake_stripe.webhooks import Pending, subscribers

LIST_PARAMS = ("limit", "starting_after", "ending_before", "expand", "created")


class Store:
    """Objects of every account (``accounts``, shared with the keyring), their insertion order,
    the undo log of the running request, and the webhook deliveries its events queued.

    Not thread-safe by itself: the fake runs one request (or one seed) at a time under its lock.
    """

    def __init__(self, clock: Callable[[], float], accounts: dict[str, Account]) -> None:
        self.clock = clock
        self.accounts = accounts
        self.seq = 0
        self.order: dict[str, int] = {}
        self.undo: list[Callable[[], None]] = []
        self.outbox: list[Pending] = []

    def now(self) -> int:
        return int(self.clock())

    def rollback(self) -> None:
        """Undo what a failing request changed: Stripe's errors change nothing."""
        for undo in reversed(self.undo):
            undo()
        self.undo = []

    def put(self, acct: Account, kind: str, obj: Obj) -> Obj:
        self.seq += 1
        self.order[obj["id"]] = self.seq
        acct.objects[kind][obj["id"]] = obj
        self.undo.append(
            lambda: (acct.objects[kind].pop(obj["id"], None), self.order.pop(obj["id"], None))
        )
        return obj

    def find(
        self, acct: Account, kind: str, object_id: str | None, param: str = "id", status: int = 404
    ) -> Obj:
        """A stored object, to read or change (its state is kept for a rollback)."""
        obj = acct.objects[kind].get(object_id or "")
        if obj is None or object_id in acct.deleted:
            raise missing(kind, object_id or "", param, status)
        snapshot = copy.deepcopy(obj)
        self.undo.append(lambda: (obj.clear(), obj.update(snapshot)))
        return obj

    def public(self, acct: Account, kind: str, object_id: str) -> Obj:
        if object_id in acct.deleted:
            return {"id": object_id, "object": kind, "deleted": True}
        return visible(acct.objects[kind][object_id])

    def all(self, acct: Account, kind: str) -> list[Obj]:
        return [o for i, o in acct.objects[kind].items() if i not in acct.deleted]

    def emit(
        self, acct: Account, ctx: Ctx | None, event_type: str, obj: Obj, previous: Obj | None = None
    ) -> None:
        """Store an event and queue it for the endpoints subscribed to it (see ``webhooks``);
        an account connected to a platform names itself in ``account``."""
        data: Obj = {"object": visible(obj)}
        if previous:
            data["previous_attributes"] = copy.deepcopy(previous)
        targets = subscribers(self.accounts, acct, event_type)
        event = {
            "id": new_id("evt"),
            "object": "event",
            **({"account": acct.id} if acct.platforms else {}),
            "api_version": API_VERSION,
            "created": self.now(),
            "data": data,
            "livemode": acct.livemode,
            "pending_webhooks": len(targets),
            "type": event_type,
            "request": {
                "id": ctx.request_id if ctx else None,
                "idempotency_key": ctx.idempotency_key if ctx else None,
            },
        }
        self.put(acct, "event", event)
        queued = [Pending(event["id"], acct.id, owner.id, e["id"]) for owner, e in targets]
        self.outbox.extend(queued)

        def unqueue() -> None:
            self.outbox = [p for p in self.outbox if p not in queued]

        self.undo.append(unqueue)

    def expanded(self, acct: Account, obj: Obj, paths: list[str]) -> Obj:
        """A copy of ``obj`` with ``expand[]`` paths (``customer``, ``items.data.price.product``)
        replaced by the objects they name; unknown paths are left alone."""
        out = visible(obj)
        for path in paths:
            self._expand(acct, out, path.split("."), 0)
        return out

    def _expand(self, acct: Account, node: Any, parts: list[str], depth: int) -> None:
        if not parts or depth > 4:
            return
        if isinstance(node, list):
            for item in node:
                self._expand(acct, item, parts, depth)
            return
        if not isinstance(node, dict) or parts[0] not in node:
            return
        value = node[parts[0]]
        kind = kind_of_id(value) if isinstance(value, str) else None
        if kind and value in acct.objects[kind]:
            node[parts[0]] = value = self.public(acct, kind, value)
        self._expand(acct, value, parts[1:], depth + 1)

    def cursor_created(self, acct: Account, cursor: str, items: list[Obj]) -> int | None:
        if cursor not in self.order:
            return None
        kind = kind_of_id(cursor)
        obj = acct.objects[kind].get(cursor) if kind else None
        obj = obj or next((o for o in items if o["id"] == cursor), None)
        return None if obj is None else int(obj.get("created", 0))


@dataclass
class Ctx:
    """One request as its handler sees it."""

    store: Store
    account: Account
    params: Params
    args: dict[str, str]
    request_id: str
    idempotency_key: str | None
    application: str | None = None  # the platform's client id, when it acts for this account

    def now(self) -> int:
        return self.store.now()

    def put(self, kind: str, obj: Obj) -> Obj:
        return self.store.put(self.account, kind, obj)

    def find(self, kind: str, object_id: str | None, param: str = "id", status: int = 404) -> Obj:
        return self.store.find(self.account, kind, object_id, param, status)

    def ref(self, kind: str, params: Params, key: str) -> Obj | None:
        """An object named by a body parameter: 400 resource_missing when unknown."""
        object_id = params.text(key)
        return None if object_id is None else self.need(kind, params, key)

    def need(self, kind: str, params: Params, key: str) -> Obj:
        return self.find(kind, params.required(key), params.name(key), 400)

    def public(self, kind: str, object_id: str) -> Obj:
        return self.store.public(self.account, kind, object_id)

    def all(self, kind: str) -> list[Obj]:
        return self.store.all(self.account, kind)

    def emit(self, event_type: str, obj: Obj, previous: Obj | None = None) -> None:
        self.store.emit(self.account, self, event_type, obj, previous)

    def updated(self, kind: str, obj: Obj, before: Obj) -> Obj:
        """Emit ``<kind>.updated`` when something changed, and answer ``obj``."""
        changed = previous_attributes(before, obj)
        if changed:
            self.emit(event_name(kind, "updated"), obj, changed)
        return self.answer(obj)

    def answer(self, obj: Obj) -> Obj:
        return self.store.expanded(self.account, obj, self.params.strings("expand"))

    def page(
        self, items: list[Obj], url: str, allowed: tuple[str, ...], newest_first: bool = True
    ) -> Obj:
        """One page of ``items`` (already filtered) in list order; cursors by sort position."""
        params, store = self.params, self.store
        params.only(*LIST_PARAMS, *allowed)
        limit = params.integer("limit", minimum=1, maximum=100) or 10
        after, before = params.text("starting_after"), params.text("ending_before")
        if after and before:
            raise invalid(
                "You may only specify one of these parameters: ending_before, starting_after.",
                "ending_before",
                "parameters_exclusive",
            )
        when = created_filter(params)
        sign = -1 if newest_first else 1

        def key(object_id: str, created: int) -> tuple[int, int]:
            return (sign * created if newest_first else 0, sign * store.order[object_id])

        ordered = sorted(
            (o for o in items if when(o.get("created", 0))),
            key=lambda o: key(o["id"], o.get("created", 0)),
        )
        cursor = after or before
        if cursor:
            known = store.cursor_created(self.account, cursor, items)
            if known is None:
                raise ApiError(
                    400,
                    f"No such {kind_of_id(cursor) or 'object'}: '{cursor}'",
                    code="resource_missing",
                    param="starting_after" if after else "ending_before",
                )
            mark = key(cursor, known)
            if after:
                ordered = [o for o in ordered if key(o["id"], o.get("created", 0)) > mark]
            else:
                ordered = [o for o in ordered if key(o["id"], o.get("created", 0)) < mark]
        page = ordered[-limit:] if before else ordered[:limit]
        expand = [e[5:] for e in params.strings("expand") if e.startswith("data.")]
        data = [store.expanded(self.account, obj, expand) for obj in page]
        return {"object": "list", "data": data, "has_more": len(ordered) > limit, "url": url}
