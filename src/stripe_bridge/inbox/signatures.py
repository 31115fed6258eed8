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

    The header's shape and its timestamp are checked here, each with its own answer; the SDK
    then compares the signatures (`WebhookSignature.verify_header`, its own timestamp check
    off), so that its failure can only mean a signature that does not match."""
    if not secrets:
        raise BadRequest("no signing secret is configured; refusing unverifiable events")
    timestamp = _timestamp(header)
    try:
        payload = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("body is not UTF-8") from None
    if timestamp < time.time() - tolerance:
        raise BadRequest("timestamp outside the tolerance window")
    assert header is not None  # _timestamp refused a missing header
    for secret in secrets:
        try:
            WebhookSignature.verify_header(payload, header, secret, tolerance=None)
            return
        except SignatureVerificationError:
            continue
    raise BadRequest("signature does not match")


def _timestamp(header: str | None) -> int:
    """`t=<unix seconds>` of a header that also carries at least one `v1=` signature."""
    if not header:
        raise BadRequest("missing signature header")
    if not header.isascii():  # the SDK's compare_digest raises TypeError on such a value
        raise BadRequest("malformed signature header")
    timestamps, signatures = [], 0
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
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
