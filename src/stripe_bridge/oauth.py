"""The Stripe App's OAuth install (platform mode): an install link, the callback that
exchanges the code for the account's tokens, and their refresh before they expire.

Stripe's flow (docs.stripe.com/stripe-apps/api-authentication/oauth): the install link is
`https://marketplace.stripe.com/oauth/v2/authorize?client_id=ca_…&redirect_uri=…&state=…`; the
user picks an account and Stripe redirects to `redirect_uri` with `code` (single use, valid 5
minutes) and `state`. `POST /v1/oauth/token` with the platform's secret key exchanges
`grant_type=authorization_code` for an access token (an API key for that account, valid one
hour), a refresh token (valid a year) and `stripe_user_id`; `grant_type=refresh_token` gets the
next pair, and the old refresh token stops working. Both tokens are stored encrypted like keys.

The `state` is the workspace, sealed with the bridge's key and dated: a callback can only
complete an install the bridge started, for the workspace it started it for, recently."""

from __future__ import annotations

import time
from datetime import timedelta
from urllib.parse import urlencode

import orjson
import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from stripe_bridge.connection import take
from stripe_bridge.errors import BadRequest, BridgeError, Conflict
from stripe_bridge.models import CONNECTED, Connection, utcnow
from stripe_bridge.secrets_box import SecretBox
from stripe_bridge.stripe_api import GatewayFactory, mode_of

log = structlog.get_logger(__name__)

CALLBACK_PATH = "/oauth/stripe/callback"
STATE_TTL = 600  # seconds an install link stays good for
ACCESS_TTL = timedelta(hours=1)  # Stripe Apps' access tokens (the answer does not say)
REFRESH_AHEAD = timedelta(minutes=10)


def install_link(
    box: SecretBox, install_url: str, client_id: str | None, public_url: str | None, workspace: str
) -> str:
    if not client_id or not public_url:
        raise Conflict("the install link needs STRIPE_APP_CLIENT_ID and BRIDGE_PUBLIC_URL")
    state = box.seal(orjson.dumps({"w": workspace, "exp": int(time.time()) + STATE_TTL}).decode())
    query = {
        "client_id": client_id,
        "redirect_uri": public_url.rstrip("/") + CALLBACK_PATH,
        "state": state.decode(),
    }
    return f"{install_url}?{urlencode(query)}"


def workspace_of_state(box: SecretBox, state: str) -> str:
    """The workspace an install was started for; BadRequest for a state the bridge did not
    seal, or one older than STATE_TTL."""
    try:
        sealed = orjson.loads(box.open(state.encode()))
    except (BridgeError, orjson.JSONDecodeError, UnicodeError):
        raise BadRequest("this install link was not made by this bridge") from None
    if not isinstance(sealed, dict) or int(sealed.get("exp", 0)) < time.time():
        raise BadRequest("this install link has expired: start the install again")
    return str(sealed["w"])


def complete_install(
    session: Session, box: SecretBox, gateways: GatewayFactory, workspace_id: str, code: str
) -> Connection:
    """Exchange the callback's code, and connect the workspace to the account that installed
    the app (the same checks as any connect: one account, one workspace)."""
    platform = gateways.platform_client()
    tokens = platform.oauth_token({"grant_type": "authorization_code", "code": code})
    account = gateways(tokens["access_token"], account=tokens["stripe_user_id"]).retrieve_account()
    row = take(session, workspace_id, account, mode_of(tokens["access_token"]), platform=False)
    _store_tokens(row, box, tokens)
    session.flush()
    log.info("stripe app installed", workspace_id=workspace_id, account_id=row.account_id)
    return row


def refresh_due(
    session_factory: sessionmaker[Session], box: SecretBox, gateways: GatewayFactory
) -> int:
    """Refresh every installed workspace's tokens that expire within REFRESH_AHEAD (the
    scheduler's tick); one that fails is logged and tried again next tick."""
    with session_factory() as session:
        due = list(
            session.scalars(
                select(Connection.workspace_id).where(
                    Connection.status == CONNECTED,
                    Connection.oauth_refresh_encrypted.is_not(None),
                    Connection.oauth_expires_at < utcnow() + REFRESH_AHEAD,
                )
            )
        )
    refreshed = 0
    for workspace_id in due:
        try:
            with session_factory.begin() as session:
                row = session.get(Connection, workspace_id, with_for_update=True)
                if row is None or row.oauth_refresh_encrypted is None:
                    continue
                grant = {"grant_type": "refresh_token"}
                grant["refresh_token"] = box.open(row.oauth_refresh_encrypted)
                _store_tokens(row, box, gateways.platform_client().oauth_token(grant))
            refreshed += 1
        except BridgeError as exc:
            log.error(
                "could not refresh the app's tokens", workspace_id=workspace_id, error=str(exc)
            )
    return refreshed


def _store_tokens(row: Connection, box: SecretBox, tokens: dict[str, str]) -> None:
    access = tokens["access_token"]
    row.api_key_encrypted, row.api_key_last4 = box.seal(access), access[-4:]
    row.oauth_refresh_encrypted = box.seal(tokens["refresh_token"])
    row.oauth_expires_at = utcnow() + ACCESS_TTL
    row.updated_at = utcnow()
