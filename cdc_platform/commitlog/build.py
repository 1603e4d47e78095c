"""Building mutations the way CQL statements produce them (for the writer, tests and demo).

Each method mirrors what Cassandra puts in the commit log for a statement (reference §4.15):
``INSERT`` gives a row with primary-key liveness and cells using the row timestamp;
``USING TTL`` makes the liveness and cells expiring; ``UPDATE`` gives cells only;
``DELETE`` of a row gives a row deletion, of a partition a partition deletion, of a range
two range tombstone bounds; overwriting a non-frozen collection gives a collection deletion
at ``timestamp - 1`` plus the new element cells.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

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
from cdc_platform.schema.model import Column, Table
from cdc_platform.schema.types import ListType, MapType, SetType, UserType
from cdc_platform.schema.values import comparator_key, join_composite, serialize


def partition_key_bytes(table: Table, key: Mapping[str, Any]) -> bytes:
    """Serialized partition key (composite when the key has several columns)."""
    parts = [serialize(c.type, key[c.name]) for c in table.partition_key]
    return parts[0] if len(parts) == 1 else join_composite(parts)


def _clustering(table: Table, values: Mapping[str, Any]) -> tuple[bytes | None, ...]:
    return tuple(serialize(c.type, values[c.name]) for c in table.clustering[: len(values)])


def timeuuid_for(micros: int, sequence: int = 0) -> uuid.UUID:
    """A version-1 UUID for a list cell id (Cassandra uses the write time)."""
    ticks = micros * 10 + 0x01B21DD213814000
    return uuid.UUID(
        fields=(
            ticks & 0xFFFFFFFF,
            (ticks >> 32) & 0xFFFF,
            0x1000 | ((ticks >> 48) & 0x0FFF),
            0x80 | ((sequence >> 8) & 0x3F),
            sequence & 0xFF,
            0x0000DEADBEEF,
        ),
        version=1,
    )


class UpdateBuilder:
    """Accumulates changes to one partition and builds the :class:`PartitionUpdate`.

    Args:
        table: the table.
        key: partition key values by column name.
        now: local deletion time to record (seconds); tombstones carry it.
    """

    def __init__(self, table: Table, key: Mapping[str, Any], *, now: int = 1_700_000_000) -> None:
        self.table = table
        self.key = partition_key_bytes(table, key)
        self.now = now
        self._partition_deletion: DeletionTime | None = None
        self._rows: dict[tuple[bytes | None, ...], dict[str, Any]] = {}
        self._static: dict[str, Any] | None = None
        self._markers: list[tuple[tuple[bytes | None, ...], RangeTombstoneMarker, RangeTombstoneMarker]] = []

    # -- rows ------------------------------------------------------------------------------

    def _row(self, clustering: Mapping[str, Any] | None) -> dict[str, Any]:
        if clustering is None:
            if self._static is None:
                self._static = {"liveness": None, "deletion": None, "data": {}}
            return self._static
        ck = _clustering(self.table, clustering)
        if len(ck) != len(self.table.clustering):
            raise ValueError(
                f"{self.table.qualified_name}: a row needs all {len(self.table.clustering)} clustering values"
            )
        return self._rows.setdefault(ck, {"liveness": None, "deletion": None, "data": {}})

    def _cells(
        self, row: dict[str, Any], values: Mapping[str, Any], ts: int, ttl: int | None, replace: bool
    ) -> None:
        expires = self.now + ttl if ttl else None
        for name, value in values.items():
            column = self.table.column(name)
            if column.is_primary_key:
                raise ValueError(f"{name} is a primary key column")
            if value is None:
                row["data"][name] = self._tombstone(column, ts)
                continue
            if column.type.is_multicell:
                deletion = DeletionTime(ts - 1, self.now) if replace else None
                row["data"][name] = ComplexColumn(
                    column, deletion, self._elements(column, value, ts, ttl, expires)
                )
            else:
                row["data"][name] = Cell(column, ts, serialize(column.type, value), ttl or 0, expires)

    def _tombstone(self, column: Column, ts: int) -> Cell | ComplexColumn:
        if column.type.is_multicell:
            return ComplexColumn(column, DeletionTime(ts, self.now), ())
        return Cell(column, ts, b"", 0, self.now)

    def _elements(
        self, column: Column, value: Any, ts: int, ttl: int | None, expires: int | None
    ) -> tuple[Cell, ...]:
        t = column.type
        cells: list[Cell] = []
        if isinstance(t, ListType):
            for i, item in enumerate(value):
                path = timeuuid_for(ts, i).bytes
                cells.append(Cell(column, ts, serialize(t.element, item), ttl or 0, expires, path))
        elif isinstance(t, SetType):
            paths = sorted({serialize(t.element, item) for item in value}, key=comparator_key(t.element))
            cells = [Cell(column, ts, b"", ttl or 0, expires, p) for p in paths]
        elif isinstance(t, MapType):
            entries = {serialize(t.key, k): serialize(t.value, v) for k, v in value}
            for k in sorted(entries, key=comparator_key(t.key)):
                cells.append(Cell(column, ts, entries[k], ttl or 0, expires, k))
        elif isinstance(t, UserType):
            for i, (name, ft) in enumerate(zip(t.field_names, t.field_types, strict=True)):
                v = value.get(name)
                path = i.to_bytes(2, "big")
                if v is None:
                    cells.append(Cell(column, ts, b"", 0, self.now, path))
                else:
                    cells.append(Cell(column, ts, serialize(ft, v), ttl or 0, expires, path))
        return tuple(cells)

    def insert(
        self, clustering: Mapping[str, Any] | None, values: Mapping[str, Any], ts: int, ttl: int | None = None
    ) -> UpdateBuilder:
        """``INSERT``: row liveness plus cells (collections replace their previous content)."""
        row = self._row(clustering)
        if clustering is not None:
            row["liveness"] = Liveness(ts, ttl or 0, self.now + ttl if ttl else None)
        self._cells(row, values, ts, ttl, replace=True)
        return self

    def update(
        self, clustering: Mapping[str, Any] | None, values: Mapping[str, Any], ts: int, ttl: int | None = None
    ) -> UpdateBuilder:
        """``UPDATE … SET``: cells only (``None`` values are deletions; collections are overwritten)."""
        self._cells(self._row(clustering), values, ts, ttl, replace=True)
        return self

    def add_elements(
        self, clustering: Mapping[str, Any] | None, column: str, value: Any, ts: int
    ) -> UpdateBuilder:
        """``SET c = c + …`` (append to a list, add to a set, put into a map)."""
        row = self._row(clustering)
        col = self.table.column(column)
        row["data"][column] = ComplexColumn(col, None, self._elements(col, value, ts, None, None))
        return self

    def remove_elements(
        self, clustering: Mapping[str, Any] | None, column: str, keys: list[Any], ts: int
    ) -> UpdateBuilder:
        """``SET c = c - {…}`` on a set, ``DELETE c[k]`` on a map: element tombstones."""
        row = self._row(clustering)
        col = self.table.column(column)
        t = col.type
        if isinstance(t, SetType):
            paths = [serialize(t.element, k) for k in keys]
        elif isinstance(t, MapType):
            paths = [serialize(t.key, k) for k in keys]
        else:
            raise ValueError(f"{column} is not a non-frozen set or map")
        cells = tuple(
            Cell(col, ts, b"", 0, self.now, p)
            for p in sorted(set(paths), key=comparator_key(t.key if isinstance(t, MapType) else t.element))
        )
        row["data"][column] = ComplexColumn(col, None, cells)
        return self

    def delete_columns(
        self, clustering: Mapping[str, Any] | None, columns: list[str], ts: int
    ) -> UpdateBuilder:
        """``DELETE c1, c2 FROM …``: cell tombstones (collection deletions for multi-cell columns)."""
        row = self._row(clustering)
        for name in columns:
            row["data"][name] = self._tombstone(self.table.column(name), ts)
        return self

    def delete_row(self, clustering: Mapping[str, Any], ts: int) -> UpdateBuilder:
        """``DELETE FROM … WHERE <full primary key>``."""
        self._row(clustering)["deletion"] = DeletionTime(ts, self.now)
        return self

    def delete_partition(self, ts: int) -> UpdateBuilder:
        """``DELETE FROM … WHERE <partition key>``."""
        self._partition_deletion = DeletionTime(ts, self.now)
        return self

    def delete_range(
        self,
        start: Mapping[str, Any],
        end: Mapping[str, Any],
        ts: int,
        *,
        start_inclusive: bool = True,
        end_inclusive: bool = True,
    ) -> UpdateBuilder:
        """``DELETE … WHERE ck >= a AND ck <= b`` (prefixes; an empty mapping is unbounded)."""
        deletion = DeletionTime(ts, self.now)
        s = _clustering(self.table, start)
        e = _clustering(self.table, end)
        skind = BoundKind.INCL_START_BOUND if start_inclusive or not s else BoundKind.EXCL_START_BOUND
        ekind = BoundKind.INCL_END_BOUND if end_inclusive or not e else BoundKind.EXCL_END_BOUND
        self._markers.append(
            (s, RangeTombstoneMarker(skind, s, (deletion,)), RangeTombstoneMarker(ekind, e, (deletion,)))
        )
        return self

    # -- building --------------------------------------------------------------------------

    def _sort_key(self, clustering: tuple[bytes | None, ...]) -> tuple[Any, ...]:
        out = []
        for c, v in zip(self.table.clustering, clustering, strict=False):
            k = comparator_key(c.type)(v or b"")
            out.append(_Reverse(k) if c.reversed else k)
        return tuple(out)

    def _before(self, a: tuple[bytes | None, ...], b: tuple[bytes | None, ...]) -> bool:
        """``a`` sorts before ``b`` in clustering order on their common prefix."""
        n = min(len(a), len(b))
        if n == 0:
            return False
        return self._sort_key(a[:n]) < self._sort_key(b[:n])

    def _build_row(self, ck: tuple[bytes | None, ...], r: dict[str, Any], static: bool) -> Row:
        data = sorted(r["data"].values(), key=lambda d: column_sort_key(d.column))
        return Row(ck, r["liveness"], r["deletion"], tuple(data), is_static=static)

    def build(self) -> PartitionUpdate:
        rows = [
            self._build_row(ck, r, False)
            for ck, r in sorted(self._rows.items(), key=lambda kv: self._sort_key(kv[0]))
        ]
        if len(self._markers) > 1:
            raise ValueError("one range deletion per partition update (as one DELETE statement produces)")
        unfiltereds: list[Row | RangeTombstoneMarker] = list(rows)
        if self._markers:
            if rows:
                raise ValueError("a range deletion is its own statement: build it in a separate update")
            _, start, end = self._markers[0]
            if self._before(end.values, start.values):
                # The CQL range runs against clustering order (DESC columns): swap its ends.
                start, end = (
                    RangeTombstoneMarker(
                        BoundKind.INCL_START_BOUND
                        if end.kind is BoundKind.INCL_END_BOUND
                        else BoundKind.EXCL_START_BOUND,
                        end.values,
                        end.deletions,
                    ),
                    RangeTombstoneMarker(
                        BoundKind.INCL_END_BOUND
                        if start.kind is BoundKind.INCL_START_BOUND
                        else BoundKind.EXCL_END_BOUND,
                        start.values,
                        start.deletions,
                    ),
                )
            unfiltereds = [start, end]
        static = self._build_row((), self._static, True) if self._static is not None else None
        return PartitionUpdate(self.table, self.key, self._partition_deletion, static, tuple(unfiltereds))

    def mutation(self) -> Mutation:
        return Mutation((self.build(),))


class _Reverse:
    __slots__ = ("key",)

    def __init__(self, key: Any) -> None:
        self.key = key

    def __lt__(self, other: _Reverse) -> bool:
        return bool(other.key < self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reverse) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)
