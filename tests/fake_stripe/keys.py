"""Accounts and what reaches them: secret and restricted keys, platforms with the accounts
connected to them, and OAuth access tokens.

``Keyring.authenticate`` turns a request's key and ``Stripe-Account`` header into the account it
acts on; ``Keyring.authorize`` applies a restricted key's permissions. Both fail before the
request runs (nothing is stored under its idempotency key).

* A platform's secret key with ``Stripe-Account: acct_…`` acts on that account if it is
  connected to the platform (``connect_account``, or an approved OAuth install); otherwise 403
  ``account_invalid``, "The provided key '…' does not have access to account '…' (or that
  account does not exist). Application access may have been revoked." (the answer quoted in
  stripe-php's and stripity-stripe's tests; docs.stripe.com/error-codes#account-invalid).
* A restricted key (``rk_…``) holds permissions by family, each ``none``, ``read`` or
  ``write`` (write includes read). A request outside them answers 403 ``invalid_request_error``
  without a code, naming the permission: "The provided key 'rk_test_***…' does not have the
  required permissions for this endpoint on account 'acct_…'. Having the 'rak_webhook_write'
  permission would allow this request to continue." (stripe-node#2246; 403 since 2016-10-19,
  docs.stripe.com/changelog). The families are Stripe's permission names
  (docs.stripe.com/stripe-apps/reference/permissions): prices are ``plan``, invoice items are
  ``invoice``, and ``GET /v1/account`` needs ``rak_accounts_kyc_basic_read`` (family
  ``account``), as Stripe's answers name it.
* An OAuth access token is a key of the account that granted it, until it expires (401
  ``api_key_expired``) or is revoked by a refresh or a deauthorization (401
  ``platform_api_key_expired``, the code Stripe documents for a disconnected account's key).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.fake_stripe.params import ApiError
from tests.fake_stripe.records import Account, RequestRecord, mask_key, new_id

Maker = Callable[[str, bool], Account]  # (account id, livemode) -> a new account
LEVELS = {"none": 0, "read": 1, "write": 2}
FAMILIES = {  # path prefix -> Stripe's permission family (rak_<family>_<read|write>)
    "/v1/account": "account",
    "/v1/customers": "customer",
    "/v1/products": "product",
    "/v1/prices": "plan",
    "/v1/invoiceitems": "invoice",
    "/v1/invoices": "invoice",
    "/v1/subscription_items": "subscription",
    "/v1/subscriptions": "subscription",
    "/v1/events": "event",
    "/v1/webhook_endpoints": "webhook",
}


@dataclass
class AccessToken:
    account: str  # the connected account it acts on
    client_id: str  # the platform's OAuth application
    expires: int
    revoked: bool = False


@dataclass
class OAuthApp:
    """A platform's OAuth application (a Stripe App installed by OAuth): its codes and tokens."""

    client_id: str
    platform: str
    name: str
    redirect_uris: list[str]
    codes: dict[str, AuthCode] = field(default_factory=dict)
    refresh_tokens: dict[str, RefreshToken] = field(default_factory=dict)


@dataclass
class AuthCode:
    account: str
    created: int
    used: bool = False
    issued: list[str] = field(default_factory=list)  # the tokens issued with it


@dataclass
class RefreshToken:
    account: str
    expires: int
    code: str


class Keyring:
    """Every account by id, and every key, restricted permission, platform and token."""

    def __init__(self, clock: Callable[[], int]) -> None:
        self.now = clock
        self.accounts: dict[str, Account] = {}
        self.keys: dict[str, str] = {}
        self.revoked: set[str] = set()
        self.permissions: dict[str, dict[str, str]] = {}
        self.tokens: dict[str, AccessToken] = {}
        self.apps: dict[str, OAuthApp] = {}

    def add_key(self, api_key: str, account_id: str | None, make: Maker) -> Account:
        """Register a key for ``account_id`` (a new account from ``make(id, livemode)`` when
        unknown, else key rotation)."""
        mode = re.match(r"^(sk|rk)_(live|test)_", api_key)
        if mode is None:
            raise ValueError(f"not a secret or restricted key: {mask_key(api_key)}")
        account = self.account(account_id, mode.group(2) == "live", make)
        self.keys[api_key] = account.id
        self.revoked.discard(api_key)
        self.permissions.pop(api_key, None)
        return account

    def account(self, account_id: str | None, livemode: bool, make: Maker) -> Account:
        account_id = account_id or new_id("acct", 16)
        account = self.accounts.get(account_id)
        if account is None:
            account = self.accounts[account_id] = make(account_id, livemode)
        elif account.livemode != livemode:
            raise ValueError("a live and a test key cannot share an account here")
        return account

    def restrict(self, api_key: str, permissions: dict[str, str]) -> None:
        known = {*FAMILIES.values()}
        for family, level in permissions.items():
            if family not in known or level not in LEVELS:
                raise ValueError(
                    f"permission {family!r}: {level!r}; families {sorted(known)}, "
                    f"levels {list(LEVELS)}"
                )
        self.permissions[api_key] = dict(permissions)

    def app_of(self, account_id: str | None) -> OAuthApp | None:
        return next((a for a in self.apps.values() if a.platform == account_id), None)

    def authenticate(self, record: RequestRecord) -> Account:
        key = record.api_key
        if not key:
            raise ApiError(
                401,
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                "YOUR_SECRET_KEY').",
                stored=False,
            )
        if key in self.revoked:
            raise expired(key, "api_key_expired")
        token = self.tokens.get(key)
        if token is not None:
            if token.revoked:
                raise expired(key, "platform_api_key_expired")
            if self.now() >= token.expires:
                raise expired(key, "api_key_expired")
            own = self.accounts[token.account]
            record.application = token.client_id
        elif key in self.keys:
            own = self.accounts[self.keys[key]]
        else:
            raise ApiError(401, f"Invalid API Key provided: {mask_key(key)}", stored=False)
        record.key_account = record.account = own.id
        target_id = record.headers.get("stripe-account")
        if not target_id or target_id == own.id:
            return own
        target = self.accounts.get(target_id)
        if target is None or own.id not in target.platforms:
            raise ApiError(
                403,
                f"The provided key '{mask_key(key)}' does not have access to account "
                f"'{target_id}' (or that account does not exist). Application access may have "
                "been revoked.",
                code="account_invalid",
                stored=False,
            )
        app = self.app_of(own.id)
        record.application = app.client_id if app else None
        record.account = target.id
        return target

    def authorize(self, record: RequestRecord) -> None:
        """Refuse what a restricted key's permissions do not cover."""
        permissions = self.permissions.get(record.api_key or "")
        family = family_of(record.path)
        if permissions is None or family is None:
            return
        need = "read" if record.method == "GET" else "write"
        if LEVELS[permissions.get(family, "none")] >= LEVELS[need]:
            return
        name = "rak_accounts_kyc_basic_read" if family == "account" else f"rak_{family}_{need}"
        raise ApiError(
            403,
            f"The provided key '{mask_key(record.api_key or '')}' does not have the required "
            f"permissions for this endpoint on account '{record.account}'. Having the "
            f"'{name}' permission would allow this request to continue.",
            stored=False,
        )

    def is_secret_key(self, api_key: str | None) -> bool:
        """A standard secret key: not restricted, not an OAuth access token."""
        return api_key is not None and api_key in self.keys and api_key.startswith("sk_")


def family_of(path: str) -> str | None:
    return next(
        (f for prefix, f in FAMILIES.items() if path == prefix or path.startswith(prefix + "/")),
        None,
    )


def expired(key: str, code: str) -> ApiError:
    return ApiError(401, f"Expired API Key provided: {mask_key(key)}", code=code, stored=False)
