"""A verified event as handlers see it, decoded once (Stripe's, or Veles' own)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stripe_bridge.errors import PermanentError


@dataclass(frozen=True, slots=True)
class Event:
    """A verified Stripe event, decoded once; handlers never see SDK objects."""

    id: str
    type: str
    created: int
    livemode: bool
    api_version: str | None
    object: Mapping[str, Any]
    previous_attributes: Mapping[str, Any] | None
    # A Connect event's connected account (`account`); None for the account's own events.
    account: str | None = None

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Event:
        try:
            data = payload["data"]
            obj = data["object"]
            if not isinstance(obj, Mapping) or not isinstance(obj.get("id"), str):
                raise PermanentError("data.object has no id")
            prev = data.get("previous_attributes")
            return cls(
                id=str(payload["id"]),
                type=str(payload["type"]),
                created=int(payload["created"]),
                livemode=bool(payload.get("livemode", False)),
                api_version=payload.get("api_version"),
                object=obj,
                previous_attributes=prev if isinstance(prev, Mapping) else None,
                account=account if isinstance(account := payload.get("account"), str) else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PermanentError(f"malformed event payload: {exc!r}") from exc
