"""A workspace's webhook endpoint: its signing secrets (two while rolling), and the endpoint
the bridge registers in the workspace's Stripe account itself.

With `BRIDGE_PUBLIC_URL` set and no signing secret given, `connect` creates the endpoint
`<BRIDGE_PUBLIC_URL>/webhooks/stripe/<workspace>` for the event types the bridge handles, at the
API version it pins, and keeps the signing secret Stripe returns (only the create answer holds
it). An endpoint left at that address by an earlier attempt is deleted first: its secret is
unknown, and two endpoints would deliver everything twice. Disconnecting deletes it."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import orjson
import structlog
from stripe.params import WebhookEndpointCreateParams

from stripe_bridge.errors import BadRequest
from stripe_bridge.models import Connection, utcnow
from stripe_bridge.secrets_box import SecretBox
from stripe_bridge.stripe_api import API_VERSION, StripeGateway, StripeRejected

log = structlog.get_logger(__name__)

PERMISSION = "Webhook Endpoints: Write (rak_webhook_write)"


class MissingPermission(BadRequest):
    code = "missing_permission"


@dataclass(frozen=True)
class EndpointPlan:
    """Where the bridge is reachable, and what it asks Stripe to send there."""

    public_url: str
    events: tuple[str, ...]

    @classmethod
    def of(cls, public_url: str | None, events: Iterable[str]) -> EndpointPlan | None:
        return cls(public_url.rstrip("/"), tuple(sorted(events))) if public_url else None

    def url(self, workspace_id: str) -> str:
        return f"{self.public_url}/webhooks/stripe/{workspace_id}"


def register(gateway: StripeGateway, plan: EndpointPlan, workspace_id: str) -> tuple[str, str]:
    """Create the workspace's endpoint; answers (endpoint id, signing secret)."""
    url = plan.url(workspace_id)
    try:
        for endpoint in gateway.iterate("webhook_endpoints"):
            if endpoint.get("url") == url:
                remove(gateway, str(endpoint["id"]))
        params = _params(plan, url, workspace_id)
        created = gateway.call(
            "create webhook endpoint",
            lambda: gateway.v1.webhook_endpoints.create(
                params=params,
                # a fresh key per attempt: an earlier attempt's endpoint was just deleted
                options={"idempotency_key": f"stripe-bridge-endpoint-{uuid.uuid4()}"},
            ),
        )
    except StripeRejected as exc:
        if exc.status == 403:
            raise MissingPermission(
                f"the API key may not manage webhook endpoints: give it the {PERMISSION} "
                "permission, or give the endpoint's signing secret (webhook_secret) by hand"
            ) from None
        raise
    log.info("webhook endpoint registered", workspace_id=workspace_id, endpoint_id=created.id)
    return str(created.id), str(created.secret)


def _params(plan: EndpointPlan, url: str, workspace_id: str) -> WebhookEndpointCreateParams:
    """The create request. The event types and the version are plain strings here; the fake
    Stripe refuses any the SDK's typed params do not list, as Stripe does."""
    return {
        "url": url,
        "enabled_events": cast("Any", list(plan.events)),
        "api_version": cast("Any", API_VERSION),
        "description": f"stripe-bridge, workspace {workspace_id}",
        "metadata": {"stripe_bridge_workspace": workspace_id},
    }


def remove(gateway: StripeGateway, endpoint_id: str) -> None:
    """Delete an endpoint; one already gone is fine."""
    try:
        gateway.call(
            "delete webhook endpoint", lambda: gateway.v1.webhook_endpoints.delete(endpoint_id)
        )
    except StripeRejected as exc:
        if exc.status != 404:
            raise
    log.info("webhook endpoint deleted", endpoint_id=endpoint_id)


MAX_WEBHOOK_SECRETS = 2


def webhook_secrets(row: Connection | None, box: SecretBox) -> tuple[str, ...]:
    if row is None or row.webhook_secrets_encrypted is None:
        return ()
    return tuple(orjson.loads(box.open(row.webhook_secrets_encrypted)))


def set_webhook_secrets(row: Connection, box: SecretBox, secrets: list[str]) -> None:
    if not secrets or any(not secret.startswith("whsec_") for secret in secrets):
        raise BadRequest("a webhook signing secret starts with whsec_")
    unique = list(dict.fromkeys(secrets))[:MAX_WEBHOOK_SECRETS]
    row.webhook_secrets_encrypted = box.seal(orjson.dumps(unique).decode())
    row.updated_at = utcnow()


def roll_webhook_secrets(row: Connection, box: SecretBox, value: str) -> None:
    """`whsec_new` rolls: the new secret first, the previous newest kept as the second.
    `whsec_a,whsec_b` replaces the set. Never more than two."""
    given = [part.strip() for part in value.split(",") if part.strip()]
    previous = list(webhook_secrets(row, box))
    set_webhook_secrets(row, box, given if len(given) > 1 or not given else given + previous[:1])
