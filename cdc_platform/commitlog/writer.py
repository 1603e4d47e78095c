"""Writing commit log segments the way Cassandra does (a test and demo tool).

:class:`MutationEncoder` serializes :mod:`.model` objects with Cassandra's choices
(``EncodingStats`` minima, column order, ``USE_ROW_TIMESTAMP``/``USE_ROW_TTL``,
``HAS_ALL_COLUMNS`` and subset encodings). :class:`SegmentWriter` lays entries out in
sync sections — plain (pre-sized, zero-filled like an mmap segment), compressed or
encrypted — and maintains the ``_cdc.idx`` file as Cassandra's ``sync()`` does.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

from cdc_platform.commitlog.cdc_index import write_cdc_index
from cdc_platform.commitlog.compression import CLASS_NAMES, compress
from cdc_platform.commitlog.descriptor import (
    VERSION_40,
    VERSION_50,
    SegmentName,
    encode_descriptor,
    sync_marker_crc,
)
from cdc_platform.commitlog.encryption import DEFAULT_CHUNK_LENGTH, encrypt_section
from cdc_platform.commitlog.model import (
    BoundKind,
    Cell,
    ComplexColumn,
    DeletionTime,
    Mutation,
    PartitionUpdate,
    RangeTombstoneMarker,
    Row,
)
from cdc_platform.commitlog.mutation import (
    CELL_HAS_EMPTY_VALUE,
    CELL_IS_DELETED,
    CELL_IS_EXPIRING,
    CELL_USE_ROW_TIMESTAMP,
    CELL_USE_ROW_TTL,
    DELETION_TIME_EPOCH,
    END_OF_PARTITION,
    EXT_HAS_SHADOWABLE_DELETION,
    EXT_IS_STATIC,
    EXTENSION_FLAG,
    HAS_ALL_COLUMNS,
    HAS_COMPLEX_DELETION,
    HAS_DELETION,
    HAS_TIMESTAMP,
    HAS_TTL,
    IS_MARKER,
    PU_HAS_PARTITION_DELETION,
    PU_HAS_ROW_ESTIMATE,
    PU_HAS_STATIC_ROW,
    PU_IS_EMPTY,
    TIMESTAMP_EPOCH,
    TTL_EPOCH,
)
from cdc_platform.commitlog.vint import encode_uvint, to_int32
from cdc_platform.schema.model import Column

INT64_MIN = -(1 << 63)
NO_DELETION_TIME_SIGNED = 0x7FFFFFFF
NO_DELETION_TIME_UNSIGNED = 0xFFFFFFFF
SYNC_MARKER_SIZE = 8
DEFAULT_SEGMENT_SIZE = 32 * 1024 * 1024


def column_sort_key(column: Column) -> tuple[bool, bytes, bytes]:
    """Cassandra's column order (``ColumnMetadata.compareTo``) for columns of one kind.

    Simple before complex; then the first six name bytes with the top bit of the first byte
    flipped (``comparisonOrder`` packs ``prefixComparison >>> 16`` and compares unsigned, so
    names starting with a byte ≥ 0x80 sort first); then the name bytes.
    """
    name = column.name_bytes
    prefix = (name + b"\x00" * 6)[:6]
    prefix = bytes((prefix[0] ^ 0x80,)) + prefix[1:]
    return (column.type.is_multicell, prefix, name)


class _Stats:
    """``EncodingStats.Collector`` over one partition update."""

    def __init__(self) -> None:
        self.ts: int | None = None
        self.ldt: int | None = None
        self.ttl: int | None = None

    def timestamp(self, v: int) -> None:
        self.ts = v if self.ts is None else min(self.ts, v)

    def local_deletion_time(self, v: int) -> None:
        self.ldt = v if self.ldt is None else min(self.ldt, v)

    def time_to_live(self, v: int) -> None:
        self.ttl = v if self.ttl is None else min(self.ttl, v)

    def deletion(self, d: DeletionTime | None) -> None:
        if d is not None:
            self.timestamp(d.timestamp)
            self.local_deletion_time(d.local_deletion_time)

    def cell(self, c: Cell) -> None:
        self.timestamp(c.timestamp)
        if c.ttl:
            self.time_to_live(c.ttl)
        if c.local_deletion_time is not None:
            self.local_deletion_time(c.local_deletion_time)

    def row(self, r: Row) -> None:
        if r.liveness is not None:
            self.timestamp(r.liveness.timestamp)
            if r.liveness.ttl:
                self.time_to_live(r.liveness.ttl)
                if r.liveness.local_expiration_time is not None:
                    self.local_deletion_time(r.liveness.local_expiration_time)
        self.deletion(r.deletion)
        for d in r.data:
            if isinstance(d, ComplexColumn):
                self.deletion(d.deletion)
                for c in d.cells:
                    self.cell(c)
            else:
                self.cell(d)


class MutationEncoder:
    """Serializes mutations for a commit log version (6, 7 or 8)."""

    def __init__(self, commitlog_version: int = VERSION_40) -> None:
        self.version = commitlog_version
        self._no_ldt = (
            NO_DELETION_TIME_UNSIGNED if commitlog_version >= VERSION_50 else NO_DELETION_TIME_SIGNED
        )

    def encode(self, mutation: Mutation) -> bytes:
        """The serialized mutation (the payload of a commit log entry)."""
        if not mutation.updates:
            raise ValueError("a mutation needs at least one partition update")
        keyspaces = {u.table.keyspace for u in mutation.updates}
        keys = {u.key for u in mutation.updates}
        if len(keyspaces) != 1 or len(keys) != 1:
            raise ValueError("all partition updates of a mutation share one keyspace and one partition key")
        out = bytearray(encode_uvint(len(mutation.updates)))
        for update in mutation.updates:
            out += self._partition_update(update)
        return bytes(out)

    def _partition_update(self, u: PartitionUpdate) -> bytes:
        out = bytearray(u.table.id.bytes)
        out += encode_uvint(len(u.key)) + u.key
        if u.is_empty:
            out.append(PU_IS_EMPTY)
            return bytes(out)
        stats = _Stats()
        stats.deletion(u.partition_deletion)
        if u.static_row is not None:
            stats.row(u.static_row)
        rows = []
        regular_cols: dict[str, Column] = {}
        for unf in u.unfiltereds:
            if isinstance(unf, Row):
                rows.append(unf)
                stats.row(unf)
                for d in unf.data:
                    regular_cols[d.column.name] = d.column
            else:
                for dt in unf.deletions:
                    stats.deletion(dt)
        static_cols: dict[str, Column] = {}
        if u.static_row is not None:
            for d in u.static_row.data:
                static_cols[d.column.name] = d.column
        min_ts = stats.ts if stats.ts is not None else TIMESTAMP_EPOCH
        min_ldt = stats.ldt if stats.ldt is not None else DELETION_TIME_EPOCH
        min_ttl = stats.ttl if stats.ttl is not None else TTL_EPOCH
        flags = PU_HAS_ROW_ESTIMATE
        if u.partition_deletion is not None:
            flags |= PU_HAS_PARTITION_DELETION
        if u.static_row is not None:
            flags |= PU_HAS_STATIC_ROW
        out.append(flags)
        out += encode_uvint(min_ts - TIMESTAMP_EPOCH)
        out += encode_uvint(to_int32(min_ldt - DELETION_TIME_EPOCH))
        out += encode_uvint(to_int32(min_ttl - TTL_EPOCH))
        statics = sorted(static_cols.values(), key=column_sort_key)
        regulars = sorted(regular_cols.values(), key=column_sort_key)
        if u.header is not None:
            # The statement's columns as Cassandra wrote them (a superset of what the rows hold).
            h_static, h_regular = u.header
            missing = {c.name for c in statics} - {c.name for c in h_static} | (
                {c.name for c in regulars} - {c.name for c in h_regular}
            )
            if missing:
                raise ValueError(f"partition update header lacks columns its rows use: {sorted(missing)}")
            statics, regulars = list(h_static), list(h_regular)
        if u.static_row is not None:
            out += self._columns(statics)
        out += self._columns(regulars)
        w = _DeltaWriter(min_ts, min_ldt, min_ttl, self._no_ldt)
        if u.partition_deletion is not None:
            out += w.deletion(u.partition_deletion)
        if u.static_row is not None:
            out += self._row(u.static_row, statics, w, u.table.clustering)
        out += encode_uvint(len(rows))
        for unf in u.unfiltereds:
            if isinstance(unf, Row):
                out += self._row(unf, regulars, w, u.table.clustering)
            else:
                out += self._marker(unf, w, u.table.clustering)
        out.append(END_OF_PARTITION)
        return bytes(out)

    @staticmethod
    def _columns(columns: list[Column]) -> bytes:
        out = bytearray(encode_uvint(len(columns)))
        for c in columns:
            out += encode_uvint(len(c.name_bytes)) + c.name_bytes
        return bytes(out)

    def _row(self, row: Row, header: list[Column], w: _DeltaWriter, clustering: list[Column]) -> bytes:
        present = {d.column.name for d in row.data}
        ordered = [c for c in header if c.name in present]
        by_name = {d.column.name: d for d in row.data}
        has_complex_deletion = any(isinstance(d, ComplexColumn) and d.deletion is not None for d in row.data)
        flags = 0
        ext = 0
        if row.is_static:
            ext |= EXT_IS_STATIC
        if row.liveness is not None:
            flags |= HAS_TIMESTAMP
            if row.liveness.ttl:
                flags |= HAS_TTL
        if row.deletion is not None:
            flags |= HAS_DELETION
            if row.shadowable:
                ext |= EXT_HAS_SHADOWABLE_DELETION
        if has_complex_deletion:
            flags |= HAS_COMPLEX_DELETION
        if len(ordered) == len(header):
            flags |= HAS_ALL_COLUMNS
        if ext:
            flags |= EXTENSION_FLAG
        out = bytearray((flags,))
        if ext:
            out.append(ext)
        if not row.is_static:
            out += encode_clustering(row.clustering, [c.type.fixed_length for c in clustering])
        lv = row.liveness
        if lv is not None:
            out += w.timestamp(lv.timestamp)
            if lv.ttl:
                out += w.ttl(lv.ttl)
                out += w.ldt(
                    lv.local_expiration_time if lv.local_expiration_time is not None else self._no_ldt
                )
        if row.deletion is not None:
            out += w.deletion(row.deletion)
        if not flags & HAS_ALL_COLUMNS:
            out += encode_subset([header.index(c) for c in ordered], len(header))
        for c in ordered:
            d = by_name[c.name]
            if isinstance(d, ComplexColumn):
                if has_complex_deletion:
                    out += w.deletion(d.deletion) if d.deletion is not None else w.live_deletion()
                out += encode_uvint(len(d.cells))
                for cell in d.cells:
                    out += self._cell(cell, row, w, complex_column=True)
            else:
                out += self._cell(d, row, w, complex_column=False)
        return bytes(out)

    def _cell(self, cell: Cell, row: Row, w: _DeltaWriter, *, complex_column: bool) -> bytes:
        lv = row.liveness
        is_deleted = cell.is_tombstone
        is_expiring = cell.is_expiring
        use_row_ts = lv is not None and cell.timestamp == lv.timestamp
        use_row_ttl = (
            is_expiring
            and lv is not None
            and lv.ttl != 0
            and cell.ttl == lv.ttl
            and cell.local_deletion_time == lv.local_expiration_time
        )
        flags = 0
        if not cell.value:
            flags |= CELL_HAS_EMPTY_VALUE
        if is_deleted:
            flags |= CELL_IS_DELETED
        elif is_expiring:
            flags |= CELL_IS_EXPIRING
        if use_row_ts:
            flags |= CELL_USE_ROW_TIMESTAMP
        if use_row_ttl:
            flags |= CELL_USE_ROW_TTL
        out = bytearray((flags,))
        if not use_row_ts:
            out += w.timestamp(cell.timestamp)
        if (is_deleted or is_expiring) and not use_row_ttl:
            assert cell.local_deletion_time is not None
            out += w.ldt(cell.local_deletion_time)
        if is_expiring and not use_row_ttl:
            out += w.ttl(cell.ttl)
        if complex_column:
            path = cell.path or b""
            out += encode_uvint(len(path)) + path
        if cell.value:
            fixed = None if complex_column else cell.column.type.fixed_length
            if fixed is not None:
                if len(cell.value) != fixed:
                    raise ValueError(
                        f"value of {cell.column.name!r} is {len(cell.value)} bytes; its type needs {fixed}"
                    )
                out += cell.value
            else:
                out += encode_uvint(len(cell.value)) + cell.value
        return bytes(out)

    def _marker(self, m: RangeTombstoneMarker, w: _DeltaWriter, clustering: list[Column]) -> bytes:
        out = bytearray((IS_MARKER, int(m.kind)))
        out += struct.pack(">H", len(m.values))
        out += encode_clustering(m.values, [c.type.fixed_length for c in clustering[: len(m.values)]])
        expected = 2 if m.kind.is_boundary else 1
        if len(m.deletions) != expected:
            raise ValueError(f"a {m.kind.name} marker carries {expected} deletion time(s)")
        for d in m.deletions:
            out += w.deletion(d)
        return bytes(out)


class _DeltaWriter:
    def __init__(self, min_ts: int, min_ldt: int, min_ttl: int, no_ldt: int) -> None:
        self.min_ts = min_ts
        self.min_ldt = min_ldt
        self.min_ttl = min_ttl
        self.no_ldt = no_ldt

    def timestamp(self, ts: int) -> bytes:
        return encode_uvint(ts - self.min_ts)

    def ldt(self, ldt: int) -> bytes:
        return encode_uvint(to_int32(ldt - self.min_ldt))

    def ttl(self, ttl: int) -> bytes:
        return encode_uvint(to_int32(ttl - self.min_ttl))

    def deletion(self, d: DeletionTime) -> bytes:
        return self.timestamp(d.timestamp) + self.ldt(d.local_deletion_time)

    def live_deletion(self) -> bytes:
        return self.timestamp(INT64_MIN) + self.ldt(self.no_ldt)


def encode_clustering(values: tuple[bytes | None, ...], fixed: list[int | None]) -> bytes:
    """Clustering values in blocks of 32 with a 2-bit null/empty header per value."""
    out = bytearray()
    for block in range(0, len(values), 32):
        chunk = values[block : block + 32]
        header = 0
        for i, v in enumerate(chunk):
            if v is None:
                header |= 1 << (2 * i + 1)
            elif not v:
                header |= 1 << (2 * i)
        out += encode_uvint(header)
        for i, v in enumerate(chunk):
            if not v:
                continue
            size = fixed[block + i]
            if size is not None:
                if len(v) != size:
                    raise ValueError(f"clustering value {block + i} is {len(v)} bytes; its type needs {size}")
                out += v
            else:
                out += encode_uvint(len(v)) + v
    return bytes(out)


def encode_subset(present: list[int], total: int) -> bytes:
    """``Columns.serializeSubset``: indexes of present columns among ``total`` header columns."""
    if len(present) == total:
        return encode_uvint(0)
    if total < 64:
        bitmap = 0
        have = set(present)
        for i in range(total):
            if i not in have:
                bitmap |= 1 << i
        return encode_uvint(bitmap)
    out = bytearray(encode_uvint(total - len(present)))
    if len(present) < total // 2:
        for i in present:
            out += encode_uvint(i)
    else:
        have = set(present)
        for i in range(total):
            if i not in have:
                out += encode_uvint(i)
    return bytes(out)


# --------------------------------------------------------------------------------------------
# Segments


class SegmentFullError(Exception):
    """The entry does not fit in the segment; start a new one."""


class SegmentWriter:
    """Writes one segment file (and its ``_cdc.idx``) in ``directory``.

    Args:
        directory: where ``CommitLog-<version>-<id>.log`` (and the index) are written.
        segment_id: the segment id (ids increase per node).
        version: commit log version 6, 7 or 8.
        compression: ``lz4``, ``snappy``, ``deflate``, ``zstd``, ``noop`` (``NoopCompressor``:
            sections framed as compressed ones but holding the bytes as they are) or ``None``.
        encryption_key: AES key; encrypts the segment (LZ4 inside, as Cassandra does).
        key_alias: ``encKeyAlias`` written to the header.
        iv: 16-byte IV (random when not given).
        segment_size: capacity; plain segments are pre-sized to it and zero-filled.
        cdc: write the ``_cdc.idx`` file on every sync, as for a segment in state ``CONTAINS``.
    """

    def __init__(
        self,
        directory: str | Path,
        segment_id: int,
        *,
        version: int = VERSION_40,
        compression: str | None = None,
        encryption_key: bytes | None = None,
        key_alias: str = "testing:1",
        iv: bytes | None = None,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        cdc: bool = True,
        chunk_length: int = DEFAULT_CHUNK_LENGTH,
    ) -> None:
        self.directory = Path(directory)
        self.segment_id = segment_id
        self.version = version
        self.compression = compression
        self.encryption_key = encryption_key
        self.iv = iv if iv is not None else os.urandom(16)
        self.capacity = segment_size
        self.cdc = cdc
        self.chunk_length = chunk_length
        self.encoder = MutationEncoder(version)
        name = SegmentName(version, segment_id)
        self.path = self.directory / name.log_name
        self.index_path = self.directory / name.cdc_index_name
        params: dict[str, object] = {}
        if compression is not None:
            params["compressionClass"] = CLASS_NAMES[compression]
            params["compressionParameters"] = {}
        if encryption_key is not None:
            params["encCipher"] = "AES/CBC/PKCS5Padding"
            params["encKeyAlias"] = key_alias
            params["encIV"] = self.iv.hex()
        header = encode_descriptor(version, segment_id, params)
        self.header_length = len(header)
        # The logical image: header, then per section an 8-byte marker slot and the entries.
        self._buffer = bytearray(header)
        self._last_marker = len(header)
        self._buffer += b"\x00" * SYNC_MARKER_SIZE
        self._plain = compression is None and encryption_key is None
        self._file_pos = len(header)  # where the next section is written in the file
        self.durable_offset: int | None = None
        self.closed = False
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.path, "wb") as f:
            f.write(header)
            if self._plain:
                f.truncate(segment_size)

    @property
    def position(self) -> int:
        """Logical position where the next entry starts."""
        return len(self._buffer)

    def add(self, mutation: Mutation | bytes) -> int:
        """Appends an entry; returns its resume position (``entryLocation``).

        Raises:
            SegmentFullError: the entry (plus the closing marker) does not fit.
        """
        if self.closed:
            raise ValueError(f"segment {self.segment_id} is closed")
        payload = mutation if isinstance(mutation, bytes) else self.encoder.encode(mutation)
        size = struct.pack(">i", len(payload))
        size_crc = zlib.crc32(size)
        entry = (
            size + struct.pack(">I", size_crc) + payload + struct.pack(">I", zlib.crc32(payload, size_crc))
        )
        if len(self._buffer) + len(entry) + SYNC_MARKER_SIZE > self.capacity:
            raise SegmentFullError(
                f"segment {self.segment_id} has no room for an entry of {len(entry)} bytes"
            )
        self._buffer += entry
        return len(self._buffer)

    def sync(self, *, close: bool = False) -> int:
        """Writes the pending entries as a section and updates the index; returns the durable offset."""
        if self.closed:
            raise ValueError(f"segment {self.segment_id} is closed")
        start = self._last_marker
        end = len(self._buffer)
        if end == start + SYNC_MARKER_SIZE and not close:
            return self.durable_offset if self.durable_offset is not None else start
        content = bytes(self._buffer[start + SYNC_MARKER_SIZE : end])
        if self._plain:
            with open(self.path, "r+b") as f:
                f.seek(start + SYNC_MARKER_SIZE)
                f.write(content)
                if end <= self.capacity - SYNC_MARKER_SIZE:
                    f.seek(end)
                    f.write(b"\x00" * SYNC_MARKER_SIZE)  # zero the next marker slot
                f.seek(start)
                f.write(struct.pack(">iI", end, sync_marker_crc(self.segment_id, start)))
                f.flush()
                os.fsync(f.fileno())
        else:
            if self.encryption_key is not None:
                body = encrypt_section(content, self.encryption_key, self.iv, chunk_length=self.chunk_length)
            elif content or self.compression != "deflate":
                assert self.compression is not None
                body = compress(self.compression, content)
            else:
                body = b""  # a closing Deflate section with nothing in it carries no payload
            pos = self._file_pos
            next_pos = pos + 12 + len(body)
            section = (
                struct.pack(">iII", next_pos, sync_marker_crc(self.segment_id, pos), len(content)) + body
            )
            with open(self.path, "r+b") as f:
                f.seek(pos)
                f.write(section)
                f.flush()
                os.fsync(f.fileno())
            self._file_pos = next_pos
        self._last_marker = end
        self._buffer += b"\x00" * SYNC_MARKER_SIZE
        self.durable_offset = end
        if self.cdc:
            write_cdc_index(self.index_path, end, completed=close)
        if close:
            self.closed = True
        return end

    def close(self) -> int:
        """Final sync (a possibly empty closing section) and ``COMPLETED`` in the index."""
        return self.sync(close=True)


def bound(
    kind: BoundKind, values: tuple[bytes | None, ...], *deletions: DeletionTime
) -> RangeTombstoneMarker:
    """Convenience constructor for range tombstone markers."""
    return RangeTombstoneMarker(kind, values, tuple(deletions))
