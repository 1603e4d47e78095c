"""Hypothesis strategies for CQL types, values, tables and commit log mutations.

Everything generated here is something the writer (:mod:`cdc_platform.commitlog.writer`) can
encode and the decoder must read back unchanged, except for the filtering Cassandra applies on
read (cells of dropped columns written at or before the drop), which :func:`expected_decoded`
reproduces. Values follow the Python representation documented in
:mod:`cdc_platform.schema.values`; cell and clustering values are raw serialized bytes, as in
:mod:`cdc_platform.commitlog.model`.

Rules kept so that generated data is data Cassandra could hold:

- ``duration`` is never a set element, a map key, a partition-key or clustering column (nor
  inside one): Cassandra forbids it where values are sorted.
- Elements of collections, tuples, vectors and UDT fields are frozen; only a column's top-level
  type can be multi-cell.
- Rows are never empty (the decoder drops rows without liveness, deletion or data), complex
  columns always hold a cell or a deletion, range tombstone bounds come in open/close pairs.
- Row data is in serialization-header order (:func:`~cdc_platform.commitlog.writer.column_sort_key`),
  cells of a complex column in Cassandra's path order.
"""

from __future__ import annotations

import decimal
import functools
from dataclasses import replace
from typing import Any

from hypothesis import strategies as st

from cdc_platform.commitlog.model import (
    BoundKind,
    Cell,
    ComplexColumn,
    DeletionTime,
    Liveness,
    Mutation,
    PartitionUpdate,
    RangeTombstoneMarker,
    Row,
)
from cdc_platform.commitlog.writer import column_sort_key
from cdc_platform.schema.model import Column, ColumnKind, DroppedColumn, Table
from cdc_platform.schema.types import (
    CqlType,
    ListType,
    MapType,
    NativeType,
    SetType,
    TupleType,
    UserType,
    VectorType,
)
from cdc_platform.schema.values import Duration, comparator_key, join_composite, serialize

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1
NANOS_PER_DAY = 86_400 * 1_000_000_000

# Every native type a column can have (counter and the internal ``empty`` type are left out).
NATIVE_NAMES: tuple[str, ...] = (
    "ascii",
    "text",
    "blob",
    "boolean",
    "tinyint",
    "smallint",
    "int",
    "bigint",
    "varint",
    "float",
    "double",
    "decimal",
    "uuid",
    "timeuuid",
    "timestamp",
    "date",
    "time",
    "duration",
    "inet",
)
FIXED_LENGTH_NATIVES: tuple[str, ...] = tuple(
    n for n in NATIVE_NAMES if NativeType(n).fixed_length is not None
)

# Around "now" (2023-11) in µs and s, so that drop times, timestamps and deletion times collide.
_NOW_MICROS = 1_700_000_000_000_000
_NOW_SECONDS = 1_700_000_000


# --------------------------------------------------------------------------------------------
# Names


@functools.cache
def names() -> st.SearchStrategy[str]:
    """Identifiers as stored: plain, mixed case, with quotes, or any Unicode text."""
    return st.one_of(
        st.from_regex(r"[a-z][a-z0-9_]{0,9}", fullmatch=True),
        st.from_regex(r"[A-Za-z][A-Za-z0-9_ ]{0,9}", fullmatch=True),
        st.builds(lambda a, b: f'{a}"{b}', st.text(max_size=4), st.text(max_size=4)),
        st.text(min_size=1, max_size=8),
        # 128+ name bytes: the name length takes a multi-byte VInt.
        st.text(alphabet="éß€", min_size=64, max_size=66),
    )


# --------------------------------------------------------------------------------------------
# Types


@functools.cache
def native_types(*, allow_duration: bool = True) -> st.SearchStrategy[CqlType]:
    """Every native column type (not ``counter``/``empty``); ``duration`` only if allowed."""
    pool = [n for n in NATIVE_NAMES if allow_duration or n != "duration"]
    return st.sampled_from(pool).map(NativeType)


@functools.cache
def cql_types(
    max_depth: int = 2,
    *,
    frozen: bool = False,
    allow_duration: bool = True,
    allow_udt: bool = True,
) -> st.SearchStrategy[CqlType]:
    """Random CQL types.

    Args:
        max_depth: nesting levels of collections, tuples, UDTs and vectors (0 = native only).
        frozen: every level is frozen (primary-key columns, elements); otherwise the top level
            may be a multi-cell collection or UDT.
        allow_duration: allow ``duration`` (not where values are sorted: set elements, map keys,
            primary keys).
        allow_udt: allow user types (dropped columns record UDTs as tuples, so they have none).
    """
    natives = native_types(allow_duration=allow_duration)
    if max_depth <= 0:
        return natives
    inner = cql_types(max_depth - 1, frozen=True, allow_duration=allow_duration, allow_udt=allow_udt)
    sortable = cql_types(max_depth - 1, frozen=True, allow_duration=False, allow_udt=allow_udt)
    is_frozen = st.just(True) if frozen else st.booleans()
    composites = [
        st.builds(ListType, inner, is_frozen),
        st.builds(SetType, sortable, is_frozen),
        st.builds(MapType, sortable, inner, is_frozen),
        st.lists(inner, min_size=1, max_size=3).map(lambda ts: TupleType(tuple(ts))),
        st.builds(
            VectorType,
            st.one_of(st.sampled_from([n for n in FIXED_LENGTH_NATIVES]).map(NativeType), inner),
            st.integers(1, 3),
        ),
    ]
    if allow_udt:
        composites.append(_user_types(inner, is_frozen))
    return st.one_of(natives, st.one_of(composites))


@functools.cache
def _user_types(
    fields: st.SearchStrategy[CqlType], is_frozen: st.SearchStrategy[bool]
) -> st.SearchStrategy[CqlType]:
    @st.composite
    def build(draw: st.DrawFn) -> CqlType:
        field_names = draw(st.lists(names(), min_size=1, max_size=3, unique=True))
        field_types = tuple(draw(fields) for _ in field_names)
        return UserType(draw(names()), draw(names()), tuple(field_names), field_types, draw(is_frozen))

    return build()


# --------------------------------------------------------------------------------------------
# Values


@functools.cache
def _decimals() -> st.SearchStrategy[decimal.Decimal]:
    def build(unscaled: int, scale: int) -> decimal.Decimal:
        digits = tuple(int(c) for c in str(abs(unscaled)))
        return decimal.Decimal((1 if unscaled < 0 else 0, digits, -scale))

    return st.builds(
        build,
        st.integers(-(10**40), 10**40),
        st.one_of(st.integers(-10, 10), st.integers(INT32_MIN, INT32_MAX)),
    )


@functools.cache
def _durations() -> st.SearchStrategy[Duration]:
    def build(negative: bool, months: int, days: int, nanos: int) -> Duration:
        sign = -1 if negative else 1
        return Duration(sign * months, sign * days, sign * nanos)

    return st.builds(
        build, st.booleans(), st.integers(0, INT32_MAX), st.integers(0, INT32_MAX), st.integers(0, INT64_MAX)
    )


_NATIVE_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "ascii": st.text(alphabet=st.characters(codec="ascii"), max_size=12),
    "text": st.text(max_size=12),
    "blob": st.binary(max_size=12),
    "boolean": st.booleans(),
    "tinyint": st.integers(-(1 << 7), (1 << 7) - 1),
    "smallint": st.integers(-(1 << 15), (1 << 15) - 1),
    "int": st.integers(INT32_MIN, INT32_MAX),
    "bigint": st.integers(INT64_MIN, INT64_MAX),
    "varint": st.integers(-(1 << 130), 1 << 130),
    "float": st.floats(width=32),
    "double": st.floats(),
    "decimal": _decimals(),
    "uuid": st.uuids(),
    "timeuuid": st.uuids(version=1),
    "timestamp": st.integers(INT64_MIN, INT64_MAX),
    "date": st.integers(INT32_MIN, INT32_MAX),
    "time": st.integers(0, NANOS_PER_DAY - 1),
    "duration": _durations(),
    "inet": st.ip_addresses(),
}


@functools.cache
def values_for(cql_type: CqlType) -> st.SearchStrategy[Any]:
    """Python values of ``cql_type`` in the representation of :mod:`cdc_platform.schema.values`.

    Floats include NaN, infinities and -0.0: compare serialized bytes, not values. Sets and
    maps have distinct elements/keys (by serialized bytes).
    """
    if isinstance(cql_type, NativeType):
        return _NATIVE_VALUES[cql_type.name]
    if isinstance(cql_type, ListType):
        return st.lists(values_for(cql_type.element), max_size=3)
    if isinstance(cql_type, SetType):
        elem = cql_type.element
        return st.lists(values_for(elem), max_size=3, unique_by=functools.partial(serialize, elem))
    if isinstance(cql_type, MapType):
        key_type = cql_type.key
        return st.lists(
            st.tuples(values_for(key_type), values_for(cql_type.value)),
            max_size=3,
            unique_by=lambda kv: serialize(key_type, kv[0]),
        )
    if isinstance(cql_type, TupleType):
        return st.tuples(*(st.one_of(st.none(), values_for(t)) for t in cql_type.elements))
    if isinstance(cql_type, UserType):
        return st.fixed_dictionaries(
            {
                n: st.one_of(st.none(), values_for(t))
                for n, t in zip(cql_type.field_names, cql_type.field_types, strict=True)
            }
        )
    if isinstance(cql_type, VectorType):
        return st.lists(
            values_for(cql_type.element), min_size=cql_type.dimension, max_size=cql_type.dimension
        )
    raise TypeError(f"no value strategy for {cql_type!r}")


@functools.cache
def value_bytes(cql_type: CqlType) -> st.SearchStrategy[bytes]:
    """Serialized values of ``cql_type`` (what cells and clustering prefixes hold)."""
    return values_for(cql_type).map(functools.partial(serialize, cql_type))


# --------------------------------------------------------------------------------------------
# Times


@functools.cache
def timestamps() -> st.SearchStrategy[int]:
    """Write timestamps (µs): any int64 except ``INT64_MIN`` (Cassandra's "no timestamp")."""
    return st.one_of(
        st.integers(INT64_MIN + 1, INT64_MAX),
        st.integers(_NOW_MICROS - 1000, _NOW_MICROS + 1000),
        st.sampled_from([INT64_MIN + 1, -1, 0, 1, INT64_MAX]),
    )


@functools.cache
def local_deletion_times(version: int) -> st.SearchStrategy[int]:
    """Local deletion/expiry times (s): int32 for versions 6/7, uint32 below ``0xFFFFFFFF`` for 8."""
    low, high = (0, 0xFFFFFFFE) if version >= 8 else (INT32_MIN, INT32_MAX)
    return st.one_of(
        st.integers(low, high),
        st.integers(_NOW_SECONDS - 100, _NOW_SECONDS + 100),
        st.sampled_from([low, high, max(low, 0)]),
    )


@functools.cache
def ttls() -> st.SearchStrategy[int]:
    """Positive int32 TTLs (s)."""
    return st.one_of(st.integers(1, INT32_MAX), st.integers(1, 30 * 86_400))


@functools.cache
def deletion_times(version: int) -> st.SearchStrategy[DeletionTime]:
    return st.tuples(timestamps(), local_deletion_times(version)).map(lambda t: DeletionTime(*t))


@functools.cache
def liveness_infos(version: int) -> st.SearchStrategy[Liveness]:
    """Row primary-key liveness: plain, or expiring (TTL with its expiry time)."""
    # Not st.builds(Liveness, ts): builds() also fills in the defaulted ttl/expiry.
    return st.one_of(
        timestamps().map(lambda ts: Liveness(ts)),
        st.tuples(timestamps(), ttls(), local_deletion_times(version)).map(lambda t: Liveness(*t)),
    )


# --------------------------------------------------------------------------------------------
# Tables


def _unique_name(base: str, used: set[str]) -> str:
    name = base
    while name in used:
        name += "'"
    used.add(name)
    return name


@st.composite
def tables(draw: st.DrawFn, *, wide: bool | None = None, keyspace: str | None = None) -> Table:
    """Random tables.

    1–3 partition-key columns, 0–3 clustering columns (some ``DESC``), 0–6 regular columns,
    0–2 static columns (only with clustering), optional dropped columns: dropped for good (their
    cells resolve through ``dropped``) or dropped and re-added.

    Args:
        wide: add 64–72 more regular columns (native types) so that rows use the large
            column-subset encodings; ``None`` = sometimes.
        keyspace: the keyspace name (random when not given).
    """
    if wide is None:
        wide = draw(st.integers(0, 9)) == 0
    n_pk = draw(st.integers(1, 3))
    # Wide tables get clustering so that a partition has several rows using different subsets.
    n_ck = draw(st.integers(1 if wide else 0, 3))
    n_reg = draw(st.integers(0, 6))
    n_static = draw(st.integers(0, 2)) if n_ck else 0
    n_dropped = draw(st.integers(0, 2))
    total = n_pk + n_ck + n_reg + n_static + n_dropped
    all_names = draw(st.lists(names(), min_size=total, max_size=total, unique=True))
    used = set(all_names)
    it = iter(all_names)
    key_types = cql_types(1, frozen=True, allow_duration=False)
    columns: list[Column] = []
    for i in range(n_pk):
        columns.append(Column(next(it), draw(key_types), ColumnKind.PARTITION_KEY, i))
    for i in range(n_ck):
        columns.append(Column(next(it), draw(key_types), ColumnKind.CLUSTERING, i, draw(st.booleans())))
    for _ in range(n_reg):
        columns.append(Column(next(it), draw(cql_types(2)), ColumnKind.REGULAR))
    for _ in range(n_static):
        columns.append(Column(next(it), draw(cql_types(2)), ColumnKind.STATIC))
    if wide:
        prefix = draw(names())
        for i in range(draw(st.integers(64, 72))):
            columns.append(
                Column(_unique_name(f"{prefix}{i}", used), draw(native_types()), ColumnKind.REGULAR)
            )
    drop_times = st.one_of(
        st.integers(_NOW_MICROS - 1000, _NOW_MICROS + 1000), st.integers(INT64_MIN + 1, INT64_MAX)
    )
    dropped: dict[str, DroppedColumn] = {}
    for _ in range(n_dropped):
        kind = ColumnKind.STATIC if n_ck and draw(st.booleans()) else ColumnKind.REGULAR
        name = next(it)
        dropped[name] = DroppedColumn(name, draw(cql_types(1, allow_udt=False)), draw(drop_times), kind)
    # Dropped, then re-added: the current column decodes, older cells are still discarded.
    readdable = [c for c in columns if not c.is_primary_key]
    if readdable and draw(st.integers(0, 3)) == 0:
        c = draw(st.sampled_from(readdable))
        dropped[c.name] = DroppedColumn(c.name, draw(cql_types(1, allow_udt=False)), draw(drop_times), c.kind)
    return Table(
        keyspace if keyspace is not None else draw(names()),
        draw(names()),
        draw(st.uuids()),
        columns,
        dropped,
        {"cdc": "true"},
    )


def wide_tables() -> st.SearchStrategy[Table]:
    """Tables with at least 64 regular columns (large column-subset encodings)."""
    return tables(wide=True)


def writable_columns(table: Table, kind: ColumnKind) -> list[Column]:
    """Columns of ``kind`` that cells can be written to: current ones and dropped-only ones."""
    current = [c for c in table.columns if c.kind is kind]
    gone = [d.as_column() for d in table.dropped.values() if d.kind is kind and d.name not in table.by_name]
    return current + gone


# --------------------------------------------------------------------------------------------
# Mutations


@st.composite
def partition_keys(draw: st.DrawFn, table: Table) -> bytes:
    """Raw partition-key bytes: the value, or a ``CompositeType`` of the values."""
    parts = [draw(value_bytes(c.type)) for c in table.partition_key]
    if len(parts) == 1:
        # Cassandra rejects empty partition keys; a NUL is a valid text/ascii/blob value.
        return parts[0] or b"\x00"
    return join_composite(parts)


def _column_timestamps(table: Table, column: Column) -> st.SearchStrategy[int]:
    dropped = table.dropped.get(column.name)
    if dropped is None:
        return timestamps()
    # Straddle the drop time: cells at or before it are discarded on read.
    t = dropped.dropped_time
    return st.one_of(timestamps(), st.integers(max(INT64_MIN + 1, t - 2), min(INT64_MAX, t + 2)))


@st.composite
def _simple_cells(draw: st.DrawFn, table: Table, column: Column, row: Liveness | None, version: int) -> Cell:
    kind = draw(st.sampled_from(["live", "live", "expiring", "tombstone", "empty"]))
    use_row = row is not None and draw(st.booleans())  # USE_ROW_TIMESTAMP
    ts = row.timestamp if use_row and row is not None else draw(_column_timestamps(table, column))
    if kind == "live":
        return Cell(column, ts, draw(value_bytes(column.type)))
    if kind == "empty":
        return Cell(column, ts, b"")
    if kind == "tombstone":
        return Cell(column, ts, b"", 0, draw(local_deletion_times(version)))
    value = draw(st.one_of(value_bytes(column.type), st.just(b"")))
    if row is not None and row.ttl and draw(st.booleans()):
        return Cell(column, ts, value, row.ttl, row.local_expiration_time)  # USE_ROW_TTL
    return Cell(column, ts, value, draw(ttls()), draw(local_deletion_times(version)))


def _cell_paths(cql_type: CqlType) -> tuple[st.SearchStrategy[bytes], Any, CqlType | None]:
    """Path strategy, path sort key and the type of element values (None: no value)."""
    if isinstance(cql_type, ListType):
        timeuuid = NativeType("timeuuid")
        return st.uuids(version=1).map(lambda u: u.bytes), comparator_key(timeuuid), cql_type.element
    if isinstance(cql_type, SetType):
        return value_bytes(cql_type.element), comparator_key(cql_type.element), None
    if isinstance(cql_type, MapType):
        return value_bytes(cql_type.key), comparator_key(cql_type.key), cql_type.value
    assert isinstance(cql_type, UserType)
    n = len(cql_type.field_names)
    return st.integers(0, n - 1).map(lambda i: i.to_bytes(2, "big")), bytes, None


@st.composite
def _complex_columns(
    draw: st.DrawFn, table: Table, column: Column, row: Liveness | None, version: int
) -> ComplexColumn:
    deletion = draw(st.one_of(st.none(), deletion_times(version)))
    paths_strategy, sort_key, value_type = _cell_paths(column.type)
    paths = draw(st.lists(paths_strategy, min_size=0 if deletion else 1, max_size=3, unique=True))
    paths.sort(key=sort_key)
    cells = []
    for path in paths:
        if isinstance(column.type, UserType):
            value_strategy = value_bytes(column.type.field_types[int.from_bytes(path, "big")])
        elif value_type is not None:
            value_strategy = value_bytes(value_type)
        else:
            value_strategy = st.just(b"")  # set elements live in the path
        ts = (
            row.timestamp
            if row is not None and draw(st.booleans())
            else draw(_column_timestamps(table, column))
        )
        kind = draw(st.sampled_from(["live", "live", "expiring", "tombstone"]))
        if kind == "live":
            cells.append(Cell(column, ts, draw(value_strategy), path=path))
        elif kind == "tombstone":
            cells.append(Cell(column, ts, b"", 0, draw(local_deletion_times(version)), path))
        elif row is not None and row.ttl and draw(st.booleans()):
            cells.append(Cell(column, ts, draw(value_strategy), row.ttl, row.local_expiration_time, path))
        else:
            cells.append(
                Cell(
                    column, ts, draw(value_strategy), draw(ttls()), draw(local_deletion_times(version)), path
                )
            )
    return ComplexColumn(column, deletion, tuple(cells))


def _subset_sizes(n: int) -> st.SearchStrategy[int]:
    """How many of ``n`` header columns a row uses: all, a few (< n/2) or many (≥ n/2)."""
    options = [st.just(n), st.integers(0, n)]
    if n >= 2:
        options += [st.integers(0, n // 2 - 1), st.integers(n // 2, n - 1)]
    return st.one_of(options)


@st.composite
def rows(
    draw: st.DrawFn,
    table: Table,
    version: int = 7,
    *,
    static: bool = False,
    all_columns: bool = False,
) -> Row:
    """A non-empty row (or static row) of ``table`` with data in header order."""
    columns = writable_columns(table, ColumnKind.STATIC if static else ColumnKind.REGULAR)
    clustering: tuple[bytes | None, ...] = ()
    if not static:
        clustering = tuple(draw(st.one_of(value_bytes(c.type), st.just(b""))) for c in table.clustering)
    liveness = draw(st.one_of(st.none(), liveness_infos(version)))
    deletion = draw(st.one_of(st.none(), deletion_times(version)))
    shadowable = deletion is not None and not static and draw(st.integers(0, 4)) == 0
    count = len(columns) if all_columns else draw(_subset_sizes(len(columns)))
    chosen = sorted(draw(st.permutations(columns))[:count], key=column_sort_key)
    data: list[Cell | ComplexColumn] = []
    for c in chosen:
        if c.type.is_multicell:
            data.append(draw(_complex_columns(table, c, liveness, version)))
        else:
            data.append(draw(_simple_cells(table, c, liveness, version)))
    if liveness is None and deletion is None and not data:
        liveness = Liveness(draw(timestamps()))
    return Row(clustering, liveness, deletion, tuple(data), is_static=static, shadowable=shadowable)


@st.composite
def range_tombstones(draw: st.DrawFn, table: Table, version: int = 7) -> list[RangeTombstoneMarker]:
    """An open bound, 0–2 boundaries, a close bound; prefixes of 0..N clustering values."""

    def prefix() -> tuple[bytes | None, ...]:
        size = draw(st.integers(0, len(table.clustering)))
        return tuple(draw(value_bytes(c.type)) for c in table.clustering[:size])

    opened = draw(deletion_times(version))
    start = draw(st.sampled_from([BoundKind.INCL_START_BOUND, BoundKind.EXCL_START_BOUND]))
    markers = [RangeTombstoneMarker(start, prefix(), (opened,))]
    for _ in range(draw(st.integers(0, 2))):
        kind = draw(
            st.sampled_from([BoundKind.EXCL_END_INCL_START_BOUNDARY, BoundKind.INCL_END_EXCL_START_BOUNDARY])
        )
        following = draw(deletion_times(version))
        markers.append(RangeTombstoneMarker(kind, prefix(), (opened, following)))
        opened = following
    end = draw(st.sampled_from([BoundKind.INCL_END_BOUND, BoundKind.EXCL_END_BOUND]))
    markers.append(RangeTombstoneMarker(end, prefix(), (opened,)))
    return markers


@st.composite
def partition_updates(
    draw: st.DrawFn, table: Table, version: int = 7, *, key: bytes | None = None
) -> PartitionUpdate:
    """A partition update of ``table`` as written by commit log ``version`` (6, 7 or 8).

    Args:
        key: the partition key bytes (random when not given; give one to build multi-table
            mutations, whose updates share the key).
    """
    if key is None:
        key = draw(partition_keys(table))
    if draw(st.integers(0, 24)) == 0:
        return PartitionUpdate(table, key, is_empty=True)
    partition_deletion = draw(st.one_of(st.none(), deletion_times(version)))
    static_row = None
    if writable_columns(table, ColumnKind.STATIC) and draw(st.booleans()):
        static_row = draw(rows(table, version, static=True))
    clustered = bool(table.clustering)
    wide = len(writable_columns(table, ColumnKind.REGULAR)) >= 64
    blocks = st.one_of(rows(table, version).map(lambda r: [r]), range_tombstones(table, version))
    unfiltereds: list[Row | RangeTombstoneMarker] = []
    if wide:
        # One row with every column makes the header ≥ 64 columns, whatever the other rows use.
        unfiltereds.append(draw(rows(table, version, all_columns=True)))
    for block in draw(st.lists(blocks if clustered else st.nothing(), max_size=4 if clustered else 0)):
        unfiltereds.extend(block)
    if not clustered and not wide and draw(st.booleans()):
        unfiltereds.append(draw(rows(table, version)))
    return PartitionUpdate(table, key, partition_deletion, static_row, tuple(unfiltereds))


def mutations(table: Table, version: int = 7) -> st.SearchStrategy[Mutation]:
    """Single-table mutations (one partition update)."""
    return partition_updates(table, version).map(lambda u: Mutation((u,)))


# --------------------------------------------------------------------------------------------
# The decoder's view of a written mutation


def expected_decoded(mutation: Mutation) -> Mutation:
    """What decoding ``mutation`` must give: Cassandra's read-time filtering applied.

    Cells of a dropped column written at or before the drop time are discarded, so is a complex
    deletion at or before it; complex columns left with nothing vanish, and so do rows left
    empty (a static row left empty becomes ``None``).
    """
    return Mutation(tuple(_expected_update(u) for u in mutation.updates))


def _expected_update(update: PartitionUpdate) -> PartitionUpdate:
    if update.is_empty:
        return update
    dropped = {d.name_bytes: d.dropped_time for d in update.table.dropped.values()}
    static_row = _filter_row(update.static_row, dropped) if update.static_row is not None else None
    unfiltereds: list[Row | RangeTombstoneMarker] = []
    for u in update.unfiltereds:
        if isinstance(u, Row):
            kept = _filter_row(u, dropped)
            if kept is not None:
                unfiltereds.append(kept)
        else:
            unfiltereds.append(u)
    return replace(update, static_row=static_row, unfiltereds=tuple(unfiltereds))


def _filter_row(row: Row, dropped: dict[bytes, int]) -> Row | None:
    data: list[Cell | ComplexColumn] = []
    for d in row.data:
        dropped_time = dropped.get(d.column.name_bytes)
        if dropped_time is None:
            data.append(d)
        elif isinstance(d, ComplexColumn):
            deletion = d.deletion if d.deletion is not None and d.deletion.timestamp > dropped_time else None
            cells = tuple(c for c in d.cells if c.timestamp > dropped_time)
            if cells or deletion is not None:
                data.append(ComplexColumn(d.column, deletion, cells))
        elif d.timestamp > dropped_time:
            data.append(d)
    kept = replace(row, data=tuple(data))
    return None if kept.is_empty else kept
