"""Webhook signatures (`t=…,v1=…`, HMAC-SHA256 over "{t}.{body}"): Stripe's and Veles'."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

from stripe import SignatureVerificationError, WebhookSignature

from stripe_bridge.errors import BadRequest


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
