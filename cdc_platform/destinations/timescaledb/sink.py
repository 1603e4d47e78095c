"""TimescaleDB destination: the change history of each captured Cassandra table.

Per Cassandra table ``ks.t``, in schema ``ks`` (with the destination's schema prefix):

- ``t$history``: append-only, one row per :class:`~cdc_platform.changes.records.RowChange`,
  keyed by write time. Columns:

  ============================  =================================================================
  ``_cdc_time``                 the change's write time: its greatest write or deletion timestamp
                                (µs) as ``timestamptz``, microsecond precision; the time dimension
  ``_cdc_change_id``            content-derived UUID (:func:`~cdc_platform.changes.identity.change_id`,
                                shared with the quarantine), unique with ``_cdc_time``
  ``_cdc_timestamp``            the same write time as exact microseconds (``_cdc_time`` is clamped
                                to years 1–9999, which only absurd ``USING TIMESTAMP`` values leave)
  ``_cdc_operation``            ``upsert``, ``row_delete``, ``partition_delete``, ``range_delete``
  ``_cdc_kind``                 ``row``, ``static_row``, ``partition_delete``, ``range_delete``
  ``_cdc_pk``, ``_cdc_ck``      the serialized partition key and clustering (as in the PostgreSQL
                                destination, exact for every type; ``_cdc_ck`` only for rows)
  key columns                   typed partition-key and clustering columns (:mod:`..postgres.typemap`);
                                clustering columns are NULL except for ``row`` changes
  ``_cdc_values``               jsonb, one key per changed column (the Cassandra name): for a
                                single-cell column an object ``{"value", "timestamp", "ttl",
                                "local_deletion_time", "deleted"}``; for a non-frozen collection or
                                UDT a list of such objects with ``"path"`` (list cell id, set
                                element, map key or field name) and ``"collection_deletion"``.
                                ``"value"`` (and ``"path"``) are always there; the other fields
                                only where they differ from a plain live cell: ``"timestamp"``
                                when it is not the row's ``_cdc_timestamp``, ``"ttl"`` and
                                ``"local_deletion_time"`` when set, ``"deleted"`` and
                                ``"collection_deletion"`` when true (an ``INSERT`` or ``UPDATE``
                                stores ``{"v": {"value": 1}}``; read ``coalesce((c->>'timestamp')::
                                bigint, _cdc_timestamp)``). :meth:`TimescaleDestination.history`
                                returns complete objects (:func:`full_cells`). Values and paths
                                are rendered as Cassandra's ``toJson()``; one that jsonb cannot
                                hold (U+0000, a decimal or varint beyond PostgreSQL numeric's
                                range) is ``null``, its serialized bytes in ``"value_raw"`` /
                                ``"path_raw"`` (``"0x…"``); a value whose bytes do not decode
                                as its type has ``"invalid"``, the reason
  ``_cdc_liveness_*``           primary-key liveness of an ``INSERT``: timestamp, ttl, expiry
  ``_cdc_deletion_ts``,         the row, partition or range deletion: timestamp (µs) and local
  ``_cdc_deletion_time``        deletion time (s)
  ``_cdc_range``                range deletions: ``{"start": {"clustering": {…}, "inclusive"},
                                "end": {…}}`` in clustering order, values as ``toJson()``
  ``_cdc_node``, ``_cdc_segment_id``, ``_cdc_position``, ``_cdc_entry_start``
                                provenance of the copy that was loaded first
  ``_cdc_batch``, ``_cdc_loaded_at``
                                the batch that inserted the row, and when
  ============================  =================================================================

- with ``current_state=True`` also the PostgreSQL destination's current-state tables
  (``t``, ``t$static``, ``t$partitions``, view ``t$current``), maintained by the same code.
- ``cdc_meta.schema_history`` records every schema change (as for PostgreSQL);
  ``cdc_meta.history_columns`` the Cassandra columns each history has seen, so that new,
  retyped and dropped columns (new or vanishing keys of ``_cdc_values``, no DDL) are recorded.

**Deduplication.** The change id hashes the change's content and leaves out its provenance:
the same mutation read from three replicas' commit logs (different nodes, segment ids,
positions) or replayed by a rerun has one id. The time column is derived from the same
content, so ``UNIQUE (_cdc_time, _cdc_change_id)`` (a unique constraint on a hypertable or a
partitioned table must include the time column) rejects every copy after the first. Time
leads the index: changes arrive roughly in write-time order, so its inserts and lookups stay
near the index's right edge, where an index led by the random change id touches a random leaf
per row (on the load benchmark's rows the server's COPY spent 0.4 µs per row on the index
led by time against 1.3 µs on the other order). Tables created before keep their
``(_cdc_change_id, _cdc_time)`` constraint; every statement here works with either. In one
transaction holding an advisory lock on the table, a batch's (id, time) pairs are looked up
in that index and only the new rows are COPYed into the history; should the constraint
refuse one all the same (a writer without the lock), the batch goes through a staging table
and ``INSERT … ON CONFLICT DO NOTHING`` instead. Plain row changes of a staged batch become
history rows column-wise (:mod:`.columnar`), the others one by one (:func:`history_row`).

**Partitioning.** When the ``timescaledb`` extension (2.13 or later, for ``by_range``) is
installed in the database when the history table is created, the table becomes a hypertable
with the configured chunk interval and optional compression and retention policies
(:class:`HypertableOptions`, :func:`hypertable_statements`). Otherwise, and always in this
project's tests since no package here provides the extension, the table is range-partitioned
natively by ``_cdc_time``, one partition per calendar month (UTC) named ``t$history_YYYYMM``,
created before a batch is inserted so an insert never lacks a partition; a WARNING says so
once per destination. The choice is made when the table is created and kept: an existing
table is never converted.

**Current state in the same transaction.** With ``current_state=True`` a batch's history
rows and its current-state merge commit together, so a failure leaves both as they were and
a rerun applies both (each is idempotent on its own).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import logging
import re
import struct
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg
import pyarrow as pa
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from cdc_platform.changes.arrow import ChangeBatch
from cdc_platform.changes.identity import change_id
from cdc_platform.changes.merge import (
    Key,
    VisiblePartition,
    clustering_bytes,
    partition_bytes,
    path_bytes,
    value_bytes,
)
from cdc_platform.changes.records import (
    CellChange,
    ChangeKind,
    ClusteringBound,
    RowChange,
    _path_json,  # the one rendering of a cell path (shared with ``segment decode``)
    _value_type,  # the type of a cell's value (element type for collection cells)
)
from cdc_platform.destinations import naming
from cdc_platform.destinations.base import (
    ApplyResult,
    DestinationError,
    RetryPolicy,
    check_supported,
)
from cdc_platform.destinations.columnar import fixed_width, plan_change_batch
from cdc_platform.destinations.identity import PlainRows
from cdc_platform.destinations.postgres.copy import ColumnCopy
from cdc_platform.destinations.postgres.sink import (
    META_SCHEMA,
    Layout,
    PostgresDestination,
    _lock_id,
    _normal_type,
    _Store,
    write_planned,
)
from cdc_platform.destinations.postgres.typemap import copy_type, pg_type, pg_value
from cdc_platform.destinations.state import WritePlan, encode_key, plan_batch
from cdc_platform.destinations.timescaledb.columnar import (
    HistoryColumns,
    history_columns,
    months_of,
    pg_times,
    timed_rows,
    write_times,
)
from cdc_platform.gc_pause import paused_gc
from cdc_platform.schema.model import Column, Table
from cdc_platform.schema.render import quote_json_string, to_json
from cdc_platform.schema.types import CqlType, NativeType
from cdc_platform.schema.values import InvalidValue

log = logging.getLogger(__name__)
_WARNED_NATIVE: set[tuple[str, str]] = set()  # (destination, schema) warned about the fallback

# The generalized create_hypertable(relation, by_range(...)) interface appeared in 2.13; ON
# CONFLICT DO NOTHING into compressed chunks in 2.11.
MIN_TIMESCALEDB = (2, 13)

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MIN_TIME = dt.datetime(1, 1, 1, tzinfo=dt.UTC)
_MAX_TIME = dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC)
_MIN_US = (_MIN_TIME - _EPOCH) // dt.timedelta(microseconds=1)
_MAX_US = (_MAX_TIME - _EPOCH) // dt.timedelta(microseconds=1)
# An escaped U+0000 in JSON text (an odd number of backslashes before "u0000"): jsonb rejects it.
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


class CurrentStateDisabledError(DestinationError):
    """The operation needs the current-state tables, and the destination keeps only history."""


# --------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class HypertableOptions:
    """How the history table is set up when the timescaledb extension is installed.

    Applied once, when the history table is created (changing compression settings of a
    hypertable with compressed chunks fails, so reruns must not repeat them); change them
    later with TimescaleDB's own functions.

    Attributes:
        chunk_interval: ``by_range`` partition interval (a PostgreSQL interval literal).
        compress_after: enable compression and add a compression policy compressing chunks
            whose data is older than this; ``None``: no compression.
        compress_segmentby: history columns to segment compressed data by (empty: none; a
            high-cardinality column such as ``_cdc_pk`` compresses poorly).
        drop_after: add a retention policy dropping chunks whose data is older than this;
            ``None``: keep everything. Must exceed how late replays can arrive: a replayed
            change whose chunk was dropped is inserted again.
    """

    chunk_interval: str = "7 days"
    compress_after: str | None = None
    compress_segmentby: tuple[str, ...] = ()
    drop_after: str | None = None


# --------------------------------------------------------------------------------------------
# Layout


@dataclass(frozen=True)
class HistoryColumn:
    name: str
    type: str  # SQL type
    copy_type: str  # psycopg binary COPY type name
    not_null: bool = False


@dataclass(frozen=True)
class HistoryLayout:
    """Destination names and columns of one Cassandra table's history."""

    table: Table
    schema: str
    name: str

    @classmethod
    def of(cls, table: Table, schema_prefix: str = "") -> HistoryLayout:
        return cls(
            table,
            naming.table_name(schema_prefix + table.keyspace),
            naming.table_name(table.name, "$history"),
        )

    @property
    def key_columns(self) -> list[Column]:
        return self.table.partition_key + self.table.clustering

    def columns(self) -> list[HistoryColumn]:
        """Every column COPY writes, in table order (``_cdc_loaded_at`` is added by default)."""
        head = [
            HistoryColumn("_cdc_time", "timestamptz", "timestamptz", True),
            HistoryColumn("_cdc_change_id", "uuid", "uuid", True),
            HistoryColumn("_cdc_timestamp", "bigint", "int8", True),
            HistoryColumn("_cdc_operation", "text", "text", True),
            HistoryColumn("_cdc_kind", "text", "text", True),
            HistoryColumn("_cdc_pk", "bytea", "bytea", True),
            HistoryColumn("_cdc_ck", "bytea", "bytea"),
        ]
        keys = [
            HistoryColumn(naming.value_column(c.name), pg_type(c.type), copy_type(c.type))
            for c in self.key_columns
        ]
        tail = [
            HistoryColumn("_cdc_values", "jsonb", "jsonb", True),
            HistoryColumn("_cdc_liveness_ts", "bigint", "int8"),
            HistoryColumn("_cdc_liveness_ttl", "integer", "int4"),
            HistoryColumn("_cdc_liveness_expires", "bigint", "int8"),
            HistoryColumn("_cdc_deletion_ts", "bigint", "int8"),
            HistoryColumn("_cdc_deletion_time", "bigint", "int8"),
            HistoryColumn("_cdc_range", "jsonb", "jsonb"),
            HistoryColumn("_cdc_node", "text", "text"),
            HistoryColumn("_cdc_segment_id", "bigint", "int8"),
            HistoryColumn("_cdc_position", "bigint", "int8"),
            HistoryColumn("_cdc_entry_start", "bigint", "int8"),
            HistoryColumn("_cdc_batch", "text", "text"),
        ]
        return head + keys + tail

    def key_column_names(self) -> set[str]:
        return {naming.value_column(c.name) for c in self.key_columns}

    def check(self) -> None:
        names = [c.name for c in self.columns()] + ["_cdc_loaded_at"]
        naming.check_unique(names, f"{self.table.qualified_name} history table")

    def ident(self, name: str | None = None) -> sql.Identifier:
        return sql.Identifier(self.schema, name or self.name)

    def regclass(self) -> sql.Composable:
        """The table as a ``regclass`` argument: its quoted qualified name as a literal, cast."""
        return sql.SQL("{}::regclass").format(sql.Literal(self.ident().as_string(None)))

    def partition_name(self, year: int, month: int) -> str:
        return naming.table_name(self.table.name, f"$history_{year:04d}{month:02d}")


# --------------------------------------------------------------------------------------------
# SQL (pure functions, so the statements that cannot run here are checked as text)


def create_table_statement(layout: HistoryLayout, *, partitioned: bool) -> sql.Composed:
    """``CREATE TABLE`` for the history; ``partitioned``: native range partitioning by time."""
    defs: list[sql.Composable] = [
        sql.SQL("{} {}{}").format(
            sql.Identifier(c.name), sql.SQL(c.type), sql.SQL(" NOT NULL" if c.not_null else "")
        )
        for c in layout.columns()
    ]
    defs.append(sql.SQL("_cdc_loaded_at timestamptz NOT NULL DEFAULT now()"))
    defs.append(
        sql.SQL("CONSTRAINT {} UNIQUE (_cdc_time, _cdc_change_id)").format(
            sql.Identifier(naming.table_name(layout.name, "$uq"))
        )
    )
    return sql.SQL("CREATE TABLE {} ({}){}").format(
        layout.ident(),
        sql.SQL(", ").join(defs),
        sql.SQL(" PARTITION BY RANGE (_cdc_time)" if partitioned else ""),
    )


def hypertable_statements(layout: HistoryLayout, options: HypertableOptions) -> list[sql.Composed]:
    """Turns a new, empty history table into a hypertable with its policies (TimescaleDB ≥ 2.13).

    Checked against TimescaleDB's documentation and ``sql/*.sql`` (signatures quoted):

    - ``create_hypertable(relation REGCLASS, dimension dimension_info, create_default_indexes
      BOOLEAN = TRUE, if_not_exists BOOLEAN = FALSE, migrate_data BOOLEAN = FALSE)`` and
      ``by_range(column_name NAME, partition_interval ANYELEMENT = NULL, partition_func
      REGPROC = NULL)``, the generalized interface since 2.13
      (https://www.tigerdata.com/docs/reference/timescaledb/hypertables/create_hypertable).
      The default index on ``_cdc_time DESC`` is kept.
    - ``ALTER TABLE … SET (timescaledb.compress, timescaledb.compress_orderby = '…',
      timescaledb.compress_segmentby = '…')``
      (https://www.tigerdata.com/docs/api/latest/compression/alter_table_compression). Both
      columns of the unique constraint are in ``compress_orderby``: TimescaleDB warns
      "column … should be used for segmenting or ordering" otherwise, since it could only check
      uniqueness by decompressing whole batches. Unique constraints and ``ON CONFLICT DO
      NOTHING`` hold on compressed chunks since 2.11 (timescale/timescaledb#5252).
    - ``add_compression_policy(hypertable REGCLASS, compress_after "any", if_not_exists BOOL =
      false, …)`` (https://www.tigerdata.com/docs/api/latest/compression/add_compression_policy).
    - ``add_retention_policy(relation REGCLASS, drop_after "any", if_not_exists BOOL = false,
      …)`` (https://www.tigerdata.com/docs/api/latest/data-retention/add_retention_policy/).

    Intervals are passed as ``'…'::interval`` so the ``"any"`` parameters get a known type.
    """
    rel = layout.regclass()
    out = [
        sql.SQL("SELECT create_hypertable({}, by_range({}, {}::interval), if_not_exists => TRUE)").format(
            rel, sql.Literal("_cdc_time"), sql.Literal(options.chunk_interval)
        )
    ]
    if options.compress_after is not None:
        settings: list[sql.Composable] = [
            sql.SQL("timescaledb.compress"),
            sql.SQL("timescaledb.compress_orderby = {}").format(
                sql.Literal("_cdc_time DESC, _cdc_change_id")
            ),
        ]
        if options.compress_segmentby:
            known = {c.name for c in layout.columns()}
            unknown = [c for c in options.compress_segmentby if c not in known]
            if unknown:
                raise ValueError(f"compress_segmentby names columns the history table lacks: {unknown}")
            segmentby = ", ".join(sql.Identifier(c).as_string(None) for c in options.compress_segmentby)
            settings.append(sql.SQL("timescaledb.compress_segmentby = {}").format(sql.Literal(segmentby)))
        out.append(sql.SQL("ALTER TABLE {} SET ({})").format(layout.ident(), sql.SQL(", ").join(settings)))
        out.append(
            sql.SQL(
                "SELECT add_compression_policy({}, compress_after => {}::interval, if_not_exists => TRUE)"
            ).format(rel, sql.Literal(options.compress_after))
        )
    if options.drop_after is not None:
        out.append(
            sql.SQL(
                "SELECT add_retention_policy({}, drop_after => {}::interval, if_not_exists => TRUE)"
            ).format(rel, sql.Literal(options.drop_after))
        )
    return out


def month_of(t: dt.datetime) -> tuple[int, int]:
    return t.year, t.month


def partition_statement(layout: HistoryLayout, year: int, month: int) -> sql.Composed:
    """The monthly partition holding ``[year-month-01, next month)`` in UTC."""
    ny, nm = (year + 1, 1) if month == 12 else (year, month + 1)
    # Text bounds with an explicit offset: exact whatever the session time zone, and year
    # 10000 (the end of December 9999) is valid for PostgreSQL though not for Python.
    return sql.SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
        layout.ident(layout.partition_name(year, month)),
        layout.ident(),
        sql.Literal(f"{year:04d}-{month:02d}-01 00:00:00+00"),
        sql.Literal(f"{ny:04d}-{nm:02d}-01 00:00:00+00"),
    )


# --------------------------------------------------------------------------------------------
# One history row per change (pure)


def write_time(change: RowChange) -> int:
    """The change's write time: its greatest write or deletion timestamp (µs).

    Raises:
        ValueError: the change carries no timestamp at all (no decoded change is like that).
    """
    stamps = [c.timestamp for c in change.cells]
    if change.liveness_timestamp is not None:
        stamps.append(change.liveness_timestamp)
    if change.deletion_timestamp is not None:
        stamps.append(change.deletion_timestamp)
    if not stamps:
        raise ValueError("change carries no write or deletion timestamp")
    return max(stamps)


def time_of(micros: int) -> dt.datetime:
    """Microseconds since the epoch as an aware UTC datetime, clamped to years 1–9999."""
    return _EPOCH + dt.timedelta(microseconds=min(max(micros, _MIN_US), _MAX_US))


def _column(table: Table, name: str) -> Column | None:
    column = table.by_name.get(name)
    if column is None and name in table.dropped:
        column = table.dropped[name].as_column()
    return column


def _bytes_of(cql_type: CqlType | None, value: Any) -> bytes:
    """Serialized bytes of a change value; a deterministic fallback where it has no type."""
    if isinstance(value, InvalidValue):
        return value.raw
    if cql_type is not None:
        try:
            return value_bytes(cql_type, value)
        except (TypeError, ValueError, OverflowError, struct.error):
            pass
    return repr(value).encode()


def _path_bytes(column: Column | None, path: Any) -> bytes | None:
    if path is None:
        return None
    if column is not None:
        try:
            return path_bytes(column.type, path)
        except (TypeError, ValueError, OverflowError, struct.error):
            pass
    return _bytes_of(None, path)


# PostgreSQL numeric (which jsonb numbers are): at most 131072 digits before the decimal point
# and 16383 after it (PostgreSQL docs, "Numeric Types"); numeric_in rejects anything else.
_NUMERIC_INTEGER_DIGITS = 131_072
_NUMERIC_SCALE = 16_383


@functools.cache
def _renders_big_numbers(cql_type: CqlType) -> bool:
    """Whether ``toJson()`` of the type can hold a number beyond PostgreSQL numeric's range
    (decimal and varint can; float and double stay within 1.8E308 and 4.9E-324)."""
    if isinstance(cql_type, NativeType):
        return cql_type.name in ("decimal", "varint")
    return any(_renders_big_numbers(t) for t in cql_type.subtypes())


def _numeric_fits(text: str) -> Decimal:
    number = Decimal(text)
    _, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # JSON numbers are finite
    if -exponent > _NUMERIC_SCALE or (number and len(digits) + exponent > _NUMERIC_INTEGER_DIGITS):
        raise OverflowError(text)
    return number


def jsonb_holds(cql_type: CqlType, text: str) -> bool:
    """Whether jsonb accepts the ``toJson()`` text of a value of the type: no U+0000 escape and
    every number within PostgreSQL numeric's range."""
    if _JSON_NUL.search(text):
        return False
    if _renders_big_numbers(cql_type):
        try:
            json.loads(text, parse_float=_numeric_fits, parse_int=_numeric_fits)
        except (OverflowError, ValueError):
            return False
    return True


def _safe(cql_type: CqlType | None, value: Any) -> tuple[str, str | None]:
    """``toJson()`` text of a value and, when jsonb cannot hold it (:func:`jsonb_holds`), its
    bytes instead."""
    if value is None:
        return "null", None
    if cql_type is None:
        cql_type = NativeType("blob")
        if not isinstance(value, (bytes, InvalidValue)):
            return "null", None
    text = to_json(cql_type, value)
    if jsonb_holds(cql_type, text):
        return text, None
    return "null", '"0x' + _bytes_of(cql_type, value).hex() + '"'


_QUOTED_KEYS: dict[str, str] = {}  # document keys and column names, quoted once


def _key(name: str) -> str:
    quoted = _QUOTED_KEYS.get(name)
    if quoted is None:
        if len(_QUOTED_KEYS) > 10_000:
            _QUOTED_KEYS.clear()
        quoted = _QUOTED_KEYS[name] = quote_json_string(name) + ": "
    return quoted


def _obj(items: Iterable[tuple[str, str]]) -> str:
    return "{" + ", ".join([_key(k) + v for k, v in items]) + "}"


def _n(v: int | None) -> str:
    return "null" if v is None else str(v)


def _bool(v: bool) -> str:
    return "true" if v else "false"


def _cell_json(column: Column | None, cell: CellChange, written: int) -> str:
    """A cell's object in ``_cdc_values``: what differs from a plain live cell written at
    ``written`` (the change's write time) is listed, the rest left out (module docstring)."""
    items: list[tuple[str, str]] = []
    multicell = column is not None and column.type.is_multicell
    if multicell:
        assert column is not None
        raw_path = _path_bytes(column, cell.path)
        text = _path_json(column, cell.path)
        if not jsonb_holds(column.type, text):
            items += [("path", "null"), ("path_raw", '"0x' + (raw_path or b"").hex() + '"')]
        else:
            items.append(("path", text))
    vtype = _value_type(column, cell) if column is not None else None
    value, raw = _safe(vtype, cell.value)
    items.append(("value", value))
    if raw is not None:
        items.append(("value_raw", raw))
    if isinstance(cell.value, InvalidValue):
        items.append(("invalid", quote_json_string(cell.value.reason)))
    if cell.timestamp != written:
        items.append(("timestamp", str(cell.timestamp)))
    if cell.ttl is not None:
        items.append(("ttl", str(cell.ttl)))
    if cell.local_deletion_time is not None:
        items.append(("local_deletion_time", str(cell.local_deletion_time)))
    if cell.deleted:
        items.append(("deleted", "true"))
    if multicell and cell.collection_deletion:
        items.append(("collection_deletion", "true"))
    return _obj(items)


def values_json(table: Table, change: RowChange, written: int) -> str:
    """The ``_cdc_values`` document of a change written at ``written`` (:func:`write_time`; see
    the module docstring)."""
    simple: dict[str, str] = {}
    collections: dict[str, list[str]] = {}
    order: list[str] = []
    for cell in change.cells:
        column = _column(table, cell.column)
        if cell.column not in simple and cell.column not in collections:
            order.append(cell.column)
        if column is not None and column.type.is_multicell:
            collections.setdefault(cell.column, []).append(_cell_json(column, cell, written))
        else:
            simple[cell.column] = _cell_json(column, cell, written)
    return _obj(
        (name, simple[name] if name in simple else "[" + ", ".join(collections[name]) + "]") for name in order
    )


def full_cells(values: dict[str, Any], written: int) -> dict[str, Any]:
    """A stored ``_cdc_values`` document with every cell object complete: the fields a cell
    leaves out filled in (``timestamp``: ``written``, the row's ``_cdc_timestamp``; ``ttl``,
    ``local_deletion_time``: null; ``deleted``: false; ``collection_deletion``: false for a
    collection's cells). Documents written before cells left fields out read the same."""

    def full(cell: Any, multicell: bool) -> Any:
        if not isinstance(cell, dict):
            return cell
        out = dict(cell)
        out.setdefault("timestamp", written)
        out.setdefault("ttl", None)
        out.setdefault("local_deletion_time", None)
        out.setdefault("deleted", False)
        if multicell:
            out.setdefault("collection_deletion", False)
        return out

    return {
        name: [full(c, True) for c in cells] if isinstance(cells, list) else full(cells, False)
        for name, cells in values.items()
    }


def _bound_json(table: Table, bound: ClusteringBound) -> str:
    values: list[tuple[str, str]] = []
    raws: list[tuple[str, str]] = []
    for c in table.clustering:
        if c.name not in bound.clustering:
            break
        text, raw = _safe(c.type, bound.clustering[c.name])
        values.append((c.name, text))
        if raw is not None:
            raws.append((c.name, raw))
    items = [("clustering", _obj(values)), ("inclusive", _bool(bound.inclusive))]
    if raws:
        items.append(("clustering_raw", _obj(raws)))
    return _obj(items)


def range_json(table: Table, change: RowChange) -> str | None:
    """The ``_cdc_range`` document of a range deletion, else ``None``."""
    if change.range_start is None or change.range_end is None:
        return None
    return _obj(
        [("start", _bound_json(table, change.range_start)), ("end", _bound_json(table, change.range_end))]
    )


def _jsonb(text: str | None) -> Jsonb | None:
    return None if text is None else Jsonb(text, dumps=_passthrough)


def _passthrough(text: Any) -> str:
    return str(text)


@dataclass
class _Row:
    change_id: uuid.UUID
    time: dt.datetime
    values: list[Any]


def history_row(layout: HistoryLayout, change: RowChange, batch: str) -> _Row:
    """The values COPY writes for one change, in :meth:`HistoryLayout.columns` order."""
    t = layout.table
    micros = write_time(change)
    when = time_of(micros)
    cid = change_id(t, change)
    is_row = change.kind is ChangeKind.ROW
    keys = [pg_value(c.type)(change.partition_key.get(c.name)) for c in t.partition_key]
    keys += [pg_value(c.type)(change.clustering.get(c.name)) if is_row else None for c in t.clustering]
    values = [
        when,
        cid,
        micros,
        change.operation,
        change.kind.value,
        encode_key(partition_bytes(t, change.partition_key)),
        encode_key(clustering_bytes(t, change.clustering)) if is_row else None,
        *keys,
        _jsonb(values_json(t, change, micros)),
        change.liveness_timestamp,
        change.liveness_ttl,
        change.liveness_expires,
        change.deletion_timestamp,
        change.deletion_time,
        _jsonb(range_json(t, change)),
        change.node,
        change.segment_id,
        change.position,
        change.entry_start,
        batch or None,
    ]
    return _Row(cid, when, values)


# --------------------------------------------------------------------------------------------
# Reading back


@dataclass(frozen=True)
class HistoryRow:
    """One stored change, as :meth:`TimescaleDestination.history` returns it.

    Key values are as PostgreSQL returns the typed columns; ``values`` and ``range`` are the
    jsonb documents (see the module docstring), ``values`` with complete cell objects
    (:func:`full_cells`).
    """

    time: dt.datetime
    timestamp: int
    change_id: uuid.UUID
    operation: str
    kind: str
    partition_key: dict[str, Any]
    clustering: dict[str, Any]
    values: dict[str, Any]
    liveness_timestamp: int | None
    liveness_ttl: int | None
    liveness_expires: int | None
    deletion_timestamp: int | None
    deletion_time: int | None
    range: dict[str, Any] | None
    node: str | None
    segment_id: int | None
    position: int | None
    entry_start: int | None
    batch: str | None
    partition: str = field(default="", compare=False)  # the physical table holding the row


# --------------------------------------------------------------------------------------------
# The destination


class TimescaleDestination(PostgresDestination):
    """Change history in TimescaleDB (or partitioned PostgreSQL), optionally with current state.

    Args:
        url: libpq connection string or URL (credentials from the environment or a secrets
            file, never from configuration).
        history: keep the change history (``t$history``).
        current_state: also keep the PostgreSQL destination's current-state tables, in the
            same transaction as the history; needed by :meth:`read_state`.
        name: destination name in errors, metadata and the schema history.
        schema_prefix: prefix for the PostgreSQL schemas holding each keyspace.
        hypertable: chunk interval, compression and retention when the extension is installed.
        retry: backoff policy for connection failures.

    Raises:
        ValueError: neither history nor current state is kept.
    """

    def __init__(
        self,
        url: str,
        *,
        history: bool = True,
        current_state: bool = False,
        name: str = "timescaledb",
        schema_prefix: str = "",
        hypertable: HypertableOptions | None = None,
        retry: RetryPolicy | None = None,
        connect_timeout: int = 10,
    ) -> None:
        if not history and not current_state:
            raise ValueError("TimescaleDestination needs history=True, current_state=True or both")
        super().__init__(
            url, name=name, schema_prefix=schema_prefix, retry=retry, connect_timeout=connect_timeout
        )
        self.with_history = history
        self.with_current_state = current_state
        self.hypertable = hypertable or HypertableOptions()
        self._histories: dict[str, tuple[HistoryLayout, bool]] = {}  # layout, natively partitioned
        self._warned = False

    def __repr__(self) -> str:
        return f"TimescaleDestination(name={self.name!r})"  # the URL may hold a password

    # -- schema ----------------------------------------------------------------------------

    def history_layout(self, table: Table) -> HistoryLayout:
        layout = HistoryLayout.of(table, self.schema_prefix)
        layout.check()
        return layout

    def ensure_table(self, table: Table) -> list[str]:
        """Creates or evolves the history table (and the current-state tables if kept).

        New regular or static columns need no DDL in the history (they are new keys of
        ``_cdc_values``); they, type changes and dropped columns are recorded in
        ``cdc_meta.schema_history``. Key columns cannot change in Cassandra: a history table
        whose key columns differ from the schema's is an error.

        Raises:
            DestinationError: the existing history table does not fit the schema, or the
                database failed.
        """
        check_supported(self.name, table)
        state = self.layout(table) if self.with_current_state else None
        history = self.history_layout(table) if self.with_history else None

        def ensure(conn: psycopg.Connection[Any]) -> tuple[list[str], bool]:
            changes = self._ensure(conn, state) if state is not None else []
            partitioned = False
            if history is not None:
                more, partitioned = self._ensure_history(conn, history)
                changes += more
            return changes, partitioned

        (changes, partitioned), _ = self._run("schema update", table, None, ensure)
        if state is not None:
            self._ensured[table.qualified_name] = state
        if history is not None:
            self._histories[table.qualified_name] = (history, partitioned)
        return list(changes)

    @staticmethod
    def _ensure_meta(conn: psycopg.Connection[Any]) -> None:
        meta = sql.Identifier(META_SCHEMA)
        PostgresDestination._ensure_schema_history(conn)
        # Which Cassandra columns each history table has recorded, to report what evolved.
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {}.history_columns ("
                'destination text NOT NULL, keyspace text NOT NULL, "table" text NOT NULL, '
                '"column" text NOT NULL, type text NOT NULL, '
                'PRIMARY KEY (destination, keyspace, "table", "column"))'
            ).format(meta)
        )

    def _timescaledb_version(self, conn: psycopg.Connection[Any]) -> tuple[str | None, bool]:
        """The installed extension version (``None``: not installed) and whether it is available."""
        row = conn.execute(
            "SELECT (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'), "
            "EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')"
        ).fetchone()
        assert row is not None
        return row[0], bool(row[1])

    def _ensure_history(self, conn: psycopg.Connection[Any], layout: HistoryLayout) -> tuple[list[str], bool]:
        t = layout.table
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_id(f"schema:{layout.schema}"),))
        self._ensure_meta(conn)
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(layout.schema)))
        changes: list[str] = []
        where = f"{layout.schema}.{layout.name}"
        existing = self._existing_columns(conn, layout.schema, layout.name)
        version, available = self._timescaledb_version(conn)
        usable = version is not None and _version_tuple(version) >= MIN_TIMESCALEDB
        if not existing:
            partitioned = not usable
            conn.execute(create_table_statement(layout, partitioned=partitioned))
            if partitioned:
                changes.append(f"created table {where} (range-partitioned by month on _cdc_time)")
            else:
                for statement in hypertable_statements(layout, self.hypertable):
                    conn.execute(statement)
                changes.append(f"created hypertable {where} ({self._describe_hypertable()})")
        else:
            partitioned = self._relkind(conn, layout) == "p"
            keys = layout.key_column_names()
            for c in layout.columns():
                if c.name not in existing:
                    if c.name in keys:
                        raise DestinationError(
                            f"{where} has no key column {c.name}: Cassandra cannot change a table's "
                            "primary key, so the table was dropped and recreated; drop or rename the "
                            "history table to start a new one",
                            destination=self.name,
                            table=t.qualified_name,
                        )
                    conn.execute(
                        sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                            layout.ident(), sql.Identifier(c.name), sql.SQL(c.type)
                        )
                    )
                    changes.append(f"added column {c.name} {c.type} to {where}")
                elif existing[c.name] != _normal_type(c.type):
                    raise DestinationError(
                        f"column {c.name} of {where} is {existing[c.name]}, the schema needs {c.type}: "
                        "Cassandra does not change column types; drop the history table to rebuild it",
                        destination=self.name,
                        table=t.qualified_name,
                    )
            extra_keys = {
                c for c in existing if not c.startswith(naming.META_PREFIX) or c.startswith(naming.ESCAPE)
            } - keys
            if extra_keys:
                raise DestinationError(
                    f"{where} has key columns {sorted(extra_keys)} the schema lacks: Cassandra cannot "
                    "change a table's primary key; drop or rename the history table to start a new one",
                    destination=self.name,
                    table=t.qualified_name,
                )
        conn.execute(
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (_cdc_pk, _cdc_time)").format(
                sql.Identifier(naming.table_name(layout.name, "$pk")), layout.ident()
            )
        )
        if partitioned:
            self._warn_native(layout, version, available)
        changes += self._record_columns(conn, t, created=not existing)
        self._record_schema_changes(conn, t, changes)
        return changes, partitioned

    def _describe_hypertable(self) -> str:
        o = self.hypertable
        parts = [f"chunks of {o.chunk_interval} on _cdc_time"]
        if o.compress_after:
            parts.append(f"compression after {o.compress_after}")
        if o.drop_after:
            parts.append(f"retention {o.drop_after}")
        return ", ".join(parts)

    @staticmethod
    def _relkind(conn: psycopg.Connection[Any], layout: HistoryLayout) -> str | None:
        row = conn.execute(
            "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s",
            (layout.schema, layout.name),
        ).fetchone()
        return None if row is None else str(row[0])

    def _warn_native(self, layout: HistoryLayout, version: str | None, available: bool) -> None:
        if self._warned or (self.name, layout.schema) in _WARNED_NATIVE:
            return
        self._warned = True
        _WARNED_NATIVE.add((self.name, layout.schema))  # once per process, not once per run
        if version is None:
            why = "the timescaledb extension is not installed in this database" + (
                " (it is available: CREATE EXTENSION timescaledb before the first load)"
                if available
                else " (nor available on the server)"
            )
        elif _version_tuple(version) < MIN_TIMESCALEDB:
            why = f"timescaledb {version} is older than {'.'.join(map(str, MIN_TIMESCALEDB))}"
        else:
            why = "the history table was created natively partitioned before timescaledb was installed"
        log.warning(
            "%s: %s; history tables such as %s.%s use native PostgreSQL range partitioning by month "
            "on _cdc_time instead of hypertables: no compression or retention policies, partitions "
            "are created as data arrives",
            self.name,
            why,
            layout.schema,
            layout.name,
        )

    def _record_columns(self, conn: psycopg.Connection[Any], t: Table, *, created: bool) -> list[str]:
        meta = sql.Identifier(META_SCHEMA)
        known = {
            r[0]: r[1]
            for r in conn.execute(
                sql.SQL(
                    'SELECT "column", type FROM {}.history_columns '
                    'WHERE destination = %s AND keyspace = %s AND "table" = %s'
                ).format(meta),
                (self.name, t.keyspace, t.name),
            )
        }
        wanted = {c.name: c.type.cql() for c in t.static + t.regular}
        changes: list[str] = []
        added = [n for n in wanted if n not in known]
        for n in added:
            conn.execute(
                sql.SQL(
                    'INSERT INTO {}.history_columns (destination, keyspace, "table", "column", type) '
                    "VALUES (%s, %s, %s, %s, %s)"
                ).format(meta),
                (self.name, t.keyspace, t.name, n, wanted[n]),
            )
        if added and created:
            listed = ", ".join(f"{n} {wanted[n]}" for n in added)
            changes.append(f"history of {t.qualified_name} records columns in _cdc_values: {listed}")
        elif added:
            changes += [
                f"history of {t.qualified_name} records new column {n} {wanted[n]} in _cdc_values"
                for n in added
            ]
        for n, ty in known.items():
            if n not in wanted:
                conn.execute(
                    sql.SQL(
                        'DELETE FROM {}.history_columns WHERE destination = %s AND keyspace = %s AND "table" = %s '
                        'AND "column" = %s'
                    ).format(meta),
                    (self.name, t.keyspace, t.name, n),
                )
                changes.append(
                    f"column {n} {ty} is no longer in {t.qualified_name}: later changes do not carry it "
                    "(its history stays in _cdc_values)"
                )
            elif wanted[n] != ty:
                conn.execute(
                    sql.SQL(
                        "UPDATE {}.history_columns SET type = %s WHERE destination = %s AND keyspace = %s "
                        'AND "table" = %s AND "column" = %s'
                    ).format(meta),
                    (wanted[n], self.name, t.keyspace, t.name, n),
                )
                changes.append(
                    f"column {n} of {t.qualified_name} changed type from {ty} to {wanted[n]}: "
                    "_cdc_values holds each change's value rendered with the type it was written with"
                )
        return changes

    def _history(self, table: Table) -> tuple[HistoryLayout, bool]:
        entry = self._histories.get(table.qualified_name)
        if entry is None or entry[0].table is not table:
            self.ensure_table(table)
            entry = self._histories[table.qualified_name]
        return entry

    def _state(self, table: Table) -> Layout:
        if not self.with_current_state:
            raise CurrentStateDisabledError(
                "this TimescaleDB destination keeps only the change history: create it with "
                "current_state=True to keep (and read) the current state",
                destination=self.name,
                table=table.qualified_name,
            )
        return self._layout(table)

    def _need_history(self, table: Table) -> tuple[HistoryLayout, bool]:
        if not self.with_history:
            raise DestinationError(
                "this destination keeps no change history (history=False)",
                destination=self.name,
                table=table.qualified_name,
            )
        return self._history(table)

    # -- applying ----------------------------------------------------------------------------

    @paused_gc()
    def apply(self, table: Table, changes: Sequence[RowChange], *, batch: str = "") -> ApplyResult:
        """Appends the batch's new changes to the history and merges it into the current state.

        Copies of a change already stored (replays, other replicas) are skipped. History and
        state commit in one transaction; monthly partitions the batch needs are created first,
        in their own short transaction (creating a partition locks the whole table, so it is
        kept out of the load; an empty partition left by a failed load is harmless).

        Raises:
            DestinationError: a change belongs to another table, or the load failed.
        """
        wrong = [c for c in changes if (c.keyspace, c.table) != (table.keyspace, table.name)]
        if wrong:
            c = wrong[0]
            raise DestinationError(
                f"batch for {table.qualified_name} holds {len(wrong)} change(s) of {c.keyspace}.{c.table} "
                f"(first from segment {c.segment_id} position {c.position})",
                destination=self.name,
                table=table.qualified_name,
                batch=batch or None,
            )
        return self._apply_history(
            table, len(changes), batch, changes, None, lambda store: plan_batch(table, changes, store)
        )

    @paused_gc()
    def apply_batch(self, table: Table, changes: ChangeBatch, *, batch: str = "") -> ApplyResult:
        """:meth:`apply` for a staged change batch: history rows of plain row changes and the
        current state's fresh rows are built from its columns (:mod:`.columnar`,
        :mod:`..columnar`), the other changes as objects. A plain row change's document is
        rendered only once its id is known to be new."""
        plain: PlainRows | None = None
        others: Sequence[RowChange] = ()
        if self.with_history:
            plain, others = self._split_batch(table, changes)
        return self._apply_history(
            table,
            len(changes),
            batch,
            others,
            plain,
            lambda store: plan_change_batch(table, changes, store),
        )

    def _split_batch(
        self, table: Table, changes: ChangeBatch
    ) -> tuple[PlainRows | None, Sequence[RowChange]]:
        """A batch's plain row changes with a write time (column-wise), and the other changes."""
        plain, rest = timed_rows(table, changes.data)
        others = ChangeBatch(table, changes.data.filter(pa.array(rest))).to_changes() if rest.any() else []
        return plain, others

    def _rows_of(
        self,
        table: Table,
        changes: Sequence[RowChange],
        batch: str,
        unstorable: set[bytes] | None = None,
    ) -> dict[uuid.UUID, _Row]:
        """History rows of the changes, one per change id (the first copy's provenance kept).

        A change that cannot be stored raises, or, given ``unstorable``, adds its id there.
        """
        history, _ = self._history(table)
        rows: dict[uuid.UUID, _Row] = {}
        for change in changes:
            try:
                row = history_row(history, change, batch)
            except ValueError as exc:
                if unstorable is not None:
                    unstorable.add(change_id(table, change).bytes)
                    continue
                raise DestinationError(
                    f"change from segment {change.segment_id} position {change.position} "
                    f"cannot be stored: {exc}",
                    destination=self.name,
                    table=table.qualified_name,
                    batch=batch or None,
                ) from exc
            rows.setdefault(row.change_id, row)
        return rows

    def _apply_history(
        self,
        table: Table,
        count: int,
        batch: str,
        changes: Sequence[RowChange],
        plain: PlainRows | None,
        plan_of: Callable[[_Store], WritePlan],
    ) -> ApplyResult:
        """Writes history rows (``changes`` as objects, ``plain`` column-wise) and the state."""
        started = time.perf_counter()
        state = self._state(table) if self.with_current_state else None
        rows: dict[uuid.UUID, _Row] = {}
        notes: list[str] = []
        retried = 0
        history: HistoryLayout | None = None
        if self.with_history:
            history, partitioned = self._history(table)
            rows = self._rows_of(table, changes, batch)
            months = {month_of(r.time) for r in rows.values()}
            if plain is not None:
                months |= months_of(write_times(plain))
            if partitioned and months:
                layout = history
                created, retried = self._run(
                    "create partitions",
                    table,
                    batch or None,
                    lambda conn: self._ensure_partitions(conn, layout, months),
                )
                notes += [f"created partition {layout.schema}.{p}" for p in created]

        def transaction(conn: psycopg.Connection[Any]) -> tuple[int, int, int]:
            inserted = 0
            if history is not None and (rows or (plain is not None and len(plain))):
                inserted = self._insert_history(conn, history, list(rows.values()), plain, batch)
            state_rows = state_parts = 0
            if state is not None:
                plan = write_planned(conn, state, self.name, plan_of)
                state_rows, state_parts = plan.row_count, len(plan.partitions)
            return inserted, state_rows, state_parts

        (inserted, state_rows, state_parts), retries = self._run("apply", table, batch or None, transaction)
        if history is not None:
            notes.append(
                f"history: {inserted} change(s) inserted, {count - inserted} already stored or "
                "copies of another change in the batch"
            )
        if state is not None:
            notes.append(f"current state: {state_rows} row(s), {state_parts} partition record(s) written")
        return ApplyResult(
            self.name,
            table.qualified_name,
            count,
            inserted + state_rows,
            state_parts,
            time.perf_counter() - started,
            retried + retries,
            notes,
        )

    def _ensure_partitions(
        self, conn: psycopg.Connection[Any], layout: HistoryLayout, months: set[tuple[int, int]]
    ) -> list[str]:
        conn.execute(
            "SELECT pg_advisory_xact_lock(%s)", (_lock_id(f"history:{layout.schema}.{layout.name}"),)
        )
        existing = {
            r[0]
            for r in conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace "
                "WHERE n.nspname = %s AND p.relname = %s",
                (layout.schema, layout.name),
            )
        }
        created: list[str] = []
        for year, month in sorted(months):
            name = layout.partition_name(year, month)
            if name not in existing:
                conn.execute(partition_statement(layout, year, month))
                created.append(name)
        return created

    def _insert_history(
        self,
        conn: psycopg.Connection[Any],
        layout: HistoryLayout,
        rows: list[_Row],
        plain: PlainRows | None = None,
        batch: str = "",
    ) -> int:
        """Inserts the history rows not stored yet (``rows`` as objects, ``plain`` column-wise).

        Under the table's advisory lock, which every writer of the history takes: the rows'
        (change id, time) pairs are staged and the stored ones looked up through the unique
        index, and only the new rows are built (documents rendered) and COPYed, straight into
        the history (replica copies and replays cost the ids and the lookup). Should a stored
        row slip through all the same (a writer that does not take the lock), the unique
        constraint refuses the COPY, a savepoint undoes it, and every row goes through a
        staging table and ``INSERT … ON CONFLICT DO NOTHING``.
        """
        conn.execute(
            "SELECT pg_advisory_xact_lock(%s)", (_lock_id(f"history:{layout.schema}.{layout.name}"),)
        )
        plain = plain if plain is not None and len(plain) else None
        stored = self._stored_ids(conn, layout, rows, plain)
        new_rows = [r for r in rows if r.change_id.bytes not in stored]
        dumped: HistoryColumns | None = None
        if plain is not None:
            new = plain.take([i for i, cid in enumerate(plain.ids) if cid not in stored]) if stored else plain
            if len(new):
                dumped, left = history_columns(layout, new, batch, ColumnCopy(conn))
                if len(left):  # documents jsonb cannot hold as rendered column-wise
                    changes = ChangeBatch(layout.table, new.rows.take(pa.array(left))).to_changes()
                    new_rows += self._rows_of(layout.table, changes, batch).values()
        count = len(new_rows) + (len(dumped) if dumped is not None else 0)
        if not count:
            return 0
        try:
            with conn.transaction():
                self._copy_history(conn, layout, layout.ident(), new_rows, dumped)
            return count
        except psycopg.errors.UniqueViolation:
            log.warning(
                "%s: history %s.%s holds rows its lookup did not find (a writer without the "
                "advisory lock?): inserting through INSERT … ON CONFLICT DO NOTHING",
                self.name,
                layout.schema,
                layout.name,
            )
        columns = layout.columns()
        defs = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.type)) for c in columns
        )
        names = sql.SQL(", ").join(sql.Identifier(c.name) for c in columns)
        # Named after the column list, so a schema change in this session gets a new staging table.
        shape = repr([(c.name, c.type) for c in columns]).encode()
        stage = sql.Identifier(f"_cdc_hstage_{hashlib.sha1(layout.name.encode() + shape).hexdigest()[:16]}")
        conn.execute(
            sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ({}) ON COMMIT DELETE ROWS").format(stage, defs)
        )
        conn.execute(sql.SQL("TRUNCATE {}").format(stage))
        self._copy_history(conn, layout, stage, new_rows, dumped)
        cur = conn.execute(
            sql.SQL(
                "INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT (_cdc_change_id, _cdc_time) DO NOTHING"
            ).format(layout.ident(), names, names, stage)
        )
        return cur.rowcount

    @staticmethod
    def _copy_history(
        conn: psycopg.Connection[Any],
        layout: HistoryLayout,
        target: sql.Composable,
        rows: list[_Row],
        dumped: HistoryColumns | None,
    ) -> None:
        """COPYs history rows into ``target`` (the history or its staging table)."""
        columns = layout.columns()
        names = sql.SQL(", ").join(sql.Identifier(c.name) for c in columns)
        copy = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(target, names)
        if rows:
            with conn.cursor().copy(copy) as cp:
                cp.set_types([c.copy_type for c in columns])
                for r in rows:
                    cp.write_row(r.values)
        if dumped is not None and len(dumped):
            with conn.cursor().copy(copy) as cp:
                for chunk in ColumnCopy(conn).stream(dumped.columns):
                    cp.write(chunk)

    @staticmethod
    def _stored_ids(
        conn: psycopg.Connection[Any], layout: HistoryLayout, rows: list[_Row], plain: PlainRows | None = None
    ) -> set[bytes]:
        """The change ids (16 bytes each) the history holds among these rows: ``rows`` as
        objects, ``plain`` column-wise (by their ids and write times)."""
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS _cdc_hids (id uuid, t timestamptz) ON COMMIT DELETE ROWS"
        )
        conn.execute("TRUNCATE _cdc_hids")
        copy = "COPY _cdc_hids (id, t) FROM STDIN (FORMAT BINARY)"
        if rows:
            with conn.cursor().copy(copy) as cp:
                cp.set_types(["uuid", "timestamptz"])
                for r in rows:
                    cp.write_row((r.change_id, r.time))
        if plain is not None and len(plain):
            ids = fixed_width(b"".join(plain.ids), 16, len(plain))
            with conn.cursor().copy(copy) as cp:
                for chunk in ColumnCopy(conn).stream([ids, pg_times(write_times(plain))]):
                    cp.write(chunk)
        # With statistics the planner probes the unique index per staged id instead of
        # scanning the history.
        conn.execute("ANALYZE _cdc_hids")
        found = conn.execute(
            sql.SQL(
                "SELECT s.id FROM _cdc_hids s WHERE EXISTS "
                "(SELECT 1 FROM {} h WHERE h._cdc_change_id = s.id AND h._cdc_time = s.t)"
            ).format(layout.ident())
        )
        return {r[0].bytes for r in found}

    # -- reading ------------------------------------------------------------------------------

    def read_state(
        self, table: Table, now: int, keys: Sequence[Key] | None = None
    ) -> dict[Key, VisiblePartition]:
        """What Cassandra would return at ``now``, from the current-state tables.

        Raises:
            CurrentStateDisabledError: the destination was created without ``current_state``.
        """
        self._state(table)
        return super().read_state(table, now, keys)

    def pending(self, table: Table, changes: Sequence[RowChange]) -> int:
        """Changes of the batch missing from the history, plus current-state writes if kept."""
        missing = self._missing_history(table, changes) if changes else 0
        if self.with_current_state:
            self._state(table)
            missing += super().pending(table, changes)
        return missing

    def pending_batch(self, table: Table, changes: ChangeBatch) -> int:
        missing = 0
        if self.with_history and len(changes):
            # Plain row changes by their ids and write times, computed column-wise as a load
            # computes them (no documents needed); the others as history rows.
            plain, others = self._split_batch(table, changes)
            missing = self._missing_history(table, others, plain)
        if self.with_current_state:
            self._state(table)
            missing += super().pending_batch(table, changes)
        return missing

    def _missing_history(
        self, table: Table, changes: Sequence[RowChange], plain: PlainRows | None = None
    ) -> int:
        """How many distinct changes the history lacks (0 without a history), of ``changes``
        (objects: their history rows built as a load builds them) and of ``plain`` (plain row
        changes with a write time); all looked up by (time, id) as a load does. A change no
        load can store counts as missing.
        """
        if not self.with_history:
            return 0
        layout, _ = self._history(table)
        unstorable: set[bytes] = set()
        rows = self._rows_of(table, changes, "", unstorable)
        wanted = {cid.bytes for cid in rows} | set(plain.ids if plain is not None else ()) | unstorable
        if not wanted:
            return 0
        stored, _ = self._run(
            "check", table, None, lambda conn: self._stored_ids(conn, layout, list(rows.values()), plain)
        )
        return len(wanted - stored)

    def history(
        self,
        table: Table,
        *,
        keys: Sequence[Key] | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> list[HistoryRow]:
        """The stored changes, in write-time order (then change id), for tests and dumps.

        Args:
            table: the Cassandra table.
            keys: only these partitions (serialized partition keys, as ``read_state`` takes).
            since: only changes written at or after this time.
            until: only changes written before this time.
        """
        layout, _ = self._need_history(table)
        t = layout.table
        conds: list[sql.Composable] = []
        params: list[Any] = []
        if keys is not None:
            conds.append(sql.SQL("_cdc_pk = ANY(%s)"))
            params.append([encode_key(k) for k in keys])
        if since is not None:
            conds.append(sql.SQL("_cdc_time >= %s"))
            params.append(since)
        if until is not None:
            conds.append(sql.SQL("_cdc_time < %s"))
            params.append(until)
        query = sql.SQL(
            "SELECT *, tableoid::regclass::text AS _cdc_partition FROM {}{} ORDER BY _cdc_time, _cdc_change_id"
        ).format(layout.ident(), sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conds) if conds else sql.SQL(""))

        def keys_of(rec: dict[str, Any], columns: list[Column]) -> dict[str, Any]:
            return {c.name: rec[naming.value_column(c.name)] for c in columns}

        def read(conn: psycopg.Connection[Any]) -> list[HistoryRow]:
            with conn.cursor(row_factory=dict_row) as cur:
                return [
                    HistoryRow(
                        time=rec["_cdc_time"],
                        timestamp=rec["_cdc_timestamp"],
                        change_id=rec["_cdc_change_id"],
                        operation=rec["_cdc_operation"],
                        kind=rec["_cdc_kind"],
                        partition_key=keys_of(rec, t.partition_key),
                        clustering=keys_of(rec, t.clustering) if rec["_cdc_kind"] == ChangeKind.ROW else {},
                        values=full_cells(rec["_cdc_values"], rec["_cdc_timestamp"]),
                        liveness_timestamp=rec["_cdc_liveness_ts"],
                        liveness_ttl=rec["_cdc_liveness_ttl"],
                        liveness_expires=rec["_cdc_liveness_expires"],
                        deletion_timestamp=rec["_cdc_deletion_ts"],
                        deletion_time=rec["_cdc_deletion_time"],
                        range=rec["_cdc_range"],
                        node=rec["_cdc_node"],
                        segment_id=rec["_cdc_segment_id"],
                        position=rec["_cdc_position"],
                        entry_start=rec["_cdc_entry_start"],
                        batch=rec["_cdc_batch"],
                        partition=rec["_cdc_partition"],
                    )
                    for rec in cur.execute(query, params)
                ]

        result, _ = self._run("read history", table, None, read)
        return list(result)

    def history_count(self, table: Table) -> int:
        """How many changes the history holds for ``table`` (each unique change once)."""
        layout, _ = self._need_history(table)
        query = sql.SQL("SELECT count(*) FROM {}").format(layout.ident())

        def count(conn: psycopg.Connection[Any]) -> int:
            row = conn.execute(query).fetchone()
            return int(row[0]) if row else 0

        result, _ = self._run("count history", table, None, count)
        return int(result)

    # -- maintenance ----------------------------------------------------------------------------

    def truncate(self, table: Table) -> None:
        """Empties the history (keeping its partitions) and the current state, if kept."""
        if self.with_history:
            layout, _ = self._history(table)
            self._run(
                "truncate history",
                table,
                None,
                lambda conn: conn.execute(sql.SQL("TRUNCATE {}").format(layout.ident())),
            )
        if self.with_current_state:
            super().truncate(table)

    def refresh(self, table: Table, now: int) -> int:
        """Re-materialises current-state rows whose values expired by ``now`` (needs current state)."""
        self._state(table)
        return super().refresh(table, now)

    def purge(self, table: Table, now: int, grace_seconds: int = 864_000) -> int:
        """Purges deleted current-state rows (needs current state); the history is never purged here."""
        self._state(table)
        return super().purge(table, now, grace_seconds)


def _version_tuple(version: str) -> tuple[int, ...]:
    out: list[int] = []
    for part in version.split("."):
        digits = re.match(r"\d+", part)
        if digits is None:
            break
        out.append(int(digits.group()))
    return tuple(out)
