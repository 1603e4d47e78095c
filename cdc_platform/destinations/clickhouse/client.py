"""Connections to ClickHouse: a server over the native protocol, or embedded chdb.

Both are reached through :class:`ClickHouseClient` and run the same SQL; what differs between
servers (Debian's 18.16 and chdb's 26.x here) is detected once per connection into
:class:`Capabilities`, from which types (:mod:`.typemap`) and SQL are chosen — never from
version numbers or the kind of client.

- ``clickhouse://user@host:port/database``: a server, via clickhouse-driver (native protocol,
  port 9000 by default). The password never comes from the URL: it is read, when connecting,
  from ``$CDC_CLICKHOUSE_PASSWORD`` or from a secrets file.
- ``chdb:///path/to/dir``: embedded chdb with a persistent session in that directory, shared
  by every destination of the process that names the same directory.

Values travel columnar: clickhouse-driver's ``execute(..., columnar=True)`` for servers, an
Arrow IPC stream (``INSERT … FORMAT ArrowStream`` through chdb's streaming insert) for chdb.
Results come back as rows of plain Python values, ``String`` as ``bytes`` (state columns hold
binary), ``Tuple`` as ``tuple``, ``Map`` as ``dict``.

Values are never spliced into SQL text except through :func:`literal`, which escapes them.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import io
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from cdc_platform.destinations.clickhouse.typemap import quote_identifier

if TYPE_CHECKING:
    import pyarrow as pa

    from cdc_platform.destinations.clickhouse.typemap import ChType

log = logging.getLogger(__name__)

PASSWORD_ENV = "CDC_CLICKHOUSE_PASSWORD"
PASSWORD_FILE_ENV = "CDC_CLICKHOUSE_PASSWORD_FILE"


# --------------------------------------------------------------------------------------------
# Capabilities


@dataclass(frozen=True)
class Capabilities:
    """What the connected ClickHouse supports; every version-dependent choice reads these flags.

    Attributes:
        version: what ``SELECT version()`` returned (for messages only).
        datetime64: ``DateTime64`` exists (20.1+); without it timestamps are Int64 milliseconds.
        date32: ``Date32`` exists (21.9+); without it dates are ``Date`` (1970 … 2149).
        map: ``Map`` exists (21.1+); without it maps are JSON text.
        bool_type: ``Bool`` exists (21.12+); without it booleans are UInt8.
        named_tuple: ``Tuple(`name` T, …)`` with quoted names works; without it UDTs are JSON.
        tuple_arrays: an ``Array(Tuple(…))`` column stays one column; 18.16 flattens it into
            ``Nested`` sub-columns (``c.1``, ``c.2``) that cannot be written or read as ``c``,
            so such values are JSON without it.
        low_cardinality: ``LowCardinality`` is usable without an experimental setting (18.16 gates
            it); the schema history's label columns use it.
        wide_dates: ``DateTime64``/``Date32`` hold 1900 … 2299 (newer servers), not only
            1925 … 2283 (their first releases).
        final: ``SELECT … FROM t FINAL`` works on ReplacingMergeTree; without it the latest
            version of a row is found with ``argMax``.
        final_in_subquery: ``FINAL`` works inside subqueries, joins and views (``$current``).
    """

    version: str = ""
    datetime64: bool = False
    date32: bool = False
    map: bool = False
    bool_type: bool = False
    named_tuple: bool = False
    tuple_arrays: bool = False
    low_cardinality: bool = False
    wide_dates: bool = False
    final: bool = False
    final_in_subquery: bool = False

    def override(self, flags: dict[str, bool] | None) -> Capabilities:
        """These capabilities with some flags forced (to run the fallbacks on a newer server)."""
        if not flags:
            return self
        unknown = set(flags) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown ClickHouse capabilities: {sorted(unknown)}")
        return dataclasses.replace(self, **flags)  # type: ignore[arg-type]  # flags checked above


_PROBE_TABLE = "capability_probe"


def detect_capabilities(client: ClickHouseClient, meta_database: str) -> Capabilities:
    """Asks the server what it supports (cheap queries; a failing probe means "no").

    ``FINAL`` needs a ReplacingMergeTree table to be tried on: an empty one is created in
    ``meta_database``.
    """

    def works(sql: str) -> list[tuple[Any, ...]] | None:
        try:
            return client.query(sql)
        except Exception as exc:  # a probe failing is the answer, not an error
            if client.is_transient(exc):
                raise
            return None

    version = _text(client.query("SELECT version()")[0][0])
    families = {_text(r[0]) for r in client.query("SELECT name FROM system.data_type_families")}
    gated = works("SELECT value FROM system.settings WHERE name = 'allow_experimental_low_cardinality_type'")
    low_cardinality = "LowCardinality" in families and not (gated and _text(gated[0][0]) == "0")
    named = works("SELECT tupleElement(CAST((1, 'x') AS Tuple(`a b` UInt8, `c` String)), 'a b')")
    wide = works(
        "SELECT toString(toDateTime64('1900-01-01 00:00:00', 3, 'UTC')), toString(toDate32('1900-01-01'))"
    )
    probe = f"{quote_identifier(meta_database)}.{quote_identifier(_PROBE_TABLE)}"
    client.execute(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(meta_database)}")
    client.execute(
        f"CREATE TABLE IF NOT EXISTS {probe} (k UInt8, v UInt64, a Array(Tuple(UInt8, UInt8))) "
        "ENGINE = ReplacingMergeTree(v) ORDER BY k"
    )
    final = works(f"SELECT count() FROM {probe} FINAL") is not None
    final_sub = works(f"SELECT count() FROM (SELECT k FROM {probe} FINAL)") is not None
    probe_columns = client.query(
        f"SELECT name FROM system.columns WHERE database = {literal(meta_database)} "
        f"AND table = {literal(_PROBE_TABLE)}"
    )
    return Capabilities(
        version=version,
        datetime64="DateTime64" in families,
        date32="Date32" in families,
        map="Map" in families,
        bool_type="Bool" in families,
        named_tuple=named is not None and int(named[0][0]) == 1,
        tuple_arrays="a" in {_text(r[0]) for r in probe_columns},
        low_cardinality=low_cardinality,
        wide_dates=wide is not None
        and [_text(v) for v in wide[0]] == ["1900-01-01 00:00:00.000", "1900-01-01"],
        final=final,
        final_in_subquery=final and final_sub,
    )


def _text(v: Any) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


# --------------------------------------------------------------------------------------------
# SQL text


def literal(value: bytes | str | int) -> str:
    """A ClickHouse literal for a value: strings and bytes quoted with every non-printable byte escaped."""
    if isinstance(value, bool) or not isinstance(value, (bytes, str, int)):
        raise TypeError(f"no literal for {type(value).__name__}")
    if isinstance(value, int):
        return str(value)
    raw = value.encode("utf-8") if isinstance(value, str) else value
    out = ["'"]
    for b in raw:
        if b in (0x27, 0x5C) or b < 0x20 or b >= 0x7F:
            out.append(f"\\x{b:02X}")
        else:
            out.append(chr(b))
    out.append("'")
    return "".join(out)


def qualified(database: str, name: str) -> str:
    return f"{quote_identifier(database)}.{quote_identifier(name)}"


# --------------------------------------------------------------------------------------------
# Connection specs


class ClickHouseURLError(ValueError):
    """A ClickHouse destination URL that cannot be used (the message never repeats secrets)."""


@dataclass(frozen=True)
class ConnectionSpec:
    """Where a destination connects; prints without secrets.

    Attributes:
        kind: ``server`` (clickhouse-driver) or ``chdb``.
        host, port, user, database: for servers.
        path: the chdb session directory.
        password_file: a file holding the password (when ``$CDC_CLICKHOUSE_PASSWORD`` is unset;
            else ``$CDC_CLICKHOUSE_PASSWORD_FILE`` names it).
    """

    kind: str
    host: str = ""
    port: int = 9000
    user: str = "default"
    database: str = "default"
    path: str = ""
    password_file: str | None = None

    @classmethod
    def parse(cls, url: str, password_file: str | None = None) -> ConnectionSpec:
        """Reads ``clickhouse://user@host:port/database`` or ``chdb:///path``.

        Raises:
            ClickHouseURLError: unknown scheme, or a password in the URL.
        """
        parts = urlsplit(url)
        if parts.scheme == "chdb":
            path = unquote((parts.netloc or "") + parts.path)
            if not path:
                raise ClickHouseURLError("a chdb URL needs a directory: chdb:///path/to/dir")
            return cls("chdb", path=path)
        if parts.scheme != "clickhouse":
            raise ClickHouseURLError(
                f"unknown ClickHouse URL scheme {parts.scheme!r}: use clickhouse://user@host:port/db or chdb:///dir"
            )
        if parts.password is not None:
            raise ClickHouseURLError(
                f"the ClickHouse URL must not hold a password: set ${PASSWORD_ENV} or use a secrets file"
            )
        database = unquote(parts.path.lstrip("/")) or "default"
        return cls(
            "server",
            host=parts.hostname or "localhost",
            port=parts.port or 9000,
            user=unquote(parts.username) if parts.username else "default",
            database=database,
            password_file=password_file,
        )

    @property
    def redacted(self) -> str:
        """The URL, fit for logs."""
        if self.kind == "chdb":
            return f"chdb://{self.path}"
        return f"clickhouse://{self.user}@{self.host}:{self.port}/{self.database}"

    def password(self) -> str:
        """The password: ``$CDC_CLICKHOUSE_PASSWORD``, else the secrets file, else empty."""
        from_env = os.environ.get(PASSWORD_ENV)
        if from_env is not None:
            return from_env
        path = self.password_file or os.environ.get(PASSWORD_FILE_ENV)
        if path:
            try:
                return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:  # not a connection problem: no retry
                raise ClickHouseURLError(
                    f"cannot read the ClickHouse password file {path}: {exc.strerror}"
                ) from None
        return ""


# --------------------------------------------------------------------------------------------
# Clients


class ClickHouseClient(abc.ABC):
    """One connection; the SQL it runs is the same whatever the implementation."""

    spec: ConnectionSpec

    @abc.abstractmethod
    def execute(self, sql: str) -> None:
        """Runs a statement that returns nothing."""

    @abc.abstractmethod
    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Runs a query; rows of plain Python values (``String`` as ``bytes``)."""

    @abc.abstractmethod
    def query_columns(self, sql: str) -> list[pa.Array]:
        """Runs a query; its columns as Arrow arrays (``String`` as binary; scalar columns only)."""

    @abc.abstractmethod
    def insert(self, table: str, columns: Sequence[tuple[str, ChType]], data: Sequence[Any]) -> None:
        """Inserts columns (all the same length) into ``table`` (qualified SQL).

        A column is a list of values, or an Arrow array of the column type's :meth:`ChType.arrow`.
        """

    @abc.abstractmethod
    def is_transient(self, exc: BaseException) -> bool:
        """Whether retrying after ``exc`` may succeed (connection loss, overload)."""

    def reset(self) -> None:  # noqa: B027 - optional hook: embedded clients have no connection to drop
        """Drops the connection after a failure; the next call reconnects."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Releases the connection."""


# Server error codes worth a retry: timeouts, network errors, too many queries or parts,
# read-only replicas, keeper hiccups.
_TRANSIENT_CODES = frozenset({159, 202, 203, 209, 210, 242, 252, 425, 999})


class NativeClient(ClickHouseClient):
    """A ClickHouse server over the native protocol (clickhouse-driver)."""

    def __init__(self, spec: ConnectionSpec, *, connect_timeout: float = 10, timeout: float = 300) -> None:
        self.spec = spec
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self._client: Any = None

    def __repr__(self) -> str:
        return f"NativeClient({self.spec.redacted!r})"

    def _connection(self) -> Any:
        if self._client is None:
            from clickhouse_driver import Client

            self._client = Client(
                host=self.spec.host,
                port=self.spec.port,
                user=self.spec.user,
                password=self.spec.password(),
                database=self.spec.database,
                connect_timeout=self.connect_timeout,
                send_receive_timeout=self.timeout,
                settings={"strings_as_bytes": True},
            )
        return self._client

    def execute(self, sql: str) -> None:
        self._connection().execute(sql)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._connection().execute(sql)]

    def query_columns(self, sql: str) -> list[pa.Array]:
        import pyarrow as pa

        columns = self._connection().execute(sql, columnar=True)
        return [pa.array(list(c)) for c in columns]

    def insert(self, table: str, columns: Sequence[tuple[str, ChType]], data: Sequence[Any]) -> None:
        if not data or not len(data[0]):
            return
        names = ", ".join(quote_identifier(c) for c, _ in columns)
        import pyarrow as pa

        plain = [values.to_pylist() if isinstance(values, pa.Array) else values for values in data]
        self._connection().execute(
            f"INSERT INTO {table} ({names}) VALUES", plain, columnar=True, types_check=False
        )

    def is_transient(self, exc: BaseException) -> bool:
        from clickhouse_driver import errors

        if isinstance(exc, (errors.NetworkError, errors.SocketTimeoutError, EOFError, ConnectionError)):
            return True
        if isinstance(exc, errors.Error) and getattr(exc, "code", None) in _TRANSIENT_CODES:
            return True
        return isinstance(exc, OSError)

    def reset(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):  # dropping a broken connection
                self._client.disconnect()
        self._client = None

    def close(self) -> None:
        self.reset()


class _Sessions:
    """chdb sessions by directory: one per directory and process, shared and reference-counted."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open: dict[str, tuple[Any, int]] = {}

    def acquire(self, path: str) -> Any:
        key = str(Path(path).resolve())
        with self.lock:
            if key in self.open:
                session, refs = self.open[key]
                self.open[key] = (session, refs + 1)
                return session
            from chdb import session as chdb_session

            Path(key).mkdir(parents=True, exist_ok=True)
            session = chdb_session.Session(key)
            # State columns hold binary: Arrow results must carry String as binary, not UTF-8.
            session.query("SET output_format_arrow_string_as_string = 0")
            self.open[key] = (session, 1)
            return session

    def release(self, path: str) -> None:
        key = str(Path(path).resolve())
        with self.lock:
            if key not in self.open:
                return
            session, refs = self.open[key]
            if refs > 1:
                self.open[key] = (session, refs - 1)
                return
            del self.open[key]
        session.close()


_SESSIONS = _Sessions()


class ChdbClient(ClickHouseClient):
    """Embedded ClickHouse (chdb) with a persistent session directory."""

    def __init__(self, spec: ConnectionSpec) -> None:
        self.spec = spec
        self._session: Any = None

    def __repr__(self) -> str:
        return f"ChdbClient({self.spec.path!r})"

    def _connection(self) -> Any:
        if self._session is None:
            self._session = _SESSIONS.acquire(self.spec.path)
        return self._session

    def execute(self, sql: str) -> None:
        self._connection().query(sql, "CSV")

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        table = self._connection().query(sql, "ArrowTable")
        columns = [_plain_column(table.schema.field(i).type, col) for i, col in enumerate(table.columns)]
        return list(zip(*columns, strict=True)) if columns else []

    def query_columns(self, sql: str) -> list[pa.Array]:
        table = self._connection().query(sql, "ArrowTable")
        return [col.combine_chunks() for col in table.columns]

    def insert(self, table: str, columns: Sequence[tuple[str, ChType]], data: Sequence[Any]) -> None:
        if not data or not len(data[0]):
            return
        import pyarrow as pa

        arrays = [
            values.cast(ch.arrow()) if isinstance(values, pa.Array) else pa.array(values, type=ch.arrow())
            for (_, ch), values in zip(columns, data, strict=True)
        ]
        batch = pa.table(arrays, names=[c for c, _ in columns])
        sink = io.BytesIO()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_table(batch)
        names = ", ".join(quote_identifier(c) for c, _ in columns)
        with self._connection().send_insert(f"INSERT INTO {table} ({names})", "ArrowStream") as inserter:
            inserter.append(sink.getvalue())
            inserter.finish()

    def is_transient(self, exc: BaseException) -> bool:
        return False  # in-process: nothing to reconnect to

    def close(self) -> None:
        if self._session is not None:
            self._session = None
            _SESSIONS.release(self.spec.path)


def _plain_column(arrow_type: pa.DataType, column: Any) -> list[Any]:
    values = column.to_pylist()
    if _needs_plain(arrow_type):
        return [_plain(arrow_type, v) for v in values]
    return list(values)


def _needs_plain(t: pa.DataType) -> bool:
    import pyarrow as pa

    if pa.types.is_struct(t) or pa.types.is_map(t):
        return True
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _needs_plain(t.value_type)
    return False


def _plain(t: pa.DataType, v: Any) -> Any:
    """Arrow's Python values as clickhouse-driver returns them: struct → tuple, map → dict."""
    import pyarrow as pa

    if v is None:
        return None
    if pa.types.is_struct(t):
        return tuple(_plain(t.field(i).type, v[t.field(i).name]) for i in range(t.num_fields))
    if pa.types.is_map(t):
        return {_plain(t.key_type, k): _plain(t.item_type, x) for k, x in v}
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return [_plain(t.value_type, x) for x in v]
    return v


def connect(spec: ConnectionSpec, *, connect_timeout: float = 10) -> ClickHouseClient:
    """A client for ``spec`` (the connection itself opens on first use)."""
    if spec.kind == "chdb":
        return ChdbClient(spec)
    return NativeClient(spec, connect_timeout=connect_timeout)
