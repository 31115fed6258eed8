"""A workspace's Stripe connection: connect, update the key, roll signing secrets, disconnect.

One row per workspace. An API key is checked against Stripe (retrieve the account) before
anything is stored; keys and secrets are stored encrypted and shown only as their last 4
characters. Once an account is connected, the workspace holds that account's data: a key of
another account or another mode is refused, and disconnecting keeps every record. An account
(in one mode) is connected to at most one workspace at a time."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from stripe_bridge import endpoints, errors
from stripe_bridge.endpoints import EndpointPlan, roll_webhook_secrets, set_webhook_secrets
from stripe_bridge.errors import BadRequest, BridgeError, ConfigError, Conflict, UnknownWorkspace
from stripe_bridge.models import (
    CONNECTED,
    DEFAULT_WORKSPACE,
    DISCONNECTED,
    NOT_CONNECTED,
    Connection,
    Workspace,
    utcnow,
)
from stripe_bridge.secrets_box import SecretBox
from stripe_bridge.settings import mode_of_key
from stripe_bridge.stripe_api import GatewayFactory, StripeGateway, StripeRejected

log = structlog.get_logger(__name__)


def account_name(account: dict[str, Any]) -> str | None:
    dashboard = (account.get("settings") or {}).get("dashboard") or {}
    profile = account.get("business_profile") or {}
    name = dashboard.get("display_name") or profile.get("name")
    return str(name) if name else None


def _checked_mode(api_key: str) -> str:
    try:
        return mode_of_key(api_key.strip())
    except ConfigError as exc:
        raise BadRequest(str(exc)) from None


def _verify(gateways: GatewayFactory, api_key: str) -> dict[str, Any]:
    try:
        return gateways(api_key).retrieve_account()
    except StripeRejected as exc:
        raise BadRequest(f"Stripe refused the key: {exc}") from None


def get(session: Session, workspace_id: str, *, lock: bool = False) -> Connection | None:
    return session.get(Connection, workspace_id, with_for_update=lock)


def platform_workspace(session: Session, account_id: str) -> str | None:
    """The workspace a platform-connected account belongs to (connected, else the one it was
    last disconnected from: its events are still stored there, as ignored)."""
    return session.scalar(
        select(Connection.workspace_id)
        .where(Connection.platform.is_(True), Connection.account_id == account_id)
        .order_by((Connection.status == CONNECTED).desc(), Connection.updated_at.desc())
        .limit(1)
    )


def holder_of(session: Session, account_id: str, mode: str) -> str | None:
    """The workspace the account (in that mode) is connected to, if any."""
    return session.scalar(
        select(Connection.workspace_id).where(
            Connection.account_id == account_id,
            Connection.mode == mode,
            Connection.status == CONNECTED,
        )
    )


def connect(
    session: Session,
    box: SecretBox,
    gateways: GatewayFactory,
    workspace_id: str,
    api_key: str,
    webhook_secret: str | None = None,
    *,
    plan: EndpointPlan | None = None,
) -> Connection:
    """Connect (or reconnect) the workspace to the account the key belongs to. With no
    `webhook_secret` and a `plan`, the bridge registers the workspace's webhook endpoint in the
    account itself and keeps its signing secret."""
    box.check()  # no encryption key: say so before asking Stripe anything
    mode = _checked_mode(api_key)
    account = _verify(gateways, api_key)
    row = take(session, workspace_id, account, mode, platform=False)
    _store_key(row, box, api_key)
    _claim_account(session)  # before anything is created in Stripe for it
    if webhook_secret:
        roll_webhook_secrets(row, box, webhook_secret)
    elif plan is not None and row.webhook_endpoint_id is None:
        gateway = gateways(api_key.strip(), account=row.account_id)
        row.webhook_endpoint_id, secret = endpoints.register(gateway, plan, workspace_id)
        set_webhook_secrets(row, box, [secret])
    elif workspace_id != DEFAULT_WORKSPACE and row.webhook_secrets_encrypted is None:
        raise BadRequest(
            "give the webhook signing secret (whsec_…), or set BRIDGE_PUBLIC_URL so that the "
            "bridge registers its webhook endpoint in the account itself"
        )
    session.flush()
    log.info("stripe connected", workspace_id=workspace_id, account_id=row.account_id, mode=mode)
    return row


def connect_account(
    session: Session, gateways: GatewayFactory, workspace_id: str, account_id: str, mode: str
) -> Connection:
    """Platform mode: connect the workspace to an account connected to the platform. Its calls
    go with the platform's key and `Stripe-Account`; its events arrive on the platform's
    Connect endpoint (no key or secret of its own is stored)."""
    if not account_id.startswith("acct_"):
        raise BadRequest("an account id starts with acct_")
    try:
        account = gateways.platform(account_id).retrieve_account()
    except StripeRejected as exc:
        raise BadRequest(f"the platform cannot act for {account_id}: {exc}") from None
    row = take(session, workspace_id, account, mode, platform=True)
    row.api_key_encrypted = row.api_key_last4 = None
    row.updated_at = utcnow()
    _claim_account(session)
    log.info("stripe account connected", workspace_id=workspace_id, account_id=account_id)
    return row


def _claim_account(session: Session) -> None:
    """Flush the row: a concurrent connect of the account elsewhere fails here (unique index)."""
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict("the account is connected to another workspace") from None


def take(
    session: Session, workspace_id: str, account: dict[str, Any], mode: str, *, platform: bool
) -> Connection:
    """The workspace's row, connected to `account` (created, or reconnected): refused when the
    workspace holds another account's data or mode, or another workspace holds the account.
    The workspace's own row is share-locked first: a concurrent delete waits, or went first."""
    if session.get(Workspace, workspace_id, with_for_update={"read": True}) is None:
        raise UnknownWorkspace(f"no workspace {workspace_id!r}")
    row = get(session, workspace_id, lock=True)
    if row is not None and row.account_id != account["id"]:
        raise Conflict(
            f"this workspace holds the data of {row.account_id}; connecting {account['id']} "
            "would mix two Stripe accounts (use another workspace for another account)"
        )
    if row is not None and row.mode != mode:
        raise Conflict(f"this workspace is connected in {row.mode} mode; the key is a {mode} key")
    holder = holder_of(session, account["id"], mode)
    if holder is not None and holder != workspace_id:
        raise Conflict(f"{account['id']} ({mode}) is connected to another workspace")
    if row is None:
        row = Connection(workspace_id=workspace_id, account_id=account["id"], mode=mode)
        session.add(row)
    if row.status != CONNECTED:
        row.connected_at, row.disconnected_at = utcnow(), None
    row.status, row.account_name, row.platform = CONNECTED, account_name(account), platform
    return row


def update_key(
    session: Session,
    box: SecretBox,
    gateways: GatewayFactory,
    workspace_id: str,
    api_key: str,
    webhook_secret: str | None = None,
) -> Connection:
    """A new key for the connected account: no reconnect, nothing lost."""
    box.check()
    mode = _checked_mode(api_key)
    row = get(session, workspace_id, lock=True)
    if row is None or not is_connected(row):
        raise Conflict("not connected: use `connect` first")
    if row.platform:
        raise Conflict("a platform connection has no key of its own (STRIPE_PLATFORM_KEY is used)")
    if mode != row.mode:
        raise Conflict(f"the new key is a {mode} key; this connection is in {row.mode} mode")
    account = _verify(gateways, api_key)
    if account["id"] != row.account_id:
        raise Conflict(
            f"the new key belongs to {account['id']}, not to the connected account {row.account_id}"
        )
    row.account_name = account_name(account) or row.account_name
    _store_key(row, box, api_key)
    if webhook_secret:
        roll_webhook_secrets(row, box, webhook_secret)
    log.info("stripe key updated", workspace_id=workspace_id, account_id=row.account_id)
    return row


def disconnect(
    session: Session,
    workspace_id: str,
    box: SecretBox | None = None,
    gateways: GatewayFactory | None = None,
) -> Connection:
    """Stop sync, pushes and event application at once; keep every record. The API key is
    forgotten; the signing secrets are kept so that webhooks are still verified and answered.
    A webhook endpoint the bridge registered is deleted from the account (with `box` and
    `gateways`); one Stripe could not delete now stays named on the connection."""
    row = get(session, workspace_id, lock=True)
    if row is None or not is_connected(row):
        raise Conflict("not connected")
    if row.webhook_endpoint_id and box is not None and gateways is not None:
        _remove_endpoint(row, box, gateways)
    row.status, row.disconnected_at, row.updated_at = DISCONNECTED, utcnow(), utcnow()
    row.api_key_encrypted = None
    log.info("stripe disconnected", workspace_id=workspace_id, account_id=row.account_id)
    return row


def _remove_endpoint(row: Connection, box: SecretBox, gateways: GatewayFactory) -> None:
    gateway = gateway_for(row, box, gateways)
    assert gateway is not None and row.webhook_endpoint_id is not None
    try:
        endpoints.remove(gateway, row.webhook_endpoint_id)
    except BridgeError as exc:
        log.warning(
            "could not delete the webhook endpoint; delete it in the Stripe dashboard",
            workspace_id=row.workspace_id,
            endpoint_id=row.webhook_endpoint_id,
            error=str(exc),
        )
        return
    row.webhook_endpoint_id = None


def _store_key(row: Connection, box: SecretBox, api_key: str) -> None:
    api_key = api_key.strip()
    row.api_key_encrypted, row.api_key_last4 = box.seal(api_key), api_key[-4:]
    row.updated_at = utcnow()


def api_key(row: Connection | None, box: SecretBox) -> str | None:
    if not is_connected(row) or row is None or row.api_key_encrypted is None:
        return None
    return box.open(row.api_key_encrypted)


def is_connected(row: Connection | None) -> bool:
    return row is not None and row.status == CONNECTED  # the one answer to "connected?"


def status_of(row: Connection | None) -> str:
    return row.status if row is not None else NOT_CONNECTED


def require_connected(session: Session, workspace_id: str, action: str) -> Connection:
    """The workspace's connection, or Conflict naming what was refused and why."""
    row = get(session, workspace_id)
    if row is None or not is_connected(row):
        raise Conflict(f"{action} refused: the Stripe connection is {status_of(row)}")
    return row


def connected_gateway(
    session_factory: sessionmaker[Session],
    box: SecretBox,
    gateways: GatewayFactory,
    workspace_id: str,
    action: str,
) -> StripeGateway:
    """A Stripe client with the workspace's key, or Conflict when not connected."""
    with session_factory() as session:
        gateway = gateway_for(require_connected(session, workspace_id, action), box, gateways)
    assert gateway is not None  # a connected row always holds its key
    return gateway


def gateway_for(
    row: Connection | None, box: SecretBox, gateways: GatewayFactory
) -> StripeGateway | None:
    """A Stripe client for a connected workspace's account (its key, or in platform mode the
    platform's with `Stripe-Account`; the account's rate budget)."""
    if row is not None and row.platform and is_connected(row):
        return gateways.platform(row.account_id)
    key = api_key(row, box)
    if row is None or key is None:
        return None
    expires = row.oauth_expires_at  # a Stripe App's token lives an hour: Stripe would 401
    if expires is not None and expires <= utcnow() + timedelta(minutes=1):
        raise errors.TokenExpired(f"the Stripe App's access token expired at {expires:%H:%M} UTC")
    return gateways(key, account=row.account_id)
