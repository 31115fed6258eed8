"""OAuth for a platform's Stripe App: the install a user approves, then ``POST /v1/oauth/token``
and ``POST /v1/oauth/deauthorize`` (also at ``/oauth/token`` and ``/oauth/deauthorize``, where
stripe-python's ``client.oauth`` posts them on its ``connect`` base address).

The documented flow (docs.stripe.com/stripe-apps/api-authentication/oauth):

* The install link, ``https://marketplace.stripe.com/oauth/v2/authorize?client_id=…&
  redirect_uri=…&state=…``; ``redirect_uri`` must be one of the app's ``allowed_redirect_uris``
  (the first is the default). The user picks an account and approves; the browser comes back
  to ``redirect_uri?code=ac_…&state=…``. A denial comes back as ``?error=access_denied&
  error_description=The user denied your request`` (docs.stripe.com/stripe-apps/install-links).
  ``FakeStripe.approve_install(link, account)`` plays the user and returns that redirect URL.
* The code is single-use and valid for 5 minutes; using it twice revokes what it issued
  (docs.stripe.com/connect/oauth-reference: "Consuming an authorization code more than once
  revokes the account connection"; Stripe answers "This authorization code has already been
  used. All tokens issued with this code have been revoked.").
* ``POST /v1/oauth/token`` with the platform's secret key (not a restricted key, not an access
  token) and ``grant_type=authorization_code&code=ac_…`` or
  ``grant_type=refresh_token&refresh_token=…`` answers ``access_token``, ``livemode``,
  ``refresh_token``, ``scope`` (``stripe_apps``), ``stripe_publishable_key``,
  ``stripe_user_id``, ``token_type`` (``bearer``), and no expiry field. Access tokens expire in
  1 hour; refresh tokens after 1 year, and each exchange rolls the refresh token (the previous
  one stops working; the new one lives a year from then).
* Errors are OAuth's ``{"error", "error_description"}``: ``invalid_request`` (a missing
  parameter), ``invalid_grant`` (a code or refresh token unknown, expired, used or not yours:
  "Authorization code does not exist: ac_…", "Refresh token does not exist: rt_…"),
  ``unsupported_grant_type``, ``invalid_scope``; deauthorize adds ``invalid_client``.

Choices where the documentation says nothing: errors answer 400; a refresh revokes the access
tokens issued before it for that account (Connect's documented rule); access tokens look like
secret keys (``sk_test_…``), as Connect's do; approving an install connects the account to the
platform (its secret key may then use ``Stripe-Account``) and emits
``account.application.authorized``; deauthorizing emits ``account.application.deauthorized``
(delivered to the platform's connect endpoints), disconnects the account and revokes its codes
and tokens.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from tests.fake_stripe.context import Store
from tests.fake_stripe.keys import AccessToken, AuthCode, Keyring, OAuthApp, RefreshToken
from tests.fake_stripe.params import ApiError
from tests.fake_stripe.records import Account, Obj, RequestRecord, mask_key, new_id

INSTALL_URL = "https://marketplace.stripe.com/oauth/v2/authorize"
CODE_TTL = 5 * 60
ACCESS_TTL = 60 * 60
REFRESH_TTL = 365 * 24 * 3600
SCOPE = "stripe_apps"
TOKEN_PATHS = frozenset({"/v1/oauth/token", "/oauth/token"})
DEAUTHORIZE_PATHS = frozenset({"/v1/oauth/deauthorize", "/oauth/deauthorize"})
PATHS = TOKEN_PATHS | DEAUTHORIZE_PATHS


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status

    def body(self) -> Obj:
        return {"error": self.error, "error_description": self.description}


def install_link(app: OAuthApp, redirect_uri: str | None = None, state: str | None = None) -> str:
    query = {"client_id": app.client_id, "redirect_uri": redirect_uri, "state": state}
    return f"{INSTALL_URL}?{urlencode({k: v for k, v in query.items() if v is not None})}"


def approve(
    keyring: Keyring,
    store: Store,
    link: str,
    account_id: str | None,
    make: Callable[[str, bool], Account],
    approved: bool = True,
) -> str:
    """The user's answer to an install link, as the URL Stripe redirects the browser to."""
    query = dict(parse_qsl(urlsplit(link).query))
    app = keyring.apps.get(query.get("client_id", ""))
    if app is None:
        raise ValueError(f"The provided OAuth link is invalid (client_id of {link!r})")
    redirect_uri = query.get("redirect_uri") or app.redirect_uris[0]
    if redirect_uri not in app.redirect_uris:
        raise ValueError(f"invalid_redirect_uri: {redirect_uri!r} is not one of the app's")
    answer: dict[str, str] = {}
    if approved:
        platform = keyring.accounts[app.platform]
        account = keyring.account(account_id, platform.livemode, make)
        if app.platform not in account.platforms:
            account.platforms.add(app.platform)
            store.emit(account, None, "account.application.authorized", _application(app))
        code = new_id("ac", 32)
        app.codes[code] = AuthCode(account.id, keyring.now())
        answer["code"] = code
    else:
        answer = {"error": "access_denied", "error_description": "The user denied your request"}
    if query.get("state") is not None:
        answer["state"] = query["state"]
    return f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{urlencode(answer)}"


def handle(keyring: Keyring, store: Store, record: RequestRecord) -> tuple[int, Obj]:
    if not keyring.is_secret_key(record.api_key):
        raise ApiError(
            403,
            f"The provided key '{mask_key(record.api_key or '')}' does not have the required "
            f"permissions for this endpoint on account '{record.key_account}'. Use the "
            "platform's secret key.",
            stored=False,
        )
    app = keyring.app_of(record.key_account)
    try:
        if record.path in TOKEN_PATHS:
            return 200, _token(keyring, app, record.params)
        return 200, _deauthorize(keyring, store, app, record.params)
    except OAuthError as error:
        return error.status, error.body()


def _token(keyring: Keyring, app: OAuthApp | None, params: dict[str, Any]) -> Obj:
    _only(params, "grant_type", "code", "refresh_token", "scope", "client_secret", "client_id")
    grant = _required(params, "grant_type")
    if grant not in ("authorization_code", "refresh_token"):
        raise OAuthError("unsupported_grant_type", f"Unsupported grant type: {grant}")
    if grant == "authorization_code":  # ``scope`` "has no effect" here (Connect's reference)
        code_id = _required(params, "code")
        code = app.codes.get(code_id) if app else None
        if app is None or code is None:
            raise OAuthError("invalid_grant", f"Authorization code does not exist: {code_id}")
        if code.used:
            _revoke(keyring, app, code.issued)
            raise OAuthError(
                "invalid_grant",
                "This authorization code has already been used. All tokens issued with this "
                "code have been revoked.",
            )
        if keyring.now() - code.created >= CODE_TTL:
            raise OAuthError("invalid_grant", f"Authorization code expired: {code_id}")
        code.used = True
        return _issue(keyring, app, code.account, code_id)
    token = _required(params, "refresh_token")
    if params.get("scope") not in (None, SCOPE):
        raise OAuthError("invalid_scope", f"Invalid scope: {params['scope']}")
    refresh = app.refresh_tokens.get(token) if app else None
    if app is None or refresh is None:
        raise OAuthError("invalid_grant", f"Refresh token does not exist: {token}")
    if keyring.now() >= refresh.expires:
        raise OAuthError("invalid_grant", f"Refresh token expired: {token}")
    del app.refresh_tokens[token]
    for access in keyring.tokens.values():
        if access.client_id == app.client_id and access.account == refresh.account:
            access.revoked = True
    return _issue(keyring, app, refresh.account, refresh.code)


def _issue(keyring: Keyring, app: OAuthApp, account_id: str, code_id: str) -> Obj:
    livemode = keyring.accounts[app.platform].livemode
    mode = "live" if livemode else "test"
    access, refresh = new_id(f"sk_{mode}", 48), new_id("rt", 48)
    now = keyring.now()
    keyring.tokens[access] = AccessToken(account_id, app.client_id, now + ACCESS_TTL)
    app.refresh_tokens[refresh] = RefreshToken(account_id, now + REFRESH_TTL, code_id)
    code = app.codes.get(code_id)
    if code is not None:
        code.issued += [access, refresh]
    digest = hashlib.sha256(account_id.encode()).hexdigest()[:40]
    return {
        "access_token": access,
        "livemode": livemode,
        "refresh_token": refresh,
        "scope": SCOPE,
        "stripe_publishable_key": f"pk_{mode}_{digest}",
        "stripe_user_id": account_id,
        "token_type": "bearer",
    }


def _deauthorize(keyring: Keyring, store: Store, app: OAuthApp | None, params: Obj) -> Obj:
    _only(params, "client_id", "stripe_user_id", "client_secret")
    client_id, account_id = _required(params, "client_id"), _required(params, "stripe_user_id")
    account = keyring.accounts.get(account_id)
    if app is None or app.client_id != client_id:
        raise OAuthError("invalid_client", f"No such application: '{client_id}'", 401)
    if account is None or app.platform not in account.platforms:
        raise OAuthError(
            "invalid_client",
            f"This application is not connected to stripe account {account_id}, or that "
            "account does not exist.",
            401,
        )
    store.emit(account, None, "account.application.deauthorized", _application(app))
    account.platforms.discard(app.platform)
    for code_id in [c for c, code in app.codes.items() if code.account == account_id]:
        del app.codes[code_id]
    _revoke(keyring, app, [t for t, r in app.refresh_tokens.items() if r.account == account_id])
    _revoke(keyring, app, [t for t, a in keyring.tokens.items() if a.account == account_id])
    return {"stripe_user_id": account_id}


def _revoke(keyring: Keyring, app: OAuthApp, tokens: list[str]) -> None:
    for token in tokens:
        app.refresh_tokens.pop(token, None)
        access = keyring.tokens.get(token)
        if access is not None and access.client_id == app.client_id:
            access.revoked = True


def _application(app: OAuthApp) -> Obj:
    return {"id": app.client_id, "object": "application", "name": app.name}


def _only(params: Obj, *allowed: str) -> None:
    for key in params:
        if key not in allowed:
            raise OAuthError("invalid_request", f"Received unknown parameter: {key}")


def _required(params: Obj, key: str) -> str:
    value = params.get(key)
    if not isinstance(value, str) or not value:
        raise OAuthError("invalid_request", f"Missing required param: {key}.")
    return value
