"""The DataFrame a table's expectation suite validates: one row per change.

Row ``i`` of the frame is ``changes[i]`` (a ``RangeIndex``), so the unexpected indexes Great
Expectations reports are positions in the batch. Every change is a row, deletions included:
they have no values to check, but their keys are checked too.

Columns:

- each primary-key column (null where the change has no value for it: clustering columns of
  static rows, partition and range deletions);
- each static and regular column some expectation reads (see :attr:`FrameLayout.omitted`):
  the value written by the change, null when the change does not write it or writes a
  tombstone. Non-frozen collections hold the written elements (list values, set elements,
  map ``(key, value)`` pairs, UDT ``{field: value}``), frozen ones their whole value;
- ``_cdc_invalid__<column>`` (boolean) per column whose values can be malformed: the change
  carries an :class:`~cdc_platform.schema.values.InvalidValue` (bytes that do not decode as the
  column's type: invalid UTF-8 or ASCII text, wrong lengths, …) or an ``EMPTY`` value of a
  non-string type for it, in a cell, a collection element, a key or a range-deletion bound.
  The column itself then holds null for that row;
- ``_cdc_kind``, ``_cdc_op``: the change kind (``row``, ``static_row``, ``partition_delete``,
  ``range_delete``) and operation (``upsert``, ``row_delete``, …), for row conditions;
- ``_cdc_write_timestamp``: the latest write time (µs) among the change's cells, liveness and
  deletion.

Value representation (what user rules compare against): text, ascii and blob as ``str`` and
``bytes``; integers (tinyint … bigint, counter, varint), ``timestamp`` (ms since the epoch),
``date`` (days since the epoch) and ``time`` (ns since midnight) as numbers; float and double
as floats (NaN reads as null); decimal as ``Decimal``; uuid, timeuuid and inet as text (their
canonical form, as in the Arrow batch); boolean as ``bool``; duration as ``Duration``;
collections, tuples and UDTs as Python lists, tuples and dicts. Integer columns are ``int64``
when the batch has no nulls in them, ``float64`` with NaN for nulls when every value is within
±2**53 (exact), and Python ints otherwise: pandas' nullable integers would push Great
Expectations onto its per-value slow paths.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from cdc_platform.changes.records import RowChange
from cdc_platform.schema.model import Column, Table
from cdc_platform.schema.types import CqlType, MapType, NativeType, SetType, UserType
from cdc_platform.schema.values import EMPTY, InvalidValue

if TYPE_CHECKING:
    import pandas as pd

KIND_COLUMN = "_cdc_kind"
OP_COLUMN = "_cdc_op"
WRITE_TIMESTAMP_COLUMN = "_cdc_write_timestamp"
INVALID_PREFIX = "_cdc_invalid__"

INTEGER_TYPES = frozenset(
    {"tinyint", "smallint", "int", "bigint", "counter", "varint", "timestamp", "date", "time"}
)
FLOAT_TYPES = frozenset({"float", "double"})
TEXT_FORM_TYPES = frozenset({"uuid", "timeuuid", "inet"})
# Types whose decoder accepts every byte string: nothing can be malformed.
ALWAYS_VALID_TYPES = frozenset({"blob"})
# Types whose zero-length value is a valid value (not ``EMPTY``).
STRING_TYPES = frozenset({"text", "ascii", "blob"})

_EXACT_FLOAT = 1 << 53
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_]+$")


def invalid_flag_name(column: Column) -> str:
    """The helper column flagging malformed values of ``column``."""
    # Row conditions name helper columns in pandas query text: keep the name plain.
    name = column.name if _PLAIN_NAME.match(column.name) else "x" + column.name.encode().hex()
    return INVALID_PREFIX + name


@dataclass(frozen=True)
class Slot:
    """Where a Cassandra column goes in the frame and how its values are represented.

    Attributes:
        column: the Cassandra column.
        field: the frame column (the Arrow field name: ``_cdc_*`` names are escaped).
        flag: the ``_cdc_invalid__*`` helper, or ``None`` when no value can be malformed.
        form: ``int``, ``float``, ``text`` (converted with ``str``), ``object`` or ``boxed``
            (objects that numpy would otherwise unpack: lists, tuples, dicts).
        multicell: a non-frozen collection or UDT (values gathered from element cells).
        nested: a frozen collection, tuple or UDT.
        deep: elements inside a value may be malformed (``EMPTY`` elements of non-string
            types), so values are searched; otherwise only the value itself is looked at
            (the decoder turns a collection that does not decode into one ``InvalidValue``).
    """

    column: Column
    field: str
    flag: str | None
    form: str
    multicell: bool
    nested: bool
    deep: bool


def _may_hold_empty(t: CqlType) -> bool:
    """True if a value of ``t`` can contain an ``EMPTY`` element (any non-string native inside)."""
    return any(
        s.name not in STRING_TYPES if isinstance(s, NativeType) else _may_hold_empty(s) for s in t.subtypes()
    )


def _slot(column: Column, field_name: Callable[[str], str]) -> Slot:
    t = column.type
    name = t.name if isinstance(t, NativeType) else None
    if name in INTEGER_TYPES:
        form = "int"
    elif name in FLOAT_TYPES:
        form = "float"
    elif name in TEXT_FORM_TYPES:
        form = "text"
    elif name is None or name == "duration":
        form = "boxed"
    else:
        form = "object"
    if t.is_multicell:
        # Element cells are checked one by one: only composite elements need searching.
        deep = any(not isinstance(p, NativeType) and _may_hold_empty(p) for p in t.subtypes())
    else:
        deep = name is None and _may_hold_empty(t)
    return Slot(
        column=column,
        field=field_name(column.name),
        flag=None if name in ALWAYS_VALID_TYPES else invalid_flag_name(column),
        form=form,
        multicell=t.is_multicell,
        nested=name is None and not t.is_multicell,
        deep=deep,
    )


@dataclass(frozen=True)
class FrameLayout:
    """The frame columns of one table (made once per table and configuration, reused per batch).

    Attributes:
        table: ``keyspace.table``.
        keys: partition-key and clustering columns (always in the frame).
        values: static and regular columns (their flags are always in the frame).
        omitted: value columns whose values no expectation reads: left out of the frame (their
            flags stay). Great Expectations fingerprints every batch by hashing the whole frame
            (pickling it when a column holds lists or dicts), and the values of unread columns
            (often PII) need not be copied at all.
    """

    table: str
    keys: tuple[Slot, ...]
    values: tuple[Slot, ...]
    omitted: frozenset[str] = frozenset()

    @classmethod
    def of(cls, table: Table) -> FrameLayout:
        # changes.arrow imports pyarrow: only when a layout is made, not when the package loads.
        from cdc_platform.changes.arrow import field_name

        return cls(
            table=table.qualified_name,
            keys=tuple(_slot(c, field_name) for c in table.partition_key + table.clustering),
            values=tuple(_slot(c, field_name) for c in table.static + table.regular),
        )

    def reading(self, fields: Iterable[str] | None) -> FrameLayout:
        """This layout with only the value columns in ``fields`` (all when ``None``)."""
        if fields is None:
            return replace(self, omitted=frozenset())
        keep = set(fields)
        return replace(self, omitted=frozenset(s.field for s in self.values if s.field not in keep))

    @property
    def slots(self) -> tuple[Slot, ...]:
        return self.keys + self.values

    def columns(self) -> list[str]:
        """The frame's columns, in order."""
        out = [s.field for s in self.slots if s.field not in self.omitted]
        out += [s.flag for s in self.slots if s.flag is not None]
        return [*out, KIND_COLUMN, OP_COLUMN, WRITE_TIMESTAMP_COLUMN]

    def slot(self, column_name: str) -> Slot | None:
        for s in self.slots:
            if s.column.name == column_name:
                return s
        return None


def _malformed(value: Any) -> bool:
    return value is EMPTY or type(value) is InvalidValue


def _holds_malformed(value: Any) -> bool:
    """True if a value, or any element of a collection, tuple or UDT value, is malformed."""
    if value is EMPTY or type(value) is InvalidValue:
        return True
    if type(value) is dict:
        return any(_holds_malformed(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_holds_malformed(v) for v in value)
    return False


# How a cell of a value column is handled in build_frame.
_SIMPLE, _NESTED, _LIST, _SET, _MAP, _UDT = range(6)


def build_frame(layout: FrameLayout, changes: Sequence[RowChange]) -> pd.DataFrame:
    """The frame of ``changes`` (row ``i`` is ``changes[i]``); see the module docstring.

    Raises:
        ValueError: a change belongs to another table.
    """
    import numpy as np
    import pandas as pd

    n = len(changes)
    omitted = layout.omitted
    stores: dict[str, list[Any]] = {s.field: [None] * n for s in layout.slots if s.field not in omitted}
    bad: dict[str, list[int]] = {s.flag: [] for s in layout.slots if s.flag is not None}
    kinds: list[str] = [""] * n
    ops: list[str] = [""] * n
    write_ts: list[int | None] = [None] * n

    # Per key column: (store, bad rows); per value column: (mode, store, bad rows, deep).
    no_rows: list[int] = []  # columns that cannot be malformed (blob) collect nothing here
    keys = {s.column.name: (stores[s.field], bad[s.flag] if s.flag else no_rows) for s in layout.keys}
    cells: dict[str, tuple[int, list[Any] | None, list[int], bool]] = {}
    for s in layout.values:
        t = s.column.type
        if not s.multicell:
            mode = _NESTED if s.nested else _SIMPLE
        elif isinstance(t, SetType):
            mode = _SET
        elif isinstance(t, MapType):
            mode = _MAP
        elif isinstance(t, UserType):
            mode = _UDT
        else:
            mode = _LIST
        cells[s.column.name] = (mode, stores.get(s.field), bad[s.flag] if s.flag else no_rows, s.deep)
    keyspace, _, table_name = layout.table.partition(".")
    invalid = InvalidValue
    empty = EMPTY

    for i, ch in enumerate(changes):
        if ch.table != table_name or ch.keyspace != keyspace:
            raise ValueError(f"change for {ch.keyspace}.{ch.table} in a batch of {layout.table}")
        kinds[i] = ch.kind.value
        ops[i] = ch.operation
        latest = ch.liveness_timestamp
        if ch.deletion_timestamp is not None and (latest is None or ch.deletion_timestamp > latest):
            latest = ch.deletion_timestamp
        for part in (ch.partition_key, ch.clustering):
            for name, v in part.items():
                key = keys.get(name)
                if key is None:
                    continue
                if v is empty or type(v) is invalid:
                    key[1].append(i)
                else:
                    key[0][i] = v
        for bound in (ch.range_start, ch.range_end):
            if bound is not None:
                for name, v in bound.clustering.items():
                    key = keys.get(name)
                    if key is not None and (v is empty or type(v) is invalid):
                        key[1].append(i)
        for cell in ch.cells:
            ts = cell.timestamp
            if latest is None or ts > latest:
                latest = ts
            handling = cells.get(cell.column)
            if handling is None or cell.deleted:
                # A dropped or unknown column (reported by the change batch's _cdc_raw), or a
                # tombstone / collection deletion: no value to check.
                continue
            mode, store, rows, deep = handling
            v = cell.value
            if mode == _SIMPLE:
                if v is empty or type(v) is invalid:
                    rows.append(i)
                elif store is not None:
                    store[i] = v
                continue
            if mode == _NESTED:
                if v is empty or type(v) is invalid or (deep and _holds_malformed(v)):
                    rows.append(i)
                elif store is not None:
                    store[i] = v
                continue
            path = cell.path
            if (
                path is empty
                or type(path) is invalid
                or v is empty
                or type(v) is invalid
                or (deep and (_holds_malformed(v) or _holds_malformed(path)))
            ):
                rows.append(i)
                continue
            if store is None:
                continue
            current = store[i]
            if mode == _UDT:
                if current is None:
                    current = store[i] = {}
                current[path] = v
                continue
            if current is None:
                current = store[i] = []
            current.append(path if mode == _SET else (path, v) if mode == _MAP else v)
        write_ts[i] = latest

    data: dict[str, Any] = {}
    for slot in layout.slots:
        if slot.field in omitted:
            continue
        column = stores[slot.field]
        if slot.form == "int":
            data[slot.field] = _int_array(column)
        elif slot.form == "float":
            data[slot.field] = np.array(column, dtype=np.float64)
        elif slot.form == "text":
            data[slot.field] = np.array([None if v is None else str(v) for v in column], dtype=object)
        elif slot.form == "boxed":
            data[slot.field] = _boxed(column)
        else:
            data[slot.field] = np.array(column, dtype=object)
    for flag, rows in bad.items():
        mask = np.zeros(n, dtype=bool)
        if rows:
            mask[rows] = True
        data[flag] = mask
    data[KIND_COLUMN] = np.array(kinds, dtype=object)
    data[OP_COLUMN] = np.array(ops, dtype=object)
    data[WRITE_TIMESTAMP_COLUMN] = _int_array(write_ts)
    return pd.DataFrame(data, index=pd.RangeIndex(n), copy=False)


def _boxed(items: list[Any]) -> Any:
    # numpy would read a list of equal-length lists as a 2-D array; fill element by element.
    import numpy as np

    out = np.empty(len(items), dtype=object)
    for i, v in enumerate(items):
        out[i] = v
    return out


def _int_array(items: list[Any]) -> Any:
    """int64 without nulls, float64 (NaN for null) when exact, else Python ints (see module doc)."""
    import numpy as np
    import pyarrow as pa

    try:
        arr = pa.array(items, type=pa.int64())
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError):
        return _boxed(items)
    if arr.null_count == 0:
        return arr.to_numpy()
    if arr.null_count == len(arr):
        return np.full(len(arr), np.nan)
    import pyarrow.compute as pc

    bounds = pc.min_max(arr).as_py()
    if bounds["min"] >= -_EXACT_FLOAT and bounds["max"] <= _EXACT_FLOAT:
        return arr.to_numpy(zero_copy_only=False)
    return _boxed(items)


INTEGER_RANGES: dict[str, tuple[int, int]] = {
    "tinyint": (-(1 << 7), (1 << 7) - 1),
    "smallint": (-(1 << 15), (1 << 15) - 1),
    "int": (-(1 << 31), (1 << 31) - 1),
    "bigint": (-(1 << 63), (1 << 63) - 1),
    "counter": (-(1 << 63), (1 << 63) - 1),
    "date": (-(1 << 31), (1 << 31) - 1),  # days since the epoch; serialized as u32 - 2**31
    "time": (0, 86_400 * 1_000_000_000 - 1),  # nanoseconds since midnight
}
