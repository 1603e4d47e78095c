"""ClickHouse destination: a current-state replica of each captured Cassandra table.

Per Cassandra table ``ks.t``, in database ``ks`` (the same content as PostgreSQL's tables):

- ``t``: one row per Cassandra row, ``ReplacingMergeTree(_cdc_version) ORDER BY _cdc_key``
  (the serialized Cassandra primary key, exact for every type). Typed key columns, one typed
  column per regular column (see :mod:`.typemap`), and the reconciliation state:
  ``_cdc_v:<col>`` (cell version with value bytes) or ``_cdc_c:<col>`` (collection
  elements), ``_cdc_liveness``, ``_cdc_deletion``; ``_cdc_exists``/``_cdc_expires_at`` say
  whether and until when the row exists (TTL), ``_cdc_refresh_at`` when a value in it
  expires; ``_cdc_ts`` the one write timestamp of a row in short form (state columns holding
  only value bytes, see :mod:`cdc_platform.destinations.state`); ``_cdc_version`` numbers the
  row's versions, ``_cdc_loaded_at`` when it was loaded.
- ``t$static``: the static row of each partition (tables with static columns), by ``_cdc_pk``.
- ``t$partitions``: partition deletions and range deletions, by ``_cdc_pk``, kept so that
  late writes are shadowed as Cassandra would.
- view ``t$current``: what ``SELECT *`` returns now (live rows with their static values,
  static-only partitions, TTL against the server clock).

Query the tables with ``FINAL`` (or through ``t$current``): a key may have several versions
until ClickHouse merges them away.

Why the merge happens here and not in ClickHouse: Cassandra reconciles per cell — the newer
write timestamp wins (a tombstone wins a tie, then the greater value), collections merge per
element, deletions shadow older cells by partition, range and row. ReplacingMergeTree only
replaces whole rows, keeping the one with the greatest version: one number per row cannot
order cells written at different timestamps (an update of ``v`` at ts 5 and of ``n`` at ts 3,
arriving in either order, must both survive; a replay of the ts 3 write must not undo the
ts 5 one). So applying a batch reads the latest version of every row it touches (``FINAL``,
or ``argMax`` where the server has no ``FINAL``), merges it with the batch under Cassandra's
rules (:func:`~cdc_platform.destinations.state.plan_batch`) and inserts the result as the
next version (``_cdc_version`` = stored + 1, 1 for new rows); ReplacingMergeTree then only has
to keep the latest version of each key, which it does. Rows the batch creates (no stored
version, no partition record; the keys are checked through a temporary table) skip the merge
and are inserted column by column as version 1.

ClickHouse has no transactions, so a batch is not atomic; it is idempotently re-appliable
instead. Each inserted row version is ``stored ⊔ batch`` for its key, and the merge is a join
(commutative, associative, idempotent): whatever subset of the inserts landed before a
failure, re-running the batch reads ``stored`` or ``stored ⊔ batch`` for each key and writes
``stored ⊔ batch`` again, with a greater version. Row tables are written before
``t$partitions``: a partition record that grew (a partition or range deletion) is what makes
``plan_batch`` re-read and re-materialise every row of the partition under the new
shadow, so it must land last — if it landed first, a rerun would see no growth and leave rows
materialised under the old shadow. Readers may see a batch half applied until it is rerun.
Writers of one table must not run concurrently (the versions of a key would tie): applies in
one process are serialised by a lock; across processes, give the load a Dagster concurrency
pool per destination.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pyarrow as pa

from cdc_platform.changes.arrow import column_values
from cdc_platform.changes.merge import Key, RowState, VisiblePartition
from cdc_platform.destinations import naming
from cdc_platform.destinations.base import (
    ApplyResult,
    DestinationError,
    MergingDestination,
    RetryPolicy,
    check_supported,
)
from cdc_platform.destinations.clickhouse.client import (
    Capabilities,
    ClickHouseClient,
    ConnectionSpec,
    connect,
    detect_capabilities,
    literal,
    qualified,
)
from cdc_platform.destinations.clickhouse.typemap import (
    NULLABLE_INT64,
    NULLABLE_STRING,
    STRING,
    UINT8,
    UINT64,
    ChType,
    Mapped,
    arrow_values,
    mapping,
    normal_type,
    quote_identifier,
    variants,
)
from cdc_platform.destinations.columnar import FreshColumns, unchanged_keys
from cdc_platform.destinations.state import (
    ClusteringOrder,
    FreshRows,
    PartitionRecord,
    RowId,
    RowWrite,
    WritePlan,
    decode_deletion,
    decode_pk,
    decode_ranges,
    decode_row_id,
    decode_row_state,
    encode_collection,
    encode_deletion,
    encode_key,
    encode_liveness,
    encode_ranges,
    encode_version,
    materialise,
    prefix_end,
    row_key,
    shadow_of,
    visible_state,
)
from cdc_platform.schema.model import Column, Table
from cdc_platform.schema.values import deserialize

log = logging.getLogger(__name__)

T = TypeVar("T")

META_DATABASE = "cdc_meta"
HISTORY_TABLE = "schema_history"

# Keeps each query's text well under ClickHouse's default max_query_size (256 KiB).
_MAX_LITERALS = 100_000
_NOW = "toInt64(toUnixTimestamp(now()))"
_MUTATION_TIMEOUT = 300.0


def _q(name: str) -> str:
    return quote_identifier(name)


@dataclass(frozen=True)
class Layout:
    """Destination names, column types and column lists for one Cassandra table.

    ``types`` maps (destination table, Cassandra column) to how its values are stored: the
    mapping for the server's capabilities, or for existing columns the variant that matches
    the type they were created with.
    """

    table: Table
    database: str
    main: str
    static: str
    partitions: str
    current: str
    caps: Capabilities
    types: Mapping[tuple[str, str], Mapped]

    @classmethod
    def of(
        cls,
        table: Table,
        caps: Capabilities,
        database_prefix: str = "",
        existing: Mapping[str, Mapping[str, str]] | None = None,
    ) -> Layout:
        """The layout of ``table``.

        Args:
            table: the Cassandra table.
            caps: the server's capabilities.
            database_prefix: prefix of the database holding the keyspace.
            existing: column name → type, per existing destination table.

        Raises:
            ValueError: an existing column has a type no mapping of its CQL type produces.
        """
        existing = existing or {}
        main = naming.table_name(table.name)
        static = naming.table_name(table.name, "$static")
        partitions = naming.table_name(table.name, "$partitions")
        types: dict[tuple[str, str], Mapped] = {}
        key_columns = table.partition_key + table.clustering
        for target, columns in (
            (main, key_columns + table.regular),
            (static, table.partition_key + table.static),
            (partitions, table.partition_key),
        ):
            have = existing.get(target, {})
            for c in columns:
                types[(target, c.name)] = _pick(table, target, c, caps, have.get(naming.value_column(c.name)))
        return cls(
            table,
            naming.table_name(database_prefix + table.keyspace),
            main,
            static,
            partitions,
            naming.table_name(table.name, "$current"),
            caps,
            types,
        )

    @property
    def key_columns(self) -> list[Column]:
        return self.table.partition_key + self.table.clustering

    def value_columns(self, static: bool) -> list[Column]:
        return self.table.static if static else self.table.regular

    def state_column(self, c: Column) -> str:
        return naming.collection_column(c.name) if c.type.is_multicell else naming.version_column(c.name)

    def mapped(self, target: str, c: Column) -> Mapped:
        return self.types[(target, c.name)]

    def _typed(self, target: str, columns: list[Column]) -> list[tuple[str, ChType]]:
        return [(naming.value_column(c.name), self.mapped(target, c).ch) for c in columns]

    def _with_state(self, target: str, columns: list[Column]) -> list[tuple[str, ChType]]:
        out: list[tuple[str, ChType]] = []
        for c in columns:
            out += [
                (naming.value_column(c.name), self.mapped(target, c).ch),
                (self.state_column(c), NULLABLE_STRING),
            ]
        return out

    def main_columns(self) -> list[tuple[str, ChType]]:
        """(name, type) of the main table, in table order (``_cdc_loaded_at`` is added by DDL)."""
        return [
            ("_cdc_key", STRING),
            ("_cdc_pk", STRING),
            *self._typed(self.main, self.key_columns),
            *self._with_state(self.main, self.table.regular),
            ("_cdc_liveness", NULLABLE_STRING),
            ("_cdc_deletion", NULLABLE_STRING),
            ("_cdc_exists", UINT8),
            ("_cdc_expires_at", NULLABLE_INT64),
            ("_cdc_refresh_at", NULLABLE_INT64),
            ("_cdc_ts", NULLABLE_INT64),
            ("_cdc_version", UINT64),
        ]

    def static_columns(self) -> list[tuple[str, ChType]]:
        return [
            ("_cdc_pk", STRING),
            *self._typed(self.static, self.table.partition_key),
            *self._with_state(self.static, self.table.static),
            ("_cdc_exists", UINT8),
            ("_cdc_expires_at", NULLABLE_INT64),
            ("_cdc_refresh_at", NULLABLE_INT64),
            ("_cdc_version", UINT64),
        ]

    def partition_columns(self) -> list[tuple[str, ChType]]:
        return [
            ("_cdc_pk", STRING),
            *self._typed(self.partitions, self.table.partition_key),
            ("_cdc_deletion", NULLABLE_STRING),
            ("_cdc_ranges", NULLABLE_STRING),
            ("_cdc_version", UINT64),
        ]

    def targets(self) -> list[tuple[str, list[tuple[str, ChType]], str]]:
        """(table, columns, sorting key) of every destination table."""
        out = [
            (self.main, self.main_columns(), "_cdc_key"),
            (self.partitions, self.partition_columns(), "_cdc_pk"),
        ]
        if self.table.static:
            out.append((self.static, self.static_columns(), "_cdc_pk"))
        return out

    def check(self) -> None:
        for what, cols in (
            ("main", self.main_columns()),
            ("static", self.static_columns()),
            ("partitions", self.partition_columns()),
        ):
            naming.check_unique(
                [c for c, _ in cols] + ["_cdc_loaded_at"], f"{self.table.qualified_name} {what} table"
            )

    def ident(self, name: str) -> str:
        return qualified(self.database, name)


def _pick(table: Table, target: str, c: Column, caps: Capabilities, existing: str | None) -> Mapped:
    if existing is None:
        return mapping(c.type, caps)
    want = normal_type(existing)
    for candidate in variants(c.type, caps):
        if normal_type(candidate.ch.sql()) == want:
            return candidate
    raise ValueError(
        f"column {naming.value_column(c.name)} of {target} is {existing}, the schema needs "
        f"{mapping(c.type, caps).ch.sql()}: Cassandra does not change column types; drop the "
        "destination table to rebuild it"
    )


class _Locks:
    """In-process locks per destination table: one writer per table at a time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.locks: dict[str, threading.Lock] = {}

    def get(self, name: str) -> threading.Lock:
        with self.lock:
            return self.locks.setdefault(name, threading.Lock())


_LOCKS = _Locks()


class ClickHouseDestination(MergingDestination):
    """Current-state replica in ClickHouse: a server or embedded chdb, behind one interface.

    Args:
        url: ``clickhouse://user@host:port/database`` (password from ``$CDC_CLICKHOUSE_PASSWORD``
            or ``password_file``, never the URL) or ``chdb:///path/to/dir``.
        name: destination name in errors, metadata and the schema history.
        database_prefix: prefix for the databases holding each keyspace.
        meta_database: database of ``schema_history`` (and the capability probe table).
        password_file: secrets file holding the password (e.g. ``/run/secrets/clickhouse``).
        retry: backoff policy for connection failures.
        capabilities: capability flags to force (e.g. ``{"map": False}`` to store maps as JSON
            on a server that has ``Map``); the rest is detected.
    """

    def __init__(
        self,
        url: str,
        *,
        name: str = "clickhouse",
        database_prefix: str = "",
        meta_database: str = META_DATABASE,
        password_file: str | None = None,
        retry: RetryPolicy | None = None,
        connect_timeout: float = 10,
        capabilities: dict[str, bool] | None = None,
    ) -> None:
        self.spec = ConnectionSpec.parse(url, password_file)
        self.name = name
        self.database_prefix = database_prefix
        self.meta_database = meta_database
        self.retry = retry or RetryPolicy()
        self.connect_timeout = connect_timeout
        self._forced = dict(capabilities or {})
        Capabilities().override(self._forced)  # unknown flags fail here, not on first use
        self._client: ClickHouseClient | None = None
        self._caps: Capabilities | None = None
        self._ensured: dict[str, Layout] = {}

    def __repr__(self) -> str:
        return f"ClickHouseDestination(name={self.name!r}, url={self.spec.redacted!r})"

    # -- connection -----------------------------------------------------------------------

    def client(self) -> ClickHouseClient:
        """The connection (opened on first use)."""
        if self._client is None:
            self._client = connect(self.spec, connect_timeout=self.connect_timeout)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None

    @property
    def capabilities(self) -> Capabilities:
        """What the server supports (detected once, with the forced flags applied)."""
        if self._caps is None:
            caps, _ = self._run(
                "capability detection", None, None, lambda c: detect_capabilities(c, self.meta_database)
            )
            self._caps = caps.override(self._forced)
            log.info("%s: ClickHouse %s, %s", self.name, self._caps.version, self._caps)
        return self._caps

    def _run(
        self, what: str, table: Table | None, batch: str | None, fn: Callable[[ClickHouseClient], T]
    ) -> tuple[T, int]:
        client = self.client()

        def attempt() -> T:
            try:
                return fn(client)
            except Exception as exc:
                if client.is_transient(exc):
                    client.reset()
                raise

        try:
            return self.retry.run(attempt, transient=client.is_transient, what=f"{self.name}: {what}")
        except DestinationError:
            raise
        except Exception as exc:
            raise DestinationError(
                f"{what} failed: {type(exc).__name__}: {_first_lines(exc)}",
                destination=self.name,
                table=table.qualified_name if table else None,
                batch=batch,
            ) from exc

    # -- schema ----------------------------------------------------------------------------

    def layout(self, table: Table) -> Layout:
        """The layout for ``table`` as ensured (or as it would be created)."""
        ensured = self._ensured.get(table.qualified_name)
        if ensured is not None and ensured.table is table:
            return ensured
        layout = Layout.of(table, self.capabilities, self.database_prefix)
        layout.check()
        return layout

    def ensure_table(self, table: Table) -> list[str]:
        check_supported(self.name, table)
        caps = self.capabilities
        (layout, changes), _ = self._run("schema update", table, None, lambda c: self._ensure(c, table, caps))
        self._ensured[table.qualified_name] = layout
        return changes

    def _ensure(self, client: ClickHouseClient, table: Table, caps: Capabilities) -> tuple[Layout, list[str]]:
        database = naming.table_name(self.database_prefix + table.keyspace)
        names = [naming.table_name(table.name, s) for s in ("", "$static", "$partitions", "$current")]
        existing: dict[str, dict[str, str]] = {}
        rows = client.query(
            "SELECT table, name, type FROM system.columns WHERE database = "
            f"{literal(database)} AND table IN ({', '.join(literal(n) for n in names)})"
        )
        for t, n, ty in rows:
            existing.setdefault(_str(t), {})[_str(n)] = _str(ty)
        try:
            layout = Layout.of(table, caps, self.database_prefix, existing)
            layout.check()
        except ValueError as exc:
            raise DestinationError(str(exc), destination=self.name, table=table.qualified_name) from None
        history = qualified(self.meta_database, HISTORY_TABLE)
        label = "LowCardinality(String)" if caps.low_cardinality else "String"
        client.execute(f"CREATE DATABASE IF NOT EXISTS {_q(self.meta_database)}")
        client.execute(
            f"CREATE TABLE IF NOT EXISTS {history} (destination {label}, database String, keyspace {label}, "
            f"`table` {label}, change String, seq UInt64, at DateTime DEFAULT now()) "
            "ENGINE = MergeTree ORDER BY (destination, keyspace, `table`, seq)"
        )
        client.execute(f"CREATE DATABASE IF NOT EXISTS {_q(layout.database)}")
        changes: list[str] = []
        for name, columns, key in layout.targets():
            have = existing.get(name)
            if not have:
                defs = [f"{_q(c)} {ch.sql()}" for c, ch in columns]
                defs.append("`_cdc_loaded_at` DateTime DEFAULT now()")
                client.execute(
                    f"CREATE TABLE IF NOT EXISTS {layout.ident(name)} ({', '.join(defs)}) "
                    f"ENGINE = ReplacingMergeTree(`_cdc_version`) ORDER BY {_q(key)}"
                )
                changes.append(f"created table {layout.database}.{name}")
                continue
            for c, ch in columns:
                if c not in have:
                    client.execute(f"ALTER TABLE {layout.ident(name)} ADD COLUMN {_q(c)} {ch.sql()}")
                    changes.append(f"added column {c} {ch.sql()} to {layout.database}.{name}")
                elif c.startswith("_cdc_") and normal_type(have[c]) != normal_type(ch.sql()):
                    raise DestinationError(
                        f"column {c} of {layout.database}.{name} is {have[c]}, expected {ch.sql()}: "
                        "not a table this destination created",
                        destination=self.name,
                        table=table.qualified_name,
                    )
        view_exists = layout.current in existing
        if view_exists:
            # A column dropped in Cassandra stays in the tables; the view, which shows what
            # Cassandra returns, loses it. Recorded once: when the view still shows it.
            wanted = {naming.value_column(c.name) for c in layout.key_columns + table.regular + table.static}
            changes += [
                f"column {c} is no longer in {table.qualified_name}: kept in {layout.database}.{layout.main} "
                "(rows written since hold NULL or the type's default there), no longer filled"
                for c in sorted(set(existing[layout.current]) - wanted)
            ]
        if changes or not view_exists:
            client.execute(f"DROP TABLE IF EXISTS {layout.ident(layout.current)}")
            client.execute(f"CREATE VIEW {layout.ident(layout.current)} AS {_view_sql(layout)}")
            verb = "recreated" if view_exists else "created"
            changes.append(f"{verb} view {layout.database}.{layout.current}")
        if changes:
            # seq orders the changes (``at`` has whole seconds): the recording clock in ns, plus the index.
            start = time.time_ns()
            client.insert(
                history,
                [(c, STRING) for c in ("destination", "database", "keyspace", "table", "change")]
                + [("seq", UINT64)],
                [
                    [self.name.encode()] * len(changes),
                    [layout.database.encode()] * len(changes),
                    [table.keyspace.encode()] * len(changes),
                    [table.name.encode()] * len(changes),
                    [c.encode() for c in changes],
                    [start + i for i in range(len(changes))],
                ],
            )
        return layout, changes

    def _layout(self, table: Table) -> Layout:
        layout = self._ensured.get(table.qualified_name)
        if layout is None or layout.table is not table:
            self.ensure_table(table)
            layout = self._ensured[table.qualified_name]
        return layout

    def schema_history(self, table: Table) -> list[str]:
        """The recorded schema changes of ``table`` in this destination, oldest first."""
        layout = self._layout(table)
        rows, _ = self._run(
            "read schema history",
            table,
            None,
            lambda c: c.query(
                f"SELECT change FROM {qualified(self.meta_database, HISTORY_TABLE)} WHERE destination = "
                f"{literal(self.name)} AND database = {literal(layout.database)} AND keyspace = "
                f"{literal(table.keyspace)} AND `table` = {literal(table.name)} ORDER BY seq"
            ),
        )
        return [_str(r[0]) for r in rows]

    # -- applying ----------------------------------------------------------------------------

    def _lock(self, layout: Layout) -> threading.Lock:
        return _LOCKS.get(f"{self.spec.redacted}|{layout.database}|{layout.main}")

    def _apply(
        self, table: Table, count: int, batch: str, plan_of: Callable[[_Store], WritePlan]
    ) -> ApplyResult:
        """Plans and writes a batch under the table's lock (writers of a table are serialised)."""
        layout = self._layout(table)
        started = time.perf_counter()

        def run(client: ClickHouseClient) -> tuple[int, int]:
            with self._lock(layout):
                store = _Store(client, layout, self.name)
                plan = plan_of(store)
                store.write_columns(plan.columns)  # row tables before partition records
                store.write_fresh(plan.fresh)
                store.write(plan.rows, plan.partitions)
                return plan.row_count, len(plan.partitions)

        (rows, parts), retries = self._run("apply", table, batch or None, run)
        return ApplyResult(
            self.name, table.qualified_name, count, rows, parts, time.perf_counter() - started, retries
        )

    def _pending(self, table: Table, plan_of: Callable[[_Store], WritePlan]) -> int:
        """Rows and partition records a plan would still write (it reads only)."""
        layout = self._layout(table)

        def plan(client: ClickHouseClient) -> int:
            p = plan_of(_Store(client, layout, self.name))
            return p.row_count + len(p.partitions)

        count, _ = self._run("check", table, None, plan)
        return int(count)

    def read_state(
        self, table: Table, now: int, keys: Sequence[Key] | None = None
    ) -> dict[Key, VisiblePartition]:
        layout = self._layout(table)

        def read(client: ClickHouseClient) -> dict[Key, VisiblePartition]:
            store = _Store(client, layout, self.name)
            pks = list(keys) if keys is not None else None
            return visible_state(
                table, store.load_partitions(table, pks), store.load_partition_rows(table, pks), now
            )

        state, _ = self._run("read", table, None, read)
        return state

    def truncate(self, table: Table) -> None:
        """Empties the table's state (to reload it from scratch, e.g. after a backfill from the start)."""
        layout = self._layout(table)

        def truncate(client: ClickHouseClient) -> None:
            with self._lock(layout):
                for name, _, _ in layout.targets():
                    client.execute(f"TRUNCATE TABLE {layout.ident(name)}")

        self._run("truncate", table, None, truncate)

    def refresh(self, table: Table, now: int) -> int:
        """Re-materialises rows holding values whose TTL passed by ``now``; returns how many."""
        layout = self._layout(table)

        def refresh(client: ClickHouseClient) -> int:
            with self._lock(layout):
                return _Store(client, layout, self.name).refresh(now)

        count, _ = self._run("refresh", table, None, refresh)
        return count

    def purge(self, table: Table, now: int, grace_seconds: int = 864_000) -> int:
        """Deletes rows that no longer exist and were last loaded over ``grace_seconds`` ago.

        Like Cassandra's ``gc_grace_seconds``: after purging, a write older than the purged
        deletion could reappear, so the grace must exceed how late data can arrive. Only the
        versions up to the dead one are deleted, so a version written meanwhile survives.
        """
        layout = self._layout(table)

        def purge(client: ClickHouseClient) -> int:
            with self._lock(layout):
                return _Store(client, layout, self.name).purge(now, now - grace_seconds)

        count, _ = self._run("purge", table, None, purge)
        return count


def _first_lines(exc: BaseException) -> str:
    """An exception's message without the server's stack trace."""
    text = str(exc)
    cut = text.find("Stack trace")
    if cut >= 0:
        text = text[:cut]
    return " ".join(line.strip() for line in text.strip().splitlines() if line.strip())


def _str(v: Any) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


def _chunks(items: Sequence[T], size: Callable[[T], int], limit: int = _MAX_LITERALS) -> Iterator[list[T]]:
    """Consecutive runs of ``items`` whose total ``size`` stays under ``limit``."""
    chunk: list[T] = []
    total = 0
    for item in items:
        n = size(item)
        if chunk and total + n > limit:
            yield chunk
            chunk, total = [], 0
        chunk.append(item)
        total += n
    if chunk:
        yield chunk


def _live(now: str) -> str:
    return f"`_cdc_exists` = 1 AND ifNull(`_cdc_expires_at` > {now}, 1)"


def _latest(
    layout: Layout, target: str, key: str, columns: list[str], where: str = "", post: str = ""
) -> str:
    """A query for ``columns`` of the latest version of each row of ``target``.

    ``where`` may only test the sorting ``key`` (all versions of a row share it); ``post``
    tests the latest version and may only use ``columns``. Without ``FINAL``, the latest
    version is the ``argMax`` by ``_cdc_version`` of a tuple of the columns (aggregating
    each column alone would skip NULLs and return an older value).
    """
    source = layout.ident(target)
    if layout.caps.final:
        conds = [f"({c})" for c in (where, post) if c]
        cols = ", ".join(_q(c) for c in columns)
        return f"SELECT {cols} FROM {source} FINAL" + (f" WHERE {' AND '.join(conds)}" if conds else "")
    others = [c for c in columns if c != key]
    packed = ", ".join(_q(c) for c in others) or "1"
    inner = (
        f"SELECT {_q(key)}, argMax(tuple({packed}), `_cdc_version`) AS `_cdc_latest` FROM {source}"
        + (f" WHERE {where}" if where else "")
        + f" GROUP BY {_q(key)}"
    )
    position = {c: i + 1 for i, c in enumerate(others)}
    cols = ", ".join(
        _q(c) if c == key else f"tupleElement(`_cdc_latest`, {position[c]}) AS {_q(c)}" for c in columns
    )
    return f"SELECT {cols} FROM ({inner})" + (f" WHERE {post}" if post else "")


def _subquery(layout: Layout, target: str, key: str, columns: list[str]) -> str:
    """The latest versions of ``target`` as a subquery (``FINAL`` only where subqueries allow it)."""
    if layout.caps.final_in_subquery:
        return f"(SELECT {', '.join(_q(c) for c in columns)} FROM {layout.ident(target)} FINAL)"
    forced = dataclasses.replace(layout, caps=layout.caps.override({"final": False}))
    return f"({_latest(forced, target, key, columns)})"


def _view_sql(layout: Layout) -> str:
    """``SELECT`` of the ``$current`` view: live rows with their live static values, static-only partitions."""
    t = layout.table
    keys = [naming.value_column(c.name) for c in layout.key_columns]
    regular = [naming.value_column(c.name) for c in t.regular]
    live = _live(_NOW)
    main_cols = ["_cdc_pk", *keys, *regular, "_cdc_exists", "_cdc_expires_at"]
    rows_source = _subquery(layout, layout.main, "_cdc_key", ["_cdc_key", *main_cols])
    if not t.static:
        return f"SELECT {', '.join(_q(c) for c in keys + regular)} FROM {rows_source} WHERE {live}"
    statics = [naming.value_column(c.name) for c in t.static]
    pk_cols = [naming.value_column(c.name) for c in t.partition_key]
    static_source = _subquery(
        layout, layout.static, "_cdc_pk", ["_cdc_pk", *pk_cols, *statics, "_cdc_exists", "_cdc_expires_at"]
    )
    live_static = (
        f"(SELECT {', '.join(_q(c) for c in ['_cdc_pk', *statics])} FROM {static_source} WHERE {live})"
    )
    rows = (
        f"SELECT {', '.join(_q(c) for c in keys + statics + regular)} FROM {rows_source} AS `_cdc_rows` "
        f"LEFT JOIN {live_static} AS `_cdc_statics` USING `_cdc_pk` WHERE {live}"
    )
    placeholders = [
        f"{layout.mapped(layout.main, c).ch.default_sql()} AS {_q(naming.value_column(c.name))}"
        for c in t.clustering
    ]
    regular_placeholders = [
        f"{layout.mapped(layout.main, c).ch.default_sql()} AS {_q(naming.value_column(c.name))}"
        for c in t.regular
    ]
    live_pks = f"SELECT `_cdc_pk` FROM {rows_source} WHERE {live}"
    static_only = (
        f"SELECT {', '.join([*(_q(c) for c in pk_cols), *placeholders, *(_q(c) for c in statics), *regular_placeholders])} "
        f"FROM {static_source} WHERE {live} AND `_cdc_pk` NOT IN ({live_pks})"
    )
    return f"{rows} UNION ALL {static_only}"


class _Store:
    """Reads and writes reconciliation state for one table; remembers the versions it read."""

    def __init__(self, client: ClickHouseClient, layout: Layout, destination: str) -> None:
        self.client = client
        self.layout = layout
        self.table = layout.table
        self.destination = destination
        self.n_pk = len(self.table.partition_key)
        self.n_ck = len(self.table.clustering)
        # (destination table, sorting key) → the stored version read; new versions are +1.
        self.versions: dict[tuple[str, bytes], int] = {}

    # StateStore ---------------------------------------------------------------------------

    def _by_keys(
        self, target: str, key: str, columns: list[str], keys: Sequence[bytes] | None, post: str = ""
    ) -> Iterator[tuple[Any, ...]]:
        if keys is None:
            yield from self.client.query(_latest(self.layout, target, key, columns, post=post))
            return
        for chunk in _chunks(sorted(set(keys)), lambda k: 4 * len(k) + 4):
            where = f"{_q(key)} IN ({', '.join(literal(k) for k in chunk)})"
            yield from self.client.query(_latest(self.layout, target, key, columns, where, post))

    def load_partitions(self, table: Table, pks: Sequence[Key] | None) -> dict[Key, PartitionRecord]:
        lay = self.layout
        columns = ["_cdc_pk", "_cdc_deletion", "_cdc_ranges", "_cdc_version"]
        keys = None if pks is None else [encode_key(pk) for pk in pks]
        out: dict[Key, PartitionRecord] = {}
        for raw_pk, deletion, ranges, version in self._by_keys(lay.partitions, "_cdc_pk", columns, keys):
            self.versions[(lay.partitions, raw_pk)] = int(version)
            out[decode_pk(raw_pk, self.n_pk)] = PartitionRecord(
                decode_deletion(deletion) if deletion else None, decode_ranges(ranges)
            )
        return out

    def _state_columns(self, static: bool) -> list[str]:
        lay = self.layout
        cols = [lay.state_column(c) for c in lay.value_columns(static)]
        if static:
            return ["_cdc_pk", *cols, "_cdc_version"]
        return ["_cdc_key", *cols, "_cdc_liveness", "_cdc_deletion", "_cdc_ts", "_cdc_version"]

    def _row_state(self, record: Sequence[Any], static: bool) -> RowState:
        return decode_row_state(self.layout.value_columns(static), record, static)

    def _rid(self, raw_key: bytes) -> RowId:
        return decode_row_id(raw_key, self.n_pk, self.n_ck)

    def _collect(self, out: dict[RowId, RowState], records: Iterable[tuple[Any, ...]], static: bool) -> None:
        lay = self.layout
        target = lay.static if static else lay.main
        for rec in records:
            self.versions[(target, rec[0])] = int(rec[-1])
            rid: RowId = (decode_pk(rec[0], self.n_pk), None) if static else self._rid(rec[0])
            out[rid] = self._row_state(rec, static)

    def load_rows(self, table: Table, ids: Sequence[RowId]) -> dict[RowId, RowState]:
        lay = self.layout
        out: dict[RowId, RowState] = {}
        regular = [row_key(pk, ck) for pk, ck in ids if ck is not None]
        statics = [encode_key(pk) for pk, ck in ids if ck is None]
        if regular:
            self._collect(
                out, self._by_keys(lay.main, "_cdc_key", self._state_columns(False), regular), False
            )
        if statics and self.table.static:
            self._collect(out, self._by_keys(lay.static, "_cdc_pk", self._state_columns(True), statics), True)
        return out

    def _staged(self) -> str:
        """The temporary table of keys a batch asks about (one per destination table: writers
        of a table are serialised). The keys travel as one columnar insert, not as literals: a
        batch's keys would need dozens of queries under max_query_size."""
        lay = self.layout
        digest = hashlib.sha1(f"{lay.database}.{lay.main}".encode()).hexdigest()[:12]
        staged = _q(f"_cdc_fresh_{digest}")
        self.client.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {staged} (k String, p String)")
        self.client.execute(f"TRUNCATE TABLE {staged}")
        return staged

    def stored_keys(self, table: Table, keys: Sequence[bytes], pks: Sequence[bytes]) -> set[bytes]:
        if not keys:
            return set()
        lay = self.layout
        staged = self._staged()
        self.client.insert(staged, [("k", STRING), ("p", STRING)], [list(keys), list(pks)])
        # Any stored version counts, so no FINAL is needed.
        out = {
            bytes(r[0])
            for r in self.client.query(
                f"SELECT DISTINCT `_cdc_key` FROM {lay.ident(lay.main)} WHERE `_cdc_key` IN (SELECT k FROM {staged})"
            )
        }
        out |= self._in_recorded_partitions(staged, keys, pks)
        # Not in a ``finally``: after a connection loss the table is gone with the session.
        self.client.execute(f"TRUNCATE TABLE {staged}")
        return out

    def _in_recorded_partitions(self, staged: str, keys: Sequence[bytes], pks: Sequence[bytes]) -> set[bytes]:
        """The staged keys whose partition has a stored record."""
        lay = self.layout
        recorded = {
            bytes(r[0])
            for r in self.client.query(
                f"SELECT DISTINCT `_cdc_pk` FROM {lay.ident(lay.partitions)} WHERE `_cdc_pk` IN (SELECT p FROM {staged})"
            )
        }
        return {k for k, p in zip(keys, pks, strict=True) if p in recorded} if recorded else set()

    def stored_fresh(self, table: Table, fresh: FreshColumns) -> tuple[set[bytes], set[bytes]]:
        """One read of the candidates' latest stored versions answers both: the keys read (and
        those in partitions with a record) are stored; those whose state columns equal the
        candidates' are unchanged (compared with Arrow, :func:`..columnar.unchanged_keys`)."""
        if not len(fresh):
            return set(), set()
        lay = self.layout
        staged = self._staged()
        keys, pks = fresh.keys.to_pylist(), fresh.pks.to_pylist()
        self.client.insert(staged, [("k", STRING), ("p", STRING)], [keys, pks])
        where = f"`_cdc_key` IN (SELECT k FROM {staged})"
        rows = self.client.query_columns(
            _latest(lay, lay.main, "_cdc_key", self._state_columns(False), where)
        )
        in_recorded = self._in_recorded_partitions(staged, keys, pks)
        self.client.execute(f"TRUNCATE TABLE {staged}")
        stored = set(rows[0].cast(pa.binary()).to_pylist()) if rows else set()
        return stored | in_recorded, unchanged_keys(table, fresh, rows)

    def load_partition_rows(self, table: Table, pks: Sequence[Key] | None) -> dict[RowId, RowState]:
        lay = self.layout
        out: dict[RowId, RowState] = {}
        main_cols = self._state_columns(False)
        if pks is None:
            self._collect(out, self.client.query(_latest(lay, lay.main, "_cdc_key", main_cols)), False)
        else:
            # Every row key starts with its encoded partition key (length-prefixed, so no
            # partition's prefix starts another's): a key range per partition uses the index.
            prefixes = sorted({encode_key(pk) for pk in pks})
            for chunk in _chunks(prefixes, lambda p: 8 * len(p) + 40):
                ranges = []
                for p in chunk:
                    upper = prefix_end(p)
                    cond = f"`_cdc_key` >= {literal(p)}"
                    if upper is not None:
                        cond += f" AND `_cdc_key` < {literal(upper)}"
                    ranges.append(f"({cond})")
                query = _latest(lay, lay.main, "_cdc_key", main_cols, " OR ".join(ranges))
                self._collect(out, self.client.query(query), False)
        if self.table.static:
            keys = None if pks is None else [encode_key(pk) for pk in pks]
            self._collect(out, self._by_keys(lay.static, "_cdc_pk", self._state_columns(True), keys), True)
        return out

    # Writing ------------------------------------------------------------------------------

    def _next_version(self, target: str, key: bytes) -> int:
        return self.versions.get((target, key), 0) + 1

    def _typed_keys(self, target: str, columns: list[Column], parts: Sequence[bytes | None]) -> list[Any]:
        out: list[Any] = []
        for c, raw in zip(columns, parts, strict=True):
            convert = self.layout.mapped(target, c).convert
            if raw is None:
                out.append(convert(None))
                continue
            try:
                value = deserialize(c.type, raw)
            except ValueError:
                value = None
            out.append(convert(value))
        return out

    def _values(self, target: str, columns: list[Column], w: RowWrite) -> list[Any]:
        out: list[Any] = []
        for c in columns:
            out.append(self.layout.mapped(target, c).convert(w.materialised.values.get(c.name)))
            if c.type.is_multicell:
                coll = w.state.collections.get(c.name)
                out.append(encode_collection(coll) if coll is not None else None)
            else:
                v = w.state.cells.get(c.name)
                out.append(encode_version(v) if v is not None else None)
        return out

    def _insert(self, target: str, columns: list[tuple[str, ChType]], rows: list[list[Any]]) -> None:
        if not rows:
            return
        data = [list(col) for col in zip(*rows, strict=True)]
        self.client.insert(self.layout.ident(target), columns, data)

    def write_fresh(self, fresh: FreshRows | None) -> None:
        """Inserts rows no stored version shares a key with (:func:`plan_batch` checked), as version 1."""
        if fresh:
            self._insert_fresh(
                fresh, lambda c, values: [self.layout.mapped(self.layout.main, c).convert(v) for v in values]
            )

    def write_columns(self, fresh: FreshColumns | None) -> None:
        """:meth:`write_fresh` for rows of a change batch, column-wise (:mod:`..columnar`)."""
        if fresh:
            self._insert_fresh(fresh, self._typed_column)

    def _typed_column(self, c: Column, values: pa.Array) -> pa.Array | list[Any]:
        """A change batch's typed column as the main table's column of ``c`` holds it."""
        mapped = self.layout.mapped(self.layout.main, c)
        converted = arrow_values(c.type, mapped, values)
        if converted is not None:
            return converted
        return [mapped.convert(v) for v in column_values(c.type, values)]

    def _insert_fresh(self, fresh: FreshRows | FreshColumns, typed: Callable[[Column, Any], Any]) -> None:
        """One insert of fresh rows, their typed values converted by ``typed``."""
        lay = self.layout
        n = len(fresh)
        data: list[Any] = [fresh.keys, fresh.pks]
        data += [typed(c, values) for c, values in zip(lay.key_columns, fresh.key_values, strict=True)]
        for c, values, versions in zip(self.table.regular, fresh.values, fresh.versions, strict=True):
            data += [typed(c, values), versions]
        # No row deletion, exists, no expiry, nothing to refresh, version 1.
        data += [fresh.liveness, [None] * n, [1] * n, [None] * n, [None] * n, fresh.timestamps, [1] * n]
        self.client.insert(lay.ident(lay.main), lay.main_columns(), data)

    def write(self, rows: list[RowWrite], partitions: list[tuple[Key, PartitionRecord]]) -> None:
        """Inserts the next versions: row tables first, partition records last (see the module doc)."""
        lay = self.layout
        t = self.table
        main = [w for w in rows if w.ck is not None]
        static = [w for w in rows if w.ck is None]
        if static and not t.static:
            raise DestinationError(
                "batch holds static-row changes for a table without static columns",
                destination=self.destination,
                table=t.qualified_name,
            )
        main_rows = []
        for w in main:
            key = row_key(w.pk, w.ck or ())
            m = w.materialised
            main_rows.append(
                [
                    key,
                    encode_key(w.pk),
                    *self._typed_keys(lay.main, lay.key_columns, list(w.pk) + list(w.ck or ())),
                    *self._values(lay.main, t.regular, w),
                    encode_liveness(w.state.liveness) if w.state.liveness else None,
                    encode_deletion(w.state.deletion) if w.state.deletion else None,
                    1 if m.exists else 0,
                    m.expires_at,
                    m.refresh_at,
                    None,  # _cdc_ts: merged rows keep full encodings
                    self._next_version(lay.main, key),
                ]
            )
        self._insert(lay.main, lay.main_columns(), main_rows)
        static_rows = []
        for w in static:
            key = encode_key(w.pk)
            m = w.materialised
            static_rows.append(
                [
                    key,
                    *self._typed_keys(lay.static, t.partition_key, list(w.pk)),
                    *self._values(lay.static, t.static, w),
                    1 if m.exists else 0,
                    m.expires_at,
                    m.refresh_at,
                    self._next_version(lay.static, key),
                ]
            )
        self._insert(lay.static, lay.static_columns(), static_rows)
        partition_rows = []
        for pk, rec in partitions:
            key = encode_key(pk)
            partition_rows.append(
                [
                    key,
                    *self._typed_keys(lay.partitions, t.partition_key, list(pk)),
                    encode_deletion(rec.deletion) if rec.deletion else None,
                    encode_ranges(rec.ranges),
                    self._next_version(lay.partitions, key),
                ]
            )
        self._insert(lay.partitions, lay.partition_columns(), partition_rows)

    def refresh(self, now: int) -> int:
        lay = self.layout
        t = self.table
        stale: dict[RowId, RowState] = {}
        due = f"ifNull(`_cdc_refresh_at` <= {literal(now)}, 0)"
        main_cols = [*self._state_columns(False)[:-1], "_cdc_refresh_at", "_cdc_version"]
        self._collect(
            stale, self.client.query(_latest(lay, lay.main, "_cdc_key", main_cols, post=due)), False
        )
        if t.static:
            static_cols = [*self._state_columns(True)[:-1], "_cdc_refresh_at", "_cdc_version"]
            records = self.client.query(_latest(lay, lay.static, "_cdc_pk", static_cols, post=due))
            self._collect(stale, records, True)
        if not stale:
            return 0
        parts = self.load_partitions(t, list({pk for pk, _ in stale}))
        order = ClusteringOrder(t)
        writes = []
        for (pk, ck), st in stale.items():
            shadow = shadow_of(t, order, parts.get(pk), ck)
            writes.append(
                RowWrite(pk, ck, st, shadow, materialise(t, st, shadow, static=ck is None, now=now))
            )
        self.write(writes, [])
        return len(writes)

    def purge(self, now: int, cutoff: int) -> int:
        lay = self.layout
        dead = (
            f"NOT ({_live(literal(now))}) AND toInt64(toUnixTimestamp(`_cdc_loaded_at`)) < {literal(cutoff)}"
        )
        deleted = 0
        targets = [(lay.main, "_cdc_key")] + ([(lay.static, "_cdc_pk")] if self.table.static else [])
        for target, key in targets:
            columns = [key, "_cdc_version", "_cdc_exists", "_cdc_expires_at", "_cdc_loaded_at"]
            by_version: dict[int, list[bytes]] = {}
            for rec in self.client.query(_latest(lay, target, key, columns, post=dead)):
                by_version.setdefault(int(rec[1]), []).append(rec[0])
            for version, keys in sorted(by_version.items()):
                for chunk in _chunks(keys, lambda k: 4 * len(k) + 4):
                    self.client.execute(
                        f"ALTER TABLE {lay.ident(target)} DELETE WHERE `_cdc_version` <= {literal(version)} "
                        f"AND {_q(key)} IN ({', '.join(literal(k) for k in chunk)})"
                    )
                deleted += len(keys)
            if by_version:
                self._await_mutations(target)
        return deleted

    def _await_mutations(self, target: str) -> None:
        """ALTER … DELETE runs in the background on older servers: waits until it is done."""
        deadline = time.monotonic() + _MUTATION_TIMEOUT
        query = (
            "SELECT count() FROM system.mutations WHERE database = "
            f"{literal(self.layout.database)} AND table = {literal(target)} AND is_done = 0"
        )
        while int(self.client.query(query)[0][0]) > 0:
            if time.monotonic() > deadline:
                raise DestinationError(
                    f"deletions in {self.layout.database}.{target} did not finish within {_MUTATION_TIMEOUT:.0f} s",
                    destination=self.destination,
                    table=self.table.qualified_name,
                )
            time.sleep(0.05)
