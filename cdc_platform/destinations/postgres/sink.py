"""PostgreSQL destination: a current-state replica of each captured Cassandra table.

Per Cassandra table ``ks.t``, in schema ``ks``:

- ``t``: one row per Cassandra row. Primary key ``_cdc_key`` (the serialized Cassandra
  primary key, exact for every type), the typed key columns, one typed column per regular
  column (see :mod:`.typemap`), and the reconciliation state: ``_cdc_v:<col>`` (cell
  version with value bytes) or ``_cdc_c:<col>`` (collection elements), ``_cdc_liveness``,
  ``_cdc_deletion``; ``_cdc_exists``/``_cdc_expires_at`` say whether and until when the row
  exists (TTL), ``_cdc_refresh_at`` when a value in it expires; ``_cdc_ts`` the one write
  timestamp of a row stored in short form (version columns holding only value bytes, see
  :mod:`cdc_platform.destinations.state`).
- ``t$static``: the static row of each partition (tables with static columns).
- ``t$partitions``: partition deletions and range deletions, kept so that late writes are
  shadowed as Cassandra would.
- view ``t$current``: what ``SELECT *`` returns now (live rows with their static values,
  static-only partitions).

A batch is applied in one transaction holding an advisory lock on the table: the keys it
touches are loaded, merged with the batch under Cassandra's rules
(:func:`~cdc_platform.destinations.state.plan_batch`), bulk-loaded with COPY into temporary
staging tables and swapped in. Rows the batch creates (no stored row, no partition record)
skip the merge and are COPYed straight into the table, column by column
(:class:`~cdc_platform.destinations.postgres.copy.ColumnCopy`). Connection failures are retried with backoff; the whole
transaction is replayed, which is safe because applying is idempotent.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from cdc_platform.changes.merge import Key, RowState, VisiblePartition
from cdc_platform.destinations import naming
from cdc_platform.destinations.base import (
    ApplyResult,
    DestinationError,
    MergingDestination,
    RetryPolicy,
    check_supported,
)
from cdc_platform.destinations.columnar import FreshColumns
from cdc_platform.destinations.postgres.copy import ColumnCopy
from cdc_platform.destinations.postgres.typemap import copy_type, pg_column, pg_type, pg_value
from cdc_platform.destinations.state import (
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
    prefix_end,
    row_key,
    visible_state,
)
from cdc_platform.schema.model import Column, Table
from cdc_platform.schema.types import CqlType, native
from cdc_platform.schema.values import deserialize

log = logging.getLogger(__name__)

META_SCHEMA = "cdc_meta"
_BIGINT = native("bigint")


def _transient(exc: BaseException) -> bool:
    return isinstance(
        exc, (psycopg.OperationalError, psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)
    )


@dataclass(frozen=True)
class Layout:
    """Destination names and column lists for one Cassandra table."""

    table: Table
    schema: str
    main: str
    static: str
    partitions: str
    current: str

    @classmethod
    def of(cls, table: Table, schema_prefix: str = "") -> Layout:
        main = naming.table_name(table.name)
        return cls(
            table,
            naming.table_name(schema_prefix + table.keyspace),
            main,
            naming.table_name(table.name, "$static"),
            naming.table_name(table.name, "$partitions"),
            naming.table_name(table.name, "$current"),
        )

    @property
    def key_columns(self) -> list[Column]:
        return self.table.partition_key + self.table.clustering

    def value_columns(self, static: bool) -> list[Column]:
        return self.table.static if static else self.table.regular

    def state_column(self, c: Column) -> str:
        return naming.collection_column(c.name) if c.type.is_multicell else naming.version_column(c.name)

    def main_columns(self) -> list[tuple[str, str]]:
        """(name, SQL type) of the main table, in table order."""
        cols = [("_cdc_key", "bytea"), ("_cdc_pk", "bytea")]
        cols += [(naming.value_column(c.name), pg_type(c.type)) for c in self.key_columns]
        for c in self.table.regular:
            cols += [(naming.value_column(c.name), pg_type(c.type)), (self.state_column(c), "bytea")]
        cols += [
            ("_cdc_liveness", "bytea"),
            ("_cdc_deletion", "bytea"),
            ("_cdc_exists", "boolean"),
            ("_cdc_expires_at", "bigint"),
            ("_cdc_refresh_at", "bigint"),
            ("_cdc_ts", "bigint"),
        ]
        return cols

    def static_columns(self) -> list[tuple[str, str]]:
        cols = [("_cdc_pk", "bytea")]
        cols += [(naming.value_column(c.name), pg_type(c.type)) for c in self.table.partition_key]
        for c in self.table.static:
            cols += [(naming.value_column(c.name), pg_type(c.type)), (self.state_column(c), "bytea")]
        cols += [("_cdc_exists", "boolean"), ("_cdc_expires_at", "bigint"), ("_cdc_refresh_at", "bigint")]
        return cols

    def partition_columns(self) -> list[tuple[str, str]]:
        cols = [("_cdc_pk", "bytea")]
        cols += [(naming.value_column(c.name), pg_type(c.type)) for c in self.table.partition_key]
        cols += [("_cdc_deletion", "bytea"), ("_cdc_ranges", "bytea")]
        return cols

    def check(self) -> None:
        for what, cols in (
            ("main", self.main_columns()),
            ("static", self.static_columns()),
            ("partitions", self.partition_columns()),
        ):
            naming.check_unique([c for c, _ in cols], f"{self.table.qualified_name} {what} table")

    def ident(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.schema, name)


class PostgresDestination(MergingDestination):
    """Current-state replica in PostgreSQL.

    Args:
        url: libpq connection string or URL (credentials from the environment or a secrets
            file, never from configuration).
        name: destination name in errors, metadata and the schema history.
        schema_prefix: prefix for the PostgreSQL schemas holding each keyspace.
        retry: backoff policy for connection failures.
    """

    def __init__(
        self,
        url: str,
        *,
        name: str = "postgres",
        schema_prefix: str = "",
        retry: RetryPolicy | None = None,
        connect_timeout: int = 10,
    ) -> None:
        self.url = url
        self.name = name
        self.schema_prefix = schema_prefix
        self.retry = retry or RetryPolicy()
        self.connect_timeout = connect_timeout
        self._conn: psycopg.Connection[Any] | None = None
        self._ensured: dict[str, Layout] = {}

    def __repr__(self) -> str:
        return f"PostgresDestination(name={self.name!r})"  # the URL may hold a password

    # -- connection -----------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.url, connect_timeout=self.connect_timeout)
        return self._conn

    def _reset(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # closing a broken connection
                self._conn.close()
        self._conn = None

    def close(self) -> None:
        self._reset()

    def _run(self, what: str, table: Table | None, batch: str | None, fn: Any) -> tuple[Any, int]:
        def attempt() -> Any:
            conn = self._connection()
            try:
                with conn.transaction():
                    return fn(conn)
            except Exception:
                if conn.closed or conn.broken:
                    self._reset()
                raise

        try:
            return self.retry.run(attempt, transient=_transient, what=f"{self.name}: {what}")
        except DestinationError:
            raise
        except Exception as exc:
            raise DestinationError(
                f"{what} failed: {type(exc).__name__}: {exc}",
                destination=self.name,
                table=table.qualified_name if table else None,
                batch=batch,
            ) from exc

    # -- schema ----------------------------------------------------------------------------

    def layout(self, table: Table) -> Layout:
        layout = Layout.of(table, self.schema_prefix)
        layout.check()
        return layout

    def ensure_table(self, table: Table) -> list[str]:
        check_supported(self.name, table)
        layout = self.layout(table)
        changes, _ = self._run("schema update", table, None, lambda conn: self._ensure(conn, layout))
        self._ensured[table.qualified_name] = layout
        return list(changes)

    def _ensure(self, conn: psycopg.Connection[Any], layout: Layout) -> list[str]:
        t = layout.table
        conn.execute(sql.SQL("SELECT pg_advisory_xact_lock(%s)"), (_lock_id(f"schema:{layout.schema}"),))
        self._ensure_schema_history(conn)
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(layout.schema)))
        changes: list[str] = []
        tables = [
            (layout.main, layout.main_columns(), "_cdc_key"),
            (layout.partitions, layout.partition_columns(), "_cdc_pk"),
        ]
        if t.static:
            tables.append((layout.static, layout.static_columns(), "_cdc_pk"))
        for name, columns, pkey in tables:
            existing = self._existing_columns(conn, layout.schema, name)
            if not existing:
                defs: list[sql.Composable] = [
                    sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(ty)) for c, ty in columns
                ]
                defs.append(sql.SQL("_cdc_loaded_at timestamptz NOT NULL DEFAULT now()"))
                defs.append(sql.SQL("PRIMARY KEY ({})").format(sql.Identifier(pkey)))
                conn.execute(
                    sql.SQL("CREATE TABLE {} ({})").format(layout.ident(name), sql.SQL(", ").join(defs))
                )
                changes.append(f"created table {layout.schema}.{name}")
                continue
            for c, ty in columns:
                if c not in existing:
                    conn.execute(
                        sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                            layout.ident(name), sql.Identifier(c), sql.SQL(ty)
                        )
                    )
                    changes.append(f"added column {c} {ty} to {layout.schema}.{name}")
                elif existing[c] != _normal_type(ty):
                    raise DestinationError(
                        f"column {c} of {layout.schema}.{name} is {existing[c]}, the schema needs {ty}: "
                        "Cassandra does not change column types; drop the destination table to rebuild it",
                        destination=self.name,
                        table=t.qualified_name,
                    )
        # Rows of a partition are found through the primary key (their keys share the partition
        # key as a prefix, see _Store.load_partition_rows); earlier versions kept an index on
        # _cdc_pk, which every row insert paid for.
        conn.execute(
            sql.SQL("DROP INDEX IF EXISTS {}.{}").format(
                sql.Identifier(layout.schema), sql.Identifier(naming.table_name(layout.main, "$pk"))
            )
        )
        keys = sql.SQL(", ").join(sql.Identifier(naming.value_column(c.name)) for c in layout.key_columns)
        conn.execute(
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
                sql.Identifier(naming.table_name(layout.main, "$keys")), layout.ident(layout.main), keys
            )
        )
        view_exists = self._view_exists(conn, layout)
        if view_exists:
            # A column dropped in Cassandra stays in the tables with the values it had; the
            # view, which shows what Cassandra returns, loses it. Recorded once: when the
            # view still shows it.
            shown = set(self._existing_columns(conn, layout.schema, layout.current))
            wanted = {naming.value_column(c.name) for c in layout.key_columns + t.regular + t.static}
            changes += [
                f"column {c} is no longer in {t.qualified_name}: kept in {layout.schema}.{layout.main} "
                "with the values it had, no longer filled"
                for c in sorted(shown - wanted)
            ]
        if changes or not view_exists:
            self._create_view(conn, layout)
            if view_exists:
                changes.append(f"recreated view {layout.schema}.{layout.current}")
            else:
                changes.append(f"created view {layout.schema}.{layout.current}")
        self._record_schema_changes(conn, t, changes)
        return changes

    @staticmethod
    def _ensure_schema_history(conn: psycopg.Connection[Any]) -> None:
        """Creates ``cdc_meta.schema_history`` (shared by every destination in the database)."""
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(META_SCHEMA)))
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {}.schema_history ("
                "id bigserial PRIMARY KEY, destination text NOT NULL, keyspace text NOT NULL, "
                '"table" text NOT NULL, change text NOT NULL, at timestamptz NOT NULL DEFAULT now())'
            ).format(sql.Identifier(META_SCHEMA))
        )

    def _record_schema_changes(self, conn: psycopg.Connection[Any], t: Table, changes: list[str]) -> None:
        """Appends what changed to the destination's schema history (``cdc_meta.schema_history``)."""
        for change in changes:
            conn.execute(
                sql.SQL(
                    'INSERT INTO {}.schema_history (destination, keyspace, "table", change) VALUES (%s, %s, %s, %s)'
                ).format(sql.Identifier(META_SCHEMA)),
                (self.name, t.keyspace, t.name, change),
            )

    @staticmethod
    def _existing_columns(conn: psycopg.Connection[Any], schema: str, table: str) -> dict[str, str]:
        rows = conn.execute(
            "SELECT column_name, format_type(a.atttypid, a.atttypmod) FROM information_schema.columns c "
            "JOIN pg_attribute a ON a.attrelid = (quote_ident(c.table_schema) || '.' || quote_ident(c.table_name))::regclass "
            "AND a.attname = c.column_name WHERE table_schema = %s AND table_name = %s",
            (schema, table),
        ).fetchall()
        return {r[0]: r[1] for r in rows}

    @staticmethod
    def _view_exists(conn: psycopg.Connection[Any], layout: Layout) -> bool:
        row = conn.execute(
            "SELECT 1 FROM information_schema.views WHERE table_schema = %s AND table_name = %s",
            (layout.schema, layout.current),
        ).fetchone()
        return row is not None

    def _create_view(self, conn: psycopg.Connection[Any], layout: Layout) -> None:
        t = layout.table
        now = sql.SQL("extract(epoch FROM now())::bigint")
        live = sql.SQL("{a}._cdc_exists AND ({a}._cdc_expires_at IS NULL OR {a}._cdc_expires_at > {now})")
        keys = [
            sql.SQL("r.{}").format(sql.Identifier(naming.value_column(c.name))) for c in layout.key_columns
        ]
        regular = [sql.SQL("r.{}").format(sql.Identifier(naming.value_column(c.name))) for c in t.regular]
        conn.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(layout.ident(layout.current)))
        if not t.static:
            query = sql.SQL("SELECT {} FROM {} r WHERE {}").format(
                sql.SQL(", ").join(keys + regular),
                layout.ident(layout.main),
                live.format(a=sql.SQL("r"), now=now),
            )
        else:
            static_live = live.format(a=sql.SQL("s"), now=now)
            statics = [
                sql.SQL("CASE WHEN {} THEN s.{} END AS {}").format(
                    static_live,
                    sql.Identifier(naming.value_column(c.name)),
                    sql.Identifier(naming.value_column(c.name)),
                )
                for c in t.static
            ]
            rows = sql.SQL("SELECT {} FROM {} r LEFT JOIN {} s ON s._cdc_pk = r._cdc_pk WHERE {}").format(
                sql.SQL(", ").join(keys + statics + regular),
                layout.ident(layout.main),
                layout.ident(layout.static),
                live.format(a=sql.SQL("r"), now=now),
            )
            pk_cols = [
                sql.SQL("s.{}").format(sql.Identifier(naming.value_column(c.name))) for c in t.partition_key
            ]
            nulls = [
                sql.SQL("NULL::{} AS {}").format(
                    sql.SQL(pg_type(c.type)), sql.Identifier(naming.value_column(c.name))
                )
                for c in t.clustering
            ]
            nulls_regular = [
                sql.SQL("NULL::{} AS {}").format(
                    sql.SQL(pg_type(c.type)), sql.Identifier(naming.value_column(c.name))
                )
                for c in t.regular
            ]
            static_only = sql.SQL(
                "SELECT {} FROM {} s WHERE {} AND NOT EXISTS (SELECT 1 FROM {} r WHERE r._cdc_pk = s._cdc_pk AND {})"
            ).format(
                sql.SQL(", ").join(
                    pk_cols
                    + nulls
                    + [sql.SQL("s.{}").format(sql.Identifier(naming.value_column(c.name))) for c in t.static]
                    + nulls_regular
                ),
                layout.ident(layout.static),
                static_live,
                layout.ident(layout.main),
                live.format(a=sql.SQL("r"), now=now),
            )
            query = sql.SQL("{} UNION ALL {}").format(rows, static_only)
        conn.execute(sql.SQL("CREATE VIEW {} AS {}").format(layout.ident(layout.current), query))

    def _layout(self, table: Table) -> Layout:
        layout = self._ensured.get(table.qualified_name)
        if layout is None or layout.table is not table:
            self.ensure_table(table)
            layout = self._ensured[table.qualified_name]
        return layout

    # -- applying ----------------------------------------------------------------------------

    def _apply(
        self, table: Table, count: int, batch: str, plan_of: Callable[[_Store], WritePlan]
    ) -> ApplyResult:
        """Plans and writes a batch in one transaction, under the table's advisory lock."""
        layout = self._layout(table)
        started = time.perf_counter()

        def transaction(conn: psycopg.Connection[Any]) -> tuple[int, int]:
            plan = write_planned(conn, layout, self.name, plan_of)
            return plan.row_count, len(plan.partitions)

        (rows, parts), retries = self._run("apply", table, batch or None, transaction)
        return ApplyResult(
            self.name, table.qualified_name, count, rows, parts, time.perf_counter() - started, retries
        )

    def _pending(self, table: Table, plan_of: Callable[[_Store], WritePlan]) -> int:
        """Rows and partition records a plan would still write (it reads only)."""
        layout = self._layout(table)

        def plan(conn: psycopg.Connection[Any]) -> int:
            p = plan_of(_Store(conn, layout, self.name))
            return p.row_count + len(p.partitions)

        count, _ = self._run("check", table, None, plan)
        return int(count)

    def read_state(
        self, table: Table, now: int, keys: Sequence[Key] | None = None
    ) -> dict[Key, VisiblePartition]:
        layout = self._layout(table)

        def read(conn: psycopg.Connection[Any]) -> dict[Key, VisiblePartition]:
            store = _Store(conn, layout, self.name)
            pks = list(keys) if keys is not None else None
            return visible_state(
                table, store.load_partitions(table, pks), store.load_partition_rows(table, pks), now
            )

        state, _ = self._run("read", table, None, read)
        return state

    def truncate(self, table: Table) -> None:
        """Empties the table's state (to reload it from scratch, e.g. after a backfill from the start)."""
        layout = self._layout(table)

        def truncate(conn: psycopg.Connection[Any]) -> None:
            names = [layout.main, layout.partitions] + ([layout.static] if table.static else [])
            conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(layout.ident(n) for n in names)))

        self._run("truncate", table, None, truncate)

    def refresh(self, table: Table, now: int) -> int:
        """Re-materialises rows holding values whose TTL passed by ``now``; returns how many."""
        layout = self._layout(table)

        def refresh(conn: psycopg.Connection[Any]) -> int:
            conn.execute(
                "SELECT pg_advisory_xact_lock(%s)", (_lock_id(f"table:{layout.schema}.{layout.main}"),)
            )
            store = _Store(conn, layout, self.name)
            return store.refresh(now)

        count, _ = self._run("refresh", table, None, refresh)
        return int(count)

    def purge(self, table: Table, now: int, grace_seconds: int = 864_000) -> int:
        """Deletes rows that no longer exist and were last loaded over ``grace_seconds`` ago.

        Like Cassandra's ``gc_grace_seconds``: after purging, a write older than the purged
        deletion could reappear, so the grace must exceed how late data can arrive.
        """
        layout = self._layout(table)

        def purge(conn: psycopg.Connection[Any]) -> int:
            conn.execute(
                "SELECT pg_advisory_xact_lock(%s)", (_lock_id(f"table:{layout.schema}.{layout.main}"),)
            )
            deleted = 0
            cond = sql.SQL(
                "NOT (_cdc_exists AND (_cdc_expires_at IS NULL OR _cdc_expires_at > %(now)s)) "
                "AND _cdc_loaded_at < to_timestamp(%(cutoff)s)"
            )
            targets = [layout.main] + ([layout.static] if table.static else [])
            for name in targets:
                cur = conn.execute(
                    sql.SQL("DELETE FROM {} WHERE {}").format(layout.ident(name), cond),
                    {"now": now, "cutoff": now - grace_seconds},
                )
                deleted += cur.rowcount
            return deleted

        count, _ = self._run("purge", table, None, purge)
        return int(count)


# Main-table columns a fresh row leaves NULL: no row deletion, no expiry, nothing to refresh.
_FRESH_NULL = frozenset({"_cdc_deletion", "_cdc_expires_at", "_cdc_refresh_at"})


def _lock_id(name: str) -> int:
    return int.from_bytes(hashlib.sha1(name.encode()).digest()[:8], "big", signed=True)


def _normal_type(ty: str) -> str:
    return {"timestamptz": "timestamp with time zone", "timestamptz[]": "timestamp with time zone[]"}.get(
        ty, ty
    )


def write_planned(
    conn: psycopg.Connection[Any], layout: Layout, destination: str, plan_of: Callable[[_Store], WritePlan]
) -> WritePlan:
    """Plans a batch against the stored state and writes it, under the table's advisory lock.

    Runs inside the caller's transaction. Fresh rows are COPYed without first asking which of
    their keys are stored: the primary key refuses a stored one, which undoes the COPY (a
    savepoint) and plans the batch again with the full check. Loads of new keys, the common
    case, skip the check; a replay pays for the failed COPY.
    """
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_id(f"table:{layout.schema}.{layout.main}"),))
    store = _Store(conn, layout, destination, rows_checked_on_write=True)
    plan = plan_of(store)
    if plan.columns or plan.fresh:
        try:
            with conn.transaction():
                store.write_columns(plan.columns)
                store.write_fresh(plan.fresh)
        except psycopg.errors.UniqueViolation:
            store = _Store(conn, layout, destination)
            plan = plan_of(store)
            store.write_columns(plan.columns)
            store.write_fresh(plan.fresh)
    store.write(plan.rows, plan.partitions)
    return plan


class _Store:
    """Reads and writes reconciliation state inside one transaction."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        layout: Layout,
        destination: str = "postgres",
        *,
        rows_checked_on_write: bool = False,
    ) -> None:
        """``rows_checked_on_write``: :meth:`stored_keys` names only keys in partitions with a
        stored record, leaving stored rows to the primary key when the fresh rows are written."""
        self.conn = conn
        self.rows_checked_on_write = rows_checked_on_write
        self.layout = layout
        self.destination = destination
        self.table = layout.table
        t = self.table
        self.n_pk = len(t.partition_key)
        self.n_ck = len(t.clustering)
        self._copier: ColumnCopy | None = None

    # StateStore ---------------------------------------------------------------------------

    def load_partitions(self, table: Table, pks: Sequence[Key] | None) -> dict[Key, PartitionRecord]:
        lay = self.layout
        query = sql.SQL("SELECT _cdc_pk, _cdc_deletion, _cdc_ranges FROM {}").format(
            lay.ident(lay.partitions)
        )
        params: tuple[Any, ...] = ()
        if pks is not None:
            if not pks:
                return {}
            query = sql.SQL("{} WHERE _cdc_pk = ANY(%s)").format(query)
            params = ([encode_key(pk) for pk in pks],)
        out: dict[Key, PartitionRecord] = {}
        for raw_pk, deletion, ranges in self.conn.execute(query, params):
            pk = decode_pk(raw_pk, self.n_pk)
            out[pk] = PartitionRecord(decode_deletion(deletion) if deletion else None, decode_ranges(ranges))
        return out

    def _state_select(self, static: bool) -> sql.Composable:
        lay = self.layout
        cols = [sql.Identifier(lay.state_column(c)) for c in lay.value_columns(static)]
        if static:
            head = [sql.SQL("_cdc_pk")]
            tail: list[sql.Composable] = []
        else:
            head = [sql.SQL("_cdc_key")]
            tail = [sql.SQL("_cdc_liveness"), sql.SQL("_cdc_deletion"), sql.SQL("_cdc_ts")]
        return sql.SQL(", ").join(head + cols + tail)

    def _row_state(self, record: Sequence[Any], static: bool) -> RowState:
        return decode_row_state(self.layout.value_columns(static), record, static)

    def _rid(self, raw_key: bytes) -> RowId:
        return decode_row_id(raw_key, self.n_pk, self.n_ck)

    def unchanged(self, table: Table, fresh: FreshColumns) -> set[bytes]:
        """Keys of these fresh rows (all stored) whose stored row is exactly what they would
        write. Compared in the database (the rows would be written exactly as stored: see
        :func:`~cdc_platform.destinations.columnar.unchanged_keys`): the batch's state columns
        are staged and only the keys of rows that differ come back, few for a rerun."""
        if not len(fresh):
            return set()
        stage, same = self._stage_states(fresh)
        differ = self.conn.execute(
            sql.SQL(
                "SELECT s.k FROM {} s LEFT JOIN {} t ON t._cdc_key = s.k WHERE t._cdc_key IS NULL OR NOT ({})"
            ).format(stage, self.layout.ident(self.layout.main), same)
        )
        return set(fresh.keys.to_pylist()) - {bytes(r[0]) for r in differ}

    def stored_fresh(self, table: Table, fresh: FreshColumns) -> tuple[set[bytes], set[bytes]]:
        """One round: the candidates' keys, partition keys and state columns are staged, and
        only the keys of rows *not* stored exactly as they would be written come back, each
        with whether a row or a partition record is stored for it. After a load (its
        containment check) and for a rerun or a replica's copy, nothing comes back."""
        if self.rows_checked_on_write:
            # The load's first plan leaves stored rows to the primary key: only keys in
            # partitions with a record are named, and which of those are stored as written.
            stored = self.stored_keys(table, fresh.keys.to_pylist(), fresh.pks.to_pylist())
            if not stored:
                return set(), set()
            hit = pc.is_in(fresh.keys, value_set=pa.array(list(stored), pa.binary()))
            return stored, self.unchanged(table, fresh.filter(hit))
        if not len(fresh):
            return set(), set()
        lay = self.layout
        stage, same = self._stage_states(fresh)
        rows = self.conn.execute(
            sql.SQL(
                "SELECT s.k, t._cdc_key IS NOT NULL OR p._cdc_pk IS NOT NULL FROM {} s "
                "LEFT JOIN {} t ON t._cdc_key = s.k LEFT JOIN {} p ON p._cdc_pk = s.p "
                "WHERE t._cdc_key IS NULL OR NOT ({})"
            ).format(stage, lay.ident(lay.main), lay.ident(lay.partitions), same)
        ).fetchall()
        keys = set(fresh.keys.to_pylist())
        same_keys = keys - {bytes(k) for k, _ in rows}
        return same_keys | {bytes(k) for k, stored in rows if stored}, same_keys

    def _stage_states(self, fresh: FreshColumns) -> tuple[sql.Identifier, sql.Composable]:
        """Stages the rows' keys, partition keys and state columns (as ``s``) and gives the
        condition under which a stored row ``t`` holds exactly them."""
        lay = self.layout
        states = [sql.Identifier(lay.state_column(c)) for c in self.table.regular]
        stage = sql.Identifier(f"_cdc_same_{len(states)}")
        self.conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE IF NOT EXISTS {} (k bytea, p bytea, {}live bytea, ts bigint) ON COMMIT DROP"
            ).format(
                stage,
                sql.SQL("").join(sql.SQL("v{} bytea, ").format(sql.SQL(str(j))) for j in range(len(states))),
            )
        )
        self.conn.execute(sql.SQL("TRUNCATE {}").format(stage))
        self._copy_columns(
            stage,
            [
                fresh.keys,
                fresh.pks,
                *fresh.versions,
                fresh.liveness,
                self.copier.dump_arrow(_BIGINT, fresh.timestamps),
            ],
        )
        self.conn.execute(sql.SQL("ANALYZE {}").format(stage))
        same = [
            sql.SQL("t._cdc_deletion IS NULL"),
            sql.SQL("t._cdc_liveness IS NOT DISTINCT FROM s.live"),
            sql.SQL("t._cdc_ts IS NOT DISTINCT FROM s.ts"),
            *(
                sql.SQL("t.{} IS NOT DISTINCT FROM s.v{}").format(c, sql.SQL(str(j)))
                for j, c in enumerate(states)
            ),
        ]
        return stage, sql.SQL(" AND ").join(same)

    def load_rows(self, table: Table, ids: Sequence[RowId]) -> dict[RowId, RowState]:
        lay = self.layout
        out: dict[RowId, RowState] = {}
        regular = [encode_key(pk) + encode_key(ck) for pk, ck in ids if ck is not None]
        statics = [encode_key(pk) for pk, ck in ids if ck is None]
        if regular:
            self.conn.execute("CREATE TEMP TABLE IF NOT EXISTS _cdc_want (k bytea) ON COMMIT DELETE ROWS")
            self.conn.execute("TRUNCATE _cdc_want")
            with self.conn.cursor().copy("COPY _cdc_want (k) FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(["bytea"])
                for k in regular:
                    cp.write_row((k,))
            query = sql.SQL("SELECT {} FROM {} t JOIN _cdc_want w ON t._cdc_key = w.k").format(
                self._state_select(False), lay.ident(lay.main)
            )
            for rec in self.conn.execute(query):
                out[self._rid(rec[0])] = self._row_state(rec, False)
        if statics and self.table.static:
            query = sql.SQL("SELECT {} FROM {} WHERE _cdc_pk = ANY(%s)").format(
                self._state_select(True), lay.ident(lay.static)
            )
            for rec in self.conn.execute(query, (statics,)):
                out[(decode_pk(rec[0], self.n_pk), None)] = self._row_state(rec, True)
        return out

    def stored_keys(self, table: Table, keys: Sequence[bytes], pks: Sequence[bytes]) -> set[bytes]:
        lay = self.layout
        if not keys:
            return set()
        if self.rows_checked_on_write:
            recorded = self._recorded_partitions(set(pks))
            return {k for k, p in zip(keys, pks, strict=True) if p in recorded} if recorded else set()
        self.conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS _cdc_fresh (k bytea, p bytea) ON COMMIT DELETE ROWS"
        )
        self.conn.execute("TRUNCATE _cdc_fresh")
        self._copy_columns(sql.SQL("_cdc_fresh (k, p)"), [list(keys), list(pks)])
        # Without statistics the planner guesses the staged keys' count; with them it probes
        # the primary key per staged row instead of scanning the whole table.
        self.conn.execute("ANALYZE _cdc_fresh")
        query = sql.SQL(
            "SELECT w.k FROM _cdc_fresh w WHERE EXISTS (SELECT 1 FROM {} t WHERE t._cdc_key = w.k) "
            "OR EXISTS (SELECT 1 FROM {} p WHERE p._cdc_pk = w.p)"
        ).format(lay.ident(lay.main), lay.ident(lay.partitions))
        return {bytes(r[0]) for r in self.conn.execute(query)}

    def _recorded_partitions(self, pks: set[bytes]) -> set[bytes]:
        """Which of these encoded partition keys have a stored partition record.

        Partition records are few next to a batch's partitions (they come from partition and
        range deletions): when the table holds no more records than ``pks`` has keys, all are
        read; otherwise the keys are looked up.
        """
        table = self.layout.ident(self.layout.partitions)
        rows = self.conn.execute(
            sql.SQL("SELECT _cdc_pk FROM {} LIMIT %s").format(table), (len(pks) + 1,)
        ).fetchall()
        if len(rows) > len(pks):
            rows = self.conn.execute(
                sql.SQL("SELECT _cdc_pk FROM {} WHERE _cdc_pk = ANY(%s)").format(table), (list(pks),)
            ).fetchall()
        return {bytes(r[0]) for r in rows} & pks

    def load_partition_rows(self, table: Table, pks: Sequence[Key] | None) -> dict[RowId, RowState]:
        lay = self.layout
        out: dict[RowId, RowState] = {}
        where = sql.SQL("")
        rows = sql.SQL("SELECT {} FROM {} t").format(self._state_select(False), lay.ident(lay.main))
        params: tuple[Any, ...] = ()
        rows_params: tuple[Any, ...] = ()
        if pks is not None:
            if not pks:
                return {}
            where = sql.SQL(" WHERE _cdc_pk = ANY(%s)")
            encoded = [encode_key(pk) for pk in pks]
            params = (encoded,)
            if self.n_ck:  # the partition's row keys: a range of the primary key each
                rows = sql.SQL(
                    "{} JOIN unnest(%s::bytea[], %s::bytea[]) AS w(lo, hi) "
                    "ON t._cdc_key >= w.lo AND (w.hi IS NULL OR t._cdc_key < w.hi)"
                ).format(rows)
                rows_params = (encoded, [prefix_end(p) for p in encoded])
            else:  # the row key is the partition key
                rows = sql.SQL("{} WHERE t._cdc_key = ANY(%s)").format(rows)
                rows_params = params
        for rec in self.conn.execute(rows, rows_params):
            out[self._rid(rec[0])] = self._row_state(rec, False)
        if self.table.static:
            query = sql.SQL("SELECT {} FROM {}{}").format(
                self._state_select(True), lay.ident(lay.static), where
            )
            for rec in self.conn.execute(query, params):
                out[(decode_pk(rec[0], self.n_pk), None)] = self._row_state(rec, True)
        return out

    # Writing ------------------------------------------------------------------------------

    def _typed_keys(self, columns: list[Column], parts: Sequence[bytes | None]) -> list[Any]:
        out: list[Any] = []
        for c, raw in zip(columns, parts, strict=True):
            if raw is None:
                out.append(None)
                continue
            try:
                value = deserialize(c.type, raw)
            except ValueError:
                out.append(None)
                continue
            out.append(pg_value(c.type)(value))
        return out

    def _values(self, columns: list[Column], w: RowWrite) -> list[Any]:
        out: list[Any] = []
        for c in columns:
            out.append(pg_value(c.type)(w.materialised.values.get(c.name)))
            if c.type.is_multicell:
                coll = w.state.collections.get(c.name)
                out.append(encode_collection(coll) if coll is not None else None)
            else:
                v = w.state.cells.get(c.name)
                out.append(encode_version(v) if v is not None else None)
        return out

    def _swap(
        self,
        target: str,
        columns: list[tuple[str, str]],
        copy_types: list[str],
        key: str,
        rows: Iterable[list[Any]],
    ) -> None:
        lay = self.layout
        stage = f"_cdc_stage_{hashlib.sha1(target.encode()).hexdigest()[:12]}"
        names = sql.SQL(", ").join(sql.Identifier(c) for c, _ in columns)
        # Created per transaction: after a schema change it must have the table's new columns.
        self.conn.execute(
            sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
                sql.Identifier(stage), lay.ident(target)
            )
        )
        with self.conn.cursor().copy(
            sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(sql.Identifier(stage), names)
        ) as cp:
            cp.set_types(copy_types)
            for r in rows:
                cp.write_row(r)
        self.conn.execute(
            sql.SQL("DELETE FROM {} t USING {} s WHERE t.{} = s.{}").format(
                lay.ident(target), sql.Identifier(stage), sql.Identifier(key), sql.Identifier(key)
            )
        )
        self.conn.execute(
            sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(
                lay.ident(target), names, names, sql.Identifier(stage)
            )
        )

    def _copy_columns(self, target: sql.Composable, columns: Sequence[Any]) -> None:
        """COPYs dumped columns (:meth:`ColumnCopy.dump`) into ``target`` (a table and column list)."""
        with self.conn.cursor().copy(sql.SQL("COPY {} FROM STDIN (FORMAT BINARY)").format(target)) as cp:
            for chunk in self.copier.stream(columns):
                cp.write(chunk)

    @property
    def copier(self) -> ColumnCopy:
        if self._copier is None:
            self._copier = ColumnCopy(self.conn)
        return self._copier

    def write_fresh(self, fresh: FreshRows | None) -> None:
        """Inserts rows no stored row shares a key with (:func:`plan_batch` checked): one COPY."""
        if fresh:
            dump = self.copier.dump
            self._copy_fresh(fresh, lambda t, values: dump(copy_type(t), pg_column(t)(values)))

    def write_columns(self, fresh: FreshColumns | None) -> None:
        """:meth:`write_fresh` for rows of a change batch, column-wise (:mod:`..columnar`)."""
        if fresh:
            dump = self.copier.dump_arrow
            self._copy_fresh(fresh, dump)

    def _copy_fresh(self, fresh: FreshRows | FreshColumns, dump: Callable[[CqlType, Any], Any]) -> None:
        """One COPY of fresh rows, their typed values dumped by ``dump``."""
        lay = self.layout
        columns: list[Any] = [fresh.keys, fresh.pks]
        columns += [dump(c.type, values) for c, values in zip(lay.key_columns, fresh.key_values, strict=True)]
        for c, values, versions in zip(self.table.regular, fresh.values, fresh.versions, strict=True):
            columns += [dump(c.type, values), versions]
        columns.append(fresh.liveness)
        columns.append(
            [b"\x01"] * len(fresh)
        )  # _cdc_exists (binary true); deletion, expiry, refresh stay NULL
        columns.append(dump(_BIGINT, fresh.timestamps))
        names = [name for name, _ in lay.main_columns() if name not in _FRESH_NULL]
        target = sql.SQL("{} ({})").format(
            lay.ident(lay.main), sql.SQL(", ").join(sql.Identifier(c) for c in names)
        )
        self._copy_columns(target, columns)

    def write(self, rows: list[RowWrite], partitions: list[tuple[Key, PartitionRecord]]) -> None:
        lay = self.layout
        t = self.table
        key_types = [copy_type(c.type) for c in lay.key_columns]
        pk_types = [copy_type(c.type) for c in t.partition_key]

        def state_types(columns: list[Column]) -> list[str]:
            out: list[str] = []
            for c in columns:
                out += [copy_type(c.type), "bytea"]
            return out

        main = [w for w in rows if w.ck is not None]
        static = [w for w in rows if w.ck is None]
        if main:
            types = [
                "bytea",
                "bytea",
                *key_types,
                *state_types(t.regular),
                "bytea",
                "bytea",
                "bool",
                "int8",
                "int8",
                "int8",
            ]
            self._swap(
                lay.main,
                lay.main_columns(),
                types,
                "_cdc_key",
                (
                    [
                        row_key(w.pk, w.ck or ()),
                        encode_key(w.pk),
                        *self._typed_keys(lay.key_columns, list(w.pk) + list(w.ck or ())),
                        *self._values(t.regular, w),
                        encode_liveness(w.state.liveness) if w.state.liveness else None,
                        encode_deletion(w.state.deletion) if w.state.deletion else None,
                        w.materialised.exists,
                        w.materialised.expires_at,
                        w.materialised.refresh_at,
                        None,  # _cdc_ts: merged rows keep full encodings
                    ]
                    for w in main
                ),
            )
        if static:
            if not t.static:
                raise DestinationError(
                    "batch holds static-row changes for a table without static columns",
                    destination=self.destination,
                    table=t.qualified_name,
                )
            types = ["bytea", *pk_types, *state_types(t.static), "bool", "int8", "int8"]
            self._swap(
                lay.static,
                lay.static_columns(),
                types,
                "_cdc_pk",
                (
                    [
                        encode_key(w.pk),
                        *self._typed_keys(t.partition_key, list(w.pk)),
                        *self._values(t.static, w),
                        w.materialised.exists,
                        w.materialised.expires_at,
                        w.materialised.refresh_at,
                    ]
                    for w in static
                ),
            )
        if partitions:
            self._swap(
                lay.partitions,
                lay.partition_columns(),
                ["bytea", *pk_types, "bytea", "bytea"],
                "_cdc_pk",
                (
                    [
                        encode_key(pk),
                        *self._typed_keys(t.partition_key, list(pk)),
                        encode_deletion(rec.deletion) if rec.deletion else None,
                        encode_ranges(rec.ranges),
                    ]
                    for pk, rec in partitions
                ),
            )

    def refresh(self, now: int) -> int:
        """Re-materialises rows with values expiring by ``now``."""
        from cdc_platform.destinations.state import ClusteringOrder, materialise, shadow_of

        lay = self.layout
        t = self.table
        stale: dict[RowId, RowState] = {}
        query = sql.SQL("SELECT {} FROM {} WHERE _cdc_refresh_at <= %s").format(
            self._state_select(False), lay.ident(lay.main)
        )
        for rec in self.conn.execute(query, (now,)):
            stale[self._rid(rec[0])] = self._row_state(rec, False)
        if t.static:
            query = sql.SQL("SELECT {} FROM {} WHERE _cdc_refresh_at <= %s").format(
                self._state_select(True), lay.ident(lay.static)
            )
            for rec in self.conn.execute(query, (now,)):
                stale[(decode_pk(rec[0], self.n_pk), None)] = self._row_state(rec, True)
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
