"""A workspace's Stripe connection: connect, update the key, roll signing secrets, disconnect.

One row per workspace. An API key is checked against Stripe (retrieve the account) before
anything is stored; keys and secrets are stored encrypted and shown only as their last 4
characters. Once an account is connected, the workspace holds that account's data: a key of
another account or another mode is refused, and disconnecting keeps every record. An account
(in one mode) is connected to at most one workspace at a time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from stripe_bridge.errors import BadRequest, BridgeError, ConfigError, Conflict
from stripe_bridge.event import Event
from stripe_bridge.models import (
    CONNECTED,
    DEFAULT_WORKSPACE,
    DISCONNECTED,
    NOT_CONNECTED,
    Connection,
    utcnow,
)
from stripe_bridge.secrets_box import SecretBox
from stripe_bridge.settings import Settings, mode_of_key
from stripe_bridge.stripe_api import StripeGateway, StripeRejected

log = structlog.get_logger(__name__)

GatewayFactory = Callable[[str], StripeGateway]
MAX_WEBHOOK_SECRETS = 2


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
) -> Connection:
    """Connect (or reconnect) the workspace to the account the key belongs to."""
    box.check()  # no encryption key: say so before asking Stripe anything
    mode = _checked_mode(api_key)
    account = _verify(gateways, api_key)
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
    row.status, row.account_name = CONNECTED, account_name(account)
    _store_key(row, box, api_key)
    if webhook_secret:
        roll_webhook_secrets(row, box, webhook_secret)
    session.flush()  # a concurrent connect of the same account fails here (a unique index)
    log.info("stripe connected", workspace_id=workspace_id, account_id=row.account_id, mode=mode)
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


def disconnect(session: Session, workspace_id: str) -> Connection:
    """Stop sync, pushes and event application at once; keep every record. The API key is
    forgotten; the signing secrets are kept so that webhooks are still verified and answered."""
    row = get(session, workspace_id, lock=True)
    if row is None or not is_connected(row):
        raise Conflict("not connected")
    row.status, row.disconnected_at, row.updated_at = DISCONNECTED, utcnow(), utcnow()
    row.api_key_encrypted = None
    log.info("stripe disconnected", workspace_id=workspace_id, account_id=row.account_id)
    return row


def _store_key(row: Connection, box: SecretBox, api_key: str) -> None:
    api_key = api_key.strip()
    row.api_key_encrypted, row.api_key_last4 = box.seal(api_key), api_key[-4:]
    row.updated_at = utcnow()


def webhook_secrets(row: Connection | None, box: SecretBox) -> tuple[str, ...]:
    if row is None or row.webhook_secrets_encrypted is None:
        return ()
    return tuple(orjson.loads(box.open(row.webhook_secrets_encrypted)))


def set_webhook_secrets(row: Connection, box: SecretBox, secrets: list[str]) -> None:
    if not secrets or any(not secret.startswith("whsec_") for secret in secrets):
        raise BadRequest("a webhook signing secret starts with whsec_")
    unique = list(dict.fromkeys(secrets))[:MAX_WEBHOOK_SECRETS]
    row.webhook_secrets_encrypted = box.seal(orjson.dumps(unique).decode())
    row.updated_at = utcnow()


def roll_webhook_secrets(row: Connection, box: SecretBox, value: str) -> None:
    """`whsec_new` rolls: the new secret first, the previous newest kept as the second.
    `whsec_a,whsec_b` replaces the set. Never more than two."""
    given = [part.strip() for part in value.split(",") if part.strip()]
    previous = list(webhook_secrets(row, box))
    set_webhook_secrets(row, box, given if len(given) > 1 or not given else given + previous[:1])


def api_key(row: Connection | None, box: SecretBox) -> str | None:
    if not is_connected(row) or row is None or row.api_key_encrypted is None:
        return None
    return box.open(row.api_key_encrypted)


def is_connected(row: Connection | None) -> bool:
    """The one answer to "is it connected?"."""
    return row is not None and row.status == CONNECTED


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
        key = api_key(require_connected(session, workspace_id, action), box)
    assert key is not None  # a connected row always holds its key
    return gateways(key)


def refusal(status: str, mode: str, livemode: bool) -> str | None:
    """Why a Stripe event must not be applied now, or None."""
    if status == DISCONNECTED:
        return "disconnected"
    if livemode != (mode == "live"):
        event_mode = "live" if livemode else "test"
        return f"mode mismatch: {event_mode} event, bridge is in {mode} mode"
    return None


def refusal_now(
    session: Session, settings: Settings, workspace_id: str, event: Event
) -> str | None:
    """The worker's check, in the applying transaction (no secrets decrypted)."""
    row = get(session, workspace_id)
    mode = row.mode if row is not None else settings.inbound_mode
    return refusal(status_of(row), mode, event.livemode)


def connect_from_settings(
    session_factory: sessionmaker[Session],
    box: SecretBox,
    gateways: GatewayFactory,
    settings: Settings,
) -> None:
    """STRIPE_API_KEY / STRIPE_WEBHOOK_SECRET in the environment connect the `default`
    workspace at start (serve, scheduler, migrate). An operator's explicit `disconnect` is
    respected: no auto-reconnect."""
    if not settings.stripe_api_key:
        return
    try:
        with session_factory.begin() as session:
            row = get(session, DEFAULT_WORKSPACE, lock=True)
            if row is not None and row.status == DISCONNECTED:
                log.warning(
                    "STRIPE_API_KEY is set but the connection was disconnected; not reconnecting"
                )
                return
            if api_key(row, box) != settings.stripe_api_key.strip():
                change = update_key if row is not None else connect
                row = change(session, box, gateways, DEFAULT_WORKSPACE, settings.stripe_api_key)
            env_secrets = settings.stripe_webhook_secrets[:MAX_WEBHOOK_SECRETS]
            if row and env_secrets and set(webhook_secrets(row, box)) != set(env_secrets):
                set_webhook_secrets(row, box, list(env_secrets))
    except BridgeError as exc:
        log.error("could not connect from STRIPE_API_KEY", error=str(exc))
