"""Database engines and transactions for every service's own database.

SQLite (the default) runs in WAL mode and every write transaction starts with ``BEGIN
IMMEDIATE`` so two writers never deadlock on a lock upgrade. Services run on eventlet: SQLite
calls never yield to the hub, so a transaction that does no network I/O runs to its end without
another green thread interleaving — the rule every service follows is *never call RPC, dispatch
or HTTP inside an open transaction*. PostgreSQL (``postgresql+psycopg2://``) is greened by
eventlet's monkey patching, with ``shared.glue.pg_wait``'s wait callback in the services (a quick
answer is waited for in place, a slow one yields to the hub).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from sqlalchemy import MetaData, Table, TextClause, bindparam, create_engine, event, text
from sqlalchemy.engine import Connection, CursorResult, Engine
from sqlalchemy.exc import DBAPIError

if TYPE_CHECKING:
    from shared.core.events import Envelope
    from shared.core.eventstore import EventStore, PendingEvent

log = logging.getLogger(__name__)


def sqlite_busy_seconds() -> float:
    """``NTBCARE_SQLITE_BUSY_SECONDS`` [30]: how long a statement waits for another writer's lock
    before failing with "database is locked" (the fault suite shortens it to see the failure)."""
    return float(os.environ.get("NTBCARE_SQLITE_BUSY_SECONDS", "30"))


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": sqlite_busy_seconds()},
            json_serializer=_json_dumps,
            **kwargs,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event decide how a transaction starts (see below).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # FULL keeps every committed transaction across a power loss, not only a crash.
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection: Connection) -> None:
            # Straight to the driver (errors translated as SQLAlchemy does: a lock held past the
            # busy timeout is still an OperationalError "database is locked").
            if connection.get_execution_options().get("readonly"):
                execute_driver(connection, "BEGIN")
            else:
                execute_driver(connection, "BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql"):
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 20)
        engine = create_engine(url, json_serializer=_json_dumps, **kwargs)
        _ping_after_idle(engine, PING_AFTER_IDLE_SECONDS)
        _prepare_statements(engine)
        return engine
    return create_engine(url, json_serializer=_json_dumps, **kwargs)


_UNSYNCED_LOCK = threading.Lock()

#: A pooled PostgreSQL connection idle longer than this is pinged before it is handed out.
PING_AFTER_IDLE_SECONDS = 1.0


def _ping_after_idle(engine: Engine, idle_seconds: float) -> None:
    """Pessimistic disconnect handling, but only for connections that sat idle: SQLAlchemy's
    ``pool_pre_ping`` costs a round trip on *every* checkout — a third of a one-event append on
    PostgreSQL. A connection used a moment ago is not pinged: if the server went away since, the
    statement fails as a disconnect, SQLAlchemy invalidates the whole pool, and the caller's
    retry (a redelivered message, Meta's webhook retry) gets fresh connections."""
    import time

    from sqlalchemy.exc import DisconnectionError

    @event.listens_for(engine, "checkin")
    def _remember_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        checked_in_at = record.info.get("checked_in_at")
        if checked_in_at is None or time.monotonic() - checked_in_at < idle_seconds:
            return
        try:
            # In autocommit: the ping opens no transaction (psycopg2 would send a BEGIN first and
            # leave it open for the caller, whose read could then not run in autocommit).
            dbapi_connection.autocommit = True
            cursor = dbapi_connection.cursor()
            cursor.execute("SELECT 1")
            cursor.close()
            dbapi_connection.autocommit = False
        except engine.dialect.loaded_dbapi.Error as error:
            # The pool discards this connection and checks out (or opens) another.
            raise DisconnectionError(str(error)) from error


#: PostgreSQL: the most statements one connection prepares (a bound on each session's memory; the
#: services run a few dozen distinct statements each).
MAX_PREPARED_STATEMENTS = 400
_PREPARABLE = ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH")
_NAMED_PARAMETER = re.compile(r"%\((\w+)\)s")


def _prepare_statements(engine: Engine) -> None:
    """PostgreSQL: each statement SQLAlchemy runs on a connection is prepared there the first time
    (``PREPARE``) and then run by name (``EXECUTE name(values)``). psycopg2 sends every statement
    as text, so the server parsed, analysed and planned it again on every run — half of its CPU per
    statement in a profile of the platform. Only what can be prepared is: a statement PostgreSQL
    cannot prepare (a parameter whose type it cannot infer) runs as text, as before. Prepared
    statements belong to the session, survive a rollback, and go with the connection (SQLAlchemy
    clears ``info`` when it replaces one)."""

    @event.listens_for(engine, "before_cursor_execute", retval=True)
    def _run_prepared(connection: Connection, cursor: Any, statement: str, parameters: Any, _context: Any,
                      executemany: bool) -> tuple[str, Any]:
        # Not for a server-side cursor (a streaming read: it DECLAREs the statement itself).
        if executemany or getattr(cursor, "name", None) or not isinstance(parameters, dict) or \
                not statement.lstrip()[:6].upper().startswith(_PREPARABLE):
            return statement, parameters
        return _prepared(connection, cursor, statement), parameters


def _prepared(connection: Connection, cursor: Any, statement: str) -> str:
    prepared = connection.connection.info.setdefault("ntbcare_prepared", {})
    entry = prepared.get(statement)
    if entry is None:
        entry = prepared[statement] = (_prepare(cursor, statement, f"ntbcare_{len(prepared) + 1}")
                                       if len(prepared) < MAX_PREPARED_STATEMENTS else False)
    if not entry:
        return statement
    name, order = entry
    if not order:
        return f"EXECUTE {name}"
    return f"EXECUTE {name}(" + ", ".join(f"%({parameter})s" for parameter in order) + ")"


def _prepare(cursor: Any, statement: str, name: str) -> tuple[str, list[str]] | bool:
    """``PREPARE`` ``statement`` (psycopg2's ``%(name)s`` parameters as ``$1``…) as ``name`` on the
    cursor's connection; returns the name and the parameters in ``$n`` order, or False when the
    server refused it. Inside a transaction it is tried in a savepoint, so a refusal leaves the
    transaction as it was."""
    order: list[str] = []

    def numbered(match: re.Match[str]) -> str:
        if match.group(1) not in order:
            order.append(match.group(1))
        return f"${order.index(match.group(1)) + 1}"

    body = _NAMED_PARAMETER.sub(numbered, statement).replace("%%", "%")
    in_transaction = not cursor.connection.autocommit
    if in_transaction:
        # On its own: sent in one string with the PREPARE, a statement PostgreSQL cannot even parse
        # would leave no savepoint to roll back to (the whole string is parsed before any of it runs).
        cursor.execute("SAVEPOINT ntbcare_prepare")
    try:
        cursor.execute(f"PREPARE {name} AS {body}")
        if in_transaction:
            cursor.execute("RELEASE SAVEPOINT ntbcare_prepare")
    except Exception as error:
        if in_transaction:
            cursor.execute("ROLLBACK TO SAVEPOINT ntbcare_prepare; RELEASE SAVEPOINT ntbcare_prepare")
        log.debug("statement not prepared (%s): %s", error, statement[:200])
        return False
    return name, order


def execute_driver(connection: Connection, statement: str, parameters: Any = (), many: bool = False,
                   cursor: Any = None) -> Any:
    """Run SQL written for the driver (its own parameter style) on the connection's DBAPI
    connection, inside the connection's transaction, and return the DBAPI cursor.

    For the hottest statements (the event store's append): SQLAlchemy's per-statement machinery
    (execution context, result set-up, events) costs several times what SQLite takes to run a
    prepared INSERT. Errors are translated as SQLAlchemy translates them — the same
    ``IntegrityError`` / ``OperationalError`` classes, and a lost connection is invalidated so the
    pool does not hand it out again."""
    dbapi_connection = connection.connection.dbapi_connection
    if cursor is None:
        cursor = dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        if many:
            cursor.executemany(statement, parameters)
        else:
            cursor.execute(statement, parameters)
    except Exception as error:
        dialect = connection.dialect
        dbapi_error = dialect.loaded_dbapi.Error
        if not isinstance(error, dbapi_error):
            raise
        disconnected = dialect.is_disconnect(error, dbapi_connection, cursor)
        if disconnected and not connection.invalidated:
            connection.invalidate(error)
        raise DBAPIError.instance(statement, parameters, error, dbapi_error,
                                  connection_invalidated=disconnected, dialect=dialect) from error
    return cursor


class DriverQuery:
    """A Core SELECT compiled once per dialect and run straight on the driver's cursor, its rows
    plain tuples: for hot reads of many rows whose columns need no type processing (strings,
    integers), where SQLAlchemy's execution context and row objects cost more than the query.
    Parameters are given by bind name, as to ``Connection.execute``; binds the statement carries
    its own value for (literals, a LIMIT) are filled in. Expanding parameters (``IN`` lists) are
    not supported: compile-time rendering would need every value."""

    def __init__(self, statement: Any):
        self.statement = statement
        self._forms: dict[str, tuple[str, tuple[str, ...] | None, dict[str, Any]]] = {}

    def _form(self, dialect: Any) -> tuple[str, tuple[str, ...] | None, dict[str, Any]]:
        form = self._forms.get(dialect.name)
        if form is None:
            compiled = self.statement.compile(dialect=dialect)
            if compiled.post_compile_params or compiled.literal_execute_params:
                raise ValueError("a DriverQuery cannot take expanding parameters")
            fixed = {name: bind.value for bind, name in compiled.bind_names.items() if not bind.required}
            order = tuple(compiled.positiontup) if compiled.positional else None
            form = self._forms[dialect.name] = (compiled.string, order, fixed)
        return form

    def rows(self, connection: Connection, parameters: dict[str, Any]) -> list[tuple[Any, ...]]:
        sql, order, fixed = self._form(connection.dialect)
        values = {**fixed, **parameters}
        arguments: Any = tuple(values[name] for name in order) if order is not None else values
        return list(execute_driver(connection, sql, arguments).fetchall())


_PSYCOPG2_STATUS_READY = 1   # psycopg2.extensions.STATUS_READY: no transaction in progress


@contextlib.contextmanager
def autocommit(connection: Connection, enabled: bool = True) -> Iterator[Connection]:
    """PostgreSQL: the connection's statements each commit by themselves while the block runs —
    psycopg2 sends no BEGIN and its COMMIT does nothing. Set on the driver's connection (a flag of
    psycopg2's, no round trip) and undone before the pool takes it back; SQLAlchemy's own
    ``isolation_level="AUTOCOMMIT"`` would send a ``SET default_transaction_isolation`` on every
    return to the pool. Not for a block that must write atomically or hold a row lock."""
    dbapi_connection = connection.connection.dbapi_connection if enabled else None
    # A transaction already open on it (not one of ours) cannot switch: the block then runs inside
    # it, as every read did before.
    if dbapi_connection is None or dbapi_connection.status != _PSYCOPG2_STATUS_READY:
        yield connection
        return
    dbapi_connection.autocommit = True
    try:
        yield connection
    finally:
        if not dbapi_connection.closed:   # a lost connection is invalidated, not given back
            dbapi_connection.autocommit = False


def _json_dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class Transaction:
    """What a unit of work sees: the connection, and an ``append`` for new events."""

    def __init__(self, connection: Connection, database: "Database"):
        self.connection = connection
        self.database = database
        self.appended: list[Envelope] = []
        # Run in order just before the commit (after the unit of work's body, in its transaction):
        # work a unit of work gathers once for everything it handled, e.g. reporting's derivations.
        self.before_commit: list[Callable[[], None]] = []
        self.discarded = False
        # Set while several units of work share this transaction (shared.core.group_commit):
        # ``discard`` then only notes that the unit wrote nothing, and the group decides.
        self.grouped = False

    def execute(self, *args: Any, **kwargs: Any) -> CursorResult[Any]:
        return self.connection.execute(*args, **kwargs)

    def discard(self) -> None:
        """End the transaction here without committing, when it found nothing to write: no
        commit to make durable, and SQLite's write lock is let go at once. Nothing may be executed
        on it afterwards. In a group commit, only this unit's part ends (it must have written
        nothing)."""
        self.discarded = True
        if not self.grouped:
            self.connection.rollback()

    def append(self, pending_events: Iterable[PendingEvent]) -> list[Envelope]:
        if self.database.event_store is None:
            raise RuntimeError(f"{self.database.name} has no event store")
        envelopes = self.database.event_store.append(self.connection, pending_events)
        self.appended.extend(envelopes)
        return envelopes


class Database:
    """One service's database: its engine, its metadata, its event store, and hooks run after a
    commit that appended events (the outbox relay's wake-up call)."""

    def __init__(self, name: str, url: str, metadata: MetaData, event_store: EventStore | None = None):
        self.name = name
        self.url = url
        self.metadata = metadata
        self.engine = make_engine(url)
        self.event_store = event_store
        self.after_commit_hooks: list[Callable[[list[Envelope]], None]] = []
        self._unsynced: Engine | None = None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def create_all(self) -> None:
        self.metadata.create_all(self.engine)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        with self.engine.begin() as connection:
            tx = Transaction(connection, self)
            yield tx
            for step in () if tx.discarded else tx.before_commit:
                step()
        if tx.appended:
            for hook in self.after_commit_hooks:
                try:
                    hook(tx.appended)
                except Exception:  # a hook must never undo a committed transaction
                    log.exception("after-commit hook failed")

    @contextlib.contextmanager
    def read(self, streaming: bool = False) -> Iterator[Connection]:
        """A connection for reads. On PostgreSQL each statement runs as its own transaction
        (autocommit): at READ COMMITTED — the isolation every service runs at — each statement of
        a transaction takes its own snapshot anyway, so a BEGIN and a COMMIT around reads only cost
        two round trips (and two statements of the server's) for nothing. ``streaming``: the rows
        are fetched in pages through a server-side cursor, which PostgreSQL keeps only inside a
        transaction — that read keeps one."""
        with self.engine.connect() as connection:
            connection = connection.execution_options(readonly=True)
            with autocommit(connection, self.dialect == "postgresql" and not streaming):
                with connection.begin():
                    yield connection

    @property
    def unsynced_engine(self) -> Engine:
        """The engine for writes whose loss in a power cut costs nothing but a repeat. SQLite: one
        more engine on the same file whose connections commit with ``synchronous=NORMAL`` — in WAL
        mode still atomic and consistent, but without an fsync per commit (which blocks the whole
        process: the eventlet hub waits with it); the next ``synchronous=FULL`` commit of the
        service syncs the shared WAL file, these writes included. PostgreSQL: the service's own
        engine (``unsynced`` turns ``synchronous_commit`` off per transaction)."""
        if self.dialect != "sqlite":
            return self.engine
        with _UNSYNCED_LOCK:
            if self._unsynced is None:
                engine = make_engine(self.url)

                @event.listens_for(engine, "connect")
                def _unsynced_connect(dbapi_connection: Any, _record: Any) -> None:
                    # After make_engine's own listener (WAL, FULL, foreign keys): registered later.
                    dbapi_connection.execute("PRAGMA synchronous=NORMAL")

                self._unsynced = engine
            return self._unsynced

    @contextlib.contextmanager
    def unsynced(self) -> Iterator[Connection]:
        """A write transaction that does not wait for its commit to reach the disk: for writes a
        power cut may undo at no cost but a repeat — the outbox rows of published events (their
        loss republishes them, and every consumer ignores a repeat), the shared rate budgets."""
        with self.unsynced_engine.begin() as connection:
            if self.dialect == "postgresql":
                execute_driver(connection, "SET LOCAL synchronous_commit TO OFF")
            yield connection

    def ping(self) -> None:
        with self.read() as connection:
            connection.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()
        if self._unsynced is not None:
            self._unsynced.dispose()


def insert_on_conflict(table: Table, update_on: str | None = None,
                       columns: tuple[str, ...] | None = None) -> TextClause:
    """``INSERT … ON CONFLICT DO NOTHING`` (or ``DO UPDATE`` of every inserted column but
    ``update_on``, from ``excluded``), as text with typed parameters named after the columns: the
    same SQL on SQLite and PostgreSQL. ``columns``: the columns inserted (default every one; the
    others take their server defaults on insert — Python-side ``default=`` does not apply to text —
    and are left alone on update). Why text: SQLAlchemy's dialect ``insert().on_conflict_…``
    constructs have no cache key, so they are compiled again every time they run (it was a third
    of reporting's time); a text statement is compiled once."""
    names = list(columns) if columns is not None else list(table.columns.keys())
    quoted = ", ".join('"%s"' % name for name in names)
    values = ", ".join(":" + name for name in names)
    sql = 'INSERT INTO "%s" (%s) VALUES (%s) ON CONFLICT' % (table.name, quoted, values)
    if update_on is None:
        sql += " DO NOTHING"
    else:
        sql += ' ("%s") DO UPDATE SET ' % update_on + ", ".join(
            '"%s" = excluded."%s"' % (name, name) for name in names if name != update_on)
    return text(sql).bindparams(*(bindparam(name, type_=table.c[name].type) for name in names))
