"""Decoding of serialized mutations (messaging versions 10–13) into :mod:`.model` objects.

The wire format (``Mutation``/``PartitionUpdate``/``UnfilteredSerializer``/``Cell``
serializers) carries no types: every length and value is interpreted through the table
schema found by the table id that starts each partition update.

This is the hot path of the reader, written for speed: one pass over the bytes with
local variables, the single-byte VInt case inlined.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from cdc_platform.commitlog.errors import MutationDecodeError, UnknownColumnError
from cdc_platform.commitlog.model import (
    INT64_MIN,
    MARKER_KINDS,
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
from cdc_platform.commitlog.vint import VIntError, read_uvint
from cdc_platform.schema.model import Column, DroppedColumn, Schema, Table

TIMESTAMP_EPOCH = 1_442_880_000_000_000  # µs, 2015-09-22 00:00:00Z (EncodingStats)
DELETION_TIME_EPOCH = 1_442_880_000  # s
TTL_EPOCH = 0

# PartitionUpdate flags (UnfilteredRowIteratorSerializer)
PU_IS_EMPTY = 0x01
PU_IS_REVERSED = 0x02
PU_HAS_PARTITION_DELETION = 0x04
PU_HAS_STATIC_ROW = 0x08
PU_HAS_ROW_ESTIMATE = 0x10

# Unfiltered flags (UnfilteredSerializer)
END_OF_PARTITION = 0x01
IS_MARKER = 0x02
HAS_TIMESTAMP = 0x04
HAS_TTL = 0x08
HAS_DELETION = 0x10
HAS_ALL_COLUMNS = 0x20
HAS_COMPLEX_DELETION = 0x40
EXTENSION_FLAG = 0x80
EXT_IS_STATIC = 0x01
EXT_HAS_SHADOWABLE_DELETION = 0x02

# Cell flags (Cell.Serializer)
CELL_IS_DELETED = 0x01
CELL_IS_EXPIRING = 0x02
CELL_HAS_EMPTY_VALUE = 0x04
CELL_USE_ROW_TIMESTAMP = 0x08
CELL_USE_ROW_TTL = 0x10

_INT64_MAX = (1 << 63) - 1
_TWO64 = 1 << 64
_U16 = struct.Struct(">H")


class UnknownTableError(Exception):
    """The entry names a table id that is not in the schema (Cassandra skips and counts it)."""

    def __init__(self, table_id: uuid.UUID) -> None:
        super().__init__(f"unknown table id {table_id}")
        self.table_id = table_id


@dataclass(frozen=True)
class _ColumnCodec:
    """What the decoder needs to know about one column named in a serialization header."""

    column: Column
    complex: bool
    fixed: int | None
    dropped_time: int | None  # µs; cells at or before it are discarded


class _TableCodec:
    """Per-table lookups, built once per table."""

    __slots__ = ("clustering_fixed", "columns", "headers", "n_clustering", "table")

    def __init__(self, table: Table) -> None:
        self.table = table
        self.clustering_fixed = tuple(c.type.fixed_length for c in table.clustering)
        self.n_clustering = len(table.clustering)
        self.columns: dict[bytes, _ColumnCodec] = {}
        # Recently seen serialization-header column lists (raw bytes → resolved columns):
        # mutations of one table mostly repeat a few shapes.
        self.headers: list[tuple[bytes, list[_ColumnCodec], tuple[Column, ...]]] = []

    def column(self, name: bytes) -> _ColumnCodec:
        codec = self.columns.get(name)
        if codec is not None:
            return codec
        table = self.table
        dropped: DroppedColumn | None = table.dropped_by_name_bytes.get(name)
        column = table.by_name_bytes.get(name)
        if column is None:
            if dropped is None:
                shown = name.decode("utf-8", "backslashreplace")
                raise UnknownColumnError(
                    f"mutation names column {shown!r}, which the schema of {table.qualified_name} does not "
                    "know (neither current nor dropped); the schema is older than the data: refresh it "
                    "(cdc-platform schema pull) and read the segment again from this position",
                    table=table.qualified_name,
                )
            if not dropped.type_known:
                raise MutationDecodeError(
                    f"mutation holds cells of dropped column {dropped.name!r} of {table.qualified_name}, "
                    "whose type the schema does not record; use a schema printed by DESCRIBE … WITH INTERNALS "
                    "(Cassandra 4.0+) or cdc-platform schema pull",
                    table=table.qualified_name,
                )
            column = dropped.as_column()
        codec = _ColumnCodec(
            column=column,
            complex=column.type.is_multicell,
            fixed=None if column.type.is_multicell else column.type.fixed_length,
            dropped_time=dropped.dropped_time if dropped is not None else None,
        )
        self.columns[name] = codec
        return codec


class MutationDecoder:
    """Decodes mutation payloads of one segment.

    Args:
        schema: the tables; entries are resolved by table id.
        commitlog_version: 6, 7 or 8; version 8 reads local deletion times as unsigned.
    """

    def __init__(self, schema: Schema, commitlog_version: int) -> None:
        self._tables: dict[bytes, Table] = {t.id.bytes: t for t in schema.tables}
        self._codecs: dict[bytes, _TableCodec] = {}
        self._unsigned_ldt = commitlog_version >= 8

    def table_ids(self, payload: bytes) -> tuple[int, bytes]:
        """The number of partition updates and the first table id, without decoding.

        Raises:
            MutationDecodeError: the payload is too short to hold them.
        """
        try:
            count, pos = read_uvint(payload, 0)
        except VIntError:
            raise MutationDecodeError("mutation is truncated before its first table id") from None
        if pos + 16 > len(payload):
            raise MutationDecodeError("mutation is truncated before its first table id")
        return count, payload[pos : pos + 16]

    def known(self, table_id: bytes) -> bool:
        return table_id in self._tables

    def decode(self, payload: bytes) -> Mutation:
        """Decodes one mutation.

        Raises:
            UnknownTableError: a partition update names a table id not in the schema.
            UnknownColumnError: a column is neither current nor dropped.
            MutationDecodeError: the bytes do not decode with the schema (truncated values,
                impossible flags, trailing bytes).
        """
        table: Table | None = None
        try:
            count, pos = read_uvint(payload, 0)
            if count <= 0:
                raise MutationDecodeError(f"mutation declares {count} partition updates")
            updates = []
            for _ in range(count):
                tid = payload[pos : pos + 16]
                pos += 16
                table = self._tables.get(tid)
                if table is None:
                    if len(tid) < 16:
                        raise MutationDecodeError("mutation is truncated inside a table id")
                    raise UnknownTableError(uuid.UUID(bytes=tid))
                codec = self._codecs.get(tid)
                if codec is None:
                    codec = self._codecs[tid] = _TableCodec(table)
                update, pos = self._partition_update(payload, pos, codec)
                updates.append(update)
            if pos != len(payload):
                raise MutationDecodeError(
                    f"{len(payload) - pos} bytes left after the last partition update: the schema does "
                    "not match the data"
                )
            return Mutation(tuple(updates))
        except MutationDecodeError as exc:
            if exc.table is None and table is not None:
                exc.table = table.qualified_name
                exc.args = (exc._render(),)
            raise
        except (IndexError, VIntError, struct.error, ValueError) as exc:
            where = f" of {table.qualified_name}" if table is not None else ""
            raise MutationDecodeError(
                f"mutation{where} does not decode with the schema ({type(exc).__name__}: {exc}); the "
                "bytes are truncated or the table's schema differs from the one that wrote them",
                table=table.qualified_name if table is not None else None,
            ) from exc

    # ------------------------------------------------------------------------------------

    def _partition_update(self, d: bytes, pos: int, codec: _TableCodec) -> tuple[PartitionUpdate, int]:
        table = codec.table
        n = len(d)
        klen = d[pos]
        if klen < 0x80:  # one-byte VInt (inlined: the common case)
            pos += 1
        else:
            klen, pos = read_uvint(d, pos)
        key = d[pos : pos + klen]
        pos += klen
        flags = d[pos]
        pos += 1
        if pos > n:
            raise MutationDecodeError("partition update is truncated inside its key")
        if flags & PU_IS_EMPTY:
            return PartitionUpdate(table=table, key=key, is_empty=True), pos
        if flags & PU_IS_REVERSED:
            raise MutationDecodeError(f"partition update flags {flags:#04x} claim reversed order")

        # EncodingStats
        raw, pos = read_uvint(d, pos)
        min_ts = raw + TIMESTAMP_EPOCH
        if min_ts > _INT64_MAX:
            min_ts -= _TWO64
        raw = d[pos]
        if raw < 0x80:
            pos += 1
        else:
            raw, pos = read_uvint(d, pos)
        min_ldt = (raw + DELETION_TIME_EPOCH) & 0xFFFFFFFF
        raw = d[pos]
        if raw < 0x80:
            pos += 1
        else:
            raw, pos = read_uvint(d, pos)
        min_ttl = (raw + TTL_EPOCH) & 0xFFFFFFFF

        statics: list[_ColumnCodec] = []
        static_columns: tuple[Column, ...] = ()
        if flags & PU_HAS_STATIC_ROW:
            statics, static_columns, pos = self._columns(d, pos, codec)
        regulars, regular_columns, pos = self._columns(d, pos, codec)

        st = _Stats(min_ts, min_ldt, min_ttl, self._unsigned_ldt)
        partition_deletion = None
        if flags & PU_HAS_PARTITION_DELETION:
            partition_deletion, pos = st.deletion(d, pos)

        static_row = None
        if flags & PU_HAS_STATIC_ROW:
            rflags = d[pos]
            pos += 1
            if not rflags & EXTENSION_FLAG or rflags & (END_OF_PARTITION | IS_MARKER):
                raise MutationDecodeError(f"static row flags {rflags:#04x} lack the extension flag")
            ext = d[pos]
            pos += 1
            if not ext & EXT_IS_STATIC:
                raise MutationDecodeError(f"static row extended flags {ext:#04x} lack IS_STATIC")
            static_row, pos = self._row_body(d, pos, rflags, ext, (), statics, st)
            if static_row.is_empty:
                static_row = None

        if flags & PU_HAS_ROW_ESTIMATE:
            _, pos = read_uvint(d, pos)

        unfiltereds: list[Row | RangeTombstoneMarker] = []
        n_clust = codec.n_clustering
        cfixed = codec.clustering_fixed
        while True:
            uflags = d[pos]
            pos += 1
            if uflags & END_OF_PARTITION:
                break
            ext = 0
            if uflags & EXTENSION_FLAG:
                ext = d[pos]
                pos += 1
            if uflags & IS_MARKER:
                kind_byte = d[pos]
                pos += 1
                try:
                    kind = BoundKind(kind_byte)
                except ValueError:
                    raise MutationDecodeError(f"range tombstone marker kind {kind_byte} is unknown") from None
                if kind not in MARKER_KINDS:
                    raise MutationDecodeError(f"range tombstone marker has kind {kind.name}")
                (size,) = _U16.unpack_from(d, pos)
                pos += 2
                if size > n_clust:
                    raise MutationDecodeError(
                        f"range tombstone bound has {size} values, the table has {n_clust} clustering columns"
                    )
                values, pos = _clustering(d, pos, size, cfixed)
                first, pos = st.deletion(d, pos)
                found = [first]
                if kind.is_boundary:
                    second, pos = st.deletion(d, pos)
                    found.append(second)
                deletions = tuple(x for x in found if x is not None)
                if len(deletions) != len(found):
                    raise MutationDecodeError("range tombstone marker carries a live deletion time")
                unfiltereds.append(RangeTombstoneMarker(kind, values, deletions))
            else:
                if ext & EXT_IS_STATIC:
                    raise MutationDecodeError(
                        f"row flags {uflags:#04x}/{ext:#04x} mark a static row in the body"
                    )
                clustering, pos = _clustering(d, pos, n_clust, cfixed) if n_clust else ((), pos)
                row, pos = self._row_body(d, pos, uflags, ext, clustering, regulars, st)
                if not row.is_empty:  # rows holding only dropped-column data vanish, as in Cassandra
                    unfiltereds.append(row)
            if pos > n:
                raise MutationDecodeError("partition update is truncated")
        if pos > n:
            raise MutationDecodeError("partition update is truncated")
        return (
            PartitionUpdate(
                table=table,
                key=key,
                partition_deletion=partition_deletion,
                static_row=static_row,
                unfiltereds=tuple(unfiltereds),
                header=(static_columns, regular_columns),
            ),
            pos,
        )

    def _columns(
        self, d: bytes, pos: int, codec: _TableCodec
    ) -> tuple[list[_ColumnCodec], tuple[Column, ...], int]:
        for raw, cached, columns in codec.headers:
            if d.startswith(raw, pos):
                return cached, columns, pos + len(raw)
        start = pos
        count, pos = read_uvint(d, pos)
        out = []
        for _ in range(count):
            b = d[pos]
            if b < 0x80:
                size = b
                pos += 1
            else:
                size, pos = read_uvint(d, pos)
            name = d[pos : pos + size]
            pos += size
            out.append(codec.column(name))
        if pos > len(d):
            raise MutationDecodeError("serialization header is truncated")
        columns = tuple(c.column for c in out)
        codec.headers.insert(0, (d[start:pos], out, columns))
        del codec.headers[8:]
        return out, columns, pos

    def _row_body(
        self,
        d: bytes,
        pos: int,
        flags: int,
        ext: int,
        clustering: tuple[bytes | None, ...],
        header: list[_ColumnCodec],
        st: _Stats,
    ) -> tuple[Row, int]:
        liveness = None
        row_ts = INT64_MIN
        row_ttl = 0
        row_ldt: int | None = None
        if flags & HAS_TIMESTAMP:
            row_ts, pos = st.timestamp(d, pos)
            if flags & HAS_TTL:
                row_ttl, pos = st.ttl(d, pos)
                row_ldt, pos = st.ldt(d, pos)
            liveness = Liveness(row_ts, row_ttl, row_ldt)
        # A TTL flag without a timestamp flag is ignored, as UnfilteredSerializer does: the TTL
        # and expiry are only read after a row timestamp.
        deletion = None
        if flags & HAS_DELETION:
            deletion, pos = st.deletion(d, pos)
        if flags & HAS_ALL_COLUMNS:
            present = header
        else:
            present, pos = _subset(d, pos, header)
        has_complex_deletion = flags & HAS_COMPLEX_DELETION
        data: list[Cell | ComplexColumn] = []
        n = len(d)
        for cc in present:
            if not cc.complex:
                cell, pos = _cell(d, pos, cc, st, row_ts, row_ttl, row_ldt)
                if cc.dropped_time is None or cell.timestamp > cc.dropped_time:
                    data.append(cell)
                continue
            cdel = None
            if has_complex_deletion:
                cdel, pos = st.deletion(d, pos)
                if cdel is not None and cc.dropped_time is not None and cdel.timestamp <= cc.dropped_time:
                    cdel = None
            b = d[pos]
            if b < 0x80:
                count = b
                pos += 1
            else:
                count, pos = read_uvint(d, pos)
            cells = []
            for _ in range(count):
                cell, pos = _cell(d, pos, cc, st, row_ts, row_ttl, row_ldt)
                if cc.dropped_time is None or cell.timestamp > cc.dropped_time:
                    cells.append(cell)
                if pos > n:
                    raise MutationDecodeError("complex column is truncated")
            if cells or cdel is not None:
                data.append(ComplexColumn(cc.column, cdel, tuple(cells)))
        if pos > n:
            raise MutationDecodeError("row is truncated")
        return (
            Row(
                clustering=clustering,
                liveness=liveness,
                deletion=deletion,
                data=tuple(data),
                is_static=bool(ext & EXT_IS_STATIC),
                shadowable=bool(ext & EXT_HAS_SHADOWABLE_DELETION),
            ),
            pos,
        )


class _Stats:
    """The ``EncodingStats`` of one partition update: delta bases for times."""

    __slots__ = ("min_ldt", "min_ts", "min_ttl", "unsigned")

    def __init__(self, min_ts: int, min_ldt: int, min_ttl: int, unsigned: bool) -> None:
        self.min_ts = min_ts
        self.min_ldt = min_ldt
        self.min_ttl = min_ttl
        self.unsigned = unsigned

    def timestamp(self, d: bytes, pos: int) -> tuple[int, int]:
        b = d[pos]
        if b < 0x80:
            raw = b
            pos += 1
        else:
            raw, pos = read_uvint(d, pos)
        ts = raw + self.min_ts
        if ts > _INT64_MAX:
            ts -= _TWO64
        return ts, pos

    def ldt(self, d: bytes, pos: int) -> tuple[int, int]:
        b = d[pos]
        if b < 0x80:
            raw = b
            pos += 1
        else:
            raw, pos = read_uvint(d, pos)
        v = (raw + self.min_ldt) & 0xFFFFFFFF
        if not self.unsigned and v & 0x80000000:
            v -= 0x100000000
        return v, pos

    def ttl(self, d: bytes, pos: int) -> tuple[int, int]:
        b = d[pos]
        if b < 0x80:
            raw = b
            pos += 1
        else:
            raw, pos = read_uvint(d, pos)
        v = (raw + self.min_ttl) & 0xFFFFFFFF
        if v & 0x80000000:
            v -= 0x100000000
        return v, pos

    def deletion(self, d: bytes, pos: int) -> tuple[DeletionTime | None, int]:
        """Reads a DeletionTime; ``None`` for the live deletion (``markedForDeleteAt == MIN``)."""
        ts, pos = self.timestamp(d, pos)
        ldt, pos = self.ldt(d, pos)
        if ts == INT64_MIN:
            return None, pos
        return DeletionTime(ts, ldt), pos


def _cell(
    d: bytes,
    pos: int,
    cc: _ColumnCodec,
    st: _Stats,
    row_ts: int,
    row_ttl: int,
    row_ldt: int | None,
) -> tuple[Cell, int]:
    flags = d[pos]
    pos += 1
    if flags & CELL_USE_ROW_TIMESTAMP:
        ts = row_ts
    else:
        b = d[pos]
        if b < 0x80:
            raw = b
            pos += 1
        else:
            raw, pos = read_uvint(d, pos)
        ts = raw + st.min_ts
        if ts > _INT64_MAX:
            ts -= _TWO64
    ldt: int | None
    if flags & CELL_USE_ROW_TTL:
        ttl = row_ttl
        ldt = row_ldt
    else:
        ldt = None
        ttl = 0
        if flags & (CELL_IS_DELETED | CELL_IS_EXPIRING):
            ldt, pos = st.ldt(d, pos)
        if flags & CELL_IS_EXPIRING:
            ttl, pos = st.ttl(d, pos)
    path = None
    if cc.complex:
        b = d[pos]
        if b < 0x80:
            size = b
            pos += 1
        else:
            size, pos = read_uvint(d, pos)
        path = d[pos : pos + size]
        pos += size
    if flags & CELL_HAS_EMPTY_VALUE:
        value = b""
    else:
        fixed = cc.fixed
        if fixed is not None:
            size = fixed
        else:
            b = d[pos]
            if b < 0x80:
                size = b
                pos += 1
            else:
                size, pos = read_uvint(d, pos)
        value = d[pos : pos + size]
        pos += size
        if pos > len(d):
            raise MutationDecodeError(f"value of column {cc.column.name!r} is truncated")
    return Cell(cc.column, ts, value, ttl, ldt, path), pos


def _clustering(
    d: bytes, pos: int, size: int, fixed: tuple[int | None, ...]
) -> tuple[tuple[bytes | None, ...], int]:
    values: list[bytes | None] = []
    i = 0
    while i < size:
        b = d[pos]
        if b < 0x80:
            header = b
            pos += 1
        else:
            header, pos = read_uvint(d, pos)
        limit = min(size, i + 32)
        while i < limit:
            shift = (i & 31) * 2
            if header >> (shift + 1) & 1:
                values.append(None)
            elif header >> shift & 1:
                values.append(b"")
            else:
                length = fixed[i]
                if length is None:
                    b = d[pos]
                    if b < 0x80:
                        length = b
                        pos += 1
                    else:
                        length, pos = read_uvint(d, pos)
                values.append(d[pos : pos + length])
                pos += length
            i += 1
    if pos > len(d):
        raise MutationDecodeError("clustering prefix is truncated")
    return tuple(values), pos


def _subset(d: bytes, pos: int, header: list[_ColumnCodec]) -> tuple[list[_ColumnCodec], int]:
    """``Columns.deserializeSubset``: bitmap of missing columns below 64, index lists above."""
    encoded, pos = read_uvint(d, pos)
    total = len(header)
    if encoded == 0:
        return header, pos
    if total < 64:
        if encoded >> total:
            raise MutationDecodeError(f"column subset bitmap {encoded:#x} has bits beyond {total} columns")
        return [c for i, c in enumerate(header) if not encoded >> i & 1], pos
    missing_count = encoded
    present_count = total - missing_count
    if present_count < 0:
        raise MutationDecodeError(f"column subset says {missing_count} of {total} columns are missing")
    if present_count < total // 2:
        out = []
        for _ in range(present_count):
            idx, pos = read_uvint(d, pos)
            if idx >= total:
                raise MutationDecodeError(f"column subset index {idx} is beyond {total} columns")
            out.append(header[idx])
        return out, pos
    missing = set()
    for _ in range(missing_count):
        idx, pos = read_uvint(d, pos)
        if idx >= total:
            raise MutationDecodeError(f"column subset index {idx} is beyond {total} columns")
        missing.add(idx)
    return [c for i, c in enumerate(header) if i not in missing], pos


def tables_of(mutation: Mutation) -> Iterable[Table]:
    return (u.table for u in mutation.updates)
