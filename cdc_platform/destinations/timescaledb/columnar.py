"""History rows straight from a change batch's Arrow columns (the column-wise twin of ``history_row``).

:func:`~cdc_platform.destinations.timescaledb.sink.history_row` builds one history row per
:class:`~cdc_platform.changes.records.RowChange`: its content hash (the change id), its
``_cdc_values`` document and its typed keys, some tens of microseconds of Python each. Most
changes of a load are ``row`` changes of simple (non-collection) columns; for those the same
values are computed here over whole columns of the staged batch (Arrow compute and numpy):
the change id from the same hashed bytes (:func:`~cdc_platform.changes.identity.change_id`),
the document from the same ``toJson()`` renderings (common scalar types column-wise, the others
value by value with the same renderer), the write time, keys and provenance. Every other change
(partition and range deletions, static rows, collections, values the batch keeps raw, text that
jsonb cannot hold) goes back to the caller for ``history_row``. Tests compare both paths row by
row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cdc_platform.changes.arrow import column_values, field_name
from cdc_platform.changes.records import ChangeKind
from cdc_platform.destinations.columnar import (
    Part,
    column_of,
    fixed_width,
    join,
    null_unless,
    serialized,
    sized,
)
from cdc_platform.destinations.postgres.copy import PG_EPOCH_DAYS
from cdc_platform.destinations.state import encode_key
from cdc_platform.schema.render import quote_json_string
from cdc_platform.schema.types import CqlType, NativeType

if TYPE_CHECKING:
    from cdc_platform.destinations.postgres.copy import ColumnCopy
    from cdc_platform.destinations.timescaledb.sink import HistoryLayout
    from cdc_platform.schema.model import Column

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

    def months(self) -> set[tuple[int, int]]:
        """The (year, month) of every row's ``_cdc_time`` (UTC): the partitions the rows need."""
        since_1970 = np.unique(self.micros.astype("datetime64[us]").astype("datetime64[M]").astype(np.int64))
        return {(1970 + int(m) // 12, int(m) % 12 + 1) for m in since_1970}

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


def _decimal(values: pa.Array) -> pa.Array:
    """Integers as decimal text (null stays null), as ``str(v)`` gives."""
    return _binary(pc.cast(values, pa.string()))


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
        return _decimal(values), everywhere
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


def history_columns(
    layout: HistoryLayout, data: pa.Table, batch: str, copier: ColumnCopy
) -> tuple[HistoryColumns | None, pa.Array]:
    """History rows of the batch's plain ``row`` changes, column-wise.

    Returns:
        The rows (``None`` when the table cannot have any), and a boolean mask of the batch's
        changes left for ``history_row``.
    """
    from cdc_platform.destinations.timescaledb.sink import _MAX_US, _MIN_US
    from cdc_platform.schema.types import native

    table = layout.table
    n = data.num_rows
    if n == 0 or any(c.is_counter for c in table.columns):
        return None, pa.array(np.ones(n, dtype=bool))
    kind = data.column("_cdc_kind").combine_chunks()
    ok = pc.equal(kind, ChangeKind.ROW.value)
    raw = data.column("_cdc_raw").combine_chunks()
    ok = pc.and_(ok, pc.fill_null(pc.equal(pc.list_value_length(raw), 0), True))
    keys = table.partition_key + table.clustering
    for c in keys:
        ok = pc.and_(ok, column_of(data, c.name).is_valid())
    for c in table.static + [c for c in table.regular if c.type.is_multicell]:
        ok = pc.and_(ok, column_of(data, c.name).is_null())
    simple = sorted((c for c in table.regular if not c.type.is_multicell), key=lambda c: c.name)
    ok = pc.fill_null(ok, False)
    rows = data.filter(ok)
    m = rows.num_rows

    def col(name: str) -> pa.Array:
        return rows.column(name).combine_chunks()

    # Cells: presence and the hashed fields of each simple column; then the write time (the
    # greatest stamp), which the document entries leave out where a cell has it.
    stamps = [col("_cdc_liveness_timestamp"), col("_cdc_deletion_timestamp")]
    usable = pa.array(np.ones(m, dtype=bool))
    hashed: list[Part] = []
    cells: list[tuple[Column, pa.Array, pa.Array, pa.Array, pa.Array, pa.Array, pa.Array]] = []
    for c in simple:
        if field_name(c.name) not in rows.column_names:  # added since the batch was staged
            continue
        cell = column_of(rows, c.name)
        present = cell.is_valid()
        if not pc.any(present).as_py():
            continue
        value = pc.struct_field(cell, "value")
        ts = pc.struct_field(cell, "timestamp")
        ttl_text = _decimal(pc.struct_field(cell, "ttl"))
        ldt_text = _decimal(pc.struct_field(cell, "local_deletion_time"))
        deleted = pc.fill_null(pc.struct_field(cell, "deleted"), False)
        stamps.append(ts)
        hashed += _only(
            present,
            encode_key((c.name.encode(),)) + _NULL,  # the column, no path
            sized(serialized(c.type, value)),
            sized(_decimal(ts)),
            _maybe(ttl_text, sized, _NULL),
            _maybe(ldt_text, sized, _NULL),
            _either(deleted, b"\x00\x00\x00\x01d", b"\x00\x00\x00\x01l"),
            b"\x00\x00\x00\x01-",
        )
        cells.append((c, present, value, ts, ttl_text, ldt_text, deleted))
    when = pc.max_element_wise(*stamps, skip_nulls=True)
    usable = pc.and_(usable, when.is_valid())  # no timestamp at all: history_row reports it
    entries: list[Part] = []
    seen = pa.array(np.zeros(m, dtype=bool))  # rows with an entry already: the next needs ", "
    for c, present, value, ts, ttl_text, ldt_text, deleted in cells:
        texts, fine = _json_values(c.type, value)
        usable = pc.and_(usable, pc.or_(pc.invert(present), fine))
        head = (quote_json_string(c.name) + ': {"value": ').encode()
        own_time = null_unless(_decimal(ts), pc.fill_null(pc.not_equal(ts, when), True))
        entries += _only(
            present,
            _either(seen, b", " + head, head),
            pc.fill_null(texts, b"null"),
            _optional(b', "timestamp": ', own_time),
            _optional(b', "ttl": ', ttl_text),
            _optional(b', "local_deletion_time": ', ldt_text),
            _either(deleted, b', "deleted": true}', b"}"),
        )
        seen = pc.or_(seen, present)

    # Keys: each component length-prefixed, as encode_key (and the change id) has them.
    parts = [sized(serialized(c.type, col(field_name(c.name)))) for c in keys]
    n_pk = len(table.partition_key)
    pk = join(parts[:n_pk])
    ck = join(parts[n_pk:]) if len(parts) > n_pk else _const(m, b"")
    ints = [
        col(name)
        for name in (
            "_cdc_liveness_timestamp",
            "_cdc_liveness_ttl",
            "_cdc_liveness_expires",
            "_cdc_deletion_timestamp",
            "_cdc_deletion_time",
        )
    ]
    head = encode_key((table.keyspace.encode(), table.name.encode(), b"row"))
    content = join([head, pk, ck, *[_maybe(_decimal(v), sized, _NULL) for v in ints], _NULL * 2, *hashed])
    ids = _ids(content)

    # Rows kept: usable ones, the first copy of each change (history_row's rows.setdefault).
    fine = usable.to_numpy(zero_copy_only=False)
    first: dict[bytes, int] = {}
    for i, cid in enumerate(ids):
        if fine[i]:
            first.setdefault(cid, i)
    keep = np.fromiter(sorted(first.values()), dtype=np.int64, count=len(first))
    rest = pc.invert(ok).to_numpy(zero_copy_only=False).copy()
    rest[np.flatnonzero(ok.to_numpy(zero_copy_only=False))[~fine]] = True

    micros = np.clip(when.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64), _MIN_US, _MAX_US)
    document = join([b"\x01{", *entries, b"}"]) if entries else _const(m, b"\x01{}")  # jsonb, format 1
    bigint, integer = native("bigint"), native("int")
    columns: list[Any] = [
        fixed_width((micros - _PG_EPOCH_US).astype(">i8").tobytes(), 8, m),  # _cdc_time
        fixed_width(b"".join(ids), 16, m),  # _cdc_change_id
        copier.dump_arrow(bigint, when),  # _cdc_timestamp: exact
        _binary(col("_cdc_op")),
        _const(m, b"row"),
        pk,
        ck,
        *[copier.dump_arrow(c.type, col(field_name(c.name))) for c in keys],
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
    return (out.take(keep) if len(keep) < m else out), pa.array(rest)


_NULL = b"\xff\xff\xff\xff"  # a null field of the hashed content


def _either(mask: pa.Array, yes: bytes, no: bytes) -> Part:
    """``yes`` where ``mask`` is true, else ``no`` (a constant when the mask is)."""
    if not pc.any(mask).as_py():
        return no
    if pc.all(mask).as_py():
        return yes
    return pc.if_else(mask, pa.scalar(yes, pa.binary()), pa.scalar(no, pa.binary()))


def _optional(prefix: bytes, text: pa.Array) -> Part:
    """``prefix`` and the text where the text is not null, nothing where it is."""
    if text.null_count == len(text):
        return b""
    out = join([prefix, text])
    return pc.fill_null(out, b"") if out.null_count else out


def _maybe(values: pa.Array, encode: Any, null: bytes) -> Part:
    """``encode(values)`` (or the values) with ``null`` for nulls; the constant when all are null."""
    if values.null_count == len(values):
        return null
    out = encode(values) if encode is not None else values
    return pc.fill_null(out, null) if out.null_count else out


def _only(present: pa.Array, *parts: Part) -> list[Part]:
    """Parts of a concatenation that are empty where ``present`` is false: the parts themselves
    when it is true everywhere (the caller concatenates them with the rest, copying once),
    else their concatenation, emptied where absent."""
    if pc.all(present).as_py():
        return list(parts)
    return [pc.if_else(present, join(parts), pa.scalar(b"", pa.binary()))]


def _ids(content: pa.Array) -> list[bytes]:
    """Change ids: BLAKE2b-128 of each row's content with the UUID version 5 bits set."""
    blake2b = hashlib.blake2b
    digests = np.frombuffer(
        b"".join([blake2b(b, digest_size=16).digest() for b in content.to_pylist()]), dtype=np.uint8
    ).reshape(-1, 16)
    digests = digests.copy()
    digests[:, 6] = (digests[:, 6] & 0x0F) | 0x50
    digests[:, 8] = (digests[:, 8] & 0x3F) | 0x80
    blob = digests.tobytes()
    return [blob[i : i + 16] for i in range(0, len(blob), 16)]
