"""Fresh rows straight from a change batch's Arrow columns (the column-wise twin of ``split_fresh``).

:func:`cdc_platform.destinations.state.split_fresh` finds the rows a batch creates by walking
:class:`~cdc_platform.changes.records.RowChange` objects, a few microseconds each. A staged
batch is already column-wise (:class:`~cdc_platform.changes.arrow.ChangeBatch`), so the same
selection and encoding are done here with Arrow and numpy over whole columns: which changes
qualify, their row and partition keys (:func:`~cdc_platform.destinations.state.encode_key`),
cell versions (:func:`~cdc_platform.destinations.state.encode_version`) and liveness
(:func:`~cdc_platform.destinations.state.encode_liveness`), byte for byte what the
object path computes. Every other change of the batch goes back as Arrow rows for the general
path (:func:`plan_change_batch`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cdc_platform.changes.arrow import ChangeBatch, arrow_type, column_values, field_name, storage_type
from cdc_platform.changes.records import ChangeKind
from cdc_platform.schema.model import Table
from cdc_platform.schema.types import CqlType, NativeType
from cdc_platform.schema.values import serialize

if TYPE_CHECKING:
    from cdc_platform.destinations.state import StateStore, WritePlan

_OFFSET = np.uint64(1 << 63)

# Cassandra's serialization of fixed-width natives: a big-endian numpy dtype per CQL type.
_FIXED: dict[str, str] = {
    "tinyint": ">i1",
    "smallint": ">i2",
    "int": ">i4",
    "bigint": ">i8",
    "timestamp": ">i8",
    "time": ">i8",
    "float": ">f4",
    "double": ">f8",
}
# Key types whose rows may take the fresh path (the object path's ``_EXACT_KEY_TYPES``).
_KEY_TYPES = frozenset(
    {"ascii", "text", "blob", "boolean", "tinyint", "smallint", "int", "bigint", "timestamp", "time", "date"}
    | {"double", "uuid", "timeuuid"}
)


def fixed_width(data: bytes, width: int, n: int) -> pa.Array:
    """``n`` binary values of ``width`` bytes each, cut from ``data``."""
    offsets = np.arange(0, width * (n + 1), width, dtype=np.int32)
    return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def null_unless(values: pa.Array, valid: pa.Array) -> pa.Array:
    """``values`` with null where ``valid`` is false."""
    return pc.if_else(valid, values, pa.scalar(None, values.type))


def _with_nulls(values: pa.Array, like: pa.Array) -> pa.Array:
    """``values`` with nulls where ``like`` has them."""
    return null_unless(values, like.is_valid()) if like.null_count else values


def numbers(arr: pa.Array) -> np.ndarray:
    """The array's values as numpy, temporal types as their integers (nulls as 0)."""
    storage = arr.cast(storage_type(arr.type)) if arr.type != storage_type(arr.type) else arr
    if storage.null_count:
        storage = storage.fill_null(False if pa.types.is_boolean(storage.type) else 0)
    return storage.to_numpy(zero_copy_only=False)


def serialized(cql_type: CqlType, arr: pa.Array) -> pa.Array:
    """Cassandra's serialized bytes of each value of a typed Arrow column (nulls stay null)."""
    n = len(arr)
    name = cql_type.name if isinstance(cql_type, NativeType) else ""
    if name in _FIXED:
        dtype = np.dtype(_FIXED[name])
        return _with_nulls(fixed_width(numbers(arr).astype(dtype).tobytes(), dtype.itemsize, n), arr)
    if name in ("ascii", "text"):
        return arr.cast(pa.binary())
    if name == "blob":
        return arr
    if name == "boolean":
        return _with_nulls(fixed_width(numbers(arr).astype(np.uint8).tobytes(), 1, n), arr)
    if name == "date":  # days since the epoch, offset by 2**31, unsigned
        days = (numbers(arr).astype(np.int64) + (1 << 31)).astype(">u4")
        return _with_nulls(fixed_width(days.tobytes(), 4, n), arr)
    return pa.array(
        [None if v is None else serialize(cql_type, v) for v in column_values(cql_type, arr)], pa.binary()
    )


def length_prefixes(parts: pa.Array) -> pa.Array:
    """Each binary value's length as a 4-byte big-endian int (``-1`` for null)."""
    n = len(parts)
    offsets = np.frombuffer(parts.buffers()[1], dtype=np.int32, count=n + 1, offset=parts.offset * 4)
    lengths = np.diff(offsets)
    if parts.null_count:
        lengths = np.where(parts.is_valid().to_numpy(zero_copy_only=False), lengths, -1)
    return fixed_width(lengths.astype(">i4").tobytes(), 4, n)


def sized(parts: pa.Array) -> pa.Array:
    """Each value prefixed by its length as a big-endian int (``-1`` and no bytes for null)."""
    return join([length_prefixes(parts), parts.fill_null(b"") if parts.null_count else parts])


Part: TypeAlias = "bytes | pa.Array"


def join(parts: Sequence[Part]) -> pa.Array:
    """Row-wise concatenation of binary arrays and constants (null where any array is null).

    Adjacent constants are merged and passed as scalars: Arrow copies each part of each row,
    so fewer, larger parts are cheaper. At least one part must be an array.
    """
    merged: list[Part] = []
    for p in parts:
        if isinstance(p, bytes) and merged and isinstance(merged[-1], bytes):
            merged[-1] += p
        else:
            merged.append(p)
    if len(merged) == 1 and not isinstance(merged[0], bytes):
        return merged[0]
    return pc.binary_join_element_wise(
        *[pa.scalar(p, pa.binary()) if isinstance(p, bytes) else p for p in merged],
        b"",
        null_handling="emit_null",
    )


def decimal(values: pa.Array) -> pa.Array:
    """Integers as decimal text (null stays null), as ``str(v)`` gives."""
    return pc.cast(values, pa.string()).cast(pa.binary())


def either(mask: pa.Array, yes: bytes, no: bytes) -> Part:
    """``yes`` where ``mask`` is true, else ``no`` (a constant when the mask is)."""
    if not pc.any(mask).as_py():
        return no
    if pc.all(mask).as_py():
        return yes
    return pc.if_else(mask, pa.scalar(yes, pa.binary()), pa.scalar(no, pa.binary()))


def maybe(values: pa.Array, encode: Callable[[pa.Array], pa.Array] | None, null: bytes) -> Part:
    """``encode(values)`` (or the values) with ``null`` for nulls; the constant when all are null."""
    if values.null_count == len(values):
        return null
    out = encode(values) if encode is not None else values
    return pc.fill_null(out, null) if out.null_count else out


def only(present: pa.Array, *parts: Part) -> list[Part]:
    """Parts of a concatenation that are empty where ``present`` is false: the parts themselves
    when it is true everywhere (the caller concatenates them with the rest, copying once),
    else their concatenation, emptied where absent."""
    if pc.all(present).as_py():
        return list(parts)
    return [pc.if_else(present, join(parts), pa.scalar(b"", pa.binary()))]


def versions(timestamps: pa.Array, values: pa.Array) -> pa.Array:
    """Encoded live cell versions: ``ts | rank 0 | no local deletion time | value`` (null: no cell)."""
    n = len(values)
    head = np.zeros(n, dtype=[("ts", ">u8"), ("rank", "u1"), ("ldt", ">u8")])
    head["ts"] = numbers(timestamps).astype(np.int64).view(np.uint64) + _OFFSET
    head["ldt"] = _OFFSET
    return join([fixed_width(head.tobytes(), 17, n), values])


def liveness(timestamps: pa.Array) -> pa.Array:
    """Encoded primary-key liveness without TTL (null where the change has none)."""
    n = len(timestamps)
    out = np.zeros(n, dtype=[("ts", ">u8"), ("expiring", "u1"), ("expiry", ">u8"), ("ttl", ">i4")])
    out["ts"] = numbers(timestamps).astype(np.int64).view(np.uint64) + _OFFSET
    out["expiry"] = _OFFSET
    return _with_nulls(fixed_width(out.tobytes(), 21, n), timestamps)


@dataclass
class FreshColumns:
    """Rows a batch creates, as Arrow columns aligned by row (see ``FreshRows``).

    Attributes:
        rows: each row's index in the batch.
        keys: encoded row keys; pks: encoded partition keys.
        key_values: per key column (partition key, then clustering), the batch's typed column.
        values: per regular column, the typed values (null: no cell).
        versions: per regular column, the stored cell states (null: no cell): value bytes
            for a row in short form, encoded versions otherwise.
        liveness: encoded primary-key liveness (null: none; empty in short form).
        timestamps: the row's one write timestamp in short form, null otherwise.
    """

    rows: pa.Array
    keys: pa.Array
    pks: pa.Array
    key_values: list[pa.Array]
    values: list[pa.Array]
    versions: list[pa.Array]
    liveness: pa.Array
    timestamps: pa.Array

    def __len__(self) -> int:
        return len(self.rows)

    def filter(self, mask: pa.Array) -> FreshColumns:
        def pick(a: pa.Array) -> pa.Array:
            return a.filter(mask)

        return FreshColumns(
            pick(self.rows),
            pick(self.keys),
            pick(self.pks),
            [pick(a) for a in self.key_values],
            [pick(a) for a in self.values],
            [pick(a) for a in self.versions],
            pick(self.liveness),
            pick(self.timestamps),
        )


def column_of(data: pa.Table, name: str) -> pa.Array:
    """A column of the batch; all null when the batch predates it (a column added since)."""
    field = field_name(name)
    if field not in data.column_names:
        return pa.nulls(data.num_rows)
    return data.column(field).combine_chunks()


def _no_ttl(arr: pa.Array) -> pa.Array:
    return pc.fill_null(pc.equal(arr, 0), True)


def fresh_columns(table: Table, data: pa.Table) -> tuple[FreshColumns | None, pa.Array]:
    """Selects and encodes the fresh-row candidates of a batch, column-wise.

    The rules are ``split_fresh``'s: a ``row`` change with no row deletion and no TTL, only
    live, non-expiring simple cells of regular columns with representable values (nothing in
    ``_cdc_raw``), keys of an exactly round-tripping type, and liveness or a cell; no other
    change of the batch touches its row or deletes in its partition. Whether its key is
    stored is for the caller to ask.

    Returns:
        The candidates (``None`` when the table cannot have any), and a boolean mask of the
        batch's rows that are not candidates.
    """
    n = data.num_rows
    keys_cols = table.partition_key + table.clustering
    if (
        n == 0
        or any(c.is_counter for c in table.columns)
        or not all(isinstance(c.type, NativeType) and c.type.name in _KEY_TYPES for c in keys_cols)
    ):
        return None, pa.array(np.ones(n, dtype=bool))
    kind = data.column("_cdc_kind").combine_chunks()
    is_row = pc.equal(kind, ChangeKind.ROW.value)
    ok = pc.and_(is_row, data.column("_cdc_deletion_timestamp").combine_chunks().is_null())
    ok = pc.and_(ok, _no_ttl(data.column("_cdc_liveness_ttl").combine_chunks()))
    raw = data.column("_cdc_raw").combine_chunks()
    ok = pc.and_(ok, pc.fill_null(pc.equal(pc.list_value_length(raw), 0), True))
    key_values = [column_of(data, c.name) for c in keys_cols]
    for v in key_values:
        ok = pc.and_(ok, v.is_valid())
    for c in table.static + [c for c in table.regular if c.type.is_multicell]:
        ok = pc.and_(ok, column_of(data, c.name).is_null())
    lts = data.column("_cdc_liveness_timestamp").combine_chunks()
    exists = lts.is_valid()
    simple = [c for c in table.regular if not c.type.is_multicell]
    values: list[pa.Array] = []
    stamps: list[pa.Array] = []
    for c in simple:
        if field_name(c.name) not in data.column_names:  # added since: no cells
            values.append(pa.nulls(n, arrow_type(c.type)))
            stamps.append(pa.nulls(n, pa.int64()))
            continue
        cell = column_of(data, c.name)
        present = cell.is_valid()
        value = pc.struct_field(cell, "value")  # null where the struct is
        live = pc.and_(
            pc.invert(pc.fill_null(pc.struct_field(cell, "deleted"), False)),
            _no_ttl(pc.struct_field(cell, "ttl")),
        )
        ok = pc.and_(ok, pc.or_(pc.invert(present), pc.and_(live, value.is_valid())))
        exists = pc.or_(exists, present)
        values.append(value)
        stamps.append(pc.struct_field(cell, "timestamp"))
    ok = pc.and_(ok, exists)
    n_pk = len(table.partition_key)
    pk_parts = [sized(serialized(c.type, v)) for c, v in zip(keys_cols, key_values, strict=True)]
    pks = join(pk_parts[:n_pk])
    row_keys = join([pks, *pk_parts[n_pk:]]) if len(pk_parts) > n_pk else pks
    # A row another change of the batch touches, or in a partition the batch deletes in, is
    # not fresh; nor is one the batch changes twice.
    rest_rows = pc.and_(is_row, pc.invert(ok))
    deleting = pc.or_(
        pc.equal(kind, ChangeKind.PARTITION_DELETE.value), pc.equal(kind, ChangeKind.RANGE_DELETE.value)
    )
    cand_keys = row_keys.filter(ok)
    dead = row_keys.filter(rest_rows)
    if len(pc.unique(cand_keys)) != len(cand_keys):
        counts = pc.value_counts(cand_keys)
        twice = pc.struct_field(counts, "values").filter(pc.greater(pc.struct_field(counts, "counts"), 1))
        dead = pa.concat_arrays([dead, twice])
    if len(dead):
        ok = pc.and_(ok, pc.invert(pc.is_in(row_keys, value_set=dead)))
    deleted_pks = pks.filter(deleting)
    if len(deleted_pks):
        ok = pc.and_(ok, pc.invert(pc.is_in(pks, value_set=deleted_pks)))
    ok = pc.fill_null(ok, False)
    count = pc.sum(ok).as_py() or 0
    lts = lts.filter(ok)
    stamps = [ts.filter(ok) for ts in stamps]
    # Short form (see ``state``): the cells and the liveness share one timestamp.
    common = pc.coalesce(lts, *stamps) if stamps else lts
    short = pa.array(np.ones(count, dtype=bool))
    for ts in stamps:
        short = pc.and_(short, pc.fill_null(pc.equal(ts, common), True))
    any_full = not pc.all(short).as_py()
    by_column = dict(zip((c.name for c in simple), zip(values, stamps, strict=True), strict=True))
    value_cols: list[pa.Array] = []
    version_cols: list[pa.Array] = []
    for c in table.regular:
        if c.name in by_column:
            v, ts = by_column[c.name]
            v = v.filter(ok)
            value_cols.append(v)
            raw = serialized(c.type, v)
            version_cols.append(pc.if_else(short, raw, versions(ts, raw)) if any_full else raw)
        else:  # a collection column: never set in a fresh row
            value_cols.append(pa.nulls(count))
            version_cols.append(pa.nulls(count, pa.binary()))
    empty = null_unless(pa.array([b""] * count, pa.binary()), lts.is_valid())
    fresh = FreshColumns(
        pa.array(np.arange(n, dtype=np.int64)).filter(ok),
        row_keys.filter(ok),
        pks.filter(ok),
        [v.filter(ok) for v in key_values],
        value_cols,
        version_cols,
        pc.if_else(short, empty, liveness(lts)) if any_full else empty,
        null_unless(common.cast(pa.int64()), short) if any_full else common.cast(pa.int64()),
    )
    return fresh, pc.invert(ok)


def plan_change_batch(table: Table, batch: ChangeBatch, store: StateStore) -> WritePlan:
    """:func:`~cdc_platform.destinations.state.plan_batch` for a change batch, fresh rows column-wise.

    Candidates whose key is stored (or lies in a partition with a stored record) join the
    other changes on the general path, unless the stored row is exactly what they would write
    (:meth:`StateStore.stored_fresh`); the plan's :attr:`WritePlan.columns` holds the rest.
    """
    from cdc_platform.destinations.state import plan_batch

    data = batch.data
    fresh, rest = fresh_columns(table, data)
    if fresh is not None and len(fresh):
        # A rerun or another replica's copy: rows stored exactly as they would be written are
        # contained already (stored ⊔ change = stored): neither merged nor written.
        stored, same = store.stored_fresh(table, fresh)
        if stored:
            hit = pc.is_in(fresh.keys, value_set=pa.array(list(stored), pa.binary()))
            merge = hit
            if same:
                merge = pc.and_(
                    hit, pc.invert(pc.is_in(fresh.keys, value_set=pa.array(list(same), pa.binary())))
                )
            rest = pc.or_(rest, _scatter(fresh.rows.filter(merge), data.num_rows))
            fresh = fresh.filter(pc.invert(hit))
    others = ChangeBatch(table, data.filter(rest)).to_changes() if pc.any(rest).as_py() else []
    plan = plan_batch(table, others, store)
    plan.columns = fresh if fresh is not None and len(fresh) else None
    return plan


def unchanged_keys(table: Table, fresh: FreshColumns, stored: Sequence[pa.Array]) -> set[bytes]:
    """Keys of fresh rows that are stored exactly as they would be written.

    ``stored`` holds stored rows column by column, as
    :func:`~cdc_platform.destinations.state.decode_row_state` reads them: the key, one state
    column per regular column, the liveness, the row deletion, ``_cdc_ts`` (columns after
    those are ignored); one row per key. Equal state columns (null equal to null) and no row
    deletion mean equal reconciliation state, so the stored row already contains the change.
    Compared column by column with Arrow.
    """
    if not stored or not len(stored[0]) or not len(fresh):
        return set()
    binary = pa.binary()
    n_regular = len(table.regular)
    keys = stored[0].cast(binary)
    at = pc.index_in(keys, value_set=fresh.keys)  # each stored row's fresh row (keys are unique)
    found = at.is_valid()
    at = at.filter(found)

    def same(want: pa.Array, got: pa.Array) -> pa.Array:
        want, got = want.take(at), got.filter(found).cast(want.type)
        equal = pc.fill_null(pc.equal(want, got), False)
        return pc.or_(equal, pc.and_(want.is_null(), got.is_null()))

    ok = stored[2 + n_regular].filter(found).is_null()  # no row deletion
    for j, want in enumerate([*fresh.versions, fresh.liveness]):
        ok = pc.and_(ok, same(want.cast(binary), stored[1 + j]))
    ok = pc.and_(ok, same(fresh.timestamps.cast(pa.int64()), stored[3 + n_regular]))
    return set(keys.filter(found).filter(ok).to_pylist())


def _scatter(rows: pa.Array, n: int) -> pa.Array:
    mask = np.zeros(n, dtype=bool)
    mask[rows.to_numpy(zero_copy_only=False)] = True
    return pa.array(mask)
