"""Hot statements run straight on the driver: ``fast(statement)`` wraps a Core statement built once
(a module constant) so that ``connection.execute(FAST, parameters)`` and ``tx.execute(FAST,
parameters)`` compile it once per dialect (and, for an INSERT or UPDATE, per set of parameter
names), then run the SQL on the driver's cursor inside the connection's transaction and hand back
a small result with the parts of SQLAlchemy's ``CursorResult`` the services use (``rowcount``,
``first``, ``one``, ``all``, ``scalar``, ``scalars``, ``mappings``, iteration).

Why: SQLAlchemy's execution of a cached statement — cache key, execution context, events, result
metadata, row objects — cost about 21 µs a keyed SELECT on SQLite where the statement itself takes
2, and a complaint runs about 130 statements across the services (``docs/performance.md``,
eleventh round). What SQLAlchemy does that matters is kept: each column's bind and result type
processing (a SQLite ``Boolean`` comes back ``True``/``False``), scalar Python-side column defaults
of an INSERT, errors translated to SQLAlchemy's exception classes (a lost connection invalidated),
and the engine's ``before_cursor_execute`` listeners — on PostgreSQL the hook that prepares each
statement once per connection (``shared.core.db._prepare_statements``), and whatever watches the
statements. A statement this path cannot run as SQLAlchemy would —
expanding ``IN`` parameters, ``RETURNING``, callable or server-side defaults to fetch, several
parameter sets at once, a connection outside a transaction — runs through Core, unchanged.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Optional, Sequence

from sqlalchemy import TextClause
from sqlalchemy.exc import MultipleResultsFound, NoResultFound

from shared.core.db import execute_driver

_MISSING = object()


class _Form:
    """One compiled form of a statement for one dialect (and set of parameter names)."""

    __slots__ = ("sql", "positional", "names", "fixed", "processors", "keys", "result_processors", "row_type",
                 "returns_rows")

    def __init__(self, sql: str, positional: bool, names: tuple[str, ...], fixed: dict[str, Any],
                 processors: dict[str, Callable[[Any], Any]], keys: tuple[str, ...] | None,
                 result_processors: tuple[Optional[Callable[[Any], Any]], ...] | None):
        self.sql, self.positional, self.names, self.fixed = sql, positional, names, fixed
        self.processors = processors
        self.keys, self.result_processors = keys, result_processors
        self.returns_rows = keys is not None
        self.row_type = _row_type(keys) if keys is not None else None


def _row_type(keys: tuple[str, ...]) -> type:
    index = {key: position for position, key in enumerate(keys)}

    class FastRow(tuple):  # type: ignore[type-arg]
        """A row: by position, by attribute (``row.complaint_id``) and as ``row._mapping``."""

        __slots__ = ()
        _fields = keys

        def __getattr__(self, name: str) -> Any:
            try:
                return self[index[name]]
            except KeyError:
                raise AttributeError(name) from None

        @property
        def _mapping(self) -> dict[str, Any]:
            return dict(zip(keys, self))

        def _asdict(self) -> dict[str, Any]:
            return dict(zip(keys, self))

    return FastRow


class FastStatement:
    """A Core statement run on the driver where it can be (module docstring). Executed like the
    statement itself: ``connection.execute(FAST, {...})``."""

    def __init__(self, statement: Any):
        self.statement = statement
        self._forms: dict[Any, _Form | None] = {}   # None: this form runs through Core
        # INSERT and UPDATE set the columns named in the parameters: one form per set of names.
        self._per_names = bool(getattr(statement, "is_dml", False)) and not getattr(statement, "is_delete", False)

    # SQLAlchemy's Connection.execute hands every executable to this method.
    def _execute_on_connection(self, connection: Any, distilled_parameters: list[Any], execution_options: Any) -> Any:
        if len(distilled_parameters) > 1 or execution_options or not connection.in_transaction():
            return connection.execute(self.statement, distilled_parameters or None,
                                      execution_options=execution_options or None)
        parameters = distilled_parameters[0] if distilled_parameters else {}
        dialect = connection.dialect
        key = (dialect.name, frozenset(parameters)) if self._per_names else dialect.name
        if key in self._forms:
            form = self._forms[key]
        else:
            form = self._forms[key] = self._compile(dialect, tuple(parameters))
        if form is None:
            return connection.execute(self.statement, parameters)
        return self._run(connection, form, parameters)

    def _compile(self, dialect: Any, names: tuple[str, ...]) -> _Form | None:
        statement = self.statement
        compiled = statement.compile(dialect=dialect, column_keys=list(names) if self._per_names else None)
        if compiled.post_compile_params or compiled.literal_execute_params or compiled.escaped_bind_names \
                or getattr(compiled, "returning", None) or getattr(compiled, "postfetch", None):
            return None
        fixed: dict[str, Any] = {}
        for bind, name in compiled.bind_names.items():
            if not bind.required and bind.callable is None:
                fixed[name] = bind.value
        for column in list(compiled.insert_prefetch) + list(compiled.update_prefetch):
            default = column.default if compiled.isinsert else column.onupdate
            if default is None or not default.is_scalar:
                return None            # a callable default: SQLAlchemy's execution context computes it
            fixed[column.key] = default.arg
        if compiled.positional:
            order = tuple(compiled.positiontup or ())
        else:
            order = tuple(dict.fromkeys(compiled.bind_names.values()))
        processors = {name: processor for name, processor in compiled._bind_processors.items()
                      if processor is not None}
        keys = result_processors = None
        if compiled.isinsert or compiled.isupdate or compiled.isdelete:
            pass
        elif isinstance(statement, TextClause):
            # Text: only a write (``shared.core.db.insert_on_conflict``); rows of text would need
            # the columns the text does not declare.
            if compiled.string.lstrip()[:6].upper() not in ("INSERT", "UPDATE", "DELETE"):
                return None
        else:
            columns = compiled._result_columns
            keys = tuple(column.keyname for column in columns)
            if not keys or len(set(keys)) != len(keys):
                return None
            result_processors = tuple(column.type._cached_result_processor(dialect, None) for column in columns)
            if not any(result_processors):
                result_processors = None
        return _Form(compiled.string, bool(compiled.positional), order, fixed, processors, keys, result_processors)

    def _run(self, connection: Any, form: _Form, parameters: dict[str, Any]) -> "FastResult":
        fixed, processors = form.fixed, form.processors
        values: dict[str, Any] = {}
        for name in form.names:
            value = parameters.get(name, _MISSING)
            if value is _MISSING:
                value = fixed.get(name)
            processor = processors.get(name)
            values[name] = value if processor is None else processor(value)
        arguments: Any = tuple(values[name] for name in form.names) if form.positional else values
        sql, cursor = form.sql, None
        listeners = connection.engine.dispatch.before_cursor_execute
        if listeners:
            # What SQLAlchemy runs before each statement, run here too: on PostgreSQL the engine's
            # hook that prepares it (``shared.core.db._prepare_statements``), and whatever else
            # watches the engine's statements (the tests that count them).
            cursor = connection.connection.dbapi_connection.cursor()
            for listener in listeners:
                sql, arguments = listener(connection, cursor, sql, arguments, None, False)
        cursor = execute_driver(connection, sql, arguments, cursor=cursor)
        if not form.returns_rows:
            rowcount = cursor.rowcount
            cursor.close()
            return FastResult((), form, rowcount)
        raw = cursor.fetchall()
        cursor.close()
        row_type, result_processors = form.row_type, form.result_processors
        if result_processors is None:
            rows = [row_type(row) for row in raw]   # type: ignore[misc]
        else:
            rows = [row_type(value if processor is None else processor(value)
                             for processor, value in zip(result_processors, row)) for row in raw]  # type: ignore[misc]
        return FastResult(rows, form, len(rows))


def fast(statement: Any) -> Any:
    """``statement`` run on the driver where it can be (see the module docstring). Typed ``Any``
    so that it goes wherever a Core statement goes."""
    return FastStatement(statement)


class FastResult:
    """The part of ``CursorResult`` the services use, over rows already fetched."""

    __slots__ = ("_rows", "_form", "rowcount")

    def __init__(self, rows: Sequence[tuple[Any, ...]], form: _Form, rowcount: int):
        self._rows, self._form, self.rowcount = rows, form, rowcount

    def keys(self) -> tuple[str, ...]:
        return self._form.keys or ()

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self._rows)

    def all(self) -> list[tuple[Any, ...]]:
        return list(self._rows)

    fetchall = all

    def first(self) -> tuple[Any, ...] | None:
        return self._rows[0] if self._rows else None

    def one(self) -> tuple[Any, ...]:
        row: tuple[Any, ...] = _one(self._rows)
        return row

    def one_or_none(self) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = _one_or_none(self._rows)
        return row

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalar_one(self) -> Any:
        return _one(self._rows)[0]

    def scalar_one_or_none(self) -> Any:
        row = self.one_or_none()
        return None if row is None else row[0]

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.first()

    def scalars(self) -> "_Values":
        return _Values([row[0] for row in self._rows])

    def mappings(self) -> "_Values":
        keys = self._form.keys or ()
        return _Values([dict(zip(keys, row)) for row in self._rows])

    def close(self) -> None:
        pass


class _Values:
    """``scalars()`` / ``mappings()``: the values, with the same ways to take them."""

    __slots__ = ("_values",)

    def __init__(self, values: list[Any]):
        self._values = values

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def all(self) -> list[Any]:
        return list(self._values)

    def first(self) -> Any:
        return self._values[0] if self._values else None

    def one(self) -> Any:
        return _one(self._values)

    def one_or_none(self) -> Any:
        return _one_or_none(self._values)


def _one(values: Sequence[Any]) -> Any:
    if not values:
        raise NoResultFound("No row was found when one was required")
    if len(values) > 1:
        raise MultipleResultsFound("Multiple rows were found when exactly one was required")
    return values[0]


def _one_or_none(values: Sequence[Any]) -> Any:
    if len(values) > 1:
        raise MultipleResultsFound("Multiple rows were found when one or none was required")
    return values[0] if values else None
