"""Workspaces: one per Veles tenant, each with its own Stripe connection and records.

`default` always exists (the migration creates it); the unscoped routes and commands act on it,
so a single-account install needs no notion of workspaces. Workspace tokens are shown once and
kept only as their SHA-256: a token names exactly one workspace."""

from __future__ import annotations

import hashlib
import re
import secrets

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from stripe_bridge.db import Base
from stripe_bridge.errors import BadRequest, Conflict, UnknownWorkspace
from stripe_bridge.models import (
    CONNECTED,
    DEFAULT_WORKSPACE,
    Connection,
    Workspace,
    WorkspaceToken,
    utcnow,
)

ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
RESERVED = frozenset({"connect"})  # `POST /webhooks/stripe/connect` is the platform's endpoint
TOKEN_PREFIX = "sbw_"  # noqa: S105 (a prefix, not a secret)


def check_id(workspace_id: str) -> str:
    if not ID_PATTERN.fullmatch(workspace_id):
        raise BadRequest("a workspace id is 1-64 letters, digits, '-' or '_'")
    if workspace_id in RESERVED:
        raise BadRequest(f"{workspace_id!r} is reserved and cannot be a workspace id")
    return workspace_id


def require(session: Session, workspace_id: str) -> Workspace:
    row = session.get(Workspace, workspace_id) if ID_PATTERN.fullmatch(workspace_id) else None
    if row is None:
        raise UnknownWorkspace(f"no workspace {workspace_id!r}")
    return row


def exists(session: Session, workspace_id: str) -> bool:
    return ID_PATTERN.fullmatch(workspace_id) is not None and (
        session.get(Workspace, workspace_id) is not None
    )


def create(session: Session, workspace_id: str, name: str | None = None) -> Workspace:
    check_id(workspace_id)
    if session.get(Workspace, workspace_id) is not None:
        raise Conflict(f"workspace {workspace_id!r} exists")
    row = Workspace(id=workspace_id, name=name or workspace_id, created_at=utcnow())
    session.add(row)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:  # created meanwhile by another request
        raise Conflict(f"workspace {workspace_id!r} exists") from None
    return row


def list_all(session: Session) -> list[Workspace]:
    return list(session.scalars(select(Workspace).order_by(Workspace.id)))


def delete_workspace(session: Session, workspace_id: str) -> None:
    """Delete a disconnected workspace and every record it holds (its Stripe account keeps its
    own data). `default` stays."""
    if session.get(Workspace, workspace_id, with_for_update=True) is None:  # connects wait
        raise UnknownWorkspace(f"no workspace {workspace_id!r}")
    if workspace_id == DEFAULT_WORKSPACE:
        raise Conflict("the default workspace cannot be deleted")
    connection = session.get(Connection, workspace_id, with_for_update=True)
    if connection is not None and connection.status == CONNECTED:
        raise Conflict(f"workspace {workspace_id!r} is connected; disconnect it first")
    for table in reversed(Base.metadata.sorted_tables):
        if "workspace_id" in table.c:
            session.execute(delete(table).where(table.c.workspace_id == workspace_id))
    session.execute(delete(Workspace).where(Workspace.id == workspace_id))


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(session: Session, workspace_id: str) -> str:
    """A new token for the workspace, answered once; only its hash is kept."""
    require(session, workspace_id)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(
        WorkspaceToken(
            token_hash=token_digest(token), workspace_id=workspace_id, created_at=utcnow()
        )
    )
    return token


def revoke_tokens(session: Session, workspace_id: str) -> int:
    """Every token of the workspace stops working at once; answers how many there were."""
    require(session, workspace_id)
    result = session.execute(
        delete(WorkspaceToken).where(WorkspaceToken.workspace_id == workspace_id)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def workspace_of_digest(session: Session, digest: str) -> str | None:
    """The workspace of the token whose SHA-256 hex digest this is, or None."""
    row = session.get(WorkspaceToken, digest)
    return row.workspace_id if row is not None else None
