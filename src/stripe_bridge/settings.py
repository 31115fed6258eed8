"""Settings, read once from the environment at an entry point and passed down frozen."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from stripe_bridge.errors import ConfigError

MODES = ("test", "live")


def mode_of_key(api_key: str) -> str:
    """`sk_test_…`/`rk_test_…` → test, `sk_live_…`/`rk_live_…` → live."""
    for prefix in ("sk_", "rk_"):
        for mode in MODES:
            if api_key.startswith(f"{prefix}{mode}_"):
                return mode
    raise ConfigError("an API key must start with sk_test_, sk_live_, rk_test_ or rk_live_")


def _split_secrets(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def _non_negative(env: Mapping[str, str], name: str, default: int) -> int:
    value = _int(env, name, default)
    if value < 0:
        raise ConfigError(f"{name} must not be negative, got {value}")
    return value


def _choice(env: Mapping[str, str], name: str, options: tuple[str, ...]) -> str:
    value = env.get(name) or options[0]
    if value not in options:
        raise ConfigError(f"{name} must be one of {', '.join(options)}, got {value!r}")
    return value


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str | None
    admin_token: str | None
    secret_key: str | None
    veles_secret: str | None
    stripe_api_key: str | None = field(repr=False)
    stripe_webhook_secrets: tuple[str, ...] = field(repr=False)
    stripe_api_base: str | None
    stripe_mode: str
    var_dir: Path
    webhook_tolerance: int = 300
    max_body_bytes: int = 1024 * 1024
    sync_interval: int = 900
    retention_days: int = 30
    relay_retry_base: float = 2.0
    relay_threads: int = 4
    invoice_collection_method: str = "send_invoice"
    invoice_days_until_due: int = 30
    proration_behavior: str = "create_prorations"
    stripe_retry_base: float = 0.5
    stripe_max_attempts: int = 5
    sweep_interval: int = 30
    sweep_grace: int = 60
    worker_threads: int = 8
    enqueue_linger_ms: int = 50
    redis_namespace: str = "stripe-bridge"
    log_format: str = "auto"
    relay_lease: int = 300
    stripe_timeout: float = 30.0
    event_max_attempts: int = 8

    @property
    def inbound_mode(self) -> str:
        """The mode inbound events must match: the key decides once there is one."""
        if self.stripe_api_key:
            return mode_of_key(self.stripe_api_key)
        return self.stripe_mode

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        var_dir = Path(env.get("BRIDGE_VAR_DIR", "var")).resolve()
        database_url = env.get("BRIDGE_DATABASE_URL") or f"sqlite:///{var_dir / 'stripe-bridge.db'}"
        mode = env.get("STRIPE_MODE", "test").strip().lower() or "test"
        if mode not in MODES:
            raise ConfigError(f"STRIPE_MODE must be 'test' or 'live', got {mode!r}")
        api_key = env.get("STRIPE_API_KEY") or None
        if api_key:
            mode_of_key(api_key)  # refuse a malformed key at start, not at first use
        return cls(
            database_url=database_url,
            redis_url=env.get("BRIDGE_REDIS_URL") or None,
            admin_token=env.get("BRIDGE_ADMIN_TOKEN") or None,
            secret_key=env.get("BRIDGE_SECRET_KEY") or None,
            veles_secret=env.get("BRIDGE_VELES_SECRET") or None,
            stripe_api_key=api_key,
            stripe_webhook_secrets=_split_secrets(env.get("STRIPE_WEBHOOK_SECRET")),
            stripe_api_base=env.get("STRIPE_API_BASE") or None,
            stripe_mode=mode,
            var_dir=var_dir,
            webhook_tolerance=_int(env, "BRIDGE_WEBHOOK_TOLERANCE", 300),
            max_body_bytes=_int(env, "BRIDGE_MAX_BODY_BYTES", 1024 * 1024),
            sync_interval=_int(env, "BRIDGE_SYNC_INTERVAL", 900),
            retention_days=_int(env, "BRIDGE_RETENTION_DAYS", 30),
            stripe_retry_base=float(env.get("BRIDGE_STRIPE_RETRY_BASE") or 0.5),
            relay_retry_base=float(env.get("BRIDGE_RELAY_RETRY_BASE") or 2.0),
            relay_threads=_int(env, "BRIDGE_RELAY_THREADS", 4),
            invoice_collection_method=_choice(
                env, "BRIDGE_INVOICE_COLLECTION_METHOD", ("send_invoice", "charge_automatically")
            ),
            invoice_days_until_due=_int(env, "BRIDGE_INVOICE_DAYS_UNTIL_DUE", 30),
            proration_behavior=_choice(
                env, "BRIDGE_PRORATION_BEHAVIOR", ("create_prorations", "always_invoice", "none")
            ),
            stripe_max_attempts=_int(env, "BRIDGE_STRIPE_MAX_ATTEMPTS", 5),
            sweep_interval=_int(env, "BRIDGE_SWEEP_INTERVAL", 30),
            sweep_grace=_int(env, "BRIDGE_SWEEP_GRACE", 60),
            worker_threads=_int(env, "BRIDGE_WORKER_THREADS", 8),
            enqueue_linger_ms=_non_negative(env, "BRIDGE_ENQUEUE_LINGER_MS", 50),
            redis_namespace=env.get("BRIDGE_REDIS_NAMESPACE", "stripe-bridge"),
            log_format=env.get("BRIDGE_LOG_FORMAT", "auto"),
            relay_lease=_int(env, "BRIDGE_RELAY_LEASE", 300),
            stripe_timeout=float(env.get("BRIDGE_STRIPE_TIMEOUT") or 30),
            event_max_attempts=_int(env, "BRIDGE_EVENT_MAX_ATTEMPTS", 8),
        )


def embedded_secret_key(var_dir: Path) -> str:
    """The embedded default's encryption key: generated once into ./var/, then reused."""
    path = var_dir / "secret.key"
    if path.exists():
        return path.read_text().strip()
    var_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    path.write_text(key)
    path.chmod(0o600)
    return key
