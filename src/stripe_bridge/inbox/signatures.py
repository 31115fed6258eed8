"""Webhook signatures (`t=…,v1=…`, HMAC-SHA256 over "{t}.{body}"): Stripe's and Veles'."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from stripe import SignatureVerificationError, WebhookSignature

from stripe_bridge.errors import BadRequest


def verify(body: bytes, header: str | None, secrets: Sequence[str], tolerance: int) -> None:
    """Accept the body if any configured secret (two while rolling) signed it recently.

    Uses the SDK's header check only (no SDK objects are built)."""
    if not secrets:
        raise BadRequest("no signing secret is configured; refusing unverifiable events")
    if not header:
        raise BadRequest("missing signature header")
    if not header.isascii():  # the SDK's compare_digest raises TypeError on such a value
        raise BadRequest("malformed signature header")
    try:
        payload = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("body is not UTF-8") from None
    reason = "signature does not match"
    for secret in secrets:
        try:
            WebhookSignature.verify_header(payload, header, secret, tolerance)
            return
        except SignatureVerificationError as exc:
            message = str(exc)
            if "tolerance" in message:
                reason = "timestamp outside the tolerance window"
            elif "Unable to extract" in message or "No signatures found with" in message:
                reason = "malformed signature header"
    raise BadRequest(reason)


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """A header value as the sender computes it (tests, benchmarks, the Veles client)."""
    signed = f"{timestamp}.".encode() + body
    signature = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={signature}"
