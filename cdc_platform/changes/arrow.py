"""Change records as Arrow tables, one per Cassandra table (:class:`ChangeBatch`).

The layout is documented in ``docs/change-model.md``. In short: provenance and operation
columns prefixed ``_cdc_``; one typed column per primary-key column; one struct column per
regular or static column holding the cell (value, timestamp, TTL, local deletion time,
tombstone flag), or for multi-cell columns the collection deletion and the list of element
cells (non-frozen UDTs: one cell struct per field). Values that cannot be represented in
their typed column (bytes that do not decode, "empty" values of non-string types, cells of
dropped columns) go to ``_cdc_raw`` with the reason, so nothing is lost.
"""

from __future__ import annotations

import decimal
import ipaddress
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from cdc_platform.changes.records import CellChange, ChangeKind, ClusteringBound, RowChange
from cdc_platform.commitlog.writer import column_sort_key
from cdc_platform.gc_pause import paused_gc
from cdc_platform.schema.model import Column, Table
from cdc_platform.schema.types import (
    CqlType,
    ListType,
    MapType,
    NativeType,
    SetType,
    TupleType,
    UserType,
    VectorType,
    collection_cell_types,
)
from cdc_platform.schema.values import EMPTY, Duration, InvalidValue, serialize

META_PREFIX = "_cdc_"
ESCAPE_PREFIX = "_cdc_col_"
BOUND_SIZE = "_cdc_size"
BOUND_INCLUSIVE = "_cdc_inclusive"


def field_name(column_name: str) -> str:
    """The Arrow field of a Cassandra column: its name, escaped when it starts with ``_cdc_``."""
    return ESCAPE_PREFIX + column_name if column_name.startswith(META_PREFIX) else column_name


_NATIVE_ARROW: dict[str, pa.DataType] = {
    "ascii": pa.string(),
    "text": pa.string(),
    "blob": pa.binary(),
    "boolean": pa.bool_(),
    "tinyint": pa.int8(),
    "smallint": pa.int16(),
    "int": pa.int32(),
    "bigint": pa.int64(),
    "counter": pa.int64(),
    "varint": pa.string(),
    "decimal": pa.string(),
    "float": pa.float32(),
    "double": pa.float64(),
    "uuid": pa.string(),
    "timeuuid": pa.string(),
    "timestamp": pa.timestamp("ms", tz="UTC"),
    "date": pa.date32(),
    "time": pa.time64("ns"),
    # Parquet has no month-day-nano interval: a struct of Cassandra's three fields.
    "duration": pa.struct(
        [pa.field("months", pa.int32()), pa.field("days", pa.int32()), pa.field("nanoseconds", pa.int64())]
    ),
    "inet": pa.string(),
    "empty": pa.null(),
}


@cache
def arrow_type(cql_type: CqlType) -> pa.DataType:
    """The Arrow type holding values of ``cql_type`` (the frozen value; see the docs table)."""
    if isinstance(cql_type, NativeType):
        return _NATIVE_ARROW[cql_type.name]
    if isinstance(cql_type, (ListType, SetType)):
        return pa.list_(arrow_type(cql_type.element))
    if isinstance(cql_type, VectorType):
        return pa.list_(arrow_type(cql_type.element), cql_type.dimension)
    if isinstance(cql_type, MapType):
        return pa.map_(arrow_type(cql_type.key), arrow_type(cql_type.value))
    if isinstance(cql_type, TupleType):
        return pa.struct([pa.field(f"f{i}", arrow_type(t)) for i, t in enumerate(cql_type.elements)])
    if isinstance(cql_type, UserType):
        return pa.struct(
            [
                pa.field(n, arrow_type(t))
                for n, t in zip(cql_type.field_names, cql_type.field_types, strict=True)
            ]
        )
    raise TypeError(f"no Arrow type for {cql_type!r}")


Converter = Callable[[Any], Any]


def _identity(v: Any) -> Any:
    return v


@cache
def to_arrow(cql_type: CqlType) -> Converter:
    """Converts a Python value (see :mod:`cdc_platform.schema.values`) to what pyarrow accepts."""
    if isinstance(cql_type, NativeType):
        name = cql_type.name
        if name in ("uuid", "timeuuid", "varint"):
            return str
        if name == "decimal":
            return lambda v: str(decimal.Decimal(v))
        if name == "inet":
            return str  # Python's form keeps IPv4-mapped IPv6 addresses 16 bytes long
        if name == "duration":
            return lambda v: {"months": v[0], "days": v[1], "nanoseconds": v[2]}
        return _identity
    if isinstance(cql_type, (ListType, SetType, VectorType)):
        elem = to_arrow(cql_type.element)
        if elem is _identity:
            return list
        return lambda v: [elem(x) for x in v]
    if isinstance(cql_type, MapType):
        kc, vc = to_arrow(cql_type.key), to_arrow(cql_type.value)
        return lambda v: [(kc(k), vc(x)) for k, x in v]
    if isinstance(cql_type, TupleType):
        convs = [to_arrow(t) for t in cql_type.elements]
        return lambda v: {
            f"f{i}": (None if x is None else c(x)) for i, (c, x) in enumerate(zip(convs, v, strict=False))
        }
    if isinstance(cql_type, UserType):
        fields = [(n, to_arrow(t)) for n, t in zip(cql_type.field_names, cql_type.field_types, strict=True)]
        return lambda v: {n: (None if v.get(n) is None else c(v.get(n))) for n, c in fields}
    raise TypeError(f"no Arrow conversion for {cql_type!r}")


@cache
def from_arrow(cql_type: CqlType) -> Converter:
    """Converts a value from ``pyarrow`` ``to_pylist()`` of :func:`storage_type` back to Python."""
    if isinstance(cql_type, NativeType):
        name = cql_type.name
        if name in ("uuid", "timeuuid"):
            return uuid.UUID
        if name == "varint":
            return int
        if name == "decimal":
            return decimal.Decimal
        if name == "inet":
            return ipaddress.ip_address
        if name == "duration":
            return lambda v: Duration(v["months"], v["days"], v["nanoseconds"])
        return _identity
    if isinstance(cql_type, (ListType, SetType, VectorType)):
        elem = from_arrow(cql_type.element)
        return lambda v: [elem(x) for x in v]
    if isinstance(cql_type, MapType):
        kc, vc = from_arrow(cql_type.key), from_arrow(cql_type.value)
        return lambda v: [(kc(k), vc(x)) for k, x in v]
    if isinstance(cql_type, TupleType):
        convs = [from_arrow(t) for t in cql_type.elements]
        return lambda v: tuple(None if v[f"f{i}"] is None else c(v[f"f{i}"]) for i, c in enumerate(convs))
    if isinstance(cql_type, UserType):
        fields = [(n, from_arrow(t)) for n, t in zip(cql_type.field_names, cql_type.field_types, strict=True)]
        return lambda v: {n: (None if v[n] is None else c(v[n])) for n, c in fields}
    raise TypeError(f"no Arrow conversion for {cql_type!r}")


@cache
def storage_type(t: pa.DataType) -> pa.DataType:
    """The Arrow type with temporal types replaced by integers (exact ``to_pylist`` round trips)."""
    if pa.types.is_timestamp(t) or pa.types.is_time64(t):
        return pa.int64()
    if pa.types.is_date32(t):
        return pa.int32()
    if pa.types.is_fixed_size_list(t):
        return pa.list_(storage_type(t.value_type), t.list_size)
    if pa.types.is_list(t):
        return pa.list_(storage_type(t.value_type))
    if pa.types.is_map(t):
        return pa.map_(storage_type(t.key_type), storage_type(t.item_type))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, storage_type(f.type), f.nullable) for f in t])
    return t


def column_values(cql_type: CqlType, values: pa.Array) -> list[Any]:
    """The Python values (see :mod:`cdc_platform.schema.values`) of a typed column, ``None`` for null."""
    convert = from_arrow(cql_type)
    return [None if v is None else convert(v) for v in values.cast(storage_type(values.type)).to_pylist()]


def _representable(cql_type: CqlType, value: Any) -> bool:
    if value is EMPTY:
        return isinstance(cql_type, NativeType) and cql_type.name in ("ascii", "text", "blob")
    return not isinstance(value, InvalidValue)


# --------------------------------------------------------------------------------------------
# Schema


def _cell_struct(value: pa.DataType | None, *, counter: bool = False) -> pa.DataType:
    fields = []
    if value is not None:
        fields.append(pa.field("value", value))
    fields += [
        pa.field("timestamp", pa.int64()),
        pa.field("ttl", pa.int32()),
        pa.field("local_deletion_time", pa.int64()),
        pa.field("deleted", pa.bool_()),
    ]
    if counter:
        fields.append(pa.field("counter_context", pa.binary()))
    return pa.struct(fields)


def column_arrow_type(column: Column) -> pa.DataType:
    """Arrow type of a regular/static column's field in a change batch."""
    t = column.type
    if not t.is_multicell:
        return _cell_struct(arrow_type(t), counter=isinstance(t, NativeType) and t.name == "counter")
    deletion = [pa.field("deletion_timestamp", pa.int64()), pa.field("deletion_time", pa.int64())]
    if isinstance(t, UserType):
        fields = pa.struct(
            [
                pa.field(n, _cell_struct(arrow_type(ft)))
                for n, ft in zip(t.field_names, t.field_types, strict=True)
            ]
        )
        return pa.struct([*deletion, pa.field("fields", fields)])
    if isinstance(t, ListType):
        cell = pa.struct([pa.field("path", pa.string()), *_cell_struct(arrow_type(t.element))])
    elif isinstance(t, SetType):
        cell = pa.struct([pa.field("path", arrow_type(t.element)), *_cell_struct(None)])
    elif isinstance(t, MapType):
        cell = pa.struct([pa.field("path", arrow_type(t.key)), *_cell_struct(arrow_type(t.value))])
    else:
        raise TypeError(f"no multi-cell layout for {t!r}")
    return pa.struct([*deletion, pa.field("cells", pa.list_(cell))])


def _bound_type(table: Table) -> pa.DataType:
    return pa.struct(
        [pa.field(field_name(c.name), arrow_type(c.type)) for c in table.clustering]
        + [pa.field(BOUND_SIZE, pa.int8()), pa.field(BOUND_INCLUSIVE, pa.bool_())]
    )


RAW_TYPE = pa.list_(
    pa.struct(
        [
            pa.field("column", pa.string()),
            pa.field("path", pa.string()),
            pa.field("raw", pa.binary()),
            pa.field("reason", pa.string()),
            pa.field("timestamp", pa.int64()),
        ]
    )
)


_SCHEMAS: dict[tuple[Any, ...], pa.Schema] = {}


def _build_schema(table: Table) -> pa.Schema:
    fields = [
        pa.field("_cdc_node", pa.string()),
        pa.field("_cdc_segment_id", pa.int64()),
        pa.field("_cdc_position", pa.int64()),
        pa.field("_cdc_seq", pa.int32()),
        pa.field("_cdc_entry_start", pa.int64()),
        pa.field("_cdc_kind", pa.string()),
        pa.field("_cdc_op", pa.string()),
        pa.field("_cdc_liveness_timestamp", pa.int64()),
        pa.field("_cdc_liveness_ttl", pa.int32()),
        pa.field("_cdc_liveness_expires", pa.int64()),
        pa.field("_cdc_deletion_timestamp", pa.int64()),
        pa.field("_cdc_deletion_time", pa.int64()),
        pa.field("_cdc_range_start", _bound_type(table)),
        pa.field("_cdc_range_end", _bound_type(table)),
        pa.field("_cdc_raw", RAW_TYPE),
    ]
    fields += [
        pa.field(field_name(c.name), arrow_type(c.type)) for c in table.partition_key + table.clustering
    ]
    fields += [pa.field(field_name(c.name), column_arrow_type(c)) for c in table.static + table.regular]
    metadata = {
        b"cdc.keyspace": table.keyspace.encode(),
        b"cdc.table": table.name.encode(),
        b"cdc.table_id": str(table.id).encode(),
    }
    return pa.schema(fields, metadata=metadata)


def arrow_schema(table: Table) -> pa.Schema:
    """The Arrow schema of change batches for ``table``."""
    key = (table.keyspace, table.name, table.id, tuple((c.name, c.type, c.kind) for c in table.columns))
    schema = _SCHEMAS.get(key)
    if schema is None:
        schema = _SCHEMAS[key] = _build_schema(table)
    return schema


# --------------------------------------------------------------------------------------------
# RowChange → Arrow


def _cell_dict(cell: CellChange, value: Any, with_value: bool, counter: bool) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if with_value:
        d["value"] = value
    d["timestamp"] = cell.timestamp
    d["ttl"] = cell.ttl
    d["local_deletion_time"] = cell.local_deletion_time
    d["deleted"] = cell.deleted
    if counter:
        d["counter_context"] = cell.counter_context
    return d


def _path_text(path: Any) -> str | None:
    if path is None:
        return None
    if isinstance(path, InvalidValue):
        return "0x" + path.raw.hex()
    return str(path)


EMPTY_REASON = "empty value"
KEY_PATH = "(key)"
RANGE_START_PATH = "(range start)"
RANGE_END_PATH = "(range end)"
NOT_IN_TABLE_REASON = "cell of a column not in the table"


def _raw_entry(cell: CellChange, cql_type: CqlType | None, reason: str) -> dict[str, Any]:
    value = cell.value
    if isinstance(value, InvalidValue):
        raw = value.raw
        reason = value.reason
    elif value is EMPTY:
        raw = b""
        reason = EMPTY_REASON
    elif value is None:
        raw = b""
    else:
        try:
            raw = serialize(cql_type, value) if cql_type is not None else b""
        except Exception:
            raw = repr(value).encode()
    return {
        "column": cell.column,
        "path": _path_text(cell.path),
        "raw": raw,
        "reason": reason,
        "timestamp": cell.timestamp,
    }


def _column_value(
    column: Column, cells: list[CellChange], raw: list[dict[str, Any]]
) -> dict[str, Any] | None:
    t = column.type
    if not t.is_multicell:
        cell = cells[-1]
        value = cell.value
        if value is not None and not _representable(t, value):
            raw.append(_raw_entry(cell, t, "value not representable in its typed column"))
            value = None
        elif value is not None:
            value = to_arrow(t)(value)
        counter = isinstance(t, NativeType) and t.name == "counter"
        return _cell_dict(cell, value, True, counter)
    out: dict[str, Any] = {"deletion_timestamp": None, "deletion_time": None}
    elements: list[dict[str, Any]] = []
    udt_fields: dict[str, Any] = {}
    for cell in cells:
        if cell.collection_deletion:
            out["deletion_timestamp"] = cell.timestamp
            out["deletion_time"] = cell.local_deletion_time
            continue
        if isinstance(t, UserType):
            if not isinstance(cell.path, str) or cell.path not in t.field_names:
                raw.append(_raw_entry(cell, None, "UDT cell with an unknown field"))
                continue
            ft = t.field_types[t.field_names.index(cell.path)]
            value = cell.value
            if value is not None and not _representable(ft, value):
                raw.append(_raw_entry(cell, ft, "value not representable in its typed column"))
                value = None
            elif value is not None:
                value = to_arrow(ft)(value)
            udt_fields[cell.path] = _cell_dict(cell, value, True, False)
            continue
        path_type, value_type = collection_cell_types(t)
        if cell.path is None or not _representable(path_type, cell.path):
            raw.append(_raw_entry(cell, None, "collection cell path not representable"))
            continue
        entry = {"path": to_arrow(path_type)(cell.path)}
        value = cell.value
        if value_type is not None and value is not None and not _representable(value_type, value):
            raw.append(_raw_entry(cell, value_type, "value not representable in its typed column"))
            value = None
        elif value_type is not None and value is not None:
            value = to_arrow(value_type)(value)
        entry.update(_cell_dict(cell, value, value_type is not None, False))
        elements.append(entry)
    if isinstance(t, UserType):
        out["fields"] = udt_fields
    else:
        out["cells"] = elements
    return out


def _key_raw(column: str, path: str, value: Any) -> dict[str, Any]:
    """A ``_cdc_raw`` entry for a key or range-bound value (no timestamp: not a cell)."""
    if value is EMPTY:
        return {"column": column, "path": path, "raw": b"", "reason": EMPTY_REASON, "timestamp": None}
    return {"column": column, "path": path, "raw": value.raw, "reason": value.reason, "timestamp": None}


def _bound_dict(
    table: Table, bound: ClusteringBound | None, raw: list[dict[str, Any]], path: str
) -> dict[str, Any] | None:
    if bound is None:
        return None
    d: dict[str, Any] = {}
    for c in table.clustering:
        v = bound.clustering.get(c.name)
        if v is not None and not _representable(c.type, v):
            raw.append(_key_raw(c.name, path, v))
            v = None
        d[field_name(c.name)] = None if v is None else to_arrow(c.type)(v)
    d[BOUND_SIZE] = len(bound.clustering)
    d[BOUND_INCLUSIVE] = bound.inclusive
    return d


@dataclass
class ChangeBatch:
    """Change records of one table as an Arrow table (see ``docs/change-model.md``)."""

    table: Table
    data: pa.Table

    def __len__(self) -> int:
        return self.data.num_rows

    @classmethod
    @paused_gc()
    def from_changes(cls, table: Table, changes: Iterable[RowChange]) -> ChangeBatch:
        """Builds a batch from row changes of ``table`` (other tables' changes are an error)."""
        schema = arrow_schema(table)
        columns: dict[str, list[Any]] = {f.name: [] for f in schema}
        key_columns = table.partition_key + table.clustering
        value_columns = table.static + table.regular
        known = {c.name for c in value_columns}
        seq = 0
        last_entry: tuple[int | None, int | None] = (None, None)
        for ch in changes:
            if ch.keyspace != table.keyspace or ch.table != table.name:
                raise ValueError(f"change for {ch.keyspace}.{ch.table} in a batch of {table.qualified_name}")
            entry = (ch.segment_id, ch.position)
            seq = seq + 1 if entry == last_entry else 0
            last_entry = entry
            raw: list[dict[str, Any]] = []
            columns["_cdc_node"].append(ch.node)
            columns["_cdc_segment_id"].append(ch.segment_id)
            columns["_cdc_position"].append(ch.position)
            columns["_cdc_seq"].append(seq)
            columns["_cdc_entry_start"].append(ch.entry_start)
            columns["_cdc_kind"].append(ch.kind.value)
            columns["_cdc_op"].append(ch.operation)
            columns["_cdc_liveness_timestamp"].append(ch.liveness_timestamp)
            columns["_cdc_liveness_ttl"].append(ch.liveness_ttl)
            columns["_cdc_liveness_expires"].append(ch.liveness_expires)
            columns["_cdc_deletion_timestamp"].append(ch.deletion_timestamp)
            columns["_cdc_deletion_time"].append(ch.deletion_time)
            columns["_cdc_range_start"].append(_bound_dict(table, ch.range_start, raw, RANGE_START_PATH))
            columns["_cdc_range_end"].append(_bound_dict(table, ch.range_end, raw, RANGE_END_PATH))
            keys = {**ch.partition_key, **ch.clustering}
            for c in key_columns:
                v = keys.get(c.name)
                if v is not None and not _representable(c.type, v):
                    raw.append(_key_raw(c.name, KEY_PATH, v))
                    v = None
                columns[field_name(c.name)].append(None if v is None else to_arrow(c.type)(v))
            by_column: dict[str, list[CellChange]] = {}
            for cell in ch.cells:
                if cell.column not in known:
                    dropped = table.dropped.get(cell.column)
                    raw.append(
                        _raw_entry(
                            cell, dropped.type if dropped else None, "cell of a column not in the table"
                        )
                    )
                    continue
                by_column.setdefault(cell.column, []).append(cell)
            for c in value_columns:
                cells = by_column.get(c.name)
                columns[field_name(c.name)].append(None if not cells else _column_value(c, cells, raw))
            columns["_cdc_raw"].append(raw or None)
        arrays = [pa.array(columns[f.name], type=f.type) for f in schema]
        return cls(table, pa.Table.from_arrays(arrays, schema=schema))

    @paused_gc()
    def to_changes(self) -> list[RowChange]:
        """The row changes of this batch (the inverse of :meth:`from_changes` for representable values)."""
        table = self.table
        data = self.data
        n = data.num_rows
        # Cells in Cassandra's column order, as the decoder yields them.
        value_columns = sorted(table.static + table.regular, key=column_sort_key)
        known = {c.name for c in value_columns}
        cols: dict[str, list[Any]] = {}
        for f in data.schema:
            arr = data.column(f.name)
            cols[f.name] = arr.cast(storage_type(f.type)).to_pylist()
        # Columns added to the table after the batch was written read as absent.
        for c in table.columns:
            cols.setdefault(field_name(c.name), [None] * n)
        cols.setdefault("_cdc_entry_start", [None] * n)  # batches staged before it was kept
        out: list[RowChange] = []
        for i in range(n):
            kind = ChangeKind(cols["_cdc_kind"][i])
            pk = {c.name: _from(c.type, cols[field_name(c.name)][i]) for c in table.partition_key}
            ck = (
                {c.name: _from(c.type, cols[field_name(c.name)][i]) for c in table.clustering}
                if kind is ChangeKind.ROW
                else {}
            )
            cells: list[CellChange] = []
            for c in value_columns:
                v = cols[field_name(c.name)][i]
                if v is not None:
                    cells.extend(_cells_from(c, v))
            raw = cols["_cdc_raw"][i]
            range_start = _bound_from(table, cols["_cdc_range_start"][i])
            range_end = _bound_from(table, cols["_cdc_range_end"][i])
            if raw:
                cells = _restore_raw(cells, raw, known)
                for entry in raw:
                    if entry["timestamp"] is not None:
                        continue
                    value = _raw_value(entry)
                    if entry["path"] == KEY_PATH:
                        (pk if entry["column"] in pk else ck)[entry["column"]] = value
                    elif entry["path"] == RANGE_START_PATH and range_start is not None:
                        range_start.clustering[entry["column"]] = value
                    elif entry["path"] == RANGE_END_PATH and range_end is not None:
                        range_end.clustering[entry["column"]] = value
            out.append(
                RowChange(
                    kind,
                    table.keyspace,
                    table.name,
                    pk,
                    ck,
                    tuple(cells),
                    liveness_timestamp=cols["_cdc_liveness_timestamp"][i],
                    liveness_ttl=cols["_cdc_liveness_ttl"][i],
                    liveness_expires=cols["_cdc_liveness_expires"][i],
                    deletion_timestamp=cols["_cdc_deletion_timestamp"][i],
                    deletion_time=cols["_cdc_deletion_time"][i],
                    range_start=range_start,
                    range_end=range_end,
                    segment_id=cols["_cdc_segment_id"][i],
                    position=cols["_cdc_position"][i],
                    entry_start=cols["_cdc_entry_start"][i],
                    node=cols["_cdc_node"][i],
                )
            )
        return out

    def write_parquet(self, path: str | Path) -> None:
        pq.write_table(self.data, str(path))

    @classmethod
    def read_parquet(cls, table: Table, path: str | Path) -> ChangeBatch:
        data = pq.read_table(str(path), schema=arrow_schema(table))
        return cls(table, data)


def _raw_value(entry: dict[str, Any]) -> Any:
    return EMPTY if entry["reason"] == EMPTY_REASON else InvalidValue(entry["raw"], entry["reason"])


def _restore_raw(cells: list[CellChange], raw: list[dict[str, Any]], known: set[str]) -> list[CellChange]:
    """Puts values kept in ``_cdc_raw`` back on their cells (or as cells of unknown columns)."""
    out = list(cells)
    for entry in raw:
        if entry["timestamp"] is None:
            continue  # key and bound values: reported, not cells
        value = _raw_value(entry)
        if entry["column"] not in known:
            out.append(CellChange(entry["column"], value, entry["timestamp"]))
            continue
        for i, cell in enumerate(out):
            if (
                cell.column == entry["column"]
                and _path_text(cell.path) == entry["path"]
                and cell.value is None
                and not cell.deleted
            ):
                out[i] = cell._replace(value=value)
                break
    return out


def _from(t: CqlType, v: Any) -> Any:
    return None if v is None else from_arrow(t)(v)


def _bound_from(table: Table, v: dict[str, Any] | None) -> ClusteringBound | None:
    if v is None:
        return None
    size = v[BOUND_SIZE]
    values = {c.name: _from(c.type, v[field_name(c.name)]) for c in table.clustering[:size]}
    return ClusteringBound(values, bool(v[BOUND_INCLUSIVE]))


def _cells_from(column: Column, v: dict[str, Any]) -> list[CellChange]:
    t = column.type
    if not t.is_multicell:
        return [
            CellChange(
                column.name,
                _from(t, v["value"]),
                v["timestamp"],
                v["ttl"],
                v["local_deletion_time"],
                v["deleted"],
                counter_context=v.get("counter_context"),
            )
        ]
    out: list[CellChange] = []
    if v["deletion_timestamp"] is not None:
        out.append(
            CellChange(
                column.name,
                None,
                v["deletion_timestamp"],
                None,
                v["deletion_time"],
                True,
                collection_deletion=True,
            )
        )
    if isinstance(t, UserType):
        for name, ft in zip(t.field_names, t.field_types, strict=True):
            cell = v["fields"][name]
            if cell is not None:
                out.append(
                    CellChange(
                        column.name,
                        _from(ft, cell["value"]),
                        cell["timestamp"],
                        cell["ttl"],
                        cell["local_deletion_time"],
                        cell["deleted"],
                        path=name,
                    )
                )
        return out
    path_type, value_type = collection_cell_types(t)
    for cell in v["cells"]:
        value = _from(value_type, cell["value"]) if value_type is not None else None
        out.append(
            CellChange(
                column.name,
                value,
                cell["timestamp"],
                cell["ttl"],
                cell["local_deletion_time"],
                cell["deleted"],
                path=_from(path_type, cell["path"]),
            )
        )
    return out
