"""Engine and session factories, and the few dialect-specific statements the bridge needs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Engine,
    MetaData,
    String,
    Table,
    and_,
    bindparam,
    create_engine,
    event,
    func,
    literal_column,
    select,
    tuple_,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.sql.dml import Insert

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    return create_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, hide_parameters=True
    )


def _sqlite_engine(url: str) -> Engine:
    """SQLite for the embedded default: WAL, a busy timeout, and BEGIN IMMEDIATE so that
    a read-then-write transaction takes the write lock up front instead of failing later."""
    path = url.split("///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy emit BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def insert_ignoring_conflicts(session: Session, table: Table) -> Insert:
    """`INSERT … ON CONFLICT DO NOTHING` for the session's dialect."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    raise NotImplementedError(f"unsupported database dialect: {dialect}")


_CLAIM_STATEMENTS: dict[tuple[str, type[Any]], Any] = {}


def claim_row_statement(session: Session, model: type[Any]) -> Any:
    """`INSERT … ON CONFLICT (workspace_id, id) DO UPDATE SET id = id RETURNING *` on the ORM
    entity, with the bind parameters `workspace_id` and `object_id`: one round trip that creates
    the row if missing, locks it for this transaction either way (DO UPDATE locks a conflicting
    row), and returns it. Built once per dialect and model (building it costs more than running
    it)."""
    dialect = session.get_bind().dialect.name
    key = (dialect, model)
    if key not in _CLAIM_STATEMENTS:
        if dialect == "postgresql":
            insert: Any = postgresql.insert(model)
        elif dialect == "sqlite":
            insert = sqlite.insert(model)
        else:
            raise NotImplementedError(f"unsupported database dialect: {dialect}")
        insert = insert.values(workspace_id=bindparam("workspace_id"), id=bindparam("object_id"))
        _CLAIM_STATEMENTS[key] = insert.on_conflict_do_update(
            index_elements=["workspace_id", "id"], set_={"id": insert.excluded.id}
        ).returning(model)
    return _CLAIM_STATEMENTS[key]


_CLAIM_MANY_STATEMENTS: dict[type[Any], Any] = {}


def claim_rows_statement(model: type[Any]) -> Any:
    """PostgreSQL: the set-based `claim_row_statement`, for a batch: `INSERT … SELECT
    :workspace_id, unnest(:object_ids) ORDER BY id ON CONFLICT (workspace_id, id) DO UPDATE SET
    id = id RETURNING *`. The ids are locked in sorted order, so two batches sharing rows cannot
    deadlock on them."""
    if model not in _CLAIM_MANY_STATEMENTS:
        ids = func.unnest(bindparam("object_ids", type_=postgresql.ARRAY(String)))
        workspace = bindparam("workspace_id", type_=String)
        source = select(workspace.label("workspace_id"), ids.label("id")).order_by(
            literal_column("id")
        )
        table = model.__table__
        insert = postgresql.insert(table).from_select(["workspace_id", "id"], source)
        claim = insert.on_conflict_do_update(
            index_elements=["workspace_id", "id"], set_={"id": insert.excluded.id}
        ).returning(*table.columns)
        # loaded as ORM entities, and executed as one statement (not as an ORM bulk INSERT)
        _CLAIM_MANY_STATEMENTS[model] = select(model).from_statement(claim)
    return _CLAIM_MANY_STATEMENTS[model]


def listed_ids(ids: Sequence[str]) -> Any:
    """PostgreSQL: `unnest(:ids) AS listed(id)`, the ids in the order given: the outer side of a
    `CROSS JOIN LATERAL (… WHERE workspace_id = … AND id = listed.id …)`, which looks each row
    up through its index whatever the table's statistics say (see `key_is_one_of`)."""
    return (
        func.unnest(bindparam(None, list(ids), type_=postgresql.ARRAY(String)))
        .table_valued("id")
        .render_derived(name="listed")
    )


def key_is_one_of(
    session: Session, model: Any, keys: Sequence[tuple[str, str]], column: Any = None
) -> ColumnElement[bool]:
    """`model`'s rows whose `(workspace_id, id)` is one of `keys`, as a WHERE condition that
    finds each through the primary key whatever the table's statistics say. With `column`,
    `(workspace_id, column)` instead (the SQLite side of `handlers/orders._by_stripe_id`; on
    PostgreSQL that join was planned as a scan of veles_orders, so it uses a LATERAL lookup).

    PostgreSQL: a join with `unnest(:workspace_ids, :ids) AS keys(workspace_id, id)` (in an
    UPDATE it becomes `UPDATE … FROM`). Written as `workspace_id = … AND id IN (…)` or as
    `(workspace_id, id) IN (…)`, the planner — on a table not analyzed yet, as when
    autovacuum is off or has not come round — estimated the workspace's rows at 0.5 % of the
    table and took `workspace_id = …` alone as the index condition: every row of the workspace
    was read to find the batch's hundred (measured: 55 ms instead of 1.6 ms for 100 of 30,000,
    growing with the table). With no constant on the table, probing the key per pair is the
    plan. SQLite: `(workspace_id, id) IN (…)`."""
    column = model.id if column is None else column
    if session.get_bind().dialect.name != "postgresql":
        return tuple_(model.workspace_id, column).in_(list(keys))
    listed = (
        func.unnest(
            bindparam(None, [workspace for workspace, _id in keys], type_=postgresql.ARRAY(String)),
            bindparam(
                None, [key_id for _workspace, key_id in keys], type_=postgresql.ARRAY(String)
            ),
        )
        .table_valued("workspace_id", "id")
        .render_derived(name="keys")
    )
    return and_(model.workspace_id == listed.c.workspace_id, column == listed.c.id)
