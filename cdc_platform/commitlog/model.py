"""What a commit log entry holds, decoded but not yet interpreted.

These classes mirror Cassandra's in-memory structures (``PartitionUpdate``, ``Row``,
``Cell``, ``RangeTombstoneMarker``): values are raw serialized bytes, times are
microseconds (write timestamps) and seconds (local deletion/expiration times). The
writer encodes exactly these, so a round trip can be compared field by field.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple

from cdc_platform.schema.model import Column, Table

INT64_MIN = -(1 << 63)


class DeletionTime(NamedTuple):
    """A deletion: the write timestamp it shadows up to (µs) and when it happened (s)."""

    timestamp: int
    local_deletion_time: int


class Liveness(NamedTuple):
    """Primary-key liveness of a row (``INSERT``): timestamp, TTL (0 = none), expiry (s)."""

    timestamp: int
    ttl: int = 0
    local_expiration_time: int | None = None

    @property
    def is_expiring(self) -> bool:
        return self.ttl != 0


class Cell(NamedTuple):
    """One cell: a simple column's value, or one element of a multi-cell column.

    ``local_deletion_time`` is the expiry time for expiring cells (``ttl != 0``), the
    deletion time for tombstones and ``None`` for regular live cells. ``path`` is set for
    cells of multi-cell columns (list cell id, set element, map key, UDT field index).
    """

    column: Column
    timestamp: int
    value: bytes
    ttl: int = 0
    local_deletion_time: int | None = None
    path: bytes | None = None

    @property
    def is_tombstone(self) -> bool:
        return self.local_deletion_time is not None and self.ttl == 0

    @property
    def is_expiring(self) -> bool:
        return self.ttl != 0


class ComplexColumn(NamedTuple):
    """The cells of one multi-cell column in a row, with the column-level deletion (if any)."""

    column: Column
    deletion: DeletionTime | None
    cells: tuple[Cell, ...]


class BoundKind(enum.IntEnum):
    """``ClusteringPrefix.Kind`` ordinals (the byte written for range tombstone markers)."""

    EXCL_END_BOUND = 0
    INCL_START_BOUND = 1
    EXCL_END_INCL_START_BOUNDARY = 2
    STATIC_CLUSTERING = 3
    CLUSTERING = 4
    INCL_END_EXCL_START_BOUNDARY = 5
    INCL_END_BOUND = 6
    EXCL_START_BOUND = 7

    @property
    def is_boundary(self) -> bool:
        return self in (BoundKind.EXCL_END_INCL_START_BOUNDARY, BoundKind.INCL_END_EXCL_START_BOUNDARY)

    @property
    def is_start(self) -> bool:
        return self in (BoundKind.INCL_START_BOUND, BoundKind.EXCL_START_BOUND)

    @property
    def is_end(self) -> bool:
        return self in (BoundKind.INCL_END_BOUND, BoundKind.EXCL_END_BOUND)


MARKER_KINDS = frozenset(
    {
        BoundKind.EXCL_END_BOUND,
        BoundKind.INCL_START_BOUND,
        BoundKind.EXCL_END_INCL_START_BOUNDARY,
        BoundKind.INCL_END_EXCL_START_BOUNDARY,
        BoundKind.INCL_END_BOUND,
        BoundKind.EXCL_START_BOUND,
    }
)


@dataclass(frozen=True)
class Row:
    """A row (or the static row) of a partition update.

    ``clustering`` holds one raw value per clustering column (``None`` for null, empty
    bytes for the empty value); the static row has an empty clustering. ``data`` lists the
    simple cells and complex columns in serialization-header order.
    """

    clustering: tuple[bytes | None, ...]
    liveness: Liveness | None = None
    deletion: DeletionTime | None = None
    data: tuple[Cell | ComplexColumn, ...] = ()
    is_static: bool = False
    shadowable: bool = False

    @property
    def is_empty(self) -> bool:
        return self.liveness is None and self.deletion is None and not self.data


@dataclass(frozen=True)
class RangeTombstoneMarker:
    """A range tombstone bound or boundary.

    A bound carries one deletion; a boundary carries two: the deletion of the range it
    closes, then the deletion of the range it opens.
    """

    kind: BoundKind
    values: tuple[bytes | None, ...]
    deletions: tuple[DeletionTime, ...]


Unfiltered = Row | RangeTombstoneMarker


@dataclass(frozen=True)
class PartitionUpdate:
    """All changes of one mutation to one partition of one table.

    ``header`` is the serialization header's column lists (static, regular) as written: the
    columns the statement touched, which can be more than the rows hold. The decoder fills it
    so that re-encoding reproduces Cassandra's bytes; it does not take part in equality.
    """

    table: Table
    key: bytes
    partition_deletion: DeletionTime | None = None
    static_row: Row | None = None
    unfiltereds: tuple[Unfiltered, ...] = ()
    is_empty: bool = False
    header: tuple[tuple[Column, ...], tuple[Column, ...]] | None = field(default=None, compare=False)

    @property
    def rows(self) -> list[Row]:
        return [u for u in self.unfiltereds if isinstance(u, Row)]

    @property
    def markers(self) -> list[RangeTombstoneMarker]:
        return [u for u in self.unfiltereds if isinstance(u, RangeTombstoneMarker)]


@dataclass(frozen=True)
class Mutation:
    """One commit log entry: updates to one partition key in one keyspace."""

    updates: tuple[PartitionUpdate, ...] = field(default_factory=tuple)

    @property
    def keyspace(self) -> str:
        return self.updates[0].table.keyspace if self.updates else ""
