"""History rows straight from a change batch's Arrow columns (the column-wise twin of ``history_row``).

:func:`~cdc_platform.destinations.timescaledb.sink.history_row` builds one history row per
:class:`~cdc_platform.changes.records.RowChange`: its content hash (the change id), its
``_cdc_values`` document and its typed keys, some tens of microseconds of Python each. Most
changes of a load are ``row`` changes of simple (non-collection) columns; for those the same
values are computed here over whole columns of the staged batch (Arrow compute and numpy):
the change id (:func:`~cdc_platform.destinations.identity.plain_rows`), the document from the same ``toJson()`` renderings (common scalar types column-wise, the others
value by value with the same renderer), the write time, keys and provenance. Every other change
(partition and range deletions, static rows, collections, values the batch keeps raw, text that
jsonb cannot hold) goes back to the caller for ``history_row``. Tests compare both paths row by
row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cdc_platform.changes.arrow import column_values, field_name
from cdc_platform.destinations.columnar import (
    Part,
    decimal,
    either,
    fixed_width,
    join,
    maybe,
    null_unless,
    only,
)
from cdc_platform.destinations.identity import PlainRows, plain_rows
from cdc_platform.destinations.postgres.copy import PG_EPOCH_DAYS
from cdc_platform.schema.render import quote_json_string
from cdc_platform.schema.types import CqlType, NativeType

if TYPE_CHECKING:
    from cdc_platform.destinations.postgres.copy import ColumnCopy
    from cdc_platform.destinations.timescaledb.sink import HistoryLayout
    from cdc_platform.schema.model import Table

_PG_EPOCH_US = PG_EPOCH_DAYS * 86_400_000_000  # PostgreSQL's epoch in µs since 1970-01-01
_GREGORIAN_CUTOVER_MS = -12_219_292_800_000  # 1582-10-15: numpy's calendar and Java's agree from here
_MAX_TIMESTAMP_MS = 253_402_300_799_999  # 9999-12-31 23:59:59.999
_NEEDS_ESCAPE = r'["\\\x00-\x1f]'  # characters toJson() escapes in a string
_INTS = frozenset({"tinyint", "smallint", "int", "bigint", "varint"})


@dataclass
class HistoryColumns:
    """History rows of a batch, column-wise, one change id each (first copy of the batch kept).

    Attributes:
        ids: the change ids (16 bytes each, as ``uuid.UUID.bytes``).
        micros: each row's write time (µs), clamped as ``_cdc_time`` stores it.
        columns: the binary COPY form of every column of ``HistoryLayout.columns()``, in order.
    """

    ids: list[bytes]
    micros: np.ndarray
    columns: list[Any]

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, rows: Sequence[int] | np.ndarray) -> HistoryColumns:
        """These rows only, in this order."""
        index = np.asarray(rows, dtype=np.int64)
        taken = pa.array(index)
        return HistoryColumns(
            [self.ids[i] for i in index],
            self.micros[index],
            [c.take(taken) if isinstance(c, pa.Array) else [c[i] for i in index] for c in self.columns],
        )


def _binary(values: pa.Array) -> pa.Array:
    return values.cast(pa.binary())


def _const(n: int, value: bytes) -> pa.Array:
    return pa.array([value] * n, pa.binary()) if n else pa.array([], pa.binary())


def _json_values(cql_type: CqlType, values: pa.Array) -> tuple[pa.Array, pa.Array]:
    """``toJson()`` text of each non-null value, and where it is usable (jsonb holds it).

    Common scalar types are rendered column-wise; the others value by value with the renderer
    ``history_row`` uses. Text whose rendering holds an escaped U+0000 is not usable: jsonb
    rejects it and the document keeps the raw bytes instead, which is ``history_row``'s job.
    """
    from cdc_platform.destinations.timescaledb.sink import _safe

    n = len(values)
    name = cql_type.name if isinstance(cql_type, NativeType) else ""
    everywhere = pa.array(np.ones(n, dtype=bool))
    if name in _INTS and pa.types.is_integer(values.type):
        return decimal(values), everywhere
    if name == "boolean":
        return pc.if_else(values, pa.scalar(b"true"), pa.scalar(b"false")), everywhere
    if name in ("ascii", "text"):
        plain = pc.invert(pc.fill_null(pc.match_substring_regex(values, _NEEDS_ESCAPE), False))
        quoted = join([b'"', _binary(values), b'"'])
        if pc.all(plain).as_py() is not False:
            return quoted, everywhere
        texts = quoted.to_pylist()
        ok = plain.to_pylist()
        usable = [True] * n
        for i, v in enumerate(values.to_pylist()):
            if not ok[i] and v is not None:
                text, raw = _safe(cql_type, v)
                texts[i] = text.encode()
                usable[i] = raw is None
        return pa.array(texts, pa.binary()), pa.array(usable, pa.bool_())
    if name == "timestamp":
        ms = values.cast(pa.int64()).fill_null(0).to_numpy()
        if ((ms >= _GREGORIAN_CUTOVER_MS) & (ms <= _MAX_TIMESTAMP_MS)).all():
            # numpy's ISO form, "YYYY-MM-DDTHH:MM:SS.mmm" (23 bytes), with a space for the T.
            text = np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms").astype("S23")
            chars = text.view(np.uint8).reshape(n, 23)
            chars[:, 10] = ord(" ")
            quoted = join([b'"', fixed_width(chars.tobytes(), 23, n), b'Z"'])
            return (null_unless(quoted, values.is_valid()) if values.null_count else quoted), everywhere
    repeated = _repeated(values)
    if repeated is not None:  # each distinct value rendered once
        indices, firsts = repeated
        texts, fine_ones = _json_values(cql_type, values.take(firsts))
        return texts.take(indices), pc.fill_null(fine_ones.take(indices), True)
    rendered: list[bytes | None] = []
    fine: list[bool] = []
    for v in column_values(cql_type, values):
        if v is None:
            rendered.append(None)
            fine.append(True)
            continue
        text, raw = _safe(cql_type, v)
        rendered.append(text.encode())
        fine.append(raw is None)
    return pa.array(rendered, pa.binary()), pa.array(fine, pa.bool_())


def _repeated(values: pa.Array) -> tuple[pa.Array, pa.Array] | None:
    """For a column that repeats values (at most half of them distinct): each value's index
    among the distinct ones (null for null) and each distinct value's first position, equal
    meaning equal bits (``-0.0`` and ``0.0``, or two NaNs, are distinct: Java prints them
    apart); ``None`` when not worth it or the type cannot be dictionary-encoded."""
    if len(values) < 64:
        return None
    bits = values
    if pa.types.is_floating(values.type):
        bits = values.view(pa.int64() if values.type.bit_width == 64 else pa.int32())
    try:
        encoded = bits.dictionary_encode()
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return None
    if 2 * len(encoded.dictionary) > len(values):
        return None
    return encoded.indices, pc.index_in(encoded.dictionary, value_set=bits)


def timed_rows(table: Table, data: pa.Table) -> tuple[PlainRows | None, np.ndarray]:
    """The batch's plain row changes that have a write time (:func:`..identity.plain_rows`), and
    a boolean mask of its other changes (for ``history_row``, which reports a change without
    any timestamp)."""
    plain = plain_rows(table, data)
    if plain is None:
        return None, np.ones(data.num_rows, dtype=bool)
    timed = plain.when.is_valid().to_numpy(zero_copy_only=False)
    if not timed.all():
        plain = plain.take(np.flatnonzero(timed))
    return plain, plain.others()


def write_times(plain: PlainRows) -> np.ndarray:
    """Each row's write time (µs), clamped as ``_cdc_time`` stores it (rows with a time only)."""
    from cdc_platform.destinations.timescaledb.sink import _MAX_US, _MIN_US

    if plain.when.null_count:
        raise ValueError("rows without a write time have no history time: take them from timed_rows")
    return np.clip(plain.when.to_numpy(zero_copy_only=False).astype(np.int64), _MIN_US, _MAX_US)


def months_of(micros: np.ndarray) -> set[tuple[int, int]]:
    """The (year, month) of each time (µs since 1970, UTC): the partitions rows at them need."""
    since_1970 = np.unique(micros.astype("datetime64[us]").astype("datetime64[M]").astype(np.int64))
    return {(1970 + int(m) // 12, int(m) % 12 + 1) for m in since_1970}


def history_columns(
    layout: HistoryLayout, plain: PlainRows, batch: str, copier: ColumnCopy
) -> tuple[HistoryColumns, np.ndarray]:
    """History rows of plain row changes with a write time (:func:`timed_rows`), column-wise.

    Returns:
        The rows, the first copy of each change; and the positions (in ``plain``) of the
        changes left for ``history_row``: those whose document jsonb cannot hold as rendered
        here (text with U+0000, numbers beyond its range, …).
    """
    from cdc_platform.schema.types import native

    table = layout.table
    m = len(plain)
    col = plain.column
    when = plain.when
    usable = pa.array(np.ones(m, dtype=bool))
    # Document entries: each cell's value and what sets it apart from a plain live cell
    # written at the row's write time.
    entries: list[Part] = []
    seen = pa.array(np.zeros(m, dtype=bool))  # rows with an entry already: the next needs ", "
    for x in plain.cells:
        texts, fine = _json_values(x.column.type, x.value)
        usable = pc.and_(usable, pc.or_(pc.invert(x.present), fine))
        head = (quote_json_string(x.column.name) + ': {"value": ').encode()
        own_time = null_unless(decimal(x.timestamp), pc.fill_null(pc.not_equal(x.timestamp, when), True))
        entries += only(
            x.present,
            either(seen, b", " + head, head),
            pc.fill_null(texts, b"null"),
            _optional(b', "timestamp": ', own_time),
            _optional(b', "ttl": ', x.ttl),
            _optional(b', "local_deletion_time": ', x.local_deletion_time),
            either(x.deleted, b', "deleted": true}', b"}"),
        )
        seen = pc.or_(seen, x.present)

    # Rows kept: usable ones, the first copy of each change (history_row's rows.setdefault).
    ids = plain.ids
    fine = usable.to_numpy(zero_copy_only=False)
    first: dict[bytes, int] = {}
    for i, cid in enumerate(ids):
        if fine[i]:
            first.setdefault(cid, i)
    keep = np.fromiter(sorted(first.values()), dtype=np.int64, count=len(first))

    micros = write_times(plain)
    document = join([b"\x01{", *entries, b"}"]) if entries else _const(m, b"\x01{}")  # jsonb, format 1
    bigint, integer = native("bigint"), native("int")
    ints = plain.ints
    columns: list[Any] = [
        pg_times(micros),  # _cdc_time
        fixed_width(b"".join(ids), 16, m),  # _cdc_change_id
        copier.dump_arrow(bigint, when),  # _cdc_timestamp: exact
        _binary(col("_cdc_op")),
        _const(m, b"row"),
        plain.pk,
        plain.ck if isinstance(plain.ck, pa.Array) else _const(m, plain.ck),
        *[copier.dump_arrow(c.type, col(field_name(c.name))) for c in table.partition_key + table.clustering],
        document,
        copier.dump_arrow(bigint, ints[0]),
        copier.dump_arrow(integer, ints[1]),
        *[copier.dump_arrow(bigint, v) for v in ints[2:]],
        pa.nulls(m, pa.binary()),  # _cdc_range
        _binary(col("_cdc_node")),
        *[
            copier.dump_arrow(bigint, col(c))
            for c in ("_cdc_segment_id", "_cdc_position", "_cdc_entry_start")
        ],
        _const(m, batch.encode()) if batch else pa.nulls(m, pa.binary()),
    ]
    out = HistoryColumns(ids, micros, columns)
    return (out.take(keep) if len(keep) < m else out), np.flatnonzero(~fine)


def pg_times(micros: np.ndarray) -> pa.Array:
    """Binary COPY values of ``timestamptz`` for times in µs since 1970 (in PostgreSQL's range)."""
    return fixed_width((micros - _PG_EPOCH_US).astype(">i8").tobytes(), 8, len(micros))


def _optional(prefix: bytes, text: pa.Array) -> Part:
    """``prefix`` and the text where the text is not null, nothing where it is."""
    return maybe(text, lambda t: join([prefix, t]), b"")
