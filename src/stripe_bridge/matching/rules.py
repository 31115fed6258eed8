"""Normalisation and the matching rules (pure functions, no database).

Customers: exact email (case-insensitive) → company domain (never a free-mail domain) →
normalised name (case, accents, punctuation, whitespace, legal suffixes). The first rule that
finds any candidate decides: exactly one links automatically, several leave the customer
Not Matched with those candidates kept for review.

Products: the normalised name equals exactly one Veles product's.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

FREE_MAIL_DOMAINS = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "outlook.com",
        "hotmail.com",
        "live.com",
        "msn.com",
        "yahoo.com",
        "ymail.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "aol.com",
        "proton.me",
        "protonmail.com",
        "pm.me",
        "gmx.com",
        "gmx.de",
        "gmx.net",
        "web.de",
        "mail.com",
        "yandex.ru",
        "yandex.com",
        "zoho.com",
        "fastmail.com",
        "hey.com",
        "qq.com",
        "163.com",
    }
)

LEGAL_SUFFIXES = frozenset(
    {
        "inc",
        "incorporated",
        "llc",
        "ltd",
        "limited",
        "gmbh",
        "sa",
        "sas",
        "sarl",
        "bv",
        "nv",
        "ag",
        "corp",
        "corporation",
        "co",
        "company",
        "plc",
        "llp",
        "oy",
        "ab",
        "srl",
        "spa",
        "pty",
    }
)

_PUNCTUATION = re.compile(r"[^\w\s]|_")


def _fold(text: str) -> str:
    """Lower case, accents removed, dots dropped (S.A. → sa), other punctuation → space."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(char for char in decomposed if not unicodedata.combining(char))
    plain = plain.casefold().replace(".", "")
    return " ".join(_PUNCTUATION.sub(" ", plain).split())


def normalise_company_name(name: str | None) -> str | None:
    """`Ácme, Inc.` → `acme`; legal suffixes at the end are dropped (never the whole name)."""
    if not name:
        return None
    tokens = _fold(name).split()
    while len(tokens) > 1 and tokens[-1] in LEGAL_SUFFIXES:
        tokens.pop()
    return " ".join(tokens) or None


def normalise_product_name(name: str | None) -> str | None:
    """Case, accents, punctuation and whitespace folded; nothing else dropped."""
    if not name:
        return None
    return _fold(name) or None


def normalise_email(email: str | None) -> str | None:
    if not email or "@" not in email:
        return None
    return email.strip().casefold()


def normalise_domain(value: str | None) -> str | None:
    """`https://www.Acme.example/about` → `acme.example`; None for anything without a host."""
    if not value:
        return None
    text = value.strip().lower()
    if "@" in text:
        text = text.rsplit("@", 1)[1]
    if "//" not in text:
        text = "//" + text
    try:
        host = urlsplit(text).hostname or ""
    except ValueError:
        return None
    host = host.removeprefix("www.").strip(".")
    return host if "." in host else None


def derive_domain(email: str | None, metadata: Mapping[str, Any] | None) -> str | None:
    """A customer's domain: an explicit `domain`/`website` in metadata, else the email's."""
    for key in ("domain", "website"):
        value = (metadata or {}).get(key)
        if isinstance(value, str) and (domain := normalise_domain(value)):
            return domain
    return normalise_domain(email) if email and "@" in email else None


def company_domain(domain: str | None) -> str | None:
    """The domain if it can identify a company (free-mail domains cannot)."""
    return domain if domain and domain not in FREE_MAIL_DOMAINS else None


@dataclass(frozen=True)
class Keys:
    """What a customer is matched on, normalised."""

    email: str | None
    domain: str | None
    name: str | None

    @classmethod
    def of(cls, name: str | None, email: str | None, domain: str | None) -> Keys:
        """The domain is the explicit one, else the email's; free-mail domains are dropped."""
        return cls(
            email=normalise_email(email),
            domain=company_domain(normalise_domain(domain or email)),
            name=normalise_company_name(name),
        )


@dataclass(frozen=True)
class Decision:
    """The outcome of matching: a link (`linked`), or none with the candidates found."""

    linked: str | None
    method: str | None
    candidates: tuple[str, ...]


NO_MATCH = Decision(None, None, ())


def decide_customer(stripe: Keys, veles: Iterable[tuple[str, Keys]]) -> Decision:
    """Apply the cascade to one Stripe customer against Veles customers `(id, keys)`."""
    pool = list(veles)
    for method in ("email", "domain", "name"):
        wanted = getattr(stripe, method)
        if wanted is None:
            continue
        found = sorted({veles_id for veles_id, keys in pool if getattr(keys, method) == wanted})
        if len(found) == 1:
            return Decision(found[0], method, tuple(found))
        if found:
            return Decision(None, None, tuple(found))
    return NO_MATCH


def decide_product(name_key: str | None, veles: Sequence[tuple[str, str | None]]) -> Decision:
    """`name_match` when exactly one Veles product `(id, name_key)` has the same name."""
    if name_key is None:
        return NO_MATCH
    found = sorted({veles_id for veles_id, key in veles if key == name_key})
    if len(found) == 1:
        return Decision(found[0], "name", tuple(found))
    return Decision(None, None, tuple(found))
