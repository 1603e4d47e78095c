"""Row-level change records: what a mutation means, per row, with typed values.

One partition update yields, in order: a ``partition_delete`` (if the partition was
deleted), a ``static_row`` (if static columns changed), then ``row`` and ``range_delete``
records in clustering order. Values are decoded to Python (see
:mod:`cdc_platform.schema.values`); bytes that do not decode as the column's type are kept
as :class:`~cdc_platform.schema.values.InvalidValue` instead of being dropped.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from cdc_platform.commitlog.errors import MutationDecodeError
from cdc_platform.commitlog.model import (
    BoundKind,
    Cell,
    ComplexColumn,
    DeletionTime,
    PartitionUpdate,
    RangeTombstoneMarker,
    Row,
)
from cdc_platform.schema.model import Column, Table
from cdc_platform.schema.render import json_name, quote_json_string, to_json
from cdc_platform.schema.types import (
    CqlType,
    ListType,
    MapType,
    NativeType,
    SetType,
    UserType,
    cell_value_type,
)
from cdc_platform.schema.values import (
    InvalidValue,
    ValueDecodeError,
    decoder,
    split_composite,
)


class ChangeKind(enum.StrEnum):
    ROW = "row"
    STATIC_ROW = "static_row"
    PARTITION_DELETE = "partition_delete"
    RANGE_DELETE = "range_delete"


class CellChange(NamedTuple):
    """One written cell, or a whole-collection deletion (``path is None`` on a multi-cell column).

    Attributes:
        column: column name.
        value: decoded value; ``None`` for tombstones and collection deletions.
        timestamp: write timestamp (µs).
        ttl: TTL in seconds for expiring cells, else ``None``.
        local_deletion_time: expiry (expiring cells) or deletion time (tombstones), seconds.
        deleted: a tombstone (or collection deletion).
        path: for cells of multi-cell columns: list cell id (UUID), set element, map key or
            UDT field name.
        collection_deletion: the whole collection is deleted up to ``timestamp`` (written when
            a collection is overwritten or deleted).
        counter_context: for counter cells, the raw CounterContext (``value`` is its total).
    """

    column: str
    value: Any
    timestamp: int
    ttl: int | None = None
    local_deletion_time: int | None = None
    deleted: bool = False
    path: Any = None
    collection_deletion: bool = False
    counter_context: bytes | None = None


@dataclass(frozen=True)
class ClusteringBound:
    """One end of a range deletion: a clustering prefix (possibly empty) and inclusiveness."""

    clustering: dict[str, Any]
    inclusive: bool


@dataclass(frozen=True)
class RowChange:
    """A row-level change with its provenance."""

    kind: ChangeKind
    keyspace: str
    table: str
    partition_key: dict[str, Any]
    clustering: dict[str, Any] = field(default_factory=dict)
    cells: tuple[CellChange, ...] = ()
    liveness_timestamp: int | None = None
    liveness_ttl: int | None = None
    liveness_expires: int | None = None
    deletion_timestamp: int | None = None
    deletion_time: int | None = None
    range_start: ClusteringBound | None = None
    range_end: ClusteringBound | None = None
    segment_id: int | None = None
    position: int | None = None
    entry_start: int | None = None
    node: str | None = None

    @property
    def operation(self) -> str:
        """``upsert``, ``row_delete``, ``partition_delete`` or ``range_delete``."""
        if self.kind is ChangeKind.PARTITION_DELETE:
            return "partition_delete"
        if self.kind is ChangeKind.RANGE_DELETE:
            return "range_delete"
        if self.deletion_timestamp is not None and self.liveness_timestamp is None and not self.cells:
            return "row_delete"
        return "upsert"


# --------------------------------------------------------------------------------------------
# From decoded partition updates


def _decode(cql_type: CqlType, raw: bytes) -> Any:
    try:
        return decoder(cql_type)(raw)
    except ValueDecodeError as exc:
        return InvalidValue(raw, str(exc))


def _decode_with(dec: Any, raw: bytes) -> Any:
    try:
        return dec(raw)
    except ValueDecodeError as exc:
        return InvalidValue(raw, str(exc))


def _path_value(column_type: CqlType, path: bytes) -> Any:
    if isinstance(column_type, ListType):
        return (
            uuid.UUID(bytes=path) if len(path) == 16 else InvalidValue(path, "list cell id is not 16 bytes")
        )
    if isinstance(column_type, SetType):
        return _decode(column_type.element, path)
    if isinstance(column_type, MapType):
        return _decode(column_type.key, path)
    if isinstance(column_type, UserType):
        if len(path) != 2:
            return InvalidValue(path, "UDT field index is not 2 bytes")
        idx = int.from_bytes(path, "big")
        if idx >= len(column_type.field_names):
            return InvalidValue(
                path, f"UDT field index {idx} is beyond the {len(column_type.field_names)} fields"
            )
        return column_type.field_names[idx]
    return InvalidValue(path, f"column type {column_type.cql()} has no cell paths")


def _cell_change(cell: Cell) -> CellChange:
    column = cell.column
    ctype = column.type
    is_tombstone = cell.is_tombstone
    path = None
    context = None
    if cell.path is not None:
        path = _path_value(ctype, cell.path)
        vtype = cell_value_type(ctype, cell.path) or NativeType(
            "empty" if isinstance(ctype, SetType) else "blob"
        )
    else:
        if is_tombstone:
            return CellChange(
                column.name, None, cell.timestamp, cell.ttl or None, cell.local_deletion_time, True
            )
        value = _decode_with(column.decode, cell.value)
        if column.is_counter:
            context = cell.value
        return CellChange(
            column.name,
            value,
            cell.timestamp,
            cell.ttl or None,
            cell.local_deletion_time,
            False,
            None,
            False,
            context,
        )
    if is_tombstone:
        value = None
    elif isinstance(vtype, NativeType) and vtype.name == "empty":
        value = None  # set elements: the element is the path
    else:
        value = _decode(vtype, cell.value)
    return CellChange(
        column=column.name,
        value=value,
        timestamp=cell.timestamp,
        ttl=cell.ttl if cell.ttl else None,
        local_deletion_time=cell.local_deletion_time,
        deleted=is_tombstone,
        path=path,
        counter_context=context,
    )


def _cells(row: Row) -> tuple[CellChange, ...]:
    out: list[CellChange] = []
    for d in row.data:
        if isinstance(d, ComplexColumn):
            if d.deletion is not None:
                out.append(
                    CellChange(
                        column=d.column.name,
                        value=None,
                        timestamp=d.deletion.timestamp,
                        local_deletion_time=d.deletion.local_deletion_time,
                        deleted=True,
                        collection_deletion=True,
                    )
                )
            out.extend(_cell_change(c) for c in d.cells)
        else:
            out.append(_cell_change(d))
    return tuple(out)


def partition_key_values(table: Table, key: bytes) -> dict[str, Any]:
    """Decodes a partition key (split if composite)."""
    pk = table.partition_key
    if len(pk) == 1:
        return {pk[0].name: _decode(pk[0].type, key)}
    try:
        parts = split_composite(key, len(pk))
    except ValueDecodeError as exc:
        raise MutationDecodeError(
            f"partition key does not split into {len(pk)} components: {exc}", table=table.qualified_name
        ) from None
    return {c.name: _decode(c.type, p) for c, p in zip(pk, parts, strict=True)}


def _clustering_values(columns: list[Column], values: tuple[bytes | None, ...]) -> dict[str, Any]:
    return {
        c.name: (None if v is None else _decode(c.type, v)) for c, v in zip(columns, values, strict=False)
    }


def _start(kind: BoundKind) -> bool:
    """Inclusiveness of the range a start bound or boundary opens."""
    return kind in (BoundKind.INCL_START_BOUND, BoundKind.EXCL_END_INCL_START_BOUNDARY)


def _end(kind: BoundKind) -> bool:
    """Inclusiveness of the range an end bound or boundary closes."""
    return kind in (BoundKind.INCL_END_BOUND, BoundKind.INCL_END_EXCL_START_BOUNDARY)


def changes_of_update(
    update: PartitionUpdate,
    *,
    segment_id: int | None = None,
    position: int | None = None,
    entry_start: int | None = None,
    node: str | None = None,
) -> Iterator[RowChange]:
    """Row-level changes of one partition update, in order.

    Raises:
        MutationDecodeError: range tombstone markers do not pair up (open/close).
    """
    table = update.table
    common: dict[str, Any] = {
        "keyspace": table.keyspace,
        "table": table.name,
        "partition_key": partition_key_values(table, update.key),
        "segment_id": segment_id,
        "position": position,
        "entry_start": entry_start,
        "node": node,
    }
    if update.is_empty:
        return
    if update.partition_deletion is not None:
        yield RowChange(
            ChangeKind.PARTITION_DELETE,
            deletion_timestamp=update.partition_deletion.timestamp,
            deletion_time=update.partition_deletion.local_deletion_time,
            **common,
        )
    if update.static_row is not None:
        yield _row_change(update.static_row, ChangeKind.STATIC_ROW, {}, common)
    clustering = table.clustering
    open_bound: tuple[RangeTombstoneMarker, DeletionTime] | None = None
    for unf in update.unfiltereds:
        if isinstance(unf, Row):
            yield _row_change(unf, ChangeKind.ROW, _clustering_values(clustering, unf.clustering), common)
            continue
        kind = unf.kind
        if kind.is_start:
            if open_bound is not None:
                raise MutationDecodeError(
                    "range tombstone opens while another is open", table=table.qualified_name
                )
            open_bound = (unf, unf.deletions[0])
            continue
        if open_bound is None:
            raise MutationDecodeError(
                f"range tombstone {kind.name} closes a range that was never opened",
                table=table.qualified_name,
            )
        start_marker, deletion = open_bound
        yield RowChange(
            ChangeKind.RANGE_DELETE,
            deletion_timestamp=deletion.timestamp,
            deletion_time=deletion.local_deletion_time,
            range_start=ClusteringBound(
                _clustering_values(clustering, start_marker.values), _start(start_marker.kind)
            ),
            range_end=ClusteringBound(_clustering_values(clustering, unf.values), _end(kind)),
            **common,
        )
        open_bound = (unf, unf.deletions[1]) if kind.is_boundary else None
    if open_bound is not None:
        raise MutationDecodeError("range tombstone is never closed", table=table.qualified_name)


def _row_change(row: Row, kind: ChangeKind, clustering: dict[str, Any], common: dict[str, Any]) -> RowChange:
    lv = row.liveness
    return RowChange(
        kind,
        clustering=clustering,
        cells=_cells(row),
        liveness_timestamp=lv.timestamp if lv is not None else None,
        liveness_ttl=(lv.ttl or None) if lv is not None else None,
        liveness_expires=lv.local_expiration_time if lv is not None else None,
        deletion_timestamp=row.deletion.timestamp if row.deletion is not None else None,
        deletion_time=row.deletion.local_deletion_time if row.deletion is not None else None,
        **common,
    )


# --------------------------------------------------------------------------------------------
# JSON lines (``cdc-platform segment decode``)


def _obj(items: list[tuple[str, str]]) -> str:
    return "{" + ", ".join(f"{quote_json_string(k)}: {v}" for k, v in items) + "}"


def _num(v: int | None) -> str:
    return "null" if v is None else str(v)


def _values_object(columns: list[Column], values: dict[str, Any]) -> str:
    return (
        "{"
        + ", ".join(
            f"{json_name(c.name)}: {to_json(c.type, values[c.name])}" for c in columns if c.name in values
        )
        + "}"
    )


def _path_json(column: Column | None, path: Any) -> str:
    if path is None or column is None:
        return "null"
    t = column.type
    if isinstance(t, ListType):
        return to_json(NativeType("timeuuid"), path)
    if isinstance(t, SetType):
        return to_json(t.element, path)
    if isinstance(t, MapType):
        return to_json(t.key, path)
    if isinstance(t, UserType):
        return quote_json_string(path) if isinstance(path, str) else to_json(NativeType("blob"), path)
    return "null"


def _value_type(column: Column, cell: CellChange) -> CqlType:
    t = column.type
    if cell.path is None:
        return t
    if isinstance(t, ListType):
        return t.element
    if isinstance(t, MapType):
        return t.value
    if isinstance(t, UserType) and isinstance(cell.path, str) and cell.path in t.field_names:
        return t.field_types[t.field_names.index(cell.path)]
    return NativeType("blob")


def change_to_json(change: RowChange, table: Table) -> str:
    """One JSON object for ``segment decode``: values rendered like Cassandra's ``toJson()``."""
    cells = []
    for cell in change.cells:
        column = table.by_name.get(cell.column) or (
            table.dropped[cell.column].as_column() if cell.column in table.dropped else None
        )
        value = "null"
        if column is not None and cell.value is not None:
            value = to_json(_value_type(column, cell), cell.value)
        items = [
            ("column", quote_json_string(cell.column)),
            ("value", value),
            ("timestamp", str(cell.timestamp)),
            ("ttl", _num(cell.ttl)),
            ("local_deletion_time", _num(cell.local_deletion_time)),
            ("deleted", "true" if cell.deleted else "false"),
        ]
        if column is not None and column.type.is_multicell:
            items.append(("path", _path_json(column, cell.path)))
            if cell.collection_deletion:
                items.append(("collection_deletion", "true"))
        if cell.counter_context is not None:
            items.append(("counter_context", '"0x' + cell.counter_context.hex() + '"'))
        if isinstance(cell.value, InvalidValue):
            items.append(("invalid", quote_json_string(cell.value.reason)))
        cells.append(_obj(items))
    items = [
        ("segment_id", _num(change.segment_id)),
        ("position", _num(change.position)),
        ("entry_start", _num(change.entry_start)),
    ]
    if change.node is not None:
        items.append(("node", quote_json_string(change.node)))
    items += [
        ("keyspace", quote_json_string(change.keyspace)),
        ("table", quote_json_string(change.table)),
        ("kind", quote_json_string(change.kind.value)),
        ("operation", quote_json_string(change.operation)),
        ("partition_key", _values_object(table.partition_key, change.partition_key)),
        ("clustering", _values_object(table.clustering, change.clustering)),
    ]
    if change.liveness_timestamp is not None:
        items.append(
            (
                "liveness",
                _obj(
                    [
                        ("timestamp", str(change.liveness_timestamp)),
                        ("ttl", _num(change.liveness_ttl)),
                        ("expires", _num(change.liveness_expires)),
                    ]
                ),
            )
        )
    if change.deletion_timestamp is not None:
        items.append(
            (
                "deletion",
                _obj(
                    [
                        ("timestamp", str(change.deletion_timestamp)),
                        ("local_deletion_time", _num(change.deletion_time)),
                    ]
                ),
            )
        )
    if change.range_start is not None and change.range_end is not None:
        items.append(
            (
                "range",
                _obj(
                    [
                        (
                            "start",
                            _obj(
                                [
                                    (
                                        "clustering",
                                        _values_object(table.clustering, change.range_start.clustering),
                                    ),
                                    ("inclusive", "true" if change.range_start.inclusive else "false"),
                                ]
                            ),
                        ),
                        (
                            "end",
                            _obj(
                                [
                                    (
                                        "clustering",
                                        _values_object(table.clustering, change.range_end.clustering),
                                    ),
                                    ("inclusive", "true" if change.range_end.inclusive else "false"),
                                ]
                            ),
                        ),
                    ]
                ),
            )
        )
    items.append(("cells", "[" + ", ".join(cells) + "]"))
    return _obj(items)
