"""The one place that talks to Stripe: StripeClient, timeouts, retries, idempotency keys, and
the account's rate budget.

Retries (tenacity, exponential backoff with full jitter) cover connection errors, 429 and 5xx,
honouring `Retry-After` and `Stripe-Should-Retry` when Stripe sends them; any other 4xx is
final. Every write takes an idempotency key from the caller. Every attempt, a retry included,
first takes room in the account's budget (`ratelimit`: shared by every process calling Stripe
for that account, so none goes over Stripe's limit and one busy account never slows another).
In platform mode the client carries `Stripe-Account`. Answers are plain dicts."""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar, cast

import stripe
import structlog
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from stripe_bridge.backoff import Backoff
from stripe_bridge.errors import ConfigError, PermanentError, TransientError
from stripe_bridge.metrics import STRIPE_CALLS, STRIPE_SECONDS, call_name
from stripe_bridge.ratelimit import DEFAULT_LIMITS, RateBudget

log = structlog.get_logger(__name__)

# The API version the SDK's typed params describe; bump it together with the SDK.
API_VERSION = "2026-10-28.endive"
PAGE_SIZE = 100
T = TypeVar("T")


class StripeRejected(PermanentError):
    """Stripe refused the request (4xx other than 429): retrying cannot help."""

    code = "stripe_rejected"

    def __init__(
        self, message: str, *, stripe_code: str | None, param: str | None, status: int | None
    ) -> None:
        super().__init__(message)
        self.stripe_code, self.param, self.status = stripe_code, param, status


class StripeUnavailable(TransientError):
    """Stripe could not be reached or kept failing (network, 429, 5xx) after every retry."""

    code = "stripe_unavailable"


def _header(exc: stripe.StripeError, name: str) -> str | None:
    for key, value in (exc.headers or {}).items():
        if key.lower() == name:
            return str(value)
    return None


def is_retriable(exc: BaseException) -> bool:
    if isinstance(exc, stripe.APIConnectionError):
        return True
    if not isinstance(exc, stripe.StripeError):
        return False
    should_retry = _header(exc, "stripe-should-retry")
    if should_retry in ("true", "false"):
        return should_retry == "true"
    status = exc.http_status or 0
    return status == 429 or status >= 500


def wait_for(backoff: Backoff) -> Callable[[RetryCallState], float]:
    """tenacity's wait: the backoff, never shorter than a `Retry-After` Stripe sent."""

    def wait(state: RetryCallState) -> float:
        delay = backoff.delay(state.attempt_number)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, stripe.StripeError) and (after := _header(exc, "retry-after")):
            with contextlib.suppress(ValueError):
                delay = max(delay, min(float(after), backoff.cap))
        return delay

    return wait


class GatewayFactory(Protocol):
    """Stripe clients (the composition root fixes everything else): for an API key, or, in
    platform mode, for a connected account through the platform's key."""

    def __call__(
        self, api_key: str, *, account: str | None = None, stripe_account: str | None = None
    ) -> StripeGateway: ...

    def platform(self, account_id: str) -> StripeGateway: ...

    def platform_client(self) -> StripeGateway: ...


class Gateways:
    """The `GatewayFactory` the composition root builds."""

    def __init__(self, make: Callable[..., StripeGateway], platform_key: str | None) -> None:
        self._make, self._platform_key = make, platform_key

    def __call__(
        self, api_key: str, *, account: str | None = None, stripe_account: str | None = None
    ) -> StripeGateway:
        return self._make(api_key, account=account, stripe_account=stripe_account)

    def platform(self, account_id: str) -> StripeGateway:
        """Calls for a connected account carry `Stripe-Account` (and draw on its budget)."""
        return self._make(self._key(), stripe_account=account_id)

    def platform_client(self) -> StripeGateway:
        """The platform's own calls (the OAuth exchange)."""
        return self._make(self._key())

    def _key(self) -> str:
        if not self._platform_key:
            raise ConfigError("platform mode needs STRIPE_PLATFORM_KEY")
        return self._platform_key


def mode_of(api_key: str) -> str:
    return "live" if api_key.split("_", 2)[1:2] == ["live"] else "test"


def budget_key(api_key: str, account: str | None) -> str:
    """The rate budget a key's calls draw on: its account's in its mode (Stripe counts test
    and live apart), or, before the account is known, the key's own."""
    owner = account or "key-" + hashlib.sha256(api_key.encode()).hexdigest()[:12]
    return f"{owner}:{mode_of(api_key)}"


class StripeGateway:
    def __init__(
        self,
        api_key: str,
        *,
        account: str | None = None,
        stripe_account: str | None = None,
        api_base: str | None = None,
        timeout: float = 30.0,
        max_attempts: int = 5,
        backoff: Backoff | None = None,
        budget: RateBudget | None = None,
        rate_limit: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """`account`: the account the key acts on (its rate budget); `stripe_account`: a
        connected account a platform key acts for (`Stripe-Account`, and its budget)."""
        stripe.enable_telemetry = False
        self._client = stripe.StripeClient(
            api_key,
            stripe_account=stripe_account,
            stripe_version=API_VERSION,
            base_addresses={"api": api_base, "connect": api_base} if api_base else None,
            max_network_retries=0,
            http_client=stripe.RequestsClient(timeout=timeout),
        )
        self._max_attempts = max_attempts
        self._backoff = backoff or Backoff()
        self._sleep = sleep
        self._budget = budget
        self._budget_key = budget_key(api_key, stripe_account or account)
        self._limit = rate_limit or DEFAULT_LIMITS[mode_of(api_key)]
        self._budget_wait = timeout

    def _within_budget(self, fn: Callable[[], T]) -> Callable[[], T]:
        if self._budget is None:
            return fn
        budget, key, limit, wait = self._budget, self._budget_key, self._limit, self._budget_wait

        def attempt() -> T:
            budget.acquire(key, limit, timeout=wait)  # RateBudgetExhausted: transient
            return fn()

        return attempt

    @property
    def v1(self) -> stripe.V1Services:
        return self._client.v1

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one Stripe request with retries; map failures to the bridge's errors."""
        retrying = Retrying(
            retry=retry_if_exception(is_retriable),
            stop=stop_after_attempt(self._max_attempts),
            wait=wait_for(self._backoff),
            sleep=self._sleep,
            reraise=True,
            before_sleep=lambda state: log.warning(
                "stripe call failed, retrying",
                call=what,
                attempt=state.attempt_number,
                error=type(state.outcome.exception()).__name__ if state.outcome else None,
            ),
        )
        name = call_name(what)
        started = time.perf_counter()
        try:
            result = retrying(self._within_budget(fn))
        except stripe.StripeError as exc:
            STRIPE_SECONDS.labels(name).observe(time.perf_counter() - started)
            STRIPE_CALLS.labels(name, "unavailable" if is_retriable(exc) else "refused").inc()
            request_id = _header(exc, "request-id")
            if is_retriable(exc):
                log.error("stripe unavailable", call=what, stripe_request_id=request_id)
                raise StripeUnavailable(
                    f"{what}: Stripe unavailable: {exc.user_message or exc}"
                ) from exc
            message = exc.user_message or str(exc)
            log.warning(
                "stripe refused",
                call=what,
                status=exc.http_status,
                code=exc.code,
                stripe_request_id=request_id,
            )
            raise StripeRejected(
                f"{what}: {message}",
                stripe_code=exc.code,
                param=getattr(exc, "param", None),
                status=exc.http_status,
            ) from exc
        STRIPE_SECONDS.labels(name).observe(time.perf_counter() - started)
        STRIPE_CALLS.labels(name, "ok").inc()
        return result

    def oauth_token(self, params: dict[str, str]) -> dict[str, Any]:
        """A Stripe App's OAuth exchange (`authorization_code` or `refresh_token`), with the
        platform's key."""
        answer = self.call(
            "oauth token",
            lambda: self._client.oauth.token(params=cast("Any", params)),
        )
        return plain(answer)

    # --- reads -----------------------------------------------------------------------------

    def retrieve_account(self) -> dict[str, Any]:
        account = self.call("retrieve account", lambda: self.v1.accounts.retrieve_current())
        return plain(account)

    def list_page(
        self, kind: str, *, starting_after: str | None = None, **filters: Any
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page (up to 100) of a list endpoint: `customers`, `products`, `prices`,
        `subscriptions`, `invoices`, `events`."""
        params: dict[str, Any] = {"limit": PAGE_SIZE, **filters}
        if starting_after:
            params["starting_after"] = starting_after
        service = getattr(self.v1, kind)
        page = self.call(f"list {kind}", lambda: service.list(params=params))
        return [plain(item) for item in page.data], bool(page.has_more)

    def iterate(
        self, kind: str, *, starting_after: str | None = None, **filters: Any
    ) -> Iterator[dict[str, Any]]:
        """Every object of a list endpoint, page by page from `starting_after`."""
        cursor = starting_after
        while True:
            items, has_more = self.list_page(kind, starting_after=cursor, **filters)
            yield from items
            if not has_more or not items:
                return
            cursor = items[-1]["id"]


def plain(obj: Any) -> dict[str, Any]:
    """An SDK object as plain JSON-like data (handlers never see SDK objects)."""
    if isinstance(obj, stripe.StripeObject):
        return dict(obj.to_dict())
    return dict(obj)
