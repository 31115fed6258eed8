"""Settings, read once from the environment at an entry point and passed down frozen.

Every variable is declared here, once, with its type, its bounds and its default (validated
by pydantic): a bad value is refused at start with one line naming the variable, and the
README's table lists the same names (a test compares them)."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from stripe_bridge.errors import ConfigError

MODES = ("test", "live")
# Values never echoed in an error (a wrong secret is still a secret).
SECRET_VARIABLES = frozenset(
    {
        "BRIDGE_ADMIN_TOKEN",
        "BRIDGE_SECRET_KEY",
        "BRIDGE_VELES_SECRET",
        "STRIPE_API_KEY",
        "STRIPE_WEBHOOK_SECRET",
    }
)


def mode_of_key(api_key: str) -> str:
    """`sk_test_…`/`rk_test_…` → test, `sk_live_…`/`rk_live_…` → live."""
    for prefix in ("sk_", "rk_"):
        for mode in MODES:
            if api_key.startswith(f"{prefix}{mode}_"):
                return mode
    raise ConfigError("an API key must start with sk_test_, sk_live_, rk_test_ or rk_live_")


def _split_secrets(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _api_key(value: Any) -> Any:
    if isinstance(value, str):
        try:
            mode_of_key(value)  # refuse a malformed key at start, not at first use
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
    return value


def _url(*schemes: str) -> BeforeValidator:
    prefixes = tuple(f"{scheme}://" for scheme in schemes)

    def check(value: Any) -> Any:
        if isinstance(value, str) and not value.startswith(prefixes):
            raise ValueError(f"must be a URL starting with {' or '.join(prefixes)}")
        return value

    return BeforeValidator(check)


def _database_url(value: Any) -> Any:
    if isinstance(value, str):
        try:
            make_url(value)
        except ArgumentError:
            raise ValueError("is not a SQLAlchemy database URL") from None
    return value


def _log_level(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip().upper()
        if not isinstance(logging.getLevelName(value), int):
            raise ValueError("must be one of debug, info, warning, error, critical")
    return value


def _var(name: str, default: Any = None, **bounds: Any) -> Any:
    return Field(default=default, validation_alias=name, **bounds)


Seconds = Annotated[int, Field(ge=1)]


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", hide_input_in_errors=True)

    var_dir: Path = _var("BRIDGE_VAR_DIR", Path("var"))
    database_url: Annotated[str, BeforeValidator(_database_url)] = _var("BRIDGE_DATABASE_URL", "")
    redis_url: Annotated[str | None, _url("redis", "rediss", "unix")] = _var("BRIDGE_REDIS_URL")
    redis_namespace: str = _var("BRIDGE_REDIS_NAMESPACE", "stripe-bridge", min_length=1)
    admin_token: str | None = Field(None, validation_alias="BRIDGE_ADMIN_TOKEN", repr=False)
    secret_key: str | None = Field(None, validation_alias="BRIDGE_SECRET_KEY", repr=False)
    veles_secret: str | None = Field(None, validation_alias="BRIDGE_VELES_SECRET", repr=False)
    stripe_api_key: Annotated[str | None, BeforeValidator(_api_key)] = Field(
        None, validation_alias="STRIPE_API_KEY", repr=False
    )
    stripe_webhook_secrets: Annotated[tuple[str, ...], BeforeValidator(_split_secrets)] = Field(
        (), validation_alias="STRIPE_WEBHOOK_SECRET", repr=False
    )
    stripe_api_base: Annotated[str | None, _url("http", "https")] = _var("STRIPE_API_BASE")
    # platform mode (a Stripe App or Connect platform): its key, and its Connect endpoint's
    # signing secret(s)
    stripe_platform_key: Annotated[str | None, BeforeValidator(_api_key)] = Field(
        None, validation_alias="STRIPE_PLATFORM_KEY", repr=False
    )
    stripe_app_client_id: str | None = _var("STRIPE_APP_CLIENT_ID")  # ca_…: the install link
    stripe_install_url: Annotated[str, _url("http", "https")] = _var(
        "STRIPE_APP_INSTALL_URL", "https://marketplace.stripe.com/oauth/v2/authorize"
    )
    stripe_connect_webhook_secrets: Annotated[tuple[str, ...], BeforeValidator(_split_secrets)] = (
        Field((), validation_alias="STRIPE_CONNECT_WEBHOOK_SECRET", repr=False)
    )
    stripe_mode: Annotated[Literal["test", "live"], BeforeValidator(_lower)] = _var(
        "STRIPE_MODE", "test"
    )
    webhook_tolerance: Seconds = _var("BRIDGE_WEBHOOK_TOLERANCE", 300)
    max_body_bytes: int = _var("BRIDGE_MAX_BODY_BYTES", 1024 * 1024, ge=1)
    sync_interval: Seconds = _var("BRIDGE_SYNC_INTERVAL", 900)
    retention_days: int = _var("BRIDGE_RETENTION_DAYS", 30, ge=1)
    relay_retry_base: float = _var("BRIDGE_RELAY_RETRY_BASE", 2.0, gt=0)
    relay_threads: int = _var("BRIDGE_RELAY_THREADS", 4, ge=1)
    relay_lease: Seconds = _var("BRIDGE_RELAY_LEASE", 300)
    invoice_collection_method: Literal["send_invoice", "charge_automatically"] = _var(
        "BRIDGE_INVOICE_COLLECTION_METHOD", "send_invoice"
    )
    invoice_days_until_due: int = _var("BRIDGE_INVOICE_DAYS_UNTIL_DUE", 30, ge=0)
    proration_behavior: Literal["create_prorations", "always_invoice", "none"] = _var(
        "BRIDGE_PRORATION_BEHAVIOR", "create_prorations"
    )
    stripe_retry_base: float = _var("BRIDGE_STRIPE_RETRY_BASE", 0.5, ge=0)
    stripe_max_attempts: int = _var("BRIDGE_STRIPE_MAX_ATTEMPTS", 5, ge=1)
    stripe_timeout: float = _var("BRIDGE_STRIPE_TIMEOUT", 30.0, gt=0)
    # most Stripe requests in any one second per account, every process together (None:
    # Stripe's own limit by mode, 100 live and 25 test)
    stripe_rate_limit: int | None = _var("BRIDGE_STRIPE_RATE_LIMIT", None, ge=1)
    # set, `connect` registers the workspace's webhook endpoint in its Stripe account itself
    public_url: Annotated[str | None, _url("http", "https")] = _var("BRIDGE_PUBLIC_URL")
    # the console links a Veles record's name there: {workspace} and {id} are replaced
    veles_url: Annotated[str | None, _url("http", "https")] = _var("BRIDGE_VELES_URL")
    event_max_attempts: int = _var("BRIDGE_EVENT_MAX_ATTEMPTS", 8, ge=1)
    startup_wait: int = _var("BRIDGE_STARTUP_WAIT", 30, ge=0)
    sweep_interval: Seconds = _var("BRIDGE_SWEEP_INTERVAL", 30)
    sweep_grace: int = _var("BRIDGE_SWEEP_GRACE", 60, ge=0)
    worker_threads: int = _var("BRIDGE_WORKER_THREADS", 8, ge=1)
    bulk_threads: int = _var("BRIDGE_BULK_THREADS", 2, ge=1)
    enqueue_linger_ms: int = _var("BRIDGE_ENQUEUE_LINGER_MS", 50, ge=0)
    log_format: Annotated[Literal["auto", "json", "console"], BeforeValidator(_lower)] = _var(
        "BRIDGE_LOG_FORMAT", "auto"
    )
    log_level: Annotated[str | None, BeforeValidator(_log_level)] = _var("BRIDGE_LOG_LEVEL")
    workspace: str = _var("BRIDGE_WORKSPACE", "default", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    metrics_dir: Path | None = _var("PROMETHEUS_MULTIPROC_DIR")

    @model_validator(mode="after")
    def _embedded_defaults(self) -> Settings:
        var_dir = self.var_dir.resolve()
        object.__setattr__(self, "var_dir", var_dir)
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{var_dir / 'stripe-bridge.db'}")
        return self

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
    def variables(cls) -> dict[str, str]:
        """Every environment variable the settings read → the field it fills."""
        return {str(field.validation_alias): name for name, field in cls.model_fields.items()}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings from `env` (default: the process environment); an empty value is
        unset. A bad value raises ConfigError naming the variable (never a secret's value)."""
        env = os.environ if env is None else env
        names = cls.variables()
        values = {name: env[name] for name in names if env.get(name, "").strip()}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(_first_problem(exc, values)) from None


def _first_problem(exc: ValidationError, values: Mapping[str, str]) -> str:
    error = exc.errors(include_url=False)[0]
    name = str(error["loc"][0]) if error["loc"] else "a setting"
    message = str(error["msg"]).removeprefix("Value error, ")
    if name in SECRET_VARIABLES or name not in values:
        return f"{name}: {message}"
    return f"{name}: {message}, got {values[name]!r}"


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
