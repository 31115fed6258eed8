"""Normalisation and matching of Stripe records to Veles records (pure functions)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit


def normalise_domain(value: str | None) -> str | None:
    """`https://www.Acme.example/about` → `acme.example`; None for anything without a host."""
    if not value:
        return None
    text = value.strip().lower()
    if "@" in text:
        text = text.rsplit("@", 1)[1]
    if "//" not in text:
        text = "//" + text
    host = urlsplit(text).hostname or ""
    host = host.removeprefix("www.").strip(".")
    return host if "." in host else None


def derive_domain(email: str | None, metadata: Mapping[str, Any] | None) -> str | None:
    """A customer's company domain: an explicit `domain`/`website` in metadata, else the email's."""
    for key in ("domain", "website"):
        value = (metadata or {}).get(key)
        if isinstance(value, str) and (domain := normalise_domain(value)):
            return domain
    return normalise_domain(email) if email and "@" in email else None
