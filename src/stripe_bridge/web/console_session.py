"""The console's login session: a token typed once into a form becomes a signed cookie.

The cookie (`bridge_console`, Path=/admin, HttpOnly, SameSite=Strict, Secure over https) holds
no token: the SHA-256 digest of the one given (what the workspace tokens table keeps), a CSRF
token, and the time of the login, signed with a key derived from BRIDGE_ADMIN_TOKEN
(itsdangerous): rotating the operator token ends every console session, revoking a workspace's
tokens ends its sessions (the digest is looked up on every request). Requests that change
something must repeat the CSRF token in `X-CSRF-Token`; the console reads it from
`GET /admin/api/session`, which only a same-origin script can read."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.responses import Response

from stripe_bridge.workspaces import token_digest as digest

COOKIE = "bridge_console"
PATH = "/admin"
MAX_AGE = 8 * 3600  # seconds a login lasts
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True)
class Login:
    """Who logged in (the digest of their token) and the session's CSRF token."""

    digest: str
    csrf: str

    def allows(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.csrf.encode())


def _serializer(admin_token: str) -> URLSafeTimedSerializer:
    key = hashlib.sha256(b"stripe-bridge console session\0" + admin_token.encode()).digest()
    return URLSafeTimedSerializer(key, salt="console")


def seal(admin_token: str, token: str) -> tuple[str, Login]:
    """The cookie's value for a login with `token`, and the login it stands for."""
    login = Login(digest(token), secrets.token_urlsafe(24))
    return _serializer(admin_token).dumps({"d": login.digest, "c": login.csrf}), login


def opened(admin_token: str, value: str | None) -> Login | None:
    """The login a cookie stands for, or None (absent, forged, expired, or signed with a
    rotated operator token)."""
    if not value:
        return None
    try:
        data = _serializer(admin_token).loads(value, max_age=MAX_AGE)
    except BadSignature:  # SignatureExpired is one
        return None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in "dc"):
        return None
    return Login(data["d"], data["c"])


def set_cookie(response: Response, value: str, *, secure: bool) -> None:
    response.set_cookie(
        COOKIE, value, max_age=MAX_AGE, path=PATH, secure=secure, httponly=True, samesite="strict"
    )


def clear_cookie(response: Response, *, secure: bool) -> None:
    response.delete_cookie(COOKIE, path=PATH, secure=secure, httponly=True, samesite="strict")
