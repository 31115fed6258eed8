"""The test-facing set-up of accounts: keys, restricted keys, platforms and their connected
accounts, OAuth installs, rate limits, and webhook deliveries (``FakeStripe`` inherits these).

See ``keys`` (authentication and permissions), ``oauth`` (the install and token flow),
``limits`` and ``webhooks`` for the behaviour behind each helper.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from tests.fake_stripe import oauth
from tests.fake_stripe.context import Store
from tests.fake_stripe.keys import Keyring, OAuthApp
from tests.fake_stripe.limits import RateLimits
from tests.fake_stripe.records import Account, Obj, new_id
from tests.fake_stripe.shapes import account_object
from tests.fake_stripe.webhooks import Deliverer, Delivery


class Tenants:
    """Mixed into ``FakeStripe``, which builds the parts these helpers work on."""

    _lock: threading.RLock
    _store: Store
    _keys: Keyring
    _limits: RateLimits
    _deliverer: Deliverer

    # ------------------------------------------------------------ accounts and keys

    def add_account(
        self,
        api_key: str,
        account_id: str | None = None,
        display_name: str = "Fake Stripe Test Account",
        business_name: str | None = None,
        *,
        country: str = "US",
        default_currency: str = "usd",
    ) -> Obj:
        """Register a key with full access (``sk_…`` or ``rk_…``). A known ``account_id`` adds
        the key to it (key rotation)."""
        with self._lock:
            make = self._maker(display_name, business_name, country, default_currency)
            return account_object(self._keys.add_key(api_key, account_id, make))

    def add_restricted_key(
        self, api_key: str, account_id: str, permissions: Mapping[str, str]
    ) -> Obj:
        """Register a restricted key (``rk_…``) of an account added before, allowed only what
        ``permissions`` grants: ``{"webhook": "read", "customer": "write"}``; families
        ``account``, ``customer``, ``product``, ``plan`` (prices), ``invoice`` (and invoice
        items), ``subscription``, ``event``, ``webhook``; levels ``none``, ``read``,
        ``write``. A family left out is ``none``."""
        if not api_key.startswith("rk_"):
            raise ValueError("a restricted key starts with rk_")
        with self._lock:
            if account_id not in self._keys.accounts:
                raise ValueError(f"unknown account {account_id}: add_account() first")
            account = self._keys.add_key(api_key, account_id, self._maker())
            self._keys.restrict(api_key, dict(permissions))
            return account_object(account)

    def revoke_key(self, api_key: str) -> None:
        """The key now answers 401 ``api_key_expired`` (a rolled key past its expiry)."""
        with self._lock:
            self._keys.revoked.add(api_key)

    # ------------------------------------------------------------ platforms and OAuth

    def add_platform(
        self,
        api_key: str,
        account_id: str | None = None,
        display_name: str = "Fake Platform",
        *,
        client_id: str | None = None,
        app_name: str = "Veles",
        redirect_uris: tuple[str, ...] = ("https://veles.example/stripe/oauth/callback",),
    ) -> Obj:
        """Register a platform: an account with ``api_key``, and its OAuth app (``client_id``,
        ``ca_…``, generated unless given; ``redirect_uris`` are its allowed redirects, the first
        the default). Returns the account object; ``client_id(account_id)`` reads the app's."""
        if not redirect_uris:
            raise ValueError("an app needs at least one redirect URI")
        with self._lock:
            account = self._keys.add_key(api_key, account_id, self._maker(display_name))
            if self._keys.app_of(account.id) is None:
                client = client_id or new_id("ca", 32)
                self._keys.apps[client] = OAuthApp(
                    client, account.id, app_name, list(redirect_uris)
                )
            return account_object(account)

    def client_id(self, platform_id: str) -> str:
        with self._lock:
            app = self._keys.app_of(platform_id)
            if app is None:
                raise KeyError(f"{platform_id} is not a platform")
            return app.client_id

    def connect_account(
        self,
        platform_id: str,
        account_id: str | None = None,
        display_name: str = "Connected Account",
        business_name: str | None = None,
    ) -> Obj:
        """Connect an account (created, without keys of its own, when unknown) to a platform:
        the platform's key may then act on it with ``Stripe-Account``, and its events reach the
        platform's ``connect`` webhook endpoints. No event is emitted."""
        with self._lock:
            platform = self._keys.accounts[platform_id]
            make = self._maker(display_name, business_name)
            account = self._keys.account(account_id, platform.livemode, make)
            account.platforms.add(platform_id)
            return account_object(account)

    def install_link(
        self, platform_id: str, redirect_uri: str | None = None, state: str | None = None
    ) -> str:
        """The platform app's install link, as the bridge would build it."""
        with self._lock:
            app = self._keys.app_of(platform_id)
            if app is None:
                raise KeyError(f"{platform_id} is not a platform")
            return oauth.install_link(app, redirect_uri, state)

    def approve_install(
        self, link: str, account_id: str | None = None, *, approve: bool = True
    ) -> str:
        """Play the user who opens an install link (any URL whose query has ``client_id`` and
        optionally ``redirect_uri`` and ``state``) and picks ``account_id`` (a new account when
        None or unknown): the URL Stripe redirects back to, with ``code`` and ``state``, or
        with ``error=access_denied`` when ``approve`` is False. ValueError for a link Stripe
        would refuse (unknown client_id, a redirect_uri the app does not allow)."""
        with self._lock:
            make = self._maker("Installing Account")
            return oauth.approve(self._keys, self._store, link, account_id, make, approve)

    # ------------------------------------------------------------ rate limits

    def set_rate_limit(self, account_id: str, per_second: int | None) -> None:
        """Answer 429 ``rate_limit`` to requests on ``account_id`` beyond ``per_second`` in any
        rolling second; None removes the limit (counts are kept until reset())."""
        with self._lock:
            self._limits.set(account_id, per_second)

    def rate_limit_refusals(self, account_id: str) -> int:
        """How many requests on ``account_id`` its rate limit refused."""
        with self._lock:
            return self._limits.refused.get(account_id, 0)

    # ------------------------------------------------------------ webhook deliveries

    def deliver_pending(self) -> list[Delivery]:
        """POST every event emitted since the last call to its subscribed endpoints, now, and
        return the attempts (see ``webhooks``)."""
        return self._deliverer.deliver_pending()

    def resend(self, event_id: str, endpoint_id: str | None = None) -> list[Delivery]:
        """Deliver a stored event again: to one endpoint, or to all its subscribers."""
        return self._deliverer.resend(event_id, endpoint_id)

    def wait_for_deliveries(self, timeout: float = 10.0) -> None:
        """With ``deliver_webhooks`` set: let the deliveries started so far finish."""
        self._deliverer.wait(timeout)

    @property
    def deliveries(self) -> list[Delivery]:
        """Every delivery attempt so far, oldest first."""
        with self._lock:
            return list(self._deliverer.log)

    @property
    def webhook_timeout(self) -> float:
        return self._deliverer.timeout

    @webhook_timeout.setter
    def webhook_timeout(self, seconds: float) -> None:
        self._deliverer.timeout = seconds

    # ------------------------------------------------------------ helpers

    def _maker(
        self,
        display_name: str = "Fake Stripe Test Account",
        business_name: str | None = None,
        country: str = "US",
        default_currency: str = "usd",
    ) -> Callable[[str, bool], Account]:
        def make(account_id: str, livemode: bool) -> Account:
            return Account(
                account_id,
                display_name,
                business_name,
                livemode,
                self._store.now(),
                country,
                default_currency,
            )

        return make
