"""Cassandra's reconciliation rules in plain Python: the oracle for every destination.

State is a join-semilattice: every component only grows (greatest version, greatest
deletion), so applying changes in any order, any number of times, converges to the same
state. What Cassandra would return (:meth:`TableModel.visible`) is derived from the state at
a given "now":

- cells reconcile by ``Cells.resolveRegular``: greater write timestamp wins; at equal
  timestamps an expiring cell or tombstone beats a live cell, a tombstone beats an expiring
  cell, then the greater local deletion time, then the greater value bytes (unsigned);
- a deletion shadows everything written at or before its timestamp: partition deletions,
  range deletions covering the row (clustering order, inclusive or exclusive bounds, prefix
  bounds), row deletions, and for non-frozen collections the collection deletion;
- primary-key liveness reconciles by ``LivenessInfo.supersedes``;
- an expiring cell or liveness is live while ``now < local expiration time``;
- a row exists while its liveness or any of its cells is live; collections merge per element
  (list cell ids, set elements, map keys, UDT fields).

Counters follow other rules (context merging) and are not modelled: destinations refuse
counter tables.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from cdc_platform.changes.records import CellChange, ChangeKind, ClusteringBound, RowChange
from cdc_platform.schema.model import Column, Table
from cdc_platform.schema.types import (
    CqlType,
    ListType,
    MapType,
    NativeType,
    SetType,
    UserType,
    cell_value_type,
)
from cdc_platform.schema.values import EMPTY, InvalidValue, comparator_key, deserialize, encoder, serialize

LIVE, EXPIRING, TOMBSTONE = 0, 1, 2
_MISSING = object()
NO_SHADOW = -(1 << 64)  # below every timestamp


class Version(NamedTuple):
    """A cell's version: what reconciliation compares, plus its TTL (not compared)."""

    timestamp: int
    rank: int  # LIVE, EXPIRING or TOMBSTONE
    local_deletion_time: int  # expiry (EXPIRING) or deletion time (TOMBSTONE); 0 when LIVE
    value: bytes  # serialized value; compared unsigned
    ttl: int = 0

    @property
    def key(self) -> tuple[int, int, int, bytes]:
        return (self.timestamp, self.rank, self.local_deletion_time, self.value)

    def live_at(self, now: int, shadow: int) -> bool:
        if self.timestamp <= shadow:
            return False
        if self.rank == LIVE:
            return True
        return self.rank == EXPIRING and now < self.local_deletion_time


def newer(a: Version | None, b: Version | None) -> Version | None:
    """The winning version of two (``Cells.reconcile``); ``None`` means no cell."""
    if a is None:
        return b
    if b is None:
        return a
    return b if b.key > a.key else a


class Liveness(NamedTuple):
    """Primary-key liveness (``INSERT``)."""

    timestamp: int
    ttl: int = 0
    expires: int = 0

    @property
    def key(self) -> tuple[int, int, int]:
        # LivenessInfo.supersedes: timestamp; then expiring beats non-expiring; then later expiry.
        return (self.timestamp, 1 if self.ttl else 0, self.expires if self.ttl else 0)

    def live_at(self, now: int, shadow: int) -> bool:
        return self.timestamp > shadow and (not self.ttl or now < self.expires)


class Deletion(NamedTuple):
    """A deletion time: shadows writes with timestamp ≤ ``timestamp``."""

    timestamp: int
    local_deletion_time: int


def later(a: Deletion | None, b: Deletion | None) -> Deletion | None:
    """``DeletionTime.supersedes``: greater timestamp, then greater local deletion time."""
    if a is None:
        return b
    if b is None:
        return a
    return b if b > a else a


@dataclass
class CollectionState:
    deletion: Deletion | None = None
    elements: dict[bytes, Version] = field(default_factory=dict)


@dataclass
class RowState:
    """A row's reconciliation state.

    ``typed`` caches the decoded value of a simple cell whose winning version came with one (a
    change being applied), so materialising does not decode bytes just encoded; it is not
    part of the state (not compared) and only ever holds the winner's value.
    """

    liveness: Liveness | None = None
    deletion: Deletion | None = None
    cells: dict[str, Version] = field(default_factory=dict)
    collections: dict[str, CollectionState] = field(default_factory=dict)
    typed: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def signature(self) -> tuple[Any, ...]:
        """What reconciliation compares (versions' keys, not TTLs): equal signatures, equal state."""
        return (
            self.liveness.key if self.liveness else None,
            self.deletion,
            {n: v.key for n, v in self.cells.items()},
            {n: (c.deletion, {p: v.key for p, v in c.elements.items()}) for n, c in self.collections.items()},
        )

    def merge(self, other: RowState) -> None:
        if other.liveness is not None and (self.liveness is None or other.liveness.key > self.liveness.key):
            self.liveness = other.liveness
        self.deletion = later(self.deletion, other.deletion)
        cells = self.cells
        for name, v in other.cells.items():
            mine = cells.get(name)
            if mine is None or v.key > mine.key:
                cells[name] = v
                if name in other.typed:
                    self.typed[name] = other.typed[name]
                else:
                    self.typed.pop(name, None)
        for name, c in other.collections.items():
            coll = self.collections.setdefault(name, CollectionState())
            coll.deletion = later(coll.deletion, c.deletion)
            for path, e in c.elements.items():
                current = coll.elements.get(path)
                if current is None or e.key > current.key:
                    coll.elements[path] = e


class RangeDeletion(NamedTuple):
    """A range tombstone: clustering prefixes (serialized) in clustering order, inclusiveness."""

    start: tuple[bytes | None, ...]
    start_inclusive: bool
    end: tuple[bytes | None, ...]
    end_inclusive: bool
    deletion: Deletion


@dataclass
class PartitionState:
    deletion: Deletion | None = None
    ranges: set[RangeDeletion] = field(default_factory=set)
    static: RowState = field(default_factory=RowState)
    rows: dict[tuple[bytes | None, ...], RowState] = field(default_factory=dict)


Key = tuple[bytes, ...]
ClusteringKey = tuple[bytes | None, ...]


def value_bytes(cql_type: CqlType, value: Any) -> bytes:
    """Serialized form of a change value (the bytes reconciliation compares)."""
    if value is None or value is EMPTY:
        return b""
    if isinstance(value, InvalidValue):
        return value.raw
    return serialize(cql_type, value)


def path_bytes(column_type: CqlType, path: Any) -> bytes:
    """Serialized cell path of a multi-cell column element."""
    if isinstance(path, InvalidValue):
        return path.raw
    if isinstance(column_type, ListType):
        return path.bytes if isinstance(path, uuid.UUID) else uuid.UUID(str(path)).bytes
    if isinstance(column_type, SetType):
        return serialize(column_type.element, path)
    if isinstance(column_type, MapType):
        return serialize(column_type.key, path)
    if isinstance(column_type, UserType):
        return column_type.field_names.index(path).to_bytes(2, "big")
    raise TypeError(f"{column_type.cql()} has no cell paths")


def element_type(column_type: CqlType, path: bytes) -> CqlType:
    """Type of an element cell's value (``empty`` for set elements, whose value is the path)."""
    return cell_value_type(column_type, path) or NativeType("empty")


def version_of(cql_type: CqlType, cell: CellChange, encode: Any = None) -> Version:
    """The version of a cell change (``encode``: the value type's encoder, if already at hand)."""
    if cell.deleted:
        return Version(cell.timestamp, TOMBSTONE, cell.local_deletion_time or 0, b"", 0)
    value = cell.value
    if value is None or value is EMPTY:
        raw = b""
    elif isinstance(value, InvalidValue):
        raw = value.raw
    else:
        raw = (encode or encoder(cql_type))(value)
    if cell.ttl:
        return Version(cell.timestamp, EXPIRING, cell.local_deletion_time or 0, raw, cell.ttl)
    return Version(cell.timestamp, LIVE, 0, raw, 0)


def row_state_of(table: Table, change: RowChange, state: RowState | None = None) -> RowState:
    """The state one row change contributes (no shadowing applied), joined into ``state`` if given."""
    if state is None:
        state = RowState()
    if change.liveness_timestamp is not None:
        lv = Liveness(change.liveness_timestamp, change.liveness_ttl or 0, change.liveness_expires or 0)
        if state.liveness is None or lv.key > state.liveness.key:
            state.liveness = lv
    if change.deletion_timestamp is not None:
        state.deletion = later(state.deletion, Deletion(change.deletion_timestamp, change.deletion_time or 0))
    by_name = table.by_name
    cells = state.cells
    typed = state.typed
    for cell in change.cells:
        column = by_name.get(cell.column)
        if column is None:
            continue  # not in the table (dropped): never visible
        t = column.type
        if column.is_counter:
            raise ValueError(f"{table.qualified_name}.{column.name}: counter columns are not modelled")
        if not t.is_multicell:
            v = version_of(t, cell, column.encode)
            mine = cells.get(column.name)
            if mine is None or v.key > mine.key:
                cells[column.name] = v
                value = cell.value
                if v.rank != TOMBSTONE and value is not None and not isinstance(value, InvalidValue):
                    typed[column.name] = value
                else:
                    typed.pop(column.name, None)
            continue
        coll = state.collections.setdefault(column.name, CollectionState())
        if cell.collection_deletion:
            coll.deletion = later(coll.deletion, Deletion(cell.timestamp, cell.local_deletion_time or 0))
            continue
        path = path_bytes(t, cell.path)
        vtype = element_type(t, path)
        coll.elements[path] = newer(coll.elements.get(path), version_of(vtype, cell))  # type: ignore[assignment]
    return state


# --------------------------------------------------------------------------------------------
# Clustering order


def clustering_bytes(table: Table, values: dict[str, Any]) -> ClusteringKey:
    """Serialized clustering prefix (the columns present in ``values``, in order)."""
    out: list[bytes | None] = []
    for c in table.clustering:
        if c.name not in values:
            break
        v = values[c.name]
        out.append(None if v is None else value_bytes(c.type, v))
    return tuple(out)


def partition_bytes(table: Table, values: dict[str, Any]) -> Key:
    return tuple(value_bytes(c.type, values[c.name]) for c in table.partition_key)


class ClusteringOrder:
    """Cassandra's clustering comparator for one table (DESC columns reversed)."""

    def __init__(self, table: Table) -> None:
        self.keys = [comparator_key(c.type) for c in table.clustering]
        self.reversed = [c.reversed for c in table.clustering]

    def compare_component(self, i: int, a: bytes | None, b: bytes | None) -> int:
        ka = self.keys[i](a or b"")
        kb = self.keys[i](b or b"")
        c = (ka > kb) - (ka < kb)
        return -c if self.reversed[i] else c

    def compare_prefix(self, row: ClusteringKey, prefix: ClusteringKey) -> int:
        """Compares a full clustering with a prefix on the prefix's columns."""
        for i, p in enumerate(prefix):
            c = self.compare_component(i, row[i], p)
            if c:
                return c
        return 0

    def covers(self, r: RangeDeletion, row: ClusteringKey) -> bool:
        c = self.compare_prefix(row, r.start)
        if c < 0 or (c == 0 and r.start and not r.start_inclusive):
            return False
        c = self.compare_prefix(row, r.end)
        return not (c > 0 or (c == 0 and r.end and not r.end_inclusive))

    def sort_key(self, row: ClusteringKey) -> tuple[Any, ...]:
        out: list[Any] = []
        for i, v in enumerate(row):
            k = self.keys[i](v or b"")
            out.append(_Desc(k) if self.reversed[i] else k)
        return tuple(out)


class _Desc:
    __slots__ = ("k",)

    def __init__(self, k: Any) -> None:
        self.k = k

    def __lt__(self, other: _Desc) -> bool:
        return bool(other.k < self.k)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and bool(self.k == other.k)

    def __hash__(self) -> int:
        return hash(self.k)


def range_of(table: Table, change: RowChange) -> RangeDeletion:
    assert change.range_start is not None and change.range_end is not None
    assert change.deletion_timestamp is not None
    return RangeDeletion(
        clustering_bytes(table, change.range_start.clustering),
        change.range_start.inclusive,
        clustering_bytes(table, change.range_end.clustering),
        change.range_end.inclusive,
        Deletion(change.deletion_timestamp, change.deletion_time or 0),
    )


# --------------------------------------------------------------------------------------------
# Visible state


VisibleRow = dict[str, Any]


@dataclass
class VisiblePartition:
    """What Cassandra returns for one partition: live static columns and live rows."""

    static: VisibleRow | None
    rows: dict[ClusteringKey, VisibleRow]


def _visible_collection(column: Column, coll: CollectionState, now: int, shadow: int) -> Any:
    t = column.type
    floor = max(shadow, coll.deletion.timestamp if coll.deletion else NO_SHADOW)
    live = {p: v for p, v in coll.elements.items() if v.live_at(now, floor)}
    if not live:
        return None
    if isinstance(t, UserType):
        out = {name: None for name in t.field_names}
        for p, v in live.items():
            i = int.from_bytes(p, "big")
            if i < len(t.field_names):
                out[t.field_names[i]] = decode_value(t.field_types[i], v.value)
        return out
    if isinstance(t, ListType):
        order = comparator_key(NativeType("timeuuid"))
        return [decode_value(t.element, live[p].value) for p in sorted(live, key=order)]
    if isinstance(t, SetType):
        order = comparator_key(t.element)
        return [decode_value(t.element, p) for p in sorted(live, key=order)]
    assert isinstance(t, MapType)
    order = comparator_key(t.key)
    return [(decode_value(t.key, p), decode_value(t.value, live[p].value)) for p in sorted(live, key=order)]


def decode_value(t: CqlType, raw: bytes) -> Any:
    """Decodes stored value bytes (undecodable bytes stay an :class:`InvalidValue`)."""
    try:
        return deserialize(t, raw)
    except ValueError as exc:
        return InvalidValue(raw, str(exc))


def visible_row(
    table: Table, columns: list[Column], row: RowState, now: int, shadow: int
) -> VisibleRow | None:
    """Live values of a row at ``now`` under ``shadow``, or ``None`` if the row does not exist."""
    shadow = max(shadow, row.deletion.timestamp if row.deletion else NO_SHADOW)
    exists = row.liveness is not None and row.liveness.live_at(now, shadow)
    out: VisibleRow = {}
    for column in columns:
        if column.type.is_multicell:
            coll = row.collections.get(column.name)
            if coll is not None:
                value = _visible_collection(column, coll, now, shadow)
                if value is not None:
                    out[column.name] = value
                    exists = True
            continue
        v = row.cells.get(column.name)
        if v is not None and v.live_at(now, shadow):
            typed = row.typed.get(column.name, _MISSING)
            out[column.name] = decode_value(column.type, v.value) if typed is _MISSING else typed
            exists = True
    return out if exists else None


class TableModel:
    """The reconciled state of one table, and what Cassandra would return from it."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.partitions: dict[Key, PartitionState] = {}
        self.order = ClusteringOrder(table)

    def apply(self, change: RowChange) -> None:
        table = self.table
        pk = partition_bytes(table, change.partition_key)
        part = self.partitions.setdefault(pk, PartitionState())
        if change.kind is ChangeKind.PARTITION_DELETE:
            assert change.deletion_timestamp is not None
            part.deletion = later(
                part.deletion, Deletion(change.deletion_timestamp, change.deletion_time or 0)
            )
        elif change.kind is ChangeKind.RANGE_DELETE:
            part.ranges.add(range_of(table, change))
        elif change.kind is ChangeKind.STATIC_ROW:
            part.static.merge(row_state_of(table, change))
        else:
            ck = clustering_bytes(table, change.clustering)
            part.rows.setdefault(ck, RowState()).merge(row_state_of(table, change))

    def apply_all(self, changes: Iterable[RowChange]) -> None:
        for c in changes:
            self.apply(c)

    def row_shadow(self, part: PartitionState, ck: ClusteringKey) -> int:
        shadow = part.deletion.timestamp if part.deletion else NO_SHADOW
        for r in part.ranges:
            if r.deletion.timestamp > shadow and self.order.covers(r, ck):
                shadow = r.deletion.timestamp
        return shadow

    def visible(self, now: int) -> dict[Key, VisiblePartition]:
        """Live partitions at ``now`` (seconds since the epoch)."""
        out: dict[Key, VisiblePartition] = {}
        statics = self.table.static
        regular = self.table.regular
        for pk, part in self.partitions.items():
            pshadow = part.deletion.timestamp if part.deletion else NO_SHADOW
            static = visible_row(self.table, statics, part.static, now, pshadow) if statics else None
            rows: dict[ClusteringKey, VisibleRow] = {}
            for ck, row in part.rows.items():
                vis = visible_row(self.table, regular, row, now, self.row_shadow(part, ck))
                if vis is not None:
                    rows[ck] = vis
            if static or rows:
                out[pk] = VisiblePartition(static or None, rows)
        return out


class Model:
    """Oracle over several tables."""

    def __init__(self, tables: Iterable[Table]) -> None:
        self.tables = {t.qualified_name: TableModel(t) for t in tables}

    def apply(self, changes: Iterable[RowChange]) -> None:
        for c in changes:
            self.tables[f"{c.keyspace}.{c.table}"].apply(c)

    def visible(self, qualified_name: str, now: int) -> dict[Key, VisiblePartition]:
        return self.tables[qualified_name].visible(now)


def canonical(
    table: Table, state: dict[Key, VisiblePartition]
) -> dict[tuple[Key, ClusteringKey | None], dict[str, bytes]]:
    """Visible state as comparable bytes: (partition, clustering or None for static) → column → bytes.

    Collections are serialized in their frozen form, so two states compare equal exactly when
    Cassandra would return the same values (NaN floats included).
    """
    out: dict[tuple[Key, ClusteringKey | None], dict[str, bytes]] = {}
    by_name = table.by_name
    for pk, part in state.items():
        if part.static:
            out[(pk, None)] = {k: value_bytes(by_name[k].type.freeze(), v) for k, v in part.static.items()}
        for ck, row in part.rows.items():
            out[(pk, ck)] = {k: value_bytes(by_name[k].type.freeze(), v) for k, v in row.items()}
    return out


def clustering_values(table: Table, bound: ClusteringBound) -> ClusteringKey:
    return clustering_bytes(table, bound.clustering)
