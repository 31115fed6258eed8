"""Encryption at rest of Stripe keys and signing secrets (Fernet, keyed by BRIDGE_SECRET_KEY).

BRIDGE_SECRET_KEY may hold several comma-separated keys while rotating it: the first encrypts,
any decrypts. Each is stretched to a Fernet key with SHA-256, so any long random string works."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Sequence
from functools import cached_property

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from stripe_bridge.errors import ConfigError
from stripe_bridge.settings import Settings, embedded_secret_key


class SecretBox:
    """Seals and opens secrets. The keys are read on first use, so that a bridge that never
    stores a secret (inbound only, its signing secret in the environment) needs none."""

    def __init__(self, keys: Sequence[str] | Callable[[], Sequence[str]]) -> None:
        self._keys = keys

    @cached_property
    def _fernet(self) -> MultiFernet:
        keys = self._keys() if callable(self._keys) else self._keys
        if not keys:
            raise ConfigError("no encryption key: set BRIDGE_SECRET_KEY")
        return MultiFernet([Fernet(_fernet_key(key)) for key in keys])

    def check(self) -> None:
        """Read the keys now: ConfigError if there are none (before anything else is done)."""
        self._fernet  # noqa: B018

    def seal(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def open(self, token: bytes) -> str:
        try:
            return self._fernet.decrypt(token).decode()
        except InvalidToken:
            raise ConfigError(
                "stored Stripe secrets cannot be decrypted with BRIDGE_SECRET_KEY "
                "(was the key changed without keeping the old one?)"
            ) from None


def _fernet_key(secret: str) -> bytes:
    return base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest())


def box_from_settings(settings: Settings) -> SecretBox:
    """BRIDGE_SECRET_KEY; for the embedded default only, a key generated once under ./var/."""
    return SecretBox(lambda: _keys(settings))


def _keys(settings: Settings) -> list[str]:
    if settings.secret_key:
        return [key.strip() for key in settings.secret_key.split(",") if key.strip()]
    if settings.is_sqlite:
        return [embedded_secret_key(settings.var_dir)]
    raise ConfigError(
        "BRIDGE_SECRET_KEY is required to store Stripe keys outside the embedded default"
    )
